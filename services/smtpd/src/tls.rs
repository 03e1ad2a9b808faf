//! smtpd's TLS settings, from Postfix's parameters: the security level, the server certificate
//! and key (read again on every reload), the protocol versions, and what a finished handshake
//! is called in the log and in the `Received:` header.
//!
//! TLS is rustls with the ring provider: TLSv1.2 and TLSv1.3 only. Postfix's protocol syntax
//! (`>=TLSv1`, `!SSLv2, !SSLv3`, `TLSv1.2 TLSv1.3`, `<=TLSv1.2`) is read as Postfix reads it and
//! then narrowed to those two; older versions are never offered, whatever the list says.
//!
//! A certificate or key that cannot be used is no fatal error, as in Postfix: the warnings say
//! what is wrong and end in `disabling TLS support`; STARTTLS is still announced (Postfix does
//! the same) and answered `454 4.7.0 TLS not available due to local problem`, and a
//! wrapper-mode service drops its clients with Postfix's warning.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use common::config::{ConfigError, Params};
use common::log_warning;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, SubjectPublicKeyInfoDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::version::{TLS12, TLS13};
use rustls::{CipherSuite, ProtocolVersion, ServerConfig, ServerConnection, SignatureAlgorithm, SignatureScheme, SupportedProtocolVersion};
use tokio_rustls::TlsAcceptor;

/// `smtpd_tls_security_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// No STARTTLS (also the empty default, as Postfix without `smtpd_use_tls`).
    None,
    /// STARTTLS is offered.
    May,
    /// STARTTLS is offered and required before MAIL (and everything but EHLO, HELO, STARTTLS,
    /// NOOP, QUIT and HELP).
    Encrypt,
}

/// Everything smtpd needs to know about TLS; rebuilt (certificates read again) on reload.
#[derive(Clone)]
pub struct TlsSettings {
    /// The level in force: `encrypt` for a wrapper-mode service.
    pub level: Level,
    /// `smtpd_tls_wrappermode`: the handshake comes before the greeting (smtps, port 465).
    pub wrappermode: bool,
    /// `smtpd_tls_loglevel`: 1 and up log the summary line of each handshake.
    pub loglevel: i64,
    /// `smtpd_tls_received_header`.
    pub received_header: bool,
    /// Postfix's server TLS context; `None` when TLS is wanted but could not be set up (the
    /// warnings are logged).
    pub context: Option<Arc<ServerContext>>,
}

/// The server's TLS configuration and its certified key, loaded once per start or reload.
#[derive(Debug)]
pub struct ServerContext {
    config: Arc<ServerConfig>,
    key: Arc<CertifiedKey>,
}

/// What the server signed with in one handshake: the scheme and the signature's length
/// (an RSA signature is as long as the modulus, which gives Postfix's key bits).
pub type SignatureSeen = Arc<Mutex<Option<(SignatureScheme, usize)>>>;

impl ServerContext {
    /// An acceptor for one connection, which records the signature it makes for the log line
    /// (rustls does not tell a server which scheme it used). The session cache is shared.
    pub fn acceptor(&self) -> (TlsAcceptor, SignatureSeen) {
        let seen = SignatureSeen::default();
        let key = Arc::new(RecordingKey { inner: self.key.key.clone(), seen: seen.clone() });
        let certified = Arc::new(CertifiedKey { cert: self.key.cert.clone(), key, ocsp: None });
        let mut config = (*self.config).clone();
        config.cert_resolver = Arc::new(OneCert(certified));
        (TlsAcceptor::from(Arc::new(config)), seen)
    }
}

#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[derive(Debug)]
struct RecordingKey {
    inner: Arc<dyn SigningKey>,
    seen: SignatureSeen,
}

impl SigningKey for RecordingKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let inner = self.inner.choose_scheme(offered)?;
        Some(Box::new(RecordingSigner { inner, seen: self.seen.clone() }))
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        self.inner.public_key()
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.inner.algorithm()
    }
}

#[derive(Debug)]
struct RecordingSigner {
    inner: Box<dyn Signer>,
    seen: SignatureSeen,
}

