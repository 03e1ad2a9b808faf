"""A threaded SMTP sink that records when each message arrived and for whom. Used where the
benchmark needs per-message arrival times (ETRN latency); bulk relay runs use Postfix's
smtp-sink instead."""

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


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        rec = self.server.recorder
        w = self.wfile
        w.write(b"220 sink.bench ESMTP\r\n")
        rcpts = []
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line.strip().upper()
            if cmd.startswith(b"EHLO") or cmd.startswith(b"HELO"):
                w.write(b"250 sink.bench\r\n")
            elif cmd.startswith(b"MAIL"):
                rcpts = []
                w.write(b"250 2.1.0 Ok\r\n")
            elif cmd.startswith(b"RCPT"):
                rcpts.append(line.split(b":", 1)[1].strip().strip(b"<>").decode(errors="replace").lower())
                w.write(b"250 2.1.5 Ok\r\n")
            elif cmd == b"DATA":
                w.write(b"354 go ahead\r\n")
                while True:
                    d = self.rfile.readline()
                    if not d or d == b".\r\n":
                        break
                rec.add(rcpts)
                w.write(b"250 2.0.0 Ok: queued\r\n")
            elif cmd == b"QUIT":
                w.write(b"221 2.0.0 Bye\r\n")
                return
            else:
                w.write(b"250 2.0.0 Ok\r\n")


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops SYNs when a sender opens 20 connections.
    request_queue_size = 256


def start(port):
    srv = Server(("127.0.0.1", port), Handler)
    srv.recorder = Recorder()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv
