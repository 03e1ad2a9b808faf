//! The fast flush cluster's settings (`fast_flush_cluster_*`), checked when they are read: a bad
//! URL, subject or secret file (unreadable, empty, open to other users, not an nkey user seed)
//! is an error naming the parameter, never a cluster that quietly does not work.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use common::config::table::{Table, TableError, split_braced_list};
use common::config::{ParamError, Params};
use common::ipc::qmgr::valid_nexthop;

/// Why the cluster settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterConfigError {
    #[error("{0}")]
    Param(#[from] ParamError),
    #[error("fast_flush_cluster_servers: invalid NATS URL \"{url}\": {reason}")]
    Url { url: String, reason: String },
    #[error("fast_flush_cluster_subject: invalid NATS subject \"{0}\" (dot-separated tokens without blanks or wildcards)")]
    Subject(String),
    #[error("fast_flush_cluster_node: invalid node name \"{0}\" (non-empty, no blanks)")]
    Node(String),
    #[error("{param}: read {}: {source}", path.display())]
    Secret { param: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{param}: {} is empty", path.display())]
    EmptySecret { param: &'static str, path: PathBuf },
    #[error("{param}: {} is accessible by other users (mode {mode:04o}); chmod o-rwx it", path.display())]
    OpenSecret { param: &'static str, path: PathBuf, mode: u32 },
    #[error("fast_flush_cluster_nkey_file: {} does not hold an nkey user seed (SU...): {reason}", path.display())]
    Seed { path: PathBuf, reason: String },
    #[error("fast_flush_cluster_user and fast_flush_cluster_nkey_file are both set; use one")]
    TwoAuths,
    #[error("fast_flush_cluster_tls_cert_file and fast_flush_cluster_tls_key_file go together")]
    HalfClientCert,
    #[error("fast_flush_cluster_relay_maps: {0}")]
    RelayMaps(#[from] TableError),
}

/// A secret read from a file; never shown in logs or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// How flush proves who it is to NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterAuth {
    None,
    UserPassword { user: String, password: Secret },
    Nkey(Secret),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `fast_flush_cluster_servers`, each a valid NATS URL.
    pub servers: Vec<String>,
    /// `fast_flush_cluster_timeout`.
    pub timeout: Duration,
    /// `fast_flush_cluster_subject`.
    pub subject: String,
    /// `fast_flush_cluster_node`.
    pub node: String,
    /// `fast_flush_cluster_members` without this node.
    pub peers: Vec<String>,
    pub auth: ClusterAuth,
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// `fast_flush_cluster_relay_maps`: node name → where that node takes relayed mail.
    pub relay_maps: Vec<Table>,
}

/// A NATS subject that one may publish to: dot-separated non-empty tokens, no blanks, no
/// wildcards.
fn valid_subject(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(|t| !t.is_empty() && !t.chars().any(|c| c.is_whitespace() || c.is_control() || c == '*' || c == '>'))
}

fn optional_path(p: &Params, name: &str) -> Result<Option<PathBuf>, ParamError> {
    let v = p.get(name)?;
    Ok((!v.trim().is_empty()).then(|| PathBuf::from(v.trim())))
}

/// A secret file's text, trimmed. Like ssh with a private key, a file that other users may
/// read or replace is refused: the secret is not one any more.
fn read_secret(param: &'static str, path: PathBuf) -> Result<Secret, ClusterConfigError> {
    let io = |source| ClusterConfigError::Secret { param, path: path.clone(), source };
    let mut file = std::fs::File::open(&path).map_err(io)?;
    let mode = file.metadata().map_err(io)?.permissions().mode() & 0o7777;
    if mode & 0o007 != 0 {
        return Err(ClusterConfigError::OpenSecret { param, path, mode });
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(io)?;
    let text = text.trim();
    if text.is_empty() {
        return Err(ClusterConfigError::EmptySecret { param, path });
    }
    Ok(Secret(text.to_string()))
}

/// `fast_flush_cluster_nkey_file`: a user's seed, as `nk -gen user` writes it. async-nats
/// would only fail at each connection attempt with "failed signing nonce".
fn read_seed(path: PathBuf) -> Result<Secret, ClusterConfigError> {
    let seed = read_secret("fast_flush_cluster_nkey_file", path.clone())?;
    match nkeys::KeyPair::from_seed(&seed.0) {
        Ok(k) if k.key_pair_type() == nkeys::KeyPairType::User => Ok(seed),
        Ok(k) => Err(ClusterConfigError::Seed { path, reason: format!("the seed of a {:?} key", k.key_pair_type()) }),
        Err(e) => Err(ClusterConfigError::Seed { path, reason: e.to_string() }),
    }
}

impl ClusterConfig {
    /// `None` when `fast_flush_cluster_servers` is empty (the cluster is off).
    pub fn from_params(p: &Params) -> Result<Option<ClusterConfig>, ClusterConfigError> {
        let servers = p.list("fast_flush_cluster_servers")?;
        if servers.is_empty() {
            return Ok(None);
        }
        for url in &servers {
            url.parse::<async_nats::ServerAddr>().map_err(|e| ClusterConfigError::Url { url: url.clone(), reason: e.to_string() })?;
        }
        let subject = p.get("fast_flush_cluster_subject")?.trim().to_string();
        if !valid_subject(&subject) {
            return Err(ClusterConfigError::Subject(subject));
        }
        let node = p.get("fast_flush_cluster_node")?.trim().to_string();
        if node.is_empty() || node.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ClusterConfigError::Node(node));
        }
        let peers = p.list("fast_flush_cluster_members")?.into_iter().filter(|m| *m != node).collect();
        let user = p.get("fast_flush_cluster_user")?.trim().to_string();
        let auth = match (user.is_empty(), optional_path(p, "fast_flush_cluster_nkey_file")?) {
            (false, Some(_)) => return Err(ClusterConfigError::TwoAuths),
            (true, Some(path)) => ClusterAuth::Nkey(read_seed(path)?),
            (false, None) => {
                let password = match optional_path(p, "fast_flush_cluster_password_file")? {
                    Some(path) => read_secret("fast_flush_cluster_password_file", path)?,
                    None => Secret(String::new()),
                };
                ClusterAuth::UserPassword { user, password }
            }
            (true, None) => ClusterAuth::None,
        };
        let client_cert =
            match (optional_path(p, "fast_flush_cluster_tls_cert_file")?, optional_path(p, "fast_flush_cluster_tls_key_file")?) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => return Err(ClusterConfigError::HalfClientCert),
            };
        Ok(Some(ClusterConfig {
            servers,
            timeout: p.time("fast_flush_cluster_timeout")?,
            subject,
            node,
            peers,
            auth,
            ca_file: optional_path(p, "fast_flush_cluster_tls_CAfile")?,
            client_cert,
            relay_maps: split_braced_list(&p.get("fast_flush_cluster_relay_maps")?)
                .iter()
                .map(|spec| Table::open(spec, &p.config_dir))
                .collect::<Result<_, _>>()?,
        }))
    }

    /// Where this node relays its mail for a site that `node` asks for (a handover): the
    /// first of `fast_flush_cluster_relay_maps` with an entry for the node, `Ok(None)` when
    /// none has one. A value that is no next hop ([`valid_nexthop`]) is an error, not a
    /// route.
    pub fn relay_nexthop(&self, node: &str) -> Result<Option<String>, String> {
        for table in &self.relay_maps {
            match table.lookup(node) {
                Ok(None) => continue,
                Ok(Some(v)) if valid_nexthop(v.trim()) => return Ok(Some(v.trim().into())),
                Ok(Some(v)) => {
                    return Err(format!("fast_flush_cluster_relay_maps: {}: invalid next hop \"{}\"", table.spec(), v.escape_debug()));
                }
                Err(e) => return Err(format!("fast_flush_cluster_relay_maps: {e}")),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::config::MainCf;
    use std::path::Path;

    fn params(text: &str) -> Params {
        Params::from_parts(Path::new("/cfg"), MainCf::parse(text, Path::new("main.cf")).unwrap(), &[])
    }

    #[test]
    fn off_by_default() {
        assert!(ClusterConfig::from_params(&params("")).unwrap().is_none());
    }

    /// A secret file readable by its owner only.
    fn secret(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    #[test]
    fn read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let pw = secret(dir.path(), "pw", "s3cret\n");
        let text = format!(
            "fast_flush_cluster_servers = nats://127.0.0.1:4222, tls://10.0.0.1:4222\nfast_flush_cluster_node = mx1\n\
             fast_flush_cluster_members = mx1 mx2 mx3\nfast_flush_cluster_user = flush\nfast_flush_cluster_password_file = {}\n",
            pw.display()
        );
        let cfg = ClusterConfig::from_params(&params(&text)).unwrap().unwrap();
        assert_eq!(cfg.peers, ["mx2", "mx3"]);
        assert_eq!(cfg.timeout, Duration::from_secs(1));
        assert_eq!(cfg.subject, "postern.flush");
        assert_eq!(cfg.auth, ClusterAuth::UserPassword { user: "flush".into(), password: Secret("s3cret".into()) });
        assert!(!format!("{cfg:?}").contains("s3cret"));
        assert_eq!(cfg.relay_nexthop("mx2"), Ok(None), "no relay map: no handover");
    }

    #[test]
    fn relay_maps_name_the_nodes_next_hops() {
        let text = "fast_flush_cluster_servers = nats://127.0.0.1:4222\n\
                    fast_flush_cluster_relay_maps = inline:{ mx1=[10.0.0.1]:25, { mx3 = a b } }, inline:{ mx1=[10.0.0.9], mx2=mx2.example }\n";
        let cfg = ClusterConfig::from_params(&params(text)).unwrap().unwrap();
        assert_eq!(cfg.relay_nexthop("mx1"), Ok(Some("[10.0.0.1]:25".into())), "the first table with an entry");
        assert_eq!(cfg.relay_nexthop("MX2"), Ok(Some("mx2.example".into())));
        assert_eq!(cfg.relay_nexthop("mx4"), Ok(None));
        assert!(cfg.relay_nexthop("mx3").unwrap_err().contains("invalid next hop"));
        let e = ClusterConfig::from_params(&params(
            "fast_flush_cluster_servers = nats://127.0.0.1:4222\nfast_flush_cluster_relay_maps = nosuch:x\n",
        ));
        assert!(e.unwrap_err().to_string().starts_with("fast_flush_cluster_relay_maps: "));
    }

    #[test]
    fn nkey_seeds_are_checked_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let user = nkeys::KeyPair::new_user();
        let seed = user.seed().unwrap();
        let cfg = |path: &Path| {
            let text = format!("fast_flush_cluster_servers = nats://127.0.0.1:4222\nfast_flush_cluster_nkey_file = {}\n", path.display());
            ClusterConfig::from_params(&params(&text)).map(|c| c.unwrap().auth)
        };
        let good = secret(dir.path(), "user.nk", &format!("{seed}\n"));
        assert_eq!(cfg(&good).unwrap(), ClusterAuth::Nkey(Secret(seed.clone())));

        // The group may read it (root:postfix 0640); other users may not.
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(cfg(&good).is_ok());
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = cfg(&good).unwrap_err().to_string();
        assert_eq!(e, format!("fast_flush_cluster_nkey_file: {} is accessible by other users (mode 0644); chmod o-rwx it", good.display()));
        assert!(!e.contains(&seed));

        let cases = [
            (user.public_key(), "Bad seed length"),
            (format!("{}{}{}", &seed[..10], if &seed[10..11] == "A" { "B" } else { "A" }, &seed[11..]), "Checksum"),
            (nkeys::KeyPair::new_account().seed().unwrap(), "the seed of a Account key"),
        ];
        for (text, want) in cases {
            let bad = secret(dir.path(), "bad.nk", &text);
            let e = cfg(&bad).unwrap_err().to_string();
            assert!(e.starts_with("fast_flush_cluster_nkey_file: ") && e.contains("does not hold an nkey user seed"), "{e}");
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn bad_settings_are_named() {
        let base = "fast_flush_cluster_servers = nats://127.0.0.1:4222\n";
        let cases = [
            ("fast_flush_cluster_servers = http://x:1\n", "fast_flush_cluster_servers"),
            (&format!("{base}fast_flush_cluster_subject = a.*.b\n"), "fast_flush_cluster_subject"),
            (&format!("{base}fast_flush_cluster_subject = a..b\n"), "fast_flush_cluster_subject"),
            (&format!("{base}fast_flush_cluster_nkey_file = /nonexistent/seed\n"), "fast_flush_cluster_nkey_file"),
            (&format!("{base}fast_flush_cluster_user = u\nfast_flush_cluster_nkey_file = /x\n"), "both set"),
            (&format!("{base}fast_flush_cluster_tls_cert_file = /c.pem\n"), "go together"),
            (&format!("{base}fast_flush_cluster_timeout = 1x\n"), "fast_flush_cluster_timeout"),
        ];
        for (text, want) in cases {
            let e = ClusterConfig::from_params(&params(text)).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
