//! The lease table: locks, leases, the waiting queues, the request memory and
//! the audit sequence, changed only by [`Table::apply`].
//!
//! `apply` is a function of the table and the command (and the log index it
//! sits at): no clock, no randomness, no IO. Every replica that applies the
//! same log holds the same table, which [`Table::digest`] makes checkable
//! (INV-5). A refusal changes nothing; a success changes the table and appends
//! audit events. Invariants are asserted where they are made, and
//! [`Table::verify`] checks the whole table for tests and for restored
//! snapshots.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::audit::{AuditEvent, AuditKind, Holder, SYSTEM};
use crate::command::{
    Acquire, Applied, ApplyCtx, CancelCause, CancelWait, ClearLockDelay, Command, Expire,
    ForceRelease, Import, Release, Renew, Reply,
};
use crate::config::TableConfig;
use crate::error::Error;
use crate::lease::{EndReason, Lease, LeaseId, LeaseState, LeaseView, Lock, Mode};
use crate::requests::{Fingerprint, Op, Remembered, RequestMemory, request_key};
use crate::validate;

/// The locks of one tenant: key → slot in [`State::locks`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tenant {
    /// The tenant's id, shared by its map key, its leases and their events.
    pub(crate) name: Arc<str>,
    pub(crate) locks: BTreeMap<Arc<str>, u32>,
}

/// Everything replicated: the snapshot is exactly this.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct State {
    pub(crate) config: TableConfig,
    pub(crate) tenants: BTreeMap<Arc<str>, Tenant>,
    /// Lock records by slot, in creation (log) order. Records are never
    /// removed, so a slot names its lock forever and a lease reaches its lock
    /// without a search by name.
    pub(crate) locks: Vec<Lock>,
    pub(crate) leases: BTreeMap<LeaseId, Lease>,
    pub(crate) requests: RequestMemory,
    /// Terminal leases in the order they ended, for forgetting them.
    pub(crate) ended: VecDeque<(u64, LeaseId)>,
    pub(crate) audit_seq: u64,
    /// The effective index of the latest command (raft index + offset).
    pub(crate) last_index: u64,
    /// Added to every raft index after an import, so the imported history
    /// (lease ids, ages) counts on without a gap or a repeat.
    pub(crate) index_offset: u64,
    /// The cluster's name, the token floor and restores (snapshot format
    /// 2; it must stay the last field: see `snapshot.rs`).
    pub(crate) extra: crate::restore::Extra,
}

/// The replicated lease table.
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub(crate) state: State,
    /// Scratch space for request-memory keys, reused across applies so a
    /// lookup costs no allocation. Not state: equality ignores it.
    pub(crate) key_buf: String,
}

impl PartialEq for Table {
    fn eq(&self, other: &Table) -> bool {
        self.state == other.state
    }
}

impl Eq for Table {}

/// Collects the audit events of one apply and numbers them.
struct Audit<'a> {
    ctx: ApplyCtx,
    seq: &'a mut u64,
    events: Vec<AuditEvent>,
}

impl Audit<'_> {
    /// Records a transition of `lease`, with its lock's holders after it.
    fn emit(
        &mut self,
        kind: AuditKind,
        state: &State,
        id: LeaseId,
        actor: &Arc<str>,
        detail: Option<String>,
    ) {
        let lease = &state.leases[&id];
        let holders = holders_of(state, lease.lock);
        self.push(
            kind,
            &lease.tenant,
            &lease.key,
            Some(lease),
            actor,
            detail,
            holders,
        );
    }

    /// Records a transition of the lock in `slot` that concerns no lease.
    fn push_lock(
        &mut self,
        kind: AuditKind,
        state: &State,
        slot: u32,
        (tenant, key): (&Arc<str>, &Arc<str>),
        actor: &Arc<str>,
        detail: Option<String>,
    ) {
        let holders = holders_of(state, slot);
        self.push(kind, tenant, key, None, actor, detail, holders);
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        kind: AuditKind,
        tenant: &Arc<str>,
        key: &Arc<str>,
        lease: Option<&Lease>,
        actor: &Arc<str>,
        detail: Option<String>,
        holders: Vec<Holder>,
    ) {
        *self.seq = self.seq.checked_add(1).expect("audit sequence below 2^64");
        self.events.push(AuditEvent {
            seq: *self.seq,
            index: self.ctx.index,
            at_ms: self.ctx.at_ms,
            kind,
            tenant: tenant.clone(),
            key: key.clone(),
            lease_id: lease.map(|l| l.id),
            owner: lease.map(|l| l.owner.clone()),
            token: lease.map_or(0, |l| l.token),
            actor: actor.clone(),
            detail,
            mode: lease.map_or(Mode::Exclusive, |l| l.mode),
            holders,
        });
    }
}

