//! A DNS server on loopback for a test: dnsmasq, authoritative for `example.test` (NODATA and
//! NXDOMAIN instead of REFUSED), with the records the test gives; killed when dropped.

use std::process::{Child, Command, Stdio};

use super::wait_for;

pub struct Dnsmasq(Child);

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Dnsmasq {
    /// dnsmasq on 127.0.0.1:`port` with `records` (dnsmasq options such as
    /// `--host-record=...`), once it answers.
    pub fn start(port: u16, records: &[&str]) -> Dnsmasq {
        let child = Command::new("dnsmasq")
            .args([
                "--no-daemon",
                "--conf-file=/dev/null",
                &format!("--port={port}"),
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--local=/example.test/",
                "--user=root",
            ])
            .args(records)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq is not installed (tests/run installs dnsmasq-base)");
        // Ready when it answers on its port.
        wait_for("dnsmasq", || {
            std::net::UdpSocket::bind("127.0.0.1:0").ok().and_then(|s| {
                s.set_read_timeout(Some(std::time::Duration::from_millis(100))).ok()?;
                let q = [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 4, b't', b'e', b's', b't', 0, 0, 1, 0, 1];
                s.send_to(&q, ("127.0.0.1", port)).ok()?;
                let mut buf = [0u8; 512];
                s.recv(&mut buf).ok().map(|_| ())
            })
        });
        Dnsmasq(child)
    }
}
