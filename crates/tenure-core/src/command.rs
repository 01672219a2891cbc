//! Commands in, replies and audit events out.
//!
//! A command is what one Raft log entry asks of the table. Client requests
//! (`Acquire`, `Renew` with a new TTL, `Release`) carry the caller's identity
//! as `owner`, already authenticated by the server. The leader's own commands
//! (`Expire`, `CancelWait`, `ClearLockDelay`) are how time enters the table:
//! the table never reads a clock, it only hears that a deadline passed.

use serde::{Deserialize, Serialize};

use crate::audit::AuditEvent;
use crate::config::TableConfig;
use crate::error::Error;
use crate::lease::{LeaseId, LeaseView, LockView, Mode};
pub use crate::restore::{
    Name, RestoreAbort, RestoreBegin, RestoreChunk, RestoreCommit, RestoreReport,
};
use crate::validate;

/// Where in the log a command applies, and the proposer's wall-clock reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApplyCtx {
    /// The command's position in the table's history: strictly increasing
    /// across applies. The state machine gives each command of a log entry
    /// the next one ([`Table::next_index`](crate::Table::next_index)), so
    /// it is not the raft log index once entries carry several commands.
    pub index: u64,
    /// The proposer's wall clock (Unix ms), recorded in audit events only and
    /// never used to decide anything.
    pub at_ms: u64,
}

/// One mutation of the lease table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Take a lock, or queue for it.
    Acquire(Acquire),
    /// Change a lease's TTL (a renewal that keeps the TTL never needs the log).
    Renew(Renew),
    /// Give a lease up.
    Release(Release),
    /// The leader saw a lease's deadline pass.
    Expire(Expire),
    /// A waiter gives up: its wait timed out or its caller went away.
    CancelWait(CancelWait),
    /// An operator frees a lock.
    ForceRelease(ForceRelease),
    /// The leader saw a lock-delay pass.
    ClearLockDelay(ClearLockDelay),
    /// Replace the table's bounds and retention.
    Configure(TableConfig),
    /// Restore an exported snapshot into a table that never held a lock.
    Import(Import),
    /// Name the cluster (once).
    Name(Name),
    /// Start staging a backup to restore.
    RestoreBegin(RestoreBegin),
    /// The next bytes of the backup being staged.
    RestoreChunk(RestoreChunk),
    /// Put the staged backup in place.
    RestoreCommit(RestoreCommit),
    /// Drop the staged backup.
    RestoreAbort(RestoreAbort),
    /// Take a lock SHARED or as a semaphore, or queue for it. The exclusive
    /// form stays [`Command::Acquire`], so every entry written before modes
    /// existed reads the same; build either with [`Command::acquire`].
    AcquireWith(AcquireWith),
}

impl Command {
    /// The operation's name in logs and scripts.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Acquire(_) => "acquire",
            Command::Renew(_) => "renew",
            Command::Release(_) => "release",
            Command::Expire(_) => "expire",
            Command::CancelWait(_) => "cancel-wait",
            Command::ForceRelease(_) => "force-release",
            Command::ClearLockDelay(_) => "clear-lock-delay",
            Command::Configure(_) => "configure",
            Command::Import(_) => "import",
            Command::Name(_) => "name",
            Command::RestoreBegin(_) => "restore-begin",
            Command::RestoreChunk(_) => "restore-chunk",
            Command::RestoreCommit(_) => "restore-commit",
            Command::RestoreAbort(_) => "restore-abort",
            Command::AcquireWith(_) => "acquire",
        }
    }

    /// An acquire in `mode`: [`Command::Acquire`] when exclusive, otherwise
    /// [`Command::AcquireWith`].
    pub fn acquire(acquire: Acquire, mode: Mode) -> Command {
        match mode {
            Mode::Exclusive => Command::Acquire(acquire),
            mode => Command::AcquireWith(AcquireWith { acquire, mode }),
        }
    }

    /// The acquire this command is, with its mode, if it is one.
    pub fn as_acquire(&self) -> Option<(&Acquire, Mode)> {
        match self {
            Command::Acquire(c) => Some((c, Mode::Exclusive)),
            Command::AcquireWith(c) => Some((&c.acquire, c.mode)),
            _ => None,
        }
    }

    /// Whether the command is large or slow to apply, and so travels in a
    /// log entry of its own.
    pub fn travels_alone(&self) -> bool {
        matches!(
            self,
            Command::Import(_) | Command::RestoreChunk(_) | Command::RestoreCommit(_)
        )
    }

    /// The command's own fields, checked without the table: lengths and
    /// alphabets of names and ids, and a configuration's consistency. The
    /// one definition both the leader's check before proposing
    /// ([`crate::Table::precheck`]) and the replicated apply use.
    pub fn check(&self) -> Result<(), Error> {
        match self {
            Command::Acquire(c) => c.check(),
            Command::AcquireWith(c) => c.check(),
            Command::Renew(c) => c.check(),
            Command::Release(c) => c.check(),
            Command::ForceRelease(c) => c.check(),
            Command::Configure(c) => c.validate(),
            Command::Name(c) => c.check(),
            Command::RestoreBegin(c) => c.check(),
            Command::Expire(_)
            | Command::RestoreChunk(_)
            | Command::RestoreCommit(_)
            | Command::RestoreAbort(_)
            | Command::CancelWait(_)
            | Command::ClearLockDelay(_)
            | Command::Import(_) => Ok(()),
        }
    }

    /// The command's values against the table's configured bounds (TTL,
    /// wait). A retry of a remembered request skips this check: a Configure
    /// in between must not turn the original answer into a refusal.
    pub fn check_bounds(&self, config: &TableConfig) -> Result<(), Error> {
        match self {
            Command::Acquire(c) => c.check_bounds(config),
            Command::AcquireWith(c) => c.check_bounds(config),
            Command::Renew(c) => c.check_bounds(config),
            _ => Ok(()),
        }
    }
}

