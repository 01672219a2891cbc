//! The leader's lease timers: the time model of docs/time.md (rules 1, 2,
//! 4 and 6), on the node's monotonic clock (`tokio::time`, which
//! simulations drive).
//!
//! The replicated table holds TTLs; deadlines live here, in the leader's
//! memory only:
//! - a grant or a renewal at local time `t` sets the deadline `t + ttl`, and a
//!   deadline only moves later, never earlier (extending costs liveness,
//!   shortening costs safety);
//! - when a deadline passes, the leader proposes `Expire` (with the lease's
//!   version, so a lease that changed meanwhile is left alone) and refuses
//!   renewals of that lease while the expiry is in flight;
//! - a new leader takes office only once it has applied an entry of its own
//!   leadership (its term and its id: openraft lets a later leader win the
//!   same term), so every `Expire` a deposed leader proposed has applied; then
//!   extends every live lease by its full TTL plus the election timeout,
//!   spreading expiries that would fall due together;
//! - a timer loop that stalled longer than an election timeout (a paused
//!   process, say) takes office again instead of expiring everything at once;
//! - waits time out (`CancelWait`), and lock-delays end (`ClearLockDelay`),
//!   on timers of the same kind.
//!
//! Followers keep nothing here.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use openraft::ServerState;
use tenure_core::{
    AuditKind, CancelCause, CancelWait, ClearLockDelay, Command, Expire, LeaseId, LeaseState,
    Reason,
};
use tenure_raft::{Notice, Proposer, Raft, TableReader};
use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;

use crate::clock::{Harness, NodeClock, Sabotage};

/// What a timer does when it fires.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Due {
    /// The lease's deadline: propose `Expire`.
    Expire(LeaseId),
    /// The waiting acquire's wait timeout: propose `CancelWait`.
    Wait(LeaseId),
    /// A lock-delay's end: propose `ClearLockDelay`.
    Delay(Arc<str>, Arc<str>),
}

#[derive(Default)]
struct Timers {
    /// This node leads and has taken office: it keeps deadlines.
    active: bool,
    /// The deadline of every timer, and the version a lease had when armed.
    at: HashMap<Due, (Instant, u64)>,
    /// The same timers by time, for the next to fire.
    timeline: BTreeSet<(Instant, Due)>,
    /// Leases whose `Expire` is proposed and not yet applied.
    expiring: HashSet<LeaseId>,
}

impl Timers {
    /// Sets a timer; a lease deadline only moves later unless `exact`.
    /// A lease's version only grows: the timer keeps the highest seen, so
    /// a late arm with an older version cannot make its `Expire` stale.
    fn arm(&mut self, due: Due, when: Instant, version: u64, exact: bool) {
        let mut version = version;
        if let Some((old, old_version)) = self.at.get(&due).copied() {
            version = version.max(old_version);
            if !exact && old >= when {
                self.at.insert(due, (old, version));
                return;
            }
            self.timeline.remove(&(old, due.clone()));
        }
        self.at.insert(due.clone(), (when, version));
        self.timeline.insert((when, due));
    }

    fn disarm(&mut self, due: &Due) {
        if let Some((when, _)) = self.at.remove(due) {
            self.timeline.remove(&(when, due.clone()));
        }
    }

    fn clear(&mut self) {
        *self = Timers::default();
    }
}

/// Arms, from `now`, every live lease of `table` for `extension(ttl,
/// spread)` (the spread, up to a second, keeps expiries that would fall due
/// together apart), each waiter's wait when `waits`, and every lock-delay.
fn arm_table(
    t: &mut Timers,
    table: &tenure_core::Table,
    now: Instant,
    extension: impl Fn(Duration, Duration) -> Duration,
    waits: bool,
) {
    let delay = Duration::from_millis(table.config().lock_delay_ms);
    for (i, lease) in table.live_leases().enumerate() {
        let spread = Duration::from_millis((i % 1_000) as u64);
        let ttl = Duration::from_millis(lease.ttl_ms);
        let until = now + extension(ttl, spread);
        t.arm(Due::Expire(lease.id), until, lease.version, false);
        if waits && lease.state == LeaseState::Waiting {
            let wait = Duration::from_millis(lease.wait_timeout_ms);
            t.arm(
                Due::Wait(lease.id),
                now + wait + spread,
                lease.version,
                false,
            );
        }
    }
    for (tenant, key) in table.delayed_locks() {
        t.arm(Due::Delay(tenant.into(), key.into()), now + delay, 0, false);
    }
}

