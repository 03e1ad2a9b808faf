//! The server side of PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login) and CRAM-MD5
//! (RFC 2195) for the built-in `passwd-file` type, without I/O: decoded client responses go
//! in, a challenge or the credentials to check come out. Dovecot runs its own.

/// What the mechanism needs next.
#[derive(Debug, PartialEq, Eq)]
pub enum MechStep {
    /// Send this (raw, not yet base64) challenge and feed the response to [`ServerMech::step`].
    Challenge(Vec<u8>),
    /// The client has said everything: check these credentials.
    Verify(Credentials),
    /// The exchange is over and failed: the reason for the 535 reply.
    Fail(&'static str),
}

/// What a client presented.
#[derive(PartialEq, Eq)]
pub enum Credentials {
    Password { username: String, password: Vec<u8> },
    CramMd5 { username: String, challenge: Vec<u8>, digest: String },
}

impl std::fmt::Debug for Credentials {
    /// The password stays out of every debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Password { username, .. } => write!(f, "Password {{ username: {username:?}, .. }}"),
            Credentials::CramMd5 { username, .. } => write!(f, "CramMd5 {{ username: {username:?}, .. }}"),
        }
    }
}

impl Credentials {
    pub fn username(&self) -> &str {
        match self {
            Credentials::Password { username, .. } | Credentials::CramMd5 { username, .. } => username,
        }
    }
}

/// The mechanisms this type offers, strongest last as Dovecot lists them.
pub const BUILTIN: [&str; 3] = ["PLAIN", "LOGIN", "CRAM-MD5"];

/// Postfix's "Invalid base64"-style reasons are the caller's; these are the mechanisms' own.
const BAD_PLAIN: &str = "Invalid PLAIN response";
const BAD_USER: &str = "Invalid user name";
const NO_INITIAL: &str = "CRAM-MD5 takes no initial response";
const BAD_CRAM: &str = "Invalid CRAM-MD5 response";

#[derive(Debug)]
enum State {
    Plain,
    LoginUser,
    LoginPassword(String),
    Cram(Vec<u8>),
    Done,
}

/// One exchange of one mechanism.
#[derive(Debug)]
pub struct ServerMech {
    state: State,
}

/// A user name as a SASL client sent it: UTF-8, no NUL or other control characters, bounded.
fn username(bytes: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(bytes).ok()?;
    (!s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control)).then(|| s.to_string())
}

impl ServerMech {
    /// Start `mechanism` (upper case, one of [`BUILTIN`]) with the decoded initial response.
    /// `challenge` is the CRAM-MD5 challenge to use (`<random.time@myhostname>`).
    pub fn start(mechanism: &str, initial: Option<Vec<u8>>, challenge: impl FnOnce() -> Vec<u8>) -> (ServerMech, MechStep) {
        let mut m = ServerMech { state: State::Done };
        let step = match mechanism {
            "PLAIN" => {
                m.state = State::Plain;
                match initial {
                    Some(r) => m.step(r),
                    None => MechStep::Challenge(Vec::new()),
                }
            }
            "LOGIN" => {
                m.state = State::LoginUser;
                match initial {
                    Some(r) => m.step(r),
                    None => MechStep::Challenge(b"Username:".to_vec()),
                }
            }
            "CRAM-MD5" if initial.is_some() => MechStep::Fail(NO_INITIAL),
            "CRAM-MD5" => {
                let c = challenge();
                m.state = State::Cram(c.clone());
                MechStep::Challenge(c)
            }
            _ => MechStep::Fail("Unsupported mechanism"),
        };
        (m, step)
    }

