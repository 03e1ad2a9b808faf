//! The AUTH command in the session, without I/O (Postfix's `smtpd_sasl_proto.c` and
//! `smtpd_sasl_glue.c`): the checks before an exchange, each client response, and the reply
//! and log line that end it. Reply texts and log shapes are Postfix's, so that fail2ban's
//! stock `postfix[mode=auth]` filter matches the failures. Passwords and the client's base64
//! responses are never logged.

use common::log_warning;
use common::text::printable;

use crate::reply::Reply;
use crate::sasl::{Outcome, is_base64_text, valid_mechanism_name};
use crate::session::{SaslLogin, Session, Step};

/// At most `n` characters of `s` (Postfix logs `%.100s`).
fn clip(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

impl Session<'_> {
    /// AUTH is offered in this session: enabled, and over TLS if `smtpd_tls_auth_only`.
    pub fn sasl_active(&self) -> bool {
        self.cfg.sasl.backend.is_some() && (self.encrypted() || !self.cfg.sasl.tls_auth_only)
    }

    /// Postfix's `permit_sasl_authenticated`: logged in with a mechanism other than ANONYMOUS.
    pub fn sasl_authenticated(&self) -> bool {
        self.sasl_login.as_ref().is_some_and(|l| !l.method.eq_ignore_ascii_case("anonymous"))
    }

    /// `AUTH mechanism [initial-response]`, checked in Postfix's order.
    pub(crate) fn auth(&mut self, arg: &str) -> Step {
        if self.cfg.helo_required && self.helo.is_none() {
            return Step::Reply(Reply::new(503, "5.5.1", "Error: send HELO/EHLO first"));
        }
        if !self.sasl_active() {
            return Step::Reply(Reply::new(503, "5.5.1", "Error: authentication not enabled"));
        }
        if self.in_transaction() {
            return Step::Reply(Reply::new(503, "5.5.1", "Error: MAIL transaction in progress"));
        }
        if self.sasl_login.is_some() {
            return Step::Reply(Reply::new(503, "5.5.1", "Error: already authenticated"));
        }
        let words: Vec<&str> = arg.split_whitespace().collect();
        if words.is_empty() || words.len() > 2 {
            return Step::Reply(Reply::new(501, "5.5.4", "Syntax: AUTH mechanism"));
        }
        let given = printable(words[0], '?').into_owned();
        let mechanism = given.to_ascii_uppercase();
        // Mechanisms the backend has not told yet (Dovecot not reached) are its to refuse.
        let offered = self.cfg.sasl.mechanisms(self.encrypted());
        if !valid_mechanism_name(&mechanism) || offered.is_some_and(|m| !m.contains(&mechanism)) {
            let reason = format!("Invalid authentication mechanism: '{given}'");
            return Step::Reply(self.auth_finished(&given, Outcome::Failure { reason, username: None }));
        }
        let initial = words.get(1).map(|s| s.to_string());
        if initial.as_deref().is_some_and(|i| !is_base64_text(i)) {
            let reason = "Invalid base64 data in initial response".to_string();
            return Step::Reply(self.auth_finished(&mechanism, Outcome::Failure { reason, username: None }));
        }
        Step::Auth { mechanism, initial }
    }

    /// The client's line after a 334 challenge: the response to pass on, or the reply that
    /// ends the exchange (`*` cancels it).
    pub fn auth_response(&mut self, mechanism: &str, line: &[u8]) -> Result<String, Reply> {
        if line == b"*" {
            log_warning!("{}: SASL {mechanism} authentication aborted", self.peer.show());
            return Err(Reply::new(501, "5.7.0", "Authentication aborted"));
        }
        match std::str::from_utf8(line) {
            Ok(text) if is_base64_text(text) => Ok(text.to_string()),
            _ => {
                let reason = "Invalid base64 data in continued response".to_string();
                Err(self.auth_finished(mechanism, Outcome::Failure { reason, username: None }))
            }
        }
    }

    /// The reply to a challenge.
    pub fn auth_challenge(challenge: &str) -> Reply {
        Reply::plain(334, challenge)
    }

    /// The end of an exchange: log in on success; on failure, Postfix's warning.
    pub fn auth_finished(&mut self, mechanism: &str, outcome: Outcome) -> Reply {
        let fail = |s: &Session<'_>, reason: &str, username: Option<&str>| {
            log_warning!(
                "{}: SASL {mechanism} authentication failed: {reason}, sasl_username={}",
                s.peer.show(),
                username.map_or_else(|| "(unavailable)".to_string(), |u| printable(&clip(u, 100), '?').into_owned())
            );
        };
        let outcome = match outcome {
            // A backend's reason goes into a reply line: printable, and not unbounded.
            Outcome::Failure { reason, username } => {
                Outcome::Failure { reason: printable(&clip(&reason, 200), '?').into_owned(), username }
            }
            Outcome::TempFailure { reason } => Outcome::TempFailure { reason: printable(&clip(&reason, 200), '?').into_owned() },
            other => other,
        };
        match outcome {
            Outcome::Success { username } => {
                // Postfix logs no line here: the login shows in the `client=` line of each
                // message and as `auth=1` in the disconnect line.
                let username = printable(&username, '?').into_owned();
                self.sasl_login = Some(SaslLogin { method: mechanism.to_string(), username });
                Reply::new(235, "2.7.0", "Authentication successful")
            }
            Outcome::Failure { reason, username } => {
                fail(self, &reason, username.as_deref());
                Reply::new(535, "5.7.8", format!("Error: authentication failed: {reason}"))
            }
            Outcome::TempFailure { reason } => {
                fail(self, &reason, None);
                Reply::new(454, "4.7.0", format!("Temporary authentication failure: {reason}"))
            }
            Outcome::Challenge(_) => {
                let reason = "too many challenges";
                fail(self, reason, None);
                Reply::new(535, "5.7.8", format!("Error: authentication failed: {reason}"))
            }
        }
    }

    /// What the backend is told about this client.
    pub fn auth_context(&self) -> crate::sasl::AuthContext {
        crate::sasl::AuthContext {
            service: self.cfg.sasl.service.clone(),
            client_addr: self.peer.addr,
            server_addr: self.local_addr,
            encrypted: self.encrypted(),
        }
    }

    /// `, sasl_method=PLAIN, sasl_username=user` for the `client=` log line.
    pub fn sasl_log_suffix(&self) -> String {
        self.sasl_login.as_ref().map_or_else(String::new, |l| format!(", sasl_method={}, sasl_username={}", l.method, l.username))
    }

    /// `(Authenticated sender: user)` for `Received:` (`smtpd_sasl_authenticated_header`).
    pub fn received_auth_comment(&self) -> Option<String> {
        let login = self.sasl_login.as_ref().filter(|_| self.cfg.sasl.authenticated_header)?;
        // A comment must not end early or nest: no parentheses or backslashes in it.
        let user: String = login.username.chars().map(|c| if matches!(c, '(' | ')' | '\\') { '?' } else { c }).collect();
        Some(format!("(Authenticated sender: {user})"))
    }
}
