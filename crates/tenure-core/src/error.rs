//! Errors of the lease table and the reasons the whole product speaks.
//!
//! A [`Reason`] is the stable, machine-readable half of every refusal: clients
//! in any language match on its string (`LOCK_HELD`, `LEASE_EXPIRED`, …), and
//! spec/requirements.md lists each with its gRPC code and HTTP class. The
//! reason list lives here, in the pure core, so that the server, the HTTP
//! gateway and the client library share one vocabulary. An [`Error`] is the
//! table's own refusal: a reason plus the words a person reads.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::lease::LeaseId;

/// Every stable reason string Tenure answers with. The strings never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// A required field is missing, empty, too long or has characters outside its alphabet.
    InvalidRequest,
    /// The TTL lies outside the configured bounds.
    InvalidTtl,
    /// The call carries no caller identity.
    OwnerTokenRequired,
    /// The request's owner differs from the authenticated caller.
    OwnerTokenMismatch,
    /// The caller lacks the role (admin) or the tenant the call needs.
    Forbidden,
    /// No lease with this id exists in this tenant (or it aged out of memory).
    LeaseNotFound,
    /// The lock has an ACTIVE lease.
    LockHeld,
    /// The lock is free but inside its lock-delay after an expiry.
    LockDelayed,
    /// Renew or release of a lease that was released.
    LeaseNotActive,
    /// Renew or release of a lease that expired.
    LeaseExpired,
    /// The caller is not the lease's owner.
    OwnerMismatch,
    /// A fenced resource got a token not above the last one it accepted.
    StaleFencingToken,
    /// A request_id already used by this caller for a different request.
    RequestIdReused,
    /// A waiting acquire was not granted within its wait timeout.
    WaitTimeout,
    /// The lock's waiting queue is full.
    TooManyWaiters,
    /// The tenant's quota of lock records (or the cluster's of tenants) is full.
    TooManyLocks,
    /// No leader is known right now; retry shortly.
    NotLeader,
    /// The caller exceeded its rate limit; retry later.
    RateLimited,
    /// The cluster cannot serve right now (no quorum, shutting down); retry.
    Unavailable,
    /// A bug or an unreadable disk; not the caller's fault.
    Internal,
    /// The request's mode does not suit the key while it has holders or
    /// waiters: a semaphore of another limit, or a read-write lock asked as
    /// a semaphore (or the other way round).
    LockModeConflict,
}

impl Reason {
    /// Every reason, in the order spec/requirements.md lists them.
    pub const ALL: [Reason; 21] = [
        Reason::InvalidRequest,
        Reason::InvalidTtl,
        Reason::OwnerTokenRequired,
        Reason::OwnerTokenMismatch,
        Reason::Forbidden,
        Reason::LeaseNotFound,
        Reason::LockHeld,
        Reason::LockDelayed,
        Reason::LeaseNotActive,
        Reason::LeaseExpired,
        Reason::OwnerMismatch,
        Reason::StaleFencingToken,
        Reason::RequestIdReused,
        Reason::WaitTimeout,
        Reason::TooManyWaiters,
        Reason::TooManyLocks,
        Reason::NotLeader,
        Reason::RateLimited,
        Reason::Unavailable,
        Reason::Internal,
        Reason::LockModeConflict,
    ];

