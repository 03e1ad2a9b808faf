//! A real SMTP peer on loopback for the tests: `Sink` accepts mail and records every envelope
//! and message (it can be started on a port chosen while it is still down), and `Client`
//! speaks SMTP to Postern's smtpd and returns the exact reply lines.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One message the sink accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// The client's EHLO/HELO name in the session that delivered the message.
    pub helo: String,
    pub sender: String,
    pub recipients: Vec<String>,
    pub data: String,
    /// The bytes after the 354 reply exactly as they came, up to and with the final
    /// `.<CR><LF>`.
    pub raw: Vec<u8>,
}

/// A free loopback port (bound and released; the sink binds it again later).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Sink {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Received>>>,
    /// Connections accepted so far.
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
    /// Milliseconds to wait before answering the end of DATA (to keep mail in `active`).
    pub data_delay_ms: Arc<std::sync::atomic::AtomicU64>,
    /// Every command line of every session, raw (line end included).
    pub commands: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Messages whose end of DATA the sink has read (before any `data_delay_ms`).
    pub data_ends: Arc<std::sync::atomic::AtomicUsize>,
    /// When set, the reply to a `reject…` recipient (raw bytes, CRLF added).
    pub reject_reply: Arc<Mutex<Option<Vec<u8>>>>,
    /// The keywords the reply to EHLO lists (none by default): `SMTPUTF8`, ...
    pub extensions: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Sink {
    /// Start accepting on 127.0.0.1:`port`.
    pub fn start(port: u16) -> Sink {
        Sink::start_on("127.0.0.1", port)
    }

    /// Start accepting on `ip`:`port` (any 127/8 address works on Linux loopback).
    pub fn start_on(ip: &str, port: u16) -> Sink {
        let listener = TcpListener::bind((ip, port)).expect("bind sink");
        listener.set_nonblocking(true).unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let data_delay_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let commands = Arc::new(Mutex::new(Vec::new()));
        let reject_reply = Arc::new(Mutex::new(None));
        let extensions = Arc::new(Mutex::new(Vec::new()));
        let data_ends = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (r, st, conns) = (received.clone(), stop.clone(), connections.clone());
        let peer = Peer {
            delay: data_delay_ms.clone(),
            commands: commands.clone(),
            reject: reject_reply.clone(),
            data_ends: data_ends.clone(),
            extensions: extensions.clone(),
        };
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        conns.fetch_add(1, Ordering::Relaxed);
                        let (r, peer) = (r.clone(), peer.clone());
                        std::thread::spawn(move || session(s, r, peer));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Sink { port, received, connections, data_delay_ms, commands, data_ends, reject_reply, extensions, stop }
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    pub fn messages(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// How many accepted messages contain `needle`.
    pub fn count_containing(&self, needle: &str) -> usize {
        self.received.lock().unwrap().iter().filter(|m| m.data.contains(needle)).count()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What a sink session shares with its [`Sink`].
#[derive(Clone)]
struct Peer {
    delay: Arc<std::sync::atomic::AtomicU64>,
    commands: Arc<Mutex<Vec<Vec<u8>>>>,
    reject: Arc<Mutex<Option<Vec<u8>>>>,
    data_ends: Arc<std::sync::atomic::AtomicUsize>,
    extensions: Arc<Mutex<Vec<String>>>,
}

/// The address in `<...>` of a MAIL or RCPT argument (parameters after it dropped), or the
/// whole argument without brackets.
fn path_of(arg: &str) -> String {
    let arg = arg.trim();
    match arg.strip_prefix('<').and_then(|a| a.split_once('>')) {
        Some((addr, _)) => addr.to_string(),
        None => arg.trim_matches(['<', '>']).to_string(),
    }
}

fn session(s: TcpStream, out: Arc<Mutex<Vec<Received>>>, peer: Peer) {
    s.set_nodelay(true).ok();
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let _ = w.write_all(b"220 sink.test ESMTP\r\n");
    let (mut helo, mut sender, mut rcpts) = (String::new(), String::new(), Vec::new());
    // Lines are bytes: a message need not be UTF-8.
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
            return;
        }
        peer.commands.lock().unwrap().push(line.clone());
        let cmd = String::from_utf8_lossy(&line).trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            helo = cmd[4..].trim().to_string();
            let keywords = if upper.starts_with("EHLO") { peer.extensions.lock().unwrap().clone() } else { Vec::new() };
            let lines: Vec<String> = std::iter::once("sink.test".to_string()).chain(keywords).collect();
            let last = lines.len() - 1;
            lines.iter().enumerate().map(|(i, l)| format!("250{}{l}", if i == last { ' ' } else { '-' })).collect::<Vec<_>>().join("\r\n")
        } else if upper.starts_with("MAIL FROM:") {
            sender = path_of(&cmd[10..]);
            rcpts.clear();
            "250 2.1.0 Ok".into()
        } else if upper.starts_with("RCPT TO:") {
            let rcpt = path_of(&cmd[8..]);
            let custom = peer.reject.lock().unwrap().clone();
            if let (true, Some(raw)) = (rcpt.starts_with("reject"), custom) {
                let _ = w.write_all(&raw);
                let _ = w.write_all(b"\r\n");
                continue;
            } else if rcpt.starts_with("reject") {
                format!("550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown")
            } else if rcpt.starts_with("defer") {
                format!("451 4.3.0 <{rcpt}>: Temporary lookup failure")
            } else {
                rcpts.push(rcpt);
                "250 2.1.5 Ok".into()
            }
        } else if upper == "DATA" {
            let _ = w.write_all(b"354 go ahead\r\n");
            let (mut data, mut raw) = (Vec::new(), Vec::new());
            // As RFC 5321 says: the end is <CR><LF>.<CR><LF> and nothing else.
            let mut after_crlf = true;
            loop {
                line.clear();
                if r.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
                    return;
                }
                raw.extend_from_slice(&line);
                if after_crlf && line == b".\r\n" {
                    break;
                }
                after_crlf = line.ends_with(b"\r\n");
                data.extend_from_slice(line.strip_prefix(b".").unwrap_or(&line));
            }
            peer.data_ends.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(peer.delay.load(Ordering::Relaxed)));
            let data = String::from_utf8_lossy(&data).into_owned();
            out.lock().unwrap().push(Received {
                helo: helo.clone(),
                sender: sender.clone(),
                recipients: std::mem::take(&mut rcpts),
                data,
                raw,
            });
            "250 2.0.0 Ok: queued".into()
        } else if upper == "QUIT" {
            let _ = w.write_all(b"221 2.0.0 Bye\r\n");
            return;
        } else {
            "250 2.0.0 Ok".into()
        };
        if w.write_all(format!("{reply}\r\n").as_bytes()).is_err() {
            return;
        }
    }
}

