//! A node's configuration, layered: built-in defaults, then a TOML file,
//! then `TENURE_*` environment variables, then command-line flags.
//!
//! [`Settings`] is the shape of every layer (all fields optional); the
//! binary turns its flags and environment into one, reads the file into
//! another, and [`Settings::resolve`] merges them over the defaults into a
//! [`NodeConfig`], refusing what cannot work.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tenure_raft::NodeId;

use crate::error::ServerError;
use crate::tls::TlsFiles;
use tenure_core::TableConfig;

/// Whether this node founds a new cluster or joins a running one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterState {
    /// Every member of `initial_cluster` is fresh: they form the cluster
    /// together, with no manual step.
    New,
    /// The cluster runs already; this node waits to be added
    /// (`tenure cluster add`) and never initializes one.
    Existing,
}

/// One layer of settings; every field is optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// This node's id, unique in the cluster.
    pub id: Option<NodeId>,
    /// The address to listen on (`host:port`).
    pub listen: Option<String>,
    /// The address peers and clients reach this node at; defaults to `listen`.
    pub advertise: Option<String>,
    /// Where the HTTP port (`/healthz`, `/readyz`) listens (`host:port`);
    /// none: no HTTP port. Beyond loopback it needs TLS, as gRPC does.
    pub http_listen: Option<String>,
    /// Where the node keeps its data (sled).
    pub data_dir: Option<PathBuf>,
    /// `id=host:port` for every founding member.
    pub initial_cluster: Option<BTreeMap<NodeId, String>>,
    /// `new` (found with the others) or `existing` (wait to be added).
    pub initial_cluster_state: Option<ClusterState>,
    /// Leader heartbeat interval, ms.
    pub heartbeat_ms: Option<u64>,
    /// Election timeout lower bound, ms.
    pub election_min_ms: Option<u64>,
    /// Election timeout upper bound, ms.
    pub election_max_ms: Option<u64>,
    /// Build a snapshot after this many log entries since the last.
    pub snapshot_every: Option<u64>,
    /// Keep this many entries in the log behind a snapshot, for slow followers.
    pub keep_after_snapshot: Option<u64>,
    /// Principals, token hashes, roles and tenants (TOML); none: development
    /// mode, where callers are trusted by their `x-owner-id`.
    pub auth_file: Option<PathBuf>,
    /// Calls per second one caller may make to the Lock service (0: no limit).
    pub rate_limit: Option<u32>,
    /// The storage's page cache, MiB (sled's cache; it holds the log and
    /// snapshots, not the lease table, which lives in memory anyway).
    pub cache_mb: Option<u64>,
    /// The audit history kept on disk: the last this many events.
    pub audit_retention_events: Option<u64>,
    /// The audit history kept on disk: events at most this many hours old.
    pub audit_retention_hours: Option<u64>,
    /// This node's certificate (PEM): with `tls_key` and `tls_ca`, every
    /// port is served over TLS only and peers are called with mutual TLS.
    pub tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// The CA that signs node certificates (PEM).
    pub tls_ca: Option<PathBuf>,
    /// The CA that signs client certificates (PEM): a client presenting
    /// one is the principal it names. Needs TLS and an auth file.
    pub client_ca: Option<PathBuf>,
    /// The table's limits, proposed when this node founds the cluster
    /// (afterwards `tenure cluster configure` changes them): shortest TTL.
    pub ttl_min_ms: Option<u64>,
    /// Longest TTL.
    pub ttl_max_ms: Option<u64>,
    /// Longest wait of a waiting acquire.
    pub max_wait_timeout_ms: Option<u64>,
    /// Lock-delay after an expiry (0: none).
    pub lock_delay_ms: Option<u64>,
    /// Bound on each lock's waiting queue.
    pub max_waiters_per_lock: Option<u32>,
    /// Bound on lock records per tenant.
    pub max_locks_per_tenant: Option<u64>,
    /// Bound on tenants.
    pub max_tenants: Option<u64>,
    /// A remembered request_id is forgotten after this many log entries.
    pub request_retention_entries: Option<u64>,
    /// At most this many request_ids are remembered.
    pub request_retention_count: Option<u64>,
}

