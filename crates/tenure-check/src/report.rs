//! What a check found, in words for people and in JSON for scripts.

use std::fmt;

use serde::Serialize;

/// One broken rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The invariant (`INV-1`, `INV-2`, `INV-3`, `AUDIT-SEQ`, …).
    pub invariant: &'static str,
    /// `tenant/key` of the lock concerned (empty when none).
    pub key: String,
    /// What happened.
    pub message: String,
    /// Input lines of the operations or events involved.
    pub lines: Vec<usize>,
}

/// A key whose linearizability search ran out of steps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Inconclusive {
    /// `tenant/key`.
    pub key: String,
    /// Operations on the key.
    pub operations: usize,
    /// Steps searched before giving up.
    pub steps: u64,
}

/// The outcome of a check.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `history` or `audit`.
    pub input: &'static str,
    /// Operations (history) or events (audit) read.
    pub operations: u64,
    /// Keys checked.
    pub keys: u64,
    /// Broken rules.
    pub violations: Vec<Violation>,
    /// Keys the linearizability search could not decide.
    pub inconclusive: Vec<Inconclusive>,
    /// Search steps spent in all.
    pub search_steps: u64,
}

impl Report {
    /// An empty report for `input`.
    pub fn new(input: &'static str) -> Report {
        Report {
            input,
            operations: 0,
            keys: 0,
            violations: Vec::new(),
            inconclusive: Vec::new(),
            search_steps: 0,
        }
    }

    /// Adds a violation.
    pub(crate) fn violate(
        &mut self,
        invariant: &'static str,
        key: String,
        message: String,
        lines: Vec<usize>,
    ) {
        self.violations.push(Violation {
            invariant,
            key,
            message,
            lines,
        });
    }

    /// `pass`, `violation` or `inconclusive`: a violation outranks an
    /// undecided key, and only a report with neither passes.
    pub fn verdict(&self) -> &'static str {
        if !self.violations.is_empty() {
            "violation"
        } else if !self.inconclusive.is_empty() {
            "inconclusive"
        } else {
            "pass"
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} {} over {} keys",
            self.input,
            self.operations,
            if self.input == "audit" {
                "events"
            } else {
                "operations"
            },
            self.keys
        )?;
        for v in &self.violations {
            let lines = v
                .lines
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            writeln!(
                f,
                "VIOLATION {} on {}: {} (lines {lines})",
                v.invariant, v.key, v.message
            )?;
        }
        for i in &self.inconclusive {
            writeln!(
                f,
                "INCONCLUSIVE INV-3 on {}: the search gave up after {} steps over {} operations",
                i.key, i.steps, i.operations
            )?;
        }
        writeln!(f, "verdict: {}", self.verdict())
    }
}
