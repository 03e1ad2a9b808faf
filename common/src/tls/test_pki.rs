//! Certificates for tests, made with the `openssl` command (Debian's openssl), so that no key
//! is ever in the tree. Only in test builds (the `test-pki` feature, which the daemons' and the
//! integration tests' dev-dependencies turn on).

use std::path::Path;
use std::process::Command;

/// The key options of every test key: ECDSA on P-256, unencrypted.
pub const EC_KEY: [&str; 5] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/// Run `openssl args` in `dir`; a failure fails the test with openssl's words.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl (Debian package openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A self-signed certificate `stem.pem` with its key `stem.key` in `dir`, for `/CN=cn`,
/// valid for two days.
pub fn self_signed(dir: &Path, stem: &str, cn: &str) {
    let (key, pem, subject) = (format!("{stem}.key"), format!("{stem}.pem"), format!("/CN={cn}"));
    let mut args = vec!["req", "-x509"];
    args.extend_from_slice(&EC_KEY);
    args.extend_from_slice(&["-days", "2", "-subj", &subject, "-keyout", &key, "-out", &pem]);
    openssl(dir, &args);
}

/// A certificate `leaf.pem` (key `leaf.key`, `/CN=cn`) signed by the CA `ca.pem`/`ca.key` in
/// `dir`, with `names` as its subjectAltName (`DNS:mx.test, IP:127.0.0.1`), and `key_args`
/// for its key ([`EC_KEY`], or e.g. `["-newkey", "rsa:2048", "-nodes"]`).
pub fn signed(dir: &Path, ca: &str, leaf: &str, cn: &str, names: &str, key_args: &[&str]) {
    let (key, csr, pem, subject) = (format!("{leaf}.key"), format!("{leaf}.csr"), format!("{leaf}.pem"), format!("/CN={cn}"));
    let mut args = vec!["req"];
    args.extend_from_slice(key_args);
    args.extend_from_slice(&["-subj", &subject, "-keyout", &key, "-out", &csr]);
    openssl(dir, &args);
    let ext = format!("{leaf}.ext");
    std::fs::write(dir.join(&ext), format!("subjectAltName = {names}\n")).expect("write the extension file");
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &["x509", "-req", "-in", &csr, "-CA", &ca_pem, "-CAkey", &ca_key, "-CAcreateserial", "-days", "2", "-extfile", &ext, "-out", &pem],
    );
}
