"""A big customer drains fast (issue 15 item 2): one site with k = 10, 100, 1,000 and 10,000
deferred messages; ETRN for it, and the time to its last message at the sink, its messages
per second, and how the system used its connections to the next hop (at most
`default_destination_concurrency_limit` = 20 at once, messages per connection, pipelined
transactions). The sink offers PIPELINING. Both systems hold the same queue: every k's site
at once (11,110 messages), each site measured alone.
"""

import time

import sink

KS = (10, 100, 1000, 10000)
CONCURRENCY_LIMIT = 20


def domain(k):
    return f"drain{k}.example.test"


def run(systems, start_empty, fill, etrn, wait_until, settle, sink_port):
    """The rows for each system: {name: {k: row}}."""
    out = {}
    for sysm in systems:
        start_empty(sysm)
        for k in KS:
            fill(sysm, k, 1, domain=domain(k))
        total = sum(KS)
        wait_until(f"{sysm.name}: {total} deferred", lambda: sysm.deferred_count() >= total, 120 + total / 50)
        settle()
        srv = sink.start(sink_port, pipelining=True)
        rows = {}
        try:
            for k in KS:
                d = "@" + domain(k)
                srv.connections.reset()
                reply, reply_s, t_reply = etrn(sysm.port, domain(k))
                wait_until(f"{sysm.name}: {domain(k)} delivered", lambda: srv.recorder.count(d) >= k, 60 + k / 20)
                last_s = max(srv.recorder.times(d)) - t_reply
                # Let the connections close (or idle out of the cache) before they are counted.
                time.sleep(0.5)
                rows[k] = {"reply": reply, "reply_ms": reply_s * 1000, "last_ms": last_s * 1000, "rate": k / last_s,
                           **srv.connections.summary()}
                r = rows[k]
                print(f"  {sysm.name:8} k={k:>5}: last {r['last_ms']:.1f} ms, {r['rate']:.0f} msg/s, {r['used']} connections, {r['opened']} new "
                      f"(at most {r['most_at_once']} open at once, {r['messages_per_connection']:.1f} messages each), "
                      f"{r['pipelined_share'] * 100:.0f}% pipelined", flush=True)
        finally:
            srv.shutdown()
            srv.server_close()
            sysm.stop()
        out[sysm.name] = rows
    return out


def report(drain):
    """The section for BENCHMARKS.md, or no lines."""
    if not drain or "Postern" not in drain:
        return []
    pe, pf = drain["Postern"], drain.get("Postfix", {})
    lines = ["", "### A big customer drains fast: ETRN for one site with k messages", "",
             f"One site with k deferred messages (all four sites queued at once, {sum(KS):,} messages, measured from k = 10 up); time from `ETRN` to its last "
             "message at a sink that offers PIPELINING, messages per second, and the connections to that next hop: how many carried "
             "the site's mail (of them newly opened: the rest were kept from the previous site's), the most open at once (the limit is "
             f"`default_destination_concurrency_limit` = {CONCURRENCY_LIMIT}), messages per connection, and the share of "
             "transactions whose RCPT arrived with MAIL (pipelined).", "",
             "| k | Postern to last | Postern msg/s | Postfix to last | Postfix msg/s | ratio | Postern connections: used (new), most open, msgs each, pipelined | Postfix connections |",
             "|---|---|---|---|---|---|---|---|"]

    def conns(r):
        return f"{r['used']} ({r['opened']}), {r['most_at_once']}, {r['messages_per_connection']:.1f}, {r['pipelined_share'] * 100:.0f}%"

    for k in sorted(pe, key=int):
        a, f = pe[k], pf.get(k)
        if f:
            lines.append(f"| {int(k):,} | {a['last_ms']:.1f} ms | {a['rate']:.0f} | {f['last_ms']:.1f} ms | {f['rate']:.0f} | "
                         f"{a['rate'] / f['rate']:.2f}x | {conns(a)} | {conns(f)} |")
        else:
            lines.append(f"| {int(k):,} | {a['last_ms']:.1f} ms | {a['rate']:.0f} | n/a | n/a | n/a | {conns(a)} | n/a |")
    return lines


def targets(drain):
    """(target, figure, met) for issue 15 item 2, when there are figures."""
    if not drain or "Postfix" not in drain or "Postern" not in drain:
        return []
    k = max(KS)
    pe, pf = drain["Postern"].get(str(k)) or drain["Postern"].get(k), drain["Postfix"].get(str(k)) or drain["Postfix"].get(k)
    if not pe or not pf:
        return []
    ratio = pe["rate"] / pf["rate"]
    worst = max(r["most_at_once"] for r in drain["Postern"].values())
    return [(f"k = {k:,}: at least 2x Postfix's messages per second", f"{pe['rate']:.0f} against {pf['rate']:.0f} msg/s ({ratio:.2f}x)", ratio >= 2),
            (f"never more than {CONCURRENCY_LIMIT} connections at once", f"at most {worst}", worst <= CONCURRENCY_LIMIT)]