/// The final configuration of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// This node's id.
    pub id: NodeId,
    /// The address to listen on.
    pub listen: String,
    /// The address others reach it at.
    pub advertise: String,
    /// Where the HTTP port (probes) listens, if anywhere.
    pub http_listen: Option<String>,
    /// Where its data lives.
    pub data_dir: PathBuf,
    /// The founding members (may be empty when joining).
    pub initial_cluster: BTreeMap<NodeId, String>,
    /// Found or join.
    pub initial_cluster_state: ClusterState,
    /// Heartbeat interval, ms.
    pub heartbeat_ms: u64,
    /// Election timeout bounds, ms.
    pub election_min_ms: u64,
    /// Election timeout bounds, ms.
    pub election_max_ms: u64,
    /// Snapshot policy: entries since the last snapshot.
    pub snapshot_every: u64,
    /// Entries kept behind a snapshot.
    pub keep_after_snapshot: u64,
    /// The auth file, if callers must present bearer tokens.
    pub auth_file: Option<PathBuf>,
    /// Calls per second per caller (0: no limit); beyond it RATE_LIMITED.
    pub rate_limit: u32,
    /// The storage's page cache, MiB.
    pub cache_mb: u64,
    /// How much audit history the node keeps on disk.
    pub audit_retention: tenure_raft::AuditRetention,
    /// TLS, if the node serves it.
    pub tls: Option<TlsFiles>,
    /// The limits this node proposes when it founds the cluster.
    pub table: TableConfig,
}

/// Defaults that keep a failover under about a second on a LAN.
pub const DEFAULT_HEARTBEAT_MS: u64 = 100;
/// Default lower election timeout.
pub const DEFAULT_ELECTION_MIN_MS: u64 = 300;
/// Default upper election timeout.
pub const DEFAULT_ELECTION_MAX_MS: u64 = 600;
/// Default storage page cache, MiB: the log and snapshots are read back
/// rarely (a follower catching up, a restart), so a small cache costs
/// little; sled's own default is 1 GiB.
pub const DEFAULT_CACHE_MB: u64 = 64;

