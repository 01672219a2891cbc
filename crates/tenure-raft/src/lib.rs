//! # tenure-raft: replication
//!
//! The openraft side of Tenure: the type configuration ([`TypeConfig`]: log
//! entries carry tenure-core commands, applying one answers the table's
//! reply), the log store and the state machine over a [`Disk`] — sled in
//! production, an in-memory disk with the same durability boundary in
//! simulations — and the seeded async runtime that makes elections
//! reproducible.
//!
//! ## Why this shape
//! One log store and one state machine, generic over the medium, rather than
//! two of each: the simulated disk then tests the very code that runs in
//! production, and openraft's storage suite runs against both media. The
//! state machine applies entries through `tenure_core::Table::apply` and
//! nothing else.
//!
//! ## Invariants
//! An append is acknowledged to openraft only after a flush; a vote is durable
//! before `save_vote` returns; a purge point is durable before entries below it
//! are removed; a snapshot that does not restore is refused.
//!
//! ## Deliberately left out
//! Lock semantics (tenure-core), timers and deadlines (the server). The
//! transport ([`transport`]) moves openraft's own messages; it adds no
//! protocol of its own.

// openraft's StorageError is large, and its traits fix it as our error type.
#![allow(clippy::result_large_err)]

pub mod audit;
#[cfg(test)]
mod decode_tests;
pub mod disk;
pub mod elections;
pub mod log_store;
pub mod proposer;
pub mod reads;
pub mod runtime;
pub mod state_machine;
pub mod transport;
pub mod types;

pub use audit::{AuditHistory, AuditRetention};
pub use disk::{Disk, DiskError, FileDisk, SimDisk, Space};
pub use elections::Elections;
pub use log_store::LogStore;
pub use proposer::{Committed, Proposer, WriteError};
pub use reads::{QuorumReads, ReadError};
pub use runtime::{SeededRuntime, seed_thread_rng};
pub use state_machine::{Applier, Notice, StateMachineStore, TableReader};
pub use transport::{Connector, Control, Network, Observed, RaftService, TcpConnector, control};
pub use types::{LogId, NodeId, Proposal, Raft, TypeConfig};
