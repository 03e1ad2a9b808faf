//! smtpd's TLS settings, from Postfix's parameters: the security level, the server certificate
//! and key (read again on every reload) and the protocol versions. What a finished handshake is
//! called in the log and in the `Received:` header, the protocol lists and the PEM files are
//! [`common::tls`], shared with the smtp client.
//!
//! TLS is rustls with the ring provider: TLSv1.2 and TLSv1.3 only.
//!
//! A certificate or key that cannot be used is no fatal error, as in Postfix: the warnings say
//! what is wrong and end in `disabling TLS support`; STARTTLS is still announced (Postfix does
//! the same) and answered `454 4.7.0 TLS not available due to local problem`, and a
//! wrapper-mode service drops its clients with Postfix's warning.

use std::path::Path;
use std::sync::Arc;

use common::config::{ConfigError, Params};
use common::log_warning;
use common::tls::names::{SignatureSeen, record_signature};
use common::tls::parse_protocols;
use common::tls::pem::{pem_error, read_certs};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, SubjectPublicKeyInfoDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{ServerConfig, SignatureAlgorithm, SignatureScheme};
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
        record_signature(&self.seen, self.inner.scheme(), signature.len());
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
    let provider = common::tls::provider();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings from main.cf lines (over a temporary config directory).
    fn settings(dir: &Path, lines: &str) -> TlsSettings {
        let main = common::config::MainCf::parse(lines, &dir.join("main.cf")).unwrap();
        TlsSettings::from_params(&Params::from_parts(dir, main, &[])).unwrap()
    }

    /// Each way a certificate can be unusable leaves no TLS context (and warnings), never an
    /// error that stops smtpd; the good ones give a context.
    #[test]
    fn unusable_certificates_disable_tls() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in ["a", "b"] {
            common::tls::test_pki::self_signed(d, name, "mx.test");
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
}
