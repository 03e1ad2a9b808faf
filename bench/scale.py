"""Scale up and out (issue 15), for `bench/run --scale`: one node from 1k to a million deferred
messages with a skewed spread, and a fleet of three nodes on NATS.

Each queue of N messages spans N/10 domains: five big customers hold N/100 messages each (10,000
at a million), and the rest is spread evenly over the other domains (9 or 10 each). It is filled
over SMTP by several client processes that pipeline whole transactions (RFC 2920: the message
content, the dot and the next MAIL, RCPT and DATA in one write), with the sink down, so every
message is deferred; `minimal_backoff_time = 3600s` keeps the queue managers from retrying it
while the measurements run. Then, with the sink up:
- probes: ETRN for regular domains, one at a time: the reply time and the time to that domain's
  last message at the sink, p50 and p99; a few of them on the busy machine right after the last
  deferral (the disk still writing back), the rest after `sync` and a pause;
- one big customer: ETRN for a site with N/100 messages, the time to its last message;
- resident memory and open descriptors of each daemon, after the fill;
- a restart: `postfix stop`, `postfix start`, the time until smtpd answers, and at once an ETRN
  for a domain not yet probed, whose mail must arrive complete while Postern's flush still
  reconciles its index with the deferred queue (the reconciliation's own log line says how long
  it read and merged).

The fleet row: three Postern nodes on one machine, each with its own ports and a queue of N
messages, joined by a `nats-server` this run starts. They hold Spread(3N) between them, every
domain's mail dealt out over the three as a load balancer deals it (3 or 4 of a domain's 10 at each
node), so a domain has as much mail as in the one-node row of N; ETRN at one node for a regular
domain releases that domain's mail at all three, and the row compares the reply and the time to the
last message with that one-node row. The run also times a NATS request and its answer between two
plain clients of the same server: what the fleet's reply adds to one node's at the least.
"""

import multiprocessing
import os
import re
import socket
import statistics
import subprocess
import time

import plots
import sink
from systems import LogTail, Postern, children, wait_port

SIZES = (1000, 10000, 100000, 1000000)
QUICK_SIZES = (1000, 10000)
BIG_SITES = 5
PROBES = 30
BUSY_PROBES = 10
QUICK_PROBES = 10
FILL_CLIENTS = 6
# Mail must stay deferred while it is measured: no queue run retries it in the meantime.
HOLD_MAIN = "minimal_backoff_time = 3600s\n"
NATS_PORT = 14222
FLEET = ("mx1", "mx2", "mx3")
FLEET_PORTS = (10031, 10032, 10033)
CLUSTER_SIZE = 100000
QUICK_CLUSTER_SIZE = 10000
BODY = b"x" * 1000


class Spread:
    """Which domain message i goes to, and how many each domain holds."""

    def __init__(self, n):
        self.n = n
        self.big_k = n // 100
        self.big_total = BIG_SITES * self.big_k
        self.regular = n // 10 - BIG_SITES
        self.rest = n - self.big_total

    def domain(self, i):
        if i < self.big_total:
            return big_site(i % BIG_SITES)
        return regular_site((i - self.big_total) % self.regular)

    def count(self, j):
        return self.rest // self.regular + (1 if j < self.rest % self.regular else 0)

    def probe_site(self, k):
        """The k-th probed regular domain: spread over the whole range, never the same twice."""
        return (k * 7919) % self.regular


def big_site(b):
    return f"big{b}.scale.example.test"


def regular_site(j):
    return f"s{j}.scale.example.test"


def expect(f, code):
    line = f.readline()
    while line[3:4] == b"-":
        line = f.readline()
    if not line.startswith(code):
        raise RuntimeError(f"fill: expected {code.decode()}, got {line!r}")


