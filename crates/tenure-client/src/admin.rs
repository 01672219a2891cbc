//! What the Admin calls answer, as plain Rust values (the wire messages stay
//! inside the client).

use tenure_proto::v1;

/// A node's role in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeRole {
    /// It leads.
    Leader,
    /// It follows a leader.
    Follower,
    /// It is campaigning.
    Candidate,
    /// It replicates but does not vote (catching up after `add_node`).
    Learner,
    /// It did not say (stopping, or a newer server's role).
    Unknown,
}

impl NodeRole {
    /// The role's name in lower case (`leader`, `follower`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Leader => "leader",
            NodeRole::Follower => "follower",
            NodeRole::Candidate => "candidate",
            NodeRole::Learner => "learner",
            NodeRole::Unknown => "unknown",
        }
    }

    fn from_wire(role: i32) -> NodeRole {
        match v1::NodeRole::try_from(role) {
            Ok(v1::NodeRole::Leader) => NodeRole::Leader,
            Ok(v1::NodeRole::Follower) => NodeRole::Follower,
            Ok(v1::NodeRole::Candidate) => NodeRole::Candidate,
            Ok(v1::NodeRole::Learner) => NodeRole::Learner,
            _ => NodeRole::Unknown,
        }
    }
}

/// A member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its id.
    pub node_id: u64,
    /// The address other nodes and clients reach it at.
    pub address: String,
    /// Whether it votes (false: a learner).
    pub voter: bool,
}

/// One node's view of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// The answering node.
    pub node_id: u64,
    /// Its role.
    pub role: NodeRole,
    /// The leader it knows of, if any.
    pub leader_id: Option<u64>,
    /// The leader's client address, if known.
    pub leader_address: Option<String>,
    /// Its raft term.
    pub term: u64,
    /// The highest log index it knows to be committed.
    pub commit_index: u64,
    /// The highest log index it applied.
    pub applied_index: u64,
    /// The members, as its latest membership says.
    pub members: Vec<Member>,
    /// SHA-256 of its lease table, hex: replicas at the same index agree.
    pub table_digest: String,
    /// The latest audit sequence number it applied.
    pub audit_sequence: u64,
    /// Lock records in its table.
    pub locks: u64,
    /// ACTIVE leases.
    pub active_leases: u64,
    /// WAITING leases.
    pub waiting_leases: u64,
    /// Its software version.
    pub version: String,
    /// Its disk flushes (fsyncs) since it started.
    pub disk_flushes: u64,
    /// The limits in force in its applied table (`None` from a node that
    /// does not report them).
    pub limits: Option<tenure_core::TableConfig>,
    /// The cluster's id (`None`: never named).
    pub cluster_id: Option<String>,
    /// Every grant's fencing token is above this (0 until a restore).
    pub token_floor: u64,
    /// The oldest audit sequence the node keeps (0: none kept).
    pub audit_retained_from: u64,
}

/// Limits to change with [`Client::configure`](crate::Client::configure);
/// `None` keeps the one in force.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LimitChanges {
    /// Shortest TTL a lease may ask for.
    pub ttl_min_ms: Option<u64>,
    /// Longest TTL a lease may ask for.
    pub ttl_max_ms: Option<u64>,
    /// Longest wait a waiting acquire may ask for.
    pub max_wait_timeout_ms: Option<u64>,
    /// Lock-delay after an expiry (0: none).
    pub lock_delay_ms: Option<u64>,
    /// Bound on each lock's waiting queue.
    pub max_waiters_per_lock: Option<u32>,
    /// Bound on lock records per tenant.
    pub max_locks_per_tenant: Option<u64>,
    /// Bound on tenants.
    pub max_tenants: Option<u64>,
    /// Log entries after which a request_id is forgotten.
    pub request_retention_entries: Option<u64>,
    /// Request ids remembered at most.
    pub request_retention_count: Option<u64>,
    /// Log entries after which an ended lease is forgotten.
    pub lease_retention_entries: Option<u64>,
    /// Ended leases kept at most.
    pub lease_retention_count: Option<u64>,
}

impl From<&LimitChanges> for v1::ConfigureRequest {
    fn from(c: &LimitChanges) -> v1::ConfigureRequest {
        v1::ConfigureRequest {
            ttl_min_ms: c.ttl_min_ms,
            ttl_max_ms: c.ttl_max_ms,
            max_wait_timeout_ms: c.max_wait_timeout_ms,
            lock_delay_ms: c.lock_delay_ms,
            max_waiters_per_lock: c.max_waiters_per_lock,
            max_locks_per_tenant: c.max_locks_per_tenant,
            max_tenants: c.max_tenants,
            request_retention_entries: c.request_retention_entries,
            request_retention_count: c.request_retention_count,
            lease_retention_entries: c.lease_retention_entries,
            lease_retention_count: c.lease_retention_count,
        }
    }
}

