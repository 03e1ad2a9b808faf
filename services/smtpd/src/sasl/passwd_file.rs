//! The built-in `passwd-file` type's user database: a Dovecot-format passwd-file
//! (`user:{SCHEME}secret:uid:gid:gecos:home:shell:extra`, only the first two fields are used),
//! read when smtpd starts and on every reload. The file is outside input: a bad line is
//! skipped with a `file:line` warning; nothing in it can make smtpd panic or spend unbounded
//! time (hash cost parameters are capped, see [`MAX_SHA_ROUNDS`] and [`MAX_ARGON2_MEMORY_KIB`]).

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use common::log_warning;
use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;

/// SHA-crypt rounds at most: the format allows 999,999,999, which is minutes of CPU per login.
pub const MAX_SHA_ROUNDS: u32 = 10_000_000;
/// Argon2 memory cost at most (KiB): Dovecot's `doveadm pw -s ARGON2ID` uses 64 MiB.
pub const MAX_ARGON2_MEMORY_KIB: u32 = 256 * 1024;
/// Argon2 time cost and lanes at most.
const MAX_ARGON2_TIME: u32 = 64;
const MAX_ARGON2_LANES: u32 = 16;

/// How a secret is stored.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// `{PLAIN}` / `{CLEAR}`: usable for every mechanism, CRAM-MD5 included.
    Plain(Vec<u8>),
    /// `{SHA512-CRYPT}` / `{SHA256-CRYPT}` (`$6$...` / `$5$...`).
    ShaCrypt(String),
    /// `{ARGON2ID}` / `{ARGON2I}` (PHC string `$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
    Argon2(String),
}

impl std::fmt::Debug for Secret {
    /// Never print a secret, not even in a test failure.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Plain(_) => "Secret::Plain(..)",
            Secret::ShaCrypt(_) => "Secret::ShaCrypt(..)",
            Secret::Argon2(_) => "Secret::Argon2(..)",
        })
    }
}

/// The users of one passwd-file.
#[derive(Debug, Clone, Default)]
pub struct PasswdFile {
    users: HashMap<String, Secret>,
}

/// Why a secret field is unusable (the warning's text).
fn parse_secret(field: &str) -> Result<Secret, String> {
    let (scheme, value) = match field.strip_prefix('{').and_then(|f| f.split_once('}')) {
        Some((scheme, value)) => (scheme.to_ascii_uppercase(), value),
        // Dovecot's default scheme is CRYPT; the crypt forms we can check name themselves.
        None if field.starts_with("$6$") || field.starts_with("$5$") => ("SHA512-CRYPT".to_string(), field),
        None if field.starts_with("$argon2") => ("ARGON2ID".to_string(), field),
        None => return Err("password field without a {SCHEME} prefix".into()),
    };
    match scheme.as_str() {
        "PLAIN" | "CLEAR" => Ok(Secret::Plain(value.as_bytes().to_vec())),
        "SHA512-CRYPT" | "SHA256-CRYPT" => check_sha_crypt(value).map(|()| Secret::ShaCrypt(value.to_string())),
        "ARGON2ID" | "ARGON2I" => check_argon2(value).map(|()| Secret::Argon2(value.to_string())),
        other => Err(format!("unsupported password scheme {{{other}}} (use PLAIN, SHA512-CRYPT, SHA256-CRYPT or ARGON2ID)")),
    }
}

/// `$6$[rounds=N$]salt$hash` with a rounds count we are willing to spend.
fn check_sha_crypt(value: &str) -> Result<(), String> {
    let fields: Vec<&str> = value.split('$').collect();
    let bad = || "malformed SHA-crypt hash".to_string();
    if fields.first() != Some(&"") || !matches!(fields.get(1), Some(&"5" | &"6")) {
        return Err(bad());
    }
    let rest = &fields[2..];
    let rest = match rest.first().and_then(|f| f.strip_prefix("rounds=")) {
        Some(n) => {
            let rounds: u32 = n.parse().map_err(|_| bad())?;
            if !(1000..=MAX_SHA_ROUNDS).contains(&rounds) {
                return Err(format!("SHA-crypt rounds={rounds} outside 1000..{MAX_SHA_ROUNDS}"));
            }
            &rest[1..]
        }
        None => rest,
    };
    match rest {
        [salt, hash] if salt.len() <= 16 && !hash.is_empty() => Ok(()),
        _ => Err(bad()),
    }
}

