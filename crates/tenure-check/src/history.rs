//! The client history format, and the operations it pairs into.
//!
//! One event per line:
//!
//! ```json
//! {"process":3,"op":"acquire","type":"invoke","time_ns":1000,"clock_ns":1020,"tenant":"t","key":"k"}
//! {"process":3,"op":"acquire","type":"ok","time_ns":5000,"clock_ns":5021,"tenant":"t","key":"k","lease_id":"00000000000000a1","token":7,"deadline_ns":9005021}
//! ```
//!
//! - `process`: the client; its events are sequential (an invocation, then
//!   its completion).
//! - `op`: `acquire`, `renew`, `release`, `get`, `force-release`,
//!   `fenced-write`, `store-read`.
//! - `type`: `invoke`, `ok`, `fail` (it certainly did not happen), `unknown`
//!   (it may or may not have happened: a timeout, a lost reply).
//! - `time_ns`: the true (simulated) time; lines are in its order.
//!   `clock_ns`: the same moment on the client's own clock.
//! - `lease_id`, `token`: the lease and its fencing token (acquire and renew
//!   answers, release and renew requests, fenced writes).
//! - `deadline_ns`: on an acquire or renew `ok`, the client-side deadline,
//!   on the client's clock.
//! - `holder`: on a get `ok`, the lease holding the lock (absent: free);
//!   `token` is then the lock's last fencing token.
//! - `reason`: on a `fail`, why (`LOCK_HELD`, `LEASE_EXPIRED`, …).
//! - `applied`: on a store-read `ok`, the tokens the downstream store has
//!   applied for the key, in order.
//! - `mode`: on an acquire (invocation and completions), the lock mode it
//!   asks for: `exclusive` (the default when absent: one holder), `shared`
//!   (any number of shared holders, no exclusive one meanwhile) or
//!   `semaphore` (at most `limit` holders).
//! - `limit`: with `mode` `semaphore` only, its number of slots (1 or more).
//!   Any other combination of the two is a parse error.
//!
//! An operation's [`Mode`] is the invocation's, or else the completion's,
//! or else exclusive. Lines without `mode` and `limit` read as before modes.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Error;

/// What a client did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    /// Take the lock.
    Acquire,
    /// Extend a lease.
    Renew,
    /// Give a lease up.
    Release,
    /// A linearizable read of the lock.
    Get,
    /// An operator freed the lock.
    ForceRelease,
    /// A write to the downstream store under a fencing token.
    FencedWrite,
    /// A read of what the downstream store applied.
    StoreRead,
}

/// Which part of an operation an event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The call was made.
    Invoke,
    /// It succeeded.
    Ok,
    /// It certainly had no effect.
    Fail,
    /// It may or may not have had an effect.
    Unknown,
}

/// How an acquire asks to hold a lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// One holder and no other (the default).
    #[default]
    Exclusive,
    /// Any number of shared holders, and no exclusive holder meanwhile.
    Shared,
    /// At most this many holders.
    Semaphore(u32),
}

impl Mode {
    /// The mode an event's `mode` and `limit` fields name: `None` when both
    /// are absent, an error when they do not agree (a semaphore without a
    /// limit of 1 or more, a limit with another mode, an unknown mode).
    pub fn from_fields(mode: Option<&str>, limit: Option<u32>) -> Result<Option<Mode>, String> {
        match (mode, limit) {
            (None, None) => Ok(None),
            (Some("exclusive"), None) => Ok(Some(Mode::Exclusive)),
            (Some("shared"), None) => Ok(Some(Mode::Shared)),
            (Some("semaphore"), Some(n)) if n >= 1 => Ok(Some(Mode::Semaphore(n))),
            (Some("semaphore"), Some(_)) => Err("a semaphore's limit must be 1 or more".into()),
            (Some("semaphore"), None) => Err("mode \"semaphore\" needs a limit".into()),
            (Some(m @ ("exclusive" | "shared")), Some(_)) => {
                Err(format!("mode {m:?} takes no limit"))
            }
            (None, Some(_)) => Err("a limit needs mode \"semaphore\"".into()),
            (Some(other), _) => Err(format!(
                "unknown mode {other:?} (exclusive, shared or semaphore)"
            )),
        }
    }

    /// The `mode` field's value: `exclusive`, `shared` or `semaphore`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Exclusive => "exclusive",
            Mode::Shared => "shared",
            Mode::Semaphore(_) => "semaphore",
        }
    }

    /// The `limit` field's value: a semaphore's slots, `None` otherwise.
    pub fn limit(self) -> Option<u32> {
        match self {
            Mode::Semaphore(n) => Some(n),
            Mode::Exclusive | Mode::Shared => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Semaphore(n) => write!(f, "semaphore of {n}"),
            m => f.write_str(m.name()),
        }
    }
}

