"""A threaded SMTP sink that records when each message arrived and for whom. Used where the
benchmark needs per-message arrival times (ETRN latency); bulk relay runs use Postfix's
smtp-sink instead. Started with `pipelining=True` it offers PIPELINING and also records how
the client used its connections: how many at once at most, messages per connection, and how
many transactions came pipelined (RCPT already sent with MAIL, before MAIL's reply)."""

import socketserver
import threading
import time


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.arrivals = []  # (time, [recipients])

    def add(self, rcpts):
        with self.lock:
            self.arrivals.append((time.time(), rcpts))

    def count(self, suffix=None):
        with self.lock:
            if suffix is None:
                return len(self.arrivals)
            return sum(1 for _, r in self.arrivals if any(x.endswith(suffix) for x in r))

    def times(self, suffix):
        with self.lock:
            return [t for t, r in self.arrivals if any(x.endswith(suffix) for x in r)]


class Connections:
    """How the client used its connections since the last reset: connections kept open from
    before the reset count as used when they carry a message."""

    def __init__(self):
        self.lock = threading.Lock()
        self.now = 0
        self.reset()

    def reset(self):
        with self.lock:
            self.most, self.opened = self.now, 0
            self.carried = {}  # connection -> messages since the reset
            self.transactions, self.pipelined = 0, 0

    def open(self):
        with self.lock:
            self.now += 1
            self.opened += 1
            self.most = max(self.most, self.now)

    def close(self):
        with self.lock:
            self.now -= 1

    def message(self, conn):
        with self.lock:
            self.carried[conn] = self.carried.get(conn, 0) + 1

    def transaction(self, pipelined):
        with self.lock:
            self.transactions += 1
            self.pipelined += pipelined

    def summary(self):
        with self.lock:
            used = len(self.carried)
            return {"opened": self.opened, "used": used, "most_at_once": self.most,
                    "messages_per_connection": sum(self.carried.values()) / used if used else 0.0,
                    "pipelined_share": self.pipelined / self.transactions if self.transactions else 0.0}


class Replies:
    """Replies held until the client's input is used up, then sent in one write, as a real
    server answers a pipelined group (Postfix's smtpd flushes when its read buffer is empty):
    one small write per reply would meet the client's delayed ACK and stall a pipelining
    client by tens of milliseconds per message."""

    def __init__(self, sock):
        self.sock = sock
        self.held = bytearray()

    def write(self, reply):
        self.held += reply

    def flush(self):
        if self.held:
            self.sock.sendall(self.held)
            self.held.clear()


class Lines:
    """CRLF lines from a socket, read in large chunks, so that what the client sent ahead
    (pipelined commands) can be seen; `replies`, when given, are sent before waiting for more."""

    def __init__(self, sock, replies=None):
        self.sock = sock
        self.replies = replies
        self.buf = b""

    def line(self):
        while b"\n" not in self.buf:
            if self.replies:
                self.replies.flush()
            chunk = self.sock.recv(65536)
            if not chunk:
                return b""
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line + b"\n"

    def ahead(self):
        return self.buf


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        conns = self.server.connections
        conns.open()
        try:
            self.session()
        finally:
            conns.close()

    def session(self):
        rec = self.server.recorder
        pipelining = self.server.pipelining
        w = Replies(self.connection)
        r = Lines(self.connection, w)
        w.write(b"220 sink.bench ESMTP\r\n")
        rcpts = []
        while True:
            line = r.line()
            if not line:
                return
            cmd = line.strip().upper()
            if cmd.startswith(b"EHLO") and pipelining:
                w.write(b"250-sink.bench\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif cmd.startswith(b"EHLO") or cmd.startswith(b"HELO"):
                w.write(b"250 sink.bench\r\n")
            elif cmd.startswith(b"MAIL"):
                rcpts = []
                self.server.connections.transaction(b"RCPT" in r.ahead().upper())
                w.write(b"250 2.1.0 Ok\r\n")
            elif cmd.startswith(b"RCPT"):
                rcpts.append(line.split(b":", 1)[1].strip().strip(b"<>").decode(errors="replace").lower())
                w.write(b"250 2.1.5 Ok\r\n")
            elif cmd == b"DATA":
                w.write(b"354 go ahead\r\n")
                while True:
                    d = r.line()
                    if not d or d == b".\r\n":
                        break
                rec.add(rcpts)
                self.server.connections.message(id(self))
                w.write(b"250 2.0.0 Ok: queued\r\n")
            elif cmd == b"QUIT":
                w.write(b"221 2.0.0 Bye\r\n")
                w.flush()
                return
            else:
                w.write(b"250 2.0.0 Ok\r\n")


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops SYNs when a sender opens 20 connections.
    request_queue_size = 256


def start(port, pipelining=False):
    srv = Server(("127.0.0.1", port), Handler)
    srv.recorder = Recorder()
    srv.connections = Connections()
    srv.pipelining = pipelining
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv
