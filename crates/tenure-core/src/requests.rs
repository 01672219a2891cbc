//! The request memory: what each request_id did, for a bounded while.
//!
//! A client that timed out, or lost its leader, sends the same request again
//! with the same request_id. The memory answers it with the original lease
//! instead of applying it twice. Each record keeps the request's fingerprint
//! (operation, target, TTL) so that the same id on a *different* request is
//! refused (the reference's bug 3 returned another lock's lease instead).
//! Records are keyed by `(tenant, owner, request_id)`: ids are the caller's
//! own namespace. They are forgotten by age in log entries and by count
//! (the reference's bug 5 grew without bound).

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::lease::LeaseId;

/// Which operation a request was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// An acquire.
    Acquire,
    /// A logged renewal.
    Renew,
    /// A release.
    Release,
}

/// What a request was, to tell a retry from a reuse.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The operation.
    pub op: Op,
    /// The lock key for an acquire, empty otherwise.
    pub key: String,
    /// The lease for a renew or release; for an acquire, unset.
    pub lease: Option<LeaseId>,
    /// The TTL asked for (0 for a release).
    pub ttl_ms: u64,
}

/// One remembered request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remembered {
    /// What it was.
    pub fingerprint: Fingerprint,
    /// The lease it created or acted on.
    pub lease: LeaseId,
    /// The log index at which it applied.
    pub index: u64,
}

/// Remembered requests, in a map for lookup and a queue for forgetting.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RequestMemory {
    records: BTreeMap<String, Remembered>,
    order: VecDeque<(u64, String)>,
}

/// The memory's key. NUL is outside every field's alphabet, so joining with
/// it is unambiguous: no (tenant, owner, id) triple can spell another.
pub(crate) fn request_key(tenant: &str, owner: &str, request_id: &str) -> String {
    let mut k = String::with_capacity(tenant.len() + owner.len() + request_id.len() + 2);
    k.push_str(tenant);
    k.push('\0');
    k.push_str(owner);
    k.push('\0');
    k.push_str(request_id);
    k
}

impl RequestMemory {
    /// The record under `key`, if remembered.
    pub(crate) fn get(&self, key: &str) -> Option<&Remembered> {
        self.records.get(key)
    }

    /// Remembers a request; the key must not be remembered already.
    pub(crate) fn insert(&mut self, key: String, record: Remembered) {
        self.order.push_back((record.index, key.clone()));
        let previous = self.records.insert(key, record);
        assert!(previous.is_none(), "a request_id is remembered at most once");
    }

    /// Forgets records older than `max_age` entries at `now`, and the oldest
    /// beyond `max_count`.
    pub(crate) fn evict(&mut self, now: u64, max_age: u64, max_count: u64) {
        while let Some((index, _)) = self.order.front() {
            let too_old = index.saturating_add(max_age) <= now;
            let too_many = self.order.len() as u64 > max_count;
            if !(too_old || too_many) {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.records.remove(&key);
            }
        }
    }

    /// How many requests are remembered.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Internal consistency, for [`crate::Table::verify`].
    pub(crate) fn verify(&self) -> Result<(), String> {
        if self.records.len() != self.order.len() {
            return Err(format!(
                "request memory has {} records but {} in its order",
                self.records.len(),
                self.order.len()
            ));
        }
        let mut last = 0;
        for (index, key) in &self.order {
            if *index < last {
                return Err("request memory order is not by index".into());
            }
            last = *index;
            match self.records.get(key) {
                Some(r) if r.index == *index => {}
                _ => return Err(format!("request memory order names a missing record {key:?}")),
            }
        }
        Ok(())
    }
}
