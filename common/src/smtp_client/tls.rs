//! The smtp client's TLS: the settings from Postfix's parameters (`smtp_tls_security_level`,
//! `smtp_tls_CAfile`, `smtp_tls_CApath`, `smtp_tls_policy_maps`, ...), the trusted CAs, and one
//! connector per connection whose certificate check records what Postfix records: whether the
//! chain is trusted and whether a name matched. As in Postfix the handshake completes either
//! way and the policy is enforced after it ([`super::starttls`]), so a server whose certificate
//! is refused still gets a polite QUIT over TLS.
//!
//! Trust: `smtp_tls_CAfile` and `smtp_tls_CApath`; when both are empty, the system's roots
//! (rustls-native-certs: what Debian's ca-certificates keeps in /etc/ssl/certs, so the
//! administrator's updates apply, where webpki-roots would freeze a list into the binary).

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::config::table::{Table, split_braced_list};
use crate::config::{ConfigError, Params};
use crate::log_warning;
use crate::tls::names::{SignatureSeen, record_signature};
use crate::tls::parse_protocols;
use crate::tls::pem::{read_cert_dir, read_certs};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;

use super::tls_policy::{self, Level, Policy, Resolved};

/// The client's TLS settings; rebuilt (CA files read again) on every reload.
pub struct ClientTls {
    /// `smtp_tls_security_level` with the default parameters, for destinations without an
    /// entry in `smtp_tls_policy_maps`.
    pub default: Resolved,
    /// `smtp_tls_policy_maps`.
    pub policy_maps: Option<Table>,
    /// `smtp_tls_loglevel`.
    pub loglevel: i64,
    /// `smtp_starttls_timeout`: the handshake, and the reply to STARTTLS.
    pub starttls_timeout: Duration,
    /// `smtp_tls_protocols`, `smtp_tls_mandatory_protocols`.
    pub protocols: String,
    pub mandatory_protocols: String,
    /// `smtp_tls_verify_cert_match`, `smtp_tls_secure_cert_match`.
    pub verify_match: Vec<String>,
    pub secure_match: Vec<String>,
    /// `smtp_tls_servername`.
    pub servername: String,
    /// The chain checker over the trusted CAs; `None` when there are none (every certificate
    /// is then untrusted).
    verifier: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").field("default", &self.default).field("trusted_cas", &self.verifier.is_some()).finish()
    }
}

impl ClientTls {
    /// The settings of the parameter family `prefix`: `smtp` for the smtp agent
    /// (`smtp_tls_security_level`, `smtp_tls_CAfile`, ...), `odmr` for the ODMR customer.
    pub fn from_params(p: &Params, prefix: &str) -> Result<ClientTls, ConfigError> {
        let param = |name: &str| format!("{prefix}_{name}");
        let name = param("tls_security_level");
        let value = p.get(&name)?;
        let default = tls_policy::default_policy(&name, &value)
            .ok_or_else(|| ConfigError::value(&name, format!("invalid tls security level: \"{value}\"")))?;
        let maps_param = param("tls_policy_maps");
        let maps = p.get(&maps_param)?;
        let policy_maps = match split_braced_list(&maps).as_slice() {
            [] => None,
            [one] => Some(Table::open(one, &p.config_dir)?),
            _ => return Err(ConfigError::value(&maps_param, "Postern takes one table here")),
        };
        let provider = crate::tls::provider();
        let verifier = trusted_cas(&p.get(&param("tls_CAfile"))?, &p.get(&param("tls_CApath"))?).and_then(|roots| {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| log_warning!("TLS library problem: {e}"))
                .ok()
        });
        let matches = |name: &str| {
            p.list(&param(name)).map(|l| {
                l.into_iter().flat_map(|m| m.split(':').map(str::to_string).collect::<Vec<_>>()).filter(|m| !m.is_empty()).collect()
            })
        };
        Ok(ClientTls {
            default,
            policy_maps,
            loglevel: p.int(&param("tls_loglevel"))?,
            starttls_timeout: p.time(&param("starttls_timeout"))?,
            protocols: p.get(&param("tls_protocols"))?,
            mandatory_protocols: p.get(&param("tls_mandatory_protocols"))?,
            verify_match: matches("tls_verify_cert_match")?,
            secure_match: matches("tls_secure_cert_match")?,
            servername: p.get(&param("tls_servername"))?,
            verifier,
            provider,
        })
    }

    /// The policy of a next hop.
    pub fn policy(&self, nexthop: &str) -> Resolved {
        tls_policy::lookup(self.policy_maps.as_ref(), nexthop, &self.default)
    }

    /// A connector for one handshake with `host` (the MX host or `[host]`) of `nexthop` (its
    /// domain) under `policy`, and the record its certificate check will fill. `Err` with the
    /// reason when the policy's protocol list leaves nothing to speak.
    pub fn connector(&self, policy: &Policy, host: &str, nexthop: &str) -> Result<(TlsConnector, ServerName<'static>, Check), String> {
        let list = match &policy.protocols {
            Some(l) => l.as_str(),
            None if policy.level.requires_tls() => self.mandatory_protocols.as_str(),
            None => self.protocols.as_str(),
        };
        let versions = match parse_protocols(list) {
            Some(v) if !v.is_empty() => v,
            _ => return Err(format!("Invalid TLS protocol list \"{list}\"")),
        };
        let patterns = if !policy.matches.is_empty() {
            &policy.matches
        } else if policy.level == Level::Secure {
            &self.secure_match
        } else {
            &self.verify_match
        };
        let names = if policy.level.must_match() { match_names(patterns, host, nexthop) } else { Vec::new() };
        let check = Check::default();
        let verifier =
            Arc::new(PolicyVerifier { chain: self.verifier.clone(), names, check: check.clone(), provider: self.provider.clone() });
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| format!("TLS library problem: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        // No session resumption: a resumed session skips the certificate check, and the
        // check's verdict is what the policy needs on every connection.
        config.resumption = rustls::client::Resumption::disabled();
        // Postfix sends SNI only when told (smtp_tls_servername or servername=).
        let sni = policy.servername.as_deref().unwrap_or(&self.servername);
        let sni = match sni {
            "" => None,
            "hostname" => Some(host),
            "nexthop" => Some(nexthop),
            name => Some(name),
        };
        config.enable_sni = sni.is_some();
        let server_name = sni
            .and_then(|n| ServerName::try_from(n.to_string()).ok())
            .or_else(|| ServerName::try_from(host.to_string()).ok())
            .unwrap_or_else(|| ServerName::try_from("invalid.").unwrap_or(ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into())));
        Ok((TlsConnector::from(Arc::new(config)), server_name, check))
    }
}

