//! # tenure-core: the lease table
//!
//! The heart of Tenure is a pure, deterministic state machine: the table of
//! locks and leases that every replica holds, changed only by commands taken
//! from the Raft log, one at a time, in log order.
//!
//! ## Why this shape
//! Replication needs a state machine that gives the same answer on every node
//! for the same log. So the table reads no clock, draws no random number,
//! does no IO and iterates only ordered maps. Time enters as commands: the
//! leader watches deadlines on its own monotonic clock and proposes `Expire`
//! when one passes (docs/time.md, rules 1 and 2). The table stores TTLs,
//! never timestamps. Renewals that keep their TTL do not reach the log at
//! all; the leader checks them with [`Table::check_renew`] and extends its
//! own deadline (rule 3).
//!
//! ## What it keeps
//! - A [`Lock`] per `(tenant, key)` with its holder, its FIFO queue of
//!   WAITING leases, the last fencing token and a lock-delay mark.
//! - [`Lease`]s: WAITING → ACTIVE → RELEASED | EXPIRED, with a fencing token
//!   (`last_token + 1` per grant, per lock, never reset) and a version that
//!   counts logged transitions.
//! - The request memory: what each `(tenant, owner, request_id)` did, so a
//!   retry gets the original answer and a reuse is refused.
//! - An audit sequence without gaps.
//!
//! ## Invariants
//! At most one ACTIVE lease per lock; tokens strictly increase per lock; a
//! WAITING lease is in exactly its lock's queue; a queue is non-empty only
//! behind a holder or a lock-delay; memories stay within their bounds.
//! [`Table::verify`] checks them all; `apply` asserts them where it makes them.
//!
//! ## Example
//! ```
//! use tenure_core::{Acquire, ApplyCtx, Command, Reason, Reply, Table, TableConfig};
//!
//! let mut table = Table::new(TableConfig::default())?;
//! let acquire = |owner: &str, request_id: &str| {
//!     Command::Acquire(Acquire {
//!         tenant: "acme".into(),
//!         key: "jobs/nightly".into(),
//!         owner: owner.into(),
//!         request_id: request_id.into(),
//!         ttl_ms: 15_000,
//!         wait_timeout_ms: 0,
//!     })
//! };
//! // Each command applies at the next position of the table's history; the
//! // lease id is the position of the Acquire that created it.
//! let first = table.apply(ApplyCtx { index: 1, at_ms: 0 }, acquire("worker-1", "req-1"));
//! let Ok(Reply::Lease(lease)) = first.result else { panic!("granted") };
//! assert_eq!(lease.token, 1);
//!
//! let second = table.apply(ApplyCtx { index: 2, at_ms: 0 }, acquire("worker-2", "req-1"));
//! assert_eq!(second.result.unwrap_err().reason(), Reason::LockHeld);
//! # Ok::<(), tenure_core::Error>(())
//! ```
//!
//! ## Deliberately left out
//! Deadlines, timers, identity and transport: the server owns those. Idle
//! lock records are never compacted (their token must survive). Were they
//! ever compacted, a re-created lock would have to start its tokens at the
//! table's current position, which is above every token the lock ever gave
//! out (docs/architecture.md, "tenure-core").

mod audit;
pub mod backup;
mod command;
mod config;
mod error;
mod fence;
mod lease;
mod legacy;
mod query;
mod requests;
pub mod restore;
mod snapshot;
mod table;
pub mod validate;
mod verify;

pub use audit::{AuditEvent, AuditEventV1, AuditKind, Holder, SYSTEM_ACTOR};
pub use command::{
    Acquire, AcquireWith, Applied, ApplyCtx, CancelCause, CancelWait, ClearLockDelay, Command,
    Expire, ForceRelease, Import, Name, Release, Renew, Reply, RestoreAbort, RestoreBegin,
    RestoreChunk, RestoreCommit, RestoreReport,
};
pub use config::{DEFAULT_RETENTION_COUNT, TableConfig};
pub use error::{Error, Reason, SnapshotError};
pub use fence::FencedResource;
pub use lease::{EndReason, Lease, LeaseId, LeaseState, LeaseView, Lock, LockView, Mode};
pub use query::Stats;
pub use requests::{Fingerprint, Op};
pub use snapshot::SNAPSHOT_FORMAT;
pub use table::Table;