/// A PHC Argon2 string whose cost parameters are within bounds.
fn check_argon2(value: &str) -> Result<(), String> {
    let hash = argon2::PasswordHash::new(value).map_err(|e| format!("malformed Argon2 hash: {e}"))?;
    if !matches!(hash.algorithm.as_str(), "argon2id" | "argon2i") {
        return Err(format!("not an Argon2i/Argon2id hash: {}", hash.algorithm));
    }
    let params = argon2::Params::try_from(&hash).map_err(|e| format!("bad Argon2 parameters: {e}"))?;
    if params.m_cost() > MAX_ARGON2_MEMORY_KIB || params.t_cost() > MAX_ARGON2_TIME || params.p_cost() > MAX_ARGON2_LANES {
        return Err(format!(
            "Argon2 cost m={},t={},p={} above the limit m={MAX_ARGON2_MEMORY_KIB},t={MAX_ARGON2_TIME},p={MAX_ARGON2_LANES}",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        ));
    }
    Ok(())
}

impl PasswdFile {
    /// Parse the text of `path`; bad lines are skipped with a `path:line: ...` warning.
    pub fn parse(text: &str, path: &Path) -> PasswdFile {
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let warn = |what: &str| log_warning!("{}:{}: {what}; line ignored", path.display(), n + 1);
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let mut fields = line.splitn(3, ':');
            let user = fields.next().unwrap_or_default();
            let Some(secret) = fields.next() else {
                warn("missing ':' after the user name");
                continue;
            };
            if user.is_empty() || user.chars().any(|c| c.is_control() || c.is_whitespace()) {
                warn("empty user name, or one with spaces or control characters");
                continue;
            }
            match parse_secret(secret) {
                Ok(s) => {
                    if users.insert(user.to_string(), s).is_some() {
                        warn(&format!("duplicate user {user}; the later line wins"));
                    }
                }
                Err(e) => warn(&format!("user {user}: {e}")),
            }
        }
        PasswdFile { users }
    }

    /// Read and parse `path`.
    pub fn load(path: &Path) -> Result<PasswdFile, std::io::Error> {
        let text = std::fs::read_to_string(path)?;
        Ok(PasswdFile::parse(&text, path))
    }

    /// Whether any user can log in with CRAM-MD5 (which needs a plaintext-equivalent secret).
    pub fn has_plaintext_secrets(&self) -> bool {
        self.users.values().any(|s| matches!(s, Secret::Plain(_)))
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The user's entry: `name` as given, else `name@local_domain` when the name has no domain
    /// (`smtpd_sasl_local_domain`).
    pub fn find(&self, name: &str, local_domain: &str) -> Option<(String, &Secret)> {
        if let Some(s) = self.users.get(name) {
            return Some((name.to_string(), s));
        }
        if local_domain.is_empty() || name.contains('@') {
            return None;
        }
        let full = format!("{name}@{local_domain}");
        self.users.get(&full).map(|s| (full, s))
    }
}

/// Does `password` match `secret`? Slow for the hashed schemes (run it off the session thread).
pub fn verify_password(secret: &Secret, password: &[u8]) -> bool {
    match secret {
        Secret::Plain(p) => p.ct_eq(password).into(),
        Secret::ShaCrypt(h) => {
            let Ok(pw) = std::str::from_utf8(password) else { return false };
            if h.starts_with("$6$") { sha_crypt::sha512_check(pw, h).is_ok() } else { sha_crypt::sha256_check(pw, h).is_ok() }
        }
        Secret::Argon2(h) => {
            use argon2::PasswordVerifier;
            argon2::PasswordHash::new(h).is_ok_and(|hash| argon2::Argon2::default().verify_password(password, &hash).is_ok())
        }
    }
}

/// RFC 2195: does `digest_hex` equal HMAC-MD5(password, challenge)? Only a plaintext secret
/// can answer; `None` when the user has none.
pub fn verify_cram_md5(secret: &Secret, challenge: &[u8], digest_hex: &str) -> Option<bool> {
    let Secret::Plain(password) = secret else { return None };
    let Ok(mut mac) = Hmac::<md5::Md5>::new_from_slice(password) else { return Some(false) };
    mac.update(challenge);
    let want: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    Some(want.as_bytes().ct_eq(digest_hex.to_ascii_lowercase().as_bytes()).into())
}