def fill_client(port, spread, ids):
    """Queue the messages `ids` of `spread` over one pipelining session."""
    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")
    expect(f, b"220")
    s.sendall(b"EHLO fill.bench\r\n")
    expect(f, b"250")

    def envelope(i):
        return f"MAIL FROM:<sender@bench.test>\r\nRCPT TO:<u{i}@{spread.domain(i)}>\r\nDATA\r\n".encode()

    if not ids:
        s.close()
        return
    s.sendall(envelope(ids[0]))
    for pos, i in enumerate(ids):
        for code in (b"250", b"250", b"354"):
            expect(f, code)
        content = f"Subject: scale {i}\r\nMessage-ID: <{i}.scale@bench>\r\n\r\n".encode() + BODY + b"\r\n.\r\n"
        more = envelope(ids[pos + 1]) if pos + 1 < len(ids) else b"QUIT\r\n"
        s.sendall(content + more)
        expect(f, b"250")
    expect(f, b"221")
    s.close()


def fill(port, n, share=(0, 1)):
    """Queue n messages at `port`, over FILL_CLIENTS processes; seconds taken. They are the
    messages of Spread(n), or with share = (k, nodes) node k's share of Spread(n * nodes): the
    messages i with i % nodes == k, so that every domain's mail is spread over the nodes."""
    k, nodes = share
    spread = Spread(n * nodes)
    t = time.time()
    clients = min(FILL_CLIENTS, n)
    procs = [multiprocessing.Process(target=fill_client, args=(port, spread, range(k + c * nodes, n * nodes, clients * nodes))) for c in range(clients)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode != 0 for p in procs):
        raise RuntimeError(f"fill of {n} messages at port {port} failed")
    return time.time() - t


def daemons(sysm):
    """{process name: [resident MB, open descriptors]} of the master and its children, the
    processes of one name added up."""
    out = {}
    m = sysm.master_pid()
    if m is None:
        return out
    for pid in [m] + children(m):
        try:
            with open(f"/proc/{pid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/status") as f:
                rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, StopIteration, ValueError):
            continue
        row = out.setdefault(name, [0.0, 0])
        row[0] += rss / 1024
        row[1] += fds
    return out


