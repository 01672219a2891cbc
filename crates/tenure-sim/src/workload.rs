//! What the simulated clients do: contended locking over a few keys (or
//! many), waiting acquires, leases kept alive past their TTL, fenced writes
//! to the downstream store, linearizable reads; each call recorded.
//!
//! Clients are built on tenure-client, as services use it; the history
//! shows what the client library told them (its grants, its deadlines,
//! its renewals), so a mistake in the library is caught as well.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tenure_check::history::{Kind, Op};
use tenure_client::{AcquireOptions, Client, ClientConfig, Dialer, Error, LockGuard, Mode, Reason};
use tokio::time::Instant;

use crate::history::Process;
use crate::store::Store;

/// How the clients of a scenario behave.
#[derive(Clone, Debug)]
pub struct Workload {
    /// How many client processes.
    pub clients: u64,
    /// The keys they contend for.
    pub keys: usize,
    /// The TTL of every lease.
    pub ttl: Duration,
    /// The longest a client holds a lock (longer than the TTL: kept alive).
    pub hold_max: Duration,
    /// Whether some acquires wait in the queue.
    pub waiters: bool,
    /// A client's pause between checking its guard and writing (a GC
    /// pause), and how likely one is per write.
    pub client_pause: Option<(Duration, f64)>,
    /// Move to a fresh set of keys this often (none: the same keys all
    /// along). A long run on real processes uses it so that each key's
    /// history stays short enough for the linearizability search.
    pub key_epoch: Option<Duration>,
    /// How the clients hold their locks.
    pub modes: Modes,
}

/// How the clients of a workload hold their locks.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Modes {
    /// Every acquire is EXCLUSIVE, and every holder writes under its token.
    #[default]
    Exclusive,
    /// Readers and writers: an acquire is EXCLUSIVE (a writer, who writes
    /// under its token) with this probability, otherwise SHARED (a reader,
    /// who only holds).
    ReadWrite {
        /// The share of writers among acquires.
        writers: f64,
    },
    /// Every acquire takes one of `limit` slots of a semaphore; holders
    /// only hold.
    Semaphore {
        /// The semaphore's slots.
        limit: u32,
    },
}

impl Modes {
    /// The mode of the next acquire.
    fn draw(self, rng: &mut StdRng) -> Mode {
        match self {
            Modes::Exclusive => Mode::Exclusive,
            Modes::ReadWrite { writers } if rng.gen_bool(writers) => Mode::Exclusive,
            Modes::ReadWrite { .. } => Mode::Shared,
            Modes::Semaphore { limit } => Mode::Semaphore(limit),
        }
    }

    /// The mode the auditor takes each key in after the run: exclusive,
    /// so it waits for every holder of a read-write lock; a slot of the
    /// same semaphore otherwise (any other mode would be refused).
    fn audit(self) -> Mode {
        match self {
            Modes::Semaphore { limit } => Mode::Semaphore(limit),
            Modes::Exclusive | Modes::ReadWrite { .. } => Mode::Exclusive,
        }
    }
}

/// Marks an acquire event with its mode (nothing for EXCLUSIVE, so
/// histories without modes stay as they were).
fn mark(ev: &mut tenure_check::history::Event, mode: Mode) {
    ev.set_mode(match mode {
        Mode::Exclusive => tenure_check::Mode::Exclusive,
        Mode::Shared => tenure_check::Mode::Shared,
        Mode::Semaphore(n) => tenure_check::Mode::Semaphore(n),
    });
}

impl Workload {
    /// The name of key `i` at true time `now`: `k{i}`, or `k{i}-e{epoch}`
    /// when keys move on every `key_epoch`.
    pub fn key_at(&self, i: usize, now: Duration) -> String {
        match self.key_epoch.filter(|e| !e.is_zero()) {
            None => format!("k{i}"),
            Some(every) => format!("k{i}-e{}", now.as_nanos() / every.as_nanos()),
        }
    }
}

/// What one client needs.
pub struct Worker {
    /// The history process.
    pub process: Process,
    /// The client library's configuration.
    pub config: ClientConfig,
    /// The downstream store.
    pub store: Store,
    /// The workload.
    pub workload: Workload,
    /// Its own randomness.
    pub seed: u64,
    /// True time (since the simulation began) at which it stops starting.
    pub stop_at: Duration,
    /// Node hosts, for a pause that freezes this client's network.
    pub nodes: Vec<String>,
    /// This client's host name.
    pub host: String,
    /// Ids for renewal processes.
    pub renew_ids: Arc<AtomicU64>,
    /// Counts clients that finished.
    pub finished: Arc<AtomicUsize>,
}

fn now_true() -> Duration {
    crate::history::true_elapsed()
}

/// Channels over turmoil (the client library times its calls out).
pub fn dialer() -> Dialer {
    Dialer(Arc::new(|addr: &str| {
        use tenure_raft::Connector as _;
        crate::net::TurmoilConnector
            .channel(addr)
            .map_err(|e| e.to_string())
    }))
}

