//! tls-load: the benchmark's STARTTLS load client and STARTTLS sink (Postfix's `smtp-source`
//! and `smtp-sink` have no TLS). Loopback only: the client connects to 127.0.0.1.
//!
//! - `tls-load mail --port P --sessions S --messages M --size BYTES`: S concurrent sessions,
//!   each EHLO, STARTTLS, EHLO, then its share of the M messages one at a time (MAIL, RCPT,
//!   DATA, each waiting for its reply, as `smtp-source` sends them), then QUIT.
//! - `tls-load handshakes --port P --sessions S --count N`: S concurrent clients repeating
//!   connect, EHLO, STARTTLS, EHLO, QUIT until N sessions have been made in all.
//! - `tls-load sink --listen ADDR:PORT --cert FILE --key FILE`: an SMTP server that offers
//!   STARTTLS and PIPELINING, accepts any mail (250 after each message's DATA) and counts what
//!   it received; it runs until SIGTERM or SIGINT, then prints its counts.
//!
//! Each mode prints one JSON line. The client modes exit 1 when anything failed (a refused
//! message, a bad reply, a lost connection or a time limit: counted, never fatal to the run)
//! and 2 on a bad command line. The client does not verify the server's certificate (both
//! systems under test use the same kind of self-signed one) but does check the handshake's
//! signatures, and it never resumes a TLS session, so every STARTTLS is a full handshake.
//! Every read, write and handshake has a time limit, and the loads are bounded by their counts.

mod args;
mod client;
mod conn;
mod sink;

use std::process::ExitCode;

use args::Command;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let command = match args::parse(&argv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tls-load: {e}\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tls-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match command {
            Command::Mail(m) => client::mail(m).await,
            Command::Handshakes(h) => client::handshakes(h).await,
            Command::Sink(s) => sink::run(s).await,
        }
    });
    match outcome {
        Ok(report) => {
            println!("{}", report.json);
            if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("tls-load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What a mode prints when it ends, and whether everything it tried succeeded.
pub struct Report {
    pub json: serde_json::Value,
    pub ok: bool,
}

/// Why a mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{0}")]
    Pem(String),
    #[error("cannot listen on {0}: {1}")]
    Listen(std::net::SocketAddr, std::io::Error),
    #[error("cannot catch signals: {0}")]
    Signal(std::io::Error),
}
