//! SASL AUTH (RFC 4954) for smtpd: the parameters, the mechanism list after
//! `smtpd_sasl_security_options`, and the authentication backends behind one interface:
//! `dovecot` (Dovecot's auth server, [`dovecot`]) and the built-in `passwd-file` (a
//! Dovecot-format passwd-file checked here, [`passwd_file`] with [`mechanism`]).
//!
//! The SMTP side (replies, log lines, session state) is in `session.rs`; the exchange of 334
//! challenges is driven by `conn.rs`. This lives in smtpd rather than common: the smtp
//! client's SASL (issue 11 item 4) is the other side of each mechanism and shares nothing but
//! base64.

pub mod dovecot;
pub mod mechanism;
pub mod passwd_file;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::config::{ConfigError, ParamError, Params};
use common::log_warning;

use mechanism::{Credentials, MechStep, ServerMech};
use passwd_file::PasswdFile;

/// Security properties of a mechanism (Dovecot's `MECH` flags, Postfix's bit layout), and
/// what `smtpd_sasl_security_options` asks for in the same bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Props(pub u8);

impl Props {
    pub const PLAINTEXT: u8 = 1;
    pub const ACTIVE: u8 = 2;
    pub const DICTIONARY: u8 = 4;
    pub const ANONYMOUS: u8 = 8;
    pub const FORWARD_SECRECY: u8 = 16;
    pub const MUTUAL_AUTH: u8 = 32;
    /// Properties an option forbids (`noplaintext` ...) and ones it requires.
    const NEGATIVE: u8 = Self::PLAINTEXT | Self::ACTIVE | Self::DICTIONARY | Self::ANONYMOUS;
    const POSITIVE: u8 = Self::FORWARD_SECRECY | Self::MUTUAL_AUTH;
}

/// `smtpd_sasl_security_options`: `noanonymous`, `noplaintext`, `noactive`, `nodictionary`,
/// `forward_secrecy`, `mutual_auth` (Postfix's words; others are a configuration error).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecurityOptions(Props);

impl SecurityOptions {
    pub fn parse(name: &str, words: &[String]) -> Result<SecurityOptions, ConfigError> {
        let mut p = 0;
        for w in words {
            p |= match w.to_ascii_lowercase().as_str() {
                "noplaintext" => Props::PLAINTEXT,
                "noactive" => Props::ACTIVE,
                "nodictionary" => Props::DICTIONARY,
                "noanonymous" => Props::ANONYMOUS,
                "forward_secrecy" => Props::FORWARD_SECRECY,
                "mutual_auth" => Props::MUTUAL_AUTH,
                other => return Err(ConfigError::value(name, format!("unknown security option: \"{other}\""))),
            };
        }
        Ok(SecurityOptions(Props(p)))
    }

    /// Postfix's filter: the mechanism has every required property and no forbidden one.
    pub fn allows(&self, m: &Props) -> bool {
        let (pos, neg) = (self.0.0 & Props::POSITIVE, self.0.0 & Props::NEGATIVE);
        m.0 & pos == pos && m.0 & neg == 0
    }
}

/// A mechanism a backend offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mech {
    pub name: String,
    pub props: Props,
}

