//! The one mapping from what can go wrong in a node to a gRPC status with
//! a stable reason (tenure-proto's `convert` does the encoding).

use openraft::BasicNode;
use openraft::error::{ClientWriteError, RaftError};
use tenure_core::Reason;
use tenure_proto::convert;
use tenure_raft::NodeId;
use tonic::Status;

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
