//! A real NATS server (Debian's `nats-server`) on a free loopback port, for the fast flush
//! cluster's tests; killed when dropped.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use super::smtp::free_port;
use super::wait_for;

pub struct Nats {
    pub port: u16,
    child: Option<Child>,
}

impl Nats {
    pub fn start() -> Nats {
        Nats::start_with(&[])
    }

    /// With more command line options (`--user`, `--pass`, ...).
    pub fn start_with(options: &[&str]) -> Nats {
        let port = free_port();
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(options)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server (Debian package nats-server; tests/run installs it)");
        let nats = Nats { port, child: Some(child) };
        wait_for("nats-server accepting", || TcpStream::connect(("127.0.0.1", port)).ok());
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kill the server (SIGKILL) and reap it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}