/// The holders of the lock in `slot`, as audit events list them.
fn holders_of(state: &State, slot: u32) -> Vec<Holder> {
    state.locks[slot as usize]
        .holders()
        .filter_map(|id| state.leases.get(&id))
        .map(|l| Holder {
            lease_id: l.id,
            owner: l.owner.clone(),
            token: l.token,
            mode: l.mode,
        })
        .collect()
}

impl Table {
    /// An empty table with the given configuration.
    pub fn new(config: TableConfig) -> Result<Table, Error> {
        config.validate()?;
        Ok(Table {
            state: State {
                config,
                ..State::default()
            },
            key_buf: String::new(),
        })
    }

    /// Applies one command at `ctx.index`. Indexes must strictly increase.
    pub fn apply(&mut self, ctx: ApplyCtx, command: Command) -> Applied {
        // After an import, the table counts on from the imported history.
        let ctx = ApplyCtx {
            index: ctx
                .index
                .checked_add(self.state.index_offset)
                .expect("log index below 2^64"),
            ..ctx
        };
        if let Command::Import(import) = command {
            return self.import(ctx, import);
        }
        assert!(
            ctx.index > self.state.last_index,
            "log index {} applied after {}: indexes must strictly increase",
            ctx.index,
            self.state.last_index
        );
        self.state.last_index = ctx.index;
        // A restore's commit moves the position and the audit sequence on
        // itself.
        if let Command::RestoreCommit(c) = command {
            return match self.restore_commit(ctx.index, ctx.at_ms, c) {
                Ok((reply, event)) => Applied {
                    result: Ok(reply),
                    events: event.into_iter().collect(),
                },
                Err(e) => Applied {
                    result: Err(e),
                    events: Vec::new(),
                },
            };
        }
        let mut seq = self.state.audit_seq;
        let mut audit = Audit {
            ctx,
            seq: &mut seq,
            events: Vec::new(),
        };
        let result = match command {
            Command::Acquire(c) => self.acquire(ctx, c, Mode::Exclusive, &mut audit),
            Command::AcquireWith(c) => self.acquire(ctx, c.acquire, c.mode, &mut audit),
            Command::Renew(c) => self.renew(ctx, c, &mut audit),
            Command::Release(c) => self.release(ctx, c, &mut audit),
            Command::Expire(c) => Ok(self.expire(ctx, c, &mut audit)),
            Command::CancelWait(c) => Ok(self.cancel_wait(ctx, c, &mut audit)),
            Command::ForceRelease(c) => self.force_release(ctx, c, &mut audit),
            Command::ClearLockDelay(c) => self.clear_lock_delay(ctx, c, &mut audit),
            Command::Configure(c) => c.validate().map(|()| {
                self.state.config = c.clone();
                Reply::Configured(c)
            }),
            Command::Name(c) => self.name(&c),
            Command::RestoreBegin(c) => self.restore_begin(ctx.index, c),
            Command::RestoreChunk(c) => self.restore_chunk(c),
            Command::RestoreAbort(c) => self.restore_abort(c),
            Command::Import(_) | Command::RestoreCommit(_) => {
                unreachable!("imports and restore commits are applied before the match")
            }
        };
        let events = audit.events;
        self.state.audit_seq = seq;
        self.forget(ctx.index);
        Applied { result, events }
    }