impl Acquire {
    /// See [`Command::check`].
    pub fn check(&self) -> Result<(), Error> {
        validate::tenant(&self.tenant)?;
        validate::key(&self.key)?;
        validate::owner(&self.owner)?;
        validate::request_id(&self.request_id)
    }

    /// See [`Command::check_bounds`].
    pub fn check_bounds(&self, config: &TableConfig) -> Result<(), Error> {
        config.check_ttl(self.ttl_ms)?;
        if self.wait_timeout_ms > config.max_wait_timeout_ms {
            return Err(Error::InvalidRequest(format!(
                "wait_timeout_ms {} exceeds the allowed {} ms",
                self.wait_timeout_ms, config.max_wait_timeout_ms
            )));
        }
        Ok(())
    }
}

impl AcquireWith {
    /// See [`Command::check`]: the acquire's fields, and a semaphore's limit
    /// of at least 1.
    pub fn check(&self) -> Result<(), Error> {
        self.acquire.check()?;
        check_mode(self.mode)
    }

    /// See [`Command::check_bounds`]: a semaphore has at most
    /// `max_waiters_per_lock` slots (the bound on a lock's holders).
    pub fn check_bounds(&self, config: &TableConfig) -> Result<(), Error> {
        self.acquire.check_bounds(config)?;
        check_limit(self.mode, config)
    }
}

/// A mode on its own: a semaphore has at least one slot.
pub(crate) fn check_mode(mode: Mode) -> Result<(), Error> {
    if mode == Mode::Semaphore(0) {
        return Err(Error::InvalidRequest(
            "a semaphore's limit must be at least 1".into(),
        ));
    }
    Ok(())
}

/// A mode against the configuration: a semaphore has at most
/// `max_waiters_per_lock` slots.
pub(crate) fn check_limit(mode: Mode, config: &TableConfig) -> Result<(), Error> {
    let limit = mode.limit();
    if limit > config.max_waiters_per_lock {
        return Err(Error::InvalidRequest(format!(
            "semaphore limit {limit} exceeds the allowed {}",
            config.max_waiters_per_lock
        )));
    }
    Ok(())
}

impl Renew {
    /// See [`Command::check`].
    pub fn check(&self) -> Result<(), Error> {
        validate::tenant(&self.tenant)?;
        validate::owner(&self.owner)?;
        validate::request_id(&self.request_id)
    }

    /// See [`Command::check_bounds`].
    pub fn check_bounds(&self, config: &TableConfig) -> Result<(), Error> {
        config.check_ttl(self.ttl_ms)
    }
}

impl Release {
    /// See [`Command::check`].
    pub fn check(&self) -> Result<(), Error> {
        validate::tenant(&self.tenant)?;
        validate::owner(&self.owner)?;
        validate::request_id(&self.request_id)
    }
}

