//! A real Dovecot (Debian's dovecot-core) for the SASL tests: a private instance with its own
//! base_dir in a temporary directory, no IMAP/POP3 listeners, only the auth service with a
//! client listener where smtpd expects it, and a passwd-file of test users.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::wait_for;

pub struct Dovecot {
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
    /// `dovecot -F`: in the foreground, our child, so that it ends with the test.
    child: std::process::Child,
}

impl Dovecot {
    /// Start Dovecot with `users` (passwd-file lines) and its auth client socket at `socket`.
    pub fn start(socket: &Path, users: &str) -> Dovecot {
        let dir = tempfile::Builder::new().prefix("dovecot-test").tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("users"), users).expect("write users");
        let conf = format!(
            "base_dir = {base}/run\nstate_dir = {base}/state\nlog_path = {base}/dovecot.log\nprotocols =\nssl = no\n\
             disable_plaintext_auth = no\nauth_mechanisms = plain login cram-md5\n\
             passdb {{\n  driver = passwd-file\n  args = {base}/users\n}}\n\
             userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home=/nonexistent\n}}\n\
             service auth {{\n  unix_listener {socket} {{\n    mode = 0666\n  }}\n}}\n",
            base = d.display(),
            socket = socket.display()
        );
        std::fs::write(d.join("dovecot.conf"), conf).expect("write dovecot.conf");
        let child = Command::new("dovecot")
            .arg("-F")
            .arg("-c")
            .arg(d.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dovecot is not installed (tests/run installs dovecot-core)");
        let mut dovecot = Dovecot { log: d.join("dovecot.log"), child, dir };
        wait_for("dovecot's auth socket", || {
            if let Ok(Some(status)) = dovecot.child.try_wait() {
                panic!("dovecot exited with {status}: {}", std::fs::read_to_string(&dovecot.log).unwrap_or_default());
            }
            socket.exists().then_some(())
        });
        dovecot
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM: its master stops its auth processes before it exits.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}