/// An SMTP client for Postern's smtpd.
pub struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
    pub banner: String,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to smtpd");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client::from_stream(s)
    }

    /// A client on a stream connected by the caller (with its own read time limit); reads the
    /// greeting.
    pub fn from_stream(s: TcpStream) -> Client {
        s.set_nodelay(true).unwrap();
        let w = s.try_clone().unwrap();
        let mut c = Client { r: BufReader::new(s), w, banner: String::new() };
        c.banner = c.reply();
        c
    }

    /// Read one (possibly multi-line) reply, lines joined with `\n`.
    pub fn reply(&mut self) -> String {
        let mut out = Vec::new();
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            out.push(line);
            if last {
                break;
            }
        }
        out.join("\n")
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }

    /// Send a command line and return its reply.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send_raw(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// A whole transaction; returns the reply to the final dot.
    pub fn send_mail(&mut self, from: &str, to: &[&str], body: &str) -> String {
        let r = self.cmd(&format!("MAIL FROM:<{from}>"));
        assert!(r.starts_with("250"), "MAIL: {r}");
        for t in to {
            let r = self.cmd(&format!("RCPT TO:<{t}>"));
            assert!(r.starts_with("250"), "RCPT {t}: {r}");
        }
        let r = self.cmd("DATA");
        assert!(r.starts_with("354"), "DATA: {r}");
        // Dot-stuffing is the client's job (RFC 5321 4.5.2).
        let stuffed: String = body.lines().map(|l| if l.starts_with('.') { format!(".{l}\r\n") } else { format!("{l}\r\n") }).collect();
        self.send_raw(stuffed.as_bytes());
        self.cmd(".")
    }
}

/// The queue ID in `250 2.0.0 Ok: queued as ID`.
pub fn queued_id(reply: &str) -> String {
    reply.rsplit(' ').next().unwrap_or_default().to_string()
}
