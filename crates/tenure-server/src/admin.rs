//! The `Admin` service: cluster status, membership, force-release, and
//! snapshot export and import.
//!
//! Status and export are answered by the node asked (the client asks the
//! leader). Writes (membership, force-release) are routed like the Lock
//! service's, by the same [`Router`]: served by the leader in office,
//! forwarded once by any other node; an import stream must reach the
//! leader itself. Each handler routes, then identifies the caller (the
//! admin role), then writes; errors become statuses in one place.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;

use openraft::ChangeMembers;
use openraft::{BasicNode, ServerState};
use sha2::{Digest, Sha256};
use tenure_core::restore::{DEFAULT_TOKEN_GAP, MAX_RESTORE_BYTES};
use tenure_core::{
    Command, Import, Reason, RestoreAbort, RestoreBegin, RestoreChunk, RestoreCommit, RestoreReport,
};
use tenure_proto::convert;
use tenure_proto::v1;
use tenure_proto::v1::admin_client::AdminClient;
use tenure_raft::{Connector, NodeId, Raft, TableReader};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::access::Access;
use crate::clock::{NodeClock, rfc3339};
use crate::errors::{ServeError, forwarded};
use crate::leases::LeaseTimers;
use crate::router::{Routed, Router};
use crate::writer::Writer;

/// Chunks of an exported snapshot.
const CHUNK: usize = 1 << 20;
/// The largest snapshot an import accepts: it travels as one log entry.
pub const MAX_IMPORT_BYTES: usize = 48 << 20;

/// The largest backup chunk a node accepts when it forwards a backup (one
/// chunk is about 256 KiB of whole lines; one line is at most 1 MiB).
pub const MAX_BACKUP_CHUNK: usize = 4 << 20;

/// The Admin service of one node.
#[derive(Clone)]
pub struct AdminService<C: Connector> {
    id: NodeId,
    raft: Raft,
    router: Router<C>,
    writer: Writer,
    access: Access,
    table: TableReader,
    connector: C,
    /// The election timeout's upper bound: the lease a transfer waits out.
    lease: std::time::Duration,
    /// The disk's flush count.
    flushes: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// The leader's deadlines, for a backup's remaining TTLs.
    timers: LeaseTimers,
    /// This node's clocks, for a backup's export time.
    clock: NodeClock,
    /// Held while this node runs a restore.
    restoring: Arc<tokio::sync::Mutex<()>>,
}

type Chunks = Pin<Box<dyn Stream<Item = Result<v1::SnapshotChunk, Status>> + Send>>;
type BackupChunks = Pin<Box<dyn Stream<Item = Result<v1::BackupChunk, Status>> + Send>>;

/// A backup chunk holds whole lines, about this many bytes.
const BACKUP_CHUNK: usize = 256 << 10;

/// A restore goes through the log in entries of whole lines, about this
/// many bytes each.
const RESTORE_CHUNK: usize = 256 << 10;

fn invalid(message: impl Into<String>) -> ServeError {
    ServeError::refused(Reason::InvalidRequest, message)
}

