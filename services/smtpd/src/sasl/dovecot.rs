//! A client of Dovecot's authentication protocol (version 1.x, as Postfix's
//! `xsasl_dovecot_server.c` speaks it) over the `auth` listener socket: one connection per
//! smtpd process, shared by all its sessions with request ids, as Postfix has one per
//! process. Handshake: we send `VERSION 1 0` and `CPID`; the server sends `VERSION`, `MECH`
//! lines, `SPID`, `CUID`, `COOKIE`, `DONE`. Then `AUTH id mech service=smtp nologin lip= rip=
//! [secured] [resp=]`, answered with `OK`, `CONT` or `FAIL`; we answer a `CONT` with ours.
//!
//! The server's lines are bounded ([`MAX_LINE`]) and every answer has a deadline
//! ([`AUTH_TIMEOUT`]); a lost connection fails the requests in flight (454) and the next
//! request connects again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::log_warning;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

use super::{Mech, Outcome, Props};

/// Postfix's `AUTH_TIMEOUT`: connect, handshake and each answer.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest server line we read (a CONT carries a base64 challenge).
const MAX_LINE: u64 = 64 * 1024;
/// Handshake lines at most (a server sends a dozen).
const MAX_HANDSHAKE_LINES: usize = 1000;
/// After a failed connection, requests fail at once for this long instead of each trying
/// (and logging) again: a busy smtpd facing a stopped Dovecot would log a warning per client.
const RETRY_DELAY: Duration = Duration::from_secs(1);

const LOST: &str = "Connection lost to authentication server";
const CANT_CONNECT: &str = "Can't connect to authentication server";

/// What the server answered to one request.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Ok { user: Option<String> },
    Cont(String),
    Fail { reason: Option<String>, user: Option<String> },
}

enum Msg {
    /// Answer once the handshake is done (the mechanism list is known then).
    Ready(oneshot::Sender<()>),
    Send {
        id: u32,
        line: String,
        answers: Option<mpsc::Sender<Answer>>,
    },
    Forget(u32),
}

/// The Dovecot auth server of one configuration.
pub struct Dovecot {
    path: PathBuf,
    next_id: AtomicU32,
    /// The running connection's queue, if one runs.
    conn: Mutex<Option<mpsc::Sender<Msg>>>,
    /// The server's mechanisms, from the last handshake.
    mechanisms: Arc<Mutex<Option<Vec<Mech>>>>,
    /// When the last connection attempt failed.
    failed_at: Arc<Mutex<Option<std::time::Instant>>>,
}

impl std::fmt::Debug for Dovecot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dovecot({})", self.path.display())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `MECH name [props...]`'s properties, Dovecot's names (`private` ones are never offered).
fn mech_props(words: &[&str]) -> Option<Props> {
    let mut p = Props::default();
    for w in words {
        p.0 |= match w.to_ascii_lowercase().as_str() {
            "plaintext" => Props::PLAINTEXT,
            "active" => Props::ACTIVE,
            "dictionary" => Props::DICTIONARY,
            "anonymous" => Props::ANONYMOUS,
            "forward-secrecy" => Props::FORWARD_SECRECY,
            "mutual-auth" => Props::MUTUAL_AUTH,
            "private" => return None,
            _ => 0,
        };
    }
    Some(p)
}

/// `OK|CONT|FAIL <id> ...`; `None` for other lines.
fn parse_answer(line: &str) -> Option<(u32, Answer)> {
    let mut fields = line.split('\t');
    let cmd = fields.next()?;
    let id: u32 = fields.next()?.parse().ok()?;
    let args: Vec<&str> = fields.collect();
    let arg = |name: &str| args.iter().find_map(|a| a.strip_prefix(name)).map(|v| common::text::printable(v, '?').into_owned());
    let answer = match cmd {
        "OK" => Answer::Ok { user: arg("user=") },
        // A CONT without data is answered like Postfix: a backend error (see `outcome`).
        "CONT" => Answer::Cont(args.first().map(|s| s.to_string()).unwrap_or_default()),
        "FAIL" => Answer::Fail { reason: arg("reason="), user: arg("user=") },
        _ => return None,
    };
    Some((id, answer))
}