    /// Replaces a pristine table with an exported one (a restore from backup).
    /// The imported history continues: its tokens, lease ids and audit
    /// sequence go on from where the export stopped, so nothing the old
    /// cluster handed out can be handed out again.
    fn import(&mut self, ctx: ApplyCtx, c: Import) -> Applied {
        let refuse = |m: String| Applied {
            result: Err(Error::InvalidRequest(m)),
            events: Vec::new(),
        };
        if ctx.index <= self.state.last_index {
            panic!(
                "log index {} applied after {}",
                ctx.index, self.state.last_index
            );
        }
        if !self.state.tenants.is_empty() || self.state.audit_seq != 0 {
            self.state.last_index = ctx.index;
            return refuse("import needs a table that has never held a lock".into());
        }
        let restored = match Table::restore(&c.snapshot) {
            Ok(t) => t,
            Err(e) => {
                self.state.last_index = ctx.index;
                return refuse(format!("snapshot: {e}"));
            }
        };
        let raw = ctx.index - self.state.index_offset;
        let mut state = restored.state;
        // Effective indexes go on above the imported history.
        state.index_offset = (state.last_index + 1).saturating_sub(raw);
        state.last_index = raw + state.index_offset;
        self.state = state;
        Applied {
            result: Ok(Reply::Imported {
                index: self.state.last_index,
                audit_seq: self.state.audit_seq,
            }),
            events: Vec::new(),
        }
    }

    fn acquire(
        &mut self,
        ctx: ApplyCtx,
        c: Acquire,
        mode: Mode,
        audit: &mut Audit,
    ) -> Result<Reply, Error> {
        c.check()?;
        crate::command::check_mode(mode)?;
        // A retry is answered before the bounds are checked: a Configure in
        // between must not turn the original answer into INVALID_TTL.
        request_key(&mut self.key_buf, &c.tenant, &c.owner, &c.request_id);
        if let Some(r) = self.state.requests.get(&self.key_buf) {
            let asked = Fingerprint {
                op: Op::Acquire,
                key: Some(c.key.as_str().into()),
                lease: None,
                ttl_ms: c.ttl_ms,
                mode,
            };
            return self.answer_retry(r, &asked, &c.request_id);
        }
        let config = &self.state.config;
        c.check_bounds(config)?;
        crate::command::check_limit(mode, config)?;
        let max_waiters = config.max_waiters_per_lock;
        let (max_tenants, max_locks) = (config.max_tenants, config.max_locks_per_tenant);

        let id = LeaseId::from_index(ctx.index);
        let floor = self.state.extra.token_floor;
        let State { tenants, locks, .. } = &mut self.state;
        if tenants.len() as u64 >= max_tenants && !tenants.contains_key(c.tenant.as_str()) {
            return Err(Error::TooManyLocks(format!(
                "the cluster already has {max_tenants} tenants"
            )));
        }
        // A key's kind is checked before anything is created for it.
        let existing = tenants
            .get(c.tenant.as_str())
            .and_then(|t| t.locks.get(c.key.as_str()))
            .map(|slot| &locks[*slot as usize]);
        if let Some(lock) = existing
            && !lock.suits(mode)
        {
            return Err(Error::LockModeConflict {
                key: c.key.as_str().into(),
                held: kind_name(lock.limit),
                asked: format!("{mode}"),
            });
        }
        let tenant = match tenants.get_mut(c.tenant.as_str()) {
            Some(t) => t,
            None => {
                let name: Arc<str> = c.tenant.as_str().into();
                let locks = BTreeMap::new();
                tenants
                    .entry(name.clone())
                    .or_insert(Tenant { name, locks })
            }
        };
        let tenant_name = tenant.name.clone();
        let (key, slot) = match tenant.locks.get_key_value(c.key.as_str()) {
            Some((key, slot)) => (key.clone(), *slot),
            None if tenant.locks.len() as u64 >= max_locks => {
                return Err(Error::TooManyLocks(format!(
                    "tenant {:?} already has {max_locks} locks",
                    c.tenant
                )));
            }
            None => {
                let slot = u32::try_from(locks.len()).expect("fewer than 2^32 lock records");
                let key: Arc<str> = c.key.as_str().into();
                locks.push(Lock::default());
                tenant.locks.insert(key.clone(), slot);
                (key, slot)
            }
        };
        let lock = &mut locks[slot as usize];
        let mut lease = Lease {
            id,
            tenant: tenant_name,
            key: key.clone(),
            lock: slot,
            owner: c.owner.into(),
            ttl_ms: c.ttl_ms,
            state: LeaseState::Waiting,
            token: 0,
            version: 1,
            wait_timeout_ms: c.wait_timeout_ms,
            ended: None,
            mode,
        };
        let kind = if lock.admits(mode) {
            // Holders of a shared key count against the same bound as its
            // waiters, so one key cannot grow without end.
            if mode != Mode::Exclusive && lock.shared.len() >= max_waiters as usize {
                return Err(Error::TooManyWaiters {
                    key: lease.key,
                    limit: max_waiters,
                });
            }
            let token = next_token(lock.last_token.max(floor));
            lock.last_token = token;
            lock.limit = mode.limit();
            match mode {
                Mode::Exclusive => lock.active = Some(id),
                Mode::Shared | Mode::Semaphore(_) => lock.shared.push(id),
            }
            lease.state = LeaseState::Active;
            lease.token = token;
            AuditKind::LeaseAcquire
        } else if c.wait_timeout_ms > 0 {
            if lock.queue.len() >= max_waiters as usize {
                return Err(Error::TooManyWaiters {
                    key: lease.key,
                    limit: max_waiters,
                });
            }
            lock.limit = mode.limit();
            lock.queue.push_back(id);
            AuditKind::LeaseWait
        } else if let Some(holder) = lock.holders().next() {
            return Err(Error::LockHeld {
                key: lease.key,
                holder,
            });
        } else if lock.delayed {
            return Err(Error::LockDelayed { key: lease.key });
        } else {
            // Free, not delayed, nobody holds: only a queue could stand in
            // the way, and a queue is never behind a free lock.
            let head = lock.queue.front().copied().unwrap_or(id);
            return Err(Error::LockHeld {
                key: lease.key,
                holder: head,
            });
        };
        let fingerprint = Fingerprint {
            op: Op::Acquire,
            key: Some(key),
            lease: None,
            ttl_ms: c.ttl_ms,
            mode,
        };
        self.remember(fingerprint, id, ctx.index, None);
        let view = lease.view();
        let owner = lease.owner.clone();
        self.state.leases.insert(id, lease);
        audit.emit(kind, &self.state, id, &owner, None);
        Ok(Reply::Lease(view))
    }