/// The names a certificate may carry under the match patterns: `hostname` the server's name,
/// `nexthop` the next hop domain, `dot-nexthop` any name below it, anything else literally
/// (a leading `.` meaning any name below it).
fn match_names(patterns: &[String], host: &str, nexthop: &str) -> Vec<Name> {
    patterns
        .iter()
        .map(|p| match p.to_ascii_lowercase().as_str() {
            "hostname" => Name::Exact(host.to_string()),
            "nexthop" => Name::Exact(nexthop.to_string()),
            "dot-nexthop" => Name::Below(nexthop.to_string()),
            other => match other.strip_prefix('.') {
                Some(parent) => Name::Below(parent.to_string()),
                None => Name::Exact(other.to_string()),
            },
        })
        .collect()
}

/// The CAs from `smtp_tls_CAfile` and `smtp_tls_CApath`, else the system's; `None` after a
/// warning when there are none. A file that cannot be read is Postfix's warning, and no CA
/// from it.
fn trusted_cas(ca_file: &str, ca_path: &str) -> Option<RootCertStore> {
    let mut certs: Vec<CertificateDer<'static>> = Vec::new();
    if ca_file.is_empty() && ca_path.is_empty() {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            log_warning!("cannot load system Certification Authority data: {e}");
        }
        certs = found.certs;
    }
    if !ca_file.is_empty() {
        match read_certs(Path::new(ca_file)) {
            Ok(c) => certs.extend(c),
            Err(e) => log_warning!("cannot load Certification Authority data, CAfile=\"{ca_file}\": {e}"),
        }
    }
    if !ca_path.is_empty() {
        match read_cert_dir(Path::new(ca_path)) {
            Ok(c) => certs.extend(c),
            Err(e) => log_warning!("cannot load Certification Authority data, CApath=\"{ca_path}\": {e}"),
        }
    }
    let mut roots = RootCertStore::empty();
    let (_, bad) = roots.add_parsable_certificates(certs);
    if bad > 0 {
        log_warning!("{bad} Certification Authority certificates could not be used");
    }
    (!roots.is_empty()).then_some(roots)
}

/// A name the certificate may carry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Name {
    Exact(String),
    /// Any name below this domain (not the domain itself).
    Below(String),
}

/// What the certificate check found, for the policy and the log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verdict {
    /// The chain leads to a trusted CA (and the certificate is in date).
    pub trusted: bool,
    /// It also carries one of the names the policy asks for (checked at verify and secure only).
    pub matched: bool,
    /// Why not, for Postfix's `certificate verification failed for ...` line.
    pub problem: Option<Problem>,
}

