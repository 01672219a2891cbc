//! Audit events: one per logged transition, numbered without gaps.
//!
//! The sequence is per cluster, starts at 1 and is part of the replicated
//! state, so every replica numbers the same transition the same way and a
//! reader can tell a missed event from a quiet table. Renewals that keep
//! their TTL never reach the log and so never appear here.

use std::sync::{Arc, LazyLock};

use serde::{Deserialize, Serialize};

use crate::lease::{LeaseId, Mode};

/// The actor recorded for transitions the cluster itself makes.
pub const SYSTEM_ACTOR: &str = "system";

/// [`SYSTEM_ACTOR`], shared rather than allocated per event.
pub(crate) static SYSTEM: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(SYSTEM_ACTOR));

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuditKind {
    /// A lease was granted (at once, or handed over from the queue).
    LeaseAcquire,
    /// A lease was queued behind the holder.
    LeaseWait,
    /// A lease's TTL was changed.
    LeaseRenew,
    /// A lease was released by its owner.
    LeaseRelease,
    /// A lease expired.
    LeaseExpire,
    /// A waiter left its queue (timeout or cancellation).
    LeaseWaitCancel,
    /// An operator force-released a lock.
    ForceRelease,
    /// A lock entered its lock-delay.
    LockDelaySet,
    /// A lock's lock-delay ended.
    LockDelayClear,
    /// A backup was restored: tenant and key are empty, the token is the
    /// new token floor, the detail names the backup and the gap.
    Restore,
}

impl AuditKind {
    /// The reference's event names, extended with ours.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::LeaseAcquire => "LEASE_ACQUIRE",
            AuditKind::LeaseWait => "LEASE_WAIT",
            AuditKind::LeaseRenew => "LEASE_RENEW",
            AuditKind::LeaseRelease => "LEASE_RELEASE",
            AuditKind::LeaseExpire => "LEASE_EXPIRE",
            AuditKind::LeaseWaitCancel => "LEASE_WAIT_CANCEL",
            AuditKind::ForceRelease => "FORCE_RELEASE",
            AuditKind::LockDelaySet => "LOCK_DELAY_SET",
            AuditKind::LockDelayClear => "LOCK_DELAY_CLEAR",
            AuditKind::Restore => "RESTORE",
        }
    }
}

/// One logged transition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Gap-free, per cluster, from 1.
    pub seq: u64,
    /// The log index of the command that caused it.
    pub index: u64,
    /// The proposer's wall clock (Unix ms); informational.
    pub at_ms: u64,
    /// What happened.
    pub kind: AuditKind,
    /// The tenant.
    pub tenant: Arc<str>,
    /// The lock.
    pub key: Arc<str>,
    /// The lease concerned, if any (none for lock-delay events).
    pub lease_id: Option<LeaseId>,
    /// The lease's owner, if any.
    pub owner: Option<Arc<str>>,
    /// The fencing token involved (0 when none).
    pub token: u64,
    /// Who caused it: the owner, an admin, or [`SYSTEM_ACTOR`].
    pub actor: Arc<str>,
    /// Free text: a force-release reason, a lock-delay length, a new TTL.
    pub detail: Option<String>,
    /// The mode of the lease concerned (EXCLUSIVE when none is).
    pub mode: Mode,
    /// The lock's holders right after the event, in grant order (the
    /// exclusive holder first); empty for a restore.
    pub holders: Vec<Holder>,
}

/// One holder of a lock, as an audit event lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The holding lease.
    pub lease_id: LeaseId,
    /// Its owner.
    pub owner: Arc<str>,
    /// Its fencing token.
    pub token: u64,
    /// How it holds.
    pub mode: Mode,
}

/// An audit event as builds before lock modes stored it (without `mode`
/// and `holders`): kept audit histories written then still read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEventV1 {
    /// See [`AuditEvent::seq`].
    pub seq: u64,
    /// See [`AuditEvent::index`].
    pub index: u64,
    /// See [`AuditEvent::at_ms`].
    pub at_ms: u64,
    /// See [`AuditEvent::kind`].
    pub kind: AuditKind,
    /// See [`AuditEvent::tenant`].
    pub tenant: Arc<str>,
    /// See [`AuditEvent::key`].
    pub key: Arc<str>,
    /// See [`AuditEvent::lease_id`].
    pub lease_id: Option<LeaseId>,
    /// See [`AuditEvent::owner`].
    pub owner: Option<Arc<str>>,
    /// See [`AuditEvent::token`].
    pub token: u64,
    /// See [`AuditEvent::actor`].
    pub actor: Arc<str>,
    /// See [`AuditEvent::detail`].
    pub detail: Option<String>,
}

impl From<AuditEventV1> for AuditEvent {
    /// Every lease before modes was exclusive; the holders were not kept.
    fn from(e: AuditEventV1) -> AuditEvent {
        AuditEvent {
            seq: e.seq,
            index: e.index,
            at_ms: e.at_ms,
            kind: e.kind,
            tenant: e.tenant,
            key: e.key,
            lease_id: e.lease_id,
            owner: e.owner,
            token: e.token,
            actor: e.actor,
            detail: e.detail,
            mode: Mode::Exclusive,
            holders: Vec::new(),
        }
    }
}
