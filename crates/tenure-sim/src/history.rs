//! Recording what clients did, in tenure-check's history format.
//!
//! Every event carries the true (simulated) time and the client's own
//! clock reading. A process's clock is its host's `tokio::time`, read from
//! an origin with an offset of its own, so the checker has to map clocks to
//! true time rather than assume they agree.
//!
//! Outside a simulation (the real-process chaos run) true time is this
//! process's monotonic clock since it first asked: every client lives in
//! the one process, so they share it.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tenure_check::history::{Event, Kind, Op};
use tokio::time::Instant;

/// The events of one run, from every process.
#[derive(Clone, Default)]
pub struct Recorder {
    events: Arc<Mutex<Vec<(u64, u64, Event)>>>,
}

impl Recorder {
    /// Adds an event; lines are ordered by true time, then by arrival.
    pub fn record(&self, event: Event) {
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = events.len() as u64;
        events.push((event.time_ns, seq, event));
    }

    /// The history as NDJSON, in true time order.
    pub fn ndjson(&self) -> String {
        let mut events = self
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        events.sort_by_key(|(t, seq, _)| (*t, *seq));
        let mut out = String::new();
        for (_, _, e) in events {
            if let Ok(line) = serde_json::to_string(&e) {
                out.push_str(&line);
                out.push('\n');
            }
        }
        out
    }
}

static REAL_ORIGIN: OnceLock<Instant> = OnceLock::new();

/// True time: the simulated time inside a simulation; outside one, the
/// time since this process first asked.
pub fn true_elapsed() -> Duration {
    turmoil::sim_elapsed().unwrap_or_else(|| REAL_ORIGIN.get_or_init(Instant::now).elapsed())
}

/// The SHA-256 of a history, in hex: equal histories, equal hashes.
pub fn hash(history: &str) -> String {
    hex::encode(Sha256::digest(history.as_bytes()))
}

/// One client process as the history sees it: its id, and its clock.
#[derive(Clone)]
pub struct Process {
    /// The process id in the history.
    pub id: u64,
    /// The tenant it works in.
    pub tenant: String,
    recorder: Recorder,
    /// Host time at the origin, and the true time then.
    origin: Instant,
    origin_true: Duration,
    /// What the process's clock read at the origin, ns.
    clock_offset_ns: u64,
}

impl Process {
    /// Process `id`, whose clock reads `clock_offset_ns` now.
    pub fn new(id: u64, tenant: &str, recorder: Recorder, clock_offset_ns: u64) -> Process {
        Process {
            id,
            tenant: tenant.to_owned(),
            recorder,
            origin: Instant::now(),
            origin_true: true_elapsed(),
            clock_offset_ns,
        }
    }

    /// The same clock and recorder, under another process id (a process's
    /// renewals run beside its calls).
    pub fn with_id(&self, id: u64) -> Process {
        Process { id, ..self.clone() }
    }

    fn since(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// True time at host instant `at`, ns.
    pub fn true_ns(&self, at: Instant) -> u64 {
        u64::try_from(self.origin_true.as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(self.since(at))
    }

    /// The process's clock at host instant `at`, ns.
    pub fn clock_ns(&self, at: Instant) -> u64 {
        self.clock_offset_ns.saturating_add(self.since(at))
    }

    /// An event of this process at host instant `at`.
    pub fn event_at(&self, at: Instant, op: Op, kind: Kind, key: &str) -> Event {
        Event {
            process: self.id,
            op,
            kind,
            time_ns: self.true_ns(at),
            clock_ns: self.clock_ns(at),
            tenant: self.tenant.clone(),
            key: key.to_owned(),
            lease_id: None,
            token: None,
            deadline_ns: None,
            holder: None,
            reason: None,
            applied: None,
            mode: None,
            limit: None,
        }
    }

    /// An event of this process now.
    pub fn event(&self, op: Op, kind: Kind, key: &str) -> Event {
        self.event_at(Instant::now(), op, kind, key)
    }

    /// Records `event`.
    pub fn record(&self, event: Event) {
        self.recorder.record(event);
    }
}