/// Read one line of at most [`MAX_LINE`] bytes; `None` at the end or on an error.
async fn next_line(r: &mut BufReader<tokio::net::unix::OwnedReadHalf>) -> Option<String> {
    let mut buf = Vec::new();
    let n = r.take(MAX_LINE).read_until(b'\n', &mut buf).await.ok()?;
    if n == 0 || buf.last() != Some(&b'\n') {
        return None;
    }
    buf.pop();
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// Connect and shake hands; the mechanisms on success.
async fn handshake(
    path: &PathBuf,
) -> Result<(BufReader<tokio::net::unix::OwnedReadHalf>, tokio::net::unix::OwnedWriteHalf, Vec<Mech>), String> {
    let stream = match tokio::time::timeout(AUTH_TIMEOUT, UnixStream::connect(path)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("SASL: Connect to Dovecot auth socket '{}' failed: {e}", path.display())),
        Err(_) => return Err(format!("SASL: Connect to Dovecot auth socket '{}' failed: timed out", path.display())),
    };
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let hello = format!("VERSION\t1\t0\nCPID\t{}\n", std::process::id());
    let work = async {
        w.write_all(hello.as_bytes()).await.map_err(|e| format!("SASL: Couldn't send handshake: {e}"))?;
        let mut mechs = Vec::new();
        let mut have_mech = false;
        for _ in 0..MAX_HANDSHAKE_LINES {
            let Some(line) = next_line(&mut r).await else { break };
            let words: Vec<&str> = line.split('\t').collect();
            match words[..] {
                ["VERSION", major, _, ..] if major != "1" => {
                    return Err(format!("SASL: Protocol version mismatch ({major} vs. 1)"));
                }
                ["MECH", name, ref props @ ..] => {
                    have_mech = true;
                    if let Some(props) = mech_props(props)
                        && super::valid_mechanism_name(name)
                    {
                        mechs.push(Mech { name: name.to_ascii_uppercase(), props });
                    }
                }
                ["SPID", ..] if !have_mech => {
                    return Err("SASL: Connected to wrong auth socket (auth-master instead of auth-client)".to_string());
                }
                ["DONE", ..] => return Ok(mechs),
                _ => {}
            }
        }
        Err(format!("SASL: Dovecot auth socket '{}': handshake failed", path.display()))
    };
    match tokio::time::timeout(AUTH_TIMEOUT, work).await {
        Ok(Ok(mechs)) => Ok((r, w, mechs)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("SASL: Dovecot auth socket '{}': handshake timed out", path.display())),
    }
}

/// The connection task: requests from sessions out, the server's answers back to them.
async fn run(
    path: PathBuf,
    mechanisms: Arc<Mutex<Option<Vec<Mech>>>>,
    failed_at: Arc<Mutex<Option<std::time::Instant>>>,
    mut rx: mpsc::Receiver<Msg>,
) {
    let (mut r, mut w, mechs) = match handshake(&path).await {
        Ok(c) => c,
        Err(e) => {
            log_warning!("{e}");
            *lock(&failed_at) = Some(std::time::Instant::now());
            // Queued requests see their answer channel close: "Can't connect".
            return;
        }
    };
    *lock(&mechanisms) = Some(mechs);
    let (line_tx, mut lines) = mpsc::channel::<String>(64);
    let reader = tokio::spawn(async move {
        while let Some(line) = next_line(&mut r).await {
            if line_tx.send(line).await.is_err() {
                return;
            }
        }
    });
    let mut pending: HashMap<u32, mpsc::Sender<Answer>> = HashMap::new();
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                None => break,
                Some(Msg::Ready(tx)) => { let _ = tx.send(()); }
                Some(Msg::Forget(id)) => { pending.remove(&id); }
                Some(Msg::Send { id, line, answers }) => {
                    if let Some(a) = answers {
                        pending.insert(id, a);
                    }
                    let write = tokio::time::timeout(AUTH_TIMEOUT, w.write_all(line.as_bytes())).await;
                    if !matches!(write, Ok(Ok(()))) {
                        break;
                    }
                }
            },
            line = lines.recv() => match line {
                None => break,
                Some(line) => if let Some((id, answer)) = parse_answer(&line) {
                    let done = !matches!(answer, Answer::Cont(_));
                    if let Some(tx) = pending.get(&id) {
                        let _ = tx.try_send(answer);
                    }
                    if done {
                        pending.remove(&id);
                    }
                },
            },
        }
    }
    reader.abort();
    // Dropping `pending` closes every waiting session's channel: "Connection lost".
}

