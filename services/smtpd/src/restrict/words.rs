//! The words of Postfix's restriction lists (`smtpd_*_restrictions`), parsed once from
//! main.cf. A word Postern does not have is a configuration error at start and reload, never a
//! silently skipped restriction.

use common::config::table::{Table, is_table_spec, split_braced_list};
use common::config::{ConfigError, Params};

use super::dnsbl::Dnsbl;

/// What a `check_*_access` table is looked up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Client,
    Helo,
    Sender,
    Recipient,
    Etrn,
}

impl Subject {
    /// Postfix's reply class (`SMTPD_NAME_*`): `<name>: Client host rejected: ...`.
    pub fn class(self) -> &'static str {
        match self {
            Subject::Client => "Client host",
            Subject::Helo => "Helo command",
            Subject::Sender => "Sender address",
            Subject::Recipient => "Recipient address",
            Subject::Etrn => "Etrn command",
        }
    }
}

/// One entry of a restriction list.
#[derive(Debug, Clone)]
pub enum Word {
    Permit,
    Reject,
    Defer,
    /// The next rejection only logs `reject_warning`.
    WarnIfReject,
    PermitMynetworks,
    /// The client logged in with SASL.
    PermitSaslAuthenticated,
    RejectUnauthDestination,
    DeferUnauthDestination,
    /// `check_{client,helo,sender,recipient,etrn}_access type:table`.
    Access(Subject, Table),
    RejectInvalidHeloHostname,
    RejectNonFqdnHeloHostname,
    RejectNonFqdnSender,
    RejectNonFqdnRecipient,
    RejectUnlistedRecipient,
    RejectUnlistedSender,
    RejectUnauthPipelining,
    /// ETRN only for the sites the client's login owns (`smtpd_etrn_login_maps`).
    RejectEtrnLoginMismatch,
    /// `sleep N`: the reply waits N seconds (a client that does not wait for replies is
    /// caught by `reject_unauth_pipelining` after it).
    Sleep(std::time::Duration),
    RejectUnknownSenderDomain,
    RejectUnknownRecipientDomain,
    RejectRblClient(Dnsbl),
    RejectRhsblSender(Dnsbl),
    /// Ask the verify service (crate::restrict::verify).
    RejectUnverifiedRecipient,
}

/// Parse the restriction list in parameter `name`. `shorthand` is the access check that a bare
/// `type:table` stands for in this list (Postfix's default ACL), if any.
pub fn parse_list(p: &Params, name: &str, shorthand: Option<Subject>) -> Result<Vec<Word>, ConfigError> {
    let items = split_braced_list(&p.get(name)?);
    let mut out = Vec::new();
    let mut it = items.iter().peekable();
    while let Some(item) = it.next() {
        let open = |spec: &str| -> Result<Table, ConfigError> { Ok(Table::open(spec, &p.config_dir)?) };
        let mut table = |what: &str| -> Result<Table, ConfigError> {
            let spec = it
                .next()
                .filter(|t| is_table_spec(t))
                .ok_or_else(|| ConfigError::value(name, format!("{what} requires a type:table argument")))?;
            open(spec)
        };
        let word = match item.to_ascii_lowercase().as_str() {
            "permit" => Word::Permit,
            "reject" => Word::Reject,
            "defer" => Word::Defer,
            "warn_if_reject" => Word::WarnIfReject,
            "permit_mynetworks" => Word::PermitMynetworks,
            "permit_sasl_authenticated" => Word::PermitSaslAuthenticated,
            "reject_unauth_destination" => Word::RejectUnauthDestination,
            "defer_unauth_destination" => Word::DeferUnauthDestination,
            "check_client_access" => Word::Access(Subject::Client, table("check_client_access")?),
            "check_helo_access" => Word::Access(Subject::Helo, table("check_helo_access")?),
            "check_sender_access" => Word::Access(Subject::Sender, table("check_sender_access")?),
            "check_recipient_access" => Word::Access(Subject::Recipient, table("check_recipient_access")?),
            "check_etrn_access" => Word::Access(Subject::Etrn, table("check_etrn_access")?),
            // The second names are Postfix's older spellings.
            "reject_invalid_helo_hostname" | "reject_invalid_hostname" => Word::RejectInvalidHeloHostname,
            "reject_non_fqdn_helo_hostname" | "reject_non_fqdn_hostname" => Word::RejectNonFqdnHeloHostname,
            "reject_non_fqdn_sender" => Word::RejectNonFqdnSender,
            "reject_non_fqdn_recipient" => Word::RejectNonFqdnRecipient,
            "reject_unlisted_recipient" | "check_recipient_maps" => Word::RejectUnlistedRecipient,
            "reject_unlisted_sender" => Word::RejectUnlistedSender,
            "reject_unauth_pipelining" => Word::RejectUnauthPipelining,
            "reject_unknown_sender_domain" => Word::RejectUnknownSenderDomain,
            "sleep" => {
                let secs = it
                    .next()
                    .filter(|n| !n.is_empty() && n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| ConfigError::value(name, "restriction sleep must be followed by number (seconds, at most 9999)"))?;
                Word::Sleep(std::time::Duration::from_secs(secs))
            }
            "reject_unknown_recipient_domain" => Word::RejectUnknownRecipientDomain,
            // Postfix takes it in any list; Postern only where the recipient is the subject
            // (the others would have to wait for the verify service at MAIL, DATA or ETRN).
            "reject_unverified_recipient" if shorthand == Some(Subject::Recipient) => Word::RejectUnverifiedRecipient,
            "reject_unverified_recipient" => {
                return Err(ConfigError::value(
                    name,
                    "reject_unverified_recipient is available in smtpd_recipient_restrictions and smtpd_relay_restrictions only",
                ));
            }
            w @ ("reject_rbl_client" | "reject_rhsbl_sender") => {
                let list = it
                    .next()
                    .and_then(|d| Dnsbl::parse(d))
                    .ok_or_else(|| ConfigError::value(name, format!("{w} requires a DNS list domain[=d.d.d.d] argument")))?;
                if w == "reject_rbl_client" { Word::RejectRblClient(list) } else { Word::RejectRhsblSender(list) }
            }
            "reject_etrn_login_mismatch" => {
                if p.get("smtpd_etrn_login_maps")?.trim().is_empty() {
                    return Err(ConfigError::value(name, "reject_etrn_login_mismatch requires smtpd_etrn_login_maps"));
                }
                Word::RejectEtrnLoginMismatch
            }
            _ if is_table_spec(item) => match shorthand {
                Some(subject) => Word::Access(subject, open(item)?),
                None => {
                    return Err(ConfigError::value(name, format!("specify a check_*_access restriction before table \"{item}\"")));
                }
            },
            other => {
                return Err(ConfigError::value(name, format!("unknown restriction: \"{other}\"")));
            }
        };
        out.push(word);
    }
    Ok(out)
}
