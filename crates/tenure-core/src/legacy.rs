//! Snapshots written before lock modes (formats 1 and 2).
//!
//! Postcard encodes a struct as its fields in order, with no names, so the
//! records that gained a field with lock modes (locks, leases, lease views
//! and request fingerprints) decode from older snapshots only through their
//! old shapes, mirrored here. Every lease then was EXCLUSIVE and every lock
//! a read-write lock without shared holders.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::Deserialize;

use crate::config::TableConfig;
use crate::lease::{EndReason, Lease, LeaseId, LeaseState, LeaseView, Lock, Mode};
use crate::requests::{Fingerprint, Op, Remembered, RequestMemory};
use crate::restore::Extra;
use crate::table::{State, Tenant};

#[derive(Deserialize)]
struct LockV2 {
    active: Option<LeaseId>,
    queue: VecDeque<LeaseId>,
    last_token: u64,
    delayed: bool,
}

#[derive(Deserialize)]
struct LeaseV2 {
    id: LeaseId,
    tenant: Arc<str>,
    key: Arc<str>,
    lock: u32,
    owner: Arc<str>,
    ttl_ms: u64,
    state: LeaseState,
    token: u64,
    version: u64,
    wait_timeout_ms: u64,
    ended: Option<EndReason>,
}

#[derive(Deserialize)]
struct LeaseViewV2 {
    id: LeaseId,
    tenant: Arc<str>,
    key: Arc<str>,
    owner: Arc<str>,
    ttl_ms: u64,
    state: LeaseState,
    token: u64,
    version: u64,
    wait_timeout_ms: u64,
    ended: Option<EndReason>,
}

#[derive(Deserialize)]
struct FingerprintV2 {
    op: Op,
    key: Option<Arc<str>>,
    lease: Option<LeaseId>,
    ttl_ms: u64,
}

#[derive(Deserialize)]
struct RememberedV2 {
    fingerprint: FingerprintV2,
    lease: LeaseId,
    index: u64,
    answer: Option<Box<LeaseViewV2>>,
}

/// The state as formats 1 (with a default `extra` appended) and 2 hold it.
#[derive(Deserialize)]
pub(crate) struct StateV2 {
    config: TableConfig,
    tenants: BTreeMap<Arc<str>, Tenant>,
    locks: Vec<LockV2>,
    leases: BTreeMap<LeaseId, LeaseV2>,
    requests: Vec<(String, Option<RememberedV2>)>,
    ended: VecDeque<(u64, LeaseId)>,
    audit_seq: u64,
    last_index: u64,
    index_offset: u64,
    extra: Extra,
}

impl StateV2 {
    /// The same state in today's shape.
    pub(crate) fn upgrade(self) -> Result<State, String> {
        let locks = self
            .locks
            .into_iter()
            .map(|l| Lock {
                active: l.active,
                queue: l.queue,
                last_token: l.last_token,
                delayed: l.delayed,
                shared: Vec::new(),
                limit: 0,
            })
            .collect();
        let leases = self
            .leases
            .into_iter()
            .map(|(id, l)| {
                let lease = Lease {
                    id: l.id,
                    tenant: l.tenant,
                    key: l.key,
                    lock: l.lock,
                    owner: l.owner,
                    ttl_ms: l.ttl_ms,
                    state: l.state,
                    token: l.token,
                    version: l.version,
                    wait_timeout_ms: l.wait_timeout_ms,
                    ended: l.ended,
                    mode: Mode::Exclusive,
                };
                (id, lease)
            })
            .collect();
        let mut entries = Vec::with_capacity(self.requests.len());
        for (key, record) in self.requests {
            let r = record.ok_or("request record missing")?;
            let answer = r.answer.map(|a| {
                Box::new(LeaseView {
                    id: a.id,
                    tenant: a.tenant,
                    key: a.key,
                    owner: a.owner,
                    ttl_ms: a.ttl_ms,
                    state: a.state,
                    token: a.token,
                    version: a.version,
                    wait_timeout_ms: a.wait_timeout_ms,
                    ended: a.ended,
                    mode: Mode::Exclusive,
                })
            });
            let fingerprint = Fingerprint {
                op: r.fingerprint.op,
                key: r.fingerprint.key,
                lease: r.fingerprint.lease,
                ttl_ms: r.fingerprint.ttl_ms,
                mode: Mode::Exclusive,
            };
            let record = Remembered {
                fingerprint,
                lease: r.lease,
                index: r.index,
                answer,
            };
            entries.push((key, record));
        }
        Ok(State {
            config: self.config,
            tenants: self.tenants,
            locks,
            leases,
            requests: RequestMemory::from_entries(entries)?,
            ended: self.ended,
            audit_seq: self.audit_seq,
            last_index: self.last_index,
            index_offset: self.index_offset,
            extra: self.extra,
        })
    }
}
