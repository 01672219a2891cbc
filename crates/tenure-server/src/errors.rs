//! The one mapping from what can go wrong in a node to a gRPC status with
//! a stable reason (tenure-proto's `convert` does the encoding).

use openraft::BasicNode;
use openraft::error::{ClientWriteError, RaftError};
use tenure_core::Reason;
use tenure_proto::convert;
use tenure_raft::NodeId;
use tenure_raft::Raft;
use tonic::{Request, Status};

/// Marks a call a follower forwarded to the leader, so it is forwarded once.
pub const FORWARDED: &str = "tenure-forwarded";

/// Where the caller's identity comes from without authentication (the
/// development default, as the reference did).
pub const OWNER_METADATA: &str = "x-owner-id";

/// A failed raft write: NOT_LEADER (with the leader's address) when the
/// node is not the leader, UNAVAILABLE (retryable) when raft cannot make
/// progress, INVALID_REQUEST for a membership change that cannot be made.
pub fn write(
    e: &RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
    leader: Option<(NodeId, String)>,
) -> Status {
    let hint = leader.as_ref().map(|l| l.1.as_str());
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            let addr = f.leader_node.as_ref().map(|n| n.addr.as_str()).or(hint);
            convert::status(Reason::NotLeader, "this node is not the leader", addr)
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            convert::status(Reason::InvalidRequest, c.to_string(), hint)
        }
        RaftError::Fatal(f) => convert::status(Reason::Unavailable, f.to_string(), hint),
    }
}

/// Marks a request as forwarded once, so it is never forwarded again.
pub fn marked<T>(mut request: Request<T>) -> Request<T> {
    request
        .metadata_mut()
        .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    request
}

/// The leader's id and address, as `raft` knows them.
pub fn leader(raft: &Raft) -> Option<(NodeId, String)> {
    let m = raft.metrics().borrow().clone();
    let id = m.current_leader?;
    let addr = m
        .membership_config
        .nodes()
        .find(|(n, _)| **n == id)?
        .1
        .addr
        .clone();
    Some((id, addr))
}

/// Proposes `command` through raft and returns its log index and the
/// table's answer. Input the table would refuse never reaches the log:
/// the precheck runs first. `fail` maps the table's refusals to a status.
/// `at_ms` is the proposer's wall clock, for the audit record.
pub async fn propose(
    raft: &Raft,
    proposer: &tenure_raft::Proposer,
    table: &tenure_raft::TableReader,
    at_ms: u64,
    command: tenure_core::Command,
    fail: impl Fn(&tenure_core::Error) -> Status,
) -> Result<(u64, tenure_core::Reply), Status> {
    table
        .read()
        .table
        .precheck(&command)
        .map_err(|e| fail(&e))?;
    let committed = proposer
        .propose(at_ms, command)
        .await
        .map_err(|e| write(&e, leader(raft)))?;
    let reply = committed.applied.result.map_err(|e| fail(&e))?;
    Ok((committed.log_id.index, reply))
}
