//! The Debian package (pkg/build-deb): lintian finds no error in it, and it installs, starts
//! and delivers in a fresh Debian root made by debootstrap, where `man postqueue` opens
//! Postern's page.
//!
//! The root is a minbase debootstrap of this machine's suite. When tests/run sets
//! `POSTERN_TEST_CACHE` (a directory under target/), the finished root is kept there as a tar
//! and reused; otherwise nothing outlives the test's temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::harness::smtp::{Sink, free_port};
use crate::harness::{require_root, text, wait_for};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Build the package from the binaries the suite runs; returns its path.
fn build_deb(out: &Path) -> PathBuf {
    let run = Command::new(workspace_root().join("pkg/build-deb"))
        .args(["--debug", "--no-build", "-o"])
        .arg(out)
        .output()
        .expect("run pkg/build-deb");
    assert!(run.status.success(), "pkg/build-deb failed: {}{}", text(&run.stdout), text(&run.stderr));
    let deb = PathBuf::from(text(&run.stdout).trim());
    assert!(deb.is_file(), "pkg/build-deb printed {deb:?}");
    deb
}

fn ok(what: &str, out: Output) -> String {
    assert!(out.status.success(), "{what} failed ({}): {}{}", out.status, text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn package_has_no_lintian_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let deb = build_deb(tmp.path());
    let lintian = Command::new("lintian").args(["--fail-on", "error", "--tag-display-limit", "0"]).arg(&deb).output().unwrap();
    let report = text(&lintian.stdout);
    assert!(lintian.status.success() && !report.lines().any(|l| l.starts_with("E:")), "lintian: {report}{}", text(&lintian.stderr));
    let fields = ok("dpkg-deb -f", Command::new("dpkg-deb").arg("-f").arg(&deb).output().unwrap());
    for f in ["Provides: mail-transport-agent", "Conflicts: mail-transport-agent", "Replaces: mail-transport-agent"] {
        assert!(fields.lines().any(|l| l == f), "no `{f}` in:\n{fields}");
    }
    let files = ok("dpkg-deb -c", Command::new("dpkg-deb").arg("-c").arg(&deb).output().unwrap());
    for path in [
        "./usr/lib/postern/master",
        "./usr/lib/postern/smtpd",
        "./usr/sbin/postfix",
        "./usr/sbin/postqueue",
        "./usr/sbin/sendmail",
        "./usr/bin/mailq",
        "./usr/lib/sendmail -> ../sbin/sendmail",
        "./etc/postern/main.cf",
        "./etc/postern/master.cf",
        "./lib/systemd/system/postern.service",
        "./usr/share/man/man1/postqueue.1.gz",
        "./usr/share/man/man5/postconf.5.gz",
        "./usr/share/man/man8/flush.8.gz",
    ] {
        assert!(files.lines().any(|l| l.ends_with(&format!(" {path}"))), "{path} is not in the package:\n{files}");
    }
    let conffiles = ok("dpkg-deb --ctrl-tarfile", Command::new("dpkg-deb").args(["-I"]).arg(&deb).arg("conffiles").output().unwrap());
    assert_eq!(conffiles.lines().collect::<Vec<_>>(), ["/etc/postern/main.cf", "/etc/postern/master.cf"]);
}

/// A Debian root with /proc mounted. Dropping it kills what still runs inside, unmounts
/// /proc and only then removes the directory (failed or not).
struct Chroot {
    root: PathBuf,
    dir: Option<tempfile::TempDir>,
}

impl Chroot {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("chroot")
            .arg(&self.root)
            .args(args)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .expect("run chroot")
    }

    /// Processes whose root directory is this chroot.
    fn processes(&self) -> Vec<i32> {
        let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| std::fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r == self.root))
            .collect()
    }

    fn proc_mounted(&self) -> bool {
        let proc = self.root.join("proc");
        std::fs::read_to_string("/proc/self/mountinfo")
            .is_ok_and(|m| m.lines().any(|l| l.split(' ').nth(4).is_some_and(|p| Path::new(p) == proc)))
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        for pid in self.processes() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = Command::new("umount").arg("-l").arg(self.root.join("proc")).status();
        if self.proc_mounted() {
            // Never delete through a mounted /proc: leave the directory behind instead.
            if let Some(dir) = self.dir.take() {
                eprintln!("leaving {} behind: its /proc is still mounted", dir.keep().display());
            }
        }
    }
}

/// This machine's Debian suite (bookworm, ...).
fn suite() -> String {
    let release = std::fs::read_to_string("/etc/os-release").expect("read /etc/os-release");
    let codename = release.lines().find_map(|l| l.strip_prefix("VERSION_CODENAME=")).expect("VERSION_CODENAME in /etc/os-release");
    codename.trim_matches('"').to_string()
}