/// The leader's timers, shared by the timer loop and the services.
#[derive(Clone)]
pub struct LeaseTimers {
    timers: Arc<Mutex<Timers>>,
    wake: Arc<Notify>,
    /// Added to every lease at a change of leader: the election timeout.
    election: Duration,
    /// The clock deadlines live on.
    clock: NodeClock,
    /// Deliberate breaks, for the simulation's negative controls.
    sabotage: Sabotage,
}

/// Why a renewal was not extended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenewRefusal {
    /// This node does not lead (or has not taken office yet).
    NotLeader,
    /// The lease's expiry is already in flight.
    Expiring,
    /// This leader keeps no deadline for the lease: it ended (its expiry or
    /// release applied while the renewal was checked), or its grant is too
    /// new for the timers to have armed it. Retryable: a retry reads the
    /// table again and answers which.
    NotArmed,
}

impl RenewRefusal {
    /// The stable reason a client sees.
    pub fn reason(self) -> Reason {
        match self {
            RenewRefusal::NotLeader => Reason::NotLeader,
            RenewRefusal::Expiring => Reason::LeaseExpired,
            RenewRefusal::NotArmed => Reason::Unavailable,
        }
    }
}

impl LeaseTimers {
    /// Timers on the machine's clock that add `election` to every lease at
    /// a change of leader.
    pub fn new(election: Duration) -> LeaseTimers {
        LeaseTimers::with_harness(election, &Harness::default())
    }

    /// Timers on the harness's clock, with its negative controls.
    pub fn with_harness(election: Duration, harness: &Harness) -> LeaseTimers {
        LeaseTimers {
            timers: Arc::default(),
            wake: Arc::default(),
            election,
            clock: harness.clock.clone(),
            sabotage: harness.sabotage,
        }
    }

    /// The node's clocks.
    pub fn clock(&self) -> &NodeClock {
        &self.clock
    }

