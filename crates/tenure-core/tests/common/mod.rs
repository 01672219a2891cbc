//! A small driver for the lease table: numbers log entries and builds commands.
#![allow(dead_code, missing_docs)]

use tenure_core::{
    Acquire, Applied, ApplyCtx, CancelCause, CancelWait, ClearLockDelay, Command, Error, Expire,
    ForceRelease, LeaseId, LeaseView, LockView, Mode, Release, Renew, Reply, Table, TableConfig,
};

pub const TTL: u64 = 10_000;

/// A table plus the next log index.
pub struct Driver {
    pub table: Table,
    pub index: u64,
}

impl Default for Driver {
    fn default() -> Self {
        Driver::new(TableConfig::default())
    }
}

impl Driver {
    pub fn new(config: TableConfig) -> Driver {
        Driver {
            table: Table::new(config).expect("valid config"),
            index: 0,
        }
    }

    pub fn apply(&mut self, command: Command) -> Applied {
        self.index += 1;
        let ctx = ApplyCtx {
            index: self.index,
            at_ms: 1_700_000_000_000 + self.index,
        };
        let applied = self.table.apply(ctx, command);
        if let Err(e) = self.table.verify() {
            panic!("invariant broken after entry {}: {e}", self.index);
        }
        applied
    }

    fn lease(applied: Applied) -> Result<LeaseView, Error> {
        match applied.result? {
            Reply::Lease(l) => Ok(l),
            other => panic!("expected a lease, got {other:?}"),
        }
    }

    pub fn acquire_wait(
        &mut self,
        tenant: &str,
        key: &str,
        owner: &str,
        rid: &str,
        ttl_ms: u64,
        wait_timeout_ms: u64,
    ) -> Result<LeaseView, Error> {
        Self::lease(self.apply(Command::Acquire(Acquire {
            tenant: tenant.into(),
            key: key.into(),
            owner: owner.into(),
            request_id: rid.into(),
            ttl_ms,
            wait_timeout_ms,
        })))
    }

    /// An acquire in `mode`, waiting up to `wait_timeout_ms`.
    pub fn acquire_in(
        &mut self,
        key: &str,
        owner: &str,
        rid: &str,
        mode: Mode,
        wait_timeout_ms: u64,
    ) -> Result<LeaseView, Error> {
        let acquire = Acquire {
            tenant: "t".into(),
            key: key.into(),
            owner: owner.into(),
            request_id: rid.into(),
            ttl_ms: TTL,
            wait_timeout_ms,
        };
        Self::lease(self.apply(Command::acquire(acquire, mode)))
    }

    pub fn acquire(
        &mut self,
        tenant: &str,
        key: &str,
        owner: &str,
        rid: &str,
    ) -> Result<LeaseView, Error> {
        self.acquire_wait(tenant, key, owner, rid, TTL, 0)
    }

    pub fn renew(
        &mut self,
        tenant: &str,
        id: LeaseId,
        owner: &str,
        rid: &str,
        ttl_ms: u64,
    ) -> Result<LeaseView, Error> {
        Self::lease(self.apply(Command::Renew(Renew {
            tenant: tenant.into(),
            lease_id: id,
            owner: owner.into(),
            request_id: rid.into(),
            ttl_ms,
        })))
    }

    pub fn release(
        &mut self,
        tenant: &str,
        id: LeaseId,
        owner: &str,
        rid: &str,
    ) -> Result<LeaseView, Error> {
        Self::lease(self.apply(Command::Release(Release {
            tenant: tenant.into(),
            lease_id: id,
            owner: owner.into(),
            request_id: rid.into(),
        })))
    }

    pub fn expire(&mut self, id: LeaseId) -> Applied {
        self.apply(Command::Expire(Expire {
            lease_id: id,
            expected_version: None,
        }))
    }

    pub fn cancel_wait(&mut self, id: LeaseId, cause: CancelCause) -> Applied {
        self.apply(Command::CancelWait(CancelWait {
            lease_id: id,
            cause,
        }))
    }

    pub fn force_release(
        &mut self,
        tenant: &str,
        key: &str,
        reason: &str,
    ) -> Result<LockView, Error> {
        match self
            .apply(Command::ForceRelease(ForceRelease {
                tenant: tenant.into(),
                key: key.into(),
                actor: "admin".into(),
                reason: reason.into(),
                lease_id: None,
            }))
            .result?
        {
            Reply::Lock(l) => Ok(l),
            other => panic!("expected a lock, got {other:?}"),
        }
    }

    pub fn clear_delay(&mut self, tenant: &str, key: &str) -> Applied {
        self.apply(Command::ClearLockDelay(ClearLockDelay {
            tenant: tenant.into(),
            key: key.into(),
        }))
    }
}
