"""The ODMR rows (RFC 2645, issue 14): a customer's k queued messages delivered back over its
own connection (Postern's `odmr` service: AUTH, `ATRN domain`, then the provider is the SMTP
client on that connection), beside the same k released by ETRN in both systems.

Each measured domain has exactly k messages queued among the rest of the queue (`o<k>` for
ATRN, `e<k>` for ETRN, so that no measurement finds its mail moved by another). The customer
here is a minimal SMTP server on the reversed connection that offers PIPELINING, answers 250
to everything and records when each message's final dot arrived. Every socket has a time
limit; the session is bounded by the provider's QUIT and by `k` messages.
"""

import base64
import os
import socket
import time

import sink

ODMR_PORT = 10366
USER, PASSWORD = "customer", "odmr-bench"
KS = (10, 100, 1000)
TIMEOUT = 60


def domain(prefix, k):
    return f"{prefix}{k}.example.test"


def postern_main():
    """main.cf lines for the provider: the built-in SASL type, and the customer's domains."""
    owned = ", ".join(f"{domain('o', k)}={USER}" for k in KS)
    return f"smtpd_sasl_type = passwd-file\nsmtpd_sasl_path = sasl-users\nsmtpd_etrn_login_maps = inline:{{{owned}}}\n"


def postern_master():
    return (f"127.0.0.1:{ODMR_PORT} inet n - n - - smtpd -o syslog_name=postfix/odmr -o smtpd_odmr_enable=yes"
            " -o smtpd_sasl_auth_enable=yes\n")


def write_users(etc):
    path = os.path.join(etc, "sasl-users")
    with open(path, "w") as f:
        f.write(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    os.chmod(path, 0o644)


class Lines(sink.Lines):
    """The provider's lines without their CRLF (it pipelines, so they are read in chunks); the
    provider closing the connection mid-session is an error."""

    def line(self):
        line = super().line()
        if not line:
            raise RuntimeError("the provider closed the connection")
        return line.rstrip(b"\r\n")


def atrn(k):
    """ATRN for o<k>; returns (ms from ATRN to the 250, ms to the last message's final dot,
    messages received)."""
    s = socket.create_connection(("127.0.0.1", ODMR_PORT), timeout=TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    r = Lines(s)

    def ask(cmd):
        s.sendall(cmd + b"\r\n")
        while True:
            line = r.line()
            if line[3:4] != b"-":
                return line

    r.line()
    ask(b"EHLO customer.bench")
    plain = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode())
    if not ask(b"AUTH PLAIN " + plain).startswith(b"235"):
        raise RuntimeError("ODMR AUTH failed")
    t = time.time()
    reply = ask(f"ATRN {domain('o', k)}".encode())
    t_reply = time.time()
    if not reply.startswith(b"250"):
        raise RuntimeError(f"ATRN: {reply!r}")
    s.sendall(b"220 customer.bench ready\r\n")
    got, last = 0, t_reply
    while True:
        cmd = r.line().upper()
        if cmd.startswith(b"EHLO"):
            s.sendall(b"250-customer.bench\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
        elif cmd.startswith(b"DATA"):
            s.sendall(b"354 go ahead\r\n")
            while r.line() != b".":
                pass
            got += 1
            last = time.time()
            s.sendall(b"250 2.0.0 Ok\r\n")
        elif cmd.startswith(b"QUIT"):
            s.sendall(b"221 2.0.0 Bye\r\n")
            break
        else:
            s.sendall(b"250 2.0.0 Ok\r\n")
        if got > k:
            raise RuntimeError(f"ATRN {domain('o', k)}: more than {k} messages")
    s.close()
    return (t_reply - t) * 1000, (last - t) * 1000, got


def rows(sysm, srv, etrn, wait_until):
    """Measure every k on a system whose queue holds the customer domains' mail and whose sink
    `srv` is up: ETRN for e<k>, and for Postern ATRN for o<k>. Returns (results, messages
    delivered to the ATRN customer)."""
    out, by_atrn = {}, 0
    for k in KS:
        d = domain("e", k)
        reply, _reply_s, t_reply = etrn(sysm.port, d)
        wait_until(f"{sysm.name}: {d} delivered", lambda: srv.recorder.count("@" + d) >= k, 60 + k / 10)
        row = {"etrn_last_ms": (max(srv.recorder.times("@" + d)) - t_reply) * 1000, "etrn_reply": reply}
        if sysm.name == "Postern":
            reply_ms, last_ms, got = atrn(k)
            if got != k:
                raise RuntimeError(f"ATRN {domain('o', k)}: {got} of {k} messages")
            row.update({"atrn_reply_ms": reply_ms, "atrn_last_ms": last_ms, "atrn_rate": k / (last_ms / 1000)})
            by_atrn += k
        out[k] = row
        print(f"  {sysm.name:8} k={k:>5}: ETRN last {row['etrn_last_ms']:.1f} ms"
              + (f", ATRN last {row['atrn_last_ms']:.1f} ms ({row['atrn_rate']:.0f} msg/s)" if "atrn_last_ms" in row else ""), flush=True)
        time.sleep(0.3)
    return out, by_atrn


def report(scale):
    """The ODMR table for BENCHMARKS.md (sizes that have ODMR figures), or no lines."""
    sizes = [n for n in sorted(scale, key=int) if "odmr" in scale[n].get("Postern", {})]
    if not sizes:
        return []
    lines = ["", "### ODMR (RFC 2645): a customer's k messages back over its own connection", "",
             "Time from the customer's `ATRN` to the last of its k messages over the reversed connection (Postern's odmr service; Postfix has no ODMR), "
             "and from `ETRN` to the last of k messages at the sink in both systems; messages per second over the one reversed connection.", "",
             "| queued | k | Postern ATRN to last | ATRN msg/s (one connection) | Postern ETRN to last | Postfix ETRN to last |", "|---|---|---|---|---|---|"]
    for n in sizes:
        pe = scale[n]["Postern"]["odmr"]
        pf = scale[n].get("Postfix", {}).get("odmr", {})
        for k in sorted(pe, key=int):
            a, f = pe[k], pf.get(k, {})
            fx = f"{f['etrn_last_ms']:.1f} ms" if f else "n/a"
            lines.append(f"| {int(n):,} | {int(k):,} | {a['atrn_last_ms']:.1f} ms | {a['atrn_rate']:.0f} | {a['etrn_last_ms']:.1f} ms | {fx} |")
    return lines