    /// Answers a request_id seen before, or refuses it if the id now names
    /// a different request. A release gets its original answer. An acquire
    /// gets its lease as it is now (a waiter may have been granted since), a
    /// renewal its original answer, while the lease lives; once the lease has
    /// ended they get the reason it ended with, never a stale success.
    fn answer_retry(
        &self,
        r: &Remembered,
        asked: &Fingerprint,
        request_id: &str,
    ) -> Result<Reply, Error> {
        if r.fingerprint != *asked {
            return Err(Error::RequestIdReused(request_id.to_owned()));
        }
        if let (Op::Release, Some(answer)) = (asked.op, &r.answer) {
            return Ok(Reply::Lease(LeaseView::clone(answer)));
        }
        let id = r.lease;
        let lease = self
            .state
            .leases
            .get(&id)
            .ok_or_else(|| Error::LeaseNotFound(id.to_string()))?;
        match (lease.ended, &r.answer) {
            (None, Some(answer)) => Ok(Reply::Lease(LeaseView::clone(answer))),
            (None, None) => Ok(Reply::Lease(lease.view())),
            (Some(EndReason::Expired), _) => Err(Error::LeaseExpired(id)),
            (Some(EndReason::WaitTimedOut), _) => Err(Error::WaitTimeout(id)),
            (Some(_), _) => Err(Error::LeaseNotActive(id)),
        }
    }

    /// The lease `id` if it exists in `tenant` and belongs to `owner`, and is
    /// still WAITING or ACTIVE: the checks renew and release share.
    fn live_lease_of(&self, tenant: &str, id: LeaseId, owner: &str) -> Result<&Lease, Error> {
        let lease = self
            .state
            .leases
            .get(&id)
            .filter(|l| &*l.tenant == tenant)
            .ok_or_else(|| Error::LeaseNotFound(id.to_string()))?;
        if &*lease.owner != owner {
            return Err(Error::OwnerMismatch(id));
        }
        match lease.state {
            LeaseState::Expired => Err(Error::LeaseExpired(id)),
            LeaseState::Released => Err(Error::LeaseNotActive(id)),
            LeaseState::Waiting | LeaseState::Active => Ok(lease),
        }
    }

    /// The checks of a renewal that keeps its TTL: such renewals never reach
    /// the log, the leader runs these and extends its own deadline.
    pub fn check_renew(&self, tenant: &str, id: LeaseId, owner: &str) -> Result<LeaseView, Error> {
        validate::tenant(tenant)?;
        validate::owner(owner)?;
        self.live_lease_of(tenant, id, owner).map(Lease::view)
    }

