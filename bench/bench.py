"""Postern and Postfix side by side, in one run: fast ETRN latency at queue scale, whole-queue
flush, acceptance and relay throughput, resource use. Prints a table and writes BENCHMARKS.md
and bench/etrn-latency.png. Speed is measured here, never asserted in the test suite."""

import argparse
import json
import os
import platform
import shutil
import smtplib
import socket
import statistics
import subprocess
import threading
import time

import drain
import fswatch
import odmr
import plots
import scale as scale_out
import sink
from systems import CPUACCT, ROOT, TLS_LOAD, Postern, Postfix, make_cert, wait_port

BASE = "/tmp/postern-bench"
DEFAULT_OUTPUT = os.path.join(ROOT, "BENCHMARKS.md")
CPU_SOURCE = "cpuacct cgroup per system, nanoseconds" if os.path.isdir(CPUACCT) else "/proc clock ticks, 10 ms resolution"
SINK_PORT = 10099
WATCHED_PROBES = 3
# The main.cf line of the relay row with TLS to the next hop (the same for both systems).
NEXT_HOP_TLS = "smtp_tls_security_level = may\n"


class SmtpSink:
    """Postfix's `smtp-sink` on the sink port (no TLS): the bulk relay runs' next hop."""

    def __init__(self):
        self.proc = subprocess.Popen(["smtp-sink", "-u", "postfix", f"127.0.0.1:{SINK_PORT}", "256"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    def stop(self):
        """Stop it; smtp-sink counts nothing, so there are no counts."""
        self.proc.terminate()
        self.proc.wait()


class TlsSink:
    """`tls-load sink` on the sink port: offers STARTTLS, counts messages received in
    plaintext and over TLS apart."""

    def __init__(self):
        cert, key = make_cert(os.path.join(BASE, "tls-sink"))
        self.proc = subprocess.Popen([TLS_LOAD, "sink", "--listen", f"127.0.0.1:{SINK_PORT}", "--cert", cert, "--key", key], stdout=subprocess.PIPE)

    def stop(self):
        """Stop it and return its counts."""
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=30)
        lines = out.decode().strip().splitlines()
        if self.proc.returncode != 0 or not lines:
            raise RuntimeError(f"tls-load sink failed (exit {self.proc.returncode})")
        return json.loads(lines[-1])


def tls_load(*args):
    """Run a tls-load client mode; its JSON report. Any failed message or session is fatal
    to the benchmark: figures with errors in them would not compare."""
    r = subprocess.run([TLS_LOAD, *map(str, args)], capture_output=True, text=True)
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        detail = lines[-1] if lines else r.stderr.strip()[-300:]
        raise RuntimeError(f"tls-load {args[0]} failed (exit {r.returncode}): {detail}")
    return json.loads(lines[-1])


def free_sink():
    """Make sure nothing listens on the sink port (mail must defer while queues fill)."""
    try:
        socket.create_connection(("127.0.0.1", SINK_PORT), timeout=0.2).close()
        raise RuntimeError(f"something listens on {SINK_PORT}")
    except OSError:
        pass


def settle():
    """Start every measurement from the same disk state: write back what is dirty and let
    ext4's "recently deleted" inode window (5 s once the inode table is clean) pass, so the
    system measured second does not pay for the files the first one deleted."""
    os.sync()
    time.sleep(6)


def clean(systems, quiet_s):
    """Stop both systems and delete their spools. Deleting a 100k-message queue keeps this
    disk busy (inode table writeback, discards) well after `sync` returns, so a run that starts
    by deleting the previous run's queues waits `quiet_s` before measuring anything."""
    for s in systems:
        s.stop()
    shutil.rmtree(BASE, ignore_errors=True)
    os.sync()
    time.sleep(quiet_s)


def wait_until(what, cond, timeout, poll=0.005):
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise RuntimeError(f"timed out: {what}")
        time.sleep(poll)


def fill(system, n, domains, threads=8, domain=None):
    """Queue n messages over SMTP, recipients spread over `domains` domains (all in `domain`
    when it is given)."""
    def worker(start):
        s = smtplib.SMTP("127.0.0.1", system.port, timeout=60)
        s.ehlo("fill.bench")
        for i in range(start, n, threads):
            d = domain or f"d{i % domains}.example.test"
            body = f"Subject: bench {i}\r\nMessage-ID: <{i}.{d}.{system.name}@bench>\r\n\r\n" + "x" * 1000 + "\r\n"
            s.sendmail("sender@bench.test", [f"u{i}@{d}"], body)
        s.quit()
    ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def etrn(port, site):
    """Send ETRN over an established session; return (reply, seconds for the ETRN alone)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"HELO etrn.bench\r\n")
    f.readline()
    t = time.time()
    s.sendall(f"ETRN {site}\r\n".encode())
    reply = f.readline().decode().strip()
    dt = time.time() - t
    s.sendall(b"QUIT\r\n")
    f.readline()
    s.close()
    return reply, dt, t + dt


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def start_empty(sysm, extra_main=""):
    """Start `sysm` on an empty queue (main.cf with `extra_main` added), from a settled disk,
    with no sink listening."""
    free_sink()
    sysm.fresh(extra_main)
    settle()
    sysm.start()


def etrn_scale(systems, n, domains, probes):
    """Fill each system's deferred queue, bring the sink up, ETRN `probes` domains."""
    out = {}
    for sysm in systems:
        start_empty(sysm)
        t = time.time()
        fill(sysm, n, domains)
        fill_s = time.time() - t
        # The ODMR rows' customers: k messages each for ETRN (both systems) and ATRN (Postern).
        prefixes = ("e", "o") if sysm.name == "Postern" else ("e",)
        for k in odmr.KS:
            for prefix in prefixes:
                fill(sysm, k, 1, domain=odmr.domain(prefix, k))
        total = n + len(prefixes) * sum(odmr.KS)
        wait_until(f"{sysm.name}: {total} deferred", lambda: sysm.deferred_count() >= total, 60 + total / 50)
        # The customer comes back later: the queue is on disk, nothing is being written back.
        settle()
        srv = sink.start(SINK_PORT)
        per = n // domains
        rows, touched = [], []
        # Latency probes run unwatched; the watched probes after them (other domains) count the
        # files touched, since reading inotify events costs CPU the latency would pay for.
        for k in range(probes + WATCHED_PROBES):
            d = (k * 7919) % domains
            suffix = f"@d{d}.example.test"
            watch = None
            if k >= probes:
                watch = fswatch.Watch(sysm.spool)
                time.sleep(0.2)
                watch.reset()
            cpu0 = sysm.cpu_seconds()
            reply, reply_s, t_reply = etrn(sysm.port, f"d{d}.example.test")
            wait_until(f"{sysm.name}: d{d} delivered", lambda: srv.recorder.count(suffix) >= per, 60)
            times = srv.recorder.times(suffix)
            time.sleep(0.2)
            cpu = sysm.cpu_seconds() - cpu0
            if watch:
                touched.append(watch.stop())
            else:
                rows.append({"reply_ms": reply_s * 1000, "first_ms": (min(times) - t_reply) * 1000, "last_ms": (max(times) - t_reply) * 1000, "cpu_ms": cpu * 1000,
                             "reply": reply})
            time.sleep(0.3)
        odmr_rows, by_atrn = odmr.rows(sysm, srv, etrn, wait_until)
        # Workload 2: the whole remaining queue, into Postfix's smtp-sink: the Python sink
        # that timestamps the probes would be the bottleneck (and eat the CPU being measured).
        remaining = total - srv.recorder.count() - by_atrn
        srv.shutdown()
        srv.server_close()
        ssink = SmtpSink()
        try:
            wait_port(SINK_PORT)
            sent = sysm.log_tail("status=sent")
            t = time.time()
            sysm.flush_all()
            wait_until(f"{sysm.name}: whole queue", lambda: sent.count() >= remaining, 120 + n / 20, poll=0.02)
            flush_s = time.time() - t
        finally:
            ssink.stop()
        sysm.stop()
        out[sysm.name] = {
            "fill_s": fill_s,
            "reply_ms": median([r["reply_ms"] for r in rows]),
            "first_ms": median([r["first_ms"] for r in rows]),
            "last_ms": median([r["last_ms"] for r in rows]),
            "cpu_ms": median([r["cpu_ms"] for r in rows]),
            "touched": median(touched),
            "replies": sorted({r["reply"] for r in rows}),
            "flush_rate": remaining / flush_s,
            "per_domain": per,
            "odmr": odmr_rows,
        }
        print(f"  {sysm.name:8} n={n:>6} domains={domains:>5}: ETRN reply {out[sysm.name]['reply_ms']:.2f} ms, first {out[sysm.name]['first_ms']:.1f} ms, last {out[sysm.name]['last_ms']:.1f} ms, cpu {out[sysm.name]['cpu_ms']:.1f} ms, {out[sysm.name]['touched']:.0f} files touched; whole-queue flush {out[sysm.name]['flush_rate']:.0f} msg/s", flush=True)
    return out


def smtp_source(port, sessions, messages):
    subprocess.run(["smtp-source", "-s", str(sessions), "-m", str(messages), "-l", "4096", "-f", "sender@bench.test",
                    "-t", "u@d1.example.test", f"127.0.0.1:{port}"], check=True, stdout=subprocess.DEVNULL)


def tls_mail(port, sessions, messages):
    tls_load("mail", "--port", port, "--sessions", sessions, "--messages", messages, "--size", 4096)


def throughput(systems, sessions, messages, reps, source=smtp_source, next_hop=SmtpSink, extra_main=""):
    """`source` (smtp-source, or the STARTTLS client) into each system with `next_hop` (smtp-sink,
    or the TLS sink) up, `reps` times each, alternating the systems: medians of acceptance and
    end-to-end rates, CPU and memory. `extra_main` goes into both systems' main.cf."""
    runs = {s.name: [] for s in systems}
    for rep in range(reps):
        for sysm in (systems if rep % 2 == 0 else systems[::-1]):
            free_sink()
            sysm.fresh(extra_main)
            settle()
            ssink = next_hop()
            try:
                r = relay_run(sysm, sessions, messages, source)
            finally:
                sysm.stop()
                counts = ssink.stop()
            if counts:
                require_tls_next_hop(sysm, counts, messages)
            runs[sysm.name].append(r)
            print(f"  {sysm.name:8} accept {r['accept_rate']:.0f} msg/s, relay {r['relay_rate']:.0f} msg/s, cpu {r['cpu_per_msg_ms']:.2f} ms/msg, rss idle {r['idle_rss_mb']:.1f} MB peak {r['peak_rss_mb']:.1f} MB, start {r['start_s']*1000:.0f} ms", flush=True)
    out = {}
    for name, rs in runs.items():
        out[name] = {k: median([r[k] for r in rs]) for k in rs[0]}
        out[name]["range"] = {k: (min(r[k] for r in rs), max(r[k] for r in rs)) for k in rs[0]}
    return out


RELAY_RECIPIENTS = 100_000


def restricted_main(sysm):
    """main.cf lines of a backup MX's restriction list, with a relay_recipient_maps of
    RELAY_RECIPIENTS entries (the load's recipient among them) and small access tables, all
    `hash:` tables built by the system's own postmap once main.cf is written (Berkeley DB for Postfix, LMDB for
    Postern). Every word runs for every message of the load; none refuses it."""
    def table(name, lines):
        path = os.path.join(sysm.etc, name)
        with open(path, "w") as f:
            f.writelines(lines)
        sysm.tables.append(f"hash:{path}")
        return f"hash:{path}"
    users = ["u@d1.example.test OK\n"] + [f"user{i}@d{i % 100}.example.test OK\n" for i in range(RELAY_RECIPIENTS - 1)]
    recipients = table("relay_recipients", users)
    senders = table("sender_access", ["spammer@bad.example REJECT\n", "bad.example REJECT\n", "friend.example OK\n"])
    rcpt_access = table("recipient_access", ["abuse@d1.example.test OK\n", "noreply@d1.example.test REJECT\n"])
    return (f"relay_recipient_maps = {recipients}\n"
            "smtpd_helo_restrictions = reject_invalid_helo_hostname\n"
            f"smtpd_sender_restrictions = reject_non_fqdn_sender, check_sender_access {senders}\n"
            "smtpd_recipient_restrictions = reject_non_fqdn_recipient, reject_unauth_destination, "
            f"check_recipient_access {rcpt_access}, reject_unlisted_recipient\n")


def restricted_throughput(systems, sessions, messages, reps):
    """Acceptance as in `throughput`, with `restricted_main` in both systems' main.cf."""
    return throughput(systems, sessions, messages, reps, extra_main=restricted_main)


def require_tls_next_hop(sysm, counts, messages):
    """The TLS sink's counts after a run: every message came over TLS."""
    if counts["plain_messages"] or counts["tls_messages"] < messages:
        raise RuntimeError(f"{sysm.name}: the next hop got {counts['tls_messages']} messages over TLS and {counts['plain_messages']} in plaintext, of {messages}")


def next_hop_tls_check(systems, messages=10):
    """A short run per system with `smtp_tls_loglevel = 1`: its own log must say that its
    client established TLS with the sink (the measured runs log at the default level 0, and
    check the sink's counts instead). Returns the number of such lines per system."""
    out = {}
    for sysm in systems:
        free_sink()
        sysm.fresh(NEXT_HOP_TLS + "smtp_tls_loglevel = 1\n")
        ssink = TlsSink()
        try:
            wait_port(SINK_PORT)
            sysm.start()
            sent = sysm.log_tail("status=sent")
            established = sysm.log_tail(f"TLS connection established to 127.0.0.1[127.0.0.1]:{SINK_PORT}")
            smtp_source(sysm.port, 2, messages)
            wait_until(f"{sysm.name}: {messages} relayed", lambda: sent.count() >= messages, 60, poll=0.02)
            wait_until(f"{sysm.name}: a TLS connection to the next hop in its log", lambda: established.count() > 0, 10, poll=0.02)
        finally:
            sysm.stop()
            counts = ssink.stop()
        require_tls_next_hop(sysm, counts, messages)
        out[sysm.name] = established.count()
        print(f"  {sysm.name:8} {out[sysm.name]} \"TLS connection established to\" log lines for {messages} messages; the sink got all {counts['tls_messages']} over TLS", flush=True)
    return out


def relay_run(sysm, sessions, messages, source):
    """One load run against a started sink; returns the figures."""
    wait_port(SINK_PORT)
    start_s = sysm.start()
    time.sleep(1)
    idle_rss = sysm.rss_kb()
    peak = [idle_rss]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], sysm.rss_kb())
            time.sleep(0.1)
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        sent = sysm.log_tail("status=sent")
        cpu0 = sysm.cpu_seconds()
        t = time.time()
        source(sysm.port, sessions, messages)
        accept_s = time.time() - t
        wait_until(f"{sysm.name}: all relayed", lambda: sent.count() >= messages, 300, poll=0.02)
        relay_s = time.time() - t
        time.sleep(0.5)
        cpu = sysm.cpu_seconds() - cpu0
    finally:
        stop.set()
        sampler.join()
    return {"accept_rate": messages / accept_s, "relay_rate": messages / relay_s, "cpu_per_msg_ms": cpu * 1000 / messages,
            "idle_rss_mb": idle_rss / 1024, "peak_rss_mb": peak[0] / 1024, "start_s": start_s}


