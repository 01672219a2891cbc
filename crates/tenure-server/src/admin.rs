//! The `Admin` service: cluster status, membership, force-release, and
//! snapshot export and import.
//!
//! Status and export are answered by the node asked. Writes (membership,
//! force-release, import) go to the leader: a follower forwards the call
//! once, marking it, and a forwarded call that meets another follower answers
//! NOT_LEADER with the leader's address, so a leader change cannot bounce a
//! call around. Errors leave through [`crate::errors`], the one mapping.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;

use openraft::ChangeMembers;
use openraft::{BasicNode, ServerState};
use sha2::{Digest, Sha256};
use tenure_core::{Command, Import, Reason, Reply};
use tenure_proto::convert;
use tenure_proto::v1;
use tenure_proto::v1::admin_client::AdminClient;
use tenure_raft::{Connector, NodeId, Proposer, Raft, TableReader};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::errors::{self, FORWARDED, marked};

/// Chunks of an exported snapshot.
const CHUNK: usize = 1 << 20;
/// The largest snapshot an import accepts: it travels as one log entry.
pub const MAX_IMPORT_BYTES: usize = 48 << 20;

/// The Admin service of one node.
#[derive(Clone)]
pub struct AdminService<C: Connector> {
    id: NodeId,
    raft: Raft,
    proposer: Proposer,
    table: TableReader,
    connector: C,
    /// The election timeout's upper bound: the lease a transfer waits out.
    lease: std::time::Duration,
    /// Who may call what.
    auth: crate::auth::Auth,
    /// The disk's flush count.
    flushes: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// The clock that stamps proposals.
    clock: crate::clock::NodeClock,
}

type Chunks = Pin<Box<dyn Stream<Item = Result<v1::SnapshotChunk, Status>> + Send>>;

impl<C: Connector> AdminService<C> {
    /// The service of node `id`.
    pub fn new(
        id: NodeId,
        raft: Raft,
        proposer: Proposer,
        table: TableReader,
        connector: C,
        lease: std::time::Duration,
        auth: crate::auth::Auth,
    ) -> AdminService<C> {
        AdminService {
            id,
            raft,
            proposer,
            table,
            connector,
            lease,
            auth,
            flushes: Arc::new(|| 0),
            clock: crate::clock::NodeClock::system(),
        }
    }

    /// Stamps proposals with `clock`'s wall clock.
    pub fn with_clock(mut self, clock: crate::clock::NodeClock) -> AdminService<C> {
        self.clock = clock;
        self
    }

    /// Reports `flushes()` as the disk's flush count in `Status`.
    pub fn with_flush_counter(
        mut self,
        flushes: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> AdminService<C> {
        self.flushes = Arc::new(flushes);
        self
    }

    /// An answer, with the leader's address in its metadata.
    fn respond<T>(&self, body: T) -> Response<T> {
        let mut response = Response::new(body);
        if let Some((_, addr)) = self.leader() {
            convert::set_leader(response.metadata_mut(), &addr);
        }
        response
    }

    /// The caller, who must be an admin. Without an auth file every caller
    /// is one, named by `x-owner-id` or else "admin".
    fn admin<T>(&self, request: &Request<T>) -> Result<crate::auth::Identity, Status> {
        if !self.auth.enforced() {
            let named = self.auth.identify(request).ok();
            return Ok(named.unwrap_or(crate::auth::Identity {
                name: "admin".into(),
                admin: true,
                tenants: None,
            }));
        }
        let who = self.auth.identify(request)?;
        who.check_admin()?;
        Ok(who)
    }

    fn leader(&self) -> Option<(NodeId, String)> {
        errors::leader(&self.raft)
    }

    /// A client to the leader, for a call that only the leader can serve;
    /// NOT_LEADER if this node is not it and cannot forward.
    fn forward<T>(
        &self,
        request: &Request<T>,
    ) -> Result<AdminClient<tonic::transport::Channel>, Status> {
        let leader = self.leader();
        let hint = leader.as_ref().map(|(_, a)| a.as_str());
        match &leader {
            Some((id, addr)) if *id != self.id && request.metadata().get(FORWARDED).is_none() => {
                let channel = self
                    .connector
                    .channel(addr)
                    .map_err(|e| convert::status(Reason::Unavailable, e.to_string(), hint))?;
                Ok(AdminClient::new(channel))
            }
            _ => Err(convert::status(
                Reason::NotLeader,
                "this node is not the leader",
                hint,
            )),
        }
    }

    fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
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
    ) -> Result<Response<v1::MembershipResponse>, Status> {
        let written = self
            .raft
            .change_membership(change, false)
            .await
            .map_err(|e| errors::write(&e, self.leader()))?;
        Ok(self.respond(v1::MembershipResponse {
            members: self.members(),
            log_index: written.log_id.index,
        }))
    }

    async fn propose(&self, command: Command) -> Result<(u64, Reply), Status> {
        let at_ms = self.clock.wall_ms();
        errors::propose(
            &self.raft,
            &self.proposer,
            &self.table,
            at_ms,
            command,
            |e| convert::error_status(e, None),
        )
        .await
    }
}

#[tonic::async_trait]
impl<C: Connector> v1::admin_server::Admin for AdminService<C> {
    async fn force_release(
        &self,
        request: Request<v1::ForceReleaseRequest>,
    ) -> Result<Response<v1::LockState>, Status> {
        if !self.is_leader() {
            let mut client = self.forward(&request)?;
            return client.force_release(marked(request)).await;
        }
        let who = self.admin(&request)?;
        who.check_tenant(&request.get_ref().tenant_id)?;
        let command = convert::force_release(request.get_ref(), &who.name).map_err(Status::from)?;
        match self.propose(Command::ForceRelease(command)).await? {
            (_, Reply::Lock(view)) => Ok(self.respond(convert::lock_state(&view, 0))),
            (_, other) => Err(Status::internal(format!(
                "force-release answered {other:?}"
            ))),
        }
    }