impl Signer for RecordingSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let signature = self.inner.sign(message)?;
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = Some((self.inner.scheme(), signature.len()));
        Ok(signature)
    }

    fn scheme(&self) -> SignatureScheme {
        self.inner.scheme()
    }
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("level", &self.level)
            .field("wrappermode", &self.wrappermode)
            .field("loglevel", &self.loglevel)
            .field("received_header", &self.received_header)
            .field("context", &self.context.is_some())
            .finish()
    }
}

impl TlsSettings {
    /// No TLS at all (unit tests, and `smtpd_tls_security_level = none`).
    pub fn none() -> TlsSettings {
        TlsSettings { level: Level::None, wrappermode: false, loglevel: 0, received_header: false, context: None }
    }

    pub fn from_params(p: &Params) -> Result<TlsSettings, ConfigError> {
        let wrappermode = p.bool("smtpd_tls_wrappermode")?;
        let name = "smtpd_tls_security_level";
        let level = match p.get(name)?.to_ascii_lowercase().as_str() {
            "" | "none" => Level::None,
            "may" => Level::May,
            "encrypt" => Level::Encrypt,
            v @ ("verify" | "secure" | "fingerprint") => {
                log_warning!("{name}: unsupported TLS level \"{v}\", using \"encrypt\"");
                Level::Encrypt
            }
            v => return Err(ConfigError::value(name, format!("Invalid TLS level \"{v}\""))),
        };
        // Wrapper mode always requires TLS, whatever the level says (as in Postfix).
        let level = if wrappermode { Level::Encrypt } else { level };
        let loglevel = p.int("smtpd_tls_loglevel")?;
        let received_header = p.bool("smtpd_tls_received_header")?;
        let context = if level == Level::None { None } else { load_context(p, level)? };
        Ok(TlsSettings { level, wrappermode, loglevel, received_header, context })
    }

    /// STARTTLS is announced and accepted.
    pub fn offered(&self) -> bool {
        self.level != Level::None && !self.wrappermode
    }

    /// Commands other than EHLO, HELO, STARTTLS, NOOP, QUIT and HELP need TLS first.
    pub fn required(&self) -> bool {
        self.level == Level::Encrypt
    }
}

/// The protocol versions a Postfix protocol list allows, among those rustls has; `None` for a
/// list Postfix would call invalid.
pub fn parse_protocols(list: &str) -> Option<Vec<&'static SupportedProtocolVersion>> {
    // Postfix's versions in order; only the last two exist here.
    const NAMES: [&str; 6] = ["SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"];
    /// The rank of a version name (or an OpenSSL hex value) for `>=` and `<=`.
    fn rank(v: &str) -> Option<usize> {
        if v.eq_ignore_ascii_case("none") {
            return Some(usize::MAX); // "no bound"
        }
        if let Some(i) = NAMES.iter().position(|n| *n == v) {
            return Some(i);
        }
        // OpenSSL's numeric versions: 0x0300 SSLv3 .. 0x0304 TLSv1.3.
        let n = u32::from_str_radix(v.trim_start_matches("0x"), 16).ok()?;
        match n {
            0 => Some(usize::MAX),
            0x0300..=0x0304 => Some(n as usize - 0x0300 + 1),
            _ => None,
        }
    }
    let (mut include, mut exclude) = (Vec::new(), Vec::new());
    let (mut floor, mut ceiling) = (0, NAMES.len() - 1);
    for tok in list.split([',', ' ', '\t', ':']).filter(|t| !t.is_empty()) {
        if let Some(v) = tok.strip_prefix(">=") {
            floor = match rank(v)? {
                usize::MAX => 0,
                r => r,
            };
        } else if let Some(v) = tok.strip_prefix("<=") {
            ceiling = match rank(v)? {
                usize::MAX => NAMES.len() - 1,
                r => r,
            };
        } else if let Some(v) = tok.strip_prefix('!') {
            exclude.push(NAMES.iter().position(|n| *n == v)?);
        } else {
            include.push(NAMES.iter().position(|n| *n == tok)?);
        }
    }
    let allowed = |i: usize| (include.is_empty() || include.contains(&i)) && !exclude.contains(&i) && (floor..=ceiling).contains(&i);
    let mut out = Vec::new();
    if allowed(5) {
        out.push(&TLS13);
    }
    if allowed(4) {
        out.push(&TLS12);
    }
    Some(out)
}

