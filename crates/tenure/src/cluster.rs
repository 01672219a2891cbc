//! `tenure cluster …`: operator commands against a running cluster.
//!
//! Every command takes `--endpoints host:port,…` (or `TENURE_ENDPOINTS`),
//! defaulting to the local cluster that `scripts/cluster-up` starts. The
//! first endpoint that answers is used; writes are forwarded to the leader by
//! the node that receives them.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use tenure_proto::v1;
use tenure_proto::v1::admin_client::AdminClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::Error;

/// The local cluster's client addresses (`scripts/cluster-up`).
pub const LOCAL_ENDPOINTS: &str = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";

/// Where to reach the cluster.
#[derive(Debug, Args)]
pub struct Endpoints {
    /// Cluster endpoints, host:port, comma-separated.
    #[arg(long, env = "TENURE_ENDPOINTS", default_value = LOCAL_ENDPOINTS, global = true)]
    pub(crate) endpoints: String,
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
    /// Restore a backup into a cluster whose table never held a lock.
    Import {
        /// The file `export` wrote.
        #[arg(long = "in")]
        input: PathBuf,
    },
}

pub(crate) fn channel(addr: &str) -> Result<Channel, Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| Error::Cluster(format!("{addr}: {e}")))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .connect_lazy())
}

/// The first endpoint that answers a status call, with its answer.
/// `body` as a request carrying `token`, if any.
fn authed<T>(token: Option<&str>, body: T) -> Result<tonic::Request<T>, Error> {
    let mut r = tonic::Request::new(body);
    if let Some(t) = token {
        let value = format!("Bearer {t}")
            .parse()
            .map_err(|_| Error::Cluster("the token is not valid metadata".into()))?;
        r.metadata_mut().insert("authorization", value);
    }
    Ok(r)
}

async fn first(
    endpoints: &str,
    token: Option<&str>,
) -> Result<(String, v1::StatusResponse), Error> {
    let mut last = String::from("no endpoints given");
    for addr in endpoints
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        match AdminClient::new(channel(addr)?)
            .status(authed(token, v1::StatusRequest {})?)
            .await
        {
            Ok(s) => return Ok((addr.to_owned(), s.into_inner())),
            Err(e) => last = format!("{addr}: {}", e.message()),
        }
    }
    Err(Error::Cluster(format!("no endpoint answered ({last})")))
}

fn role(r: i32) -> &'static str {
    match v1::NodeRole::try_from(r) {
        Ok(v1::NodeRole::Leader) => "leader",
        Ok(v1::NodeRole::Follower) => "follower",
        Ok(v1::NodeRole::Candidate) => "candidate",
        Ok(v1::NodeRole::Learner) => "learner",
        _ => "unknown",
    }
}

fn status_json(s: &v1::StatusResponse) -> serde_json::Value {
    serde_json::json!({
        "node_id": s.node_id, "role": role(s.role), "leader_id": s.leader_id,
        "leader_address": s.leader_address, "term": s.term, "commit_index": s.commit_index,
        "applied_index": s.applied_index, "table_digest": s.table_digest,
        "audit_sequence": s.audit_sequence, "locks": s.locks, "active_leases": s.active_leases,
        "waiting_leases": s.waiting_leases, "version": s.version, "disk_flushes": s.disk_flushes,
        "members": s.members.iter().map(|m| serde_json::json!({
            "node_id": m.node_id, "address": m.address, "voter": m.voter })).collect::<Vec<_>>(),
    })
}

pub(crate) fn admin_error(e: tonic::Status) -> Error {
    let reason = tenure_proto::convert::reason_of(&e).map_or("UNKNOWN", |r| r.as_str());
    Error::Cluster(format!("{reason}: {}", e.message()))
}