def tls_handshakes(systems, sessions, count, reps):
    """STARTTLS sessions per second (connect, EHLO, STARTTLS, EHLO, QUIT), `reps` times per
    system, alternating; medians."""
    runs = {s.name: [] for s in systems}
    for rep in range(reps):
        for sysm in (systems if rep % 2 == 0 else systems[::-1]):
            sysm.fresh()
            settle()
            sysm.start()
            time.sleep(1)
            try:
                cpu0 = sysm.cpu_seconds()
                secs = tls_load("handshakes", "--port", sysm.port, "--sessions", sessions, "--count", count)["seconds"]
                cpu = sysm.cpu_seconds() - cpu0
            finally:
                sysm.stop()
            runs[sysm.name].append({"rate": count / secs, "cpu_ms": cpu * 1000 / count})
            print(f"  {sysm.name:8} {count / secs:.0f} STARTTLS sessions/s, cpu {cpu * 1000 / count:.2f} ms each", flush=True)
    return {name: {k: median([r[k] for r in rs]) for k in rs[0]} for name, rs in runs.items()}


def tls_rows(systems, args):
    """Section 6: acceptance over STARTTLS, STARTTLS sessions per second, relay with STARTTLS
    to the next hop."""
    print("throughput over STARTTLS", flush=True)
    tput = throughput(systems, args.sessions, args.messages, args.tls_reps, tls_mail)
    handshakes = tls_handshakes(systems, args.sessions, args.handshakes, args.tls_reps)
    print("relay with STARTTLS to the next hop", flush=True)
    check = next_hop_tls_check(systems)
    next_hop = throughput(systems, args.sessions, args.messages, args.tls_reps, next_hop=TlsSink, extra_main=NEXT_HOP_TLS)
    return {"tput": tput, "handshakes": handshakes, "next_hop": next_hop, "next_hop_check": check, "count": args.handshakes, "reps": args.tls_reps}


