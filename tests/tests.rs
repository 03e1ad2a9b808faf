//! Postern's multi-process integration tests: one test binary (one link instead of many),
//! one module per area. Every test starts the real programs from `target/<profile>`, so the
//! README's test command builds the binaries first.

// Test code: a failed unwrap is a failed test, which is what we want.
#![allow(clippy::unwrap_used)]

mod harness;

mod bounce;
mod clients;
mod cluster;
mod config;
mod crash;
mod dns;
mod dsn;
mod etrn;
mod failures;
mod flush;
mod headers;
mod local;
mod logtools;
mod mail;
mod manpages;
mod master;
mod odmr;
mod odmr_customer;
mod outbound;
mod package;
mod postconf;
mod queue;
mod reload;
mod restrictions;
mod sasl;
mod smtp_sasl;
mod smtp_tls;
mod smtpd_floods;
mod smtpd_input;
mod smtputf8;
mod stuck;
mod submission;
mod systemd;
mod tables;
mod tls;
mod tools;
mod verify;
