//! What `postfix check`, `start` and `reload` (and `postconf`) say about a configuration before
//! anything runs: every table named in main.cf and in master.cf `-o` overrides must open, and
//! no parameter may be silently ignored.
//!
//! A parameter Postern does not know gets Postfix's `postconf` warning, `/etc/postern/main.cf:
//! unused parameter: foo=bar` (Postfix `postconf_unused.c`), unless it is a user-defined
//! parameter: one whose `$name` is used in another value (main.cf, master.cf or a built-in
//! default), or a name listed in `smtpd_restriction_classes` (Postfix `postconf_user.c`). A
//! parameter that Postfix has and Postern does not implement gets its own warning naming the
//! file and line: `/etc/postern/main.cf, line 7: Postfix parameter not implemented by Postern:
//! smtpd_milters=inet:localhost:8891`. Postfix's names come from `postfix-params.txt` (how it was made is
//! written at its top) plus the per-transport names postconf derives from master.cf services.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use super::params::{Params, param_table};
use super::table::{Table, specs_in};
use super::{ConfigError, MasterCf};

/// Postfix's parameter names (see `postfix-params.txt`).
fn postfix_names() -> &'static BTreeSet<&'static str> {
    static NAMES: OnceLock<BTreeSet<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        include_str!("../../postfix-params.txt").lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
    })
}

/// The suffixes of Postfix's per-transport parameters (`postconf_service.c`): `relay` in
/// master.cf makes `relay_destination_concurrency_limit` a Postfix parameter.
const SERVICE_SUFFIXES: &[&str] = &[
    "_time_limit",
    "_recipient_limit",
    "_extra_recipient_limit",
    "_recipient_refill_limit",
    "_recipient_refill_delay",
    "_delivery_slot_cost",
    "_delivery_slot_loan",
    "_delivery_slot_discount",
    "_minimum_delivery_slots",
    "_initial_destination_concurrency",
    "_destination_concurrency_limit",
    "_destination_recipient_limit",
    "_destination_concurrency_positive_feedback",
    "_destination_concurrency_negative_feedback",
    "_destination_concurrency_failed_cohort_limit",
    "_destination_rate_delay",
    "_transport_rate_delay",
];