/// RFC 4422 `sasl-mech`: 1 to 20 of upper-case letters, digits, `-` and `_`.
pub fn valid_mechanism_name(name: &str) -> bool {
    (1..=20).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Base64 characters only (Postfix's `is_valid_base64`), so nothing else reaches a backend.
pub fn is_base64_text(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
}

/// What the backend needs to know about the client.
#[derive(Debug, Clone)]
pub struct AuthContext {
    pub service: String,
    pub client_addr: IpAddr,
    pub server_addr: Option<IpAddr>,
    pub encrypted: bool,
}

/// Where an exchange stands after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Send `334 <challenge>` (already base64).
    Challenge(String),
    Success {
        username: String,
    },
    /// 535: wrong credentials or a broken exchange. `username` for the log line.
    Failure {
        reason: String,
        username: Option<String>,
    },
    /// 454: the backend could not answer.
    TempFailure {
        reason: String,
    },
}

/// The backend of `smtpd_sasl_type`.
#[derive(Debug, Clone)]
pub enum Backend {
    Dovecot(Arc<dovecot::Dovecot>),
    PasswdFile(Arc<Builtin>),
}

/// The built-in type: the users, and a bound on concurrent hash checks so that a flood of
/// logins (Argon2 takes tens of MiB and milliseconds each) cannot starve the other sessions.
#[derive(Debug)]
pub struct Builtin {
    pub users: PasswdFile,
    pub local_domain: String,
    pub myhostname: String,
    checks: tokio::sync::Semaphore,
}

/// Concurrent password hash checks per smtpd process.
const CONCURRENT_CHECKS: usize = 2;

/// The SASL parameters of one configuration.
#[derive(Debug, Clone)]
pub struct SaslConfig {
    /// `None` unless `smtpd_sasl_auth_enable = yes`.
    pub backend: Option<Backend>,
    pub security: SecurityOptions,
    pub tls_security: SecurityOptions,
    pub authenticated_header: bool,
    pub tls_auth_only: bool,
    pub service: String,
    pub broken_clients: bool,
    /// `smtpd_sasl_response_limit`: the longest client response line.
    pub response_limit: usize,
}

/// Where `smtpd_sasl_path` is: a relative path is taken relative to `base` (the queue
/// directory for Dovecot's socket, as Postfix's `private/auth`; the configuration directory
/// for a passwd-file, as for `texthash:` tables).
fn sasl_path(p: &Params, base: &Path) -> Result<PathBuf, ConfigError> {
    let path = PathBuf::from(p.get("smtpd_sasl_path")?);
    Ok(if path.is_absolute() { path } else { base.join(path) })
}

impl SaslConfig {
    pub fn from_params(p: &Params, queue_root: &Path, myhostname: &str) -> Result<SaslConfig, ConfigError> {
        let service = p.get("smtpd_sasl_service")?;
        if !valid_mechanism_name(&service.to_ascii_uppercase()) {
            return Err(ConfigError::value("smtpd_sasl_service", format!("bad value: \"{service}\"")));
        }
        let backend = if p.bool("smtpd_sasl_auth_enable")? {
            Some(match p.get("smtpd_sasl_type")?.as_str() {
                "dovecot" => Backend::Dovecot(Arc::new(dovecot::Dovecot::new(sasl_path(p, queue_root)?))),
                "passwd-file" => {
                    let path = sasl_path(p, &p.config_dir)?;
                    let users = PasswdFile::load(&path)
                        .map_err(|e| ConfigError::value("smtpd_sasl_path", format!("open {}: {e}", path.display())))?;
                    if users.is_empty() {
                        log_warning!("{}: no usable users; every AUTH will fail", path.display());
                    }
                    Backend::PasswdFile(Arc::new(Builtin {
                        users,
                        local_domain: p.get("smtpd_sasl_local_domain")?,
                        myhostname: myhostname.to_string(),
                        checks: tokio::sync::Semaphore::new(CONCURRENT_CHECKS),
                    }))
                }
                other => {
                    return Err(ConfigError::value("smtpd_sasl_type", format!("unsupported SASL server implementation: {other}")));
                }
            })
        } else {
            None
        };
        // Postfix's minimum is 1; a value below it is a configuration error, never replaced.
        let limit = p.int("smtpd_sasl_response_limit")?;
        let response_limit = usize::try_from(limit)
            .ok()
            .filter(|&l| l >= 1)
            .ok_or_else(|| ParamError::Int { name: "smtpd_sasl_response_limit".into(), value: limit.to_string() })?;
        Ok(SaslConfig {
            backend,
            security: SecurityOptions::parse("smtpd_sasl_security_options", &p.list("smtpd_sasl_security_options")?)?,
            tls_security: SecurityOptions::parse("smtpd_sasl_tls_security_options", &p.list("smtpd_sasl_tls_security_options")?)?,
            authenticated_header: p.bool("smtpd_sasl_authenticated_header")?,
            tls_auth_only: p.bool("smtpd_tls_auth_only")?,
            service,
            broken_clients: p.bool("broken_sasl_auth_clients")?,
            response_limit,
        })
    }

    /// The mechanisms to announce and accept, after the security options in force; `None`
    /// when the backend has not told them yet (Dovecot not reached).
    pub fn mechanisms(&self, encrypted: bool) -> Option<Vec<String>> {
        let opts = if encrypted { self.tls_security } else { self.security };
        let all = match self.backend.as_ref()? {
            Backend::Dovecot(d) => d.mechanisms()?,
            Backend::PasswdFile(b) => mechanism::BUILTIN
                .iter()
                // CRAM-MD5 needs a plaintext-equivalent secret; without any, never offer it.
                .filter(|m| **m != "CRAM-MD5" || b.users.has_plaintext_secrets())
                .map(|m| Mech {
                    name: m.to_string(),
                    props: Props(if *m == "CRAM-MD5" { Props::DICTIONARY | Props::ACTIVE } else { Props::PLAINTEXT }),
                })
                .collect(),
        };
        Some(all.into_iter().filter(|m| opts.allows(&m.props)).map(|m| m.name).collect())
    }

    /// Before a session starts: make sure a Dovecot backend has told its mechanisms.
    pub async fn prepare(&self) {
        if let Some(Backend::Dovecot(d)) = &self.backend {
            d.prepare().await;
        }
    }
}

/// One AUTH exchange in progress.
pub enum Exchange {
    Dovecot(dovecot::Request),
    Builtin {
        mech: ServerMech,
        backend: Arc<Builtin>,
    },
    /// Nothing more to say (the first step already ended it).
    Over,
}

impl Backend {
    /// Start `mechanism` with the client's initial response (base64, or `=` for empty).
    pub async fn start(&self, mechanism: &str, initial: Option<&str>, ctx: &AuthContext) -> (Exchange, Outcome) {
        match self {
            Backend::Dovecot(d) => {
                let (req, outcome) = d.start(mechanism, initial, ctx).await;
                (req.map_or(Exchange::Over, Exchange::Dovecot), outcome)
            }
            Backend::PasswdFile(b) => {
                let decoded = match initial {
                    None => None,
                    Some("=") => Some(Vec::new()),
                    Some(text) => match passwd_file::decode(text) {
                        Some(d) => Some(d),
                        None => return (Exchange::Over, invalid_base64("initial")),
                    },
                };
                let (mech, step) = ServerMech::start(mechanism, decoded, || cram_challenge(&b.myhostname));
                let outcome = builtin_outcome(b, step).await;
                (Exchange::Builtin { mech, backend: b.clone() }, outcome)
            }
        }
    }
}

impl Exchange {
    /// The client's response to a challenge (base64 characters, checked by the session).
    pub async fn next(&mut self, response: &str) -> Outcome {
        match self {
            Exchange::Dovecot(req) => req.next(response).await,
            Exchange::Builtin { mech, backend } => match passwd_file::decode(response) {
                Some(decoded) => {
                    let step = mech.step(decoded);
                    builtin_outcome(backend, step).await
                }
                None => invalid_base64("continued"),
            },
            Exchange::Over => Outcome::Failure { reason: "Unexpected response".into(), username: None },
        }
    }
}

/// Postfix's (and Dovecot's) wording.
fn invalid_base64(which: &str) -> Outcome {
    Outcome::Failure { reason: format!("Invalid base64 data in {which} response"), username: None }
}

/// `<random.seconds@myhostname>`, unique per exchange.
fn cram_challenge(host: &str) -> Vec<u8> {
    let mut r = [0u8; 8];
    // Without randomness the challenge would be guessable: fall back to the time's nanoseconds
    // mixed with the process id, still unique per exchange.
    if getrandom::getrandom(&mut r).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        r = (t ^ u64::from(std::process::id()) << 32).to_le_bytes();
    }
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("<{}.{secs}@{host}>", u64::from_le_bytes(r)).into_bytes()
}

