//! The writer: one typed method per command, so handlers never match on an
//! untyped reply.
//!
//! Every write runs the table's check first (input the table would refuse
//! never reaches the log), then proposes the command through the batching
//! proposer, stamped with the node's wall clock for the audit record, and
//! answers with the table's reply once the entry has applied. The negative
//! control `grant_before_commit` lives here, not in a handler.

use tenure_core::{
    Acquire, Command, ForceRelease, Import, LeaseView, LockView, Mode, Release, Renew, Reply,
    RestoreReport, TableConfig,
};
use tenure_raft::{Proposer, TableReader};

use crate::clock::{NodeClock, Sabotage};
use crate::errors::ServeError;

/// What an import restored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Imported {
    /// The log index at which the restored table took effect.
    pub index: u64,
    /// The restored table's latest audit sequence number.
    pub audit_seq: u64,
}

/// The writer of one node.
#[derive(Clone)]
pub struct Writer {
    proposer: Proposer,
    table: TableReader,
    clock: NodeClock,
    sabotage: Sabotage,
}

fn unexpected(command: &str, reply: &Reply) -> ServeError {
    ServeError::Internal(format!("{command} answered {reply:?}"))
}

impl Writer {
    /// A writer proposing through `proposer`, checking against `table`.
    pub fn new(
        proposer: Proposer,
        table: TableReader,
        clock: NodeClock,
        sabotage: Sabotage,
    ) -> Writer {
        Writer {
            proposer,
            table,
            clock,
            sabotage,
        }
    }

    /// The proposer (for a proposal nobody waits on).
    pub fn proposer(&self) -> &Proposer {
        &self.proposer
    }

    /// The clock that stamps proposals.
    pub fn clock(&self) -> &NodeClock {
        &self.clock
    }

    /// Checks `command` against the table, proposes it, and answers with
    /// the table's reply.
    async fn write(&self, command: Command) -> Result<Reply, ServeError> {
        self.table.read().table.precheck(&command)?;
        let committed = self
            .proposer
            .propose(self.clock.wall_ms(), command)
            .await
            .map_err(|e| ServeError::from_write(&e))?;
        Ok(committed.applied.result?)
    }

    /// Takes a lock, or queues for it; the lease as applied.
    pub async fn acquire(&self, c: Acquire, mode: Mode) -> Result<LeaseView, ServeError> {
        // Negative control: every semaphore takes one holder more than the
        // limit its callers asked for.
        let mode = match mode {
            Mode::Semaphore(n) if self.sabotage.semaphore_extra_slot => {
                Mode::Semaphore(n.saturating_add(1))
            }
            m => m,
        };
        if self.sabotage.grant_before_commit && c.wait_timeout_ms == 0 {
            return self.speculate(Command::acquire(c, mode));
        }
        match self.write(Command::acquire(c, mode)).await? {
            Reply::Lease(v) => Ok(v),
            other => Err(unexpected("acquire", &other)),
        }
    }

    /// A renewal that changes the TTL (through the log).
    pub async fn renew(&self, c: Renew) -> Result<LeaseView, ServeError> {
        match self.write(Command::Renew(c)).await? {
            Reply::Lease(v) => Ok(v),
            other => Err(unexpected("renew", &other)),
        }
    }

    /// Gives a lease up.
    pub async fn release(&self, c: Release) -> Result<LeaseView, ServeError> {
        match self.write(Command::Release(c)).await? {
            Reply::Lease(v) => Ok(v),
            other => Err(unexpected("release", &other)),
        }
    }

    /// Frees a lock whoever holds it.
    pub async fn force_release(&self, c: ForceRelease) -> Result<LockView, ServeError> {
        match self.write(Command::ForceRelease(c)).await? {
            Reply::Lock(v) => Ok(v),
            other => Err(unexpected("force-release", &other)),
        }
    }

    /// Puts new limits in force.
    pub async fn configure(&self, c: TableConfig) -> Result<TableConfig, ServeError> {
        match self.write(Command::Configure(c)).await? {
            Reply::Configured(c) => Ok(c),
            other => Err(unexpected("configure", &other)),
        }
    }

    /// Restores an exported table.
    pub async fn import(&self, c: Import) -> Result<Imported, ServeError> {
        match self.write(Command::Import(c)).await? {
            Reply::Imported { index, audit_seq } => Ok(Imported { index, audit_seq }),
            other => Err(unexpected("import", &other)),
        }
    }

    /// Names the cluster (the first name stays); answers the name in force.
    pub async fn name(&self, c: tenure_core::Name) -> Result<String, ServeError> {
        match self.write(Command::Name(c)).await? {
            Reply::Named(id) => Ok(id),
            other => Err(unexpected("name", &other)),
        }
    }

    /// One step of a restore: `Some` once the restore is done (or was done
    /// before), `None` while it stages.
    pub async fn restore_step(&self, c: Command) -> Result<Option<RestoreReport>, ServeError> {
        let name = c.name();
        match self.write(c).await? {
            Reply::Restore(r) => Ok(Some(r)),
            Reply::Unchanged => Ok(None),
            other => Err(unexpected(name, &other)),
        }
    }

    /// Negative control `grant_before_commit`: answers from the command
    /// applied to a copy of the table, and proposes it in the background.
    /// A leader cut off from its quorum thus grants what never commits.
    fn speculate(&self, command: Command) -> Result<LeaseView, ServeError> {
        let mut copy = self.table.read().table.clone();
        let ctx = tenure_core::ApplyCtx {
            index: copy.next_index(),
            at_ms: self.clock.wall_ms(),
        };
        let reply = copy.apply(ctx, command.clone()).result?;
        let Reply::Lease(view) = reply else {
            return Err(unexpected("acquire", &reply));
        };
        let (proposer, at_ms) = (self.proposer.clone(), ctx.at_ms);
        tokio::spawn(async move {
            let _ = proposer.propose(at_ms, command).await;
        });
        Ok(view)
    }
}