/// Names used as `$name`, `${name...}` or `$(name...)` in `value`.
fn references(value: &str, out: &mut BTreeSet<String>) {
    let bytes = value.as_bytes();
    for (i, _) in value.match_indices('$') {
        let start = match bytes.get(i + 1) {
            Some(b'{') | Some(b'(') => i + 2,
            _ => i + 1,
        };
        let name: String = value[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
}

/// Whether `name` is Postfix's: in the list, or a per-transport name of a master.cf service.
fn is_postfix_name(name: &str, master: Option<&MasterCf>) -> bool {
    postfix_names().contains(name)
        || master.is_some_and(|m| {
            m.entries.iter().any(|e| name.strip_prefix(e.service.as_str()).is_some_and(|rest| SERVICE_SUFFIXES.contains(&rest)))
        })
}

/// The warnings about parameters Postern does not use, main.cf's first, then master.cf's;
/// each list sorted by name, as postconf prints them.
pub fn unused_parameters(params: &Params, master: Option<&MasterCf>) -> Vec<String> {
    let known = param_table();
    let mut used = BTreeSet::new();
    for s in params.main.sorted() {
        references(&s.value, &mut used);
    }
    for def in known.values() {
        references(&def.default, &mut used);
    }
    let classes = params.list("smtpd_restriction_classes").unwrap_or_default();
    used.extend(classes);
    for e in master.iter().flat_map(|m| m.entries.iter()) {
        for (_, v) in &e.overrides {
            references(v, &mut used);
        }
    }
    let main_path = params.main.path.display().to_string();
    let mut out = Vec::new();
    for s in params.main.sorted() {
        if known.contains_key(&s.name) || used.contains(&s.name) {
            continue;
        }
        if is_postfix_name(&s.name, master) {
            out.push(format!("{main_path}, line {}: Postfix parameter not implemented by Postern: {}={}", s.line, s.name, s.value));
        } else {
            out.push(format!("{main_path}: unused parameter: {}={}", s.name, s.value));
        }
    }
    if let Some(m) = master {
        let master_path = m.path.display().to_string();
        for e in &m.entries {
            let mut sorted: Vec<&(String, String)> = e.overrides.iter().collect();
            sorted.sort();
            for (name, value) in sorted {
                if known.contains_key(name) || used.contains(name) || params.main.get(name).is_some() {
                    continue;
                }
                if is_postfix_name(name, master) {
                    out.push(format!(
                        "{master_path}, line {}: Postfix parameter not implemented by Postern: {name}={value} (service {})",
                        e.line,
                        e.key()
                    ));
                } else {
                    out.push(format!("{master_path}: unused parameter: {name}={value}"));
                }
            }
        }
    }
    out
}

/// Open every table named in a main.cf setting (or a built-in default) and in each master.cf
/// `-o` override; the first one that cannot be opened is an error naming the parameter and
/// where it is set.
pub fn open_tables(params: &Params, master: Option<&MasterCf>) -> Result<(), ConfigError> {
    let main_path = params.main.path.display().to_string();
    let mut names: BTreeSet<String> = param_table().keys().cloned().collect();
    names.extend(params.main.sorted().into_iter().map(|s| s.name.clone()));
    // A cache the daemons write is made at first use (the verify service's), not read here.
    const CACHES: [&str; 1] = ["address_verify_map"];
    // A default that only names another parameter (`address_verify_transport_maps =
    // $transport_maps`) is checked as that one, whose error can say where it is set.
    let table = param_table();
    let alias = |name: &str| {
        params.main.get(name).is_none()
            && table.get(name).is_some_and(|d| d.default.strip_prefix('$').is_some_and(|other| table.contains_key(other)))
    };
    for name in names.iter().filter(|n| !CACHES.contains(&n.as_str()) && !alias(n)) {
        let Ok(value) = params.get(name) else { continue }; // value errors are reported elsewhere
        let place = match params.main.get(name) {
            Some(s) => format!("{main_path}, line {}: parameter {name}", s.line),
            None => format!("parameter {name} (default)"),
        };
        open_all(&value, params, &place)?;
    }
    for e in master.iter().flat_map(|m| m.entries.iter()) {
        if e.overrides.is_empty() {
            continue;
        }
        let mut local = params.clone();
        for (n, v) in &e.overrides {
            local.set_override(n, v);
        }
        for (name, _) in &e.overrides {
            let Ok(value) = local.get(name) else { continue };
            let path = master.map_or_else(String::new, |m| m.path.display().to_string());
            open_all(&value, &local, &format!("{path}, line {}: service {}: parameter {name}", e.line, e.key()))?;
        }
    }
    Ok(())
}

fn open_all(value: &str, params: &Params, place: &str) -> Result<(), ConfigError> {
    for spec in specs_in(value) {
        Table::open(&spec, &params.config_dir).map_err(|e| ConfigError::value(place, e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MainCf;
    use std::path::Path;

    fn setup(main: &str, master: &str) -> (Params, MasterCf) {
        let main = MainCf::parse(main, Path::new("/etc/postern/main.cf")).unwrap();
        let master = MasterCf::parse(master, Path::new("/etc/postern/master.cf")).unwrap();
        (Params::from_parts(Path::new("/etc/postern"), main, &[]), master)
    }

    #[test]
    fn unknown_unimplemented_and_user_defined() {
        let (p, m) = setup(
            "myhostname = mx.example\nfoo = bar\nsmtpd_milters = inet:localhost:8891\nmy_nets = 10.0.0.0/8\nmynetworks = $my_nets\n\
             relay_destination_concurrency_limit = 2\nsmtpd_restriction_classes = cls\ncls = permit\n",
            "relay unix - - n - - smtp\n  -o smtpd_tls_ask_ccert=yes\n  -o bogus=1\n  -o syslog_name=x/$mine\n  -o mine=y\n",
        );
        assert_eq!(
            unused_parameters(&p, Some(&m)),
            vec![
                "/etc/postern/main.cf: unused parameter: foo=bar".to_string(),
                "/etc/postern/main.cf, line 6: Postfix parameter not implemented by Postern: relay_destination_concurrency_limit=2"
                    .to_string(),
                "/etc/postern/main.cf, line 3: Postfix parameter not implemented by Postern: smtpd_milters=inet:localhost:8891".to_string(),
                "/etc/postern/main.cf, line 7: Postfix parameter not implemented by Postern: smtpd_restriction_classes=cls".to_string(),
                "/etc/postern/master.cf: unused parameter: bogus=1".to_string(),
                "/etc/postern/master.cf, line 1: Postfix parameter not implemented by Postern: smtpd_tls_ask_ccert=yes (service relay/unix)"
                    .to_string(),
            ]
        );
        let mut refs = BTreeSet::new();
        references("${a?{$b}:x} $(c) $$d $", &mut refs);
        assert_eq!(refs.into_iter().collect::<Vec<_>>(), ["a", "b", "c", "d"]);
    }

    #[test]
    fn unopenable_tables_name_the_parameter() {
        let (p, m) = setup("myhostname = mx.example\n\ntransport_maps = hash:/nonexistent/transport\n", "");
        let e = open_tables(&p, Some(&m)).unwrap_err().to_string();
        assert_eq!(
            e,
            "/etc/postern/main.cf, line 3: parameter transport_maps: open database /nonexistent/transport.db: No such file or directory"
        );
        let (p, m) = setup("", "smtp inet n - n - - smtpd\n  -o smtpd_relay_restrictions=check_client_access,btree:/x\n");
        let e = open_tables(&p, Some(&m)).unwrap_err().to_string();
        assert_eq!(
            e,
            "/etc/postern/master.cf, line 1: service smtp/inet: parameter smtpd_relay_restrictions: unsupported dictionary type: btree"
        );
        let (p, m) = setup("relay_domains = inline:{a.example=1}\n", "");
        open_tables(&p, Some(&m)).unwrap();
    }
}
