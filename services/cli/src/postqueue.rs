//! postqueue - Postern queue control
//!
//! `postqueue [-c config_dir] -f | -i queue_id | -s site`
//!
//! `-f` asks the queue manager to attempt delivery of all queued mail now (forget dead sites,
//! ignore retry times, scan deferred and incoming). `-s site` asks the flush service to deliver
//! the mail queued for `site`; `-i queue_id` one message. As in Postfix, every fatal error exits
//! with status 69 (EX_UNAVAILABLE).

use std::path::Path;
use std::time::Duration;

use common::config::{self, Params};
use common::domain::{valid_address_literal, valid_hostname};
use common::ipc::client::call_blocking;
use common::ipc::endpoint::{Class, service_path};
use common::ipc::flush::{FlushProtocol, FlushReply, FlushRequest};
use common::ipc::qmgr::{QmgrProtocol, QmgrTrigger};
use common::queue::id::queue_id_ok;

use crate::Fatal;
use crate::getopt::{Arg, getopt};

/// postqueue's exit status for every fatal error.
pub const EX_UNAVAILABLE: u8 = 69;
const USAGE: &str = "usage: postqueue -f | postqueue -i queueid | postqueue -s site";
const DOWN: &str = "Cannot flush mail queue - mail system is down";

fn fatal(text: impl Into<String>) -> Fatal {
    Fatal::new(EX_UNAVAILABLE, text)
}

/// How long a CLI waits for a service.
fn ipc_wait(p: &Params) -> Duration {
    p.time("trigger_timeout").unwrap_or(Duration::from_secs(10))
}

fn service(p: &Params, name_param: &str) -> Result<std::path::PathBuf, Fatal> {
    let root = p.dir("queue_directory").map_err(|e| fatal(e.to_string()))?;
    let name = p.get(name_param).map_err(|e| fatal(e.to_string()))?;
    Ok(service_path(&root, Class::Public, &name))
}

/// `postqueue -f`, also `postfix flush` and `sendmail -q`.
pub fn flush_queue(p: &Params) -> Result<(), Fatal> {
    let triggers = vec![QmgrTrigger::ForgetDeadSites, QmgrTrigger::IgnoreTimestamps, QmgrTrigger::ScanDeferred, QmgrTrigger::ScanIncoming];
    call_blocking::<QmgrProtocol>(&service(p, "queue_service_name")?, &triggers, ipc_wait(p)).map(|_| ()).map_err(|_| fatal(DOWN))
}

fn flush_request(p: &Params, req: &FlushRequest) -> Result<FlushReply, Fatal> {
    Ok(call_blocking::<FlushProtocol>(&service(p, "flush_service_name")?, req, ipc_wait(p))
        .unwrap_or_else(|e| FlushReply::Fail { reason: e.to_string() }))
}

/// `postqueue -s site`.
pub fn flush_site(p: &Params, site: &str) -> Result<(), Fatal> {
    let shown: String = site.chars().take(100).collect();
    let syntax_ok = if site.starts_with('[') { valid_address_literal(site) } else { valid_hostname(site) };
    if !syntax_ok {
        return Err(fatal(format!("Cannot flush mail queue - invalid destination: \"{shown}\"")));
    }
    match flush_request(p, &FlushRequest::SendSite { site: site.to_string(), subdomains: false })? {
        FlushReply::Ok { .. } => Ok(()),
        FlushReply::Bad { .. } => Err(fatal(format!("Invalid request: \"{shown}\""))),
        FlushReply::Deny => Err(fatal(format!("Flush service is not configured for destination \"{shown}\""))),
        FlushReply::Fail { reason } if reason.contains("is not allowed") => Err(fatal(reason)),
        FlushReply::Fail { .. } => Err(fatal(DOWN)),
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
        FlushReply::Deny | FlushReply::Fail { .. } => Err(fatal(DOWN)),
    }
}

/// Run postqueue with its arguments.
pub fn run(args: &[String]) -> Result<u8, Fatal> {
    let parsed = getopt(args, "fv", "cis").map_err(|e| fatal(format!("{e}\n{USAGE}")))?;
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
        Arg::Opt('i', id) => flush_file(&p, id)?,
        _ => return Err(fatal(USAGE)),
    }
    Ok(0)
}
