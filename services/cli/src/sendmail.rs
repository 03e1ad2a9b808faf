//! sendmail - Postern to Sendmail compatibility interface
//!
//! # Synopsis
//! `sendmail [-f sender] [-F full_name] [-t] [-i] [-oi] [-N dsn] [-R ret] [-V envid] [-C config_dir] [recipient ...]`
//!
//! `sendmail -bp` | `-q` | `-qRsite` | `-qIqueue_id`
//!
//! # Description
//! Reads a message from standard input and writes it durably into `maildrop/` (so submission
//! works while the mail system is down), then nudges the pickup service. `-f sender` (or
//! `-r`) sets the envelope sender, `-t` takes the recipients from the `To:`, `Cc:` and `Bcc:`
//! headers, `-i` and `-oi` make a line with a lone `.` part of the message, `-C` (or
//! `MAIL_CONFIG`) selects the configuration directory. The DSN requests of RFC 3461: `-N
//! never` or `-N success,failure,delay` (any of them) for every recipient, `-R full|hdrs`
//! (what a failure notice returns), `-V envid` (the envelope ID notices quote); a bad value is
//! warned about and ignored, as in Postfix. `-F full_name` sets the sender's full name, for
//! the `From:` header pickup adds when the message has none; without it the `NAME`
//! environment variable does, else the password file's GECOS field (up to the first `,`, `;`
//! or `%`, each `&` the login name with its first letter capitalised), as in Postfix. Sendmail
//! options that do not apply (`-X`,
//! `-h`, `-L` with their values, `-o...`, `-U`, `-v`, `-m`, `-n`, `-G`, `-bm`) are accepted and
//! ignored. The message is stored as it was written (`Bcc:`
//! headers aside, and with CRLF line ends); pickup adds its `Received:` header and the headers
//! it lacks (`Message-Id:`, `Date:`, `From:`), as Postfix's cleanup does.
//!
//! Queue options: `-bp` lists the queue (as `mailq`), `-q` delivers all queued mail now (as
//! `postqueue -f`), `-qRsite` sends `ETRN site` over SMTP to the local smtpd, `-qIqueue_id`
//! delivers one message, `-q<interval>` is accepted and does nothing.
//!
//! # Diagnostics
//! As in Postfix, a fatal error exits with status 75 (EX_TEMPFAIL), a bad command line or
//! address with 64 (EX_USAGE). Other `-b` modes (`-bs`, `-bv`, ...) are refused as not
//! implemented.
//!
//! # Security
//! Envelope addresses (`-f`, recipient arguments, `-t` headers) with control characters (CR,
//! LF, NUL, ...) are refused (`fatal: bad sender address: ...`, `fatal: bad recipient address:
//! ...`, status 64): such an address could end an SMTP command early at the next hop. (Postfix's
//! sendmail instead keeps only the first address it can parse from such text.) A message larger
//! than `message_size_limit`, or an envelope larger than the maildrop envelope allowance, is
//! refused with `fatal: message file too big` (status 75 as in Postfix).
//!
//! The maildrop file is written private (mode 0600) and then released to the mail system: a
//! POSIX ACL entry lets `mail_owner` (pickup) read it and nobody else, and the owner-execute bit
//! marks it ready (mode 0740). On a file system without POSIX ACLs the file is made readable by
//! everyone instead (0744) with a warning; its name is still not listable by other users.
//!
//! # Bugs
//! A user other than root and `mail_owner` may not open `maildrop/` (mode 1733) to fsync it,
//! so the new file's directory entry is made durable with `syncfs(2)` of the queue file system,
//! which costs more than a directory fsync on a busy file system.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use common::config::{self, MasterCf, Params, ServiceType};
use common::dsn::{Notify, Ret};
use common::ipc::endpoint::{Class, service_path};
use common::ipc::trigger::Trigger;
use common::ipc::trigger_client::trigger_blocking;
use common::queue::file::{ClientInfo, Envelope, Recipient, now_us, write_new};
use common::queue::maildrop::{self, Release};
use common::queue::{QueueName, Spool};
use common::text::{has_control, printable};

use crate::Fatal;

/// sendmail's exit status for a fatal error.
pub const EX_TEMPFAIL: u8 = 75;
/// sendmail's exit status for a bad command line or address.
pub const EX_USAGE: u8 = 64;

fn fatal(text: impl Into<String>) -> Fatal {
    Fatal::new(EX_TEMPFAIL, text)
}

