//! `local_header_rewrite_clients`: which SMTP clients submit mail as local users do, so that
//! their messages get the headers they lack (Message-Id, Date, From) as mail from `sendmail`
//! does, with `always_add_missing_headers = no`. Postfix's `smtpd_check_rewrite`, decided at
//! MAIL FROM: the first word that matches makes the context local; a table that cannot be read
//! refuses the MAIL command with Postfix's 451 replies.

use common::config::table::{Table, is_table_spec};
use common::config::{ConfigError, Params};
use common::interfaces::Myself;

use crate::reply::Reply;
use crate::session::Session;

/// One word of `local_header_rewrite_clients`.
#[derive(Debug, Clone)]
enum Word {
    /// The client connects from one of `inet_interfaces`: this host.
    InetInterfaces(Myself),
    Mynetworks,
    SaslAuthenticated,
    /// A table looked up with the client address (`check_address_map`; `static:all` matches
    /// every client).
    AddressMap(Table),
}

/// The parsed parameter.
#[derive(Debug, Clone, Default)]
pub struct RewriteClients {
    words: Vec<Word>,
}

impl RewriteClients {
    pub fn from_params(p: &Params) -> Result<RewriteClients, ConfigError> {
        const NAME: &str = "local_header_rewrite_clients";
        let mut words = Vec::new();
        let mut items = p.list(NAME)?.into_iter();
        while let Some(item) = items.next() {
            let word = match item.to_ascii_lowercase().as_str() {
                "permit_inet_interfaces" => Word::InetInterfaces(Myself::inet_interfaces(p)?),
                "permit_mynetworks" => Word::Mynetworks,
                "permit_sasl_authenticated" => Word::SaslAuthenticated,
                "check_address_map" => {
                    let Some(spec) = items.next() else {
                        return Err(ConfigError::value(NAME, "check_address_map needs a table"));
                    };
                    Word::AddressMap(Table::open(&spec, &p.config_dir)?)
                }
                _ if is_table_spec(&item) => Word::AddressMap(Table::open(&item, &p.config_dir)?),
                // Postern's smtpd asks for no client certificates, so these could never match:
                // refused rather than silently ignored.
                other => return Err(ConfigError::value(NAME, format!("invalid request: {other}"))),
            };
            words.push(word);
        }
        Ok(RewriteClients { words })
    }

    /// Whether the session's client is local for header rewriting; a 451 reply when a table
    /// could not be read (logged as Postfix's `log_whatsup` does).
    pub fn is_local(&self, s: &Session<'_>) -> Result<bool, Reply> {
        let ip = s.peer.addr;
        for word in &self.words {
            let matched = match word {
                Word::InetInterfaces(me) => Ok(me.contains(ip)),
                Word::Mynetworks => s.cfg.mynetworks.contains(ip).map_err(|e| e.to_string()),
                Word::SaslAuthenticated => Ok(s.sasl_authenticated()),
                Word::AddressMap(t) => t.lookup(&ip.to_string()).map(|v| v.is_some()).map_err(|e| e.to_string()),
            };
            match matched {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(why) => {
                    common::log_warning!("local_header_rewrite_clients: {why}");
                    let reply = Reply::new(451, "4.3.0", "Temporary lookup error");
                    s.log_reject(&reply.first_line());
                    return Err(reply);
                }
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Peer;
    use crate::session::tests::config;

    fn local(main: &str, addr: &str) -> bool {
        let (_d, cfg) = config(main);
        let s = Session::new(&cfg, Peer { name: "client".into(), addr: addr.parse().unwrap() });
        cfg.headers.rewrite_clients.is_local(&s).unwrap()
    }

    #[test]
    fn words_in_order() {
        // The default: this host's interfaces (loopback-only here) are local, others not.
        assert!(local("inet_interfaces = loopback-only\n", "127.0.0.1"));
        assert!(!local("inet_interfaces = loopback-only\n", "192.0.2.1"));
        assert!(local("local_header_rewrite_clients = permit_mynetworks\nmynetworks = 192.0.2.0/24\n", "192.0.2.1"));
        assert!(local("local_header_rewrite_clients = static:all\n", "198.51.100.7"));
        assert!(local("local_header_rewrite_clients = check_address_map inline:{198.51.100.7=ok}\n", "198.51.100.7"));
        assert!(!local("local_header_rewrite_clients = inline:{198.51.100.7=ok}\n", "198.51.100.8"));
        assert!(!local("local_header_rewrite_clients =\n", "127.0.0.1"));
        assert!(!local("local_header_rewrite_clients = permit_sasl_authenticated\n", "127.0.0.1"));
    }

    #[test]
    fn unknown_words_are_configuration_errors() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("queue_directory = {}\nlocal_header_rewrite_clients = permit_tls_clientcerts\n", dir.path().display());
        let main = common::config::MainCf::parse(&text, &dir.path().join("main.cf")).unwrap();
        let p = Params::from_parts(dir.path(), main, &[]);
        let e = RewriteClients::from_params(&p).unwrap_err().to_string();
        assert!(e.contains("local_header_rewrite_clients") && e.contains("invalid request: permit_tls_clientcerts"), "{e}");
    }
}
