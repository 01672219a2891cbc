//! # tenure-check: is this history correct?
//!
//! Two inputs, both NDJSON (one JSON object per line):
//!
//! - a **client history** ([`history`]): what each client process invoked
//!   and what came back, stamped with the true (simulated) time and the
//!   client's own clock. [`check_history`] checks INV-1 (mutual exclusion of
//!   the clients' validity intervals, by lock [`Mode`]: one exclusive holder
//!   alone, shared holders together, at most `limit` holders of a
//!   semaphore), INV-2 (fencing tokens increase; the
//!   downstream store takes no stale write and loses no acknowledged one)
//!   and INV-3 (the lock operations are linearizable against the
//!   sequential lock model, searched key by key in the manner of Wing–Gong
//!   and Lowe with a step budget; a search that runs out is reported
//!   *inconclusive*, never as a pass);
//! - a **server audit stream** ([`audit`]), as `tenure lock watch --json`
//!   or `tenure demo --json` print it: [`check_audit`] checks that the
//!   sequence has no gaps, that a lock's ACTIVE leases fit its mode (one
//!   exclusive lease alone, shared leases together, at most `limit` leases
//!   of a semaphore), and that each lock's tokens go up by exactly one per
//!   grant.
//!
//! The crate does no IO and reads no clock: it takes text, answers a
//! [`Report`]. `tenure check history FILE` and `tenure check audit FILE`
//! are its command line.

pub mod audit;
pub mod history;
mod invariants;
mod linear;
pub mod report;

pub use audit::check_audit;
pub use history::Mode;
pub use report::{Inconclusive, Report, Violation};

/// Why an input could not be checked at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A line is not the JSON the format asks for.
    #[error("line {line}: {message}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// The lines parse but do not form a history (a completion without an
    /// invocation, time going backwards, …).
    #[error("line {line}: {message}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
}

/// The non-blank lines of NDJSON `text`, parsed, with their 1-based numbers.
pub(crate) fn ndjson<T: serde::de::DeserializeOwned>(text: &str) -> Result<Vec<(usize, T)>, Error> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map(|value| (i + 1, value))
                .map_err(|e| Error::Parse {
                    line: i + 1,
                    message: e.to_string(),
                })
        })
        .collect()
}

/// How hard the linearizability search may try.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Search steps per key before the key is reported inconclusive.
    pub max_steps_per_key: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_steps_per_key: 2_000_000,
        }
    }
}

/// Checks a client history (NDJSON text) for INV-1, INV-2 and INV-3.
pub fn check_history(text: &str, limits: Limits) -> Result<Report, Error> {
    let history = history::History::parse(text)?;
    let mut report = Report::new("history");
    report.operations = history.ops.len() as u64;
    invariants::mutual_exclusion(&history, &mut report);
    invariants::fencing(&history, &mut report);
    linear::check(&history, limits, &mut report);
    Ok(report)
}