#[derive(Debug, Default)]
struct Options {
    sender: Option<String>,
    extract: bool,
    dots_ok: bool,
    config: Option<PathBuf>,
    list: bool,
    queue: Option<String>,
    recipients: Vec<String>,
    /// `-N`: NOTIFY for every recipient.
    notify: Option<Notify>,
    /// `-R`: RET.
    ret: Option<Ret>,
    /// `-V`: ENVID.
    envid: Option<String>,
    /// `-F`: the full name.
    fullname: Option<String>,
}

/// Parse sendmail's getopt-style options by hand: `-qRsite`, `-oi` and friends confuse clap.
fn parse(args: &[String]) -> Result<Options, Fatal> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if o.recipients.is_empty() && a.starts_with('-') && a.len() > 1 {
            let mut value = |inline: &str| -> Result<String, Fatal> {
                if !inline.is_empty() {
                    Ok(inline.to_string())
                } else {
                    it.next().cloned().ok_or_else(|| fatal(format!("option requires an argument -- {a}")))
                }
            };
            match a.as_bytes()[1] {
                b'f' | b'r' => o.sender = Some(value(&a[2..])?),
                // Bad DSN values are warned about and ignored, as Postfix's sendmail does.
                b'N' => {
                    let v = value(&a[2..])?;
                    o.notify = Notify::parse(&v);
                    if o.notify.is_none() {
                        eprintln!("sendmail: warning: bad -N option value: '{}' -- ignored", printable(&v, '?'));
                    }
                }
                b'R' => {
                    o.ret = Ret::parse(&value(&a[2..])?);
                    if o.ret.is_none() {
                        eprintln!("sendmail: warning: bad -R option value -- ignored");
                    }
                }
                b'V' => {
                    let v = value(&a[2..])?;
                    if v.len() > 100 {
                        eprintln!("sendmail: warning: too long -V option value -- ignored");
                    } else if v.is_empty() || !v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
                        eprintln!("sendmail: warning: bad syntax in -V option value -- ignored");
                    } else {
                        o.envid = Some(v);
                    }
                }
                b'F' => o.fullname = Some(value(&a[2..])?),
                b'X' | b'h' | b'L' => {
                    value(&a[2..])?;
                }
                b'C' => o.config = Some(PathBuf::from(value(&a[2..])?)),
                b't' => o.extract = true,
                b'i' => o.dots_ok = true,
                b'o' if &a[2..] == "i" => o.dots_ok = true,
                b'o' | b'U' | b'v' | b'm' | b'n' | b'G' => {}
                b'b' => match &a[2..] {
                    "p" => o.list = true,
                    "m" | "" => {}
                    other => return Err(fatal(format!("-b{other} is not implemented"))),
                },
                b'q' => o.queue = Some(a[2..].to_string()),
                _ => return Err(fatal(format!("usage: sendmail [-f sender] [-t] [-i] [recipient ...]: invalid option {a}"))),
            }
        } else {
            o.recipients.push(a.clone());
        }
    }
    Ok(o)
}

/// The configuration directory: `-C dir` (or a main.cf path in it), else `MAIL_CONFIG`.
fn config_dir(arg: Option<PathBuf>) -> PathBuf {
    let arg = arg.map(|p| if p.is_file() { p.parent().map(PathBuf::from).unwrap_or(p) } else { p });
    config::config_dir(arg)
}

/// Run sendmail; `argv0` decides between sendmail and mailq.
pub fn run(argv0: &str, args: &[String], stdin: &mut dyn Read) -> Result<u8, Fatal> {
    let o = parse(args)?;
    let dir = config_dir(o.config.clone());
    let p = Params::load(&dir, &[]).map_err(|e| fatal(e.to_string()))?;
    if o.list || argv0.ends_with("mailq") {
        return crate::postqueue::list_queue(&p, &mut std::io::stdout(), false).map(|()| 0).map_err(|f| fatal(f.text));
    }
    if let Some(q) = &o.queue {
        return queue_request(&p, &dir, q, &o.recipients);
    }
    submit(&p, &o, stdin)
}

fn queue_request(p: &Params, dir: &std::path::Path, q: &str, recipients: &[String]) -> Result<u8, Fatal> {
    let as_fatal = |f: Fatal| fatal(f.text);
    match q.chars().next() {
        None => crate::postqueue::flush_queue(p).map(|()| 0).map_err(as_fatal),
        Some(c) if c.is_ascii_digit() => Ok(0),
        Some('R') => {
            let site = &q[1..];
            if site.is_empty() {
                return Err(fatal("specify: -qRsitename"));
            }
            if !recipients.is_empty() {
                return Err(fatal("flush site requires no recipient"));
            }
            etrn_via_smtp(p, dir, site).map(|()| 0)
        }
        Some('I') => {
            let id = &q[1..];
            if id.is_empty() {
                return Err(fatal("specify: -qIqueueid"));
            }
            if !recipients.is_empty() {
                return Err(fatal("flush queue_id requires no recipient"));
            }
            crate::postqueue::flush_file(p, id).map(|()| 0).map_err(as_fatal)
        }
        Some(c) => Err(fatal(format!("-q{c} is not implemented"))),
    }
}

