"""Files touched: every queue file and directory of a spool that saw any inotify event (open,
read, write, attribute change, create, delete, rename) while a watch was running. This is the
"work done" measure of a flush in file terms: a system that scans its whole queue to find one
site's mail touches the whole queue; one that reads a per-site list touches that site's files."""

import ctypes
import ctypes.util
import os
import select
import struct
import threading

IN_ACCESS, IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x1, 0x2, 0x4, 0x8
IN_OPEN, IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x20, 0x40, 0x80, 0x100, 0x200
IN_ISDIR, IN_Q_OVERFLOW = 0x40000000, 0x4000
MASK = IN_ACCESS | IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_OPEN | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
EVENT = struct.Struct("iIII")

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


class Watch:
    """Watch every directory below `root` (and directories created meanwhile) until stop()."""

    def __init__(self, root, skip=("pid", "public", "private")):
        self.fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.dirs = {}
        self.touched = set()
        self._lock = threading.Lock()
        self.overflow = False
        self._stop = threading.Event()
        for dirpath, dirnames, _files in os.walk(root):
            if os.path.relpath(dirpath, root).split(os.sep)[0] in skip:
                dirnames[:] = []
                continue
            self._add(dirpath)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _add(self, path):
        wd = _libc.inotify_add_watch(self.fd, os.fsencode(path), MASK)
        if wd >= 0:
            self.dirs[wd] = path

    def _run(self):
        while not self._stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if ready:
                self._drain()
        self._drain()

    def _drain(self):
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            off = 0
            while off < len(buf):
                wd, mask, _cookie, length = EVENT.unpack_from(buf, off)
                name = buf[off + EVENT.size: off + EVENT.size + length].rstrip(b"\0").decode(errors="replace")
                off += EVENT.size + length
                if mask & IN_Q_OVERFLOW:
                    self.overflow = True
                    continue
                base = self.dirs.get(wd)
                if base is None:
                    continue
                path = os.path.join(base, name) if name else base
                with self._lock:
                    self.touched.add(path)
                if mask & IN_CREATE and mask & IN_ISDIR:
                    self._add(path)

    def reset(self):
        """Forget what was touched so far (the set-up walk itself reads every directory)."""
        with self._lock:
            self.touched.clear()
            self.overflow = False

    def stop(self):
        """Stop watching; returns the number of distinct files and directories touched."""
        self._stop.set()
        self._thread.join()
        os.close(self.fd)
        return len(self.touched)