    /// The negative controls in force (none outside simulations).
    pub fn sabotage(&self) -> Sabotage {
        self.sabotage
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Timers> {
        self.timers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this node keeps deadlines now (it leads and took office).
    pub fn active(&self) -> bool {
        self.lock().active
    }

    /// Extends a lease to `now + ttl` after its renewal was confirmed by a
    /// quorum read; returns the time left.
    pub fn renew(
        &self,
        id: LeaseId,
        ttl: Duration,
        version: u64,
    ) -> Result<Duration, RenewRefusal> {
        let now = self.clock.now();
        let mut t = self.lock();
        if !t.active {
            return Err(RenewRefusal::NotLeader);
        }
        if t.expiring.contains(&id) {
            return Err(RenewRefusal::Expiring);
        }
        // Only a lease whose deadline this leader keeps is renewed: one that
        // ended meanwhile was disarmed, and re-arming it would promise a
        // holder a lock that is already someone else's.
        if !t.at.contains_key(&Due::Expire(id)) {
            return Err(RenewRefusal::NotArmed);
        }
        t.arm(Due::Expire(id), now + ttl, version, false);
        let deadline = t.at.get(&Due::Expire(id)).map_or(now, |(d, _)| *d);
        drop(t);
        self.wake.notify_one();
        Ok(deadline.saturating_duration_since(now))
    }

    /// The time left on a lease's deadline, if this node keeps one.
    pub fn remaining(&self, id: LeaseId) -> Option<Duration> {
        let now = self.clock.now();
        let t = self.lock();
        t.at.get(&Due::Expire(id))
            .map(|(d, _)| d.saturating_duration_since(now))
    }

    /// Arms every live lease, wait and lock-delay from the table, extended
    /// by the election timeout: a leader taking office (or waking from a
    /// stall) does not know what its predecessor promised, so it promises
    /// at least as much.
    fn take_office(&self, table: &TableReader, now: Instant) {
        let applier = table.read();
        let t_table = &applier.table;
        let mut t = self.lock();
        t.active = true;
        t.expiring.clear();
        let sabotage = self.sabotage.no_extension_on_promotion;
        let extension = |ttl, spread| {
            if sabotage {
                Duration::ZERO
            } else {
                ttl + self.election + spread
            }
        };
        arm_table(&mut t, t_table, now, extension, true);
        drop(t);
        tracing::info!(
            leases = t_table.stats().active + t_table.stats().waiting,
            "took office: every lease extended"
        );
        self.wake.notify_one();
    }

    /// Follows one applied entry's events.
    fn on_notice(&self, table: &TableReader, notice: &Notice, now: Instant) {
        // The table first, then the timers: the same order as take_office.
        let applier = table.read();
        let mut t = self.lock();
        if !t.active {
            return;
        }
        let delay = Duration::from_millis(applier.table.config().lock_delay_ms);
        for e in &notice.events {
            let lease = e
                .lease_id
                .and_then(|id| applier.table.lease(&e.tenant, id).ok());
            match (e.kind, e.lease_id, lease) {
                (AuditKind::LeaseAcquire, Some(id), Some(l)) => {
                    t.disarm(&Due::Wait(id));
                    t.expiring.remove(&id);
                    t.arm(
                        Due::Expire(id),
                        now + Duration::from_millis(l.ttl_ms),
                        l.version,
                        false,
                    );
                }
                (AuditKind::LeaseWait, Some(id), Some(l)) => {
                    t.arm(
                        Due::Expire(id),
                        now + Duration::from_millis(l.ttl_ms),
                        l.version,
                        false,
                    );
                    t.arm(
                        Due::Wait(id),
                        now + Duration::from_millis(l.wait_timeout_ms),
                        l.version,
                        false,
                    );
                }
                (AuditKind::LeaseRenew, Some(id), Some(l)) => {
                    // A TTL change through the log counts from its apply.
                    t.arm(
                        Due::Expire(id),
                        now + Duration::from_millis(l.ttl_ms),
                        l.version,
                        true,
                    );
                }
                (AuditKind::LockDelaySet, _, _) => {
                    t.arm(
                        Due::Delay(e.tenant.clone(), e.key.clone()),
                        now + delay,
                        0,
                        false,
                    );
                }
                (AuditKind::LockDelayClear, _, _) => {
                    t.disarm(&Due::Delay(e.tenant.clone(), e.key.clone()))
                }
                (AuditKind::Restore, _, _) => {
                    // Restored holders get their full TTL from the commit;
                    // restored lock-delays run again from it.
                    arm_table(
                        &mut t,
                        &applier.table,
                        now,
                        |ttl, spread| ttl + spread,
                        false,
                    );
                }
                (_, Some(id), _) => {
                    // Released, expired, force-released, cancelled: gone.
                    t.disarm(&Due::Expire(id));
                    t.disarm(&Due::Wait(id));
                    t.expiring.remove(&id);
                }
                _ => {}
            }
        }
        drop(t);
        self.wake.notify_one();
    }

    /// Takes every timer due at `now` off the timeline, marking expiries as
    /// in flight, and says what to propose.
    fn fire(&self, now: Instant) -> Vec<Command> {
        let mut t = self.lock();
        let mut commands = Vec::new();
        while let Some((when, due)) = t.timeline.first().cloned() {
            if when > now {
                break;
            }
            t.timeline.pop_first();
            let version = t.at.remove(&due).map(|(_, v)| v);
            commands.push(match due {
                Due::Expire(id) => {
                    t.expiring.insert(id);
                    Command::Expire(Expire {
                        lease_id: id,
                        expected_version: version,
                    })
                }
                Due::Wait(id) => Command::CancelWait(CancelWait {
                    lease_id: id,
                    cause: CancelCause::WaitTimeout,
                }),
                Due::Delay(tenant, key) => Command::ClearLockDelay(ClearLockDelay {
                    tenant: tenant.to_string(),
                    key: key.to_string(),
                }),
            });
        }
        commands
    }

    /// A leader taking office in a cluster without a name gives it one:
    /// derived from the leader, its term and its wall clock, so no two
    /// clusters share one (and a simulation stays deterministic). The first
    /// name applied stays.
    fn name_cluster(&self, table: &TableReader, proposer: &Proposer, id: u64, term: u64) {
        if !table.read().table.cluster_id().is_empty() {
            return;
        }
        use sha2::{Digest, Sha256};
        let wall = self.clock.wall_ms();
        let digest = Sha256::digest(format!("tenure cluster {id} {term} {wall}"));
        let cluster_id = hex::encode(&digest[..8]);
        let (proposer, timers, table) = (proposer.clone(), self.clone(), table.clone());
        // Until it is named, while this node leads: a proposal that did not
        // commit (the leader was still settling) is made again.
        tokio::spawn(async move {
            while timers.active() && table.read().table.cluster_id().is_empty() {
                let name = Command::Name(tenure_core::Name {
                    cluster_id: cluster_id.clone(),
                });
                match proposer.propose(timers.clock.wall_ms(), name).await {
                    Ok(_) => return,
                    Err(e) => {
                        tracing::debug!(error = %e, "naming the cluster did not commit; again");
                        let later = timers.clock.now() + Duration::from_millis(200);
                        timers.clock.sleep_until(later).await;
                    }
                }
            }
        });
    }

    fn next_due(&self) -> Option<Instant> {
        self.lock().timeline.first().map(|(when, _)| *when)
    }

    fn step_down(&self) {
        let mut t = self.lock();
        if t.active {
            tracing::info!("no longer leading: lease timers dropped");
        }
        t.clear();
    }

    /// Runs the timers of this node for as long as raft runs: follows
    /// leadership, applied entries and the clock, and proposes what falls due.
    pub async fn run(self, raft: Raft, proposer: Proposer, table: TableReader, tick: Duration) {
        let mut notices = table.subscribe();
        let mut metrics = raft.metrics();
        // Stalls are measured on the true monotonic clock, not on the
        // deadline clock (which, in a negative control, can step).
        let mut last_tick = Instant::now();
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let next = self
                .next_due()
                .unwrap_or_else(|| self.clock.now() + Duration::from_secs(3600));
            tokio::select! {
                notice = notices.recv() => match notice {
                    Ok(n) => self.on_notice(&table, &n, self.clock.now()),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "lease timers fell behind the log: re-reading the table");
                        if self.active() {
                            self.take_office(&table, self.clock.now());
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                changed = metrics.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let m = metrics.borrow_and_update().clone();
                    // In office: leading, and an entry of this very
                    // leadership applied (openraft allows a later leader in
                    // the same term, so the term alone is not enough).
                    let in_office = m.state == ServerState::Leader
                        && m.last_applied.is_some_and(|l| l.leader_id == *m.vote.leader_id());
                    match (in_office, self.active()) {
                        (true, false) => {
                            self.take_office(&table, self.clock.now());
                            self.name_cluster(&table, &proposer, m.id, m.current_term);
                        }
                        (false, true) if m.state != ServerState::Leader => self.step_down(),
                        _ => {}
                    }
                }
                _ = self.clock.sleep_until(next) => {
                    for command in self.fire(self.clock.now()) {
                        let (proposer, clock) = (proposer.clone(), self.clock.clone());
                        tokio::spawn(async move {
                            if let Err(e) = proposer.propose(clock.wall_ms(), command).await {
                                tracing::debug!(error = %e, "a timer's proposal did not commit");
                            }
                        });
                    }
                }
                _ = ticker.tick() => {
                    let now = Instant::now();
                    let stalled = now.saturating_duration_since(last_tick) > tick + self.election;
                    last_tick = now;
                    if stalled && self.active() {
                        tracing::warn!("the timer loop stalled: taking office again rather than expiring every lease");
                        self.take_office(&table, self.clock.now());
                    }
                }
                _ = self.wake.notified() => {}
            }
        }
    }
}