/// The address of the local smtpd: the first `inet` entry running `smtpd` in master.cf.
fn local_smtpd(p: &Params, dir: &std::path::Path) -> Result<String, Fatal> {
    let cf = MasterCf::load(&dir.join("master.cf")).map_err(|e| fatal(e.to_string()))?;
    let e = cf
        .entries
        .iter()
        .find(|e| e.kind == ServiceType::Inet && e.command == "smtpd")
        .ok_or_else(|| fatal("no smtpd service in master.cf"))?;
    let port = |s: &str| if s == "smtp" { "25".to_string() } else { s.to_string() };
    Ok(match e.service.rsplit_once(':') {
        Some((host, p)) => format!("{}:{}", host.trim_matches(['[', ']']), port(p)),
        None => {
            let iface = p
                .list("inet_interfaces")
                .unwrap_or_default()
                .into_iter()
                .find(|i| i != "all" && i != "loopback-only")
                .unwrap_or_else(|| "127.0.0.1".into());
            format!("{iface}:{}", port(&e.service))
        }
    })
}

/// `sendmail -qRsite`: HELO, ETRN site, QUIT to the local SMTP server; every reply must be 2xx.
fn etrn_via_smtp(p: &Params, dir: &std::path::Path, site: &str) -> Result<(), Fatal> {
    let addr = local_smtpd(p, dir)?;
    let stream = TcpStream::connect(&addr).map_err(|e| fatal(format!("connect to {addr}: {e}")))?;
    stream.set_read_timeout(Some(Duration::from_secs(60))).map_err(|e| fatal(e.to_string()))?;
    let mut w = stream.try_clone().map_err(|e| fatal(e.to_string()))?;
    let mut r = BufReader::new(stream);
    let reply = |r: &mut BufReader<TcpStream>| -> Result<String, Fatal> {
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).map_err(|e| fatal(format!("read from {addr}: {e}")))? == 0 {
                return Err(fatal(format!("lost connection with {addr}")));
            }
            let done = line.as_bytes().get(3) != Some(&b'-');
            if done {
                return Ok(line.trim_end().to_string());
            }
        }
    };
    let expect2 = |text: String, what: &str| if text.starts_with('2') { Ok(text) } else { Err(fatal(format!("{what}: {text}"))) };
    expect2(reply(&mut r)?, "server greeting")?;
    let host = p.get("myhostname").map_err(|e| fatal(e.to_string()))?;
    for (cmd, what) in [(format!("HELO {host}"), "HELO"), (format!("ETRN {site}"), "ETRN")] {
        w.write_all(format!("{cmd}\r\n").as_bytes()).map_err(|e| fatal(e.to_string()))?;
        expect2(reply(&mut r)?, &format!("{what} {site} failed"))?;
    }
    let _ = w.write_all(b"QUIT\r\n");
    Ok(())
}

/// An address as given on the command line, without surrounding space and one pair of angle
/// brackets (`-f '<>'` is the null sender, as in Postfix).
fn bare_address(a: &str) -> &str {
    let a = a.trim_matches([' ', '\t']);
    a.strip_prefix('<').and_then(|a| a.strip_suffix('>')).unwrap_or(a)
}

/// The full name of the user `uid` without `-F`, as Postfix's `fullname()` finds it: `NAME`
/// from the environment, else the password file's.
fn submitter_fullname(uid: u32) -> Option<String> {
    if let Some(name) = std::env::var_os("NAME") {
        return Some(name.to_string_lossy().into_owned());
    }
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten()?;
    Some(gecos_fullname(&user.gecos.to_string_lossy(), &user.name))
}

/// The full name in a GECOS field: up to the first `,`, `;` or `%`, each `&` replaced by the
/// login name with its first letter capitalised.
fn gecos_fullname(gecos: &str, login: &str) -> String {
    let field = gecos.split([',', ';', '%']).next().unwrap_or_default();
    let mut chars = login.chars();
    let capitalised: String = chars.next().map(|c| c.to_ascii_uppercase()).into_iter().chain(chars).collect();
    field.replace('&', &capitalised)
}

