//! A private instance of the real Postfix from Debian's package for the differential tests of
//! the restriction lists (its own configuration, queue and data directories and log file, smtpd
//! on a loopback port, tables built with Postfix's postmap). The smtp client's tests use
//! [`super::postfix`], a next hop set up differently; the two share no code yet. It is stopped
//! when dropped, so a failing test does not leave it running.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::smtp::free_port;
use super::{text, wait_for};

pub struct RealPostfix {
    pub dir: tempfile::TempDir,
    pub etc: PathBuf,
    pub port: u16,
    pub maillog: PathBuf,
}

fn postconf(etc: &Path, args: &[&str]) {
    let out = Command::new("postconf").arg("-c").arg(etc).args(args).output().expect("run postconf");
    assert!(out.status.success(), "postconf {args:?}: {}", text(&out.stderr));
}

impl RealPostfix {
    /// Postfix with `main_extra` appended to a minimal main.cf; `files` are written to its
    /// configuration directory first and those in `postmap` indexed with Postfix's postmap.
    pub fn start(main_extra: &str, files: &[(&str, &str)], postmap: &[&str]) -> RealPostfix {
        super::require_root("a private Postfix instance");
        let dir = tempfile::Builder::new().prefix("postfix-ref").tempdir().expect("tempdir");
        let (etc, spool, data, maillog) =
            (dir.path().join("etc"), dir.path().join("spool"), dir.path().join("data"), dir.path().join("maillog"));
        for d in [&etc, &spool, &data] {
            std::fs::create_dir(d).expect("mkdir");
        }
        let chown = Command::new("chown").arg("postfix").arg(&data).status().expect("chown");
        assert!(chown.success());
        std::fs::copy("/etc/postfix/master.cf", etc.join("master.cf")).expect("copy master.cf");
        std::fs::copy("/etc/postfix/dynamicmaps.cf", etc.join("dynamicmaps.cf")).expect("copy dynamicmaps.cf");
        let port = free_port();
        let main = format!(
            "compatibility_level = 3.6\nqueue_directory = {}\ndata_directory = {}\nmaillog_file = {}\n\
             maillog_file_prefixes = /var, /dev/stdout, {}\nsyslog_name = postfix-ref\ninet_protocols = ipv4\n\
             inet_interfaces = 127.0.0.1\nalias_maps =\nalias_database =\nmydestination =\n\
             smtp_dns_support_level = disabled\n{main_extra}",
            spool.display(),
            data.display(),
            maillog.display(),
            dir.path().display()
        );
        std::fs::write(etc.join("main.cf"), main).expect("write main.cf");
        for (name, content) in files {
            std::fs::write(etc.join(name), content).expect("write table");
        }
        for name in postmap {
            let out = Command::new("postmap").arg("-c").arg(&etc).arg(etc.join(name)).output().expect("run postmap");
            assert!(out.status.success(), "postmap {name}: {}", text(&out.stderr));
        }
        postconf(&etc, &["-MX", "smtp/inet"]);
        postconf(&etc, &["-Me", &format!("127.0.0.1:{port}/inet=127.0.0.1:{port} inet n - n - - smtpd")]);
        postconf(&etc, &["-F", "*/*/chroot=n"]);
        let pf = RealPostfix { dir, etc, port, maillog };
        let out = Command::new("postfix").arg("-c").arg(&pf.etc).arg("start").env("MAIL_CONFIG", &pf.etc).output().expect("run postfix");
        assert!(out.status.success(), "postfix start: {}{}", text(&out.stdout), text(&out.stderr));
        wait_for("Postfix's smtpd to listen", || std::net::TcpStream::connect(("127.0.0.1", pf.port)).ok());
        pf
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.maillog).unwrap_or_default()
    }

    /// The first log line containing `needle`, once it is there.
    pub fn wait_log(&self, needle: &str) -> String {
        wait_for(&format!("Postfix log line {needle:?}"), || self.log().lines().find(|l| l.contains(needle)).map(str::to_string))
    }

    fn master_pid(&self) -> Option<i32> {
        let pid = std::fs::read_to_string(self.dir.path().join("spool/pid/master.pid")).ok()?;
        pid.trim().parse().ok()
    }
}

impl Drop for RealPostfix {
    fn drop(&mut self) {
        let pid = self.master_pid();
        let _ = Command::new("postfix").arg("-c").arg(&self.etc).arg("stop").env("MAIL_CONFIG", &self.etc).output();
        if let Some(pid) = pid {
            // Bounded: the master exits within a second or two of `postfix stop`.
            for _ in 0..200 {
                if !super::alive(pid) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
}