/// One line of a history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// The client process.
    pub process: u64,
    /// The operation.
    pub op: Op,
    /// Invocation or completion.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// True time, ns.
    pub time_ns: u64,
    /// The client's clock, ns.
    pub clock_ns: u64,
    /// The tenant.
    pub tenant: String,
    /// The lock's key.
    pub key: String,
    /// The lease concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    /// A fencing token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<u64>,
    /// The client-side deadline on the client's clock, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ns: Option<u64>,
    /// The holder a get saw (absent: free).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Tokens the downstream store applied (store-read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<Vec<u64>>,
    /// The lock mode an acquire asks for (absent: exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// A semaphore's limit (with `mode` `semaphore` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl Event {
    /// The mode its `mode` and `limit` fields name (`None`: neither is
    /// given), or why they do not agree.
    pub fn mode(&self) -> Result<Option<Mode>, String> {
        Mode::from_fields(self.mode.as_deref(), self.limit)
    }

    /// Sets `mode` and `limit` to name `mode`; exclusive leaves both absent,
    /// so the line reads as it did before modes.
    pub fn set_mode(&mut self, mode: Mode) {
        (self.mode, self.limit) = match mode {
            Mode::Exclusive => (None, None),
            m => (Some(m.name().to_owned()), m.limit()),
        };
    }
}

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded.
    Ok,
    /// It had no effect.
    Fail,
    /// Unknown: it may have taken effect at any time after its invocation.
    Unknown,
}

/// An invocation paired with its completion.
#[derive(Clone, Debug)]
pub struct Operation {
    /// Line of the invocation (1-based).
    pub line: usize,
    /// Line of the completion (0: none).
    pub done_line: usize,
    /// The client process.
    pub process: u64,
    /// What it did.
    pub op: Op,
    /// Tenant and key.
    pub lock: (String, String),
    /// True time of the invocation, ns.
    pub invoked: u64,
    /// True time of the completion, ns (`u64::MAX` for unknown).
    pub returned: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// The lease: from the completion (acquire) or the invocation.
    pub lease_id: Option<String>,
    /// The token: from the completion (acquire, get) or the invocation.
    pub token: Option<u64>,
    /// The client-side deadline in true time, ns (acquire and renew `ok`).
    pub deadline: Option<u64>,
    /// The holder a get saw.
    pub holder: Option<String>,
    /// Why it failed.
    pub reason: Option<String>,
    /// What a store-read saw.
    pub applied: Option<Vec<u64>>,
    /// The lock mode (acquire): the invocation's, else the completion's,
    /// else exclusive.
    pub mode: Mode,
}

/// A parsed history: its operations in invocation order.
#[derive(Debug, Default)]
pub struct History {
    /// Every operation, in invocation order.
    pub ops: Vec<Operation>,
}

/// Each process's (clock, true time) readings, to map its clock to true time.
#[derive(Default)]
struct Clocks {
    samples: BTreeMap<u64, Vec<(u64, u64)>>,
}

impl Clocks {
    /// The true time at which `process`'s clock reads `clock`: linear
    /// between the readings around it, extended from the last two beyond
    /// them (a clock's rate is steady between readings).
    fn true_time(&self, process: u64, clock: u64) -> u64 {
        let Some(s) = self.samples.get(&process).filter(|s| !s.is_empty()) else {
            return clock;
        };
        let at = s.partition_point(|&(c, _)| c <= clock);
        let (a, b) = match (at, s.len()) {
            (_, 1) => return s[0].1.saturating_add(clock.saturating_sub(s[0].0)),
            (0, _) => (s[0], s[1]),
            (i, n) if i >= n => (s[n - 2], s[n - 1]),
            (i, _) => (s[i - 1], s[i]),
        };
        let (dc, dt) = (b.0 as f64 - a.0 as f64, b.1 as f64 - a.1 as f64);
        if dc <= 0.0 {
            return a.1;
        }
        let t = a.1 as f64 + (clock as f64 - a.0 as f64) * dt / dc;
        t.max(0.0) as u64
    }
}

