"""The two systems under test: a private Postfix instance (Debian's package, its own config and
queue directories, as in ../shared/reference/postfix-behavior.md section 15) and Postern, both
on loopback, relaying everything to one sink port, with the same fast-flush settings."""

import os
import shutil
import socket
import subprocess
import time

import odmr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POSTERN_BIN = os.path.join(ROOT, "target", "release")
# The STARTTLS load client and sink (bench/tls-load), built with the rest of the workspace.
TLS_LOAD = os.path.join(POSTERN_BIN, "tls-load")
HZ = os.sysconf("SC_CLK_TCK")
# A cpuacct cgroup per system counts the CPU of every process and thread it ever ran, in
# nanoseconds; without one (no cgroup v1 cpuacct here), /proc tick counts are the fallback.
CPUACCT = "/sys/fs/cgroup/cpuacct"


def wait_port(port, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.recv(512)
                return True
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"nothing answers on port {port}")


def make_cert(directory):
    """A self-signed ECDSA P-256 certificate and key in `directory`, the same kind for both
    systems' STARTTLS and the TLS sink (the key readable by an unprivileged smtpd: a throwaway
    key). Returns (certificate file, key file)."""
    os.makedirs(directory, exist_ok=True)
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=bench.test", "-keyout", key, "-out", cert], check=True, capture_output=True)
    os.chmod(key, 0o644)
    return cert, key


def proc_stat(pid):
    """(utime+stime, cutime+cstime) in clock ticks, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])
    except (OSError, IndexError, ValueError):
        return None


def children(pid):
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            if int(rest[1]) == pid and rest[0] != "Z":
                out.append(int(p))
        except (OSError, IndexError, ValueError):
            pass
    return out


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class LogTail:
    """Counts lines containing `needle` that were appended to a log after it was created,
    reading only what is new at each call: polling it costs little CPU on the machine that
    is being measured."""

    def __init__(self, path, needle):
        self.path = path
        self.needle = needle.encode()
        self.offset = os.path.getsize(path) if os.path.exists(path) else 0
        self.partial = b""
        self.n = 0

    def count(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return self.n
        self.offset += len(chunk)
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()
        self.n += sum(1 for line in lines if self.needle in line)
        return self.n


class System:
    name = ""
    port = 0

    def __init__(self, base, port, sink_port):
        self.base = base
        self.port = port
        self.sink_port = sink_port
        self.etc = os.path.join(base, "etc")
        self.spool = os.path.join(base, "spool")
        self.maillog = os.path.join(base, "maillog")
        # Table sources that an `extra_main` function wrote in etc/; postmap builds them once
        # main.cf is written.
        self.tables = []

    def master_pid(self):
        try:
            with open(os.path.join(self.spool, "pid", "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def cgroup(self):
        path = os.path.join(CPUACCT, f"postern-bench-{self.name.lower()}")
        try:
            os.makedirs(path, exist_ok=True)
            return path
        except OSError:
            return None

    def enter_cgroup(self):
        """preexec_fn for the start command: the master and all it starts run in the cgroup."""
        cg = self.cgroup()
        if cg:
            with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

    def cpu_seconds(self):
        cg = self.cgroup()
        if cg:
            try:
                with open(os.path.join(cg, "cpuacct.usage")) as f:
                    return int(f.read()) / 1e9
            except (OSError, ValueError):
                pass
        return self.cpu_ticks() / HZ

    def cpu_ticks(self):
        """CPU used by the master, its live children and the children it has reaped."""
        m = self.master_pid()
        if m is None:
            return 0
        own = proc_stat(m) or (0, 0)
        total = own[0] + own[1]
        for c in children(m):
            st = proc_stat(c)
            if st:
                total += st[0]
        return total

    def rss_kb(self):
        m = self.master_pid()
        if m is None:
            return 0
        return rss_kb(m) + sum(rss_kb(c) for c in children(m))

    def deferred_count(self):
        n = 0
        for _dirpath, _dirs, files in os.walk(os.path.join(self.spool, "deferred")):
            n += len(files)
        return n

    def queue_count(self):
        n = 0
        for q in ("incoming", "active", "deferred", "maildrop", "hold"):
            for _dirpath, _dirs, files in os.walk(os.path.join(self.spool, q)):
                n += len([f for f in files if not f.startswith(".")])
        return n

    def log_tail(self, needle):
        """A counter of `needle` in mail log lines written from now on."""
        return LogTail(self.maillog, needle)

    def fresh(self, extra_main=""):
        """A new instance: empty queue, new certificate, main.cf with `extra_main` added (text,
        or a function of the system giving the text; it may write table sources in etc/ and
        name them in `tables`)."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
        os.makedirs(self.etc)
        os.chmod(self.base, 0o755)
        self.cert, self.key = make_cert(self.base)
        self.configure(extra_main)


    def extra(self, extra_main):
        return extra_main(self) if callable(extra_main) else extra_main

    def build_tables(self):
        for t in self.tables:
            self.postmap(t)
        self.tables = []

    def tls_main(self):
        """main.cf lines that offer STARTTLS, the same for both systems."""
        return f"smtpd_tls_security_level = may\nsmtpd_tls_cert_file = {self.cert}\nsmtpd_tls_key_file = {self.key}\n"

    def start(self):
        """Start and return the seconds until the SMTP port answers."""
        t = time.time()
        self.run_start()
        wait_port(self.port)
        return time.time() - t