impl Settings {
    /// Reads a TOML settings file.
    pub fn from_file(path: &Path) -> Result<Settings, ServerError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))
    }

    /// `self` where set, else `lower`.
    pub fn over(self, lower: Settings) -> Settings {
        Settings {
            id: self.id.or(lower.id),
            listen: self.listen.or(lower.listen),
            advertise: self.advertise.or(lower.advertise),
            http_listen: self.http_listen.or(lower.http_listen),
            data_dir: self.data_dir.or(lower.data_dir),
            initial_cluster: self.initial_cluster.or(lower.initial_cluster),
            initial_cluster_state: self.initial_cluster_state.or(lower.initial_cluster_state),
            heartbeat_ms: self.heartbeat_ms.or(lower.heartbeat_ms),
            election_min_ms: self.election_min_ms.or(lower.election_min_ms),
            election_max_ms: self.election_max_ms.or(lower.election_max_ms),
            snapshot_every: self.snapshot_every.or(lower.snapshot_every),
            keep_after_snapshot: self.keep_after_snapshot.or(lower.keep_after_snapshot),
            auth_file: self.auth_file.or(lower.auth_file),
            rate_limit: self.rate_limit.or(lower.rate_limit),
            cache_mb: self.cache_mb.or(lower.cache_mb),
            audit_retention_events: self.audit_retention_events.or(lower.audit_retention_events),
            audit_retention_hours: self.audit_retention_hours.or(lower.audit_retention_hours),
            tls_cert: self.tls_cert.or(lower.tls_cert),
            tls_key: self.tls_key.or(lower.tls_key),
            tls_ca: self.tls_ca.or(lower.tls_ca),
            client_ca: self.client_ca.or(lower.client_ca),
            ttl_min_ms: self.ttl_min_ms.or(lower.ttl_min_ms),
            ttl_max_ms: self.ttl_max_ms.or(lower.ttl_max_ms),
            max_wait_timeout_ms: self.max_wait_timeout_ms.or(lower.max_wait_timeout_ms),
            lock_delay_ms: self.lock_delay_ms.or(lower.lock_delay_ms),
            max_waiters_per_lock: self.max_waiters_per_lock.or(lower.max_waiters_per_lock),
            max_locks_per_tenant: self.max_locks_per_tenant.or(lower.max_locks_per_tenant),
            max_tenants: self.max_tenants.or(lower.max_tenants),
            request_retention_entries: self
                .request_retention_entries
                .or(lower.request_retention_entries),
            request_retention_count: self
                .request_retention_count
                .or(lower.request_retention_count),
        }
    }

    /// Fills the gaps with defaults and checks the result.
    pub fn resolve(self) -> Result<NodeConfig, ServerError> {
        let bad = |m: String| Err(ServerError::Config(m));
        let Some(id) = self.id else {
            return bad("id is required (--id, TENURE_ID or `id` in the file)".into());
        };
        let initial_cluster = self.initial_cluster.unwrap_or_default();
        let listen = match (self.listen, initial_cluster.get(&id)) {
            (Some(l), _) => l,
            (None, Some(addr)) => addr.clone(),
            (None, None) => {
                return bad(
                    "listen is required when the initial cluster does not name this node".into(),
                );
            }
        };
        let advertise = self
            .advertise
            .or_else(|| initial_cluster.get(&id).cloned())
            .unwrap_or_else(|| listen.clone());
        let state = self.initial_cluster_state.unwrap_or(ClusterState::New);
        if state == ClusterState::New && !initial_cluster.contains_key(&id) {
            return bad(format!(
                "initial cluster must name this node ({id}) to found a new cluster"
            ));
        }
        let tls = match (self.tls_cert, self.tls_key, self.tls_ca) {
            (Some(cert), Some(key), Some(ca)) => Some(TlsFiles {
                cert,
                key,
                ca,
                client_ca: self.client_ca,
            }),
            (None, None, None) => {
                if self.client_ca.is_some() {
                    return bad("client_ca (--client-ca) needs TLS: give --tls-cert, --tls-key and --tls-ca".into());
                }
                None
            }
            _ => {
                return bad(
                    "TLS needs all three of tls_cert, tls_key and tls_ca (--tls-cert, --tls-key, --tls-ca)"
                        .into(),
                );
            }
        };
        if tls.as_ref().is_some_and(|t| t.client_ca.is_some()) && self.auth_file.is_none() {
            return bad(
                "client_ca (--client-ca) needs an auth file: it gives the certificates' principals their roles and tenants"
                    .into(),
            );
        }
        let d = TableConfig::default();
        let table = TableConfig {
            min_ttl_ms: self.ttl_min_ms.unwrap_or(d.min_ttl_ms),
            max_ttl_ms: self.ttl_max_ms.unwrap_or(d.max_ttl_ms),
            max_wait_timeout_ms: self.max_wait_timeout_ms.unwrap_or(d.max_wait_timeout_ms),
            lock_delay_ms: self.lock_delay_ms.unwrap_or(d.lock_delay_ms),
            max_waiters_per_lock: self.max_waiters_per_lock.unwrap_or(d.max_waiters_per_lock),
            max_locks_per_tenant: self.max_locks_per_tenant.unwrap_or(d.max_locks_per_tenant),
            max_tenants: self.max_tenants.unwrap_or(d.max_tenants),
            request_retention_entries: self
                .request_retention_entries
                .unwrap_or(d.request_retention_entries),
            request_retention_count: self
                .request_retention_count
                .unwrap_or(d.request_retention_count),
            ..d
        };
        if let Err(e) = table.validate() {
            return bad(format!("limits: {e}"));
        }
        let config = NodeConfig {
            id,
            data_dir: self
                .data_dir
                .unwrap_or_else(|| PathBuf::from(format!(".tenure/node-{id}"))),
            listen,
            advertise,
            http_listen: self.http_listen,
            initial_cluster,
            initial_cluster_state: state,
            heartbeat_ms: self.heartbeat_ms.unwrap_or(DEFAULT_HEARTBEAT_MS),
            election_min_ms: self.election_min_ms.unwrap_or(DEFAULT_ELECTION_MIN_MS),
            election_max_ms: self.election_max_ms.unwrap_or(DEFAULT_ELECTION_MAX_MS),
            snapshot_every: self.snapshot_every.unwrap_or(10_000),
            keep_after_snapshot: self.keep_after_snapshot.unwrap_or(1_000),
            auth_file: self.auth_file,
            rate_limit: self.rate_limit.unwrap_or(10_000),
            cache_mb: self.cache_mb.unwrap_or(DEFAULT_CACHE_MB),
            audit_retention: {
                let d = tenure_raft::AuditRetention::default();
                tenure_raft::AuditRetention {
                    max_events: self.audit_retention_events.unwrap_or(d.max_events),
                    max_age_ms: self
                        .audit_retention_hours
                        .map_or(d.max_age_ms, |h| h.saturating_mul(3_600_000)),
                }
            },
            tls,
            table,
        };
        if config.heartbeat_ms == 0
            || config.election_min_ms / 2 <= config.heartbeat_ms
            || config.election_max_ms <= config.election_min_ms
        {
            return bad(
                "timing must satisfy 0 < heartbeat_ms < election_min_ms / 2 and election_min_ms < election_max_ms"
                    .into(),
            );
        }
        if config.cache_mb == 0 {
            return bad("cache_mb must be at least 1".into());
        }
        if config.audit_retention.max_events == 0 || config.audit_retention.max_age_ms == 0 {
            return bad(
                "audit_retention_events and audit_retention_hours must be at least 1".into(),
            );
        }
        if config.snapshot_every == 0 {
            return bad("snapshot_every must be at least 1".into());
        }
        Ok(config)
    }
}