    /// The client's next (decoded) response.
    pub fn step(&mut self, response: Vec<u8>) -> MechStep {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Plain => {
                // authzid NUL authcid NUL passwd; an authzid other than the authcid would be
                // acting for someone else, which this type does not allow.
                let parts: Vec<&[u8]> = response.splitn(3, |&b| b == 0).collect();
                let [authz, authc, password] = parts[..] else { return MechStep::Fail(BAD_PLAIN) };
                let Some(user) = username(authc) else { return MechStep::Fail(BAD_USER) };
                if !authz.is_empty() && authz != authc {
                    return MechStep::Fail("Authorization identity other than the user's");
                }
                MechStep::Verify(Credentials::Password { username: user, password: password.to_vec() })
            }
            State::LoginUser => match username(&response) {
                Some(user) => {
                    self.state = State::LoginPassword(user);
                    MechStep::Challenge(b"Password:".to_vec())
                }
                None => MechStep::Fail(BAD_USER),
            },
            State::LoginPassword(user) => MechStep::Verify(Credentials::Password { username: user, password: response }),
            State::Cram(challenge) => {
                // "user digest": the digest is the last space-separated word (user names may
                // contain spaces in principle; RFC 2195 says so).
                let Ok(text) = std::str::from_utf8(&response) else { return MechStep::Fail(BAD_CRAM) };
                let Some((user, digest)) = text.rsplit_once(' ') else { return MechStep::Fail(BAD_CRAM) };
                if digest.len() != 32 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return MechStep::Fail(BAD_CRAM);
                }
                let Some(user) = username(user.as_bytes()) else { return MechStep::Fail(BAD_USER) };
                MechStep::Verify(Credentials::CramMd5 { username: user, challenge, digest: digest.to_string() })
            }
            State::Done => MechStep::Fail("Unexpected response"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(user: &str, password: &str) -> MechStep {
        MechStep::Verify(Credentials::Password { username: user.into(), password: password.as_bytes().to_vec() })
    }

    #[test]
    fn plain_login_cram() {
        let ch = || b"<1.2@mx.test>".to_vec();
        assert_eq!(ServerMech::start("PLAIN", Some(b"\0u\0p".to_vec()), ch).1, pw("u", "p"));
        assert_eq!(ServerMech::start("PLAIN", Some(b"u\0u\0p\0q".to_vec()), ch).1, pw("u", "p\0q"));
        assert_eq!(
            ServerMech::start("PLAIN", Some(b"admin\0u\0p".to_vec()), ch).1,
            MechStep::Fail("Authorization identity other than the user's")
        );
        assert_eq!(ServerMech::start("PLAIN", Some(b"u p".to_vec()), ch).1, MechStep::Fail(BAD_PLAIN));
        assert_eq!(ServerMech::start("PLAIN", Some(b"\0\0p".to_vec()), ch).1, MechStep::Fail(BAD_USER));
        let (mut m, s) = ServerMech::start("PLAIN", None, ch);
        assert_eq!(s, MechStep::Challenge(Vec::new()));
        assert_eq!(m.step(b"\0u\0p".to_vec()), pw("u", "p"));
        assert_eq!(m.step(b"\0u\0p".to_vec()), MechStep::Fail("Unexpected response"));

        let (mut m, s) = ServerMech::start("LOGIN", None, ch);
        assert_eq!(s, MechStep::Challenge(b"Username:".to_vec()));
        assert_eq!(m.step(b"u".to_vec()), MechStep::Challenge(b"Password:".to_vec()));
        assert_eq!(m.step(b"p".to_vec()), pw("u", "p"));
        let (mut m, s) = ServerMech::start("LOGIN", Some(b"u".to_vec()), ch);
        assert_eq!(s, MechStep::Challenge(b"Password:".to_vec()));
        assert_eq!(m.step(b"p".to_vec()), pw("u", "p"));
        assert_eq!(ServerMech::start("LOGIN", Some(b"a\x01b".to_vec()), ch).1, MechStep::Fail(BAD_USER));

        let (mut m, s) = ServerMech::start("CRAM-MD5", None, ch);
        assert_eq!(s, MechStep::Challenge(ch()));
        let digest = "b913a602c7eda7a495b4e6e7334d3890";
        assert_eq!(
            m.step(format!("tim {digest}").into_bytes()),
            MechStep::Verify(Credentials::CramMd5 { username: "tim".into(), challenge: ch(), digest: digest.into() })
        );
        let (mut m, _) = ServerMech::start("CRAM-MD5", None, ch);
        assert_eq!(m.step(b"tim nothex".to_vec()), MechStep::Fail(BAD_CRAM));
        assert_eq!(ServerMech::start("CRAM-MD5", Some(Vec::new()), ch).1, MechStep::Fail(NO_INITIAL));
    }
}