def ratio(a, b, higher_is_better):
    if not a or not b:
        return "n/a"
    return f"{(a / b if higher_is_better else b / a):.2f}x"


def plot(scale, path):
    plt = plots.pyplot()
    if plt is None:
        return False
    sizes = sorted(scale)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, marker, color in plots.SERIES:
        ax.plot(sizes, [scale[n][name]["last_ms"] for n in sizes], marker=marker, linestyle="-", color=color, label=f"{name}: last message at sink")
        ax.plot(sizes, [scale[n][name]["reply_ms"] for n in sizes], marker=marker, linestyle=":", color=color, alpha=0.7, label=f"{name}: ETRN reply")
    ax.set_xlabel("deferred messages in the queue")
    ax.set_ylabel("milliseconds after ETRN (median)")
    ax.set_title("Fast ETRN latency versus queue size")
    return plots.finish(fig, [ax], path)


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({model}), {mem:.0f} GiB, {platform.system()} {platform.release()}"


def tls_targets(tls):
    """Issue 11's TLS targets against this run's figures: (target, figure, met)."""
    ta, tb = tls["tput"]["Postern"], tls["tput"]["Postfix"]
    ha, hb = tls["handshakes"]["Postern"], tls["handshakes"]["Postfix"]
    ra, rb = tls["next_hop"]["Postern"], tls["next_hop"]["Postfix"]
    return [("acceptance over STARTTLS at least 2x Postfix", f"{ta['accept_rate'] / tb['accept_rate']:.2f}x", ta["accept_rate"] >= 2 * tb["accept_rate"]),
            ("STARTTLS sessions per second at least 2x Postfix", f"{ha['rate'] / hb['rate']:.2f}x", ha["rate"] >= 2 * hb["rate"]),
            ("relay with STARTTLS to the next hop at least 2x Postfix", f"{ra['relay_rate'] / rb['relay_rate']:.2f}x", ra["relay_rate"] >= 2 * rb["relay_rate"])]