/// The server's TLS context, or `None` after the warnings that say why there is none.
fn load_context(p: &Params, level: Level) -> Result<Option<Arc<ServerContext>>, ConfigError> {
    // Postfix takes the mandatory list where TLS is required.
    let proto_param = if level == Level::Encrypt { "smtpd_tls_mandatory_protocols" } else { "smtpd_tls_protocols" };
    let protocols = p.get(proto_param)?;
    let versions = match parse_protocols(&protocols) {
        Some(v) if !v.is_empty() => v,
        Some(_) => {
            log_warning!("{proto_param} = {protocols}: no protocol left that Postern speaks (TLSv1.2, TLSv1.3): disabling TLS support");
            return Ok(None);
        }
        None => {
            log_warning!("Invalid TLS protocol list \"{protocols}\": disabling TLS support");
            return Ok(None);
        }
    };
    let chain_files = p.list("smtpd_tls_chain_files")?;
    let cert_file = p.get("smtpd_tls_cert_file")?;
    let key_file = p.get("smtpd_tls_key_file")?;
    let loaded = if let Some(first) = chain_files.first() {
        if !cert_file.is_empty() {
            log_warning!(
                "Both smtpd_tls_chain_files and one or more of the legacy smtpd_tls_cert_file, smtpd_tls_eccert_file or smtpd_tls_dcert_file are non-empty; the legacy parameters will be ignored"
            );
        }
        for extra in &chain_files[1..] {
            log_warning!("smtpd_tls_chain_files: only one key and chain is supported; ignoring {extra}");
        }
        load_chain_file(first)
    } else if cert_file.is_empty() || cert_file.eq_ignore_ascii_case("none") {
        None
    } else {
        load_cert_and_key(&cert_file, &key_file)
    };
    let Some((certs, key)) = loaded else {
        log_warning!("No server certs available. TLS won't be enabled");
        return Ok(None);
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let context = CertifiedKey::from_der(certs, key, &provider).and_then(|key| {
        let key = Arc::new(key);
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(OneCert(key.clone())));
        Ok(ServerContext { config: Arc::new(config), key })
    });
    match context {
        Ok(c) => Ok(Some(Arc::new(c))),
        Err(rustls::Error::InconsistentKeys(_)) => {
            let (k, c) = if chain_files.is_empty() {
                (key_file.as_str(), cert_file.as_str())
            } else {
                (chain_files[0].as_str(), chain_files[0].as_str())
            };
            log_warning!("RSA private key in {k} does not match public key in {c}: disabling TLS support");
            Ok(None)
        }
        Err(e) => {
            log_warning!("TLS library problem: {e}: disabling TLS support");
            Ok(None)
        }
    }
}

type CertAndKey = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// Postfix's legacy pair: the certificate chain from `cert_file`, the key from `key_file`
/// (often the same file).
fn load_cert_and_key(cert_file: &str, key_file: &str) -> Option<CertAndKey> {
    let certs = match read_certs(Path::new(cert_file)) {
        Ok(c) => c,
        Err(e) => {
            log_warning!("cannot get RSA certificate from file \"{cert_file}\": disabling TLS support");
            log_warning!("TLS library problem: {e}");
            return None;
        }
    };
    match PrivateKeyDer::from_pem_file(key_file) {
        Ok(key) => Some((certs, key)),
        Err(e) => {
            log_warning!("cannot get RSA private key from file \"{key_file}\": disabling TLS support");
            log_warning!("TLS library problem: {}", pem_error(&e));
            None
        }
    }
}

