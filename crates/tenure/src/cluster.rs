//! `tenure cluster …`: operator commands against a running cluster.
//!
//! Every command takes `--endpoints host:port,…` (or `TENURE_ENDPOINTS`),
//! defaulting to the local cluster that `scripts/cluster-up` starts, and
//! `--token` (or `TENURE_TOKEN`) for a cluster with an auth file, and
//! `--tls-ca` (with `--tls-cert` and `--tls-key` for a client certificate)
//! for a cluster that serves TLS. Calls go
//! through tenure-client, which follows the leader.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use tenure_client::{Client, ClientConfig, LimitChanges, NodeStatus, TableConfig, TlsConfig};

use crate::error::Error;

/// The local cluster's client addresses (`scripts/cluster-up`).
pub const LOCAL_ENDPOINTS: &str = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";

/// Where to reach the cluster, and how.
#[derive(Debug, Args)]
pub struct Endpoints {
    /// Cluster endpoints, host:port, comma-separated.
    #[arg(long, env = "TENURE_ENDPOINTS", default_value = LOCAL_ENDPOINTS, global = true)]
    pub(crate) endpoints: String,
    /// The CA that signs the nodes' certificates (PEM): connect over TLS.
    #[arg(long, env = "TENURE_TLS_CA", global = true)]
    tls_ca: Option<PathBuf>,
    /// Your client certificate (PEM), for a cluster that takes them
    /// (`--client-ca`); with --tls-key.
    #[arg(long, env = "TENURE_TLS_CERT", global = true)]
    tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, env = "TENURE_TLS_KEY", global = true)]
    tls_key: Option<PathBuf>,
}