impl ForceRelease {
    /// See [`Command::check`].
    pub fn check(&self) -> Result<(), Error> {
        validate::tenant(&self.tenant)?;
        validate::key(&self.key)?;
        validate::actor(&self.actor)?;
        validate::reason(&self.reason)
    }
}

/// Take `key` in `tenant` for `owner`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acquire {
    /// The tenant.
    pub tenant: String,
    /// The lock.
    pub key: String,
    /// The authenticated caller.
    pub owner: String,
    /// Idempotency key, unique per (tenant, owner) and request.
    pub request_id: String,
    /// TTL of the lease, within the configured bounds.
    pub ttl_ms: u64,
    /// 0: answer LOCK_HELD at once; otherwise queue for up to this long.
    pub wait_timeout_ms: u64,
}

/// Take a lock in a mode other than exclusive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcquireWith {
    /// What to take, for whom, for how long.
    pub acquire: Acquire,
    /// How to hold it (never [`Mode::Exclusive`]: that is `Command::Acquire`;
    /// an exclusive mode here is applied the same way all the same).
    pub mode: Mode,
}

/// Change the TTL of a lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renew {
    /// The tenant the lease must belong to.
    pub tenant: String,
    /// The lease.
    pub lease_id: LeaseId,
    /// The authenticated caller.
    pub owner: String,
    /// Idempotency key.
    pub request_id: String,
    /// The new TTL.
    pub ttl_ms: u64,
}

/// Give up a lease (holding or waiting).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// The tenant the lease must belong to.
    pub tenant: String,
    /// The lease.
    pub lease_id: LeaseId,
    /// The authenticated caller.
    pub owner: String,
    /// Idempotency key.
    pub request_id: String,
}

/// The leader's word that a lease's deadline passed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expire {
    /// The lease.
    pub lease_id: LeaseId,
    /// The version the leader's deadline belonged to; if the lease changed
    /// since (granted from the queue, TTL changed), the command does nothing.
    /// `None` expires whatever incarnation is live.
    pub expected_version: Option<u64>,
}

/// Why a waiter left its queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CancelCause {
    /// The acquire's wait timeout passed.
    WaitTimeout,
    /// The caller cancelled or disconnected.
    Abandoned,
}

/// A waiter leaves its queue; a no-op if it was granted meanwhile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelWait {
    /// The waiting lease.
    pub lease_id: LeaseId,
    /// Why.
    pub cause: CancelCause,
}

/// An operator frees a lock, whoever holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForceRelease {
    /// The tenant.
    pub tenant: String,
    /// The lock.
    pub key: String,
    /// The authenticated admin.
    pub actor: String,
    /// Why, for the audit trail (required).
    pub reason: String,
    /// If set, release only while this lease holds the lock: a retried
    /// force-release then cannot evict the holder that came after.
    pub lease_id: Option<LeaseId>,
}

/// The leader's word that a lock-delay passed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClearLockDelay {
    /// The tenant.
    pub tenant: String,
    /// The lock.
    pub key: String,
}

/// A backup to restore: the bytes of `Table::snapshot`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Import {
    /// The exported snapshot.
    pub snapshot: Vec<u8>,
}

impl std::fmt::Debug for Import {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Import({} bytes)", self.snapshot.len())
    }
}

/// What a successful command answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The lease the command created or changed (or, for a retry, the lease
    /// the original request did).
    Lease(LeaseView),
    /// The lock after the command (force-release, clear-lock-delay).
    Lock(LockView),
    /// The configuration now in force.
    Configured(TableConfig),
    /// The command found nothing to do (a repeated expiry, say).
    Unchanged,
    /// A snapshot was imported; the table goes on from `index`.
    Imported {
        /// The effective log index of the import.
        index: u64,
        /// The imported audit sequence.
        audit_seq: u64,
    },
    /// The cluster's id (after a `Name`).
    Named(String),
    /// What a restore did.
    Restore(RestoreReport),
}

/// The result of applying one command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The reply or the refusal; a refusal changed nothing.
    pub result: Result<Reply, Error>,
    /// The audit events this command appended, in sequence order.
    pub events: Vec<AuditEvent>,
}

impl Applied {
    /// The answer to a log entry that carries no command (a blank entry or a
    /// membership change): nothing changed, no events.
    pub fn nothing() -> Applied {
        Applied {
            result: Ok(Reply::Unchanged),
            events: Vec::new(),
        }
    }
}