/// One `smtpd_tls_chain_files` entry: the key and its certificate chain in one file.
fn load_chain_file(file: &str) -> Option<CertAndKey> {
    if let Err(e) = std::fs::metadata(file) {
        log_warning!("error opening chain file: {file}: {e}");
        return None;
    }
    let certs = match read_certs(Path::new(file)) {
        Ok(c) => c,
        Err(e) => {
            log_warning!("error loading private keys and certificates from: {file}: {e}");
            return None;
        }
    };
    match PrivateKeyDer::from_pem_file(file) {
        Ok(key) => Some((certs, key)),
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            log_warning!("No private key found in {file}");
            None
        }
        Err(e) => {
            log_warning!("error loading private keys and certificates from: {file}: {}", pem_error(&e));
            None
        }
    }
}

/// The certificates of a PEM file, at least one.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> =
        CertificateDer::pem_file_iter(path).map_err(|e| pem_error(&e))?.collect::<Result<_, _>>().map_err(|e| pem_error(&e))?;
    if certs.is_empty() {
        return Err(format!("No PEM data in {}", path.display()));
    }
    Ok(certs)
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM object of this type found".into(),
        other => format!("{other:?}"),
    }
}

/// What a finished handshake negotiated, in OpenSSL's names (which Postfix logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.3`.
    pub protocol: String,
    /// `TLS_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// The cipher's key bits, used and of the algorithm (`256/256`).
    pub bits: u16,
    /// The TLSv1.3 key exchange group (`X25519`); Postfix names none for TLSv1.2.
    pub kex: Option<String>,
    /// The TLSv1.3 server signature as Postfix shows it: `ECDSA (prime256v1) server-digest
    /// SHA256`, `RSA-PSS (2048 bits) server-digest SHA256`, `ED25519`; none when the session was
    /// resumed (nothing was signed).
    pub server_signature: Option<String>,
}

impl TlsInfo {
    pub fn of(conn: &ServerConnection, seen: &SignatureSeen) -> TlsInfo {
        let protocol = match conn.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            Some(v) => format!("{v:?}"),
            None => "unknown".to_string(),
        };
        let (cipher, bits) = conn.negotiated_cipher_suite().map_or(("unknown".into(), 0), |s| cipher_name(s.suite()));
        let tls13 = conn.protocol_version() == Some(ProtocolVersion::TLSv1_3);
        let kex = tls13.then(|| conn.negotiated_key_exchange_group().map(|g| group_name(g.name()))).flatten();
        let signed = *seen.lock().unwrap_or_else(PoisonError::into_inner);
        let server_signature = tls13.then(|| signed.and_then(|(scheme, len)| signature_name(scheme, len))).flatten();
        TlsInfo { protocol, cipher, bits, kex, server_signature }
    }

    /// Postfix's `tls_log_summary` line (smtpd_tls_loglevel >= 1).
    pub fn summary(&self, peer: &str) -> String {
        let mut line = format!(
            "Anonymous TLS connection established from {peer}: {} with cipher {} ({}/{} bits)",
            self.protocol, self.cipher, self.bits, self.bits
        );
        if let Some(kex) = &self.kex {
            line.push_str(&format!(" key-exchange {kex}"));
        }
        if let Some(sig) = &self.server_signature {
            line.push_str(&format!(" server-signature {sig}"));
        }
        line
    }

    /// The lines Postfix adds to its `Received:` header after `from ...`, each with its CRLF.
    pub fn received_clause(&self) -> String {
        let mut out = format!("\t(using {} with cipher {} ({}/{} bits)", self.protocol, self.cipher, self.bits, self.bits);
        // Postfix starts a continuation line for the key exchange, or else for the signature.
        match (&self.kex, &self.server_signature) {
            (Some(kex), sig) => {
                out.push_str(&format!("\r\n\t key-exchange {kex}"));
                if let Some(sig) = sig {
                    out.push_str(&format!(" server-signature {sig}"));
                }
            }
            (None, Some(sig)) => out.push_str(&format!("\r\n\t server-signature {sig}")),
            (None, None) => {}
        }
        out.push_str(")\r\n\t(No client certificate requested)\r\n");
        out
    }
}