impl<C: Connector> AdminService<C> {
    /// The service of node `id`: writes go through `router` to the leader
    /// in office and through `writer` into the log; `lease` is the election
    /// timeout's upper bound, which a leadership transfer waits out.
    // One argument per collaborator the node wires in.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: NodeId,
        raft: Raft,
        router: Router<C>,
        writer: Writer,
        access: Access,
        table: TableReader,
        connector: C,
        lease: std::time::Duration,
        timers: LeaseTimers,
        clock: NodeClock,
    ) -> AdminService<C> {
        AdminService {
            id,
            raft,
            router,
            writer,
            access,
            table,
            connector,
            lease,
            flushes: Arc::new(|| 0),
            timers,
            clock,
            restoring: Arc::default(),
        }
    }

    /// Reports `flushes()` as the disk's flush count in `Status`.
    pub fn with_flush_counter(
        mut self,
        flushes: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> AdminService<C> {
        self.flushes = Arc::new(flushes);
        self
    }

    fn members(&self) -> Vec<v1::Member> {
        let m = self.raft.metrics().borrow().clone();
        let voters: BTreeSet<NodeId> = m.membership_config.voter_ids().collect();
        m.membership_config
            .nodes()
            .map(|(id, node)| v1::Member {
                node_id: *id,
                address: node.addr.clone(),
                voter: voters.contains(id),
            })
            .collect()
    }

    /// Commits a membership change and answers with the members after it.
    async fn change(
        &self,
        change: ChangeMembers<NodeId, BasicNode>,
    ) -> Result<Response<v1::MembershipResponse>, ServeError> {
        let written = self
            .raft
            .change_membership(change, false)
            .await
            .map_err(|e| ServeError::from_write(&e))?;
        Ok(Response::new(v1::MembershipResponse {
            members: self.members(),
            log_index: written.log_id.index,
        }))
    }

    async fn force_release_call(
        &self,
        request: Request<v1::ForceReleaseRequest>,
    ) -> Result<Response<v1::LockState>, ServeError> {
        let request = match self.router.route(request).await? {
            Routed::Here(r) => r,
            Routed::Forward(c, r) => return forwarded(AdminClient::new(c).force_release(r).await),
        };
        let who = self.access.admin(&request)?;
        who.check_tenant(&request.get_ref().tenant_id)?;
        let command = convert::force_release(request.get_ref(), &who.name)?;
        let view = self.writer.force_release(command).await?;
        Ok(Response::new(convert::lock_state(&view, |_| 0)))
    }

    async fn configure_call(
        &self,
        request: Request<v1::ConfigureRequest>,
    ) -> Result<Response<v1::Limits>, ServeError> {
        let request = match self.router.route(request).await? {
            Routed::Here(r) => r,
            Routed::Forward(c, r) => return forwarded(AdminClient::new(c).configure(r).await),
        };
        // The limits hold for every tenant.
        let who = self.access.admin(&request)?;
        who.check_all_tenants()?;
        let current = self.table.read().table.config().clone();
        let wanted = convert::configure(&current, request.get_ref());
        let applied = self.writer.configure(wanted).await?;
        tracing::info!(by = %who.name, limits = ?applied, "limits changed");
        Ok(Response::new(convert::limits(&applied)))
    }

    async fn status_call(
        &self,
        request: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::StatusResponse>, ServeError> {
        self.access.anyone(&request)?;
        let m = self.raft.metrics().borrow().clone();
        let committed = self
            .raft
            .with_raft_state(|s| s.committed.map(|l| l.index))
            .await
            .map_err(|e| ServeError::refused(Reason::Unavailable, e.to_string()))?;
        let role = match m.state {
            ServerState::Leader => v1::NodeRole::Leader,
            ServerState::Follower => v1::NodeRole::Follower,
            ServerState::Candidate => v1::NodeRole::Candidate,
            ServerState::Learner => v1::NodeRole::Learner,
            ServerState::Shutdown => v1::NodeRole::Unspecified,
        };
        let leader = self.router.leader();
        let audit_retained_from = self
            .table
            .history()
            .first()
            .map_err(|e| ServeError::refused(Reason::Unavailable, e.to_string()))?
            .unwrap_or(0);
        let table = self.table.read();
        let stats = table.table.stats();
        Ok(Response::new(v1::StatusResponse {
            node_id: self.id,
            role: role as i32,
            leader_id: leader.as_ref().map_or(0, |l| l.0),
            leader_address: leader.map(|l| l.1).unwrap_or_default(),
            term: m.current_term,
            commit_index: committed.unwrap_or(0),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            members: self.members(),
            table_digest: table.table.digest_hex(),
            audit_sequence: table.table.audit_seq(),
            locks: stats.locks as u64,
            active_leases: stats.active as u64,
            waiting_leases: stats.waiting as u64,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            disk_flushes: (self.flushes)(),
            limits: Some(convert::limits(table.table.config())),
            cluster_id: table.table.cluster_id().to_owned(),
            token_floor: table.table.token_floor(),
            audit_retained_from,
        }))
    }

    async fn add_node_call(
        &self,
        request: Request<v1::AddNodeRequest>,
    ) -> Result<Response<v1::MembershipResponse>, ServeError> {
        let request = match self.router.route(request).await? {
            Routed::Here(r) => r,
            Routed::Forward(c, r) => return forwarded(AdminClient::new(c).add_node(r).await),
        };
        self.access.admin(&request)?;
        let v1::AddNodeRequest { node_id, address } = request.into_inner();
        if node_id == 0 || address.trim().is_empty() {
            return Err(invalid("node_id > 0 and an address are required"));
        }
        // A learner first, caught up, then a voter: the quorum never waits on
        // a node that is still far behind.
        self.raft
            .add_learner(node_id, BasicNode::new(address), true)
            .await
            .map_err(|e| ServeError::from_write(&e))?;
        self.change(ChangeMembers::AddVoterIds(BTreeSet::from([node_id])))
            .await
    }

    async fn remove_node_call(
        &self,
        request: Request<v1::RemoveNodeRequest>,
    ) -> Result<Response<v1::MembershipResponse>, ServeError> {
        let request = match self.router.route(request).await? {
            Routed::Here(r) => r,
            Routed::Forward(c, r) => return forwarded(AdminClient::new(c).remove_node(r).await),
        };
        self.access.admin(&request)?;
        let node_id = request.into_inner().node_id;
        if !self.members().iter().any(|m| m.node_id == node_id) {
            return Err(invalid(format!("node {node_id} is not a member")));
        }
        let voters: BTreeSet<NodeId> = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .voter_ids()
            .collect();
        let change = if voters.contains(&node_id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([node_id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([node_id]))
        };
        self.change(change).await
    }

    async fn transfer_leader_call(
        &self,
        request: Request<v1::TransferLeaderRequest>,
    ) -> Result<Response<v1::TransferLeaderResponse>, ServeError> {
        let request = match self.router.route(request).await? {
            Routed::Here(r) => r,
            Routed::Forward(c, r) => {
                return forwarded(AdminClient::new(c).transfer_leader(r).await);
            }
        };
        self.access.admin(&request)?;
        let target = request.get_ref().node_id;
        let done =
            crate::transfer::transfer(&self.raft, self.id, &self.connector, target, self.lease)
                .await;
        match done {
            Ok((leader_id, term)) => Ok(Response::new(v1::TransferLeaderResponse {
                leader_id,
                term,
            })),
            Err(e @ crate::transfer::TransferError::NotAVoter(_)) => Err(invalid(e.to_string())),
            Err(e @ crate::transfer::TransferError::NotLeader) => {
                Err(ServeError::refused(Reason::NotLeader, e.to_string()))
            }
            Err(e) => Err(ServeError::refused(Reason::Unavailable, e.to_string())),
        }
    }

    async fn export_call(
        &self,
        request: Request<v1::ExportSnapshotRequest>,
    ) -> Result<Response<Chunks>, ServeError> {
        // A backup holds every tenant.
        self.access.admin(&request)?.check_all_tenants()?;
        let (bytes, meta) = {
            let a = self.table.read();
            let bytes = a.table.snapshot();
            let meta = v1::SnapshotMeta {
                source_node_id: self.id,
                index: a.last_applied.map_or(0, |l| l.index),
                term: a.last_applied.map_or(0, |l| l.leader_id.term),
                format: tenure_core::SNAPSHOT_FORMAT,
                total_bytes: bytes.len() as u64,
                table_digest: a.table.digest_hex(),
            };
            (bytes, meta)
        };
        let sha = hex::encode(Sha256::digest(&bytes));
        let count = bytes.len().div_ceil(CHUNK).max(1);
        let chunks: Vec<Result<v1::SnapshotChunk, Status>> = (0..count)
            .map(|i| {
                let start = i * CHUNK;
                let end = (start + CHUNK).min(bytes.len());
                let last = i + 1 == count;
                Ok(v1::SnapshotChunk {
                    data: bytes[start..end].to_vec(),
                    offset: start as u64,
                    last,
                    meta: (i == 0).then(|| meta.clone()),
                    sha256: if last { sha.clone() } else { String::new() },
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks)) as Chunks))
    }

    async fn backup_call(
        &self,
        request: Request<v1::BackupRequest>,
    ) -> Result<Response<BackupChunks>, ServeError> {
        let request = match self.router.route(request).await? {
            Routed::Here(r) => r,
            Routed::Forward(c, r) => {
                let answer = forwarded(
                    AdminClient::new(c)
                        .max_decoding_message_size(MAX_BACKUP_CHUNK)
                        .backup(r)
                        .await,
                )?;
                return Ok(answer.map(|s| Box::pin(s) as BackupChunks));
            }
        };
        // A backup holds every tenant.
        self.access.admin(&request)?.check_all_tenants()?;
        // Still the leader after the call arrived, with everything committed
        // before it applied: the table read next is no stale one.
        self.router.confirm(false).await?;
        let (table, source) = {
            let a = self.table.read();
            if let Some((sha, _)) = a.table.restore_pending() {
                return Err(ServeError::refused(
                    Reason::Unavailable,
                    format!("a restore of backup {sha} is in progress: back up after it"),
                ));
            }
            let source = tenure_core::backup::Source {
                source_node: self.id,
                leader_term: self.raft.metrics().borrow().current_term,
                applied_index: a.last_applied.map_or(0, |l| l.index),
                exported_at: rfc3339(self.clock.wall_ms()),
                exported_at_ms: self.clock.wall_ms(),
            };
            (a.table.clone(), source)
        };
        let timers = self.timers.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<v1::BackupChunk, Status>>(4);
        // Lines are made off the runtime's workers, a chunk at a time, as
        // fast as the caller reads them.
        tokio::task::spawn_blocking(move || {
            let remaining = |id| timers.remaining(id).map(|d| d.as_millis() as u64);
            let mut data = Vec::with_capacity(BACKUP_CHUNK + 4096);
            for line in table.backup_lines(source, remaining) {
                data.extend_from_slice(line.as_bytes());
                if data.len() >= BACKUP_CHUNK {
                    let chunk = v1::BackupChunk {
                        data: std::mem::replace(&mut data, Vec::with_capacity(BACKUP_CHUNK + 4096)),
                    };
                    if tx.blocking_send(Ok(chunk)).is_err() {
                        return;
                    }
                }
            }
            if !data.is_empty() {
                let _ = tx.blocking_send(Ok(v1::BackupChunk { data }));
            }
        });
        Ok(Response::new(
            Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)) as BackupChunks,
        ))
    }

    async fn import_call(
        &self,
        request: Request<Streaming<v1::SnapshotChunk>>,
    ) -> Result<Response<v1::ImportSnapshotResponse>, ServeError> {
        // Streams are not forwarded: the client sends them to the leader.
        self.router.here("imports").await?;
        // A restore writes every tenant.
        self.access.admin(&request)?.check_all_tenants()?;
        let mut stream = request.into_inner();
        let mut bytes = Vec::new();
        let mut sha = None;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(ServeError::Forwarded)?;
            if chunk.offset != bytes.len() as u64 {
                return Err(invalid(format!(
                    "chunk at {} but {} bytes received",
                    chunk.offset,
                    bytes.len()
                )));
            }
            if bytes.len() + chunk.data.len() > MAX_IMPORT_BYTES {
                return Err(invalid(format!(
                    "snapshot larger than {MAX_IMPORT_BYTES} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk.data);
            if chunk.last {
                sha = Some(chunk.sha256);
                break;
            }
        }
        let Some(sha) = sha else {
            return Err(invalid("the stream ended before its last chunk"));
        };
        if !sha.is_empty() && sha != hex::encode(Sha256::digest(&bytes)) {
            return Err(invalid("sha256 does not match the bytes received"));
        }
        let received = bytes.len() as u64;
        let imported = self.writer.import(Import { snapshot: bytes }).await?;
        let digest = self.table.read().table.digest_hex();
        Ok(Response::new(v1::ImportSnapshotResponse {
            bytes_received: received,
            index: imported.index,
            table_digest: digest,
            audit_sequence: imported.audit_seq,
        }))
    }
}

impl<C: Connector> AdminService<C> {
    async fn restore_call(
        &self,
        request: Request<Streaming<v1::RestoreChunk>>,
    ) -> Result<Response<v1::RestoreResponse>, ServeError> {
        // Streams are not forwarded: the client sends them to the leader.
        self.router.here("restores").await?;
        // A restore writes every tenant.
        let who = self.access.admin(&request)?;
        who.check_all_tenants()?;
        let actor = who.name.clone();
        // One restore at a time on this node; the table refuses a second
        // one proposed by another leader.
        let Ok(_running) = self.restoring.try_lock() else {
            return Err(invalid("another restore is running on this node"));
        };
        let mut stream = request.into_inner();
        let mut bytes = Vec::new();
        let mut options = None;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(ServeError::Forwarded)?;
            options.get_or_insert((chunk.merge, chunk.token_gap));
            if (bytes.len() + chunk.data.len()) as u64 > MAX_RESTORE_BYTES {
                return Err(invalid(format!(
                    "the backup is larger than {MAX_RESTORE_BYTES} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk.data);
        }
        let (merge, token_gap) = options.unwrap_or_default();
        let token_gap = if token_gap == 0 {
            DEFAULT_TOKEN_GAP
        } else {
            token_gap
        };
        let received = bytes.len() as u64;
        // The whole file is checked before anything is proposed.
        let (bytes, checked) = tokio::task::spawn_blocking(move || {
            let checked = tenure_core::backup::read(&bytes[..]);
            (bytes, checked)
        })
        .await
        .map_err(|e| ServeError::Internal(format!("the backup check stopped: {e}")))?;
        let backup = checked.map_err(|e| invalid(format!("the backup is refused: {e}")))?;
        let sha256 = backup.sha256.clone();
        let cluster_id = backup.header.cluster_id.clone();
        drop(backup);
        let attempt = self.attempt(&sha256);
        let term = self.raft.metrics().borrow().current_term;
        let begin = RestoreBegin {
            sha256: sha256.clone(),
            cluster_id,
            attempt,
            term,
            merge,
            token_gap,
            actor,
            total_bytes: received,
        };
        tracing::info!(backup = %sha256, bytes = received, merge, token_gap, "restoring a backup");
        let report = match self
            .writer
            .restore_step(Command::RestoreBegin(begin))
            .await?
        {
            Some(done) => done,
            None => match self.stage(attempt, &bytes).await {
                Ok(report) => report,
                Err(e) => {
                    // Best effort: a later leader's restore takes over anyway.
                    let abort = Command::RestoreAbort(RestoreAbort { attempt });
                    if let Err(a) = self.writer.restore_step(abort).await {
                        tracing::warn!(error = %a, "could not drop the staged restore");
                    }
                    return Err(e);
                }
            },
        };
        if report.already {
            tracing::info!(backup = %sha256, index = report.index, "already restored");
        } else {
            tracing::info!(backup = %sha256, index = report.index, floor = report.token_floor, "restored");
        }
        let table = self.table.read();
        Ok(Response::new(v1::RestoreResponse {
            already_restored: report.already,
            index: report.index,
            audit_sequence: report.audit_seq,
            token_floor: report.token_floor,
            token_gap: report.token_gap,
            locks: report.locks,
            active_leases: report.active,
            dropped_waiters: report.dropped_waiters,
            skipped_leases: report.skipped,
            requests: report.requests,
            ended_leases: report.ended,
            merged: report.merged,
            backup_sha256: sha256,
            table_digest: table.table.digest_hex(),
            cluster_id: table.table.cluster_id().to_owned(),
            bytes_received: received,
        }))
    }

    /// Stages `bytes` in chunks of whole lines, then commits.
    async fn stage(&self, attempt: u64, bytes: &[u8]) -> Result<RestoreReport, ServeError> {
        let mut seq = 0;
        let mut rest = bytes;
        while !rest.is_empty() {
            // Whole lines, about RESTORE_CHUNK bytes (a line is at most 1 MiB).
            let end = match rest.get(RESTORE_CHUNK..) {
                None => rest.len(),
                Some(after) => {
                    RESTORE_CHUNK
                        + after
                            .iter()
                            .position(|b| *b == b'\n')
                            .map_or(after.len(), |i| i + 1)
                }
            };
            let (data, next) = rest.split_at(end);
            rest = next;
            let chunk = RestoreChunk {
                attempt,
                seq,
                data: data.to_vec(),
            };
            self.writer
                .restore_step(Command::RestoreChunk(chunk))
                .await?;
            seq += 1;
        }
        let commit = Command::RestoreCommit(RestoreCommit { attempt });
        match self.writer.restore_step(commit).await? {
            Some(report) => Ok(report),
            None => Err(ServeError::Internal(
                "the restore commit answered nothing".into(),
            )),
        }
    }

    /// A number for this attempt: distinct per call on this node and
    /// across nodes.
    fn attempt(&self, sha256: &str) -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static CALLS: AtomicU64 = AtomicU64::new(0);
        let call = CALLS.fetch_add(1, Ordering::Relaxed);
        let seed = format!("{} {} {} {sha256}", self.id, self.clock.wall_ms(), call);
        let digest = Sha256::digest(seed.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }
}

#[tonic::async_trait]
impl<C: Connector> v1::admin_server::Admin for AdminService<C> {
    async fn restore(
        &self,
        request: Request<Streaming<v1::RestoreChunk>>,
    ) -> Result<Response<v1::RestoreResponse>, Status> {
        self.router.answer(self.restore_call(request).await)
    }

    async fn force_release(
        &self,
        request: Request<v1::ForceReleaseRequest>,
    ) -> Result<Response<v1::LockState>, Status> {
        self.router.answer(self.force_release_call(request).await)
    }

    async fn status(
        &self,
        request: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::StatusResponse>, Status> {
        self.router.answer(self.status_call(request).await)
    }

    async fn add_node(
        &self,
        request: Request<v1::AddNodeRequest>,
    ) -> Result<Response<v1::MembershipResponse>, Status> {
        self.router.answer(self.add_node_call(request).await)
    }

    async fn remove_node(
        &self,
        request: Request<v1::RemoveNodeRequest>,
    ) -> Result<Response<v1::MembershipResponse>, Status> {
        self.router.answer(self.remove_node_call(request).await)
    }

    async fn transfer_leader(
        &self,
        request: Request<v1::TransferLeaderRequest>,
    ) -> Result<Response<v1::TransferLeaderResponse>, Status> {
        self.router.answer(self.transfer_leader_call(request).await)
    }

    type BackupStream = BackupChunks;

    async fn backup(
        &self,
        request: Request<v1::BackupRequest>,
    ) -> Result<Response<BackupChunks>, Status> {
        self.router.answer(self.backup_call(request).await)
    }

    type ExportSnapshotStream = Chunks;

    async fn export_snapshot(
        &self,
        request: Request<v1::ExportSnapshotRequest>,
    ) -> Result<Response<Chunks>, Status> {
        self.router.answer(self.export_call(request).await)
    }

    async fn import_snapshot(
        &self,
        request: Request<Streaming<v1::SnapshotChunk>>,
    ) -> Result<Response<v1::ImportSnapshotResponse>, Status> {
        self.router.answer(self.import_call(request).await)
    }

    async fn configure(
        &self,
        request: Request<v1::ConfigureRequest>,
    ) -> Result<Response<v1::Limits>, Status> {
        self.router.answer(self.configure_call(request).await)
    }
}

/// The members a status lists, by id, for tests and the CLI.
pub fn members_by_id(status: &v1::StatusResponse) -> BTreeMap<NodeId, String> {
    status
        .members
        .iter()
        .map(|m| (m.node_id, m.address.clone()))
        .collect()
}
