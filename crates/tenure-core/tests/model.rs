//! Property tests: the lease table against a deliberately naive model.
//!
//! The model keeps every lease in one `Vec` and finds everything by linear
//! scan: the holder of a lock is "the ACTIVE lease with that key", its queue
//! is "the WAITING leases with that key, oldest first". It shares no code
//! with the table but the plain data types of replies. Random command
//! sequences go to both; replies, audit events and invariants must agree after
//! every step. The default run is 128 cases of 80..160 commands (over 10,000
//! steps); `PROPTEST_CASES=N` runs more.

mod common;

use std::collections::BTreeMap;

use proptest::prelude::*;
use tenure_core::{
    Acquire, ApplyCtx, AuditKind, CancelCause, CancelWait, ClearLockDelay, Command, EndReason,
    Error, Expire, ForceRelease, LeaseId, LeaseState, LeaseView, LockView, Mode, Reason, Release,
    Renew, Reply, Table, TableConfig,
};

#[derive(Clone, Debug)]
struct MLease {
    view: LeaseView,
    ended_at: u64,
}

#[derive(Clone, Debug)]
struct MRequest {
    tenant: String,
    owner: String,
    rid: String,
    what: What,
    lease: LeaseId,
    index: u64,
    answer: Option<LeaseView>,
}

/// The naive model.
#[derive(Clone, Debug)]
struct Model {
    cfg: TableConfig,
    leases: Vec<MLease>,
    tokens: Vec<((String, String), u64)>,
    delayed: Vec<(String, String)>,
    requests: Vec<MRequest>,
    index: u64,
}

/// An audit event as compared: kind, lease, token, and the lock's holders
/// right after it.
type Events = Vec<(AuditKind, Option<LeaseId>, u64, Vec<LeaseId>)>;

/// What a remembered request was: op, key, lease, TTL, mode.
type What = (u8, String, Option<LeaseId>, u64, Mode);

fn ok_ident(s: &str, max: usize, extra: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b) || extra.contains(&b))
}

impl Model {
    fn new(cfg: TableConfig) -> Model {
        Model {
            cfg,
            leases: vec![],
            tokens: vec![],
            delayed: vec![],
            requests: vec![],
            index: 0,
        }
    }

    fn token(&self, t: &str, k: &str) -> u64 {
        self.tokens
            .iter()
            .find(|((a, b), _)| a == t && b == k)
            .map_or(0, |(_, v)| *v)
    }

    fn set_token(&mut self, t: &str, k: &str, v: u64) {
        match self.tokens.iter_mut().find(|((a, b), _)| a == t && b == k) {
            Some(e) => e.1 = v,
            None => self.tokens.push(((t.into(), k.into()), v)),
        }
    }

    fn is_delayed(&self, t: &str, k: &str) -> bool {
        self.delayed.iter().any(|(a, b)| a == t && b == k)
    }

    /// The ACTIVE leases of the key, in grant (token) order.
    fn holders(&self, t: &str, k: &str) -> Vec<usize> {
        let mut h: Vec<usize> = (0..self.leases.len())
            .filter(|&i| {
                let v = &self.leases[i].view;
                &*v.tenant == t && &*v.key == k && v.state == LeaseState::Active
            })
            .collect();
        h.sort_by_key(|&i| self.leases[i].view.token);
        h
    }

    fn holder_ids(&self, t: &str, k: &str) -> Vec<LeaseId> {
        self.holders(t, k)
            .into_iter()
            .map(|i| self.leases[i].view.id)
            .collect()
    }

    fn waiters(&self, t: &str, k: &str) -> Vec<usize> {
        (0..self.leases.len())
            .filter(|&i| {
                let v = &self.leases[i].view;
                &*v.tenant == t && &*v.key == k && v.state == LeaseState::Waiting
            })
            .collect()
    }

    /// A busy key's semaphore limit (0: a read-write lock); `None` when
    /// nobody holds or waits, so any mode suits it.
    fn kind(&self, t: &str, k: &str) -> Option<u32> {
        self.leases
            .iter()
            .map(|l| &l.view)
            .find(|v| &*v.tenant == t && &*v.key == k && !v.state.is_terminal())
            .map(|v| v.mode.limit())
    }

    /// Whether a grant in `mode` fits beside the holders.
    fn fits(&self, t: &str, k: &str, mode: Mode) -> bool {
        let holders = self.holders(t, k);
        let exclusive = holders
            .iter()
            .any(|&i| self.leases[i].view.mode == Mode::Exclusive);
        if self.is_delayed(t, k) || exclusive {
            return false;
        }
        match mode {
            Mode::Exclusive => holders.is_empty(),
            Mode::Shared => true,
            Mode::Semaphore(n) => holders.len() < n as usize,
        }
    }

