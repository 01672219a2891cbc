//! Reads of the lease table: locks, leases, listings, and what a new leader
//! needs to arm its timers. Nothing here changes the table.

use std::ops::Bound;
use std::sync::Arc;

use crate::config::TableConfig;
use crate::error::Error;
use crate::lease::{Lease, LeaseId, LeaseState, LeaseView, Lock, LockView};
use crate::table::Table;
use crate::validate;

/// Counts for status pages and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Tenants with at least one lock record.
    pub tenants: usize,
    /// Lock records.
    pub locks: usize,
    /// ACTIVE leases.
    pub active: usize,
    /// WAITING leases.
    pub waiting: usize,
    /// Terminal leases still remembered.
    pub ended: usize,
    /// Remembered request ids.
    pub requests: usize,
}

impl Table {
    /// The slot of a lock record, with its interned tenant and key.
    pub(crate) fn lock_entry(&self, tenant: &str, key: &str) -> Option<(Arc<str>, Arc<str>, u32)> {
        let t = self.state.tenants.get(tenant)?;
        let (key, slot) = t.locks.get_key_value(key)?;
        Some((t.name.clone(), key.clone(), *slot))
    }

    pub(crate) fn lock_view(&self, tenant: &Arc<str>, key: &Arc<str>, lock: &Lock) -> LockView {
        LockView {
            tenant: tenant.clone(),
            key: key.clone(),
            active: lock
                .holders()
                .next()
                .and_then(|id| self.state.leases.get(&id))
                .map(Lease::view),
            holders: lock
                .holders()
                .filter_map(|id| self.state.leases.get(&id))
                .map(Lease::view)
                .collect(),
            // An idle key has no kind: its next request gives it one.
            limit: if lock.is_busy() { lock.limit } else { 0 },
            last_token: lock.last_token,
            waiters: u32::try_from(lock.queue.len()).unwrap_or(u32::MAX),
            delayed: lock.delayed,
        }
    }

    /// The state of one lock; a lock never asked for is free with token 0.
    pub fn lock(&self, tenant: &str, key: &str) -> LockView {
        match self.lock_entry(tenant, key) {
            Some((t, k, slot)) => self.lock_view(&t, &k, &self.state.locks[slot as usize]),
            None => self.lock_view(&tenant.into(), &key.into(), &Lock::default()),
        }
    }

    /// The tenant a lease belongs to, if the table holds it.
    pub fn tenant_of(&self, id: LeaseId) -> Option<&str> {
        self.state.leases.get(&id).map(|l| &*l.tenant)
    }

    /// One lease, if it exists in `tenant` (other tenants' leases do not).
    pub fn lease(&self, tenant: &str, id: LeaseId) -> Result<LeaseView, Error> {
        self.state
            .leases
            .get(&id)
            .filter(|l| &*l.tenant == tenant)
            .map(Lease::view)
            .ok_or_else(|| Error::LeaseNotFound(id.to_string()))
    }

    /// Up to `limit` locks of `tenant` whose key starts with `prefix`, in key
    /// order, after the key `after` (for pagination).
    pub fn list(
        &self,
        tenant: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<LockView>, Error> {
        validate::tenant(tenant)?;
        validate::prefix(prefix)?;
        let Some(t) = self.state.tenants.get(tenant) else {
            return Ok(Vec::new());
        };
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        Ok(t.locks
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, slot)| self.lock_view(&t.name, k, &self.state.locks[*slot as usize]))
            .collect())
    }

    /// WAITING and ACTIVE leases, by id: what a new leader arms timers for.
    pub fn live_leases(&self) -> impl Iterator<Item = &Lease> {
        self.state
            .leases
            .values()
            .filter(|l| !l.state.is_terminal())
    }

    /// `(tenant, key)` of every lock inside a lock-delay.
    pub fn delayed_locks(&self) -> impl Iterator<Item = (&str, &str)> {
        self.state.tenants.iter().flat_map(|(t, ten)| {
            ten.locks
                .iter()
                .filter(|(_, slot)| self.state.locks[**slot as usize].delayed)
                .map(move |(k, _)| (&**t, &**k))
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &TableConfig {
        &self.state.config
    }

    /// The sequence number of the latest audit event (0: none yet).
    pub fn audit_seq(&self) -> u64 {
        self.state.audit_seq
    }

    /// The log index of the latest applied command (0: none yet).
    pub fn last_index(&self) -> u64 {
        self.state.last_index
    }

    /// The `ApplyCtx::index` to give the next command when commands are
    /// numbered one by one rather than by their log entry (several commands
    /// share a replicated entry): the applied position that follows the
    /// last one. Every replica computes the same number from the same state.
    pub fn next_index(&self) -> u64 {
        (self.state.last_index - self.state.index_offset).saturating_add(1)
    }

    /// Counts of what the table holds.
    pub fn stats(&self) -> Stats {
        let mut s = Stats {
            tenants: self.state.tenants.len(),
            ended: self.state.ended.len(),
            requests: self.state.requests.len(),
            ..Stats::default()
        };
        s.locks = self.state.locks.len();
        for l in self.state.leases.values() {
            match l.state {
                LeaseState::Active => s.active += 1,
                LeaseState::Waiting => s.waiting += 1,
                _ => {}
            }
        }
        s
    }
}