/// Runs a cluster command, printing to `out`.
pub fn run(args: ClusterArgs, out: &mut impl Write) -> Result<(), Error> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let token = args.token.as_deref();
        let (addr, status) = first(&args.endpoints.endpoints, token).await?;
        let mut admin = AdminClient::new(channel(&addr)?).max_decoding_message_size(64 << 20);
        match args.command {
            ClusterCommand::Status { json } => {
                let mut rows = Vec::new();
                for m in &status.members {
                    let s = AdminClient::new(channel(&m.address)?).status(authed(token, v1::StatusRequest {})?).await;
                    rows.push((m.clone(), s.map(tonic::Response::into_inner)));
                }
                if json {
                    let nodes: Vec<serde_json::Value> = rows
                        .iter()
                        .map(|(m, s)| match s {
                            Ok(s) => status_json(s),
                            Err(e) => serde_json::json!({"node_id": m.node_id, "address": m.address, "error": e.message()}),
                        })
                        .collect();
                    writeln!(out, "{}", serde_json::json!({ "leader_id": status.leader_id, "nodes": nodes }))?;
                } else {
                    writeln!(out, "{:<5} {:<22} {:<9} {:<6} {:>6} {:>10} {:>10}  digest", "node", "address", "role", "voter", "term", "commit", "applied")?;
                    for (m, s) in rows {
                        match s {
                            Ok(s) => writeln!(
                                out,
                                "{:<5} {:<22} {:<9} {:<6} {:>6} {:>10} {:>10}  {}",
                                m.node_id, m.address, role(s.role), m.voter, s.term, s.commit_index, s.applied_index,
                                &s.table_digest[..s.table_digest.len().min(16)]
                            )?,
                            Err(e) => writeln!(out, "{:<5} {:<22} unreachable: {}", m.node_id, m.address, e.message())?,
                        }
                    }
                    writeln!(out, "leader: {} ({})", status.leader_id, status.leader_address)?;
                }
            }
            ClusterCommand::Add { id, addr } => {
                let r = admin.add_node(authed(token, v1::AddNodeRequest { node_id: id, address: addr })?).await.map_err(admin_error)?;
                writeln!(out, "node {id} added at log index {}", r.get_ref().log_index)?;
            }
            ClusterCommand::Remove { id } => {
                let r = admin.remove_node(authed(token, v1::RemoveNodeRequest { node_id: id })?).await.map_err(admin_error)?;
                writeln!(out, "node {id} removed at log index {}", r.get_ref().log_index)?;
            }
            ClusterCommand::TransferLeader { to } => {
                let r = admin.transfer_leader(authed(token, v1::TransferLeaderRequest { node_id: to })?).await.map_err(admin_error)?;
                writeln!(out, "node {} leads (term {})", r.get_ref().leader_id, r.get_ref().term)?;
            }
            ClusterCommand::Export { out: path } => {
                let mut stream = admin.export_snapshot(authed(token, v1::ExportSnapshotRequest {})?).await.map_err(admin_error)?.into_inner();
                let mut bytes = Vec::new();
                let mut meta = None;
                while let Some(chunk) = stream.message().await.map_err(admin_error)? {
                    meta = meta.or(chunk.meta);
                    bytes.extend_from_slice(&chunk.data);
                }
                std::fs::write(&path, &bytes)?;
                let index = meta.map_or(0, |m| m.index);
                writeln!(out, "wrote {} bytes (log index {index}) to {}", bytes.len(), path.display())?;
            }
            ClusterCommand::Import { input } => {
                let bytes = std::fs::read(&input)?;
                let leader = if status.leader_address.is_empty() { addr } else { status.leader_address.clone() };
                let mut admin = AdminClient::new(channel(&leader)?);
                let chunk = v1::SnapshotChunk { data: bytes, offset: 0, last: true, meta: None, sha256: String::new() };
                let r = admin.import_snapshot(authed(token, tokio_stream::iter([chunk]))?).await.map_err(admin_error)?;
                let r = r.into_inner();
                writeln!(out, "imported {} bytes at log index {}; table digest {}", r.bytes_received, r.index, r.table_digest)?;
            }
        }
        Ok(())
    })
}