/// OpenSSL's name for a cipher suite, and its key bits.
fn cipher_name(suite: CipherSuite) -> (String, u16) {
    let (name, bits) = match suite {
        CipherSuite::TLS13_AES_256_GCM_SHA384 => ("TLS_AES_256_GCM_SHA384", 256),
        CipherSuite::TLS13_AES_128_GCM_SHA256 => ("TLS_AES_128_GCM_SHA256", 128),
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => ("TLS_CHACHA20_POLY1305_SHA256", 256),
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => ("ECDHE-ECDSA-AES256-GCM-SHA384", 256),
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => ("ECDHE-ECDSA-AES128-GCM-SHA256", 128),
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => ("ECDHE-ECDSA-CHACHA20-POLY1305", 256),
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => ("ECDHE-RSA-AES256-GCM-SHA384", 256),
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => ("ECDHE-RSA-AES128-GCM-SHA256", 128),
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => ("ECDHE-RSA-CHACHA20-POLY1305", 256),
        other => return (format!("{other:?}"), 0),
    };
    (name.to_string(), bits)
}

/// Postfix's words for a TLSv1.3 server signature (`tls_get_signature_params`): the key type
/// with its curve or bits, and the digest.
fn signature_name(scheme: SignatureScheme, len: usize) -> Option<String> {
    use SignatureScheme as S;
    let rsa = |digest: &str| format!("RSA-PSS ({} bits) server-digest {digest}", len * 8);
    Some(match scheme {
        S::ECDSA_NISTP256_SHA256 => "ECDSA (prime256v1) server-digest SHA256".into(),
        S::ECDSA_NISTP384_SHA384 => "ECDSA (secp384r1) server-digest SHA384".into(),
        S::ECDSA_NISTP521_SHA512 => "ECDSA (secp521r1) server-digest SHA512".into(),
        S::RSA_PSS_SHA256 => rsa("SHA256"),
        S::RSA_PSS_SHA384 => rsa("SHA384"),
        S::RSA_PSS_SHA512 => rsa("SHA512"),
        S::ED25519 => "ED25519".into(),
        _ => return None,
    })
}