/// Parses `1=host:port,2=host:port`.
pub fn parse_members(text: &str) -> Result<BTreeMap<NodeId, String>, String> {
    let mut members = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not id=host:port"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|e| format!("node id {id:?}: {e}"))?;
        if addr.trim().is_empty() || members.insert(id, addr.trim().to_owned()).is_some() {
            return Err(format!("node {id} is empty or listed twice"));
        }
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_the_rest() {
        let file: Settings = toml::from_str(
            "id = 2\nlisten = \"127.0.0.1:9\"\nheartbeat_ms = 50\n[initial_cluster]\n1 = \"a:1\"\n2 = \"b:2\"\n",
        )
        .unwrap();
        let flags = Settings {
            listen: Some("0.0.0.0:7002".into()),
            ..Settings::default()
        };
        let c = flags.over(file).resolve().unwrap();
        assert_eq!(
            (c.id, c.listen.as_str(), c.advertise.as_str()),
            (2, "0.0.0.0:7002", "b:2")
        );
        assert_eq!(
            (c.heartbeat_ms, c.election_min_ms),
            (50, DEFAULT_ELECTION_MIN_MS)
        );
    }

    #[test]
    fn tn_cfg_001_limits_resolve_over_the_defaults_and_unworkable_ones_are_refused() {
        let base = || Settings {
            id: Some(1),
            initial_cluster: Some(parse_members("1=a:1").unwrap()),
            ..Settings::default()
        };
        let c = Settings {
            ttl_min_ms: Some(1_000),
            lock_delay_ms: Some(2_000),
            ..base()
        }
        .resolve()
        .unwrap();
        assert_eq!(
            (
                c.table.min_ttl_ms,
                c.table.lock_delay_ms,
                c.table.max_ttl_ms
            ),
            (1_000, 2_000, TableConfig::default().max_ttl_ms)
        );
        assert_eq!(base().resolve().unwrap().table, TableConfig::default());
        for bad in [
            Settings {
                ttl_min_ms: Some(5_000),
                ttl_max_ms: Some(1_000),
                ..base()
            },
            Settings {
                ttl_min_ms: Some(0),
                ..base()
            },
            Settings {
                max_waiters_per_lock: Some(0),
                ..base()
            },
        ] {
            let e = bad.resolve().expect_err("refused");
            assert!(e.to_string().contains("limits"), "{e}");
        }
        let file: Settings = toml::from_str("ttl_min_ms = 1000\nlock_delay_ms = 500\n").unwrap();
        assert_eq!(file.lock_delay_ms, Some(500));
    }

    #[test]
    fn unworkable_settings_are_refused() {
        assert!(Settings::default().resolve().is_err());
        let members = parse_members("1=a:1,2=b:2").unwrap();
        let founding_without_self = Settings {
            id: Some(3),
            listen: Some("c:3".into()),
            initial_cluster: Some(members),
            ..Settings::default()
        };
        assert!(founding_without_self.resolve().is_err());
        assert!(parse_members("1=a:1,1=b:2").is_err());
        assert!(parse_members("x=a:1").is_err());
        assert!(toml::from_str::<Settings>("colour = 1").is_err());
    }
}