/// Why a certificate failed, as Postfix's tls_verify.c words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The server's own certificate is at fault (Postfix writes `server certificate
    /// verification failed`), not its chain (`certificate verification failed`).
    pub leaf: bool,
    /// `untrusted issuer`, `num=62:hostname mismatch`, ...
    pub what: String,
}

impl Problem {
    fn chain(what: &str) -> Problem {
        Problem { leaf: false, what: what.into() }
    }

    fn leaf(what: &str) -> Problem {
        Problem { leaf: true, what: what.into() }
    }

    /// Postfix's log line for the server at `relay`.
    pub fn line(&self, relay: &str) -> String {
        let whose = if self.leaf { "server certificate" } else { "certificate" };
        format!("{whose} verification failed for {relay}: {}", self.what)
    }
}

impl Verdict {
    /// The first word of Postfix's `... TLS connection established to ...` line.
    pub fn trust_word(&self) -> &'static str {
        if self.matched {
            "Verified"
        } else if self.trusted {
            "Trusted"
        } else {
            "Untrusted"
        }
    }
}

/// The verdict and the server's signature of one handshake.
#[derive(Debug, Clone, Default)]
pub struct Check {
    pub verdict: Arc<Mutex<Verdict>>,
    pub signature: SignatureSeen,
}

impl Check {
    pub fn verdict(&self) -> Verdict {
        self.verdict.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Records instead of refusing: the handshake goes on with any certificate (signatures are
/// still checked), and the policy decides afterwards.
#[derive(Debug)]
struct PolicyVerifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    names: Vec<Name>,
    check: Check,
    provider: Arc<CryptoProvider>,
}

impl PolicyVerifier {
    fn judge(&self, end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>], now: UnixTime) -> Verdict {
        let Some(chain) = &self.chain else {
            return Verdict { problem: Some(Problem::chain("untrusted issuer")), ..Verdict::default() };
        };
        let verify = |name: &str| match ServerName::try_from(name.to_string()) {
            Ok(n) => chain.verify_server_cert(end_entity, intermediates, &n, &[], now).map(|_| ()),
            Err(_) => Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName)),
        };
        // The chain alone: a name it cannot carry leaves the name check as the only error.
        let trusted = match verify("invalid.invalid") {
            Ok(()) => true,
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. })) => {
                true
            }
            Err(e) => return Verdict { problem: Some(problem_text(&e)), ..Verdict::default() },
        };
        if self.names.is_empty() {
            return Verdict { trusted, ..Verdict::default() };
        }
        let matched = self.names.iter().any(|n| match n {
            Name::Exact(name) => verify(name).is_ok(),
            Name::Below(parent) => below_names(end_entity).iter().any(|dns| {
                let dns = dns.trim_end_matches('.').to_ascii_lowercase();
                dns.strip_suffix(&parent.trim_end_matches('.').to_ascii_lowercase())
                    .is_some_and(|head| head.len() > 1 && head.ends_with('.'))
                    && verify(&dns.replace('*', "x")).is_ok()
            }),
        });
        let problem = (!matched).then(|| Problem::leaf("num=62:hostname mismatch"));
        Verdict { trusted, matched, problem }
    }
}

/// The DNS names of a certificate's subjectAltName, for `dot-nexthop` (rustls checks one
/// given name; a name below a domain needs the candidates).
fn below_names(cert: &CertificateDer<'_>) -> Vec<String> {
    webpki::EndEntityCert::try_from(cert).map(|c| c.valid_dns_names().map(str::to_string).collect()).unwrap_or_default()
}

/// Postfix's words (tls_verify.c, OpenSSL's error strings) for why a chain is not trusted.
fn problem_text(e: &rustls::Error) -> Problem {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => Problem::chain("untrusted issuer"),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => Problem::leaf("certificate has expired"),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => Problem::leaf("certificate not yet valid"),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                Problem::chain("not designated for use as a server certificate")
            }
            // A CA of the right name whose key did not sign it: an impostor.
            CertificateError::BadSignature => Problem::leaf("num=7:certificate signature failure"),
            other => Problem::leaf(&format!("{other:?}")),
        },
        other => Problem::leaf(&other.to_string()),
    }
}