def targets(scale, tput, tls=None, restricted=None):
    """The issues' targets against this run's figures: (target, figure, met)."""
    out = []
    if restricted:
        r, plain = restricted["Postern"]["accept_rate"], tput["Postern"]["accept_rate"]
        out.append(("acceptance with the restriction list and relay_recipient_maps at least 0.9x Postern's plain acceptance", f"{r / plain:.2f}x", r >= 0.9 * plain))
    if tls:
        out.extend(tls_targets(tls))
    a, b = tput["Postern"], tput["Postfix"]
    out.append(("acceptance at least 3x Postfix", f"{a['accept_rate'] / b['accept_rate']:.2f}x", a["accept_rate"] >= 3 * b["accept_rate"]))
    out.append(("relay at least 3x Postfix", f"{a['relay_rate'] / b['relay_rate']:.2f}x", a["relay_rate"] >= 3 * b["relay_rate"]))
    out.append(("CPU per message at most a quarter of Postfix's", f"{a['cpu_per_msg_ms']:.2f} vs {b['cpu_per_msg_ms']:.2f} ms ({b['cpu_per_msg_ms'] / a['cpu_per_msg_ms']:.2f}x)",
                4 * a["cpu_per_msg_ms"] <= b["cpu_per_msg_ms"]))
    out.append(("peak memory at most Postfix's", f"{a['peak_rss_mb']:.0f} vs {b['peak_rss_mb']:.0f} MB", a["peak_rss_mb"] <= b["peak_rss_mb"]))
    sizes = sorted(scale)
    for n in sizes:
        p, f = scale[n]["Postern"], scale[n]["Postfix"]
        out.append((f"ETRN reply under 1 ms ({n} queued)", f"{p['reply_ms']:.2f} ms", p["reply_ms"] < 1.0))
        out.append((f"last message in at most half Postfix's time ({n} queued)", f"{p['last_ms']:.1f} vs {f['last_ms']:.1f} ms ({f['last_ms'] / p['last_ms']:.2f}x)", 2 * p["last_ms"] <= f["last_ms"]))
        out.append((f"whole-queue flush at least 2x Postfix ({n} queued)", f"{p['flush_rate'] / f['flush_rate']:.2f}x", p["flush_rate"] >= 2 * f["flush_rate"]))
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        g = scale[hi]["Postern"]["last_ms"] / scale[lo]["Postern"]["last_ms"]
        out.append((f"last message at {hi} queued at most 1.5x the time at {lo}", f"{g:.2f}x", g <= 1.5))
    return out