    fn renew(&mut self, ctx: ApplyCtx, c: Renew, audit: &mut Audit) -> Result<Reply, Error> {
        c.check()?;
        let fingerprint = Fingerprint {
            op: Op::Renew,
            key: None,
            lease: Some(c.lease_id),
            ttl_ms: c.ttl_ms,
            mode: Mode::Exclusive,
        };
        request_key(&mut self.key_buf, &c.tenant, &c.owner, &c.request_id);
        if let Some(r) = self.state.requests.get(&self.key_buf) {
            return self.answer_retry(r, &fingerprint, &c.request_id);
        }
        c.check_bounds(&self.state.config)?;
        self.live_lease_of(&c.tenant, c.lease_id, &c.owner)?;
        let lease = self.lease_mut(c.lease_id);
        lease.ttl_ms = c.ttl_ms;
        lease.version = bump(lease.version);
        let view = lease.view();
        let owner = lease.owner.clone();
        audit.emit(
            AuditKind::LeaseRenew,
            &self.state,
            c.lease_id,
            &owner,
            Some(format!("ttl_ms={}", c.ttl_ms)),
        );
        self.remember(fingerprint, c.lease_id, ctx.index, Some(view.clone()));
        Ok(Reply::Lease(view))
    }

    fn release(&mut self, ctx: ApplyCtx, c: Release, audit: &mut Audit) -> Result<Reply, Error> {
        c.check()?;
        let fingerprint = Fingerprint {
            op: Op::Release,
            key: None,
            lease: Some(c.lease_id),
            ttl_ms: 0,
            mode: Mode::Exclusive,
        };
        request_key(&mut self.key_buf, &c.tenant, &c.owner, &c.request_id);
        if let Some(r) = self.state.requests.get(&self.key_buf) {
            return self.answer_retry(r, &fingerprint, &c.request_id);
        }
        let owner = self
            .live_lease_of(&c.tenant, c.lease_id, &c.owner)?
            .owner
            .clone();
        let ending = Ending {
            state: LeaseState::Released,
            reason: EndReason::Released,
            kind: AuditKind::LeaseRelease,
            actor: &owner,
            detail: None,
        };
        let view = self.end(ctx, c.lease_id, ending, audit);
        self.remember(fingerprint, c.lease_id, ctx.index, Some(view.clone()));
        Ok(Reply::Lease(view))
    }

    fn expire(&mut self, ctx: ApplyCtx, c: Expire, audit: &mut Audit) -> Reply {
        let Some(lease) = self.state.leases.get(&c.lease_id) else {
            return Reply::Unchanged;
        };
        let stale = c.expected_version.is_some_and(|v| v != lease.version);
        if lease.state.is_terminal() || stale {
            return Reply::Unchanged;
        }
        let ending = Ending {
            state: LeaseState::Expired,
            reason: EndReason::Expired,
            kind: AuditKind::LeaseExpire,
            actor: &SYSTEM,
            detail: None,
        };
        let view = self.end(ctx, c.lease_id, ending, audit);
        Reply::Lease(view)
    }

    fn cancel_wait(&mut self, ctx: ApplyCtx, c: CancelWait, audit: &mut Audit) -> Reply {
        let waiting = self
            .state
            .leases
            .get(&c.lease_id)
            .is_some_and(|l| l.state == LeaseState::Waiting);
        if !waiting {
            return Reply::Unchanged;
        }
        let (reason, detail) = match c.cause {
            CancelCause::WaitTimeout => (EndReason::WaitTimedOut, "wait timeout"),
            CancelCause::Abandoned => (EndReason::WaitAbandoned, "caller went away"),
        };
        let ending = Ending {
            state: LeaseState::Released,
            reason,
            kind: AuditKind::LeaseWaitCancel,
            actor: &SYSTEM,
            detail: Some(detail.to_owned()),
        };
        let view = self.end(ctx, c.lease_id, ending, audit);
        Reply::Lease(view)
    }