impl ServerCertVerifier for PolicyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.check.verdict.lock().unwrap_or_else(PoisonError::into_inner) = self.judge(end_entity, intermediates, now);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let valid = rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)?;
        record_signature(&self.check.signature, dss.scheme, dss.signature().len());
        Ok(valid)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA `ca` (named `ca_cn`) and a certificate `leaf` it signed for `names`
    /// (subjectAltName entries).
    fn pki(dir: &Path, ca: &str, ca_cn: &str, leaf: &str, names: &str) {
        crate::tls::test_pki::self_signed(dir, ca, ca_cn);
        crate::tls::test_pki::signed(dir, ca, leaf, "leaf", names, &crate::tls::test_pki::EC_KEY);
    }

    fn verdict(dir: &Path, ca: Option<&str>, leaf: &str, names: Vec<Name>) -> Verdict {
        let chain = ca.map(|ca| {
            let roots = trusted_cas(&dir.join(format!("{ca}.pem")).display().to_string(), "").expect("the CA");
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crate::tls::provider()).build().unwrap()
        });
        let v = PolicyVerifier { chain, names, check: Check::default(), provider: crate::tls::provider() };
        let cert = read_certs(&dir.join(format!("{leaf}.pem"))).unwrap().remove(0);
        v.judge(&cert, &[], UnixTime::now())
    }

    /// `smtp_tls_CApath`: every PEM file of the directory, other files skipped; a missing file
    /// or directory leaves no CA (every certificate untrusted), never an error that stops smtp.
    #[test]
    fn ca_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        pki(d, "ca", "Test CA", "mx", "DNS:mx.example.com");
        let cas = d.join("cas");
        std::fs::create_dir(&cas).unwrap();
        std::fs::copy(d.join("ca.pem"), cas.join("a1b2c3d4.0")).unwrap();
        std::fs::write(cas.join("README"), "not a certificate\n").unwrap();
        let roots = trusted_cas("", &cas.display().to_string()).expect("the CA from the directory");
        assert_eq!(roots.len(), 1);
        assert!(trusted_cas(&d.join("missing.pem").display().to_string(), "").is_none());
        assert!(trusted_cas("", &d.join("missing").display().to_string()).is_none());
    }

    #[test]
    fn trust_and_names_as_postfix_judges_them() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        pki(d, "ca", "Test CA", "mx", "DNS:mx.example.com, DNS:*.wild.example.com, IP:127.0.0.1");
        pki(d, "other", "Other CA", "stranger", "DNS:mx.example.com");
        pki(d, "impostor", "Test CA", "fake", "DNS:mx.example.com");
        let exact = |n: &str| Name::Exact(n.into());
        let below = |n: &str| Name::Below(n.into());
        let ok = Verdict { trusted: true, matched: true, problem: None };
        /// Name, CA, certificate, names asked for, verdict.
        type Case = (&'static str, Option<&'static str>, &'static str, Vec<Name>, Verdict);
        let cases: Vec<Case> = vec![
            ("hostname", Some("ca"), "mx", vec![exact("mx.example.com")], ok.clone()),
            ("an address", Some("ca"), "mx", vec![exact("127.0.0.1")], ok.clone()),
            ("dot-nexthop", Some("ca"), "mx", vec![below("example.com")], ok.clone()),
            ("dot-nexthop, a wildcard", Some("ca"), "mx", vec![below("wild.example.com")], ok.clone()),
            ("the second name", Some("ca"), "mx", vec![exact("other.test"), exact("MX.example.com")], ok.clone()),
            (
                "nexthop is not dot-nexthop",
                Some("ca"),
                "mx",
                vec![exact("example.com")],
                Verdict { trusted: true, matched: false, problem: Some(Problem::leaf("num=62:hostname mismatch")) },
            ),
            ("no match asked (may, encrypt)", Some("ca"), "mx", vec![], Verdict { trusted: true, matched: false, problem: None }),
            (
                "another CA",
                Some("ca"),
                "stranger",
                vec![exact("mx.example.com")],
                Verdict { trusted: false, matched: false, problem: Some(Problem::chain("untrusted issuer")) },
            ),
            (
                "a CA of the same name that did not sign it",
                Some("ca"),
                "fake",
                vec![exact("mx.example.com")],
                Verdict { trusted: false, matched: false, problem: Some(Problem::leaf("num=7:certificate signature failure")) },
            ),
            (
                "no CA at all",
                None,
                "mx",
                vec![exact("mx.example.com")],
                Verdict { trusted: false, matched: false, problem: Some(Problem::chain("untrusted issuer")) },
            ),
        ];
        for (name, ca, leaf, names, want) in cases {
            assert_eq!(verdict(d, ca, leaf, names), want, "{name}");
        }
        assert_eq!(
            match_names(
                &["hostname".into(), "nexthop".into(), "dot-nexthop".into(), ".x.test".into(), "y.test".into()],
                "mx.a.test",
                "a.test"
            ),
            vec![exact("mx.a.test"), exact("a.test"), below("a.test"), below("x.test"), exact("y.test")]
        );
    }
}