COMMON_MAIN = """
relay_domains = example.test
relayhost = [127.0.0.1]:{sink}
inet_interfaces = 127.0.0.1
mynetworks = 127.0.0.0/8
myhostname = bench.test
mydestination =
maximal_backoff_time = 4000s
qmgr_message_active_limit = 20000
default_destination_concurrency_limit = 20
smtpd_junk_command_limit = 100000
smtpd_soft_error_limit = 100000
smtpd_hard_error_limit = 100000
"""


class Postfix(System):
    name = "Postfix"

    def configure(self, extra_main):
        # Postfix creates the queue's subdirectories, but not the queue directory itself.
        os.makedirs(self.spool)
        os.makedirs(os.path.join(self.base, "data"))
        shutil.chown(os.path.join(self.base, "data"), "postfix")
        for f in os.listdir("/etc/postfix"):
            if f == "master.cf" or f.startswith("dynamicmaps.cf"):
                src = os.path.join("/etc/postfix", f)
                if os.path.isfile(src):
                    shutil.copy(src, self.etc)
                elif os.path.isdir(src):
                    shutil.copytree(src, os.path.join(self.etc, f))
        main = f"""compatibility_level = 3.6
queue_directory = {self.spool}
data_directory = {self.base}/data
maillog_file = {self.maillog}
maillog_file_prefixes = /var, /dev/stdout, {self.base}
syslog_name = postfix-bench
inet_protocols = ipv4
alias_maps =
alias_database =
smtp_dns_support_level = disabled
""" + COMMON_MAIN.format(sink=self.sink_port) + self.tls_main() + self.extra(extra_main)
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(main)
        pc = ["postconf", "-c", self.etc]
        subprocess.run(pc + ["-MX", "smtp/inet"], check=True)
        subprocess.run(pc + ["-Me", f"127.0.0.1:{self.port}/inet=127.0.0.1:{self.port} inet n - n - - smtpd"], check=True)
        subprocess.run(pc + ["-F", "*/*/chroot=n"], check=True)
        self.build_tables()

    def env(self):
        return dict(os.environ, MAIL_CONFIG=self.etc)

    def run_start(self):
        subprocess.run(["postfix", "-c", self.etc, "start"], check=True, env=self.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       preexec_fn=self.enter_cgroup)

    def stop(self):
        if os.path.isdir(self.etc):
            subprocess.run(["postfix", "-c", self.etc, "stop"], env=self.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(100):
                if self.master_pid() is None or proc_stat(self.master_pid()) is None:
                    break
                time.sleep(0.05)

    def flush_all(self):
        subprocess.run(["postqueue", "-c", self.etc, "-f"], check=True, env=self.env())

    def postmap(self, table):
        subprocess.run(["postmap", "-c", self.etc, table], check=True, env=self.env())

    def version(self):
        return subprocess.run(["postconf", "-d", "-h", "mail_version"], capture_output=True, text=True).stdout.strip()


class Postern(System):
    name = "Postern"
    # Whether this instance offers the ODMR service (on its one fixed port).
    offers_odmr = True

    def configure(self, extra_main):
        main = f"""queue_directory = {self.spool}
maillog_file = {self.maillog}
mail_owner = postfix
""" + COMMON_MAIN.format(sink=self.sink_port) + self.tls_main() + (odmr.postern_main() if self.offers_odmr else "") + self.extra(extra_main)
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(main)
        odmr.write_users(self.etc)
        master = (odmr.postern_master() if self.offers_odmr else "") + f"""127.0.0.1:{self.port} inet n - n - - smtpd
qmgr unix n - n 300 1 qmgr
smtp unix - - n - - smtp
flush unix n - n 1000? 0 flush
pickup unix n - n 60 1 pickup
showq unix n - n - - showq
"""
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(master)
        self.build_tables()

    def cli(self, program):
        return os.path.join(POSTERN_BIN, program)

    def run_start(self):
        subprocess.run([self.cli("postfix"), "-c", self.etc, "start"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       preexec_fn=self.enter_cgroup)

    def stop(self):
        if os.path.isdir(self.etc):
            subprocess.run([self.cli("postfix"), "-c", self.etc, "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def flush_all(self):
        subprocess.run([self.cli("postqueue"), "-c", self.etc, "-f"], check=True)

    def postmap(self, table):
        subprocess.run([self.cli("postmap"), "-c", self.etc, table], check=True)

    def version(self):
        return subprocess.run([self.cli("postconf"), "-c", self.etc, "-d", "-h", "mail_version"], capture_output=True, text=True).stdout.strip()