    fn find(&self, id: LeaseId) -> Option<usize> {
        self.leases.iter().position(|l| l.view.id == id)
    }

    fn lock_view(&self, t: &str, k: &str) -> LockView {
        let holders: Vec<LeaseView> = self
            .holders(t, k)
            .into_iter()
            .map(|i| self.leases[i].view.clone())
            .collect();
        LockView {
            tenant: t.into(),
            key: k.into(),
            active: holders.first().cloned(),
            holders,
            limit: self.kind(t, k).unwrap_or(0),
            last_token: self.token(t, k),
            waiters: self.waiters(t, k).len() as u32,
            delayed: self.is_delayed(t, k),
        }
    }

    /// Grants every waiter at the head of the queue that fits, in order.
    fn grant_next(&mut self, t: &str, k: &str, ev: &mut Events) {
        while let Some(&i) = self.waiters(t, k).first() {
            if !self.fits(t, k, self.leases[i].view.mode) {
                return;
            }
            let token = self.token(t, k) + 1;
            self.set_token(t, k, token);
            let v = &mut self.leases[i].view;
            v.state = LeaseState::Active;
            v.token = token;
            v.version += 1;
            let id = v.id;
            ev.push((
                AuditKind::LeaseAcquire,
                Some(id),
                token,
                self.holder_ids(t, k),
            ));
        }
    }

    fn finish(
        &mut self,
        i: usize,
        state: LeaseState,
        why: EndReason,
        kind: AuditKind,
        ev: &mut Events,
    ) -> LeaseView {
        let was = self.leases[i].view.state;
        let l = &mut self.leases[i];
        l.view.state = state;
        l.view.ended = Some(why);
        l.view.version += 1;
        l.ended_at = self.index;
        let view = l.view.clone();
        let (t, k) = (view.tenant.to_string(), view.key.to_string());
        ev.push((kind, Some(view.id), view.token, self.holder_ids(&t, &k)));
        if was == LeaseState::Active && why == EndReason::Expired && self.cfg.lock_delay_ms > 0 {
            self.delayed.push((t.clone(), k.clone()));
            ev.push((AuditKind::LockDelaySet, None, 0, self.holder_ids(&t, &k)));
        } else {
            self.grant_next(&t, &k, ev);
        }
        view
    }

    fn retry(&self, r: &MRequest, what: &What) -> Result<Reply, Reason> {
        if &r.what != what {
            return Err(Reason::RequestIdReused);
        }
        if what.0 == 2 {
            return Ok(Reply::Lease(
                r.answer.clone().expect("a release keeps its answer"),
            ));
        }
        let i = self.find(r.lease).ok_or(Reason::LeaseNotFound)?;
        let v = &self.leases[i].view;
        match v.ended {
            None if what.0 == 0 => Ok(Reply::Lease(v.clone())),
            None => Ok(Reply::Lease(
                r.answer.clone().expect("a renew keeps its answer"),
            )),
            Some(EndReason::Expired) => Err(Reason::LeaseExpired),
            Some(EndReason::WaitTimedOut) => Err(Reason::WaitTimeout),
            Some(_) => Err(Reason::LeaseNotActive),
        }
    }

    fn live_check(&self, t: &str, id: LeaseId, owner: &str) -> Result<usize, Reason> {
        let i = self
            .find(id)
            .filter(|&i| &*self.leases[i].view.tenant == t)
            .ok_or(Reason::LeaseNotFound)?;
        let v = &self.leases[i].view;
        if &*v.owner != owner {
            return Err(Reason::OwnerMismatch);
        }
        match v.state {
            LeaseState::Expired => Err(Reason::LeaseExpired),
            LeaseState::Released => Err(Reason::LeaseNotActive),
            _ => Ok(i),
        }
    }

    fn step(&mut self, cmd: &Command) -> (Result<Reply, Reason>, Events) {
        self.index += 1;
        let mut ev = Events::new();
        let r = self.exec(cmd, &mut ev);
        // Forget old requests and leases, oldest first.
        let now = self.index;
        let (age, count) = (
            self.cfg.request_retention_entries,
            self.cfg.request_retention_count,
        );
        while let Some(f) = self.requests.first() {
            if f.index + age <= now || self.requests.len() as u64 > count {
                self.requests.remove(0);
            } else {
                break;
            }
        }
        let (age, count) = (
            self.cfg.lease_retention_entries,
            self.cfg.lease_retention_count,
        );
        loop {
            let ended: Vec<usize> = (0..self.leases.len())
                .filter(|&i| self.leases[i].view.state.is_terminal())
                .collect();
            let Some(&oldest) = ended.iter().min_by_key(|&&i| self.leases[i].ended_at) else {
                break;
            };
            if self.leases[oldest].ended_at + age <= now || ended.len() as u64 > count {
                self.leases.remove(oldest);
            } else {
                break;
            }
        }
        (r, ev)
    }

