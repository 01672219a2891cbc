//! The request memory: what each request_id did, for a bounded while.
//!
//! A client that timed out, or lost its leader, sends the same request again
//! with the same request_id. The memory answers it with the original lease
//! instead of applying it twice. Each record keeps the request's fingerprint
//! (operation, target, TTL) so that the same id on a *different* request is
//! refused (docs/reference.md, bug 3: the reference returned another lock's
//! lease instead). Records are keyed by `(tenant, owner, request_id)`: ids
//! are the caller's own namespace. They are forgotten by age in log entries
//! and by count (docs/reference.md, bug 5: the reference's grew without
//! bound).

use std::collections::{HashMap, VecDeque};

use std::sync::Arc;

use serde::de::Error as _;
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::lease::{LeaseId, LeaseView, Mode};

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
    /// The lock key for an acquire.
    pub key: Option<Arc<str>>,
    /// The lease for a renew or release; for an acquire, unset.
    pub lease: Option<LeaseId>,
    /// The TTL asked for (0 for a release).
    pub ttl_ms: u64,
    /// The mode an acquire asked for (EXCLUSIVE for the others).
    pub mode: Mode,
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
    /// What a renewal or release answered, for its retries; an acquire's
    /// retries read the lease as it is now. Boxed: most records are acquires.
    pub answer: Option<Box<LeaseView>>,
}

/// Remembered requests: a hash map for lookup and a queue, oldest first, for
/// forgetting. The hasher is seeded per process (request ids come from
/// clients, so a fixed seed would invite collisions); the map's order is
/// never observed: snapshots and digests list
/// the records in queue order, so every replica encodes the same bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RequestMemory {
    records: HashMap<Arc<str>, Remembered, foldhash::fast::RandomState>,
    order: VecDeque<Arc<str>>,
}

impl Serialize for RequestMemory {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.order.len()))?;
        for key in &self.order {
            seq.serialize_element(&(&**key, self.records.get(key)))?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for RequestMemory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = Vec::<(String, Option<Remembered>)>::deserialize(d)?;
        let mut memory = RequestMemory::default();
        for (key, record) in entries {
            let record = record.ok_or_else(|| D::Error::custom("request record missing"))?;
            let key: Arc<str> = key.into();
            if memory.records.insert(key.clone(), record).is_some() {
                return Err(D::Error::custom("request remembered twice"));
            }
            memory.order.push_back(key);
        }
        Ok(memory)
    }
}

/// The memory's key. NUL is outside every field's alphabet, so joining with
/// it is unambiguous: no (tenant, owner, id) triple can spell another.
pub(crate) fn request_key(buf: &mut String, tenant: &str, owner: &str, request_id: &str) {
    buf.clear();
    buf.push_str(tenant);
    buf.push('\0');
    buf.push_str(owner);
    buf.push('\0');
    buf.push_str(request_id);
}

impl RequestMemory {
    /// The record under `key`, if remembered.
    pub(crate) fn get(&self, key: &str) -> Option<&Remembered> {
        self.records.get(key)
    }

    /// Remembers a request; the key must not be remembered already.
    pub(crate) fn insert(&mut self, key: &str, record: Remembered) {
        let key: Arc<str> = key.into();
        self.order.push_back(key.clone());
        let previous = self.records.insert(key, record);
        assert!(
            previous.is_none(),
            "a request_id is remembered at most once"
        );
    }

    /// Forgets records older than `max_age` entries at `now`, and the oldest
    /// beyond `max_count`.
    pub(crate) fn evict(&mut self, now: u64, max_age: u64, max_count: u64) {
        while let Some(key) = self.order.front() {
            let index = self.records.get(key).map_or(0, |r| r.index);
            let too_old = index.saturating_add(max_age) <= now;
            let too_many = self.order.len() as u64 > max_count;
            if !(too_old || too_many) {
                break;
            }
            if let Some(key) = self.order.pop_front() {
                self.records.remove(&key);
            }
        }
    }

    /// The records, oldest first, with their keys.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&Arc<str>, &Remembered)> {
        self.order
            .iter()
            .filter_map(|k| self.records.get(k).map(|r| (k, r)))
    }

    /// A memory of `entries`, oldest first; a key twice is an error.
    pub(crate) fn from_entries(entries: Vec<(String, Remembered)>) -> Result<Self, String> {
        let mut memory = RequestMemory::default();
        for (key, record) in entries {
            let key: Arc<str> = key.into();
            if memory.records.insert(key.clone(), record).is_some() {
                return Err(format!(
                    "request {:?} remembered twice",
                    key.replace('\0', "/")
                ));
            }
            memory.order.push_back(key);
        }
        Ok(memory)
    }

    /// How many requests are remembered.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Internal consistency, for [`crate::Table::verify`].
    pub(crate) fn verify(&self, last_index: u64) -> Result<(), String> {
        if self.records.len() != self.order.len() {
            return Err(format!(
                "request memory has {} records but {} in its order",
                self.records.len(),
                self.order.len()
            ));
        }
        let mut last = 0;
        for key in &self.order {
            let Some(r) = self.records.get(key) else {
                return Err(format!(
                    "request memory order names a missing record {key:?}"
                ));
            };
            if r.index < last || r.index > last_index {
                return Err("request memory order is not by index".into());
            }
            last = r.index;
        }
        Ok(())
    }
}
