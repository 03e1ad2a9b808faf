//! The client side of the SASL mechanisms PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login)
//! and CRAM-MD5 (RFC 2195), without I/O: server challenges (decoded) go in, responses (raw, not
//! yet base64) come out. Which mechanism a connection may use is [`super::sasl`]'s business.

use hmac::{Hmac, Mac};
use md5::Md5;

/// The mechanisms the client can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mech {
    Plain,
    Login,
    CramMd5,
}

impl Mech {
    /// By the name a server lists in its AUTH keyword.
    pub fn from_name(name: &str) -> Option<Mech> {
        match name.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(Mech::Plain),
            "LOGIN" => Some(Mech::Login),
            "CRAM-MD5" => Some(Mech::CramMd5),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mech::Plain => "PLAIN",
            Mech::Login => "LOGIN",
            Mech::CramMd5 => "CRAM-MD5",
        }
    }

    /// The password crosses the wire as it is (Cyrus SASL's lack of `SASL_SEC_NOPLAINTEXT`).
    pub fn plaintext(self) -> bool {
        matches!(self, Mech::Plain | Mech::Login)
    }

    /// Preference, strongest first, as Cyrus SASL picks: a mechanism that does not send the
    /// password before those that do.
    pub fn preference(self) -> u8 {
        match self {
            Mech::CramMd5 => 0,
            Mech::Plain => 1,
            Mech::Login => 2,
        }
    }
}

/// One exchange of one mechanism.
pub struct Exchange<'a> {
    mech: Mech,
    user: &'a str,
    password: &'a str,
    steps: u8,
}

/// The server's challenge makes no sense for the mechanism.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MechError(pub &'static str);

impl<'a> Exchange<'a> {
    pub fn new(mech: Mech, user: &'a str, password: &'a str) -> Exchange<'a> {
        Exchange { mech, user, password, steps: 0 }
    }

    /// The initial response sent with the AUTH command, if the mechanism has one.
    pub fn initial(&mut self) -> Option<Vec<u8>> {
        match self.mech {
            Mech::Plain => {
                self.steps = 1;
                Some([b"\0", self.user.as_bytes(), b"\0", self.password.as_bytes()].concat())
            }
            Mech::Login | Mech::CramMd5 => None,
        }
    }

    /// The response to a server challenge (decoded from base64).
    pub fn respond(&mut self, challenge: &[u8]) -> Result<Vec<u8>, MechError> {
        self.steps += 1;
        match (self.mech, self.steps) {
            // An empty challenge after AUTH PLAIN without an initial response.
            (Mech::Plain, 1) => Ok([b"\0", self.user.as_bytes(), b"\0", self.password.as_bytes()].concat()),
            (Mech::Login, 1) => Ok(self.user.as_bytes().to_vec()),
            (Mech::Login, 2) => Ok(self.password.as_bytes().to_vec()),
            (Mech::CramMd5, 1) => {
                if challenge.is_empty() {
                    return Err(MechError("empty CRAM-MD5 challenge"));
                }
                let mut mac = Hmac::<Md5>::new_from_slice(self.password.as_bytes()).map_err(|_| MechError("bad CRAM-MD5 key"))?;
                mac.update(challenge);
                let digest: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
                Ok(format!("{} {digest}", self.user).into_bytes())
            }
            _ => Err(MechError("unexpected server challenge")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchanges() {
        let mut plain = Exchange::new(Mech::Plain, "tim", "tanstaaftanstaaf");
        assert_eq!(plain.initial().unwrap(), b"\0tim\0tanstaaftanstaaf");
        assert!(plain.respond(b"").is_err(), "nothing more to say");

        let mut login = Exchange::new(Mech::Login, "tim", "pw");
        assert_eq!(login.initial(), None);
        assert_eq!(login.respond(b"Username:").unwrap(), b"tim");
        assert_eq!(login.respond(b"Password:").unwrap(), b"pw");
        assert!(login.respond(b"?").is_err());

        // RFC 2195's example.
        let mut cram = Exchange::new(Mech::CramMd5, "tim", "tanstaaftanstaaf");
        assert_eq!(cram.initial(), None);
        assert_eq!(cram.respond(b"<1896.697170952@postoffice.reston.mci.net>").unwrap(), b"tim b913a602c7eda7a495b4e6e7334d3890".to_vec());
        assert!(Exchange::new(Mech::CramMd5, "tim", "x").respond(b"").is_err());
        assert_eq!(Mech::from_name("cram-md5"), Some(Mech::CramMd5));
        assert_eq!(Mech::from_name("GSSAPI"), None);
    }
}