    fn exec(&mut self, cmd: &Command, ev: &mut Events) -> Result<Reply, Reason> {
        let idx = self.index;
        let acquire = cmd.as_acquire();
        match cmd {
            Command::Acquire(_) | Command::AcquireWith(_) => {
                let (a, mode) = acquire.expect("an acquire");
                if !ok_ident(&a.tenant, 64, b"")
                    || a.key.is_empty()
                    || a.key.len() > 256
                    || !a.key.bytes().all(|b| b.is_ascii_graphic())
                    || !ok_ident(&a.owner, 128, b"@:/")
                    || a.request_id.is_empty()
                    || a.request_id.len() > 128
                    || !a.request_id.bytes().all(|b| b.is_ascii_graphic())
                {
                    return Err(Reason::InvalidRequest);
                }
                if mode == Mode::Semaphore(0) {
                    return Err(Reason::InvalidRequest);
                }
                let what = (0, a.key.clone(), None, a.ttl_ms, mode);
                if let Some(r) = self
                    .requests
                    .iter()
                    .find(|r| r.tenant == a.tenant && r.owner == a.owner && r.rid == a.request_id)
                {
                    return self.retry(r, &what);
                }
                if a.ttl_ms < self.cfg.min_ttl_ms || a.ttl_ms > self.cfg.max_ttl_ms {
                    return Err(Reason::InvalidTtl);
                }
                if a.wait_timeout_ms > self.cfg.max_wait_timeout_ms
                    || mode.limit() > self.cfg.max_waiters_per_lock
                {
                    return Err(Reason::InvalidRequest);
                }
                let lock_exists = self
                    .tokens
                    .iter()
                    .any(|((t, k), _)| t == &a.tenant && k == &a.key);
                let tenant_locks = self
                    .tokens
                    .iter()
                    .filter(|((t, _), _)| t == &a.tenant)
                    .count() as u64;
                let mut tenants: Vec<&String> = self.tokens.iter().map(|((t, _), _)| t).collect();
                tenants.sort();
                tenants.dedup();
                if tenant_locks == 0 && tenants.len() as u64 >= self.cfg.max_tenants {
                    return Err(Reason::TooManyLocks);
                }
                if !lock_exists && tenant_locks >= self.cfg.max_locks_per_tenant {
                    return Err(Reason::TooManyLocks);
                }
                let (t, k) = (&a.tenant, &a.key);
                if self.kind(t, k).is_some_and(|limit| limit != mode.limit()) {
                    return Err(Reason::LockModeConflict);
                }
                let free = self.waiters(t, k).is_empty() && self.fits(t, k, mode);
                let mut view = LeaseView {
                    id: LeaseId::from_index(idx),
                    tenant: a.tenant.as_str().into(),
                    key: a.key.as_str().into(),
                    owner: a.owner.as_str().into(),
                    ttl_ms: a.ttl_ms,
                    state: LeaseState::Waiting,
                    token: 0,
                    version: 1,
                    wait_timeout_ms: a.wait_timeout_ms,
                    ended: None,
                    mode,
                };
                let kind = if free {
                    if mode != Mode::Exclusive
                        && self.holders(t, k).len() >= self.cfg.max_waiters_per_lock as usize
                    {
                        return Err(Reason::TooManyWaiters);
                    }
                    let token = self.token(t, k) + 1;
                    self.set_token(t, k, token);
                    view.state = LeaseState::Active;
                    view.token = token;
                    AuditKind::LeaseAcquire
                } else if a.wait_timeout_ms > 0 {
                    if self.waiters(t, k).len() >= self.cfg.max_waiters_per_lock as usize {
                        return Err(Reason::TooManyWaiters);
                    }
                    AuditKind::LeaseWait
                } else if !self.holders(t, k).is_empty() {
                    return Err(Reason::LockHeld);
                } else {
                    return Err(Reason::LockDelayed);
                };
                if self.token(&a.tenant, &a.key) == 0 {
                    self.set_token(&a.tenant, &a.key, 0);
                }
                self.requests.push(MRequest {
                    tenant: a.tenant.clone(),
                    owner: a.owner.clone(),
                    rid: a.request_id.clone(),
                    what,
                    lease: view.id,
                    index: idx,
                    answer: None,
                });
                self.leases.push(MLease {
                    view: view.clone(),
                    ended_at: 0,
                });
                ev.push((kind, Some(view.id), view.token, self.holder_ids(t, k)));
                Ok(Reply::Lease(view))
            }
            Command::Renew(c) => {
                if !ok_ident(&c.tenant, 64, b"")
                    || !ok_ident(&c.owner, 128, b"@:/")
                    || c.request_id.is_empty()
                {
                    return Err(Reason::InvalidRequest);
                }
                let what = (
                    1,
                    String::new(),
                    Some(c.lease_id),
                    c.ttl_ms,
                    Mode::Exclusive,
                );
                if let Some(r) = self
                    .requests
                    .iter()
                    .find(|r| r.tenant == c.tenant && r.owner == c.owner && r.rid == c.request_id)
                {
                    return self.retry(r, &what);
                }
                if c.ttl_ms < self.cfg.min_ttl_ms || c.ttl_ms > self.cfg.max_ttl_ms {
                    return Err(Reason::InvalidTtl);
                }
                let i = self.live_check(&c.tenant, c.lease_id, &c.owner)?;
                let v = &mut self.leases[i].view;
                v.ttl_ms = c.ttl_ms;
                v.version += 1;
                let v = v.clone();
                let holders = self.holder_ids(&v.tenant, &v.key);
                ev.push((AuditKind::LeaseRenew, Some(v.id), v.token, holders));
                self.requests.push(MRequest {
                    tenant: c.tenant.clone(),
                    owner: c.owner.clone(),
                    rid: c.request_id.clone(),
                    what,
                    lease: v.id,
                    index: idx,
                    answer: Some(v.clone()),
                });
                Ok(Reply::Lease(v))
            }
            Command::Release(c) => {
                if !ok_ident(&c.tenant, 64, b"")
                    || !ok_ident(&c.owner, 128, b"@:/")
                    || c.request_id.is_empty()
                {
                    return Err(Reason::InvalidRequest);
                }
                let what = (2, String::new(), Some(c.lease_id), 0, Mode::Exclusive);
                if let Some(r) = self
                    .requests
                    .iter()
                    .find(|r| r.tenant == c.tenant && r.owner == c.owner && r.rid == c.request_id)
                {
                    return self.retry(r, &what);
                }
                let i = self.live_check(&c.tenant, c.lease_id, &c.owner)?;
                let v = self.finish(
                    i,
                    LeaseState::Released,
                    EndReason::Released,
                    AuditKind::LeaseRelease,
                    ev,
                );
                self.requests.push(MRequest {
                    tenant: c.tenant.clone(),
                    owner: c.owner.clone(),
                    rid: c.request_id.clone(),
                    what,
                    lease: v.id,
                    index: idx,
                    answer: Some(v.clone()),
                });
                Ok(Reply::Lease(v))
            }
            Command::Expire(c) => match self.find(c.lease_id) {
                Some(i)
                    if !self.leases[i].view.state.is_terminal()
                        && c.expected_version
                            .is_none_or(|v| v == self.leases[i].view.version) =>
                {
                    Ok(Reply::Lease(self.finish(
                        i,
                        LeaseState::Expired,
                        EndReason::Expired,
                        AuditKind::LeaseExpire,
                        ev,
                    )))
                }
                _ => Ok(Reply::Unchanged),
            },
            Command::CancelWait(c) => match self.find(c.lease_id) {
                Some(i) if self.leases[i].view.state == LeaseState::Waiting => {
                    let why = match c.cause {
                        CancelCause::WaitTimeout => EndReason::WaitTimedOut,
                        CancelCause::Abandoned => EndReason::WaitAbandoned,
                    };
                    Ok(Reply::Lease(self.finish(
                        i,
                        LeaseState::Released,
                        why,
                        AuditKind::LeaseWaitCancel,
                        ev,
                    )))
                }
                _ => Ok(Reply::Unchanged),
            },
            Command::ForceRelease(c) => {
                if !ok_ident(&c.tenant, 64, b"") || c.key.is_empty() || c.reason.trim().is_empty() {
                    return Err(Reason::InvalidRequest);
                }
                let ids = self.holder_ids(&c.tenant, &c.key);
                let ending: Vec<LeaseId> = match c.lease_id {
                    Some(id) if ids.contains(&id) => vec![id],
                    Some(_) => return Ok(Reply::Lock(self.lock_view(&c.tenant, &c.key))),
                    None => ids,
                };
                if ending.is_empty() && self.is_delayed(&c.tenant, &c.key) {
                    self.delayed
                        .retain(|(a, b)| !(a == &c.tenant && b == &c.key));
                    let holders = self.holder_ids(&c.tenant, &c.key);
                    ev.push((AuditKind::LockDelayClear, None, 0, holders));
                    self.grant_next(&c.tenant, &c.key, ev);
                }
                for id in ending {
                    let i = self.find(id).expect("a holder is kept");
                    self.finish(
                        i,
                        LeaseState::Released,
                        EndReason::ForceReleased,
                        AuditKind::ForceRelease,
                        ev,
                    );
                }
                Ok(Reply::Lock(self.lock_view(&c.tenant, &c.key)))
            }
            Command::ClearLockDelay(c) => {
                if !self.is_delayed(&c.tenant, &c.key) {
                    return Ok(Reply::Unchanged);
                }
                self.delayed
                    .retain(|(a, b)| !(a == &c.tenant && b == &c.key));
                let holders = self.holder_ids(&c.tenant, &c.key);
                ev.push((AuditKind::LockDelayClear, None, 0, holders));
                self.grant_next(&c.tenant, &c.key, ev);
                Ok(Reply::Lock(self.lock_view(&c.tenant, &c.key)))
            }
            Command::Import(_)
            | Command::Name(_)
            | Command::RestoreBegin(_)
            | Command::RestoreChunk(_)
            | Command::RestoreCommit(_)
            | Command::RestoreAbort(_) => {
                unreachable!("the strategy never imports or restores (tests/restore.rs does)")
            }
            Command::Configure(c) => {
                if c.validate().is_err() {
                    return Err(Reason::InvalidRequest);
                }
                self.cfg = c.clone();
                Ok(Reply::Configured(c.clone()))
            }
        }
    }
}

