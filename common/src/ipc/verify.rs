//! The address verification protocol (Postfix `address_verify_protocol`, `verify_clnt.c`):
//! smtpd asks the verify service what it knows of an address (which may start a probe); the
//! delivery agents and the queue manager report how a probe went. [`VerifyClient`] is the
//! daemons' client, over kept connections.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::Persistent;
use super::endpoint::{Class, service_path};
use super::frame::FrameError;
use super::hello::Protocol;
use crate::config::{ConfigError, Params};
use crate::log_warning;
use crate::queue::file::Outcome;

/// What is known of an address (Postfix's `DEL_RCPT_STAT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressStatus {
    /// The nearest MTA accepted it (`OK`).
    Deliverable,
    /// It could not be verified now (`DEFER`).
    Deferred,
    /// The nearest MTA refused it (`BOUNCE`).
    Undeliverable,
    /// Nothing is known yet; a probe is on its way (`TODO`).
    Probing,
}

impl AddressStatus {
    /// The number Postfix stores in its cache entries (`status:probed:updated:text`).
    pub fn code(self) -> u8 {
        match self {
            AddressStatus::Deliverable => 0,
            AddressStatus::Deferred => 1,
            AddressStatus::Undeliverable => 2,
            AddressStatus::Probing => 3,
        }
    }

    pub fn from_code(code: u8) -> Option<AddressStatus> {
        [AddressStatus::Deliverable, AddressStatus::Deferred, AddressStatus::Undeliverable, AddressStatus::Probing]
            .into_iter()
            .find(|s| s.code() == code)
    }
}

/// A request to the verify service. Addresses travel as text; the server refuses what it
/// cannot store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VerifyRequest {
    /// What is known of `address`; when nothing (or something stale) is, a probe is sent and
    /// the answer is `Probing`.
    Query { address: String },
    /// How a probe of `address` went (never `Probing`), with the delivery agent's text.
    Update { address: String, status: AddressStatus, text: String },
}

/// The verify service's answer (Postfix's `VRFY_STAT_OK` with the status, or `VRFY_STAT_BAD`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VerifyReply {
    /// The answer to `Query`.
    Status { status: AddressStatus, text: String },
    /// An `Update` was taken.
    Updated,
    /// The request is malformed; nothing was done.
    Bad { reason: String },
}

pub struct VerifyProtocol;

impl Protocol for VerifyProtocol {
    const NAME: &'static str = "address_verify_protocol";
    const VERSION: u32 = 1;
    type Request = VerifyRequest;
    type Reply = VerifyReply;
}

/// Why a verify request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The service called the request malformed.
    #[error("{0}")]
    Bad(String),
    /// An answer that does not belong to the request.
    #[error("unexpected reply from the verify service")]
    Unexpected,
}

/// The daemons' client of `private/<address_verify_service_name>`; cheap to clone.
#[derive(Debug, Clone)]
pub struct VerifyClient {
    conns: Arc<Persistent<VerifyProtocol>>,
    /// `ipc_timeout`.
    timeout: Duration,
}

impl VerifyClient {
    pub fn new(socket: PathBuf, timeout: Duration) -> VerifyClient {
        VerifyClient { conns: Arc::new(Persistent::new(socket)), timeout }
    }

    /// The service's socket.
    pub fn socket(&self) -> &std::path::Path {
        self.conns.path()
    }

    /// Postfix's `verify_clnt_query`: the status of `address` and its text.
    pub async fn query(&self, address: &str) -> Result<(AddressStatus, String), VerifyError> {
        match self.conns.call(&VerifyRequest::Query { address: address.to_string() }, self.timeout).await? {
            VerifyReply::Status { status, text } => Ok((status, text)),
            VerifyReply::Bad { reason } => Err(VerifyError::Bad(reason)),
            VerifyReply::Updated => Err(VerifyError::Unexpected),
        }
    }

    /// Postfix's `verify_clnt_update`: record how a probe of `address` went.
    pub async fn update(&self, address: &str, status: AddressStatus, text: &str) -> Result<(), VerifyError> {
        let req = VerifyRequest::Update { address: address.to_string(), status, text: text.to_string() };
        match self.conns.call(&req, self.timeout).await? {
            VerifyReply::Updated => Ok(()),
            VerifyReply::Bad { reason } => Err(VerifyError::Bad(reason)),
            VerifyReply::Status { .. } => Err(VerifyError::Unexpected),
        }
    }
}

/// What the delivery agents and the queue manager need to settle a probe (Postfix's
/// `verify_append`): the service, and whether failed probes are cached.
#[derive(Debug, Clone)]
pub struct ProbeReporter {
    client: VerifyClient,
    /// `address_verify_negative_cache`.
    negative_cache: bool,
}

impl ProbeReporter {
    pub fn from_params(p: &Params) -> Result<ProbeReporter, ConfigError> {
        let socket = service_path(&p.dir("queue_directory")?, Class::Private, &p.get("address_verify_service_name")?);
        Ok(ProbeReporter {
            client: VerifyClient::new(socket, p.time("ipc_timeout")?),
            negative_cache: p.bool("address_verify_negative_cache")?,
        })
    }

    /// The word for `status=` in a probe's delivery line: `deliverable`, `undeliverable`, or
    /// `undeliverable-but-not-cached` (with `address_verify_negative_cache = no`).
    pub fn status_word(&self, outcome: Outcome) -> &'static str {
        match outcome {
            Outcome::Sent => "deliverable",
            _ if !self.negative_cache => "undeliverable-but-not-cached",
            _ => "undeliverable",
        }
    }

    /// Tell the verify service how the probe `queue_id` of `address` went (a failure only
    /// when failures are cached). A service that cannot be told gets a warning; the address
    /// is then probed again after a while.
    pub async fn report(&self, queue_id: &str, address: &str, outcome: Outcome, text: &str) {
        let status = match outcome {
            Outcome::Sent => AddressStatus::Deliverable,
            Outcome::Deferred => AddressStatus::Deferred,
            Outcome::Bounced => AddressStatus::Undeliverable,
        };
        if status != AddressStatus::Deliverable && !self.negative_cache {
            return;
        }
        if let Err(e) = self.client.update(address, status, text).await {
            log_warning!("{queue_id}: verify service failure: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_are_postfix_numbers() {
        for s in [AddressStatus::Deliverable, AddressStatus::Deferred, AddressStatus::Undeliverable, AddressStatus::Probing] {
            assert_eq!(AddressStatus::from_code(s.code()), Some(s));
        }
        assert_eq!(AddressStatus::Undeliverable.code(), 2);
        assert_eq!(AddressStatus::from_code(4), None);
    }
}