/// The built-in type's generic failure: it does not tell whether the user exists.
const AUTH_FAILURE: &str = "authentication failure";

async fn builtin_outcome(b: &Arc<Builtin>, step: MechStep) -> Outcome {
    use base64::Engine;
    match step {
        MechStep::Challenge(c) => Outcome::Challenge(passwd_file::b64().encode(c)),
        MechStep::Fail(reason) => Outcome::Failure { reason: reason.into(), username: None },
        MechStep::Verify(creds) => {
            let given = creds.username().to_string();
            // The hash check runs off the session threads, a few at a time.
            let Ok(_permit) = b.checks.acquire().await else {
                return Outcome::TempFailure { reason: "authentication backend unavailable".into() };
            };
            let b2 = b.clone();
            let verdict = tokio::task::spawn_blocking(move || check(&b2, creds)).await.unwrap_or(Err(AUTH_FAILURE));
            match verdict {
                Ok(username) => Outcome::Success { username },
                Err(reason) => Outcome::Failure { reason: reason.into(), username: Some(given) },
            }
        }
    }
}

/// Check credentials against the file: the user's full name on success.
fn check(b: &Builtin, creds: Credentials) -> Result<String, &'static str> {
    let Some((name, secret)) = b.users.find(creds.username(), &b.local_domain) else { return Err(AUTH_FAILURE) };
    let ok = match &creds {
        Credentials::Password { password, .. } => passwd_file::verify_password(secret, password),
        Credentials::CramMd5 { challenge, digest, .. } => match passwd_file::verify_cram_md5(secret, challenge, digest) {
            Some(ok) => ok,
            None => {
                log_warning!("SASL passwd-file: user {name} has no plaintext-equivalent secret ({{PLAIN}}): CRAM-MD5 cannot work for it");
                false
            }
        },
    };
    if ok { Ok(name) } else { Err(AUTH_FAILURE) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_limit_below_one_is_refused_not_replaced() {
        let params = |limit: &str| {
            let main =
                common::config::main_cf::MainCf::parse(&format!("smtpd_sasl_response_limit = {limit}\n"), Path::new("main.cf")).unwrap();
            Params::from_parts(Path::new("/nonexistent"), main, &[])
        };
        for bad in ["-1", "0"] {
            let e = SaslConfig::from_params(&params(bad), Path::new("/nonexistent"), "mx.test").unwrap_err();
            assert_eq!(e.to_string(), format!("bad numerical configuration: smtpd_sasl_response_limit = {bad}"));
        }
        assert_eq!(SaslConfig::from_params(&params("100"), Path::new("/nonexistent"), "mx.test").unwrap().response_limit, 100);
    }

    #[test]
    fn security_options_filter_like_postfix() {
        let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let plain = Props(Props::PLAINTEXT);
        let cram = Props(Props::DICTIONARY | Props::ACTIVE);
        let anon = Props(Props::ANONYMOUS);
        let o = SecurityOptions::parse("x", &words("noanonymous")).unwrap();
        assert!(o.allows(&plain) && o.allows(&cram) && !o.allows(&anon));
        let o = SecurityOptions::parse("x", &words("noanonymous noplaintext")).unwrap();
        assert!(!o.allows(&plain) && o.allows(&cram));
        let o = SecurityOptions::parse("x", &words("mutual_auth")).unwrap();
        assert!(!o.allows(&plain) && !o.allows(&cram));
        assert!(SecurityOptions::parse("x", &words("noplain")).is_err());
        assert!(valid_mechanism_name("CRAM-MD5") && !valid_mechanism_name("A\tB") && !valid_mechanism_name(""));
        assert!(is_base64_text("AGEAYg==") && !is_base64_text("AG\tEA"));
    }

    #[tokio::test]
    async fn builtin_exchanges() {
        let users = PasswdFile::parse("alice:{PLAIN}wonderland\n", Path::new("f"));
        let b =
            Arc::new(Builtin { users, local_domain: String::new(), myhostname: "mx.test".into(), checks: tokio::sync::Semaphore::new(2) });
        let backend = Backend::PasswdFile(b);
        let ctx = AuthContext { service: "smtp".into(), client_addr: "192.0.2.1".parse().unwrap(), server_addr: None, encrypted: false };
        use base64::Engine;
        let enc = |s: &[u8]| passwd_file::b64().encode(s);
        let (_, out) = backend.start("PLAIN", Some(&enc(b"\0alice\0wonderland")), &ctx).await;
        assert_eq!(out, Outcome::Success { username: "alice".into() });
        let (_, out) = backend.start("PLAIN", Some(&enc(b"\0alice\0wrong")), &ctx).await;
        assert_eq!(out, Outcome::Failure { reason: AUTH_FAILURE.into(), username: Some("alice".into()) });
        let (_, out) = backend.start("PLAIN", Some("AGFsaWNl!!"), &ctx).await;
        assert_eq!(out, invalid_base64("initial"));
        // CRAM-MD5 end to end, the digest computed as a client would.
        let (mut ex, out) = backend.start("CRAM-MD5", None, &ctx).await;
        let Outcome::Challenge(c) = out else { panic!("{out:?}") };
        let challenge = passwd_file::decode(&c).unwrap();
        assert!(challenge.starts_with(b"<") && challenge.ends_with(b"@mx.test>"));
        use hmac::Mac;
        let mut mac = hmac::Hmac::<md5::Md5>::new_from_slice(b"wonderland").unwrap();
        mac.update(&challenge);
        let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(ex.next(&enc(format!("alice {hex}").as_bytes())).await, Outcome::Success { username: "alice".into() });
    }
}
