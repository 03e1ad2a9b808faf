"""A load client that speaks STARTTLS, for the TLS rows (Postfix's smtp-source has no TLS).

`mail`: `sessions` concurrent sessions, each EHLO, STARTTLS, EHLO, then its share of `messages`
messages of `size` bytes (MAIL, RCPT, DATA, one at a time as smtp-source does), then QUIT.
`handshakes`: `sessions` concurrent clients, each repeating connect, EHLO, STARTTLS, EHLO, QUIT
until `count` sessions are done in all. Both return the seconds taken. The work is spread over
worker processes (Python's TLS and SMTP code would otherwise be bound to one core), each
running its sessions on threads; the certificate is not verified (both systems use the same
self-signed one). Every socket has a time limit, and the loads are bounded by their counts.
"""

import multiprocessing
import smtplib
import ssl
import threading
import time

TIMEOUT = 60
WORKERS = 2


def _context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _session(port, ctx):
    s = smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT)
    s.ehlo("tls-source.test")
    s.starttls(context=ctx)
    s.ehlo("tls-source.test")
    return s


def _mail_worker(port, sessions, per_session, body, errors):
    ctx = _context()

    def one(n):
        s = _session(port, ctx)
        try:
            for _ in range(n):
                refused = s.sendmail("sender@bench.test", ["u@d1.example.test"], body)
                if refused:
                    errors.value += 1
        finally:
            s.quit()

    threads = [threading.Thread(target=one, args=(n,)) for n in per_session[:sessions]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _handshake_worker(port, sessions, count):
    ctx = _context()
    left = [count]
    lock = threading.Lock()

    def loop():
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            _session(port, ctx).quit()

    threads = [threading.Thread(target=loop) for _ in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _split(total, parts):
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def mail(port, sessions, messages, size):
    """Seconds to send `messages` messages over `sessions` STARTTLS sessions."""
    line = b"X" * 76 + b"\r\n"
    body = b"Subject: tls bench\r\n\r\n" + line * max(1, size // len(line))
    per_session = _split(messages, sessions)
    errors = multiprocessing.Value("i", 0)
    per_worker = _split(sessions, WORKERS)
    t = time.time()
    procs, start = [], 0
    for n in per_worker:
        p = multiprocessing.Process(target=_mail_worker, args=(port, n, per_session[start:start + n], body, errors))
        start += n
        p.start()
        procs.append(p)
    for p in procs:
        p.join()
    if any(p.exitcode != 0 for p in procs) or errors.value:
        raise RuntimeError(f"tls_source: a worker failed ({errors.value} refused)")
    return time.time() - t


def handshakes(port, sessions, count):
    """Seconds for `count` STARTTLS sessions (connect, EHLO, STARTTLS, EHLO, QUIT)."""
    t = time.time()
    procs = []
    for n, c in zip(_split(sessions, WORKERS), _split(count, WORKERS)):
        p = multiprocessing.Process(target=_handshake_worker, args=(port, n, c))
        p.start()
        procs.append(p)
    for p in procs:
        p.join()
    if any(p.exitcode != 0 for p in procs):
        raise RuntimeError("tls_source: a worker failed")
    return time.time() - t