const TENANTS: [&str; 2] = ["t1", "t2"];
const KEYS: [&str; 3] = ["a", "b/c", "d:e"];
const OWNERS: [&str; 3] = ["o1", "o2", "o3"];

fn pick<T: Clone + std::fmt::Debug + 'static>(xs: &'static [T]) -> proptest::sample::Select<T> {
    proptest::sample::select(xs)
}

/// A command over a small universe, so that collisions (same key, same
/// request id, existing lease ids) are frequent.
fn command(max_id: u64) -> impl Strategy<Value = Command> {
    let tenant = pick(&TENANTS).prop_map(String::from);
    let key = pick(&KEYS).prop_map(String::from);
    let owner = prop_oneof![10 => pick(&OWNERS).prop_map(String::from), 1 => Just(String::new())];
    let rid = (0u8..6).prop_map(|i| format!("r{i}"));
    let ttl = prop_oneof![4 => Just(10_000u64), 2 => Just(20_000u64), 1 => Just(5u64)];
    let wait = prop_oneof![Just(0u64), Just(1_000u64)];
    let id = (1..=max_id).prop_map(LeaseId::from_index);
    let mode = prop_oneof![
        8 => Just(Mode::Exclusive),
        5 => Just(Mode::Shared),
        2 => Just(Mode::Semaphore(2)),
        2 => Just(Mode::Semaphore(3)),
        1 => Just(Mode::Semaphore(1)),
        1 => Just(Mode::Semaphore(0)),
    ];
    prop_oneof![
        6 => (tenant.clone(), key.clone(), owner.clone(), rid.clone(), ttl.clone(), wait, mode).prop_map(
            |(tenant, key, owner, request_id, ttl_ms, wait_timeout_ms, mode)| Command::acquire(Acquire {
                tenant, key, owner, request_id, ttl_ms, wait_timeout_ms
            }, mode)
        ),
        2 => (tenant.clone(), id.clone(), owner.clone(), rid.clone(), ttl).prop_map(
            |(tenant, lease_id, owner, request_id, ttl_ms)| Command::Renew(Renew {
                tenant, lease_id, owner, request_id, ttl_ms
            })
        ),
        4 => (tenant.clone(), id.clone(), owner, rid).prop_map(
            |(tenant, lease_id, owner, request_id)| Command::Release(Release {
                tenant, lease_id, owner, request_id
            })
        ),
        3 => (id.clone(), proptest::option::of(1u64..4)).prop_map(|(lease_id, expected_version)| {
            Command::Expire(Expire { lease_id, expected_version })
        }),
        1 => (id.clone(), any::<bool>()).prop_map(|(lease_id, t)| Command::CancelWait(CancelWait {
            lease_id,
            cause: if t { CancelCause::WaitTimeout } else { CancelCause::Abandoned },
        })),
        1 => (tenant.clone(), key.clone(), proptest::option::of(id)).prop_map(|(tenant, key, lease_id)| {
            Command::ForceRelease(ForceRelease {
                tenant, key, actor: "admin".into(), reason: "test".into(), lease_id
            })
        }),
        1 => (tenant, key).prop_map(|(tenant, key)| Command::ClearLockDelay(ClearLockDelay { tenant, key })),
        1 => config().prop_map(Command::Configure),
    ]
}

