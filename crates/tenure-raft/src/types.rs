//! The openraft type configuration: what a log entry carries and what
//! applying it answers.

use std::io::Cursor;

use serde::{Deserialize, Serialize};
use tenure_core::{Applied, Command};

/// A node's id in the cluster.
pub type NodeId = u64;

/// What one log entry asks of the lease table: commands applied in order,
/// each at its own position in the table's history (`Table::next_index`),
/// so a batch of commands is exactly those commands one after the other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The proposer's wall clock (Unix ms), for audit records only.
    pub at_ms: u64,
    /// The commands the table applies, in order (one or more).
    pub commands: Vec<Command>,
}

impl Proposal {
    /// A proposal of one command.
    pub fn one(at_ms: u64, command: Command) -> Proposal {
        Proposal {
            at_ms,
            commands: vec![command],
        }
    }
}

impl std::fmt::Display for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.commands.as_slice() {
            [one] => write!(f, "{}", one.name()),
            many => write!(f, "batch of {}", many.len()),
        }
    }
}

openraft::declare_raft_types!(
    /// Tenure's raft types: entries carry [`Proposal`]s, applying one answers
    /// the table's [`Applied`] for each of its commands, nodes are addressed
    /// by `host:port`.
    pub TypeConfig:
        D = Proposal,
        R = Vec<Applied>,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = crate::runtime::SeededRuntime,
);

/// The raft instance of a Tenure node.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log id of this configuration.
pub type LogId = openraft::LogId<NodeId>;
/// Storage errors of this configuration.
pub type StorageError = openraft::StorageError<NodeId>;
/// An entry of this configuration.
pub type Entry = openraft::Entry<TypeConfig>;
/// Snapshot metadata of this configuration.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
/// A stored membership of this configuration.
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
