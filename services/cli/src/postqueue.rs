//! postqueue - Postern queue control
//!
//! # Synopsis
//! `postqueue [-v] [-c config_dir] -f | -i queue_id | -j | -n site | -p | -s site`
//!
//! # Description
//! * `-p`: list the queue in Postfix's `mailq` layout (from the `showq` service). When the mail
//!   system is down, root and the mail system's own user (`mail_owner`) read the queue
//!   directly, after Postfix's `postqueue: warning: Mail system is down -- accessing queue
//!   directly (Connect to the Postern showq service: ...)`; others get `fatal: Queue report
//!   unavailable - mail system is down`.
//! * `-j`: list the queue as one JSON object per message, one per line.
//! * `-f`: ask the queue manager to attempt delivery of all queued mail now: forget dead
//!   sites, ignore retry times, scan the deferred and incoming queues.
//! * `-s site`: ask the flush service to deliver the mail queued for `site` (see
//!   `fast_flush_domains`); a UTF-8 site is the same as its A-label form.
//! * `-i queue_id`: ask the flush service to deliver one message.
//! * `-n site` (Postern): print how many queued messages are listed for `site` in the fast flush
//!   index, moving nothing: `example.com: 9 queued messages`. With the fast flush cluster
//!   (`fast_flush_cluster_servers`) every node that answers within `fast_flush_cluster_timeout`
//!   is counted too, each named: `example.com: 9 queued messages (mx1=2, mx2=3, mx3=4)`; the
//!   flush log line names the nodes that did not answer. Allowed to `authorized_flush_users`.
//!
//! `-c` (or `MAIL_CONFIG`) selects the configuration directory; `-v` is accepted and does nothing.
//!
//! # Security
//! Who may flush (`authorized_flush_users`) and who may list (`authorized_mailq_users`) is
//! checked by the servers (qmgr for `-f`, flush for `-s` and `-i`, showq for listings) with
//! `SO_PEERCRED`, not by this program: `fatal: User name(uid) is not allowed to flush the mail
//! queue`.
//!
//! # Diagnostics
//! As in Postfix, every fatal error exits with status 69 (EX_UNAVAILABLE), except a showq
//! socket that refuses us (`Connect to the Postern showq service: Permission denied`, 70,
//! EX_SOFTWARE).
//!
//! # Configuration parameters
//! `queue_directory`, `authorized_flush_users`, `authorized_mailq_users`, `ipc_timeout`,
//! `trigger_timeout`, `mail_owner`, `mail_name`, `message_size_limit`.

use std::path::Path;
use std::time::Duration;

use common::config::{self, Params};
use common::domain::{Site, valid_address_literal};
use common::ipc::client::call_blocking;
use common::ipc::endpoint::{Class, service_path};
use common::ipc::flush::{FlushProtocol, FlushReply, FlushRequest};
use common::ipc::trigger::Trigger;
use common::ipc::trigger_client::{TriggerError, trigger_blocking};
use common::queue::id::queue_id_ok;

use common::config::users::MailOwner;
use common::ipc::showq::{QueueEntry, ShowqItem, ShowqProtocol, ShowqRequest};
use common::queue::{Spool, listing, maildrop};

use crate::Fatal;
use crate::getopt::{Arg, getopt};

/// postqueue's exit status for every fatal error.
pub const EX_UNAVAILABLE: u8 = 69;
/// The status when the showq socket refuses us (a permission problem, not a system that is down).
pub const EX_SOFTWARE: u8 = 70;
const USAGE: &str = "usage: postqueue -f | postqueue -i queueid | postqueue -j | postqueue -p | postqueue -s site";
const DOWN: &str = "Cannot flush mail queue - mail system is down";

fn fatal(text: impl Into<String>) -> Fatal {
    Fatal::new(EX_UNAVAILABLE, text)
}

/// How long postqueue waits for a service (`trigger_timeout`, as Postfix's postqueue).
fn ipc_wait(p: &Params) -> Result<Duration, Fatal> {
    p.time("trigger_timeout").map_err(|e| fatal(e.to_string()))
}

