//! Test support for the client side: a real SMTP peer on 127.0.0.1 that one test scripts, and
//! the session settings the tests share. Every read is bounded by a time limit, so a client
//! that stops talking fails its test instead of hanging it.

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinHandle;

use super::connection::Connection;
use super::transaction::{SessionConfig, Timeouts};

/// How long a peer or a client waits for the other side.
pub const LIMIT: Duration = Duration::from_secs(10);

/// A client connection to a peer that `serve` runs on the accepted socket; the handle gives
/// what `serve` returns (the lines it was sent).
pub async fn connected<F, Fut>(serve: F) -> (Connection, JoinHandle<Vec<String>>)
where
    F: FnOnce(BufReader<OwnedReadHalf>, OwnedWriteHalf) -> Fut + Send + 'static,
    Fut: Future<Output = Vec<String>> + Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let (r, w) = s.into_split();
        serve(BufReader::new(r), w).await
    });
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    (Connection::new(stream, LIMIT), server)
}

/// The next line the client sent, with its line end; `None` at the end or after [`LIMIT`].
pub async fn next_line(r: &mut BufReader<OwnedReadHalf>) -> Option<String> {
    let mut line = String::new();
    match tokio::time::timeout(LIMIT, r.read_line(&mut line)).await {
        Ok(Ok(n)) if n > 0 => Some(line),
        _ => None,
    }
}

/// Session settings with every time limit at [`LIMIT`].
pub fn session() -> SessionConfig {
    let t = LIMIT;
    SessionConfig {
        myhostname: "me.test".into(),
        timeouts: Timeouts { mail: t, rcpt: t, data_init: t, data_xfer: t, data_done: t, rset: t, quit: t },
        line_length_limit: 998,
    }
}
