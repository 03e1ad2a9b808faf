//! SASL AUTH to a next hop (a smart host), as Postfix's smtp client does it: with
//! `smtp_sasl_auth_enable`, when the server offers AUTH and `smtp_sasl_password_maps` has an
//! entry for the server (its host name, then the next hop as the queue manager names it,
//! `[host]:port`), the client logs in before MAIL with the strongest mechanism that both the
//! server offers (narrowed by `smtp_sasl_mechanism_filter`) and the connection's security
//! options allow: `smtp_sasl_security_options` in plaintext, `smtp_sasl_tls_security_options`
//! under TLS. With the default `noplaintext, noanonymous` no password ever crosses the wire as
//! it is (PLAIN and LOGIN are out), not even under TLS, as in Postfix; a site that wants PLAIN
//! over TLS sets `smtp_sasl_tls_security_options = noanonymous`.
//!
//! A failed login fails the session with Postfix's texts (`SASL authentication failed; ...`);
//! a 5xx reply is made 4xx with `smtp_sasl_auth_soft_bounce` (the default), since a wrong
//! password is the sender's site's problem, not the recipient's. No password reaches a log
//! line or a reason.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::config::table::{Table, TableError, split_braced_list};
use crate::config::{ConfigError, Params};
use crate::log_warning;

use super::connection::Connection;
use super::sasl_mech::{Exchange, Mech};
use super::transaction::{Failure, Hello, broken, deferred};

/// RFC 5321's limit for a command line with its CRLF; RFC 4954 sends a longer initial response
/// after an empty challenge instead.
const COMMAND_LIMIT: usize = 512;
/// Postfix's bound on challenge rounds.
const MAX_STEPS: usize = 100;

/// `smtp_sasl_security_options` and friends: what a mechanism must not be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    /// `noplaintext`: no mechanism that sends the password as it is.
    pub noplaintext: bool,
    /// `noanonymous`: no anonymous login (none is spoken here anyway).
    pub noanonymous: bool,
    /// `noactive`, `nodictionary`, `mutual_auth`, `forward_secrecy`: properties none of
    /// PLAIN, LOGIN and CRAM-MD5 have, so they leave no mechanism.
    pub stronger: bool,
}

impl Options {
    fn parse(param: &str, words: &[String]) -> Result<Options, ConfigError> {
        let mut o = Options::default();
        for w in words {
            match w.to_ascii_lowercase().as_str() {
                "noplaintext" => o.noplaintext = true,
                "noanonymous" => o.noanonymous = true,
                "noactive" | "nodictionary" | "mutual_auth" | "forward_secrecy" => o.stronger = true,
                other => return Err(ConfigError::value(param, format!("unknown SASL security option \"{other}\""))),
            }
        }
        Ok(o)
    }

    pub fn allows(&self, mech: Mech) -> bool {
        let refused = self.stronger || (self.noplaintext && mech.plaintext());
        !refused
    }
}

/// The client's SASL settings.
#[derive(Debug)]
pub struct ClientSasl {
    /// `smtp_sasl_auth_enable`.
    pub enabled: bool,
    /// `smtp_sasl_password_maps`.
    passwords: Option<Table>,
    /// Its name, for the texts.
    maps_param: String,
    /// `smtp_sasl_security_options`, `smtp_sasl_tls_security_options`.
    pub plain_options: Options,
    pub tls_options: Options,
    /// `smtp_sasl_mechanism_filter` (upper-cased; empty: all).
    pub filter: Vec<String>,
    /// `smtp_sasl_auth_soft_bounce`.
    pub soft_bounce: bool,
}