/// Standard base64 with padding, as SASL uses on the wire.
pub fn b64() -> &'static base64::engine::general_purpose::GeneralPurpose {
    &base64::engine::general_purpose::STANDARD
}

/// Decode a SASL response; `None` when it is not base64.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    b64().decode(text.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `doveadm pw -s SHA512-CRYPT -p secret` (rounds default 5000).
    const SHA512: &str = "$6$xCDgQnB4Fv2AjQ35$U2.liAOnP.MSZy4LaBLQofcgcalEs6d.BxFSI8ihqbP/Dbw512cPvnXSl.eo5viXYG3HjZQlrfoE9uyKatD310";

    #[test]
    fn file_lines_and_schemes() {
        let text = format!(
            "# comment\n\nalice:{{PLAIN}}wonderland::::::\nbob:{{SHA512-CRYPT}}{SHA512}:1000:1000::/home/bob::\ncarol\n:{{PLAIN}}x\ndave:{{MD5-CRYPT}}$1$x$y\neve:nothing\nfrank:{{SHA512-CRYPT}}$6$rounds=999999999$salt$hash\ngina:{{ARGON2ID}}$argon2id$v=19$m=9999999,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\n"
        );
        let f = PasswdFile::parse(&text, Path::new("/etc/postern/sasl-users"));
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f.has_plaintext_secrets());
        let (name, alice) = f.find("alice", "").unwrap();
        assert_eq!(name, "alice");
        assert!(verify_password(alice, b"wonderland") && !verify_password(alice, b"wonderlan"));
        let (_, bob) = f.find("bob", "").unwrap();
        assert!(verify_password(bob, b"secret") && !verify_password(bob, b"Secret"));
        assert_eq!(verify_cram_md5(bob, b"<1@x>", "00"), None, "no CRAM-MD5 with a hashed secret");
        assert!(f.find("carol", "").is_none() && f.find("nobody", "").is_none());
    }

    /// A hash made by Dovecot itself (`doveadm pw -s ARGON2ID -p secret`) verifies here.
    #[test]
    fn dovecot_argon2id_hash() {
        let line = "u:{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$GiOBRirP0jm3LK+KXpSvOA$vB9vwZpC5R0lDhzhKeIbenyqsj+bwOYDks18OqlLVjA\n";
        let f = PasswdFile::parse(line, Path::new("f"));
        let (_, s) = f.find("u", "").unwrap();
        assert!(verify_password(s, b"secret") && !verify_password(s, b"secreT"));
    }

    #[test]
    fn local_domain_and_argon2() {
        let hash = {
            use argon2::PasswordHasher;
            let salt = argon2::password_hash::SaltString::encode_b64(b"saltsaltsalt").unwrap();
            let params = argon2::Params::new(1024, 1, 1, None).unwrap();
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password(b"pw", &salt)
                .unwrap()
                .to_string()
        };
        let f = PasswdFile::parse(&format!("u@example.com:{{ARGON2ID}}{hash}\n"), Path::new("f"));
        let (name, s) = f.find("u", "example.com").unwrap();
        assert_eq!(name, "u@example.com");
        assert!(verify_password(s, b"pw") && !verify_password(s, b"px"));
        assert!(!f.has_plaintext_secrets());
    }

    #[test]
    fn cram_md5_rfc2195_example() {
        // RFC 2195 section 2: tim / tanstaaftanstaaf.
        let s = Secret::Plain(b"tanstaaftanstaaf".to_vec());
        let challenge = b"<1896.697170952@postoffice.reston.mci.net>";
        assert_eq!(verify_cram_md5(&s, challenge, "b913a602c7eda7a495b4e6e7334d3890"), Some(true));
        assert_eq!(verify_cram_md5(&s, challenge, "B913A602C7EDA7A495B4E6E7334D3890"), Some(true));
        assert_eq!(verify_cram_md5(&s, challenge, "b913a602c7eda7a495b4e6e7334d3891"), Some(false));
    }
}