impl Dovecot {
    pub fn new(path: PathBuf) -> Dovecot {
        Dovecot {
            path,
            next_id: AtomicU32::new(1),
            conn: Mutex::new(None),
            mechanisms: Arc::new(Mutex::new(None)),
            failed_at: Arc::new(Mutex::new(None)),
        }
    }

    /// The queue of the running connection, starting one if none runs; `None` right after a
    /// failed attempt ([`RETRY_DELAY`]).
    fn conn(&self) -> Option<mpsc::Sender<Msg>> {
        let mut conn = lock(&self.conn);
        if let Some(tx) = conn.as_ref().filter(|tx| !tx.is_closed()) {
            return Some(tx.clone());
        }
        if lock(&self.failed_at).is_some_and(|t| t.elapsed() < RETRY_DELAY) {
            return None;
        }
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(run(self.path.clone(), self.mechanisms.clone(), self.failed_at.clone(), rx));
        *conn = Some(tx.clone());
        Some(tx)
    }

    /// The server's mechanisms, if a handshake has told them.
    pub fn mechanisms(&self) -> Option<Vec<Mech>> {
        lock(&self.mechanisms).clone()
    }

    /// Connect (if not yet) and wait for the handshake, so that EHLO can list mechanisms.
    pub async fn prepare(&self) {
        if self.mechanisms().is_some() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        let Some(conn) = self.conn() else { return };
        if conn.send(Msg::Ready(tx)).await.is_ok() {
            let _ = tokio::time::timeout(AUTH_TIMEOUT, rx).await;
        }
    }

    /// Send `AUTH` and wait for the first answer.
    pub async fn start(&self, mechanism: &str, initial: Option<&str>, ctx: &super::AuthContext) -> (Option<Request>, Outcome) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // Postfix's order: lip= before rip=.
        let mut line = format!("AUTH\t{id}\t{mechanism}\tservice={}\tnologin", ctx.service);
        if let Some(lip) = ctx.server_addr {
            line.push_str(&format!("\tlip={lip}"));
        }
        line.push_str(&format!("\trip={}", ctx.client_addr));
        if ctx.encrypted {
            line.push_str("\tsecured");
        }
        if let Some(resp) = initial {
            // Dovecot takes `resp=` last: everything after it is ignored.
            let resp = if resp == "=" { "" } else { resp };
            line.push_str(&format!("\tresp={resp}"));
        }
        line.push('\n');
        let (atx, arx) = mpsc::channel(4);
        let Some(conn) = self.conn() else {
            return (None, Outcome::TempFailure { reason: CANT_CONNECT.into() });
        };
        if conn.send(Msg::Send { id, line, answers: Some(atx) }).await.is_err() {
            return (None, Outcome::TempFailure { reason: CANT_CONNECT.into() });
        }
        let mut req = Request { id, conn, answers: arx, first: true };
        let outcome = req.answer().await;
        (Some(req), outcome)
    }
}

/// One authentication in progress at the server.
pub struct Request {
    id: u32,
    conn: mpsc::Sender<Msg>,
    answers: mpsc::Receiver<Answer>,
    first: bool,
}

impl Request {
    /// Send our response to a `CONT` and wait for the next answer.
    pub async fn next(&mut self, response: &str) -> Outcome {
        let line = format!("CONT\t{}\t{response}\n", self.id);
        if self.conn.send(Msg::Send { id: self.id, line, answers: None }).await.is_err() {
            return Outcome::TempFailure { reason: LOST.into() };
        }
        self.answer().await
    }