    /// The stable string clients match on.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidRequest => "INVALID_REQUEST",
            Reason::InvalidTtl => "INVALID_TTL",
            Reason::OwnerTokenRequired => "OWNER_TOKEN_REQUIRED",
            Reason::OwnerTokenMismatch => "OWNER_TOKEN_MISMATCH",
            Reason::Forbidden => "FORBIDDEN",
            Reason::LeaseNotFound => "LEASE_NOT_FOUND",
            Reason::LockHeld => "LOCK_HELD",
            Reason::LockDelayed => "LOCK_DELAYED",
            Reason::LeaseNotActive => "LEASE_NOT_ACTIVE",
            Reason::LeaseExpired => "LEASE_EXPIRED",
            Reason::OwnerMismatch => "OWNER_MISMATCH",
            Reason::StaleFencingToken => "STALE_FENCING_TOKEN",
            Reason::RequestIdReused => "REQUEST_ID_REUSED",
            Reason::WaitTimeout => "WAIT_TIMEOUT",
            Reason::TooManyWaiters => "TOO_MANY_WAITERS",
            Reason::TooManyLocks => "TOO_MANY_LOCKS",
            Reason::NotLeader => "NOT_LEADER",
            Reason::RateLimited => "RATE_LIMITED",
            Reason::Unavailable => "UNAVAILABLE",
            Reason::Internal => "INTERNAL",
            Reason::LockModeConflict => "LOCK_MODE_CONFLICT",
        }
    }

    /// Parses a reason string; `None` for a string Tenure never sends.
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The HTTP status class of the reference contract (and the HTTP gateway).
    pub fn http_status(self) -> u16 {
        match self {
            Reason::InvalidRequest | Reason::InvalidTtl => 400,
            Reason::OwnerTokenRequired | Reason::OwnerTokenMismatch => 401,
            Reason::Forbidden => 403,
            Reason::LeaseNotFound => 404,
            Reason::WaitTimeout => 408,
            Reason::LockHeld
            | Reason::LockDelayed
            | Reason::LeaseNotActive
            | Reason::LeaseExpired
            | Reason::OwnerMismatch
            | Reason::StaleFencingToken
            | Reason::RequestIdReused
            | Reason::LockModeConflict => 409,
            Reason::TooManyWaiters | Reason::TooManyLocks | Reason::RateLimited => 429,
            Reason::Internal => 500,
            Reason::NotLeader | Reason::Unavailable => 503,
        }
    }

    /// Whether the *same* request (same request_id) may succeed when sent again
    /// unchanged. LOCK_HELD is not: a new attempt is a new request.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Reason::NotLeader | Reason::RateLimited | Reason::Unavailable | Reason::LockDelayed
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal by the lease table. Refusals change nothing in the table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Error {
    /// A field failed validation; the message names the field and the rule.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The TTL is outside the configured bounds.
    #[error("ttl {ttl_ms} ms is outside the allowed {min_ms}..={max_ms} ms")]
    InvalidTtl {
        /// What the caller asked for.
        ttl_ms: u64,
        /// The configured lower bound.
        min_ms: u64,
        /// The configured upper bound.
        max_ms: u64,
    },
    /// The lock has an ACTIVE lease and the caller did not ask to wait.
    #[error("lock {key:?} is held by lease {holder}")]
    LockHeld {
        /// The contended key.
        key: Arc<str>,
        /// The lease holding it.
        holder: LeaseId,
    },
    /// The lock is inside its lock-delay after an expiry.
    #[error("lock {key:?} is in its lock-delay after an expiry")]
    LockDelayed {
        /// The delayed key.
        key: Arc<str>,
    },
    /// A quota on lock records (per tenant) or tenants (per cluster) is full.
    #[error("too many locks: {0}")]
    TooManyLocks(String),
    /// The queue of waiters on this lock is full.
    #[error("lock {key:?} already has {limit} waiters")]
    TooManyWaiters {
        /// The contended key.
        key: Arc<str>,
        /// The configured bound.
        limit: u32,
    },
    /// No such lease in this tenant.
    #[error("lease {0} not found")]
    LeaseNotFound(String),
    /// The lease was released (or its wait withdrawn).
    #[error("lease {0} is not active (released)")]
    LeaseNotActive(LeaseId),
    /// The lease expired.
    #[error("lease {0} expired")]
    LeaseExpired(LeaseId),
    /// The caller does not own the lease.
    #[error("lease {0} belongs to another owner")]
    OwnerMismatch(LeaseId),
    /// The caller used this request_id before for a different request.
    #[error("request_id {0:?} was already used for a different request")]
    RequestIdReused(String),
    /// The waiting acquire behind this request timed out.
    #[error("lease {0} gave up waiting: wait timeout")]
    WaitTimeout(LeaseId),
    /// A fenced resource refused a token.
    #[error("fencing token {token} is stale: {last} already seen for {key:?}")]
    StaleFencingToken {
        /// The resource's key.
        key: String,
        /// The token presented.
        token: u64,
        /// The highest token the resource accepted.
        last: u64,
    },
    /// The request's mode does not suit the busy key's kind.
    #[error("lock {key:?} is {held} while it has holders or waiters; {asked} does not suit it")]
    LockModeConflict {
        /// The key.
        key: Arc<str>,
        /// What the key is: "a read-write lock" or "a semaphore of N".
        held: String,
        /// What the request asked for.
        asked: String,
    },
}

impl Error {
    /// The stable reason of this refusal.
    pub fn reason(&self) -> Reason {
        match self {
            Error::InvalidRequest(_) => Reason::InvalidRequest,
            Error::InvalidTtl { .. } => Reason::InvalidTtl,
            Error::LockHeld { .. } => Reason::LockHeld,
            Error::LockDelayed { .. } => Reason::LockDelayed,
            Error::TooManyWaiters { .. } => Reason::TooManyWaiters,
            Error::TooManyLocks(_) => Reason::TooManyLocks,
            Error::LeaseNotFound(_) => Reason::LeaseNotFound,
            Error::LeaseNotActive(_) => Reason::LeaseNotActive,
            Error::LeaseExpired(_) => Reason::LeaseExpired,
            Error::OwnerMismatch(_) => Reason::OwnerMismatch,
            Error::RequestIdReused(_) => Reason::RequestIdReused,
            Error::WaitTimeout(_) => Reason::WaitTimeout,
            Error::StaleFencingToken { .. } => Reason::StaleFencingToken,
            Error::LockModeConflict { .. } => Reason::LockModeConflict,
        }
    }

    /// See [`Reason::is_retryable`].
    pub fn is_retryable(&self) -> bool {
        self.reason().is_retryable()
    }
}

/// Why a snapshot could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes are not a snapshot this build can read.
    #[error("snapshot format {found} is not supported (this build reads {supported})")]
    UnsupportedFormat {
        /// The format number in the snapshot.
        found: u32,
        /// The format number this build writes and reads.
        supported: u32,
    },
    /// The bytes do not decode.
    #[error("snapshot is corrupt: {0}")]
    Corrupt(String),
    /// The snapshot decodes but breaks an invariant of the table.
    #[error("snapshot is inconsistent: {0}")]
    Inconsistent(String),
}