def pct(xs, p):
    """The p-th percentile (nearest rank) of xs."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * len(xs) + 0.5) - 1))] if xs else float("nan")


def etrn_until_delivered(port, site, want, srv, etrn, wait_until):
    """ETRN `site` at `port` and wait for its `want` messages at the sink: (reply text, reply
    ms, last message ms after the reply)."""
    suffix = "@" + site
    reply, reply_s, t_reply = etrn(port, site)
    wait_until(f"{site} delivered", lambda: srv.recorder.count(suffix) >= want, 120 + want / 20, poll=0.002)
    return reply, reply_s * 1000, (max(srv.recorder.times(suffix)) - t_reply) * 1000


def wait_deferred(sysm, deferred, n, wait_until):
    """Wait until the log says n messages were deferred (`deferred` counts those lines since
    before the fill: cheaper than listing a million files while the system works), then check
    the deferred queue holds them."""
    wait_until(f"{sysm.name}: {n} deferred", lambda: deferred.count() >= n, 600 + n / 100, poll=1.0)
    wait_until(f"{sysm.name}: {n} files in deferred", lambda: sysm.deferred_count() >= n, 120, poll=2.0)


def probe(sysm, spread, srv, etrn, wait_until, probes, first=0):
    rows = []
    for k in range(first, first + probes):
        j = spread.probe_site(k)
        reply, reply_ms, last_ms = etrn_until_delivered(sysm.port, regular_site(j), spread.count(j) * sysm.copies, srv, etrn, wait_until)
        rows.append({"reply": reply, "reply_ms": reply_ms, "last_ms": last_ms})
        time.sleep(0.2)
    return rows


def summary(rows):
    return {"reply_p50": statistics.median(r["reply_ms"] for r in rows), "reply_p99": pct([r["reply_ms"] for r in rows], 99),
            "last_p50": statistics.median(r["last_ms"] for r in rows), "last_p99": pct([r["last_ms"] for r in rows], 99),
            "replies": sorted({re.sub(r"\d+ pending(.*) for node \S+", r"N pending\1 for node D", r["reply"]) for r in rows}), "probes": len(rows)}


RECONCILED = re.compile(r"fast flush index reconciled .*\((\d+) messages read in ([\d.]+)s, merged in ([\d.]+)s\)")


def restart(sysm, spread, srv, etrn, wait_until, probes):
    """Stop and start `sysm`, ETRN a domain not probed yet as soon as smtpd answers; the time to
    answer, that ETRN's figures, and Postern's reconciliation."""
    reconciled = sysm.log_tail("fast flush index reconciled")
    sysm.stop()
    started = sysm.start()
    t0 = time.time()
    j = spread.probe_site(probes)
    before = reconciled.count()
    reply, reply_ms, last_ms = etrn_until_delivered(sysm.port, regular_site(j), spread.count(j), srv, etrn, wait_until)
    out = {"start_s": started, "reply": reply, "reply_ms": reply_ms, "last_ms": last_ms}
    if sysm.name == "Postern":
        out["during_reconciliation"] = before == 0 and reconciled.count() == 0
        wait_until("reconciliation", lambda: reconciled.count() > 0, 900, poll=0.5)
        out["reconciled_after_s"] = started + time.time() - t0
        with open(sysm.maillog, errors="replace") as f:
            found = [m for m in map(RECONCILED.search, f) if m]
        messages, read_s, merged_s = found[-1].groups()
        out.update(reconcile_messages=int(messages), reconcile_read_s=float(read_s), reconcile_merge_s=float(merged_s))
    out["daemons"] = daemons(sysm)
    return out


def size_row(sysm, n, probes, start_empty, settle, etrn, wait_until, sink_port):
    """One system at n queued: fill, memory, probes, one big customer, restart."""
    spread = Spread(n)
    sysm.copies = 1
    start_empty(sysm, HOLD_MAIN)
    deferred = sysm.log_tail("status=deferred")
    fill_s = fill(sysm.port, n)
    filled = time.time()
    wait_deferred(sysm, deferred, n, wait_until)
    row = {"fill_rate": n / fill_s, "fill_s": fill_s, "deferred_after_s": time.time() - filled, "daemons": daemons(sysm),
           "domains": n // 10, "big_k": spread.big_k}
    srv = sink.start(sink_port, pipelining=True)
    try:
        # On the busy machine first: right after the last deferral, the disk still writing back.
        busy = summary(probe(sysm, spread, srv, etrn, wait_until, BUSY_PROBES, first=probes + 1))
        row["busy"] = {k: busy[k] for k in ("reply_p50", "reply_p99", "last_p50", "last_p99")}
        settle()
        row.update(summary(probe(sysm, spread, srv, etrn, wait_until, probes)))
        _, _, big_ms = etrn_until_delivered(sysm.port, big_site(0), spread.big_k, srv, etrn, wait_until)
        row["big_last_ms"], row["big_rate"] = big_ms, spread.big_k / (big_ms / 1000)
        row["restart"] = restart(sysm, spread, srv, etrn, wait_until, probes)
    finally:
        srv.shutdown()
        srv.server_close()
        sysm.stop()
    r = row
    print(f"  {sysm.name:8} n={n:>7}: fill {r['fill_rate']:.0f} msg/s; ETRN reply p50 {r['reply_p50']:.2f} p99 {r['reply_p99']:.2f} ms, "
          f"last p50 {r['last_p50']:.1f} p99 {r['last_p99']:.1f} ms; big customer ({spread.big_k}) {r['big_last_ms']:.0f} ms; "
          f"restart: answers after {r['restart']['start_s']:.1f} s, ETRN then {r['restart']['reply_ms']:.2f} ms, last {r['restart']['last_ms']:.1f} ms", flush=True)
    return row


class Node(Postern):
    """A node of the fleet: a Postern instance of its own, without the ODMR service (its port is
    the single system's), flush joined to the run's NATS server."""

    offers_odmr = False

    def __init__(self, base, port, sink_port, name):
        super().__init__(base, port, sink_port)
        self.node = name


def cluster_main(node):
    return (HOLD_MAIN + f"fast_flush_cluster_servers = nats://127.0.0.1:{NATS_PORT}\nfast_flush_cluster_node = {node.node}\n"
            f"fast_flush_cluster_members = {' '.join(FLEET)}\n")


def nats_round_trip(samples=100):
    """Seconds for a request and its answer between two clients of the NATS server (two trips
    through it), p50: raw protocol over TCP, a pause between samples as between probes."""
    def client():
        s = socket.create_connection(("127.0.0.1", NATS_PORT), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = s.makefile("rb")
        f.readline()
        s.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
        f.readline()
        return s, f
    (a, fa), (b, fb) = client(), client()
    b.sendall(b"SUB bench.request 1\r\nPING\r\n")
    fb.readline()
    a.sendall(b"SUB bench.answer 1\r\nPING\r\n")
    fa.readline()
    times = []
    for _ in range(samples):
        t = time.perf_counter()
        a.sendall(b"PUB bench.request 1\r\nq\r\n")
        fb.readline(), fb.readline()
        b.sendall(b"PUB bench.answer 1\r\na\r\n")
        fa.readline(), fa.readline()
        times.append(time.perf_counter() - t)
        time.sleep(0.02)
    a.close(), b.close()
    return statistics.median(times)


def cluster_row(base, n, probes, settle, etrn, wait_until, sink_port):
    """Three nodes holding n messages each, Spread(3n) dealt out over them; ETRN at the first for
    regular domains."""
    nats = subprocess.Popen(["nats-server", "-a", "127.0.0.1", "-p", str(NATS_PORT)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nodes = [Node(f"{base}/{name}", port, sink_port, name) for name, port in zip(FLEET, FLEET_PORTS)]
    spread = Spread(n * len(nodes))
    try:
        wait_port(NATS_PORT)
        for node in nodes:
            node.fresh(cluster_main)
            listening = LogTail(node.maillog, f"node {node.node} listening on")
            node.start()
            wait_until(f"{node.node} joined NATS", lambda: listening.count() > 0, 60, poll=0.05)
        fill_s = 0.0
        deferred = [node.log_tail("status=deferred") for node in nodes]
        for k, node in enumerate(nodes):
            fill_s += fill(node.port, n, (k, len(nodes)))
        for node, count in zip(nodes, deferred):
            wait_deferred(node, count, n, wait_until)
        settle()
        rtt = nats_round_trip()
        srv = sink.start(sink_port, pipelining=True)
        first = nodes[0]
        first.copies = 1
        try:
            row = summary(probe(first, spread, srv, etrn, wait_until, probes))
        finally:
            srv.shutdown()
            srv.server_close()
        row.update(nodes=len(nodes), per_node=n, fill_rate=n * len(nodes) / fill_s, nats_round_trip_ms=rtt * 1000)
    finally:
        for node in nodes:
            node.stop()
        nats.terminate()
        nats.wait()
    print(f"  fleet of {len(nodes)} x {n}: ETRN at {FLEET[0]}: reply p50 {row['reply_p50']:.2f} p99 {row['reply_p99']:.2f} ms, "
          f"last p50 {row['last_p50']:.1f} p99 {row['last_p99']:.1f} ms ({row['replies']}); a NATS request and answer {row['nats_round_trip_ms']:.2f} ms", flush=True)
    return row


def run(systems, args, base, start_empty, settle, etrn, wait_until, sink_port, drain_rows):
    """The --scale run: the rows per size (Postfix up to 100k unless `args.postfix_million`), the
    big-customer rows and the fleet row. Returns them for results.json."""
    sizes = QUICK_SIZES if args.quick else SIZES
    probes = QUICK_PROBES if args.quick else PROBES
    out = {"Postern": {}, "Postfix": {}}
    print("a big customer drains: ETRN for one site with k messages", flush=True)
    drained = drain_rows(systems)
    for n in sizes:
        print(f"one node at {n:,} queued over {n // 10:,} domains", flush=True)
        for sysm in systems:
            if sysm.name == "Postfix" and n > 100000 and not args.postfix_million:
                continue
            out[sysm.name][n] = size_row(sysm, n, probes, start_empty, settle, etrn, wait_until, sink_port)
            discard(sysm, n)
    cluster = fleet(args, base, settle, etrn, wait_until, sink_port)
    return {"sizes": out, "cluster": cluster, "quick": args.quick, "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, drained


def fleet(args, base, settle, etrn, wait_until, sink_port):
    """The fleet row of the run (also alone: `bench/run --only fleet`)."""
    n = QUICK_CLUSTER_SIZE if args.quick else CLUSTER_SIZE
    print(f"a fleet of {len(FLEET)} nodes on NATS, {n:,} queued at each", flush=True)
    return cluster_row(f"{base}/fleet", n, QUICK_PROBES if args.quick else PROBES, settle, etrn, wait_until, sink_port)


def discard(sysm, n):
    """Delete a measured queue and let the disk finish with it: deleting a big queue keeps the
    disk writing well after `sync` returns."""
    sysm.stop()
    subprocess.run(["rm", "-rf", sysm.base], check=True)
    os.sync()
    time.sleep(min(60, 5 + n / 20000))


def rss(row, name):
    return row["daemons"].get(name, [0.0, 0])[0]


def by_size(pe, pf):
    """(N, system, row) for each size, Postern's row first, the sizes a system has only."""
    for n in sorted(pe):
        for name, rows in (("Postern", pe), ("Postfix", pf)):
            if n in rows:
                yield n, name, rows[n]


def report(res):
    """The section for BENCHMARKS.md, or no lines."""
    up = res.get("scale_up")
    if not up:
        return []
    sizes = {name: {int(n): r for n, r in rows.items()} for name, rows in up["sizes"].items()}
    pe, pf = sizes["Postern"], sizes.get("Postfix", {})
    probes = pe[min(pe)]["probes"]
    L = ["", "## 7. Scale up and out (`bench/run --scale`)", "",
         f"Written by `bench/run --scale{' --quick' if up['quick'] else ''}` on {up['when']}. Each queue of N messages spans N/10 domains with a skewed "
         f"spread: {BIG_SITES} big customers hold N/100 messages each (10,000 at a million), the other domains 9 or 10 each. It is filled over SMTP by "
         f"{FILL_CLIENTS} client processes that pipeline whole transactions, with the sink down; `{HOLD_MAIN.strip()}` in both main.cf files keeps "
         "the queue managers from retrying it during the measurements. Then, on a settled disk and with the sink up: ETRN for "
         f"{probes} regular domains, one at a time (reply time, and time from the reply to "
         "the domain's last message at the sink; p50 and p99); before those, on the busy machine right after the last deferral (the disk still writing "
         f"back), {BUSY_PROBES} more; ETRN for one big customer; a restart (`postfix stop`, `postfix start`, time until smtpd "
         "answers, and at once an ETRN for a domain not probed yet, whose mail must arrive complete, for Postern while its flush still reconciles its index "
         "with the deferred queue). Memory and descriptors: resident set and open files of each daemon after the fill, the processes of one name added up. "
         "Postfix at a million is the separate long run `bench/run --scale --postfix-million`; without it the Postfix column stops at 100k.", "",
         "| N queued | system | fill msg/s | ETRN reply p50 / p99 ms | last msg p50 / p99 ms | busy: reply p50 / p99, last p50 ms | big customer: k, last ms, msg/s | restart: smtpd answers after s; ETRN reply / last ms | reconciliation: messages, read s, merged s, during it? |",
         "|---|---|---|---|---|---|---|---|---|"]
    for n, name, r in by_size(pe, pf):
        if "when" in r:
            name += f" (the --postfix-million run of {r['when']})"
        rs = r["restart"]
        rec = (f"{rs['reconcile_messages']:,}, {rs['reconcile_read_s']:.1f}, {rs['reconcile_merge_s']:.1f}, "
               f"{'yes' if rs['during_reconciliation'] else 'no (it was done)'}") if "reconcile_messages" in rs else "n/a"
        b = r["busy"]
        L.append(f"| {n:,} | {name} | {r['fill_rate']:.0f} | {r['reply_p50']:.2f} / {r['reply_p99']:.2f} | {r['last_p50']:.1f} / {r['last_p99']:.1f} | "
                 f"{b['reply_p50']:.2f} / {b['reply_p99']:.2f}, {b['last_p50']:.1f} | {r['big_k']:,}, {r['big_last_ms']:.0f}, {r['big_rate']:.0f} | {rs['start_s']:.1f}; {rs['reply_ms']:.2f} / {rs['last_ms']:.1f} | {rec} |")
    L += ["", "Memory (resident MB) and open descriptors of the daemons after the fill:", "",
          "| N queued | system | master | smtpd | qmgr | flush | smtp | all |", "|---|---|---|---|---|---|---|---|"]
    for n, name, r in by_size(pe, pf):
        d = r["daemons"]
        cell = lambda p: f"{d[p][0]:.1f} ({d[p][1]})" if p in d else "-"
        total = sum(v[0] for v in d.values())
        L.append(f"| {n:,} | {name} | {cell('master')} | {cell('smtpd')} | {cell('qmgr')} | {cell('flush')} | {cell('smtp')} | {total:.1f} |")
    lo, hi = min(pe), max(pe)
    if hi > lo:
        per = (hi - lo) / 100000
        L.append("")
        L.append(f"Per 100k queued messages (from {lo:,} to {hi:,}), Postern's flush grows by {(rss(pe[hi], 'flush') - rss(pe[lo], 'flush')) / per:.1f} MB and its qmgr "
                 f"by {(rss(pe[hi], 'qmgr') - rss(pe[lo], 'qmgr')) / per:.1f} MB; the restart's reconciliation at {hi:,} left flush at "
                 f"{rss(pe[hi]['restart'], 'flush'):.1f} MB and qmgr at {rss(pe[hi]['restart'], 'qmgr'):.1f} MB.")
    c = up.get("cluster")
    if c:
        one = pe.get(c["per_node"])
        L += ["", f"The fleet: {c['nodes']} Postern nodes on this machine, each with its own ports and a queue of {c['per_node']:,} messages, their flush daemons "
              f"joined by a `nats-server` the run starts. They hold the spread of {c['per_node'] * c['nodes']:,} between them, every domain's mail dealt out "
              f"over the {c['nodes']} as a load balancer deals it, so that a domain has as much mail as in the one-node row of {c['per_node']:,}. ETRN at the first "
              f"node for regular domains releases each domain's mail at all {c['nodes']} (the reply waits for the other nodes' answers); time to the domain's last "
              f"message from any node. Fill: {c['fill_rate']:.0f} msg/s. A NATS request and its answer between two plain clients of the same server took "
              f"{c['nats_round_trip_ms']:.2f} ms (p50) in this run: what a reply that waits for the other nodes adds to one node's reply at the least.", "",
              "| queue | ETRN reply p50 / p99 ms | last msg p50 / p99 ms | reply text |", "|---|---|---|---|",
              f"| fleet, {c['nodes']} x {c['per_node']:,} | {c['reply_p50']:.2f} / {c['reply_p99']:.2f} | {c['last_p50']:.1f} / {c['last_p99']:.1f} | {'; '.join(c['replies'])} |"]
        if one:
            L.append(f"| one node, {c['per_node']:,} | {one['reply_p50']:.2f} / {one['reply_p99']:.2f} | {one['last_p50']:.1f} / {one['last_p99']:.1f} | {'; '.join(one['replies'])} |")
    L += ["", "![Time to the last message against queue size and against k](bench/scale.png)", ""]
    return L


def targets(res):
    """(target, figure, met) for issue 15 items 1, 3 and 4, when there are figures."""
    up = res.get("scale_up")
    if not up:
        return []
    pe = {int(n): r for n, r in up["sizes"]["Postern"].items()}
    lo, hi = min(pe), max(pe)
    growth = pe[hi]["last_p50"] / pe[lo]["last_p50"]
    reply_growth = pe[hi]["reply_p50"] / pe[lo]["reply_p50"]
    worst = max(r["reply_p50"] for r in pe.values())
    out = [(f"scale: time to the last message at {hi:,} at most 1.5x the {lo:,} figure", f"{growth:.2f}x", growth <= 1.5),
           (f"scale: ETRN reply at {hi:,} at most 1.5x the {lo:,} figure", f"{reply_growth:.2f}x", reply_growth <= 1.5),
           ("scale: ETRN reply p50 at most 0.5 ms at every size", f"at most {worst:.2f} ms", worst <= 0.5)]
    pf = {int(n): r for n, r in up["sizes"].get("Postfix", {}).items()}
    # Measured in this run by both systems (not a Postfix row kept from a longer run).
    both = sorted(n for n in set(pe) & set(pf) if "when" not in pf[n])
    if both:
        n = both[-1]
        a, b = pe[n]["busy"]["reply_p50"], pf[n]["busy"]["reply_p50"]
        out.append((f"busy machine at {n:,}: ETRN reply never slower than Postfix's (p50)", f"{a:.2f} against {b:.2f} ms", a <= b))
    rs = pe[hi]["restart"]
    if "during_reconciliation" in rs:
        out.append((f"restart at {hi:,}: ETRN correct while the index is reconciled", "ETRN answered and its mail arrived " +
                    ("during the reconciliation" if rs["during_reconciliation"] else "(the reconciliation had already ended)"), rs["during_reconciliation"]))
    c, one = up.get("cluster"), None
    if c:
        one = pe.get(c["per_node"])
    if c and one:
        for what, key in (("ETRN reply", "reply_p50"), ("last delivery", "last_p50")):
            r = c[key] / one[key]
            floor = f"; one node's reply and a NATS round trip: {one[key] + c['nats_round_trip_ms']:.2f} ms" if key == "reply_p50" else ""
            out.append((f"fleet of {c['nodes']} x {c['per_node']:,}: {what} within 1.5x of one node", f"{c[key]:.2f} against {one[key]:.2f} ms ({r:.2f}x{floor})", r <= 1.5))
    return out


def plot(res, drained, path):
    up = res.get("scale_up")
    if not up:
        return False
    plt = plots.pyplot()
    if plt is None:
        return False
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, marker, color in plots.SERIES:
        rows = {int(n): r for n, r in up["sizes"].get(name, {}).items()}
        ns = sorted(rows)
        if ns:
            a.plot(ns, [rows[n]["last_p50"] for n in ns], marker=marker, color=color, label=f"{name}: last message (p50)")
            a.plot(ns, [rows[n]["reply_p50"] for n in ns], marker=marker, linestyle=":", color=color, alpha=0.7, label=f"{name}: ETRN reply (p50)")
        ks = sorted(int(k) for k in (drained or {}).get(name, {}))
        if ks:
            d = {int(k): r for k, r in drained[name].items()}
            b.plot(ks, [d[k]["last_ms"] for k in ks], marker=marker, color=color, label=f"{name}: last message")
    a.set_xlabel("deferred messages in the queue (one node)")
    a.set_ylabel("milliseconds after ETRN")
    a.set_title("A regular domain (9-10 messages) against queue size")
    b.set_xlabel("k: messages queued for the site")
    b.set_ylabel("milliseconds after ETRN")
    b.set_title("A big customer: one site with k messages")
    return plots.finish(fig, [a, b], path)