    fn force_release(
        &mut self,
        ctx: ApplyCtx,
        c: ForceRelease,
        audit: &mut Audit,
    ) -> Result<Reply, Error> {
        c.check()?;
        let Some((tenant, key, slot)) = self.lock_entry(&c.tenant, &c.key) else {
            return Ok(Reply::Lock(self.lock(&c.tenant, &c.key)));
        };
        let lock = &mut self.state.locks[slot as usize];
        // The holders when the command applies: those granted while they
        // are freed (a semaphore's next waiters) keep their grant.
        let holders: Vec<LeaseId> = match c.lease_id {
            Some(id) if lock.holders().any(|h| h == id) => vec![id],
            Some(_) => return Ok(Reply::Lock(self.lock(&c.tenant, &c.key))),
            None => lock.holders().collect(),
        };
        let actor: Arc<str> = c.actor.into();
        if lock.delayed && holders.is_empty() {
            lock.delayed = false;
            let detail = Some(format!("cleared by force-release: {}", c.reason));
            audit.push_lock(
                AuditKind::LockDelayClear,
                &self.state,
                slot,
                (&tenant, &key),
                &actor,
                detail,
            );
            self.hand_off(slot, audit);
        }
        for holder in holders {
            let ending = Ending {
                state: LeaseState::Released,
                reason: EndReason::ForceReleased,
                kind: AuditKind::ForceRelease,
                actor: &actor,
                detail: Some(c.reason.clone()),
            };
            self.end(ctx, holder, ending, audit);
        }
        Ok(Reply::Lock(self.lock(&c.tenant, &c.key)))
    }

    fn clear_lock_delay(
        &mut self,
        _ctx: ApplyCtx,
        c: ClearLockDelay,
        audit: &mut Audit,
    ) -> Result<Reply, Error> {
        let Some((tenant, key, slot)) = self.lock_entry(&c.tenant, &c.key) else {
            return Ok(Reply::Unchanged);
        };
        let lock = &mut self.state.locks[slot as usize];
        if !lock.delayed {
            return Ok(Reply::Unchanged);
        }
        lock.delayed = false;
        audit.push_lock(
            AuditKind::LockDelayClear,
            &self.state,
            slot,
            (&tenant, &key),
            &SYSTEM,
            None,
        );
        self.hand_off(slot, audit);
        Ok(Reply::Lock(self.lock(&c.tenant, &c.key)))
    }

    /// Ends a live lease: marks it terminal, takes it off its lock (freeing
    /// a slot and handing the lock on, or starting a lock-delay after an
    /// expiry), and queues it for forgetting.
    fn end(&mut self, ctx: ApplyCtx, id: LeaseId, ending: Ending, audit: &mut Audit) -> LeaseView {
        let lock_delay_ms = self.state.config.lock_delay_ms;
        let lease = self.lease_mut(id);
        let was = lease.state;
        assert!(!was.is_terminal(), "lease {id} ended twice");
        let reason = ending.reason;
        lease.state = ending.state;
        lease.ended = Some(reason);
        lease.version = bump(lease.version);
        let view = lease.view();
        let slot = lease.lock;
        self.state.ended.push_back((ctx.index, id));

        let lock = &mut self.state.locks[slot as usize];
        if was == LeaseState::Waiting {
            let before = lock.queue.len();
            lock.queue.retain(|w| *w != id);
            assert_eq!(
                lock.queue.len() + 1,
                before,
                "waiting lease {id} was not queued once"
            );
            audit.emit(ending.kind, &self.state, id, ending.actor, ending.detail);
            // A waiter that leaves the head can let the next ones in (a
            // reader behind a writer that gave up).
            self.hand_off(slot, audit);
            return view;
        }
        if lock.active == Some(id) {
            lock.active = None;
        } else {
            let before = lock.shared.len();
            lock.shared.retain(|h| *h != id);
            assert_eq!(
                lock.shared.len() + 1,
                before,
                "active lease {id} is not one of its lock's holders"
            );
        }
        audit.emit(ending.kind, &self.state, id, ending.actor, ending.detail);
        let lock = &mut self.state.locks[slot as usize];
        if reason == EndReason::Expired && lock_delay_ms > 0 {
            lock.delayed = true;
            let detail = Some(format!("lock_delay_ms={lock_delay_ms}"));
            audit.push_lock(
                AuditKind::LockDelaySet,
                &self.state,
                slot,
                (&view.tenant, &view.key),
                &SYSTEM,
                detail,
            );
        } else {
            self.hand_off(slot, audit);
        }
        view
    }

