//! What the queue manager reads from main.cf, and next-hop resolution: `transport_maps`
//! (exact domain, then `.parent` entries), then `relayhost`, then the recipient's domain.
//! Address verification probes have routes of their own (`address_verify_transport_maps`,
//! `address_verify_relayhost`, `address_verify_default_transport`), by default the same.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::bounce::BounceConfig;
use common::config::table::search::{Key, ParentStyle, domain_keys, find};
use common::config::table::{Table, TableError, split_braced_list};
use common::config::{ConfigError, DomainList, Params};
use common::domain::lookup_domain;
use common::ipc::client::Persistent;
use common::ipc::endpoint::{Class, service_path};
use common::ipc::flush::FlushProtocol;
use common::ipc::verify::ProbeReporter;
use common::queue::Spool;
use common::smtputf8::address_to_ascii_domain;

/// Where a recipient goes: a master.cf transport (a `private/` service) and its next hop.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    pub transport: String,
    pub nexthop: String,
}

#[derive(Debug, Clone)]
pub struct QmgrConfig {
    pub spool: Spool,
    pub active_limit: usize,
    pub destination_concurrency: usize,
    pub initial_concurrency: usize,
    pub minimal_backoff: Duration,
    pub maximal_backoff: Duration,
    pub queue_run_delay: Duration,
    pub maximal_queue_lifetime: Duration,
    pub bounce_queue_lifetime: Duration,
    pub ipc_timeout: Duration,
    /// `daemon_timeout`: how long a delivery request may go unanswered (Postfix's queue
    /// manager watchdog) before its recipients are deferred.
    pub delivery_timeout: Duration,
    pub bounce: BounceConfig,
    pub fast_flush: DomainList,
    /// The fast flush service (for `Add`), over one kept connection.
    pub flush: Arc<Persistent<FlushProtocol>>,
    pub defer_transports: Vec<String>,
    /// The verify service, told of the probe results the queue manager makes up itself.
    pub probes: ProbeReporter,
    mail_routing: Routing,
    probe_routing: Routing,
}

/// The parameters that route one kind of message: mail, or address verification probes.
#[derive(Debug, Clone)]
struct Routing {
    transport_maps: Vec<Table>,
    transport_parent_style: ParentStyle,
    relayhost: String,
    default_transport: String,
}

impl Routing {
    /// From the parameters named `transport_maps`, `relayhost` and `default_transport` with
    /// `prefix` (`address_verify_` for probes).
    fn from_params(p: &Params, prefix: &str) -> Result<Routing, ConfigError> {
        let maps = format!("{prefix}transport_maps");
        let transport_maps = split_braced_list(&p.get(&maps)?).iter().map(|t| Table::open(t, &p.config_dir)).collect::<Result<_, _>>()?;
        Ok(Routing {
            transport_maps,
            // The table search style is the mail tables' (Postfix's parent_domain_matches_subdomains
            // names transport_maps only).
            transport_parent_style: p.parent_style("transport_maps")?,
            relayhost: p.get(&format!("{prefix}relayhost"))?,
            default_transport: p.get(&format!("{prefix}default_transport"))?,
        })
    }

    /// The probes' routing: the mail's (its tables already open, held once) unless one of
    /// the `address_verify_` parameters says otherwise.
    fn probes(p: &Params, mail: &Routing) -> Result<Routing, ConfigError> {
        for name in ["transport_maps", "relayhost", "default_transport"] {
            if p.get(&format!("address_verify_{name}"))? != p.get(name)? {
                return Routing::from_params(p, "address_verify_");
            }
        }
        Ok(mail.clone())
    }
}

fn to_usize(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0).max(1)
}

impl QmgrConfig {
    pub fn from_params(p: &Params) -> Result<QmgrConfig, ConfigError> {
        let spool = Spool::from_params(p)?;
        let mail_routing = Routing::from_params(p, "")?;
        Ok(QmgrConfig {
            flush: Arc::new(Persistent::new(service_path(&spool.root, Class::Public, &p.get("flush_service_name")?))),
            spool,
            active_limit: to_usize(p.int("qmgr_message_active_limit")?),
            destination_concurrency: to_usize(p.int("default_destination_concurrency_limit")?),
            initial_concurrency: to_usize(p.int("initial_destination_concurrency")?),
            minimal_backoff: p.time("minimal_backoff_time")?,
            maximal_backoff: p.time("maximal_backoff_time")?,
            queue_run_delay: p.time("queue_run_delay")?,
            maximal_queue_lifetime: p.time("maximal_queue_lifetime")?,
            bounce_queue_lifetime: p.time("bounce_queue_lifetime")?,
            ipc_timeout: p.time("ipc_timeout")?,
            delivery_timeout: p.time("daemon_timeout")?,
            bounce: BounceConfig::from_params(p)?,
            fast_flush: p.domain_list("fast_flush_domains")?,
            defer_transports: p.list("defer_transports")?,
            probes: ProbeReporter::from_params(p)?,
            probe_routing: Routing::probes(p, &mail_routing)?,
            mail_routing,
        })
    }

