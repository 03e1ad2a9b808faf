//! `reject_unverified_recipient` (Postfix's `reject_unverified_address`): the verify service
//! says what it knows of the recipient, starting a probe when it knows nothing yet, and the
//! answer becomes a reply: nothing for a deliverable address, `unverified_recipient_defer_code`
//! (450) while the probe is in progress or failed temporarily, `unverified_recipient_reject_code`
//! for an address the nearest MTA refused: `450 4.1.1 <a>: Recipient address rejected:
//! unverified address: Address verification in progress`, `550 5.1.1 <a>: Recipient address
//! rejected: undeliverable address: host ... said: 550 ...` with a 5XX code. The temporary
//! answers follow `unverified_recipient_tempfail_action` (`defer_if_permit`: only when the rest
//! of the lists would accept the recipient).
//!
//! The restriction lists are evaluated without I/O, so an evaluation that reaches the word for
//! an address the session has no answer for stops there ([`super::Unverified`]); conn.rs then
//! asks the service ([`ask`], up to `address_verify_poll_count` times while the probe is in
//! progress, `address_verify_poll_delay` apart) and evaluates the command again with the answer.

use std::time::Duration;

use common::config::{ConfigError, Params};
use common::ipc::endpoint::{Class, service_path};
use common::ipc::verify::{AddressStatus, VerifyClient};
use common::log_warning;

/// `unverified_recipient_tempfail_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TempfailAction {
    /// Defer only if the request would otherwise be permitted.
    DeferIfPermit,
    /// Defer at once.
    Defer,
}

/// What the word needs from main.cf; made only when some list names it.
#[derive(Debug, Clone)]
pub struct VerifyCheck {
    pub client: VerifyClient,
    /// `address_verify_poll_count` (at least 1).
    pub poll_count: u32,
    pub poll_delay: Duration,
    pub defer_code: u16,
    pub reject_code: u16,
    pub tempfail_action: TempfailAction,
    /// `unverified_recipient_reject_reason`: replaces the verification result's text.
    pub reject_reason: String,
}

impl VerifyCheck {
    pub fn from_params(p: &Params, code: impl Fn(&str) -> Result<u16, ConfigError>) -> Result<VerifyCheck, ConfigError> {
        let socket = service_path(&p.dir("queue_directory")?, Class::Private, &p.get("address_verify_service_name")?);
        let poll = p.int("address_verify_poll_count")?;
        let tempfail_action = match p.get("unverified_recipient_tempfail_action")?.trim() {
            "defer_if_permit" => TempfailAction::DeferIfPermit,
            "defer" => TempfailAction::Defer,
            other => {
                return Err(ConfigError::value(
                    "unverified_recipient_tempfail_action",
                    format!("bad value: \"{other}\" (defer_if_permit or defer)"),
                ));
            }
        };
        Ok(VerifyCheck {
            client: VerifyClient::new(socket, p.time("ipc_timeout")?),
            poll_count: u32::try_from(poll).unwrap_or(1).max(1),
            poll_delay: p.time("address_verify_poll_delay")?,
            defer_code: code("unverified_recipient_defer_code")?,
            reject_code: code("unverified_recipient_reject_code")?,
            tempfail_action,
            reject_reason: p.get("unverified_recipient_reject_reason")?,
        })
    }
}

/// What the verify service said of an address: its status and text, or `None` when it could
/// not be asked (Postfix's "address verification problem").
pub type Answer = Option<(AddressStatus, String)>;

/// Ask the verify service about `address`; while its probe is in progress, ask again up to
/// `address_verify_poll_count` times in all, so that a fast probe is answered in this session.
pub async fn ask(check: &VerifyCheck, address: &str) -> Answer {
    let mut asked = 0;
    loop {
        asked += 1;
        match check.client.query(address).await {
            Ok((AddressStatus::Probing, _)) if asked < check.poll_count => tokio::time::sleep(check.poll_delay).await,
            Ok(answer) => return Some(answer),
            Err(e) => {
                log_warning!("verify service failure: {e}");
                return None;
            }
        }
    }
}
