//! The table's configuration: bounds and retention.
//!
//! The configuration is *replicated state*: it arrives through a `Configure`
//! command and is part of every snapshot, so two replicas can never judge the
//! same command by different bounds. A fresh table starts from
//! [`TableConfig::default`], which follows the reference (TTL 10..=300 s).

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Bounds and retention of the lease table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableConfig {
    /// Shortest TTL a lease may ask for.
    pub min_ttl_ms: u64,
    /// Longest TTL a lease may ask for.
    pub max_ttl_ms: u64,
    /// Longest wait a waiting acquire may ask for.
    pub max_wait_timeout_ms: u64,
    /// After an expiry the key stays ungranted this long (0: no lock-delay).
    pub lock_delay_ms: u64,
    /// Bound on each lock's waiting queue.
    pub max_waiters_per_lock: u32,
    /// Bound on lock records per tenant (records are never removed: their
    /// tokens must survive).
    pub max_locks_per_tenant: u64,
    /// Bound on tenants.
    pub max_tenants: u64,
    /// A remembered request_id is forgotten after this many log entries.
    pub request_retention_entries: u64,
    /// At most this many request_ids are remembered; the oldest go first.
    pub request_retention_count: u64,
    /// A terminal lease is forgotten after this many log entries.
    pub lease_retention_entries: u64,
    /// At most this many terminal leases are kept; the oldest go first.
    pub lease_retention_count: u64,
}

/// How many request ids, and how many ended leases, a table remembers by
/// default. Each costs memory on every node and bytes in every snapshot
/// (about 1.1 KiB of memory per remembered acquire and release, with their
/// lease): 1,000,000 request ids and 500,000 ended leases made a 114 MB
/// snapshot that took 1.2 s to copy and encode (artifacts/bench/core.md).
pub const DEFAULT_RETENTION_COUNT: u64 = 100_000;

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            min_ttl_ms: 10_000,
            max_ttl_ms: 300_000,
            max_wait_timeout_ms: 300_000,
            lock_delay_ms: 0,
            max_waiters_per_lock: 1024,
            max_locks_per_tenant: 1_000_000,
            max_tenants: 10_000,
            request_retention_entries: 1_000_000,
            request_retention_count: DEFAULT_RETENTION_COUNT,
            lease_retention_entries: 1_000_000,
            lease_retention_count: DEFAULT_RETENTION_COUNT,
        }
    }
}

impl TableConfig {
    /// Refuses a configuration that could not work.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::InvalidRequest(format!("config: {m}")));
        if self.min_ttl_ms == 0 {
            return bad("min_ttl_ms must be at least 1");
        }
        if self.min_ttl_ms > self.max_ttl_ms {
            return bad("min_ttl_ms must not exceed max_ttl_ms");
        }
        if self.max_waiters_per_lock == 0 {
            return bad("max_waiters_per_lock must be at least 1");
        }
        if self.max_locks_per_tenant == 0 || self.max_tenants == 0 {
            return bad("max_locks_per_tenant and max_tenants must be at least 1");
        }
        if self.request_retention_entries == 0 || self.request_retention_count == 0 {
            return bad("request retention must be at least 1 entry and 1 request");
        }
        if self.lease_retention_entries == 0 || self.lease_retention_count == 0 {
            return bad("lease retention must be at least 1 entry and 1 lease");
        }
        Ok(())
    }

    /// Checks a TTL against the bounds.
    pub fn check_ttl(&self, ttl_ms: u64) -> Result<(), Error> {
        if ttl_ms < self.min_ttl_ms || ttl_ms > self.max_ttl_ms {
            return Err(Error::InvalidTtl {
                ttl_ms,
                min_ms: self.min_ttl_ms,
                max_ms: self.max_ttl_ms,
            });
        }
        Ok(())
    }
}
