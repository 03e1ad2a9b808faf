//! Clients: connect, expect the server's hello, send the request, read the reply.
//! `call_blocking` serves the master and the command-line programs (no runtime); `call` serves
//! the async daemons' occasional requests and [`Persistent`] their frequent ones. All are
//! bounded by a timeout.

use std::marker::PhantomData;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
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

/// Connect to the service at `path` and check its hello.
async fn connect<P: Protocol>(path: &Path) -> Result<tokio::net::UnixStream, FrameError> {
    let mut s = tokio::net::UnixStream::connect(path).await?;
    check_hello::<P>(read_frame(&mut s, MAX_FRAME).await?)?;
    Ok(s)
}

/// One request and its reply on an open connection.
async fn exchange<P: Protocol>(s: &mut tokio::net::UnixStream, request: &P::Request) -> Result<P::Reply, FrameError> {
    write_frame(s, request).await?;
    read_frame(s, MAX_FRAME).await?.ok_or(FrameError::Truncated)
}

/// Async [`call_blocking`].
pub async fn call<P: Protocol>(path: &Path, request: &P::Request, timeout: Duration) -> Result<P::Reply, FrameError> {
    let once = async { exchange::<P>(&mut connect::<P>(path).await?, request).await };
    tokio::time::timeout(timeout, once).await.map_err(|_| FrameError::Timeout)?
}

/// A client that keeps its connections for the next calls: a busy caller (qmgr handing out
/// deliveries and adding flush entries, smtpd answering ETRNs) pays for a connection and its
/// hello once, not per request. Concurrent calls use separate connections; after a call its
/// connection waits for the next one (up to [`KEPT`] of them). A kept connection the server
/// closed meanwhile (restart, idle timeout) is noticed before a request is written on it and
/// dropped, so no request is sent twice.
pub struct Persistent<P: Protocol> {
    path: PathBuf,
    idle: std::sync::Mutex<Vec<tokio::net::UnixStream>>,
    _protocol: PhantomData<P>,
}

/// At most this many idle connections are kept per service.
pub const KEPT: usize = 64;

impl<P: Protocol> std::fmt::Debug for Persistent<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Persistent({} at {})", P::NAME, self.path.display())
    }
}

impl<P: Protocol> Persistent<P> {
    pub fn new(path: PathBuf) -> Persistent<P> {
        Persistent { path, idle: std::sync::Mutex::new(Vec::new()), _protocol: PhantomData }
    }

    /// The server's socket.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<tokio::net::UnixStream>> {
        // A list of sockets stays usable whatever a panicking holder was doing.
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A kept connection that is still open, if any.
    fn take_idle(&self) -> Option<tokio::net::UnixStream> {
        let mut idle = self.idle();
        while let Some(s) = idle.pop() {
            if idle_and_open(&s) {
                return Some(s);
            }
        }
        None
    }

    /// Send one request and wait for its reply, on a kept connection or a new one.
    pub async fn call(&self, request: &P::Request, timeout: Duration) -> Result<P::Reply, FrameError> {
        let kept = self.take_idle();
        let once = async {
            let mut s = match kept {
                Some(s) => s,
                None => connect::<P>(&self.path).await?,
            };
            let reply = exchange::<P>(&mut s, request).await?;
            Ok::<_, FrameError>((s, reply))
        };
        // On any error the stream is dropped: it is not at a frame boundary any more.
        let (s, reply) = tokio::time::timeout(timeout, once).await.map_err(|_| FrameError::Timeout)??;
        let mut idle = self.idle();
        if idle.len() < KEPT {
            idle.push(s);
        }
        Ok(reply)
    }
}

/// Between requests the server has nothing to say: anything readable (end of file, stray
/// bytes, an error) means the connection is no use.
fn idle_and_open(s: &tokio::net::UnixStream) -> bool {
    matches!(s.try_read(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::flush::{FlushProtocol, FlushReply, FlushRequest};
    use crate::ipc::server::serve;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn persistent_client_reuses_its_connection_and_replaces_a_closed_one() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("flush");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let listener = tokio::net::UnixListener::bind(&path).unwrap();
            let accepted = Arc::new(AtomicU64::new(0));
            let counter = accepted.clone();
            // Each connection answers with its own number; the server drops it after 40 ms.
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let conn = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    let serving =
                        serve::<FlushProtocol, _, _>(stream, "test", Duration::from_secs(5), None, None, move |_, _| async move {
                            FlushReply::ok(conn)
                        });
                    tokio::spawn(tokio::time::timeout(Duration::from_millis(40), serving));
                }
            });
            let client = Persistent::<FlushProtocol>::new(path.clone());
            let req = FlushRequest::Refresh;
            let t = Duration::from_secs(5);
            assert_eq!(client.call(&req, t).await.unwrap(), FlushReply::ok(1));
            assert_eq!(client.call(&req, t).await.unwrap(), FlushReply::ok(1), "the same connection");
            // The server side of connection 1 is gone after 40 ms; the client notices before
            // writing and takes a new connection instead of failing or sending twice.
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(client.call(&req, t).await.unwrap(), FlushReply::ok(2));
            assert_eq!(accepted.load(Ordering::SeqCst), 2);
            // Concurrent calls take separate connections, which are kept for later calls.
            let (a, b) = tokio::join!(client.call(&req, t), client.call(&req, t));
            let mut got = [a.unwrap(), b.unwrap()];
            got.sort_by_key(|r| if let FlushReply::Ok { moved, .. } = r { *moved } else { 0 });
            assert_eq!(got, [FlushReply::ok(2), FlushReply::ok(3)]);
            assert_eq!(client.call(&req, t).await.unwrap(), client.call(&req, t).await.unwrap());
            assert_eq!(accepted.load(Ordering::SeqCst), 3);
        });
    }
}