impl ClientSasl {
    /// The settings of the parameter family `prefix` (`smtp` for the smtp agent, `odmr` for
    /// the ODMR customer): `{prefix}_sasl_password_maps`, `{prefix}_sasl_security_options`,
    /// `{prefix}_sasl_tls_security_options`, `{prefix}_sasl_mechanism_filter`. Whether AUTH
    /// is on and whether a 5xx is made 4xx are the caller's (the customer has no choice).
    pub fn from_params(p: &Params, prefix: &str, enabled: bool, soft_bounce: bool) -> Result<ClientSasl, ConfigError> {
        let param = |name: &str| format!("{prefix}_{name}");
        let maps_param = param("sasl_password_maps");
        let maps = p.get(&maps_param)?;
        let passwords = match split_braced_list(&maps).as_slice() {
            [] if enabled => {
                // Postfix's fatal error: AUTH without passwords makes no sense.
                let text = format!("specify a password table via the `{maps_param}' configuration parameter");
                return Err(ConfigError::value(&maps_param, text));
            }
            [] => None,
            [one] => Some(Table::open(one, &p.config_dir)?),
            _ => return Err(ConfigError::value(&maps_param, "Postern takes one table here")),
        };
        let filter_param = param("sasl_mechanism_filter");
        let filter = p.list(&filter_param)?;
        if let Some(t) = filter.iter().find(|f| crate::config::table::is_table_spec(f)) {
            return Err(ConfigError::value(&filter_param, format!("tables are not supported here: {t}")));
        }
        let options = |name: &str| Options::parse(&param(name), &p.list(&param(name))?);
        Ok(ClientSasl {
            enabled,
            passwords,
            maps_param,
            plain_options: options("sasl_security_options")?,
            tls_options: options("sasl_tls_security_options")?,
            filter: filter.into_iter().map(|f| f.to_ascii_uppercase()).collect(),
            soft_bounce,
        })
    }

    /// The user name and password for a server: by its host name, then by the next hop. A
    /// table that cannot be read now is an error, not "no password".
    fn credentials(&self, host: &str, nexthop: &str) -> Result<Option<(String, String)>, TableError> {
        let Some(table) = self.passwords.as_ref() else { return Ok(None) };
        let Some(value) = (match table.lookup(host)? {
            Some(v) => Some(v),
            None => table.lookup(nexthop)?,
        }) else {
            return Ok(None);
        };
        // Historically the delimiter may appear in the password: split at the first.
        let (user, password) = value.split_once(':').unwrap_or((&value, ""));
        Ok(Some((user.to_string(), password.to_string())))
    }
}

/// Who the server is, for the lookup and the texts.
pub struct Server<'a> {
    /// The MX host, or the host of `[host]`.
    pub host: &'a str,
    /// The next hop as the queue manager names it.
    pub nexthop: &'a str,
    /// `host[addr]`.
    pub namaddr: &'a str,
    /// `host[addr]:port`.
    pub relay: &'a str,
}

/// After EHLO (and TLS): log in if the server offers AUTH and there are credentials for it.
/// `Ok` also when no login was due.
pub async fn login(sasl: &ClientSasl, conn: &mut Connection, hello: &Hello, server: &Server<'_>) -> Result<(), Failure> {
    if !sasl.enabled || (!hello.offers("AUTH") && hello.params("AUTH").is_empty()) {
        return Ok(());
    }
    let offered = hello.params("AUTH");
    let mechs: Vec<Mech> =
        offered.iter().filter(|m| sasl.filter.is_empty() || sasl.filter.contains(m)).filter_map(|m| Mech::from_name(m)).collect();
    if mechs.is_empty() {
        log_warning!("{} offered no supported AUTH mechanisms: '{}'", server.relay, offered.join(" "));
    }
    // Without credentials we talk to each other like strangers.
    let credentials = sasl.credentials(server.host, server.nexthop).map_err(|e| {
        log_warning!("{e}");
        deferred("4.3.0", format!("{} lookup error for {}", sasl.maps_param, server.relay), false)
    })?;
    let Some((user, password)) = credentials else { return Ok(()) };
    if mechs.is_empty() {
        return Err(deferred(
            "4.7.0",
            format!(
                "SASL authentication failed: server {} offered no compatible authentication mechanisms for this type of connection security",
                server.namaddr
            ),
            true,
        ));
    }
    let options = if conn.is_tls() { &sasl.tls_options } else { &sasl.plain_options };
    let Some(mech) = mechs.iter().copied().filter(|m| options.allows(*m)).min_by_key(|m| m.preference()) else {
        return Err(cannot(server, "no mechanism available"));
    };
    let mut exchange = Exchange::new(mech, &user, &password);
    let mut pending = exchange.initial().map(|r| B64.encode(r));
    let command = match &pending {
        Some(r) if mech.name().len() + r.len() + 8 <= COMMAND_LIMIT => {
            let c = format!("AUTH {} {r}", mech.name());
            pending = None;
            c
        }
        _ => format!("AUTH {}", mech.name()),
    };
    let mut reply = conn.command(&command).await.map_err(|e| broken(e, server.namaddr, "sending AUTH command"))?;
    let mut steps = 0;
    while reply.class() == 3 {
        steps += 1;
        if steps > MAX_STEPS {
            return Err(deferred(
                "4.3.0",
                format!("SASL authentication failed; authentication protocol loop with server {}", server.namaddr),
                true,
            ));
        }
        let challenge = reply.lines.first().map(|l| l.trim()).unwrap_or("");
        let response = match pending.take() {
            // The initial response that did not fit on the AUTH line: the challenge must be empty.
            Some(r) if challenge.is_empty() => r,
            Some(_) => {
                return Err(deferred(
                    "4.7.0",
                    format!("SASL authentication failed; non-empty initial {} challenge from server {}", mech.name(), server.namaddr),
                    true,
                ));
            }
            None => {
                let Ok(decoded) = B64.decode(challenge) else {
                    let _ = conn.command("*").await;
                    return Err(cannot(server, "malformed server challenge"));
                };
                match exchange.respond(&decoded) {
                    Ok(r) => B64.encode(r),
                    Err(e) => {
                        // RFC 4954: "*" cancels the exchange.
                        let _ = conn.command("*").await;
                        return Err(cannot(server, e.0));
                    }
                }
            }
        };
        reply = conn.command(&response).await.map_err(|e| broken(e, server.namaddr, "sending AUTH response"))?;
    }
    if reply.class() == 2 {
        return Ok(());
    }
    let mut dsn = reply.dsn();
    if sasl.soft_bounce && dsn.starts_with('5') {
        dsn.replace_range(..1, "4");
    }
    Err(deferred(&dsn, format!("SASL authentication failed; server {} said: {}", server.namaddr, reply.text()), true))
}