/// A fresh minbase root in `root`: from the cache's tar when there is one, else debootstrap.
fn make_root(root: &Path) {
    let suite = suite();
    let cache = std::env::var_os("POSTERN_TEST_CACHE").map(PathBuf::from);
    let tar = cache.as_ref().map(|c| c.join(format!("debootstrap-{suite}-minbase.tar")));
    if let Some(tar) = tar.as_ref().filter(|t| t.is_file()) {
        std::fs::create_dir_all(root).unwrap();
        ok("tar -x", Command::new("tar").args(["--numeric-owner", "-xpf"]).arg(tar).arg("-C").arg(root).output().unwrap());
        return;
    }
    let mirror = std::env::var("POSTERN_DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".to_string());
    ok(
        "debootstrap",
        Command::new("timeout")
            .args(["900", "debootstrap", "--variant=minbase", &suite])
            .arg(root)
            .arg(&mirror)
            .output()
            .expect("run debootstrap (tests/run installs it)"),
    );
    if let (Some(cache), Some(tar)) = (cache, tar) {
        std::fs::create_dir_all(&cache).unwrap();
        let partial = tar.with_extension("tar.partial");
        ok("tar -c", Command::new("tar").args(["--numeric-owner", "-cf"]).arg(&partial).arg("-C").arg(root).arg(".").output().unwrap());
        std::fs::rename(&partial, &tar).unwrap();
    }
}

#[test]
fn package_installs_starts_and_delivers_in_a_fresh_debian_root() {
    require_root("debootstrap, chroot and mount");
    let dir = tempfile::Builder::new().prefix("postern-deb").tempdir().unwrap();
    let deb = build_deb(&dir.path().join("out"));
    let root = dir.path().join("root");
    make_root(&root);
    let chroot = Chroot { root: root.clone(), dir: Some(dir) };
    ok("mount /proc", Command::new("mount").args(["-t", "proc", "proc"]).arg(root.join("proc")).output().unwrap());
    std::fs::copy("/etc/resolv.conf", root.join("etc/resolv.conf")).unwrap();
    std::fs::copy(&deb, root.join("tmp/postern.deb")).unwrap();

    // Install as an administrator would: apt resolves the dependencies (adduser).
    ok("apt-get update", chroot.run(&["timeout", "300", "apt-get", "update", "-qq"]));
    ok(
        "apt-get install",
        chroot.run(&["timeout", "300", "apt-get", "install", "-y", "-qq", "--no-install-recommends", "/tmp/postern.deb"]),
    );
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.lines().any(|l| l.starts_with("postfix:")), "postinst created no postfix user:\n{passwd}");
    assert!(root.join("var/spool/postern/maildrop").is_dir(), "postinst set up no spool");

    // smtpd on a free loopback port (the chroot shares this host's network), mail to a sink here.
    let sink = Sink::start(free_port());
    let smtpd_port = free_port();
    let master_cf = root.join("etc/postern/master.cf");
    let text_cf = std::fs::read_to_string(&master_cf).unwrap();
    assert!(text_cf.lines().any(|l| l.starts_with("smtp      inet ")), "no smtpd entry in the package's master.cf");
    std::fs::write(&master_cf, text_cf.replace("\nsmtp      inet ", &format!("\n127.0.0.1:{smtpd_port} inet "))).unwrap();
    ok(
        "postconf -e",
        chroot.run(&[
            "postconf",
            "-c",
            "/etc/postern",
            "-e",
            &format!("relayhost = [127.0.0.1]:{}", sink.port),
            "maillog_file = /var/log/postern.log",
            "myhostname = deb-test.example",
        ]),
    );
    ok("postfix start", chroot.run(&["postfix", "-c", "/etc/postern", "start"]));

    let message = root.join("tmp/message");
    std::fs::write(&message, "Subject: from the package\n\nDelivered by the installed Postern.\n").unwrap();
    let send = Command::new("chroot")
        .arg(&root)
        .args(["sendmail", "-f", "sender@deb-test.example", "rcpt@customer.example"])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(std::fs::File::open(&message).unwrap())
        .output()
        .unwrap();
    ok("sendmail", send);
    let got = wait_for("the message at the sink", || sink.messages().into_iter().next());
    assert_eq!(got.recipients, ["rcpt@customer.example"]);
    assert!(got.data.contains("Delivered by the installed Postern."), "{}", got.data);
    let log = std::fs::read_to_string(root.join("var/log/postern.log")).unwrap();
    assert!(log.contains("status=sent"), "no delivery in the log:\n{log}");

    // `man postqueue` with the root's manual pages opens Postern's page.
    let man = Command::new("man")
        .args(["-P", "cat", "postqueue"])
        .env("MANPATH", root.join("usr/share/man"))
        .env("MANWIDTH", "80")
        .output()
        .unwrap();
    let page = ok("man postqueue", man);
    assert!(page.contains("postqueue - Postern queue control"), "man postqueue showed:\n{page}");

    ok("postfix stop", chroot.run(&["postfix", "-c", "/etc/postern", "stop"]));
    wait_for("no process left in the root", || chroot.processes().is_empty().then_some(()));
}