impl History {
    /// Parses NDJSON text (blank lines are skipped).
    pub fn parse(text: &str) -> Result<History, Error> {
        let events = crate::ndjson::<Event>(text)?;
        let mut last_time = 0;
        for (line_no, e) in &events {
            let line_no = *line_no;
            if let Err(message) = e.mode() {
                return Err(Error::Parse {
                    line: line_no,
                    message,
                });
            }
            if e.time_ns < last_time {
                return Err(Error::Malformed {
                    line: line_no,
                    message: format!(
                        "time_ns {} is before the line above ({last_time})",
                        e.time_ns
                    ),
                });
            }
            last_time = e.time_ns;
        }

        let mut clocks = Clocks::default();
        for (_, e) in &events {
            let s = clocks.samples.entry(e.process).or_default();
            if s.last().is_none_or(|&(c, _)| e.clock_ns > c) {
                s.push((e.clock_ns, e.time_ns));
            }
        }

        let mut open: BTreeMap<u64, (usize, Event)> = BTreeMap::new();
        let mut ops = Vec::new();
        for (line, e) in events {
            match e.kind {
                Kind::Invoke => {
                    if let Some((first, _)) = open.get(&e.process) {
                        return Err(Error::Malformed {
                            line,
                            message: format!(
                                "process {} invokes again before line {first} completed",
                                e.process
                            ),
                        });
                    }
                    open.insert(e.process, (line, e));
                }
                done => {
                    let Some((invoke_line, invoke)) = open.remove(&e.process) else {
                        return Err(Error::Malformed {
                            line,
                            message: format!(
                                "process {} completes an operation it never invoked",
                                e.process
                            ),
                        });
                    };
                    if invoke.op != e.op || invoke.key != e.key || invoke.tenant != e.tenant {
                        return Err(Error::Malformed {
                            line,
                            message: format!(
                                "the completion does not match the invocation on line {invoke_line}"
                            ),
                        });
                    }
                    let outcome = match done {
                        Kind::Ok => Outcome::Ok,
                        Kind::Fail => Outcome::Fail,
                        _ => Outcome::Unknown,
                    };
                    ops.push(operation(
                        invoke_line,
                        &invoke,
                        line,
                        Some(&e),
                        outcome,
                        &clocks,
                    ));
                }
            }
        }
        // Invocations that never completed may have happened.
        for (_, (line, invoke)) in open {
            ops.push(operation(line, &invoke, 0, None, Outcome::Unknown, &clocks));
        }
        ops.sort_by_key(|o| (o.invoked, o.line));
        Ok(History { ops })
    }
}

fn operation(
    line: usize,
    invoke: &Event,
    done_line: usize,
    done: Option<&Event>,
    outcome: Outcome,
    clocks: &Clocks,
) -> Operation {
    let done_ok = done.filter(|_| outcome == Outcome::Ok);
    let pick = |a: Option<&Event>| {
        (
            a.and_then(|d| d.lease_id.clone())
                .or_else(|| invoke.lease_id.clone()),
            a.and_then(|d| d.token).or(invoke.token),
        )
    };
    let (lease_id, token) = pick(done_ok);
    Operation {
        line,
        done_line,
        process: invoke.process,
        op: invoke.op,
        lock: (invoke.tenant.clone(), invoke.key.clone()),
        invoked: invoke.time_ns,
        returned: match outcome {
            Outcome::Unknown => u64::MAX,
            _ => done.map_or(u64::MAX, |d| d.time_ns),
        },
        outcome,
        lease_id,
        token,
        deadline: done_ok
            .and_then(|d| d.deadline_ns)
            .map(|c| clocks.true_time(invoke.process, c)),
        holder: done_ok.and_then(|d| d.holder.clone()),
        reason: done.and_then(|d| d.reason.clone()),
        applied: done_ok.and_then(|d| d.applied.clone()),
        // Every line's mode was checked when it was read.
        mode: invoke
            .mode()
            .ok()
            .flatten()
            .or_else(|| done.and_then(|d| d.mode().ok().flatten()))
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drifting_clock_maps_to_true_time_between_and_beyond_its_readings() {
        let mut c = Clocks::default();
        // The clock runs 10 % fast and started 1000 ahead.
        c.samples
            .insert(1, vec![(1000, 0), (2100, 1000), (3200, 2000)]);
        assert_eq!(c.true_time(1, 1550), 500);
        assert_eq!(c.true_time(1, 4300), 3000);
        assert_eq!(c.true_time(2, 77), 77);
    }

    #[test]
    fn bad_lines_are_named_by_number() {
        let bad = "{\"process\":1}\n";
        assert!(matches!(
            History::parse(bad),
            Err(Error::Parse { line: 1, .. })
        ));
        let backwards = concat!(
            r#"{"process":1,"op":"get","type":"invoke","time_ns":5,"clock_ns":5,"tenant":"t","key":"k"}"#,
            "\n",
            r#"{"process":1,"op":"get","type":"ok","time_ns":4,"clock_ns":4,"tenant":"t","key":"k"}"#
        );
        assert!(matches!(
            History::parse(backwards),
            Err(Error::Malformed { line: 2, .. })
        ));
        let orphan = r#"{"process":1,"op":"get","type":"ok","time_ns":4,"clock_ns":4,"tenant":"t","key":"k"}"#;
        assert!(matches!(
            History::parse(orphan),
            Err(Error::Malformed { line: 1, .. })
        ));
    }
}