    async fn answer(&mut self) -> Outcome {
        let first = std::mem::replace(&mut self.first, false);
        match tokio::time::timeout(AUTH_TIMEOUT, self.answers.recv()).await {
            Ok(Some(Answer::Ok { user: Some(user) })) => Outcome::Success { username: user },
            Ok(Some(Answer::Ok { user: None })) => {
                log_warning!("missing Dovecot server OK username field");
                Outcome::Failure { reason: "Authentication backend error".into(), username: None }
            }
            Ok(Some(Answer::Cont(data))) if data.is_empty() || !super::is_base64_text(&data) => {
                log_warning!("missing Dovecot server CONT reply field");
                Outcome::Failure { reason: "Authentication backend error".into(), username: None }
            }
            Ok(Some(Answer::Cont(data))) => Outcome::Challenge(data),
            Ok(Some(Answer::Fail { reason, user })) => {
                Outcome::Failure { reason: reason.unwrap_or_else(|| "(reason unavailable)".into()), username: user }
            }
            // The connection could not be made (first answer) or went away.
            Ok(None) if first => Outcome::TempFailure { reason: CANT_CONNECT.into() },
            Ok(None) | Err(_) => Outcome::TempFailure { reason: LOST.into() },
        }
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        let _ = self.conn.try_send(Msg::Forget(self.id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_mechanisms() {
        assert_eq!(parse_answer("OK\t7\tuser=alice"), Some((7, Answer::Ok { user: Some("alice".into()) })));
        assert_eq!(parse_answer("CONT\t7\tVXNlcm5hbWU6"), Some((7, Answer::Cont("VXNlcm5hbWU6".into()))));
        assert_eq!(
            parse_answer("FAIL\t8\tuser=bob\treason=bad\x01thing"),
            Some((8, Answer::Fail { reason: Some("bad?thing".into()), user: Some("bob".into()) }))
        );
        assert_eq!(parse_answer("FAIL\tx"), None);
        assert_eq!(parse_answer("NOPE\t1"), None);
        assert_eq!(mech_props(&["plaintext"]), Some(Props(Props::PLAINTEXT)));
        assert_eq!(mech_props(&["dictionary", "active", "whatever"]), Some(Props(Props::DICTIONARY | Props::ACTIVE)));
        assert_eq!(mech_props(&["private"]), None);
    }

    /// A fake server on a socket pair: handshake, then a LOGIN exchange and a failure.
    #[tokio::test]
    async fn speaks_the_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let (r, mut w) = s.into_split();
            let mut r = BufReader::new(r);
            w.write_all(b"VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nMECH\tSECRET\tprivate\nSPID\t1\nCUID\t1\nCOOKIE\tab\nDONE\n")
                .await
                .unwrap();
            let mut got = Vec::new();
            for _ in 0..5 {
                let line = next_line(&mut r).await.unwrap();
                let id = line.split('\t').nth(1).unwrap_or("").to_string();
                got.push(line.clone());
                let answer = if line.starts_with("AUTH") && line.contains("LOGIN") {
                    format!("CONT\t{id}\tUGFzc3dvcmQ6\n")
                } else if line.starts_with("CONT") {
                    format!("OK\t{id}\tuser=alice\n")
                } else if line.starts_with("AUTH") {
                    format!("FAIL\t{id}\tuser=bob\n")
                } else {
                    continue;
                };
                w.write_all(answer.as_bytes()).await.unwrap();
            }
            got
        });
        let d = Dovecot::new(path);
        d.prepare().await;
        let names: Vec<String> = d.mechanisms().unwrap().into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["PLAIN", "LOGIN"]);
        let ctx = super::super::AuthContext {
            service: "smtp".into(),
            client_addr: "192.0.2.1".parse().unwrap(),
            server_addr: None,
            encrypted: false,
        };
        let (req, out) = d.start("LOGIN", Some("YWxpY2U="), &ctx).await;
        assert_eq!(out, Outcome::Challenge("UGFzc3dvcmQ6".into()));
        assert_eq!(req.unwrap().next("c2VjcmV0").await, Outcome::Success { username: "alice".into() });
        let (_, out) = d.start("PLAIN", Some("AGJvYgB4"), &ctx).await;
        assert_eq!(out, Outcome::Failure { reason: "(reason unavailable)".into(), username: Some("bob".into()) });
        let got = server.await.unwrap();
        assert!(got[0].starts_with("VERSION\t1\t0") || got[0].starts_with("CPID"), "{got:?}");
        assert!(got.iter().any(|l| l == "AUTH\t1\tLOGIN\tservice=smtp\tnologin\trip=192.0.2.1\tresp=YWxpY2U="), "{got:?}");
        assert!(got.iter().any(|l| l == "CONT\t1\tc2VjcmV0"), "{got:?}");
    }
}