    /// Grants the lock to every waiter at the head of its queue that fits,
    /// in order, each with the next fencing token: one writer, or as many
    /// readers (or semaphore slots) as there are.
    fn hand_off(&mut self, slot: u32, audit: &mut Audit) {
        let floor = self.state.extra.token_floor;
        loop {
            let lock = &mut self.state.locks[slot as usize];
            let Some(&next) = lock.queue.front() else {
                return;
            };
            let Some(mode) = self.state.leases.get(&next).map(|l| l.mode) else {
                panic!("queued lease {next} must exist");
            };
            if !lock.fits(mode) {
                return;
            }
            lock.queue.pop_front();
            let token = next_token(lock.last_token.max(floor));
            lock.last_token = token;
            match mode {
                Mode::Exclusive => lock.active = Some(next),
                Mode::Shared | Mode::Semaphore(_) => lock.shared.push(next),
            }
            let lease = self.lease_mut(next);
            assert_eq!(
                lease.state,
                LeaseState::Waiting,
                "queued lease {next} must be waiting"
            );
            assert!(
                token > lease.token,
                "fencing token must increase for {}",
                lease.key
            );
            lease.state = LeaseState::Active;
            lease.token = token;
            lease.version = bump(lease.version);
            audit.emit(
                AuditKind::LeaseAcquire,
                &self.state,
                next,
                &SYSTEM,
                Some("granted from the queue".to_owned()),
            );
        }
    }

    /// Remembers the request whose key is in `key_buf`.
    fn remember(
        &mut self,
        fingerprint: Fingerprint,
        lease: LeaseId,
        index: u64,
        answer: Option<LeaseView>,
    ) {
        let record = Remembered {
            fingerprint,
            lease,
            index,
            answer: answer.map(Box::new),
        };
        self.state.requests.insert(&self.key_buf, record);
    }

    /// Forgets old request ids and old terminal leases.
    pub(crate) fn forget(&mut self, now: u64) {
        let c = &self.state.config;
        let (req_age, req_count) = (c.request_retention_entries, c.request_retention_count);
        let (lease_age, lease_count) = (c.lease_retention_entries, c.lease_retention_count);
        self.state.requests.evict(now, req_age, req_count);
        while let Some(&(index, id)) = self.state.ended.front() {
            let too_old = index.saturating_add(lease_age) <= now;
            if !too_old && self.state.ended.len() as u64 <= lease_count {
                break;
            }
            self.state.ended.pop_front();
            self.state.leases.remove(&id);
        }
    }

    fn lease_mut(&mut self, id: LeaseId) -> &mut Lease {
        self.state
            .leases
            .get_mut(&id)
            .unwrap_or_else(|| panic!("lease {id} must exist"))
    }
}

/// How a live lease ends: its terminal state, why, and the audit record.
struct Ending<'a> {
    state: LeaseState,
    reason: EndReason,
    kind: AuditKind,
    actor: &'a Arc<str>,
    detail: Option<String>,
}

/// What a lock with `limit` is, for refusals.
fn kind_name(limit: u32) -> String {
    match limit {
        0 => "a read-write lock".to_owned(),
        n => format!("a semaphore of {n}"),
    }
}

/// The token after `last`. Restored snapshots are verified to keep tokens
/// below the log index, so this cannot overflow; if it could, wrapping to 0
/// would break fencing, so it stops the node instead.
fn next_token(last: u64) -> u64 {
    last.checked_add(1).expect("fencing token below 2^64")
}

/// A lease's next version; bounded like tokens.
fn bump(version: u64) -> u64 {
    version.checked_add(1).expect("lease version below 2^64")
}

impl Table {
    /// The refusals of `command` that depend on its input alone (identifier
    /// alphabets and lengths, TTL and wait bounds, a force-release's reason),
    /// as `apply` would give them, without changing anything. A server checks
    /// these before proposing, so bad input never reaches the log. A retry
    /// of a remembered request passes: `apply` answers it from memory.
    pub fn precheck(&self, command: &Command) -> Result<(), Error> {
        command.check()?;
        let remembered = |tenant: &str, owner: &str, rid: &str| {
            let mut key = String::new();
            request_key(&mut key, tenant, owner, rid);
            self.state.requests.get(&key).is_some()
        };
        let retry = match command {
            Command::Acquire(c) => remembered(&c.tenant, &c.owner, &c.request_id),
            Command::AcquireWith(c) => {
                let c = &c.acquire;
                remembered(&c.tenant, &c.owner, &c.request_id)
            }
            Command::Renew(c) => remembered(&c.tenant, &c.owner, &c.request_id),
            Command::RestoreBegin(c) => return self.check_begin(c),
            _ => false,
        };
        if retry {
            return Ok(());
        }
        command.check_bounds(&self.state.config)
    }
}