async fn connect(config: &ClientConfig) -> Client {
    loop {
        match Client::connect(config.clone()).await {
            Ok(c) => return c,
            Err(e) => {
                tracing::debug!(error = %e, "client waiting for the cluster");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Records an error as `fail` (a refusal: it had no effect) or `unknown`.
/// An acquire answered LEASE_NOT_ACTIVE or LEASE_EXPIRED did create its
/// lease, which ended before the answer (a wait abandoned by a timed-out
/// call, say): it may have been granted meanwhile, so it is `unknown`.
fn completion(p: &Process, op: Op, key: &str, e: &Error) -> tenure_check::history::Event {
    let created =
        op == Op::Acquire && matches!(e.reason(), Reason::LeaseNotActive | Reason::LeaseExpired);
    match e {
        Error::Refused { reason, .. } if !created => {
            let mut ev = p.event(op, Kind::Fail, key);
            ev.reason = Some(reason.as_str().to_owned());
            ev
        }
        _ => p.event(op, Kind::Unknown, key),
    }
}

/// Records a granted acquire: its lease, token and client-side deadline.
fn record_grant(p: &Process, guard: &LockGuard, mode: Mode) {
    let mut ev = p.event(Op::Acquire, Kind::Ok, guard.key());
    mark(&mut ev, mode);
    ev.lease_id = Some(guard.lease_id().to_owned());
    ev.token = Some(guard.fencing_token());
    ev.deadline_ns = Some(p.clock_ns(guard.deadline()));
    p.record(ev);
}

/// Releases `guard`, recording the call and its outcome.
async fn release(p: &Process, guard: LockGuard) {
    let key = guard.key().to_owned();
    let mut ev = p.event(Op::Release, Kind::Invoke, &key);
    ev.lease_id = Some(guard.lease_id().to_owned());
    ev.token = Some(guard.fencing_token());
    p.record(ev);
    match guard.release().await {
        Ok(()) => p.record(p.event(Op::Release, Kind::Ok, &key)),
        Err(e) => p.record(completion(p, Op::Release, &key, &e)),
    }
}

impl Worker {
    /// Runs the client until `stop_at`, then releases what it holds.
    pub async fn run(self) -> turmoil::Result {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let client = connect(&self.config).await;
        let w = self.workload.clone();
        while now_true() < self.stop_at {
            let key = w.key_at(rng.gen_range(0..w.keys), now_true());
            if rng.gen_bool(0.15) {
                self.get(&client, &key).await;
                continue;
            }
            let wait = if w.waiters && rng.gen_bool(0.5) {
                w.ttl * 2
            } else {
                Duration::ZERO
            };
            let mode = w.modes.draw(&mut rng);
            let Some(guard) = self.acquire(&client, &key, wait, mode).await else {
                let pause = rng.gen_range(10..150);
                tokio::time::sleep(Duration::from_millis(pause)).await;
                continue;
            };
            let hold = Duration::from_millis(rng.gen_range(10..=w.hold_max.as_millis() as u64));
            let end = Instant::now() + hold;
            while Instant::now() < end && now_true() < self.stop_at {
                // Only an exclusive holder writes: readers and semaphore
                // holders share the key, and one store value cannot be
                // fenced among several writers.
                if guard.is_valid() && mode == Mode::Exclusive {
                    if let Some((pause, p)) = w.client_pause
                        && rng.gen_bool(p)
                    {
                        self.freeze(pause).await;
                    }
                    self.fenced_write(&key, guard.fencing_token()).await;
                }
                let gap = rng.gen_range(20..250);
                tokio::time::sleep(Duration::from_millis(gap)).await;
            }
            release(&self.process, guard).await;
            let gap = rng.gen_range(0..60);
            tokio::time::sleep(Duration::from_millis(gap)).await;
        }
        self.finished.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// A pause of the whole process: its network is held (keep-alives
    /// included) while it sleeps, then let go. Outside a simulation there is
    /// no network to hold, and the pause is only a sleep.
    async fn freeze(&self, pause: Duration) {
        if turmoil::sim_elapsed().is_none() {
            tokio::time::sleep(pause).await;
            return;
        }
        for n in &self.nodes {
            turmoil::hold(self.host.as_str(), n.as_str());
        }
        tokio::time::sleep(pause).await;
        for n in &self.nodes {
            turmoil::release(self.host.as_str(), n.as_str());
        }
    }

    async fn get(&self, client: &Client, key: &str) {
        let p = &self.process;
        p.record(p.event(Op::Get, Kind::Invoke, key));
        match client.get(key).await {
            Ok(state) => {
                let mut ev = p.event(Op::Get, Kind::Ok, key);
                ev.holder = state.view.active.map(|l| l.id.to_string());
                ev.token = Some(state.view.last_token);
                p.record(ev);
            }
            Err(e) => p.record(completion(p, Op::Get, key, &e)),
        }
    }

    async fn acquire(
        &self,
        client: &Client,
        key: &str,
        wait: Duration,
        mode: Mode,
    ) -> Option<LockGuard> {
        let p = &self.process;
        let mut invoke = p.event(Op::Acquire, Kind::Invoke, key);
        mark(&mut invoke, mode);
        p.record(invoke);
        let options = AcquireOptions::waiting(wait).in_mode(mode);
        match client.acquire_with(key, self.workload.ttl, options).await {
            Ok(guard) => {
                record_grant(p, &guard, mode);
                self.watch_renewals(&guard);
                Some(guard)
            }
            Err(e) => {
                let mut done = completion(p, Op::Acquire, key, &e);
                mark(&mut done, mode);
                p.record(done);
                None
            }
        }
    }

    /// Records each renewal the client library saw acknowledged, as its
    /// own process: sent when the deadline says, answered when it moved.
    fn watch_renewals(&self, guard: &LockGuard) {
        let mut deadlines = guard.deadlines();
        let margin = guard
            .ttl()
            .mul_f64(1.0 - self.config.max_drift.clamp(0.0, 0.9));
        let (lease, token, key) = (
            guard.lease_id().to_owned(),
            guard.fencing_token(),
            guard.key().to_owned(),
        );
        let (p, ids) = (self.process.clone(), self.renew_ids.clone());
        tokio::spawn(async move {
            while deadlines.changed().await.is_ok() {
                let deadline = *deadlines.borrow_and_update();
                let sent = deadline.checked_sub(margin).unwrap_or(deadline);
                let r = p.with_id(ids.fetch_add(1, Ordering::SeqCst));
                let mut invoke = r.event_at(sent, Op::Renew, Kind::Invoke, &key);
                invoke.lease_id = Some(lease.clone());
                invoke.token = Some(token);
                r.record(invoke);
                let mut ok = r.event(Op::Renew, Kind::Ok, &key);
                ok.lease_id = Some(lease.clone());
                ok.deadline_ns = Some(r.clock_ns(deadline));
                r.record(ok);
            }
        });
    }

    async fn fenced_write(&self, key: &str, token: u64) {
        let p = &self.process;
        let mut ev = p.event(Op::FencedWrite, Kind::Invoke, key);
        ev.token = Some(token);
        p.record(ev);
        // The write travels to the store and back.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let applied = self.store.write(key, token);
        tokio::time::sleep(Duration::from_millis(2)).await;
        let mut done = p.event(
            Op::FencedWrite,
            if applied { Kind::Ok } else { Kind::Fail },
            key,
        );
        if !applied {
            done.reason = Some("STALE_TOKEN".into());
        }
        p.record(done);
    }
}

/// After the clients: once every fault has healed and every client has
/// finished, each key must be free within the liveness bound (INV-4); the
/// auditor takes it, and reads the lock and the store.
pub struct Auditor {
    /// The auditor's history process.
    pub process: Process,
    /// Its client configuration.
    pub config: ClientConfig,
    /// The store.
    pub store: Store,
    /// The workload (keys and TTL).
    pub workload: Workload,
    /// How many clients to wait for.
    pub clients: usize,
    /// Counts clients that finished.
    pub finished: Arc<AtomicUsize>,
    /// How long a free key may take to be acquired after the faults healed.
    pub bound: Duration,
    /// Liveness failures, for the run's report.
    pub liveness: Arc<Mutex<Vec<String>>>,
    /// The true time whose keys it takes: the clients' last (it matters
    /// only when keys move on, `Workload::key_epoch`).
    pub keys_of: Duration,
}

impl Auditor {
    /// Waits for the clients, then checks every key.
    pub async fn run(self) -> turmoil::Result {
        while self.finished.load(Ordering::SeqCst) < self.clients {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut config = self.config.clone();
        config.call_timeout = self.bound + Duration::from_secs(2);
        let client = connect(&config).await;
        let p = &self.process;
        for i in 0..self.workload.keys {
            let key = self.workload.key_at(i, self.keys_of);
            let mode = self.workload.modes.audit();
            let mut invoke = p.event(Op::Acquire, Kind::Invoke, &key);
            mark(&mut invoke, mode);
            p.record(invoke);
            let started = Instant::now();
            let options = AcquireOptions::waiting(self.bound).in_mode(mode);
            match client.acquire_with(&key, self.workload.ttl, options).await {
                Ok(guard) => {
                    record_grant(p, &guard, mode);
                    release(p, guard).await;
                }
                Err(e) => {
                    let mut done = completion(p, Op::Acquire, &key, &e);
                    mark(&mut done, mode);
                    p.record(done);
                    self.liveness
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(format!(
                            "INV-4 {key}: not acquired {} ms after the faults healed and the clients stopped ({e})",
                            started.elapsed().as_millis()
                        ));
                }
            }
            p.record(p.event(Op::StoreRead, Kind::Invoke, &key));
            let mut read = p.event(Op::StoreRead, Kind::Ok, &key);
            read.applied = Some(self.store.read(&key));
            p.record(read);
        }
        Ok(())
    }
}
