//! Test harness: a temporary Postern installation (etc/ and a spool) per test, the real
//! `master` started through the real `postfix` command, and helpers to wait for log lines,
//! sockets and processes. Assertions are on behaviour, never on timing; waits are bounded.

#![allow(dead_code)]

pub mod dnsmasq;
pub mod dovecot;
pub mod nats;
pub mod pki;
pub mod postfix;
pub mod real_postfix;
pub mod smtp;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::ipc::Protocol;
use common::ipc::client::call_blocking;
use common::ipc::flush::{FlushProtocol, FlushReply, FlushRequest};

/// How long any wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Where cargo put the binaries: the test executable lives in `target/<profile>/deps`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target directory");
    let p = dir.join(name);
    assert!(p.exists(), "{} is missing: run `cargo build --workspace --bins` first", p.display());
    p
}

/// Run a command line program that takes the configuration from `MAIL_CONFIG` (sendmail,
/// mailq), feeding it `stdin`.
pub fn run_env(program: &str, etc: &Path, args: &[&str], stdin: &[u8]) -> Output {
    use std::process::Stdio;
    // NAME would be sendmail's full name: tests see the password file's.
    let mut child = Command::new(bin(program))
        .env("MAIL_CONFIG", etc)
        .env_remove("NAME")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().expect("stdin").write_all(stdin).expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// Run a Postern command line program with `-c <etc>`.
pub fn run_cli(program: &str, etc: &Path, args: &[&str]) -> Output {
    Command::new(bin(program)).arg("-c").arg(etc).args(args).output().expect("run command")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Tests that act as other users, mount file systems or bind port 25 need root (CI runs as
/// root): without it they fail with `why`, never pass silently.
pub fn require_root(why: &str) {
    assert!(nix::unistd::geteuid().is_root(), "{why}: run the suite as root (tests/run, as CI does)");
}

/// Poll `f` until it returns `Some`, or panic with `what` after [`WAIT`].
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A temporary installation.
pub struct Install {
    pub dir: tempfile::TempDir,
    pub etc: PathBuf,
    pub spool: PathBuf,
    pub maillog: PathBuf,
    started: bool,
}

/// The default master.cf of a test: the flush service only.
pub const FLUSH_ONLY: &str = "flush unix n - n 1000? 0 flush\n";

/// The whole mail system, smtpd on `port`.
pub fn mail_system_master_cf(port: u16) -> String {
    format!(
        "127.0.0.1:{port} inet n - n - - smtpd\nqmgr unix n - n 300 1 qmgr\nsmtp unix - - n - - smtp\npickup unix n - n 60 1 pickup\nshowq unix n - n - - showq\n{FLUSH_ONLY}"
    )
}

fn user_name() -> String {
    let uid = nix::unistd::geteuid();
    nix::unistd::User::from_uid(uid).ok().flatten().map_or_else(|| "root".to_string(), |u| u.name)
}

impl Install {
    /// A fresh installation with `main_extra` appended to the generated main.cf.
    pub fn new(main_extra: &str, master_cf: &str) -> Install {
        let dir = tempfile::Builder::new().prefix("postern-test").tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let etc = dir.path().join("etc");
        let spool = dir.path().join("spool");
        let maillog = dir.path().join("maillog");
        std::fs::create_dir(&etc).expect("mkdir etc");
        let main = format!(
            "queue_directory = {}\nmaillog_file = {}\nmail_owner = {}\ninet_interfaces = 127.0.0.1\nservice_throttle_time = 2s\n{main_extra}",
            spool.display(),
            maillog.display(),
            user_name()
        );
        std::fs::write(etc.join("main.cf"), main).expect("write main.cf");
        std::fs::write(etc.join("master.cf"), master_cf).expect("write master.cf");
        Install { dir, etc, spool, maillog, started: false }
    }

    /// A whole mail system relaying everything to a sink on `sink_port`; returns it with the
    /// smtpd port.
    pub fn mail_system(main_extra: &str, sink_port: u16) -> (Install, u16) {
        let port = smtp::free_port();
        let main =
            format!("relayhost = [127.0.0.1]:{sink_port}\nrelay_domains = customer.example, other.example, example.test\n{main_extra}");
        let mut inst = Install::new(&main, &mail_system_master_cf(port));
        inst.start();
        (inst, port)
    }

    /// Make the services run as `nobody` (the master must run as root): `mail_owner = nobody`,
    /// and the daemon programs copied where that user can reach them.
    pub fn run_services_as_nobody(&self) {
        let programs = self.dir.path().join("libexec");
        std::fs::create_dir_all(&programs).expect("mkdir libexec");
        for p in ["master", "smtpd", "qmgr", "smtp", "pickup", "showq", "flush"] {
            std::fs::copy(bin(p), programs.join(p)).expect("copy program");
        }
        let mut main = std::fs::read_to_string(self.etc.join("main.cf")).expect("read main.cf");
        main.push_str(&format!("mail_owner = nobody\ndaemon_directory = {}\n", programs.display()));
        std::fs::write(self.etc.join("main.cf"), main).expect("write main.cf");
    }

    /// Log lines containing `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// Files in a queue (walking hash directories).
    pub fn queue_files(&self, queue: &str) -> Vec<PathBuf> {
        fn walk(d: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() { walk(&p, out) } else { out.push(p) }
            }
        }
        let mut out = Vec::new();
        walk(&self.spool.join(queue), &mut out);
        out
    }

    pub fn cli(&self, program: &str, args: &[&str]) -> Output {
        run_cli(program, &self.etc, args)
    }

    /// `postfix start`, which returns once the master reports its services ready.
    pub fn start(&mut self) {
        let out = self.cli("postfix", &["start"]);
        assert!(out.status.success(), "postfix start failed: {}\n{}", text(&out.stderr), self.log());
        self.started = true;
    }

    pub fn stop(&mut self) {
        if self.started {
            let out = self.cli("postfix", &["stop"]);
            assert!(out.status.success(), "postfix stop failed: {}", text(&out.stderr));
            self.started = false;
        }
    }

    /// A crash of the whole node: SIGKILL to the master and every daemon at once, no clean-up
    /// by anyone; returns once they are all gone. `start` brings the node back.
    pub fn kill_9(&mut self) {
        let killed = self.sigkill_all();
        wait_for("the killed processes gone", || killed.iter().all(|&p| !alive(p)).then_some(()));
        self.started = false;
    }

    /// SIGKILL to the master and its children; returns their pids.
    fn sigkill_all(&self) -> Vec<i32> {
        let Some(pid) = self.master_pid() else { return Vec::new() };
        let all: Vec<i32> = std::iter::once(pid).chain(children_of(pid).into_iter().map(|(k, _)| k)).collect();
        for &p in &all {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
        }
        all
    }

    pub fn master_pid(&self) -> Option<i32> {
        common::pidfile::running_pid(&self.spool.join("pid/master.pid")).map(|p| p as i32)
    }

    /// The master's children: (pid, argv[0]).
    pub fn children(&self) -> Vec<(i32, String)> {
        let Some(master) = self.master_pid() else { return Vec::new() };
        children_of(master)
    }

    /// The pid of the child whose argv starts with `argv0 -n service`.
    pub fn child_pid(&self, service: &str) -> Option<i32> {
        self.children().into_iter().find(|(_, cmd)| cmd.split(' ').nth(2) == Some(service)).map(|(p, _)| p)
    }

    /// The pid of the child running `program` (its argv[0]).
    pub fn program_pid(&self, program: &str) -> Option<i32> {
        self.children().into_iter().find(|(_, cmd)| cmd.split(' ').next() == Some(program)).map(|(p, _)| p)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.maillog).unwrap_or_default()
    }

    /// Wait until the mail log has a line containing `needle`; returns that line.
    pub fn wait_log(&self, needle: &str) -> String {
        wait_for(&format!("log line {needle:?}"), || self.log().lines().find(|l| l.contains(needle)).map(str::to_string))
    }

    pub fn socket(&self, class: &str, name: &str) -> PathBuf {
        self.spool.join(class).join(name)
    }

    /// One request to the flush service.
    pub fn flush(&self, req: FlushRequest) -> FlushReply {
        call_blocking::<FlushProtocol>(&self.socket("public", "flush"), &req, WAIT).expect("flush request")
    }

    pub fn send_site(&self, site: &str) -> FlushReply {
        self.flush(FlushRequest::SendSite { site: site.into(), subdomains: false })
    }
}

impl Drop for Install {
    fn drop(&mut self) {
        // Never leave a test's processes behind, even when the test failed (no waiting: a
        // panic here would abort the test run).
        self.sigkill_all();
    }
}

/// Children of `pid` by scanning /proc: (pid, command line with spaces).
pub fn children_of(pid: i32) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else { return out };
    for e in rd.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        // Fields after the parenthesized command: state, ppid, ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") {
            continue;
        }
        if fields.get(1).and_then(|f| f.parse::<i32>().ok()) == Some(pid) {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            let cmd = text(&cmd).trim_end_matches('\0').replace('\0', " ");
            out.push((p, cmd));
        }
    }
    out
}

/// True while a process exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, r)| !r.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A raw connection to a service socket: read the hello, then write arbitrary bytes.
pub struct RawClient {
    pub stream: UnixStream,
}

impl RawClient {
    pub fn connect(path: &Path) -> RawClient {
        let stream = UnixStream::connect(path).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut c = RawClient { stream };
        let hello: common::ipc::Hello = c.read_frame().expect("hello");
        assert_eq!(hello, FlushProtocol::hello());
        c
    }

    pub fn write(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    pub fn read_frame<T: serde::de::DeserializeOwned>(&mut self) -> Option<T> {
        common::ipc::frame::read_frame_blocking(&mut self.stream, common::ipc::MAX_FRAME).ok().flatten()
    }

    /// True when the server closed the connection.
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        // A close with our bytes still unread reaches us as a reset rather than end of file.
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    }
}