fn cannot(server: &Server<'_>, why: &str) -> Failure {
    deferred("4.7.0", format!("SASL authentication failed; cannot authenticate to server {}: {why}", server.namaddr), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_options() {
        let words = |s: &str| s.split([',', ' ']).filter(|w| !w.is_empty()).map(str::to_string).collect::<Vec<_>>();
        let default = Options::parse("x", &words("noplaintext, noanonymous")).unwrap();
        assert!(!default.allows(Mech::Plain) && !default.allows(Mech::Login) && default.allows(Mech::CramMd5));
        let anon = Options::parse("x", &words("noanonymous")).unwrap();
        assert!(anon.allows(Mech::Plain) && anon.allows(Mech::Login) && anon.allows(Mech::CramMd5));
        let strong = Options::parse("x", &words("nodictionary")).unwrap();
        assert!(!strong.allows(Mech::CramMd5));
        assert!(Options::parse("x", &words("noplaintext bogus")).is_err());
    }

    use super::super::test_peer::{connected, next_line};
    use tokio::io::AsyncWriteExt;

    fn sasl(lines: &str) -> ClientSasl {
        let dir = tempfile::tempdir().unwrap();
        let main = crate::config::MainCf::parse(lines, &dir.path().join("main.cf")).unwrap();
        let p = Params::from_parts(dir.path(), main, &[]);
        ClientSasl::from_params(&p, "smtp", p.bool("smtp_sasl_auth_enable").unwrap(), true).unwrap()
    }

    /// A peer answering each command line with the next reply; what it was sent.
    async fn peer(replies: Vec<String>) -> (Connection, tokio::task::JoinHandle<Vec<String>>) {
        connected(move |mut r, mut w| async move {
            let mut got = Vec::new();
            for reply in replies {
                let Some(line) = next_line(&mut r).await else { break };
                got.push(line.trim_end().to_string());
                w.write_all(format!("{reply}\r\n").as_bytes()).await.unwrap();
            }
            got
        })
        .await
    }

    const SERVER: Server<'static> =
        Server { host: "relay.test", nexthop: "[relay.test]:587", namaddr: "relay.test[127.0.0.1]", relay: "relay.test[127.0.0.1]:587" };

    fn hello(auth: &str) -> Hello {
        Hello { keywords: vec!["PIPELINING".into(), auth.into()] }
    }

    async fn run(cfg: &str, auth: &str, replies: &[&str]) -> (Result<(), (String, String)>, Vec<String>) {
        let (mut conn, server) = peer(replies.iter().map(|r| r.to_string()).collect()).await;
        let got = login(&sasl(cfg), &mut conn, &hello(auth), &SERVER).await.map_err(|f| (f.dsn, f.text));
        drop(conn);
        (got, server.await.unwrap())
    }

    #[tokio::test]
    async fn dialogues() {
        let map = "smtp_sasl_auth_enable = yes\nsmtp_sasl_security_options = noanonymous\nsmtp_sasl_password_maps = inline:{{[relay.test]:587=tim:pw}}\n";
        // PLAIN with its initial response on the AUTH line.
        let (got, sent) = run(map, "AUTH PLAIN LOGIN", &["235 2.7.0 ok"]).await;
        assert_eq!(got, Ok(()));
        assert_eq!(sent, vec![format!("AUTH PLAIN {}", B64.encode("\0tim\0pw"))]);
        // CRAM-MD5 is preferred; old servers' AUTH= counts too.
        let challenge = B64.encode("<1.2@relay.test>");
        let (got, sent) = run(map, "AUTH=LOGIN CRAM-MD5", &[&format!("334 {challenge}"), "235 ok"]).await;
        assert_eq!(got, Ok(()));
        assert_eq!(sent[0], "AUTH CRAM-MD5");
        // LOGIN, and a 535 made temporary.
        let (got, sent) = run(map, "AUTH LOGIN", &["334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6", "535 5.7.8 Error: authentication failed"]).await;
        assert_eq!(
            got,
            Err((
                "4.7.8".into(),
                "SASL authentication failed; server relay.test[127.0.0.1] said: 535 5.7.8 Error: authentication failed".into()
            ))
        );
        assert_eq!(sent, vec!["AUTH LOGIN".to_string(), B64.encode("tim"), B64.encode("pw")]);
        // Garbage for a challenge: cancelled with "*".
        let (got, sent) = run(map, "AUTH LOGIN", &["334 !!!not base64", "501 5.7.0 cancelled"]).await;
        assert_eq!(
            got,
            Err((
                "4.7.0".into(),
                "SASL authentication failed; cannot authenticate to server relay.test[127.0.0.1]: malformed server challenge".into()
            ))
        );
        assert_eq!(sent, vec!["AUTH LOGIN", "*"]);
        // A server that challenges forever: the mechanism has nothing more to say after its
        // last step (and the loop has Postfix's bound of 100 rounds besides).
        let endless: Vec<&str> = std::iter::repeat_n("334 ", 5).collect();
        let (got, sent) = run(map, "AUTH PLAIN", &endless).await;
        assert_eq!(
            got,
            Err((
                "4.7.0".into(),
                "SASL authentication failed; cannot authenticate to server relay.test[127.0.0.1]: unexpected server challenge".into()
            ))
        );
        assert_eq!(sent.last().map(String::as_str), Some("*"));
        // No AUTH offered, or no password for this server, or AUTH disabled: no command.
        for (cfg, auth) in [
            (map, "SIZE 100"),
            ("smtp_sasl_auth_enable = yes\nsmtp_sasl_password_maps = inline:{{other=a:b}}\n", "AUTH PLAIN"),
            ("", "AUTH PLAIN"),
        ] {
            let (got, sent) = run(cfg, auth, &["250 ok"]).await;
            assert_eq!((got, sent), (Ok(()), vec![]), "{cfg:?} {auth:?}");
        }
        // Only mechanisms this side cannot speak.
        let (got, sent) = run(map, "AUTH GSSAPI NTLM", &[]).await;
        assert_eq!(
            got.unwrap_err().1,
            "SASL authentication failed: server relay.test[127.0.0.1] offered no compatible authentication mechanisms for this type of connection security"
        );
        assert!(sent.is_empty());
    }

    /// A long initial response goes after an empty challenge (RFC 4954), never on a command
    /// line longer than 512 bytes.
    #[tokio::test]
    async fn long_initial_response() {
        let user = "u".repeat(400);
        let cfg = format!(
            "smtp_sasl_auth_enable = yes\nsmtp_sasl_security_options =\nsmtp_sasl_password_maps = inline:{{relay.test={user}:pw}}\n"
        );
        let (got, sent) = run(&cfg, "AUTH PLAIN", &["334 ", "235 ok"]).await;
        assert_eq!(got, Ok(()));
        assert_eq!(sent[0], "AUTH PLAIN");
        assert_eq!(sent[1], B64.encode(format!("\0{user}\0pw")));
        let (got, _) = run(&cfg, "AUTH PLAIN", &["334 aGk=", "235 ok"]).await;
        assert_eq!(got.unwrap_err().0, "4.7.0", "a non-empty first challenge when we go first");
    }
}
