//! One-request clients: connect, expect the server's hello, send the request, read the reply.
//! `call_blocking` serves the master and the command-line programs (no runtime); `call` serves
//! the async daemons. Both are bounded by a timeout.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::frame::{FrameError, MAX_FRAME, read_frame, read_frame_blocking, write_frame, write_frame_blocking};
use super::hello::{Hello, Protocol};

fn check_hello<P: Protocol>(hello: Option<Hello>) -> Result<(), FrameError> {
    match hello {
        Some(h) if h.protocol == P::NAME && h.version == P::VERSION => Ok(()),
        Some(h) => {
            Err(FrameError::Protocol { wanted: format!("{} {}", P::NAME, P::VERSION), got: format!("{} {}", h.protocol, h.version) })
        }
        None => Err(FrameError::Truncated),
    }
}

/// Send one request to the service at `path` and wait for its reply.
pub fn call_blocking<P: Protocol>(path: &Path, request: &P::Request, timeout: Duration) -> Result<P::Reply, FrameError> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    check_hello::<P>(read_frame_blocking(&mut s, MAX_FRAME)?)?;
    write_frame_blocking(&mut s, request)?;
    read_frame_blocking(&mut s, MAX_FRAME)?.ok_or(FrameError::Truncated)
}

/// Async [`call_blocking`].
pub async fn call<P: Protocol>(path: &Path, request: &P::Request, timeout: Duration) -> Result<P::Reply, FrameError> {
    let exchange = async {
        let mut s = tokio::net::UnixStream::connect(path).await?;
        check_hello::<P>(read_frame(&mut s, MAX_FRAME).await?)?;
        write_frame(&mut s, request).await?;
        read_frame(&mut s, MAX_FRAME).await?.ok_or(FrameError::Truncated)
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| FrameError::Timeout)?
}