    /// The socket of a transport's delivery agent.
    pub fn agent_socket(&self, transport: &str) -> PathBuf {
        service_path(&self.spool.root, Class::Private, transport)
    }

    /// transport(5)'s search order: the full address, the domain, then its parent domains
    /// (`.parent` entries, or `parent` when `transport_maps` is in
    /// `parent_domain_matches_subdomains`), then `*`.
    fn lookup_transport(routing: &Routing, address: &str, domain: &str) -> Result<Option<String>, TableError> {
        let mut keys = vec![Key { text: address.to_lowercase(), partial: false }];
        keys.extend(
            domain_keys(&domain.to_ascii_lowercase(), routing.transport_parent_style).into_iter().map(|k| Key { partial: true, ..k }),
        );
        keys.push(Key { text: "*".into(), partial: true });
        Ok(find(&routing.transport_maps, &keys)?.map(|(_, v)| v))
    }

    /// Route a recipient address (of a probe when `probe`); `Err` when the transport table
    /// cannot be read (the recipient is deferred, as Postfix does on a table lookup failure).
    pub fn route(&self, recipient: &str, probe: bool) -> Result<Route, TableError> {
        let routing = if probe { &self.probe_routing } else { &self.mail_routing };
        // A UTF-8 domain is looked up, and delivered to, in A-label form.
        let (recipient, domain) = (address_to_ascii_domain(recipient), lookup_domain(recipient));
        let domain = domain.as_str();
        if let Some(entry) = Self::lookup_transport(routing, &recipient, domain)? {
            let (transport, nexthop) = entry.split_once(':').unwrap_or((entry.as_str(), ""));
            let transport = if transport.is_empty() { routing.default_transport.clone() } else { transport.to_string() };
            let nexthop = if nexthop.is_empty() { domain.to_string() } else { nexthop.to_string() };
            return Ok(Route { transport, nexthop });
        }
        let nexthop = if routing.relayhost.is_empty() { domain.to_string() } else { routing.relayhost.clone() };
        Ok(Route { transport: routing.default_transport.clone(), nexthop })
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
        assert_eq!(c.route("u@EXAMPLE.NET", false).unwrap(), Route { transport: "smtp".into(), nexthop: "[127.0.0.1]:2599".into() });
        assert_eq!(c.route("u@a.sub.example", false).unwrap(), Route { transport: "relay".into(), nexthop: "a.sub.example".into() });
        assert_eq!(c.route("u@bad.example", false).unwrap(), Route { transport: "error".into(), nexthop: "no such domain".into() });
        assert_eq!(c.route("u@other.example", false).unwrap(), Route { transport: "smtp".into(), nexthop: "other.example".into() });
        // Probes take the same routes by default.
        assert_eq!(c.route("u@EXAMPLE.NET", true).unwrap().nexthop, "[127.0.0.1]:2599");
        let u = cfg("transport_maps = inline:{xn--bcher-kva.example=relay:}\n");
        assert_eq!(
            u.route("jörg@Bücher.example", false).unwrap(),
            Route { transport: "relay".into(), nexthop: "xn--bcher-kva.example".into() }
        );
        let c = cfg("relayhost = [10.0.0.1]:587\n");
        assert_eq!(c.route("u@other.example", false).unwrap().nexthop, "[10.0.0.1]:587");
        // ... or their own.
        let c = cfg("relayhost = [10.0.0.1]:587\naddress_verify_relayhost = [10.0.0.2]\naddress_verify_default_transport = vrfy\n");
        assert_eq!(c.route("u@other.example", true).unwrap(), Route { transport: "vrfy".into(), nexthop: "[10.0.0.2]".into() });
        assert_eq!(c.route("u@other.example", false).unwrap(), Route { transport: "smtp".into(), nexthop: "[10.0.0.1]:587".into() });
        let c = cfg("address_verify_transport_maps = inline:{example.net=smtp:[127.0.0.1]:2600}\n");
        assert_eq!(c.route("u@example.net", true).unwrap().nexthop, "[127.0.0.1]:2600");
        assert_eq!(c.route("u@example.net", false).unwrap().nexthop, "example.net");
    }
}