/// Addresses in To:, Cc: and Bcc: header lines (`-t`).
fn header_recipients(headers: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    let flush = |v: Option<String>, out: &mut Vec<String>| {
        if let Some(v) = v {
            for part in v.split(',') {
                let a = part.rsplit_once('<').map_or(part, |(_, r)| r.split('>').next().unwrap_or(r)).trim();
                if a.contains('@') {
                    out.push(a.to_string());
                }
            }
        }
    };
    for line in headers.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(c) = current.as_mut() {
                c.push_str(line);
            }
            continue;
        }
        flush(current.take(), &mut out);
        if let Some((name, value)) = line.split_once(':')
            && ["to", "cc", "bcc"].contains(&name.trim().to_ascii_lowercase().as_str())
        {
            current = Some(value.to_string());
        }
    }
    flush(current, &mut out);
    out
}

fn submit(p: &Params, o: &Options, stdin: &mut dyn Read) -> Result<u8, Fatal> {
    let mut raw = Vec::new();
    stdin.read_to_end(&mut raw).map_err(|e| fatal(format!("read standard input: {e}")))?;
    // Without -i, a line with a single dot ends the message (traditional sendmail).
    let mut lines: Vec<&[u8]> = Vec::new();
    // Split into lines; the newline that ends the last line does not start another.
    let input = raw.strip_suffix(b"\n").unwrap_or(&raw);
    for line in input.split(|&b| b == b'\n').filter(|_| !raw.is_empty()) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !o.dots_ok && line == b"." {
            break;
        }
        lines.push(line);
    }
    // The headers end at the first empty line; the body after it is kept byte for byte.
    let split = lines.iter().position(|l| l.is_empty()).unwrap_or(lines.len());
    let (header_lines, body_lines) = lines.split_at(split);
    let text = String::from_utf8_lossy(&header_lines.join(&b'\n')).into_owned();
    let headers = text.as_str();
    let mut recipients = o.recipients.clone();
    if o.extract {
        recipients.extend(header_recipients(headers));
    }
    if recipients.is_empty() {
        return Err(fatal("No recipient addresses found in message header"));
    }
    let uid = nix::unistd::getuid().as_raw();
    let user = common::config::users::UserList::user_name(uid);
    let myorigin = p.get("myorigin").map_err(|e| fatal(e.to_string()))?;
    let qualify = |a: &str| {
        let a = bare_address(a);
        if a.contains('@') || a.is_empty() { a.to_string() } else { format!("{a}@{myorigin}") }
    };
    let sender = o.sender.as_deref().map(qualify).unwrap_or_else(|| qualify(&user));
    if has_control(&sender) {
        return Err(Fatal::new(EX_USAGE, format!("bad sender address: {}", printable(&sender, '?'))));
    }
    if let Some(bad) = recipients.iter().find(|r| has_control(r)) {
        return Err(Fatal::new(EX_USAGE, format!("bad recipient address: {}", printable(bad, '?'))));
    }
    // pickup prepends the Received: header, from the file's owner, and adds the headers the
    // message lacks (Message-Id, Date, From), as Postfix's cleanup does: nothing here is trusted.
    let mut message = String::new();
    // Bcc: headers are for the envelope only.
    let mut in_bcc = false;
    for line in headers.lines() {
        if line.to_ascii_lowercase().starts_with("bcc:") || (in_bcc && line.starts_with([' ', '\t'])) {
            in_bcc = true;
            continue;
        }
        in_bcc = false;
        message.push_str(line);
        message.push_str("\r\n");
    }
    let mut message = message.into_bytes();
    for line in body_lines {
        message.extend_from_slice(line);
        message.extend_from_slice(b"\r\n");
    }
    let spool = Spool::from_params(p).map_err(|e| fatal(e.to_string()))?;
    let env = Envelope {
        sender,
        recipients: recipients.into_iter().map(|r| Recipient { address: qualify(&r), notify: o.notify, ..Default::default() }).collect(),
        arrival_us: now_us(),
        client: ClientInfo { name: "localhost".into(), addr: "127.0.0.1".into(), helo: String::new(), protocol: "local".into() },
        smtputf8: false,
        verify_probe: false,
        ret: o.ret,
        envid: o.envid.clone(),
        fullname: o.fullname.clone().or_else(|| submitter_fullname(uid)),
    };
    let size_limit = u64::try_from(p.int("message_size_limit").map_err(|e| fatal(e.to_string()))?).unwrap_or(0);
    let envelope_size = serde_json::to_vec(&env).map(|v| v.len() as u64).unwrap_or(u64::MAX);
    if (size_limit > 0 && message.len() as u64 > size_limit) || envelope_size > maildrop::ENVELOPE_SLACK {
        return Err(fatal("message file too big"));
    }
    let id = write_new(&spool, QueueName::Maildrop, &env, &message).map_err(|e| fatal(format!("queue file write error: {e}")))?;
    let path = spool.path(QueueName::Maildrop, &id);
    // Without a mail_owner user the master runs every service as root (with a warning), and
    // root needs no grant.
    let owner = p.get("mail_owner").map_err(|e| fatal(e.to_string()))?;
    let owner_uid = nix::unistd::User::from_name(&owner).ok().flatten().map_or(0, |u| u.uid.as_raw());
    match maildrop::release(&path, owner_uid) {
        Ok(Release::Private) => {}
        Ok(Release::WorldReadable) => {
            eprintln!("sendmail: warning: no POSIX ACLs on the maildrop file system: queue file {id} is readable by other local users")
        }
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            return Err(fatal(format!("queue file write error: {}: {e}", path.display())));
        }
    }
    // A running pickup takes it at once; otherwise it waits for the next start or wakeup.
    let pickup = service_path(&spool.root, Class::Public, &p.get("pickup_service_name").map_err(|e| fatal(e.to_string()))?);
    let wait = p.time("trigger_timeout").map_err(|e| fatal(e.to_string()))?;
    let _ = trigger_blocking(&pickup, &[Trigger::Wakeup], wait);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(a: &[&str]) -> Vec<String> {
        a.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options() {
        let o = parse(&s(&["-f", "me@x.example", "-oi", "-t", "a@b.example"])).unwrap();
        assert_eq!(o.sender.as_deref(), Some("me@x.example"));
        assert!(o.dots_ok && o.extract);
        assert_eq!(o.recipients, vec!["a@b.example".to_string()]);
        assert_eq!(parse(&s(&["-qRexample.net"])).unwrap().queue.as_deref(), Some("Rexample.net"));
        assert_eq!(parse(&s(&["-fme@x"])).unwrap().sender.as_deref(), Some("me@x"));
        assert!(parse(&s(&["-bs"])).is_err());
        let o = parse(&s(&["-N", "success,delay", "-Rhdrs", "-V", "env 1", "u@x"])).unwrap();
        assert_eq!(
            (o.notify.map(|n| n.to_string()), o.ret, o.envid.as_deref()),
            (Some("SUCCESS,DELAY".into()), Some(Ret::Hdrs), Some("env 1"))
        );
        assert_eq!(o.recipients, ["u@x"]);
        assert_eq!(parse(&s(&["-F", "Jo Bloggs", "u@x"])).unwrap().fullname.as_deref(), Some("Jo Bloggs"));
        assert_eq!(parse(&s(&["-FJo", "u@x"])).unwrap().fullname.as_deref(), Some("Jo"));
        let o = parse(&s(&["-N", "never,success", "-R", "all", "-V", "bad\u{1b}", "u@x"])).unwrap();
        assert_eq!((o.notify, o.ret, o.envid), (None, None, None));
    }

    #[test]
    fn full_names_from_gecos_fields() {
        let cases = [
            ("Jo Bloggs,Room 1,555-1234,,", "jo", "Jo Bloggs"),
            ("root", "root", "root"),
            ("& Smith;x", "john", "John Smith"),
            ("& & %more", "ann", "Ann Ann "),
            ("", "nobody", ""),
            ("&", "", ""),
        ];
        for (gecos, login, want) in cases {
            assert_eq!(gecos_fullname(gecos, login), want, "{gecos:?}");
        }
    }

    #[test]
    fn bare_addresses() {
        let cases = [
            ("a@b.example", "a@b.example"),
            ("<a@b.example>", "a@b.example"),
            (" <> ", ""),
            ("<>", ""),
            ("<<a@b>>", "<a@b>"),
            ("a\r\n", "a\r\n"),
        ];
        for (given, want) in cases {
            assert_eq!(bare_address(given), want, "{given:?}");
        }
    }

    #[test]
    fn to_cc_bcc() {
        let h = "From: x@y\nTo: A <a@example.net>, b@example.net\nCc: c@example.net\nBcc:\n d@example.net\nSubject: to: nobody@x";
        assert_eq!(header_recipients(h), vec!["a@example.net", "b@example.net", "c@example.net", "d@example.net"]);
    }
}
