//! The client side of an SMTP conversation, without next hops, DNS or a connection cache: the
//! smtp agent runs it on the connections it opens, smtpd's ODMR provider on the connection a
//! customer opened to it, and smtpd's ODMR customer (the `odmr` program) on the connection it
//! opens to its provider before the roles swap. The transaction reads its limits from the
//! `smtp_*` parameters ([`transaction::SessionConfig`]); STARTTLS and AUTH read a family of
//! parameters named by a prefix (`smtp` for the smtp agent, `odmr` for the customer, whose
//! parameters default to the smtp agent's).

/// The connection: command lines out, replies in, message text through [`data`].
pub mod connection;
/// The message encoder for DATA.
pub mod data;
/// Next-hop syntax: `[host]:port` or `domain[:port]`.
pub mod nexthop;
/// A connection ready for MAIL (or ATRN): connect, greeting, EHLO, STARTTLS, AUTH.
pub mod open;
/// SASL AUTH to a server: when, with which mechanism, and Postfix's texts.
pub mod sasl;
/// The client side of PLAIN, LOGIN and CRAM-MD5, without I/O.
pub mod sasl_mech;
/// STARTTLS in a session: when, the handshake, the certificate policy, EHLO again.
pub mod starttls;
/// A scripted SMTP peer for the tests of this module.
#[cfg(test)]
mod test_peer;
/// TLS settings, trusted CAs and the per-connection connector with its certificate check.
pub mod tls;
/// Per-destination TLS policy (`smtp_tls_security_level`, `smtp_tls_policy_maps`).
pub mod tls_policy;
/// The conversation on one connection: handshake and one mail transaction.
pub mod transaction;
