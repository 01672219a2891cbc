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
use std::ops::Bound;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::audit::{AuditEvent, AuditKind, SYSTEM};
use crate::command::{
    Acquire, Applied, ApplyCtx, CancelCause, CancelWait, ClearLockDelay, Command, Expire,
    ForceRelease, Release, Renew, Reply,
};
use crate::config::TableConfig;
use crate::error::Error;
use crate::lease::{EndReason, Lease, LeaseId, LeaseState, LeaseView, Lock, LockView};
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
    pub(crate) last_index: u64,
}

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
    fn emit(&mut self, kind: AuditKind, lease: &Lease, actor: &Arc<str>, detail: Option<String>) {
        self.push(kind, &lease.tenant, &lease.key, Some(lease), actor, detail);
    }

    fn push(
        &mut self,
        kind: AuditKind,
        tenant: &Arc<str>,
        key: &Arc<str>,
        lease: Option<&Lease>,
        actor: &Arc<str>,
        detail: Option<String>,
    ) {
        *self.seq += 1;
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
        });
    }
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
        assert!(
            ctx.index > self.state.last_index,
            "log index {} applied after {}: indexes must strictly increase",
            ctx.index,
            self.state.last_index
        );
        self.state.last_index = ctx.index;
        let mut seq = self.state.audit_seq;
        let mut audit = Audit {
            ctx,
            seq: &mut seq,
            events: Vec::new(),
        };
        let result = match command {
            Command::Acquire(c) => self.acquire(ctx, c, &mut audit),
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
        };
        let events = audit.events;
        self.state.audit_seq = seq;
        self.forget(ctx.index);
        Applied { result, events }
    }

    fn acquire(&mut self, ctx: ApplyCtx, c: Acquire, audit: &mut Audit) -> Result<Reply, Error> {
        validate::tenant(&c.tenant)?;
        validate::key(&c.key)?;
        validate::owner(&c.owner)?;
        validate::request_id(&c.request_id)?;
        let config = &self.state.config;
        config.check_ttl(c.ttl_ms)?;
        if c.wait_timeout_ms > config.max_wait_timeout_ms {
            return Err(Error::InvalidRequest(format!(
                "wait_timeout_ms {} exceeds the allowed {} ms",
                c.wait_timeout_ms, config.max_wait_timeout_ms
            )));
        }
        let max_waiters = config.max_waiters_per_lock;
        request_key(&mut self.key_buf, &c.tenant, &c.owner, &c.request_id);
        if let Some(r) = self.state.requests.get(&self.key_buf) {
            return self.answer_retry(r, Op::Acquire, Some(&c.key), None, c.ttl_ms, &c.request_id);
        }

        let id = LeaseId::from_index(ctx.index);
        let State { tenants, locks, .. } = &mut self.state;
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
        };
        if lock.is_free() {
            let token = lock.last_token + 1;
            lock.last_token = token;
            lock.active = Some(id);
            lease.state = LeaseState::Active;
            lease.token = token;
            audit.emit(AuditKind::LeaseAcquire, &lease, &lease.owner, None);
        } else if c.wait_timeout_ms > 0 {
            if lock.queue.len() >= max_waiters as usize {
                return Err(Error::TooManyWaiters {
                    key: lease.key,
                    limit: max_waiters,
                });
            }
            lock.queue.push_back(id);
            audit.emit(AuditKind::LeaseWait, &lease, &lease.owner, None);
        } else if let Some(holder) = lock.active {
            return Err(Error::LockHeld {
                key: lease.key,
                holder,
            });
        } else {
            return Err(Error::LockDelayed { key: lease.key });
        }
        let fingerprint = Fingerprint {
            op: Op::Acquire,
            key: Some(key),
            lease: None,
            ttl_ms: c.ttl_ms,
        };
        self.remember(fingerprint, id, ctx.index);
        let view = lease.view();
        self.state.leases.insert(id, lease);
        Ok(Reply::Lease(view))
    }

    /// Answers a request_id seen before: the original lease, or a refusal if
    /// the id now names a different request.
    fn answer_retry(
        &self,
        r: &Remembered,
        op: Op,
        key: Option<&str>,
        lease: Option<LeaseId>,
        ttl_ms: u64,
        request_id: &str,
    ) -> Result<Reply, Error> {
        if !r.fingerprint.matches(op, key, lease, ttl_ms) {
            return Err(Error::RequestIdReused(request_id.to_owned()));
        }
        let lease = self
            .state
            .leases
            .get(&r.lease)
            .ok_or_else(|| Error::LeaseNotFound(r.lease.to_string()))?;
        if r.fingerprint.op == Op::Acquire && lease.ended == Some(EndReason::WaitTimedOut) {
            return Err(Error::WaitTimeout(lease.id));
        }
        Ok(Reply::Lease(lease.view()))
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
        validate::tenant(&c.tenant)?;
        validate::owner(&c.owner)?;
        validate::request_id(&c.request_id)?;
        self.state.config.check_ttl(c.ttl_ms)?;
        let fingerprint = Fingerprint {
            op: Op::Renew,
            key: None,
            lease: Some(c.lease_id),
            ttl_ms: c.ttl_ms,
        };
        request_key(&mut self.key_buf, &c.tenant, &c.owner, &c.request_id);
        if let Some(r) = self.state.requests.get(&self.key_buf) {
            return self.answer_retry(
                r,
                Op::Renew,
                None,
                Some(c.lease_id),
                c.ttl_ms,
                &c.request_id,
            );
        }
        self.live_lease_of(&c.tenant, c.lease_id, &c.owner)?;
        let lease = self.lease_mut(c.lease_id);
        lease.ttl_ms = c.ttl_ms;
        lease.version += 1;
        let view = lease.view();
        let owner = lease.owner.clone();
        audit.emit(
            AuditKind::LeaseRenew,
            lease,
            &owner,
            Some(format!("ttl_ms={}", c.ttl_ms)),
        );
        self.remember(fingerprint, c.lease_id, ctx.index);
        Ok(Reply::Lease(view))
    }

    fn release(&mut self, ctx: ApplyCtx, c: Release, audit: &mut Audit) -> Result<Reply, Error> {
        validate::tenant(&c.tenant)?;
        validate::owner(&c.owner)?;
        validate::request_id(&c.request_id)?;
        let fingerprint = Fingerprint {
            op: Op::Release,
            key: None,
            lease: Some(c.lease_id),
            ttl_ms: 0,
        };
        request_key(&mut self.key_buf, &c.tenant, &c.owner, &c.request_id);
        if let Some(r) = self.state.requests.get(&self.key_buf) {
            return self.answer_retry(r, Op::Release, None, Some(c.lease_id), 0, &c.request_id);
        }
        let owner = self
            .live_lease_of(&c.tenant, c.lease_id, &c.owner)?
            .owner
            .clone();
        let view = self.end(
            ctx,
            c.lease_id,
            LeaseState::Released,
            EndReason::Released,
            audit,
            AuditKind::LeaseRelease,
            &owner,
            None,
        );
        self.remember(fingerprint, c.lease_id, ctx.index);
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
        let view = self.end(
            ctx,
            c.lease_id,
            LeaseState::Expired,
            EndReason::Expired,
            audit,
            AuditKind::LeaseExpire,
            &SYSTEM,
            None,
        );
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
        let view = self.end(
            ctx,
            c.lease_id,
            LeaseState::Released,
            reason,
            audit,
            AuditKind::LeaseWaitCancel,
            &SYSTEM,
            Some(detail.to_owned()),
        );
        Reply::Lease(view)
    }

    fn force_release(
        &mut self,
        ctx: ApplyCtx,
        c: ForceRelease,
        audit: &mut Audit,
    ) -> Result<Reply, Error> {
        validate::tenant(&c.tenant)?;
        validate::key(&c.key)?;
        validate::actor(&c.actor)?;
        validate::reason(&c.reason)?;
        let Some((tenant, key, slot)) = self.lock_entry(&c.tenant, &c.key) else {
            return Ok(Reply::Lock(self.lock(&c.tenant, &c.key)));
        };
        let lock = &mut self.state.locks[slot as usize];
        let holder = lock.active;
        if c.lease_id.is_some() && c.lease_id != holder {
            return Ok(Reply::Lock(self.lock(&c.tenant, &c.key)));
        }
        let actor: Arc<str> = c.actor.into();
        if lock.delayed && holder.is_none() {
            lock.delayed = false;
            let detail = Some(format!("cleared by force-release: {}", c.reason));
            audit.push(
                AuditKind::LockDelayClear,
                &tenant,
                &key,
                None,
                &actor,
                detail,
            );
            self.hand_off(slot, audit);
        }
        if let Some(holder) = holder {
            self.end(
                ctx,
                holder,
                LeaseState::Released,
                EndReason::ForceReleased,
                audit,
                AuditKind::ForceRelease,
                &actor,
                Some(c.reason),
            );
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
        audit.push(
            AuditKind::LockDelayClear,
            &tenant,
            &key,
            None,
            &SYSTEM,
            None,
        );
        self.hand_off(slot, audit);
        Ok(Reply::Lock(self.lock(&c.tenant, &c.key)))
    }

    /// Ends a live lease: marks it terminal, takes it off its lock (freeing
    /// the lock and handing it on, or starting a lock-delay after an expiry),
    /// and queues it for forgetting.
    #[allow(clippy::too_many_arguments)]
    fn end(
        &mut self,
        ctx: ApplyCtx,
        id: LeaseId,
        state: LeaseState,
        reason: EndReason,
        audit: &mut Audit,
        kind: AuditKind,
        actor: &Arc<str>,
        detail: Option<String>,
    ) -> LeaseView {
        let lock_delay_ms = self.state.config.lock_delay_ms;
        let lease = self.lease_mut(id);
        let was = lease.state;
        assert!(!was.is_terminal(), "lease {id} ended twice");
        lease.state = state;
        lease.ended = Some(reason);
        lease.version += 1;
        let view = lease.view();
        let slot = lease.lock;
        audit.emit(kind, lease, actor, detail);
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
            return view;
        }
        assert_eq!(
            lock.active,
            Some(id),
            "active lease {id} is not its lock's holder"
        );
        lock.active = None;
        if reason == EndReason::Expired && lock_delay_ms > 0 {
            lock.delayed = true;
            let detail = Some(format!("lock_delay_ms={lock_delay_ms}"));
            audit.push(
                AuditKind::LockDelaySet,
                &view.tenant,
                &view.key,
                None,
                &SYSTEM,
                detail,
            );
        } else if !lock.queue.is_empty() {
            self.hand_off(slot, audit);
        }
        view
    }

    /// Grants a free lock to the first waiter, with the next fencing token.
    fn hand_off(&mut self, slot: u32, audit: &mut Audit) {
        let lock = &mut self.state.locks[slot as usize];
        if lock.active.is_some() || lock.delayed {
            return;
        }
        let Some(next) = lock.queue.pop_front() else {
            return;
        };
        let token = lock.last_token + 1;
        lock.last_token = token;
        lock.active = Some(next);
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
        lease.version += 1;
        audit.emit(
            AuditKind::LeaseAcquire,
            lease,
            &SYSTEM,
            Some("granted from the queue".to_owned()),
        );
    }

    /// Remembers the request whose key is in `key_buf`.
    fn remember(&mut self, fingerprint: Fingerprint, lease: LeaseId, index: u64) {
        let record = Remembered {
            fingerprint,
            lease,
            index,
        };
        self.state.requests.insert(&self.key_buf, record);
    }

    /// Forgets old request ids and old terminal leases.
    fn forget(&mut self, now: u64) {
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

    /// The slot of a lock record, with its interned tenant and key.
    fn lock_entry(&self, tenant: &str, key: &str) -> Option<(Arc<str>, Arc<str>, u32)> {
        let t = self.state.tenants.get(tenant)?;
        let (key, slot) = t.locks.get_key_value(key)?;
        Some((t.name.clone(), key.clone(), *slot))
    }

    fn lock_view(&self, tenant: &Arc<str>, key: &Arc<str>, lock: &Lock) -> LockView {
        LockView {
            tenant: tenant.clone(),
            key: key.clone(),
            active: lock
                .active
                .and_then(|id| self.state.leases.get(&id))
                .map(Lease::view),
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
