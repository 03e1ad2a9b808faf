//! The command line: a mode and its `--name value` options, all required, none repeated.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

pub const USAGE: &str = "usage: tls-load mail --port P --sessions S --messages M --size BYTES
       tls-load handshakes --port P --sessions S --count N
       tls-load sink --listen ADDR:PORT --cert FILE --key FILE";

/// Loads beyond these are typing mistakes, not benchmarks (and would exhaust descriptors).
const MAX_SESSIONS: usize = 10_000;
const MAX_SIZE: usize = 64 << 20;

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Mail(MailLoad),
    Handshakes(HandshakeLoad),
    Sink(SinkConfig),
}

#[derive(Debug, PartialEq, Eq)]
pub struct MailLoad {
    pub port: u16,
    pub sessions: usize,
    pub messages: usize,
    pub size: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub struct HandshakeLoad {
    pub port: u16,
    pub sessions: usize,
    pub count: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub struct SinkConfig {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgsError {
    #[error("no mode given")]
    NoMode,
    #[error("unknown mode {0:?}")]
    UnknownMode(String),
    #[error("{mode}: unknown option {option:?}")]
    UnknownOption { mode: &'static str, option: String },
    #[error("{0}: option without a value")]
    NoValue(String),
    #[error("{0} given twice")]
    Repeated(String),
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("{option}: bad value {value:?} ({why})")]
    BadValue { option: &'static str, value: String, why: &'static str },
}

pub fn parse(argv: &[String]) -> Result<Command, ArgsError> {
    let (mode, rest) = argv.split_first().ok_or(ArgsError::NoMode)?;
    match mode.as_str() {
        "mail" => {
            let mut o = Options::parse("mail", &["--port", "--sessions", "--messages", "--size"], rest)?;
            Ok(Command::Mail(MailLoad {
                port: o.port()?,
                sessions: o.count("--sessions", 1, MAX_SESSIONS)?,
                messages: o.count("--messages", 1, usize::MAX)?,
                size: o.count("--size", 0, MAX_SIZE)?,
            }))
        }
        "handshakes" => {
            let mut o = Options::parse("handshakes", &["--port", "--sessions", "--count"], rest)?;
            Ok(Command::Handshakes(HandshakeLoad {
                port: o.port()?,
                sessions: o.count("--sessions", 1, MAX_SESSIONS)?,
                count: o.count("--count", 1, usize::MAX)?,
            }))
        }
        "sink" => {
            let mut o = Options::parse("sink", &["--listen", "--cert", "--key"], rest)?;
            let listen = o.take("--listen")?;
            let listen = listen.parse().map_err(|_| ArgsError::BadValue { option: "--listen", value: listen, why: "not ADDR:PORT" })?;
            Ok(Command::Sink(SinkConfig { listen, cert: o.take("--cert")?.into(), key: o.take("--key")?.into() }))
        }
        other => Err(ArgsError::UnknownMode(other.to_string())),
    }
}

/// The `--name value` pairs of one mode.
struct Options(HashMap<&'static str, String>);

impl Options {
    fn parse(mode: &'static str, known: &[&'static str], rest: &[String]) -> Result<Self, ArgsError> {
        let mut out = HashMap::new();
        let mut it = rest.iter();
        while let Some(name) = it.next() {
            let Some(&key) = known.iter().find(|k| **k == name.as_str()) else {
                return Err(ArgsError::UnknownOption { mode, option: name.clone() });
            };
            let value = it.next().ok_or_else(|| ArgsError::NoValue(name.clone()))?;
            if out.insert(key, value.clone()).is_some() {
                return Err(ArgsError::Repeated(name.clone()));
            }
        }
        Ok(Options(out))
    }

    fn take(&mut self, name: &'static str) -> Result<String, ArgsError> {
        self.0.remove(name).ok_or(ArgsError::Missing(name))
    }

    fn port(&mut self) -> Result<u16, ArgsError> {
        let v = self.take("--port")?;
        match v.parse::<u16>() {
            Ok(p) if p != 0 => Ok(p),
            _ => Err(ArgsError::BadValue { option: "--port", value: v, why: "not a port number" }),
        }
    }

    fn count(&mut self, name: &'static str, min: usize, max: usize) -> Result<usize, ArgsError> {
        let v = self.take(name)?;
        match v.parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ArgsError::BadValue { option: name, value: v, why: "not a number in range" }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn modes_parse() {
        assert_eq!(
            parse(&args("mail --port 25 --sessions 20 --messages 5000 --size 4096")),
            Ok(Command::Mail(MailLoad { port: 25, sessions: 20, messages: 5000, size: 4096 }))
        );
        assert_eq!(
            parse(&args("handshakes --count 9 --port 2525 --sessions 3")),
            Ok(Command::Handshakes(HandshakeLoad { port: 2525, sessions: 3, count: 9 }))
        );
        assert_eq!(
            parse(&args("sink --listen 127.0.0.1:10099 --cert c.pem --key k.pem")),
            Ok(Command::Sink(SinkConfig { listen: "127.0.0.1:10099".parse().unwrap(), cert: "c.pem".into(), key: "k.pem".into() }))
        );
    }

    #[test]
    fn bad_command_lines_are_errors() {
        assert_eq!(parse(&[]), Err(ArgsError::NoMode));
        assert_eq!(parse(&args("flood")), Err(ArgsError::UnknownMode("flood".into())));
        assert_eq!(parse(&args("handshakes --port 1 --sessions 1")), Err(ArgsError::Missing("--count")));
        assert_eq!(parse(&args("handshakes --port 1 --sessions 1 --count")), Err(ArgsError::NoValue("--count".into())));
        assert_eq!(parse(&args("handshakes --port 1 --port 2")), Err(ArgsError::Repeated("--port".into())));
        assert!(matches!(parse(&args("mail --size 1")), Err(ArgsError::Missing(_))));
        assert!(matches!(parse(&args("handshakes --port 0 --sessions 1 --count 1")), Err(ArgsError::BadValue { option: "--port", .. })));
        assert!(matches!(
            parse(&args("handshakes --port 1 --sessions 0 --count 1")),
            Err(ArgsError::BadValue { option: "--sessions", .. })
        ));
        assert!(matches!(parse(&args("handshakes --port 1 --sessions -3 --count 1")), Err(ArgsError::BadValue { .. })));
        assert!(matches!(parse(&args("sink --listen localhost --cert c --key k")), Err(ArgsError::BadValue { option: "--listen", .. })));
        assert!(matches!(parse(&args("sink --listen 127.0.0.1:1 --cert c --key k --size 3")), Err(ArgsError::UnknownOption { .. })));
    }
}