def write_report(res, path):
    scale, tput, quick = res["scale"], res["tput"], res["quick"]
    L = []
    L.append("# Benchmarks: Postern and Postfix side by side\n")
    L.append(f"Written by `bench/run{' --quick' if quick else ''}` on {res['when']}. Both systems ran in the same run, one after the other, on loopback, with the same main.cf settings (relay to one sink port, fsync on in both). Figures are medians where several probes were taken; a ratio above 1 means Postern is better.\n")
    L.append(f"- Machine: {res['machine']}\n- Postfix {res['versions']['Postfix']} (Debian package), Postern {res['versions']['Postern']} (release build, {res['versions']['rustc']})\n- Settings: `relay_domains = example.test`, `relayhost = [127.0.0.1]:{SINK_PORT}`, `default_destination_concurrency_limit = 20`, `qmgr_message_active_limit = 20000`; Postfix with its stock master.cf (chroot off), Postern with its etc/ services; both started as root, services as `postfix`.\n")
    L.append("## 1. Fast ETRN latency at queue scale (the headline)\n")
    L.append("A deferred queue of N messages over D domains (`dK.example.test`) is filled over SMTP while the sink is down and left to settle (`sync`, 6 s); then the sink comes up and `ETRN dK.example.test` is sent for several domains, one at a time, each after the previous domain's mail arrived. Reply = time for the ETRN reply; first/last = time from the reply until the domain's first/last message reached the sink; CPU = CPU time of all the system's processes during one ETRN and its deliveries (" + CPU_SOURCE + "); files touched = distinct queue files and directories that saw any inotify event (open, read, write, attribute change, create, delete, rename) in that time, counted in " + str(WATCHED_PROBES) + " further probes of other domains (watching costs CPU, so the latency probes run unwatched); `stat` calls are invisible to inotify.\n")
    L.append("| queue (N / D, per domain) | system | ETRN reply ms | first msg ms | last msg ms | CPU ms | files touched | reply text |")
    L.append("|---|---|---|---|---|---|---|---|")
    for n in sorted(scale):
        for name in ("Postern", "Postfix"):
            r = scale[n][name]
            L.append(f"| {n} / {n // r['per_domain']}, {r['per_domain']} | {name} | {r['reply_ms']:.2f} | {r['first_ms']:.1f} | {r['last_ms']:.1f} | {r['cpu_ms']:.1f} | {r['touched']:.0f} | {'; '.join(r['replies'])} |")
        a, b = scale[n]["Postern"], scale[n]["Postfix"]
        L.append(f"| {n} | ratio | {ratio(a['reply_ms'], b['reply_ms'], False)} | {ratio(a['first_ms'], b['first_ms'], False)} | {ratio(a['last_ms'], b['last_ms'], False)} | {ratio(a['cpu_ms'], b['cpu_ms'], False)} | {ratio(a['touched'], b['touched'], False)} | |")
    sizes = sorted(scale)
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        growth = scale[hi]["Postern"]["last_ms"] / max(scale[lo]["Postern"]["last_ms"], 1e-9)
        L.append(f"\nPostern's time to the last message at {hi} queued is {growth:.2f}x its time at {lo} (target: at most 1.5x at 100k versus 1k).\n")
    L.append("![ETRN latency versus queue size](bench/etrn-latency.png)\n")
    L.append("## 2. Whole-queue flush (`postqueue -f`)\n")
    L.append("After the ETRN probes, the rest of the same queue is flushed into Postfix's `smtp-sink`; rate = messages / time until the last `status=sent` log line.\n")
    L.append("| queue | Postern msg/s | Postfix msg/s | ratio |")
    L.append("|---|---|---|---|")
    for n in sizes:
        a, b = scale[n]["Postern"]["flush_rate"], scale[n]["Postfix"]["flush_rate"]
        L.append(f"| {n} | {a:.0f} | {b:.0f} | {ratio(a, b, True)} |")
    L.extend(odmr.report(scale))
    L.extend(drain.report(res.get("drain")))
    L.append("\n## 3-5. Acceptance and relay throughput, resource use\n")
    L.append(f"`smtp-source -s {res['sessions']} -m {res['messages']} -l 4096` into each smtpd while Postfix's `smtp-sink` accepts the relayed mail, {res['reps']} run(s) per system, alternating which system goes first, each from a fresh queue after `sync` and a 6 s pause; medians, with the range in brackets. Acceptance = messages / time until smtp-source finished; relay = messages / time until the last `status=sent`; CPU = CPU time of all the system's processes / messages ({CPU_SOURCE}); memory = resident set of the master and all its children (idle after start, peak sampled every 100 ms); start = `postfix start` until smtpd answers.\n")
    L.append("| figure | Postern | Postfix | ratio |")
    L.append("|---|---|---|---|")
    a, b = tput["Postern"], tput["Postfix"]
    rows = [("acceptance msg/s", "accept_rate", True, "{:.0f}"), ("relay msg/s (end to end)", "relay_rate", True, "{:.0f}"),
            ("CPU ms per message", "cpu_per_msg_ms", False, "{:.2f}"), ("RSS idle MB", "idle_rss_mb", False, "{:.1f}"),
            ("RSS peak MB", "peak_rss_mb", False, "{:.1f}"), ("start-up s", "start_s", False, "{:.3f}")]
    def cell(r, key, fmt):
        lo, hi = r["range"][key]
        return fmt.format(r[key]) + (f" [{fmt.format(lo)}-{fmt.format(hi)}]" if res["reps"] > 1 else "")
    for label, key, hib, fmt in rows:
        L.append(f"| {label} | {cell(a, key, fmt)} | {cell(b, key, fmt)} | {ratio(a[key], b[key], hib)} |")
    restricted = res.get("restricted")
    if restricted:
        ra, rb = restricted["Postern"], restricted["Postfix"]
        L.append(f"| acceptance msg/s, restriction list + {RELAY_RECIPIENTS // 1000}k relay_recipient_maps | {cell(ra, 'accept_rate', '{:.0f}')} | {cell(rb, 'accept_rate', '{:.0f}')} | {ratio(ra['accept_rate'], rb['accept_rate'], True)} |")
    L.append("")
    if restricted:
        L.append(f"The restriction row runs the same load with a backup MX's lists in both main.cf files: `relay_recipient_maps` of {RELAY_RECIPIENTS} entries (`hash:`, each system's own postmap: Berkeley DB for Postfix, LMDB for Postern), `smtpd_helo_restrictions = reject_invalid_helo_hostname`, `smtpd_sender_restrictions = reject_non_fqdn_sender, check_sender_access hash:...`, `smtpd_recipient_restrictions = reject_non_fqdn_recipient, reject_unauth_destination, check_recipient_access hash:..., reject_unlisted_recipient`; every word runs for every message and none refuses it.\n")
    tls = res.get("tls")
    if tls:
        L.append("## 6. Over STARTTLS\n")
        L.append(f"Both systems offer STARTTLS with the same kind of self-signed ECDSA P-256 certificate (`smtpd_tls_security_level = may`). `tls-load mail` (bench/tls-load: Rust, tokio and rustls, since smtp-source has no TLS; no certificate check, every handshake a full one) sends {res['messages']} messages of 4 kB over {res['sessions']} sessions, each EHLO, STARTTLS, EHLO, then one message after another; relayed in plaintext to `smtp-sink`. Handshakes: `tls-load handshakes`, {res['sessions']} concurrent clients running {tls['count']} sessions of connect, EHLO, STARTTLS, EHLO, QUIT. STARTTLS to the next hop: `smtp-source` as in section 3 in plaintext, both systems with `{NEXT_HOP_TLS.strip()}` relaying to `tls-load sink`, which offers STARTTLS; after each run the sink's counts must show every message received over TLS, and a short run per system with `smtp_tls_loglevel = 1` found its `TLS connection established to` lines in its log ({', '.join(f'{n}: {k}' for n, k in sorted(tls['next_hop_check'].items()))} for 10 messages; Postfix's smtp client does not reuse TLS connections by default, Postern's keeps them open). {tls['reps']} run(s) per system, alternating; medians. The load client and the sink share the two cores with the system they measure.\n")
        L.append("| figure | Postern | Postfix | ratio |")
        L.append("|---|---|---|---|")
        ta, tb = tls["tput"]["Postern"], tls["tput"]["Postfix"]
        for label, key, hib, fmt in rows[:3]:
            L.append(f"| {label} over STARTTLS | {fmt.format(ta[key])} | {fmt.format(tb[key])} | {ratio(ta[key], tb[key], hib)} |")
        ha, hb = tls["handshakes"]["Postern"], tls["handshakes"]["Postfix"]
        L.append(f"| STARTTLS sessions/s | {ha['rate']:.0f} | {hb['rate']:.0f} | {ratio(ha['rate'], hb['rate'], True)} |")
        L.append(f"| CPU ms per STARTTLS session | {ha['cpu_ms']:.2f} | {hb['cpu_ms']:.2f} | {ratio(ha['cpu_ms'], hb['cpu_ms'], False)} |")
        ra, rb = tls["next_hop"]["Postern"], tls["next_hop"]["Postfix"]
        for label, key, hib, fmt in rows[1:3]:
            L.append(f"| {label}, STARTTLS to the next hop | {fmt.format(ra[key])} | {fmt.format(rb[key])} | {ratio(ra[key], rb[key], hib)} |")
        L.append("")
    L.extend(scale_out.report(res))
    L.append("## The issue's targets in this run\n")
    L.append("| target | this run | |")
    L.append("|---|---|---|")
    for target, figure, met in targets(scale, tput, res.get("tls"), res.get("restricted")) + drain.targets(res.get("drain")) + scale_out.targets(res):
        L.append(f"| {target} | {figure} | {'met' if met else '**missed**'} |")
    L.append("\nWhy the missed ones are missed is in the findings below.\n")
    L.append("## Flush index micro-benchmark\n")
    L.append("`cargo bench -p postern-flush --bench index` (divan): the cost of the index operations stays flat from 10k to 1M IDs.\n")
    L.append("```text")
    L.append(microbench())
    L.append("```\n")
    with open(os.path.join(ROOT, "bench", "findings.md")) as f:
        L.append(f.read())
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")


