//! The client side of an SMTP conversation, without next hops, DNS, a connection cache, or a
//! TLS or SASL policy: the smtp agent runs it on the connections it opens (and adds STARTTLS
//! and AUTH on top), smtpd's ODMR provider on the connection a customer opened to it. Both
//! read its limits from the same `smtp_*` parameters ([`transaction::SessionConfig`]).

/// The connection: command lines out, replies in, message text through [`data`].
pub mod connection;
/// The message encoder for DATA.
pub mod data;
/// The conversation on one connection: handshake and one mail transaction.
pub mod transaction;
