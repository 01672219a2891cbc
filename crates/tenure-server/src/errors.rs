//! The server's one error type, and the one place where it becomes a gRPC
//! [`Status`]: always with its stable reason (INTERNAL included) and the
//! leader's address when the node knows it.
//!
//! Handlers, the router, the writer and the access checks all fail with a
//! [`ServeError`]; the services turn it into a status in exactly one call,
//! [`ServeError::into_status`], when a handler returns.

use openraft::BasicNode;
use openraft::error::{ClientWriteError, RaftError};
use tenure_core::Reason;
use tenure_proto::{ConvertError, convert};
use tenure_raft::{NodeId, Raft};
use tonic::{Request, Status};

/// Marks a call a follower forwarded to the leader, so it is forwarded once.
pub const FORWARDED: &str = "tenure-forwarded";

/// Where the caller's identity comes from without authentication (the
/// development default, as the reference did).
pub const OWNER_METADATA: &str = "x-owner-id";

/// The metadata (and HTTP header) by which a caller of a development node
/// (no auth file) claims the admin role: `x-role: ADMIN`, as the reference
/// did. A node with an auth file ignores it.
pub const ROLE_METADATA: &str = "x-role";

/// Whether `request` claims the admin role by [`ROLE_METADATA`].
pub fn claims_admin<T>(request: &Request<T>) -> bool {
    request
        .metadata()
        .get(ROLE_METADATA)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|r| r.trim().eq_ignore_ascii_case("ADMIN"))
}

/// Why a call failed, before it is a status.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The lease table refused the command.
    #[error(transparent)]
    Table(#[from] tenure_core::Error),
    /// The request could not become a command.
    #[error(transparent)]
    Convert(#[from] ConvertError),
    /// The node refused: not the leader, no identity, forbidden, over the
    /// rate limit, unavailable.
    #[error("{message}")]
    Refused {
        /// The stable reason.
        reason: Reason,
        /// Words for people.
        message: String,
    },
    /// The leader answered a forwarded call: its answer passes through.
    #[error("{}", .0.message())]
    Forwarded(Status),
    /// Something that should not happen did (an unexpected reply, say).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServeError {
    /// A refusal for `reason`.
    pub fn refused(reason: Reason, message: impl Into<String>) -> ServeError {
        ServeError::Refused {
            reason,
            message: message.into(),
        }
    }

    /// The stable reason.
    pub fn reason(&self) -> Reason {
        match self {
            ServeError::Table(e) => e.reason(),
            ServeError::Convert(e) => e.reason(),
            ServeError::Refused { reason, .. } => *reason,
            ServeError::Forwarded(s) => convert::reason_of(s).unwrap_or(Reason::Unavailable),
            ServeError::Internal(_) => Reason::Internal,
        }
    }

    /// The status a caller sees: the reason's gRPC code, the reason in the
    /// details and metadata, and `leader` (the leader's address) when
    /// known. A forwarded answer passes through unchanged.
    pub fn into_status(self, leader: Option<&str>) -> Status {
        match self {
            ServeError::Forwarded(status) => status,
            other => {
                if let ServeError::Internal(m) = &other {
                    tracing::error!(message = %m, "internal error");
                }
                convert::status(other.reason(), other.to_string(), leader)
            }
        }
    }

    /// A failed raft write: NOT_LEADER when the node is not the leader,
    /// UNAVAILABLE (retryable) when raft cannot make progress,
    /// INVALID_REQUEST for a membership change that cannot be made.
    pub fn from_write(e: &RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> ServeError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
                ServeError::refused(Reason::NotLeader, "this node is not the leader")
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
                ServeError::refused(Reason::InvalidRequest, c.to_string())
            }
            RaftError::Fatal(f) => ServeError::refused(Reason::Unavailable, f.to_string()),
        }
    }
}

/// A forwarded call's answer, as this node's: the leader's refusal passes
/// through unchanged.
pub fn forwarded<T>(
    answer: Result<tonic::Response<T>, Status>,
) -> Result<tonic::Response<T>, ServeError> {
    answer.map_err(ServeError::Forwarded)
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
    // Every answer names the leader: read the metrics in place rather
    // than clone them whole.
    let metrics = raft.metrics();
    let m = metrics.borrow();
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
