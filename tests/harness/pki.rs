//! A test PKI made by each test with the `openssl` command (Debian package openssl): a CA of
//! its own and server certificates it signs. No key is in the tree; two `Pki`s are two CAs
//! that do not trust each other.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::tls::test_pki;

/// A test CA and the files of server certificates it signed.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let pki = Pki { dir: tempfile::tempdir().expect("tempdir") };
        // Readable by a private Postfix's daemons too.
        std::fs::set_permissions(pki.dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        test_pki::self_signed(pki.dir.path(), "ca", "Postern Test CA");
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A server certificate `name`.pem with key `name`.key for `cn`, valid for 127.0.0.1,
    /// and `name`.chain: key, certificate and CA certificate in one file.
    pub fn server(&self, name: &str, cn: &str) {
        self.server_with_key(name, cn, &test_pki::EC_KEY);
    }

    /// The same with an RSA key of 2048 bits.
    pub fn rsa_server(&self, name: &str, cn: &str) {
        self.server_with_key(name, cn, &["-newkey", "rsa:2048", "-nodes"]);
    }

    pub fn server_with_key(&self, name: &str, cn: &str, key_args: &[&str]) {
        test_pki::signed(self.dir.path(), "ca", name, cn, &format!("DNS:{cn}, IP:127.0.0.1"), key_args);
        let files = [format!("{name}.key"), format!("{name}.pem"), "ca.pem".to_string()];
        let chain = files.iter().map(|f| std::fs::read_to_string(self.path(f)).unwrap()).collect::<String>();
        std::fs::write(self.path(&format!("{name}.chain")), chain).unwrap();
    }

    /// main.cf lines for STARTTLS with certificate `name`.
    pub fn main_cf(&self, name: &str, level: &str) -> String {
        format!(
            "smtpd_tls_security_level = {level}\nsmtpd_tls_cert_file = {}\nsmtpd_tls_key_file = {}\nsmtpd_tls_loglevel = 1\nsmtpd_tls_received_header = yes\n",
            self.path(&format!("{name}.pem")).display(),
            self.path(&format!("{name}.key")).display()
        )
    }
}