fn service(p: &Params, name_param: &str) -> Result<std::path::PathBuf, Fatal> {
    let root = p.dir("queue_directory").map_err(|e| fatal(e.to_string()))?;
    let name = p.get(name_param).map_err(|e| fatal(e.to_string()))?;
    Ok(service_path(&root, Class::Public, &name))
}

/// `postqueue -f`, also `postfix flush` and `sendmail -q`.
pub fn flush_queue(p: &Params) -> Result<(), Fatal> {
    let triggers = [Trigger::ForgetDeadSites, Trigger::IgnoreTimestamps, Trigger::ScanDeferred, Trigger::ScanIncoming];
    trigger_blocking(&service(p, "queue_service_name")?, &triggers, ipc_wait(p)?).map_err(|e| match e {
        // The queue manager checks the peer (authorized_flush_users); its text is Postfix's.
        TriggerError::Denied(reason) => fatal(reason),
        _ => fatal(DOWN),
    })
}

fn flush_request(p: &Params, req: &FlushRequest) -> Result<FlushReply, Fatal> {
    Ok(call_blocking::<FlushProtocol>(&service(p, "flush_service_name")?, req, ipc_wait(p)?)
        .unwrap_or_else(|e| FlushReply::Fail { reason: e.to_string() }))
}

/// `postqueue -s site`.
pub fn flush_site(p: &Params, site: &str) -> Result<(), Fatal> {
    site_request(p, site, FlushRequest::SendSite { site: site.to_string(), subdomains: false }).map(|_| ())
}

/// `postqueue -n site`: how many queued messages this node, and each node of the fast flush
/// cluster that answers, holds for `site`.
pub fn count_site(p: &Params, site: &str) -> Result<String, Fatal> {
    let FlushReply::Ok { moved: total, nodes } = site_request(p, site, FlushRequest::CountSite { site: site.to_string() })? else {
        return Err(fatal(DOWN));
    };
    let mut line = format!("{site}: {total} queued messages");
    if !nodes.is_empty() {
        let each: Vec<String> = nodes.iter().map(|n| format!("{}={}", n.node, n.moved)).collect();
        line.push_str(&format!(" ({})", each.join(", ")));
    }
    line.push('\n');
    Ok(line)
}

/// Ask the flush service `req` about `site` (also for `qshape -f`); its answer (`Ok` or
/// `Shaped`), or the refusal as Postfix's postqueue words it.
pub fn site_request(p: &Params, site: &str, req: FlushRequest) -> Result<FlushReply, Fatal> {
    let shown: String = site.chars().take(100).collect();
    // A UTF-8 site will do: the flush service takes its A-label form, its logfile's name.
    let syntax_ok = if site.starts_with('[') { valid_address_literal(site) } else { Site::parse(site).is_ok() };
    if !syntax_ok {
        return Err(fatal(format!("Cannot flush mail queue - invalid destination: \"{shown}\"")));
    }
    match flush_request(p, &req)? {
        answer @ (FlushReply::Ok { .. } | FlushReply::Shaped { .. }) => Ok(answer),
        FlushReply::Bad { .. } => Err(fatal(format!("Invalid request: \"{shown}\""))),
        FlushReply::Deny => Err(fatal(format!("Flush service is not configured for destination \"{shown}\""))),
        FlushReply::Fail { reason } if reason.contains("is not allowed") => Err(fatal(reason)),
        FlushReply::Fail { .. } | FlushReply::Listed { .. } => Err(fatal(DOWN)),
    }
}

/// `postqueue -i queue_id`.
pub fn flush_file(p: &Params, id: &str) -> Result<(), Fatal> {
    if !queue_id_ok(id) {
        return Err(fatal(format!("Cannot flush queue ID - invalid name: \"{id}\"")));
    }
    match flush_request(p, &FlushRequest::SendFile { queue_id: id.to_string() })? {
        FlushReply::Ok { .. } => Ok(()),
        FlushReply::Bad { .. } => Err(fatal(format!("Invalid request: \"{id}\""))),
        FlushReply::Fail { reason } if reason.contains("is not allowed") => Err(fatal(reason)),
        FlushReply::Deny | FlushReply::Fail { .. } | FlushReply::Listed { .. } | FlushReply::Shaped { .. } => Err(fatal(DOWN)),
    }
}