def microbench():
    r = subprocess.run(["cargo", "bench", "-p", "postern-flush", "--bench", "index"], cwd=ROOT, capture_output=True, text=True)
    lines = [l for l in r.stdout.splitlines() if l.strip() and not l.startswith("Timer precision")]
    return "\n".join(lines) if r.returncode == 0 else f"(cargo bench failed: {r.stderr.strip()[-300:]})"


def drain_rows(systems):
    return drain.run(systems, start_empty, fill, etrn, wait_until, settle, SINK_PORT)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small queues and loads, under 5 minutes")
    ap.add_argument("--output", default=DEFAULT_OUTPUT)
    ap.add_argument("--report-only", action="store_true", help="rewrite the report and the plot from the figures of the last run")
    ap.add_argument("--only", choices=["tls", "restricted", "drain", "fleet"],
                    help="run only the TLS rows, or only a small acceptance row with a restriction list and relay_recipient_maps, and print their figures (no report written); "
                         "or only the big-customer drain rows (k up to 10,000), which replace those of the last run's figures and rewrite the report; "
                         "or only the --scale run's fleet row")
    ap.add_argument("--scale", action="store_true",
                    help="only the scale rows (issue 15): one node from 1k to a million queued, the big-customer rows and a fleet of three nodes on NATS; "
                         "they replace those of the last run's figures and rewrite the report (about 30 minutes; with --quick up to 10k, about 8)")
    ap.add_argument("--postfix-million", action="store_true", help="with --scale: Postfix at a million too (about 16 minutes more)")
    args = ap.parse_args()
    if args.report_only:
        report(args.output)
        return
    if args.quick:
        sizes, probes = [(500, 50), (2000, 200)], 3
        args.sessions, args.messages, args.reps = 20, 1000, 1
        args.tls_reps, args.handshakes = 1, 500
    else:
        sizes, probes = [(1000, 100), (10000, 1000), (100000, 10000)], 7
        args.sessions, args.messages, args.reps = 20, 5000, 5
        args.tls_reps, args.handshakes = 3, 2000
    systems = [Postfix(f"{BASE}/postfix", 10025, SINK_PORT), Postern(f"{BASE}/postern", 10026, SINK_PORT)]
    if args.only == "restricted":
        clean(systems, quiet_s=5)
        try:
            restricted_throughput(systems, 20, 1000, 1)
        finally:
            clean(systems, quiet_s=0)
        return
    clean(systems, quiet_s=5 if args.quick else 30)
    if args.scale:
        try:
            up, drained = scale_out.run(systems, args, BASE, start_empty, settle, etrn, wait_until, SINK_PORT, drain_rows)
        finally:
            clean(systems, quiet_s=0)
        if not args.postfix_million:
            carry_postfix_million(args.output, up)
        update_results(args.output, scale_up=up, drain=drained)
        report(args.output)
        return
    if args.only == "fleet":
        try:
            fleet = scale_out.fleet(args, BASE, settle, etrn, wait_until, SINK_PORT)
        finally:
            clean(systems, quiet_s=0)
        with open(results_path(args.output)) as f:
            up = json.load(f)["scale_up"]
        up["cluster"] = fleet
        update_results(args.output, scale_up=up)
        report(args.output)
        return
    if args.only == "drain":
        try:
            rows = drain_rows(systems)
        finally:
            clean(systems, quiet_s=0)
        update_results(args.output, drain=rows)
        report(args.output)
        return
    if args.only == "tls":
        try:
            tls = tls_rows(systems, args)
        finally:
            clean(systems, quiet_s=0)
        for target, figure, met in tls_targets(tls):
            print(f"  {target}: {figure} ({'met' if met else 'missed'})")
        return
    try:
        print("throughput and resources", flush=True)
        tput = throughput(systems, args.sessions, args.messages, args.reps)
        print(f"acceptance with a restriction list and a {RELAY_RECIPIENTS}-entry relay_recipient_maps", flush=True)
        restricted = restricted_throughput(systems, args.sessions, args.messages, args.reps)
        tls = tls_rows(systems, args)
        print("a big customer drains: ETRN for one site with k messages", flush=True)
        drained = drain_rows(systems)
        scale = {}
        for n, d in sizes:
            print(f"ETRN at {n} queued over {d} domains", flush=True)
            scale[n] = etrn_scale(systems, n, d, probes)
        res = {"quick": args.quick, "sessions": args.sessions, "messages": args.messages, "reps": args.reps, "scale": scale, "tput": tput,
               "restricted": restricted, "drain": drained,
               "tls": tls,
               "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
               "versions": {"Postfix": systems[0].version(), "Postern": systems[1].version(),
                            "rustc": subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()}}
        # The scale rows come from their own, longer run (--scale): kept until it runs again.
        try:
            with open(results_path(args.output)) as f:
                res["scale_up"] = json.load(f)["scale_up"]
        except (OSError, KeyError, ValueError):
            pass
        with open(results_path(args.output), "w") as f:
            json.dump(res, f, indent=1, sort_keys=True)
    finally:
        clean(systems, quiet_s=0)
    report(args.output)