/// OpenSSL's name for a key exchange group.
fn group_name(g: rustls::NamedGroup) -> String {
    match g {
        rustls::NamedGroup::X25519 => "X25519".into(),
        rustls::NamedGroup::secp256r1 => "secp256r1".into(),
        rustls::NamedGroup::secp384r1 => "secp384r1".into(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &str) -> Option<Vec<&'static str>> {
        parse_protocols(list).map(|v| {
            v.iter()
                .map(|p| match p.version {
                    ProtocolVersion::TLSv1_3 => "1.3",
                    _ => "1.2",
                })
                .collect()
        })
    }

    #[test]
    fn postfix_protocol_lists() {
        let cases: &[(&str, Option<Vec<&str>>)] = &[
            (">=TLSv1", Some(vec!["1.3", "1.2"])),
            ("", Some(vec!["1.3", "1.2"])),
            ("!SSLv2, !SSLv3", Some(vec!["1.3", "1.2"])),
            ("!SSLv2:!SSLv3:!TLSv1:!TLSv1.1", Some(vec!["1.3", "1.2"])),
            (">=TLSv1.2", Some(vec!["1.3", "1.2"])),
            (">=TLSv1.3", Some(vec!["1.3"])),
            ("<=TLSv1.2", Some(vec!["1.2"])),
            ("TLSv1.2", Some(vec!["1.2"])),
            ("TLSv1 TLSv1.1", Some(vec![])),
            ("!TLSv1.2 !TLSv1.3", Some(vec![])),
            (">=0x0304", Some(vec!["1.3"])),
            (">=None", Some(vec!["1.3", "1.2"])),
            ("TLSv9", None),
            (">=bogus", None),
        ];
        for (list, want) in cases {
            assert_eq!(&names(list), want, "{list:?}");
        }
    }

    /// Settings from main.cf lines (over a temporary config directory).
    fn settings(dir: &Path, lines: &str) -> TlsSettings {
        let main = common::config::MainCf::parse(lines, &dir.join("main.cf")).unwrap();
        TlsSettings::from_params(&Params::from_parts(dir, main, &[])).unwrap()
    }

    fn openssl(dir: &Path, args: &[&str]) {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Each way a certificate can be unusable leaves no TLS context (and warnings), never an
    /// error that stops smtpd; the good ones give a context.
    #[test]
    fn unusable_certificates_disable_tls() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in ["a", "b"] {
            openssl(
                d,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-days",
                    "1",
                    "-subj",
                    "/CN=mx.test",
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.pem"),
                ],
            );
        }
        let both = [std::fs::read_to_string(d.join("a.key")).unwrap(), std::fs::read_to_string(d.join("a.pem")).unwrap()].concat();
        std::fs::write(d.join("a.chain"), both).unwrap();
        std::fs::write(d.join("garbage.pem"), "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n").unwrap();
        let f = |n: &str| d.join(n).display().to_string();
        let pair = |cert: &str, key: &str| {
            format!("smtpd_tls_security_level = may\nsmtpd_tls_cert_file = {}\nsmtpd_tls_key_file = {}\n", f(cert), f(key))
        };
        let cases: Vec<(&str, String, bool)> = vec![
            ("a good pair", pair("a.pem", "a.key"), true),
            ("a chain file", format!("smtpd_tls_security_level = encrypt\nsmtpd_tls_chain_files = {}\n", f("a.chain")), true),
            ("no certificate", "smtpd_tls_security_level = may\n".into(), false),
            ("cert_file = none", "smtpd_tls_security_level = may\nsmtpd_tls_cert_file = none\n".into(), false),
            ("missing certificate", pair("nothere.pem", "a.key"), false),
            ("garbage certificate", pair("garbage.pem", "a.key"), false),
            ("a key file without a key", pair("a.pem", "a.pem"), false),
            ("the key of another certificate", pair("a.pem", "b.key"), false),
            ("a chain file without a key", format!("smtpd_tls_security_level = may\nsmtpd_tls_chain_files = {}\n", f("a.pem")), false),
            ("a missing chain file", format!("smtpd_tls_security_level = may\nsmtpd_tls_chain_files = {}\n", f("nothere")), false),
            ("no protocol left", format!("{}smtpd_tls_protocols = TLSv1 TLSv1.1\n", pair("a.pem", "a.key")), false),
            ("a bad protocol list", format!("{}smtpd_tls_protocols = TLSv9\n", pair("a.pem", "a.key")), false),
            // The mandatory list applies at encrypt only.
            ("may ignores the mandatory list", format!("{}smtpd_tls_mandatory_protocols = TLSv9\n", pair("a.pem", "a.key")), true),
        ];
        for (name, lines, ok) in cases {
            assert_eq!(settings(d, &lines).context.is_some(), ok, "{name}");
        }
        let wrapper = settings(d, &format!("smtpd_tls_wrappermode = yes\nsmtpd_tls_cert_file = {}\n", f("a.chain")));
        assert!(wrapper.required() && wrapper.context.is_some(), "wrapper mode implies encrypt");
    }

    #[test]
    fn log_and_header_shapes() {
        let info = TlsInfo {
            protocol: "TLSv1.3".into(),
            cipher: "TLS_AES_256_GCM_SHA384".into(),
            bits: 256,
            kex: Some("X25519".into()),
            server_signature: signature_name(SignatureScheme::RSA_PSS_SHA256, 256),
        };
        // The line Postfix 3.7 logged (reference/postfix-behavior.md 16.1).
        assert_eq!(
            info.summary("localhost[127.0.0.1]"),
            "Anonymous TLS connection established from localhost[127.0.0.1]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256"
        );
        assert_eq!(
            info.received_clause(),
            "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\r\n\t key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256)\r\n\t(No client certificate requested)\r\n"
        );
        let resumed = TlsInfo { server_signature: None, ..info };
        assert!(resumed.summary("x[192.0.2.1]").ends_with("key-exchange X25519"));
        let tls12 = TlsInfo {
            protocol: "TLSv1.2".into(),
            cipher: "ECDHE-RSA-AES256-GCM-SHA384".into(),
            bits: 256,
            kex: None,
            server_signature: None,
        };
        assert_eq!(
            tls12.received_clause(),
            "\t(using TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits))\r\n\t(No client certificate requested)\r\n"
        );
    }
}
