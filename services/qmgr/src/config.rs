//! What the queue manager reads from main.cf, and next-hop resolution: `transport_maps`
//! (exact domain, then `.parent` entries), then `relayhost`, then the recipient's domain.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::config::table::{Table, split_braced_list};
use common::config::{ConfigError, DomainList, Params};
use common::domain::address_domain;
use common::ipc::client::Persistent;
use common::ipc::endpoint::{Class, service_path};
use common::ipc::flush::FlushProtocol;
use common::queue::Spool;

/// Where a recipient goes: a master.cf transport (a `private/` service) and its next hop.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    pub transport: String,
    pub nexthop: String,
}

#[derive(Debug, Clone)]
pub struct QmgrConfig {
    pub spool: Spool,
    pub myhostname: String,
    pub active_limit: usize,
    pub destination_concurrency: usize,
    pub initial_concurrency: usize,
    pub minimal_backoff: Duration,
    pub maximal_backoff: Duration,
    pub queue_run_delay: Duration,
    pub maximal_queue_lifetime: Duration,
    pub bounce_queue_lifetime: Duration,
    pub ipc_timeout: Duration,
    pub fast_flush: DomainList,
    /// The fast flush service (for `Add`), over one kept connection.
    pub flush: Arc<Persistent<FlushProtocol>>,
    pub defer_transports: Vec<String>,
    transport_maps: Vec<Table>,
    relayhost: String,
    default_transport: String,
}

fn to_usize(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0).max(1)
}

impl QmgrConfig {
    pub fn from_params(p: &Params) -> Result<QmgrConfig, ConfigError> {
        let spool = Spool::from_params(p)?;
        let transport_maps =
            split_braced_list(&p.get("transport_maps")?).iter().map(|t| Table::open(t, &p.config_dir)).collect::<Result<_, _>>()?;
        Ok(QmgrConfig {
            flush: Arc::new(Persistent::new(service_path(&spool.root, Class::Public, &p.get("flush_service_name")?))),
            spool,
            myhostname: p.get("myhostname")?,
            active_limit: to_usize(p.int("qmgr_message_active_limit")?),
            destination_concurrency: to_usize(p.int("default_destination_concurrency_limit")?),
            initial_concurrency: to_usize(p.int("initial_destination_concurrency")?),
            minimal_backoff: p.time("minimal_backoff_time")?,
            maximal_backoff: p.time("maximal_backoff_time")?,
            queue_run_delay: p.time("queue_run_delay")?,
            maximal_queue_lifetime: p.time("maximal_queue_lifetime")?,
            bounce_queue_lifetime: p.time("bounce_queue_lifetime")?,
            ipc_timeout: p.time("ipc_timeout")?,
            fast_flush: p.domain_list("fast_flush_domains")?,
            defer_transports: p.list("defer_transports")?,
            transport_maps,
            relayhost: p.get("relayhost")?,
            default_transport: p.get("default_transport")?,
        })
    }

    /// The socket of a transport's delivery agent.
    pub fn agent_socket(&self, transport: &str) -> PathBuf {
        service_path(&self.spool.root, Class::Private, transport)
    }

    fn lookup_transport(&self, domain: &str) -> Option<String> {
        let domain = domain.to_ascii_lowercase();
        for t in &self.transport_maps {
            if let Some(v) = t.lookup(&domain) {
                return Some(v.to_string());
            }
            let mut rest = domain.as_str();
            while let Some((_, parent)) = rest.split_once('.') {
                if let Some(v) = t.lookup(&format!(".{parent}")) {
                    return Some(v.to_string());
                }
                rest = parent;
            }
        }
        None
    }

    /// Route a recipient address.
    pub fn route(&self, recipient: &str) -> Route {
        let domain = address_domain(recipient);
        if let Some(entry) = self.lookup_transport(domain) {
            let (transport, nexthop) = entry.split_once(':').unwrap_or((entry.as_str(), ""));
            let transport = if transport.is_empty() { self.default_transport.clone() } else { transport.to_string() };
            let nexthop = if nexthop.is_empty() { domain.to_string() } else { nexthop.to_string() };
            return Route { transport, nexthop };
        }
        let nexthop = if self.relayhost.is_empty() { domain.to_string() } else { self.relayhost.clone() };
        Route { transport: self.default_transport.clone(), nexthop }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::config::MainCf;
    use std::path::Path;

    fn cfg(text: &str) -> QmgrConfig {
        let main = MainCf::parse(text, Path::new("main.cf")).unwrap();
        QmgrConfig::from_params(&Params::from_parts(Path::new("/tmp"), main, &[])).unwrap()
    }

    #[test]
    fn routes() {
        let c = cfg(
            "transport_maps = inline:{example.net=smtp:[127.0.0.1]:2599, .sub.example=relay:, { bad.example = error:no such domain }}\n",
        );
        assert_eq!(c.route("u@EXAMPLE.NET"), Route { transport: "smtp".into(), nexthop: "[127.0.0.1]:2599".into() });
        assert_eq!(c.route("u@a.sub.example"), Route { transport: "relay".into(), nexthop: "a.sub.example".into() });
        assert_eq!(c.route("u@bad.example"), Route { transport: "error".into(), nexthop: "no such domain".into() });
        assert_eq!(c.route("u@other.example"), Route { transport: "smtp".into(), nexthop: "other.example".into() });
        let c = cfg("relayhost = [10.0.0.1]:587\n");
        assert_eq!(c.route("u@other.example").nexthop, "[10.0.0.1]:587");
    }
}