/// Run postqueue with its arguments.
pub fn run(args: &[String]) -> Result<u8, Fatal> {
    let parsed = getopt(args, "fjpv", "cins").map_err(|e| fatal(format!("{e}\n{USAGE}")))?;
    let mut config_dir = None;
    let mut modes = Vec::new();
    for a in parsed {
        match a {
            Arg::Opt('c', d) => config_dir = Some(d),
            Arg::Flag('v') => {}
            Arg::Operand(_) => return Err(fatal(USAGE)),
            other => modes.push(other),
        }
    }
    if modes.len() != 1 {
        return Err(fatal(USAGE));
    }
    let dir = config::config_dir(config_dir.map(Into::into));
    let p = Params::load(Path::new(&dir), &[]).map_err(|e| fatal(e.to_string()))?;
    match &modes[0] {
        Arg::Flag('f') => flush_queue(&p)?,
        Arg::Opt('s', site) => flush_site(&p, site)?,
        Arg::Opt('n', site) => print!("{}", count_site(&p, site)?),
        Arg::Opt('i', id) => flush_file(&p, id)?,
        Arg::Flag('p') => list_queue(&p, &mut std::io::stdout(), false)?,
        Arg::Flag('j') => list_queue(&p, &mut std::io::stdout(), true)?,
        _ => return Err(fatal(USAGE)),
    }
    Ok(0)
}

/// Write `entry` in Postfix's long-ID mailq layout.
fn format_entry(out: &mut String, e: &QueueEntry) {
    let mut id = e.queue_id.clone();
    match e.queue_name.as_str() {
        "active" => id.push('*'),
        "hold" => id.push('!'),
        _ => {}
    }
    let when = common::datetime::mailq_stamp(common::datetime::from_us(e.arrival_time * 1_000_000));
    let sender = if e.sender.is_empty() { "MAILER-DAEMON" } else { &e.sender };
    out.push_str(&format!("{id:<17} {:>8} {when:>19.19} {sender}\n", e.message_size));
    let mut shown_reason = String::new();
    for r in &e.recipients {
        let why = r.delay_reason.clone().unwrap_or_default();
        if why != shown_reason {
            let text = if why.is_empty() { "reason unavailable".to_string() } else { why.clone() };
            let pad = 76usize.saturating_sub(text.len());
            out.push_str(&format!("{:pad$}({text})\n", ""));
            shown_reason = why;
        }
        out.push_str(&format!("{:<17} {:>8} {:<19} {}\n", "", "", "", r.address));
    }
}

/// Where the listing comes from: the showq service, or the queue itself when the mail system
/// is down and the caller may read it.
enum Source {
    Showq(std::os::unix::net::UnixStream),
    Direct(Spool),
}

/// Connect to showq. When it is down, root and the mail system's own user read the queue
/// directly, as Postfix's postqueue runs showq stand-alone for root (with its warning); a
/// permission problem on the socket is not taken for a system that is down.
fn open_source(p: &Params) -> Result<Source, Fatal> {
    let path = service(p, "showq_service_name")?;
    let err = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => return Ok(Source::Showq(s)),
        Err(e) => e,
    };
    let mail_name = p.get("mail_name").unwrap_or_else(|_| "Postern".into());
    let showq = p.get("showq_service_name").unwrap_or_else(|_| "showq".into());
    let reason = format!("Connect to the {mail_name} {showq} service: {}", common::config::table::io_text(&err));
    if err.kind() == std::io::ErrorKind::PermissionDenied {
        return Err(Fatal::new(EX_SOFTWARE, reason));
    }
    let euid = nix::unistd::geteuid().as_raw();
    let owner = MailOwner::from_params(p).ok().flatten().map(|o| o.uid);
    if euid != 0 && Some(euid) != owner {
        return Err(fatal("Queue report unavailable - mail system is down"));
    }
    eprintln!("postqueue: warning: Mail system is down -- accessing queue directly ({reason})");
    Ok(Source::Direct(Spool::from_params(p).map_err(|e| fatal(e.to_string()))?))
}