impl Endpoints {
    /// The endpoints, one per entry.
    pub(crate) fn list(&self) -> Vec<String> {
        self.endpoints
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// TLS, when --tls-ca is given.
    pub(crate) fn tls(&self) -> Result<Option<TlsConfig>, Error> {
        match &self.tls_ca {
            Some(ca) => Ok(Some(TlsConfig::from_files(
                ca,
                self.tls_cert.as_deref(),
                self.tls_key.as_deref(),
            )?)),
            None if self.tls_cert.is_some() || self.tls_key.is_some() => Err(Error::Cluster(
                "--tls-cert and --tls-key need --tls-ca (the CA of the nodes' certificates)".into(),
            )),
            None => Ok(None),
        }
    }
}

/// `tenure cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    endpoints: Endpoints,
    /// Your bearer token (an admin's, for changes), for a cluster with an auth file.
    #[arg(long, env = "TENURE_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Members, leader, term, commit and applied index of every node.
    Status {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add a node: it joins as a learner, catches up, then becomes a voter.
    Add {
        /// The new node's id.
        #[arg(long)]
        id: u64,
        /// The address the other nodes reach it at.
        #[arg(long)]
        addr: String,
    },
    /// Remove a node from the cluster.
    Remove {
        /// The node's id.
        #[arg(long)]
        id: u64,
    },
    /// Hand leadership to another voter (it must have caught up).
    TransferLeader {
        /// The voter that should lead.
        #[arg(long)]
        to: u64,
    },
    /// Write the leader's lease table snapshot to a file (a backup).
    Export {
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Back the whole table up as JSON lines (admin, every tenant): read on
    /// the leader from one state, streamed, checked (trailer, checksum,
    /// digest) before the file takes its name. `-` writes to stdout.
    Backup {
        /// The file to write (`-`: stdout).
        #[arg(long)]
        out: PathBuf,
    },
    /// Change the cluster's limits (admin): the ones given replace those in
    /// force, the others stay; prints the limits now in force.
    Configure(Box<ConfigureArgs>),
    /// Restore a backup (`cluster backup`'s JSON lines) through the leader:
    /// the file is checked whole first (a damaged one is refused with the
    /// line at fault), then staged through the log and put in place at
    /// once. Leases keep their ids, owners, tokens and versions; waiters are
    /// dropped; holders get their full TTL from the commit. Every later
    /// grant's fencing token is above every token the backup knew plus
    /// `--token-gap`. Restoring the same file again changes nothing.
    Restore {
        /// The backup (`-`: stdin).
        #[arg(long = "in")]
        input: PathBuf,
        /// Merge into the locks the cluster holds (same cluster only); for
        /// a lock in both, the higher token wins.
        #[arg(long)]
        merge: bool,
        /// How far above every token of the backup the next grants start:
        /// room for the grants the old cluster made after the backup.
        #[arg(long, default_value_t = tenure_core::restore::DEFAULT_TOKEN_GAP)]
        token_gap: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup into a cluster whose table never held a lock.
    Import {
        /// The file `export` wrote.
        #[arg(long = "in")]
        input: PathBuf,
    },
}

/// `tenure cluster configure`: the limits to change.
#[derive(Debug, Args)]
pub struct ConfigureArgs {
    /// Shortest TTL a lease may ask for, ms.
    #[arg(long)]
    ttl_min_ms: Option<u64>,
    /// Longest TTL a lease may ask for, ms.
    #[arg(long)]
    ttl_max_ms: Option<u64>,
    /// Longest wait a waiting acquire may ask for, ms.
    #[arg(long)]
    max_wait_timeout_ms: Option<u64>,
    /// Lock-delay after an expiry, ms (0: none).
    #[arg(long)]
    lock_delay_ms: Option<u64>,
    /// Bound on each lock's waiting queue.
    #[arg(long)]
    max_waiters_per_lock: Option<u32>,
    /// Bound on lock records per tenant.
    #[arg(long)]
    max_locks_per_tenant: Option<u64>,
    /// Bound on tenants.
    #[arg(long)]
    max_tenants: Option<u64>,
    /// Log entries after which a remembered request_id is forgotten.
    #[arg(long)]
    request_retention_entries: Option<u64>,
    /// Request ids remembered at most.
    #[arg(long)]
    request_retention_count: Option<u64>,
    /// Log entries after which an ended lease is forgotten.
    #[arg(long)]
    lease_retention_entries: Option<u64>,
    /// Ended leases remembered at most.
    #[arg(long)]
    lease_retention_count: Option<u64>,
    /// JSON instead of text.
    #[arg(long)]
    json: bool,
}

impl ConfigureArgs {
    fn changes(&self) -> LimitChanges {
        LimitChanges {
            ttl_min_ms: self.ttl_min_ms,
            ttl_max_ms: self.ttl_max_ms,
            max_wait_timeout_ms: self.max_wait_timeout_ms,
            lock_delay_ms: self.lock_delay_ms,
            max_waiters_per_lock: self.max_waiters_per_lock,
            max_locks_per_tenant: self.max_locks_per_tenant,
            max_tenants: self.max_tenants,
            request_retention_entries: self.request_retention_entries,
            request_retention_count: self.request_retention_count,
            lease_retention_entries: self.lease_retention_entries,
            lease_retention_count: self.lease_retention_count,
        }
    }
}

/// The limits as JSON, under the names of the flags and config keys.
fn limits_json(l: &TableConfig) -> serde_json::Value {
    serde_json::json!({
        "ttl_min_ms": l.min_ttl_ms, "ttl_max_ms": l.max_ttl_ms, "max_wait_timeout_ms": l.max_wait_timeout_ms,
        "lock_delay_ms": l.lock_delay_ms, "max_waiters_per_lock": l.max_waiters_per_lock,
        "max_locks_per_tenant": l.max_locks_per_tenant, "max_tenants": l.max_tenants,
        "request_retention_entries": l.request_retention_entries, "request_retention_count": l.request_retention_count,
        "lease_retention_entries": l.lease_retention_entries, "lease_retention_count": l.lease_retention_count,
    })
}

/// Writes a backup to `path`: streamed into `path.partial`, synced, read
/// back whole (trailer, checksum, rebuilt digest), then renamed into place
/// and the directory synced; a failed backup leaves no file by that name.
/// `path` with `.partial` appended: where a file is written before it
/// takes its name.
pub(crate) fn partial_path(path: &std::path::Path) -> PathBuf {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    PathBuf::from(partial)
}

/// Gives the written and synced `partial` its name `path`, then syncs the
/// directory: the file is whole under its name, or absent.
pub(crate) fn rename_synced(
    partial: &std::path::Path,
    path: &std::path::Path,
) -> Result<(), Error> {
    std::fs::rename(partial, path)
        .map_err(|e| Error::Cluster(format!("{}: {e}", path.display())))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::Cluster(format!("{}: {e}", dir.display())))
}

async fn backup_to_file(client: &Client, path: &std::path::Path) -> Result<String, Error> {
    let partial = partial_path(path);
    let file = std::fs::File::create(&partial)
        .map_err(|e| Error::Cluster(format!("{}: {e}", partial.display())))?;
    let mut writer = std::io::BufWriter::new(file);
    let written = client.backup(&mut writer).await;
    let synced = writer
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|mut f| f.flush().and_then(|()| f.sync_all()));
    let checked = match (written, synced) {
        (Ok(w), Ok(())) => std::fs::File::open(&partial)
            .map_err(|e| Error::Cluster(e.to_string()))
            .and_then(|f| {
                tenure_core::backup::read(std::io::BufReader::new(f))
                    .map(|b| (w, b))
                    .map_err(|e| Error::Cluster(format!("the backup read back is damaged: {e}")))
            }),
        (Err(e), _) => Err(e.into()),
        (_, Err(e)) => Err(Error::Cluster(format!("{}: {e}", partial.display()))),
    };
    let (w, b) = match checked {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    rename_synced(&partial, path)?;
    let h = &b.header;
    Ok(format!(
        "backup: {} locks, {} leases ({} active, {} waiting), {} requests; node {} term {} applied index {}; digest {}; sha256 {}; {} bytes to {}",
        h.counts.locks,
        h.counts.leases,
        h.counts.active,
        h.counts.waiting,
        h.counts.requests,
        h.source.source_node,
        h.source.leader_term,
        h.source.applied_index,
        h.table_digest,
        w.sha256,
        w.bytes,
        path.display()
    ))
}

/// The limits on one line.
fn limits_line(l: &TableConfig) -> String {
    format!(
        "limits: ttl {}..={} ms, wait <= {} ms, lock-delay {} ms, waiters/lock {}, locks/tenant {}, tenants {}, requests remembered {} entries / {}",
        l.min_ttl_ms,
        l.max_ttl_ms,
        l.max_wait_timeout_ms,
        l.lock_delay_ms,
        l.max_waiters_per_lock,
        l.max_locks_per_tenant,
        l.max_tenants,
        l.request_retention_entries,
        l.request_retention_count
    )
}

/// A client of the cluster at `endpoints` (comma-separated), acting in
/// `tenant` as `owner`, or as the principal `token` names; `admin`: an
/// admin command, which claims the role on a development cluster
/// (`x-role: ADMIN`; a cluster with an auth file takes roles from the
/// token).
pub(crate) async fn connect(
    endpoints: &Endpoints,
    tenant: &str,
    owner: &str,
    token: Option<&str>,
    admin: bool,
) -> Result<Client, Error> {
    let mut config = ClientConfig::new(endpoints.list(), tenant, owner);
    config.token = token.map(str::to_owned);
    config.admin = admin;
    config.tls = endpoints.tls()?;
    Ok(Client::connect(config).await?)
}

fn status_json(s: &NodeStatus) -> serde_json::Value {
    serde_json::json!({
        "node_id": s.node_id, "role": s.role.as_str(), "leader_id": s.leader_id.unwrap_or(0),
        "leader_address": s.leader_address.as_deref().unwrap_or_default(), "term": s.term, "commit_index": s.commit_index,
        "applied_index": s.applied_index, "table_digest": s.table_digest,
        "audit_sequence": s.audit_sequence, "locks": s.locks, "active_leases": s.active_leases,
        "waiting_leases": s.waiting_leases, "version": s.version, "disk_flushes": s.disk_flushes,
        "cluster_id": s.cluster_id.as_deref().unwrap_or_default(), "token_floor": s.token_floor,
        "audit_retained_from": s.audit_retained_from,
        "members": s.members.iter().map(|m| serde_json::json!({
            "node_id": m.node_id, "address": m.address, "voter": m.voter })).collect::<Vec<_>>(),
    })
}

/// Runs a cluster command, printing to `out`.
pub fn run(args: ClusterArgs, out: &mut impl Write) -> Result<(), Error> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let client = connect(
            &args.endpoints,
            "default",
            "admin",
            args.token.as_deref(),
            true,
        )
        .await?;
        match args.command {
            ClusterCommand::Status { json } => {
                let status = client.status().await?;
                let mut rows = Vec::new();
                for m in &status.members {
                    rows.push((m.clone(), client.status_of(&m.address).await));
                }
                if json {
                    let nodes: Vec<serde_json::Value> = rows
                        .iter()
                        .map(|(m, s)| match s {
                            Ok(s) => status_json(s),
                            Err(e) => serde_json::json!({"node_id": m.node_id, "address": m.address, "error": e.to_string()}),
                        })
                        .collect();
                    writeln!(out, "{}", serde_json::json!({
                        "leader_id": status.leader_id.unwrap_or(0), "nodes": nodes,
                        "limits": status.limits.as_ref().map(limits_json),
                    }))?;
                } else {
                    writeln!(out, "{:<5} {:<22} {:<9} {:<6} {:>6} {:>10} {:>10}  digest", "node", "address", "role", "voter", "term", "commit", "applied")?;
                    for (m, s) in rows {
                        match s {
                            Ok(s) => writeln!(
                                out,
                                "{:<5} {:<22} {:<9} {:<6} {:>6} {:>10} {:>10}  {}",
                                m.node_id, m.address, s.role.as_str(), m.voter, s.term, s.commit_index, s.applied_index,
                                &s.table_digest[..s.table_digest.len().min(16)]
                            )?,
                            Err(e) => writeln!(out, "{:<5} {:<22} unreachable: {e}", m.node_id, m.address)?,
                        }
                    }
                    writeln!(out, "leader: {} ({})", status.leader_id.unwrap_or(0), status.leader_address.as_deref().unwrap_or_default())?;
                    if let Some(l) = &status.limits {
                        writeln!(out, "{}", limits_line(l))?;
                    }
                }
            }
            ClusterCommand::Configure(args) => {
                let changes = args.changes();
                if changes == LimitChanges::default() {
                    return Err(Error::Cluster(
                        "give at least one limit to change (see --help)".into(),
                    ));
                }
                let limits = client.configure(&changes).await?;
                if args.json {
                    writeln!(out, "{}", limits_json(&limits))?;
                } else {
                    writeln!(out, "{}", limits_line(&limits))?;
                }
            }
            ClusterCommand::Add { id, addr } => {
                let r = client.add_node(id, &addr).await?;
                writeln!(out, "node {id} added at log index {}", r.log_index)?;
            }
            ClusterCommand::Remove { id } => {
                let r = client.remove_node(id).await?;
                writeln!(out, "node {id} removed at log index {}", r.log_index)?;
            }
            ClusterCommand::TransferLeader { to } => {
                let r = client.transfer_leader(to).await?;
                writeln!(out, "node {} leads (term {})", r.leader_id, r.term)?;
            }
            ClusterCommand::Backup { out: path } => {
                if path.as_os_str() == "-" {
                    let mut stdout = std::io::BufWriter::new(std::io::stdout());
                    let w = client.backup(&mut stdout).await?;
                    eprintln!("backup: {} lines, {} bytes, sha256 {}", w.lines, w.bytes, w.sha256);
                } else {
                    let summary = backup_to_file(&client, &path).await?;
                    writeln!(out, "{summary}")?;
                }
            }
            ClusterCommand::Export { out: path } => {
                let snapshot = client.export().await?;
                std::fs::write(&path, &snapshot.bytes)?;
                writeln!(out, "wrote {} bytes (log index {}) to {}", snapshot.bytes.len(), snapshot.meta.index, path.display())?;
            }
            ClusterCommand::Restore { input, merge, token_gap, json } => {
                let bytes = if input.as_os_str() == "-" {
                    let mut bytes = Vec::new();
                    std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)?;
                    bytes
                } else {
                    std::fs::read(&input)?
                };
                // Refused here, with the line at fault, before any call.
                let checked = tenure_core::backup::read(&bytes[..])
                    .map_err(|e| Error::Cluster(format!("{}: {e}", input.display())))?;
                drop(checked);
                let options = tenure_client::RestoreOptions { merge, token_gap: Some(token_gap) };
                let done = client.restore(&bytes, options).await?;
                let r = &done.report;
                if json {
                    writeln!(out, "{}", serde_json::json!({
                        "already_restored": r.already, "index": r.index, "audit_sequence": r.audit_seq,
                        "token_floor": r.token_floor, "token_gap": r.token_gap, "locks": r.locks,
                        "active_leases": r.active, "dropped_waiters": r.dropped_waiters,
                        "skipped_leases": r.skipped, "requests": r.requests, "ended_leases": r.ended,
                        "merged": r.merged, "backup_sha256": done.backup_sha256,
                        "table_digest": done.table_digest, "cluster_id": done.cluster_id,
                        "bytes_received": done.bytes_received,
                    }))?;
                } else if r.already {
                    writeln!(out, "already restored at index {}: nothing changed (backup {})", r.index, done.backup_sha256)?;
                } else {
                    writeln!(out, "restored backup {} at index {}{}", done.backup_sha256, r.index, if r.merged { " (merged)" } else { "" })?;
                    writeln!(out, "locks: {}; active leases: {} (each expires a full TTL from now unless renewed); waiters dropped: {}; skipped: {}; requests: {}; ended leases: {}",
                        r.locks, r.active, r.dropped_waiters, r.skipped, r.requests, r.ended)?;
                    writeln!(out, "token floor: {} (gap {}): every new fencing token is above it", r.token_floor, r.token_gap)?;
                    writeln!(out, "cluster {}; table digest {}", done.cluster_id, done.table_digest)?;
                }
            }
            ClusterCommand::Import { input } => {
                let bytes = std::fs::read(&input)?;
                let r = client.import(&bytes).await?;
                writeln!(out, "imported {} bytes at log index {}; table digest {}", r.bytes_received, r.index, r.table_digest)?;
            }
        }
        Ok(())
    })
}