/// The members once a membership change committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    /// The members.
    pub members: Vec<Member>,
    /// The log index at which the change committed.
    pub log_index: u64,
}

/// Who leads after a transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leadership {
    /// The new leader.
    pub leader_id: u64,
    /// Its term.
    pub term: u64,
}

/// What an exported snapshot holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The node that made it.
    pub source_node_id: u64,
    /// The last log index it includes.
    pub index: u64,
    /// The term of that index.
    pub term: u64,
    /// The lease table's snapshot format number.
    pub format: u32,
    /// Its size in bytes.
    pub total_bytes: u64,
    /// SHA-256 of the table it holds, hex.
    pub table_digest: String,
}

/// What an import restored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imported {
    /// Bytes the leader received.
    pub bytes_received: u64,
    /// The log index at which the restored table took effect.
    pub index: u64,
    /// SHA-256 of the restored table, hex.
    pub table_digest: String,
    /// Its latest audit sequence number.
    pub audit_sequence: u64,
}

fn nonzero(id: u64) -> Option<u64> {
    (id != 0).then_some(id)
}

fn nonempty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

impl From<v1::Member> for Member {
    fn from(m: v1::Member) -> Member {
        Member {
            node_id: m.node_id,
            address: m.address,
            voter: m.voter,
        }
    }
}

impl From<v1::StatusResponse> for NodeStatus {
    fn from(s: v1::StatusResponse) -> NodeStatus {
        NodeStatus {
            node_id: s.node_id,
            role: NodeRole::from_wire(s.role),
            leader_id: nonzero(s.leader_id),
            leader_address: nonempty(s.leader_address),
            term: s.term,
            commit_index: s.commit_index,
            applied_index: s.applied_index,
            members: s.members.into_iter().map(Member::from).collect(),
            table_digest: s.table_digest,
            audit_sequence: s.audit_sequence,
            locks: s.locks,
            active_leases: s.active_leases,
            waiting_leases: s.waiting_leases,
            version: s.version,
            disk_flushes: s.disk_flushes,
            limits: s.limits.as_ref().map(tenure_proto::convert::table_config),
            cluster_id: nonempty(s.cluster_id),
            token_floor: s.token_floor,
            audit_retained_from: s.audit_retained_from,
        }
    }
}

/// How to restore a backup with [`Client::restore`](crate::Client::restore).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Merge into the locks the cluster holds (otherwise it must hold none).
    pub merge: bool,
    /// How far above every token the backup knew the next grants start
    /// (`None`: the server's default, 2^20).
    pub token_gap: Option<u64>,
}

/// What a restore did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreDone {
    /// The counts, the position, the token floor; `already` when the backup
    /// was restored before and nothing changed.
    pub report: tenure_core::RestoreReport,
    /// The backup's SHA-256.
    pub backup_sha256: String,
    /// The table's digest after the restore.
    pub table_digest: String,
    /// The cluster's id after the restore.
    pub cluster_id: String,
    /// Bytes the leader received.
    pub bytes_received: u64,
}

impl From<v1::RestoreResponse> for RestoreDone {
    fn from(r: v1::RestoreResponse) -> RestoreDone {
        RestoreDone {
            report: tenure_core::RestoreReport {
                already: r.already_restored,
                index: r.index,
                audit_seq: r.audit_sequence,
                token_floor: r.token_floor,
                token_gap: r.token_gap,
                locks: r.locks,
                active: r.active_leases,
                dropped_waiters: r.dropped_waiters,
                skipped: r.skipped_leases,
                requests: r.requests,
                ended: r.ended_leases,
                merged: r.merged,
            },
            backup_sha256: r.backup_sha256,
            table_digest: r.table_digest,
            cluster_id: r.cluster_id,
            bytes_received: r.bytes_received,
        }
    }
}

impl From<v1::MembershipResponse> for Membership {
    fn from(m: v1::MembershipResponse) -> Membership {
        Membership {
            members: m.members.into_iter().map(Member::from).collect(),
            log_index: m.log_index,
        }
    }
}

impl From<v1::TransferLeaderResponse> for Leadership {
    fn from(t: v1::TransferLeaderResponse) -> Leadership {
        Leadership {
            leader_id: t.leader_id,
            term: t.term,
        }
    }
}

impl From<v1::SnapshotMeta> for SnapshotInfo {
    fn from(m: v1::SnapshotMeta) -> SnapshotInfo {
        SnapshotInfo {
            source_node_id: m.source_node_id,
            index: m.index,
            term: m.term,
            format: m.format,
            total_bytes: m.total_bytes,
            table_digest: m.table_digest,
        }
    }
}

impl From<v1::ImportSnapshotResponse> for Imported {
    fn from(r: v1::ImportSnapshotResponse) -> Imported {
        Imported {
            bytes_received: r.bytes_received,
            index: r.index,
            table_digest: r.table_digest,
            audit_sequence: r.audit_sequence,
        }
    }
}