/// The entries from showq, one frame each, handed to `each` until it returns false.
fn from_showq(p: &Params, mut s: std::os::unix::net::UnixStream, each: &mut dyn FnMut(QueueEntry) -> bool) -> Result<(), Fatal> {
    use common::ipc::frame::{read_frame_blocking, write_frame_blocking};
    let down = || fatal("Queue report unavailable - mail system is down");
    s.set_read_timeout(Some(ipc_wait(p)?)).map_err(|_| down())?;
    let hello: Option<common::ipc::Hello> = read_frame_blocking(&mut s, common::ipc::MAX_FRAME).map_err(|_| down())?;
    if hello.map(|h| h.protocol) != Some(<ShowqProtocol as common::ipc::Protocol>::NAME.to_string()) {
        return Err(down());
    }
    write_frame_blocking(&mut s, &ShowqRequest::List).map_err(|_| down())?;
    loop {
        match read_frame_blocking::<ShowqItem, _>(&mut s, common::ipc::MAX_FRAME).map_err(|_| down())? {
            Some(ShowqItem::Entry(e)) => {
                if !each(e) {
                    return Ok(());
                }
            }
            Some(ShowqItem::End) => return Ok(()),
            Some(ShowqItem::Denied { reason }) => return Err(fatal(reason)),
            None => return Err(down()),
        }
    }
}

/// `postqueue -p` / `-j` (also `mailq`, `sendmail -bp`).
pub fn list_queue(p: &Params, w: &mut dyn std::io::Write, json: bool) -> Result<(), Fatal> {
    let (mut count, mut bytes, mut gone, mut failed) = (0u64, 0u64, false, None);
    let mut each = |e: QueueEntry| {
        let mut out = String::new();
        if json {
            match serde_json::to_string(&e) {
                Ok(text) => out = text + "\n",
                Err(err) => {
                    failed = Some(fatal(err.to_string()));
                    return false;
                }
            }
        } else {
            out.push_str(if count == 0 { "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------\n" } else { "\n" });
            format_entry(&mut out, &e);
        }
        count += 1;
        bytes += e.message_size;
        // A reader that went away (postqueue -p | head) is not an error.
        gone = w.write_all(out.as_bytes()).is_err();
        !gone
    };
    match open_source(p)? {
        Source::Showq(s) => from_showq(p, s, &mut each)?,
        Source::Direct(spool) => {
            let cap = maildrop::size_cap(u64::try_from(p.int("message_size_limit").unwrap_or(0)).unwrap_or(0));
            for e in listing::entries(&spool, cap) {
                if !each(e) {
                    break;
                }
            }
        }
    }
    if let Some(f) = failed {
        return Err(f);
    }
    if !json && !gone {
        let summary = if count == 0 {
            "Mail queue is empty\n".to_string()
        } else {
            format!("\n-- {} Kbytes in {count} Request{}.\n", bytes / 1024, if count == 1 { "" } else { "s" })
        };
        let _ = w.write_all(summary.as_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::ipc::showq::QueueRecipient;

    #[test]
    fn mailq_layout() {
        let e = QueueEntry {
            queue_name: "deferred".into(),
            queue_id: "TPA7DM2BOR605IU".into(),
            arrival_time: 1_800_000_000,
            message_size: 266,
            forced_expire: false,
            sender: "sender@research.test".into(),
            recipients: vec![
                QueueRecipient {
                    address: "a@example.net".into(),
                    delay_reason: Some("connect to 127.0.0.1[127.0.0.1]:2599: Connection refused".into()),
                },
                QueueRecipient {
                    address: "b@example.net".into(),
                    delay_reason: Some("connect to 127.0.0.1[127.0.0.1]:2599: Connection refused".into()),
                },
            ],
        };
        let mut out = String::new();
        format_entry(&mut out, &e);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("TPA7DM2BOR605IU        266 "), "{}", lines[0]);
        assert!(lines[0].ends_with(" sender@research.test"));
        assert_eq!(lines[1].len(), 78);
        assert!(lines[1].ends_with("(connect to 127.0.0.1[127.0.0.1]:2599: Connection refused)"));
        assert_eq!(lines[2], format!("{}a@example.net", " ".repeat(47)));
        assert_eq!(lines[3], format!("{}b@example.net", " ".repeat(47)));
    }
}
