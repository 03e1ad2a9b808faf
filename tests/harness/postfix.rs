//! A private Postfix (Debian's postfix package, installed with "No configuration") as a next
//! hop for the smtp client's tests: its own main.cf, master.cf, queue and log in a temporary
//! directory, smtpd on a loopback port, relaying what it accepts to a harness sink. It runs as
//! Postfix does (master as root, daemons as `postfix`), so the tests that use it need root.
//! It is stopped when dropped, also when the test fails.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::smtp::free_port;
use super::{WAIT, require_root, text, wait_for};

pub struct Postfix {
    pub dir: tempfile::TempDir,
    pub etc: PathBuf,
    pub port: u16,
    pub maillog: PathBuf,
}

impl Postfix {
    /// Start Postfix with smtpd on 127.0.0.1 (a free port), relaying `customer.example` to
    /// 127.0.0.1:`sink_port`; `main_extra` is appended to its main.cf.
    pub fn start(sink_port: u16, main_extra: &str) -> Postfix {
        require_root("a private Postfix runs its master as root");
        let dir = tempfile::Builder::new().prefix("postern-postfix").tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let base = dir.path();
        let (etc, spool, data) = (base.join("etc"), base.join("spool"), base.join("data"));
        for d in [&etc, &spool, &data] {
            std::fs::create_dir(d).expect("mkdir");
        }
        let chown = Command::new("chown").arg("postfix").arg(&data).output().expect("chown");
        assert!(chown.status.success(), "chown postfix {}: {}", data.display(), text(&chown.stderr));
        // Debian's master.cf and the dynamic map list; everything else is ours.
        for f in ["master.cf", "dynamicmaps.cf"] {
            std::fs::copy(Path::new("/etc/postfix").join(f), etc.join(f))
                .unwrap_or_else(|e| panic!("/etc/postfix/{f}: {e} (Debian package postfix)"));
        }
        let maillog = base.join("maillog");
        let port = free_port();
        let main = format!(
            "compatibility_level = 3.6\nqueue_directory = {spool}\ndata_directory = {data}\nmaillog_file = {log}\n\
             maillog_file_prefixes = {base}\nsyslog_name = postfix-postern-test\ninet_protocols = ipv4\ninet_interfaces = 127.0.0.1\n\
             alias_maps =\nalias_database =\nsmtp_dns_support_level = disabled\nmyhostname = nexthop.postfix.test\nmydestination =\n\
             relay_domains = customer.example\nmynetworks = 127.0.0.0/8\nrelayhost = [127.0.0.1]:{sink_port}\n\
             smtpd_tls_loglevel = 1\n{main_extra}",
            spool = spool.display(),
            data = data.display(),
            log = maillog.display(),
            base = base.display(),
        );
        std::fs::write(etc.join("main.cf"), main).expect("write main.cf");
        let postconf = |args: &[&str]| {
            let out = Command::new("postconf").arg("-c").arg(&etc).args(args).output().expect("postconf");
            assert!(out.status.success(), "postconf {args:?}: {}", text(&out.stderr));
        };
        postconf(&["-MX", "smtp/inet"]);
        postconf(&["-Me", &format!("127.0.0.1:{port}/inet=127.0.0.1:{port} inet n - n - - smtpd")]);
        postconf(&["-F", "*/*/chroot=n"]);
        let pf = Postfix { dir, etc, port, maillog };
        let out = pf.command("start");
        assert!(out.status.success(), "postfix start: {}{}", text(&out.stdout), text(&out.stderr));
        wait_for("the private Postfix's smtpd", || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
        pf
    }

    fn command(&self, what: &str) -> std::process::Output {
        Command::new("postfix").arg("-c").arg(&self.etc).arg(what).env("MAIL_CONFIG", &self.etc).output().expect("run postfix")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.maillog).unwrap_or_default()
    }

    /// Wait for a line of Postfix's log that contains `needle`.
    pub fn wait_log(&self, needle: &str) -> String {
        wait_for(&format!("Postfix log line with {needle:?}"), || self.log().lines().find(|l| l.contains(needle)).map(str::to_string))
    }

    fn master_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.dir.path().join("spool/pid/master.pid")).ok()?;
        text.trim().parse().ok()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let pid = self.master_pid();
        let _ = self.command("stop");
        // Bounded: the master goes within a second or two; after WAIT we kill it.
        let deadline = Instant::now() + WAIT;
        while let Some(p) = pid {
            if !super::alive(p) {
                break;
            }
            if Instant::now() > deadline {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