    async fn status(
        &self,
        request: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::StatusResponse>, Status> {
        if self.auth.enforced() {
            self.auth.identify(&request)?;
        }
        let m = self.raft.metrics().borrow().clone();
        let committed = self
            .raft
            .with_raft_state(|s| s.committed.map(|l| l.index))
            .await
            .map_err(|e| convert::status(Reason::Unavailable, e.to_string(), None))?;
        let role = match m.state {
            ServerState::Leader => v1::NodeRole::Leader,
            ServerState::Follower => v1::NodeRole::Follower,
            ServerState::Candidate => v1::NodeRole::Candidate,
            ServerState::Learner => v1::NodeRole::Learner,
            ServerState::Shutdown => v1::NodeRole::Unspecified,
        };
        let leader = self.leader();
        let table = self.table.read();
        let stats = table.table.stats();
        Ok(self.respond(v1::StatusResponse {
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
        }))
    }

    async fn add_node(
        &self,
        request: Request<v1::AddNodeRequest>,
    ) -> Result<Response<v1::MembershipResponse>, Status> {
        self.admin(&request)?;
        if !self.is_leader() {
            let mut client = self.forward(&request)?;
            return client.add_node(marked(request)).await;
        }
        let v1::AddNodeRequest { node_id, address } = request.into_inner();
        if node_id == 0 || address.trim().is_empty() {
            return Err(convert::status(
                Reason::InvalidRequest,
                "node_id > 0 and an address are required",
                None,
            ));
        }
        // A learner first, caught up, then a voter: the quorum never waits on
        // a node that is still far behind.
        self.raft
            .add_learner(node_id, BasicNode::new(address), true)
            .await
            .map_err(|e| errors::write(&e, self.leader()))?;
        self.change(ChangeMembers::AddVoterIds(BTreeSet::from([node_id])))
            .await
    }

    async fn remove_node(
        &self,
        request: Request<v1::RemoveNodeRequest>,
    ) -> Result<Response<v1::MembershipResponse>, Status> {
        self.admin(&request)?;
        if !self.is_leader() {
            let mut client = self.forward(&request)?;
            return client.remove_node(marked(request)).await;
        }
        let node_id = request.into_inner().node_id;
        let known = self.members().iter().any(|m| m.node_id == node_id);
        if !known {
            return Err(convert::status(
                Reason::InvalidRequest,
                format!("node {node_id} is not a member"),
                None,
            ));
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

    async fn transfer_leader(
        &self,
        request: Request<v1::TransferLeaderRequest>,
    ) -> Result<Response<v1::TransferLeaderResponse>, Status> {
        self.admin(&request)?;
        if !self.is_leader() {
            let mut client = self.forward(&request)?;
            return client.transfer_leader(marked(request)).await;
        }
        let target = request.get_ref().node_id;
        let done =
            crate::transfer::transfer(&self.raft, self.id, &self.connector, target, self.lease)
                .await;
        match done {
            Ok((leader_id, term)) => {
                Ok(self.respond(v1::TransferLeaderResponse { leader_id, term }))
            }
            Err(e @ crate::transfer::TransferError::NotAVoter(_)) => {
                Err(convert::status(Reason::InvalidRequest, e.to_string(), None))
            }
            Err(e @ crate::transfer::TransferError::NotLeader) => {
                let hint = self.leader().map(|l| l.1);
                Err(convert::status(
                    Reason::NotLeader,
                    e.to_string(),
                    hint.as_deref(),
                ))
            }
            Err(e) => Err(convert::status(Reason::Unavailable, e.to_string(), None)),
        }
    }

    type ExportSnapshotStream = Chunks;

    async fn export_snapshot(
        &self,
        request: Request<v1::ExportSnapshotRequest>,
    ) -> Result<Response<Chunks>, Status> {
        self.admin(&request)?;
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
        Ok(self.respond(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn import_snapshot(
        &self,
        request: Request<Streaming<v1::SnapshotChunk>>,
    ) -> Result<Response<v1::ImportSnapshotResponse>, Status> {
        self.admin(&request)?;
        let invalid = |m: String| convert::status(Reason::InvalidRequest, m, None);
        if !self.is_leader() {
            let hint = self.leader().map(|l| l.1);
            return Err(convert::status(
                Reason::NotLeader,
                "send imports to the leader (streams are not forwarded)",
                hint.as_deref(),
            ));
        }
        let mut stream = request.into_inner();
        let mut bytes = Vec::new();
        let mut sha = None;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
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
            return Err(invalid("the stream ended before its last chunk".into()));
        };
        if !sha.is_empty() && sha != hex::encode(Sha256::digest(&bytes)) {
            return Err(invalid("sha256 does not match the bytes received".into()));
        }
        let received = bytes.len() as u64;
        match self
            .propose(Command::Import(Import { snapshot: bytes }))
            .await?
        {
            (_, Reply::Imported { index, audit_seq }) => {
                let digest = self.table.read().table.digest_hex();
                Ok(self.respond(v1::ImportSnapshotResponse {
                    bytes_received: received,
                    index,
                    table_digest: digest,
                    audit_sequence: audit_seq,
                }))
            }
            (_, other) => Err(Status::internal(format!("import answered {other:?}"))),
        }
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