def carry_postfix_million(output, up):
    """Keep Postfix's rows above 100k from the last run that measured them (the long
    --postfix-million run), each with the date of that run."""
    try:
        with open(results_path(output)) as f:
            last = json.load(f)["scale_up"]
    except (OSError, KeyError, ValueError):
        return
    for n, row in last["sizes"].get("Postfix", {}).items():
        if int(n) > 100000 and int(n) not in up["sizes"]["Postfix"]:
            up["sizes"]["Postfix"][int(n)] = dict(row, when=row.get("when", last["when"]))


def update_results(output, **rows):
    """Replace these rows in the last run's figures."""
    with open(results_path(output)) as f:
        res = json.load(f)
    res.update(rows)
    with open(results_path(output), "w") as f:
        json.dump(res, f, indent=1, sort_keys=True)


def results_path(output):
    """Where the figures behind a report are kept: bench/results.json for BENCHMARKS.md."""
    return os.path.join(ROOT, "bench", "results.json") if output == DEFAULT_OUTPUT else output + ".json"


def report(output):
    """A report and the plot from the figures of the last run written to the same output."""
    with open(results_path(output)) as f:
        res = json.load(f)
    res["scale"] = {int(n): v for n, v in res["scale"].items()}
    plot(res["scale"], os.path.join(ROOT, "bench", "etrn-latency.png") if output == DEFAULT_OUTPUT else output + ".png")
    scale_out.plot(res, res.get("drain"), os.path.join(ROOT, "bench", "scale.png") if output == DEFAULT_OUTPUT else output + "-scale.png")
    write_report(res, output)
    # The tables, for the terminal (headings and prose are in the file).
    with open(output) as f:
        for line in f:
            if line.startswith("## ") and "micro-benchmark" in line:
                break
            if line.startswith("|") or line.startswith("## "):
                print(line.rstrip()[:160])
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