fn config() -> impl Strategy<Value = TableConfig> {
    (
        prop_oneof![Just(0u64), Just(5_000u64)],
        1u32..4,
        3u64..40,
        1u64..12,
        3u64..40,
        1u64..12,
        prop_oneof![3 => Just((1_000u64, 1_000u64)), 1 => (1u64..3, 1u64..3)],
    )
        .prop_map(
            |(
                lock_delay_ms,
                max_waiters_per_lock,
                ra,
                rc,
                la,
                lc,
                (max_locks_per_tenant, max_tenants),
            )| TableConfig {
                lock_delay_ms,
                max_waiters_per_lock,
                max_locks_per_tenant,
                max_tenants,
                request_retention_entries: ra,
                request_retention_count: rc,
                lease_retention_entries: la,
                lease_retention_count: lc,
                ..TableConfig::default()
            },
        )
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128)
}

fn run(table: &mut Table, index: u64, cmd: Command) -> (Result<Reply, Reason>, Events, Vec<u64>) {
    let applied = table.apply(
        ApplyCtx {
            index,
            at_ms: index,
        },
        cmd,
    );
    let ev = applied
        .events
        .iter()
        .map(|e| {
            let holders = e.holders.iter().map(|h| h.lease_id).collect();
            (e.kind, e.lease_id, e.token, holders)
        })
        .collect();
    let seqs = applied.events.iter().map(|e| e.seq).collect();
    (applied.result.map_err(|e: Error| e.reason()), ev, seqs)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Same replies and events as the model, every invariant after every step,
    /// tokens +1 per grant per lock, audit sequence without gaps.
    #[test]
    fn tn_det_001_table_agrees_with_the_naive_model(
        cfg in config(),
        cmds in proptest::collection::vec(command(160), 80..160),
    ) {
        let mut table = Table::new(cfg.clone()).unwrap();
        // A second replica fed the same log: its digest must match (INV-5).
        let mut replica = Table::new(cfg.clone()).unwrap();
        let mut model = Model::new(cfg);
        let mut seq = 0;
        let mut last_token: BTreeMap<(String, String), u64> = BTreeMap::new();
        for (i, cmd) in cmds.into_iter().enumerate() {
            let index = i as u64 + 1;
            let (want, want_ev) = model.step(&cmd);
            let (got, got_ev, seqs) = run(&mut table, index, cmd.clone());
            let _ = run(&mut replica, index, cmd.clone());
            prop_assert_eq!(&got, &want, "reply to {:?} at {}", cmd, index);
            prop_assert_eq!(&got_ev, &want_ev, "events of {:?} at {}", cmd, index);
            for s in seqs {
                seq += 1;
                prop_assert_eq!(s, seq, "audit sequence has a gap");
            }
            prop_assert_eq!(table.audit_seq(), seq);
            if let Err(e) = table.verify() {
                return Err(TestCaseError::fail(format!("invariant after {cmd:?}: {e}")));
            }
            for (kind, id, token, _) in &got_ev {
                if *kind == AuditKind::LeaseAcquire {
                    let l = table.lease_any(id.unwrap());
                    let last = last_token.entry((l.0, l.1)).or_insert(0);
                    prop_assert_eq!(*token, *last + 1, "token must be last + 1");
                    *last = *token;
                }
            }
        }
        prop_assert_eq!(table.digest(), replica.digest(), "replicas diverged");
    }

    /// Snapshot at a random point, restore, and the copy behaves the same.
    #[test]
    fn tn_snap_001_restored_tables_behave_the_same(
        cfg in config(),
        cmds in proptest::collection::vec(command(120), 40..120),
        cut in 0usize..40,
    ) {
        let mut a = Table::new(cfg).unwrap();
        for (i, cmd) in cmds[..cut].iter().enumerate() {
            a.apply(ApplyCtx { index: i as u64 + 1, at_ms: 0 }, cmd.clone());
        }
        let mut b = Table::restore(&a.snapshot()).unwrap();
        prop_assert_eq!(a.digest(), b.digest());
        for (i, cmd) in cmds.iter().enumerate().skip(cut) {
            let index = i as u64 + 1;
            prop_assert_eq!(run(&mut a, index, cmd.clone()), run(&mut b, index, cmd.clone()));
            prop_assert_eq!(a.digest(), b.digest());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// A backup (JSON lines) of a random table reads back into the same
    /// table, which then behaves the same.
    #[test]
    fn tn_bak_001_a_backup_reads_back_into_the_same_table(
        cfg in config(),
        cmds in proptest::collection::vec(command(120), 40..120),
        cut in 0usize..40,
    ) {
        let mut a = Table::new(cfg).unwrap();
        for (i, cmd) in cmds[..cut].iter().enumerate() {
            a.apply(ApplyCtx { index: i as u64 + 1, at_ms: 0 }, cmd.clone());
        }
        let source = tenure_core::backup::Source {
            source_node: 1,
            leader_term: 2,
            applied_index: cut as u64,
            exported_at: "1970-01-01T00:00:00.000Z".into(),
            exported_at_ms: 0,
        };
        let text: String = a.backup_lines(source, |_| Some(7)).collect();
        let read = tenure_core::backup::read(text.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&read.table, &a);
        prop_assert_eq!(read.table.digest(), a.digest());
        let mut b = read.table;
        for (i, cmd) in cmds.iter().enumerate().skip(cut) {
            let index = i as u64 + 1;
            prop_assert_eq!(run(&mut a, index, cmd.clone()), run(&mut b, index, cmd.clone()));
        }
        prop_assert_eq!(a.digest(), b.digest());
    }
}

/// Tenant and key of a lease, for the token check.
trait LeaseAny {
    fn lease_any(&self, id: LeaseId) -> (String, String);
}

impl LeaseAny for Table {
    fn lease_any(&self, id: LeaseId) -> (String, String) {
        for t in TENANTS {
            if let Ok(l) = self.lease(t, id) {
                return (l.tenant.to_string(), l.key.to_string());
            }
        }
        panic!("granted lease {id} is not in the table");
    }
}

/// A backup of `table` as text.
fn backup_text(table: &Table) -> String {
    let source = tenure_core::backup::Source {
        source_node: 1,
        leader_term: 2,
        applied_index: table.last_index(),
        exported_at: "1970-01-01T00:00:00.000Z".into(),
        exported_at_ms: 0,
    };
    table.backup_lines(source, |_| Some(7)).collect()
}

/// Restores `text` into `table` through the log's commands, in chunks of
/// about `chunk` bytes of whole lines; `next` is the next raw index.
fn restore(
    table: &mut Table,
    next: &mut u64,
    text: &str,
    merge: bool,
    gap: u64,
    chunk: usize,
) -> Result<Reply, Error> {
    use tenure_core::{RestoreBegin, RestoreChunk, RestoreCommit};
    let sha = text
        .lines()
        .last()
        .and_then(|l| tenure_core::backup::trailer(l.as_bytes()))
        .map(|(_, sha)| sha)
        .expect("a trailer");
    let mut step = |table: &mut Table, command: Command| {
        let applied = table.apply(
            ApplyCtx {
                index: *next,
                at_ms: *next,
            },
            command,
        );
        *next += 1;
        if let Err(e) = table.verify() {
            panic!("invariant broken by a restore step: {e}");
        }
        applied.result
    };
    let attempt = 77;
    let header: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("a header")).expect("JSON");
    let begin = RestoreBegin {
        sha256: sha,
        cluster_id: header["cluster_id"].as_str().unwrap_or_default().to_owned(),
        attempt,
        term: 1,
        merge,
        token_gap: gap,
        actor: "admin".into(),
        total_bytes: text.len() as u64,
    };
    let reply = step(table, Command::RestoreBegin(begin))?;
    if let Reply::Restore(_) = reply {
        return Ok(reply);
    }
    let mut data = Vec::new();
    let mut seq = 0;
    for line in text.split_inclusive('\n') {
        data.extend_from_slice(line.as_bytes());
        if data.len() >= chunk {
            let c = RestoreChunk {
                attempt,
                seq,
                data: std::mem::take(&mut data),
            };
            step(table, Command::RestoreChunk(c))?;
            seq += 1;
        }
    }
    if !data.is_empty() {
        step(
            table,
            Command::RestoreChunk(RestoreChunk { attempt, seq, data }),
        )?;
    }
    step(table, Command::RestoreCommit(RestoreCommit { attempt }))
}

/// Every token a grant hands out after the restore is above the floor.
fn grants_above(table: &mut Table, next: &mut u64, cmds: &[Command]) -> Result<(), TestCaseError> {
    let floor = table.token_floor();
    for cmd in cmds {
        let applied = table.apply(
            ApplyCtx {
                index: *next,
                at_ms: *next,
            },
            cmd.clone(),
        );
        *next += 1;
        table.verify().map_err(TestCaseError::fail)?;
        for e in &applied.events {
            if e.kind == AuditKind::LeaseAcquire {
                prop_assert!(
                    e.token > floor,
                    "token {} at or below the floor {floor}",
                    e.token
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// A backup restored into an empty table, in chunks of any size: every
    /// lease keeps its id, owner, token and version (waiters end,
    /// abandoned), every lock its holder and last token; every later grant
    /// is above every token the backup knew plus the gap; restoring again
    /// changes nothing.
    #[test]
    fn tn_bak_003_a_restore_keeps_leases_and_raises_every_next_token(
        cfg in config(),
        cmds in proptest::collection::vec(command(120), 40..120),
        cut in 0usize..60,
        gap in 1u64..5_000,
        chunk in 1usize..4_000,
    ) {
        let cut = cut.min(cmds.len());
        let mut a = Table::new(cfg).unwrap();
        for (i, cmd) in cmds[..cut].iter().enumerate() {
            a.apply(ApplyCtx { index: i as u64 + 1, at_ms: 0 }, cmd.clone());
        }
        let text = backup_text(&a);
        let mut b = Table::default();
        let mut next = 1;
        let reply = restore(&mut b, &mut next, &text, false, gap, chunk)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let Reply::Restore(report) = reply else { panic!("{reply:?}") };
        prop_assert!(!report.already);
        let mut highest = 0;
        for t in TENANTS {
            for k in KEYS {
                let (la, lb) = (a.lock(t, k), b.lock(t, k));
                prop_assert_eq!(la.last_token, lb.last_token);
                prop_assert_eq!(&la.active, &lb.active);
                highest = highest.max(la.last_token);
            }
            for id in 1..=cut as u64 {
                let id = LeaseId::from_index(id);
                let Ok(la) = a.lease(t, id) else { continue };
                let Ok(lb) = b.lease(t, id) else {
                    // Only an ended lease (an abandoned waiter among them)
                    // may be forgotten, by the retention of ended leases.
                    prop_assert!(la.state != LeaseState::Active, "holder {} lost", id);
                    continue;
                };
                if la.state == LeaseState::Waiting {
                    prop_assert_eq!(lb.ended, Some(EndReason::WaitAbandoned));
                    prop_assert_eq!(lb.version, la.version + 1);
                } else {
                    prop_assert_eq!(la, lb);
                }
            }
        }
        prop_assert!(b.token_floor() >= highest + gap);
        prop_assert!(b.audit_seq() > a.audit_seq() + gap);
        // Again: already restored, nothing changes (but the position, and
        // what ages with it: remembered requests and ended leases).
        let contents = |t: &Table| {
            let locks: Vec<LockView> = TENANTS
                .iter()
                .flat_map(|te| KEYS.iter().map(move |k| t.lock(te, k)))
                .collect();
            let s = t.stats();
            (locks, s.active, s.waiting, t.audit_seq(), t.token_floor(), t.restores().to_vec())
        };
        let before = contents(&b);
        let again = restore(&mut b, &mut next, &text, false, gap, chunk)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let Reply::Restore(again) = again else { panic!("{again:?}") };
        prop_assert!(again.already);
        prop_assert_eq!(again.index, report.index);
        prop_assert_eq!(contents(&b), before);
        grants_above(&mut b, &mut next, &cmds)?;
    }

    /// A merge into a table with locks of its own: every lock keeps the
    /// higher token, the table stays consistent, and every later grant is
    /// above the floor.
    #[test]
    fn tn_bak_004_a_merge_keeps_the_higher_token_of_every_lock(
        cfg in config(),
        cmds in proptest::collection::vec(command(120), 40..120),
        own in proptest::collection::vec(command(60), 10..60),
        cut in 0usize..60,
        gap in 1u64..5_000,
    ) {
        let cut = cut.min(cmds.len());
        // Both tables are the same cluster: a merge takes only that.
        let name = || Command::Name(tenure_core::Name { cluster_id: "c1".into() });
        let mut a = Table::new(cfg.clone()).unwrap();
        a.apply(ApplyCtx { index: 1, at_ms: 0 }, name());
        for (i, cmd) in cmds[..cut].iter().enumerate() {
            a.apply(ApplyCtx { index: i as u64 + 2, at_ms: 0 }, cmd.clone());
        }
        let text = backup_text(&a);
        let mut c = Table::new(cfg).unwrap();
        c.apply(ApplyCtx { index: 1, at_ms: 0 }, name());
        let mut next = 2;
        for cmd in &own {
            c.apply(ApplyCtx { index: next, at_ms: 0 }, cmd.clone());
            next += 1;
        }
        let before: Vec<LockView> = TENANTS
            .iter()
            .flat_map(|t| KEYS.iter().map(|k| c.lock(t, k)))
            .collect();
        let merged = restore(&mut c, &mut next, &text, true, gap, 512);
        let empty = before.iter().all(|l| l.last_token == 0 && l.active.is_none()) && c.stats().locks == 0;
        if let Err(e) = &merged {
            prop_assert!(empty, "a merge was refused: {e}");
        }
        let mut i = 0;
        for t in TENANTS {
            for k in KEYS {
                let now = c.lock(t, k);
                // The next grant is above both histories.
                let next_token = now.last_token.max(c.token_floor()) + 1;
                prop_assert!(next_token > before[i].last_token.max(a.lock(t, k).last_token));
                // A live holder of the table stays the holder.
                if let Some(h) = &before[i].active {
                    prop_assert_eq!(now.active.as_ref().map(|l| l.id), Some(h.id));
                }
                i += 1;
            }
        }
        grants_above(&mut c, &mut next, &cmds)?;
    }
}
