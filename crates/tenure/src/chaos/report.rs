//! The report of a chaos run: the faults injected, each with its start and
//! end, the faults by kind, the operations checked, the verdict.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use tenure_check::Report;
use tenure_check::history::{Event, Kind};

use super::nemesis::{FaultKind, Injected};

/// Whether the replicas agree after the heal (INV-5).
#[derive(Clone, Debug)]
pub enum Replicas {
    /// Every node at one applied index, with one digest.
    Agree {
        /// The index.
        applied: u64,
        /// The digest.
        digest: String,
    },
    /// One applied index, different digests: a violation.
    Differ(Vec<String>),
    /// Not established (a node did not catch up, or the run stopped).
    Unknown(String),
}

/// Operations in a history: invocations and how they ended, per op.
#[derive(Clone, Debug, Default)]
pub struct OpCounts {
    /// op → (invoked, ok, fail, unknown).
    pub by_op: BTreeMap<String, [u64; 4]>,
}

/// Counts the operations of an NDJSON history.
pub fn count_ops(history: &str) -> OpCounts {
    let mut counts = OpCounts::default();
    for line in history.lines() {
        let Ok(event) = serde_json::from_str::<Event>(line) else {
            continue;
        };
        let op = serde_json::to_value(event.op)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let slot = match event.kind {
            Kind::Invoke => 0,
            Kind::Ok => 1,
            Kind::Fail => 2,
            Kind::Unknown => 3,
        };
        counts.by_op.entry(op).or_default()[slot] += 1;
    }
    counts
}

/// Everything a run found.
pub struct Summary {
    /// The seed.
    pub seed: u64,
    /// Nodes.
    pub nodes: u64,
    /// Minutes of faults asked for.
    pub minutes: f64,
    /// Client workers.
    pub clients: u64,
    /// Keys.
    pub keys: u64,
    /// Seconds between fresh sets of keys (0: none).
    pub key_epoch_secs: u64,
    /// The clients' TTL.
    pub ttl: Duration,
    /// The liveness bound the auditor allows after the heal.
    pub bound: Duration,
    /// The binary under test.
    pub bin: String,
    /// The negative control, if one was on.
    pub control: Option<String>,
    /// The kinds drawn from.
    pub kinds: Vec<FaultKind>,
    /// The faults injected.
    pub injected: Vec<Injected>,
    /// Faults that could not be injected.
    pub failed: Vec<String>,
    /// Heals that did not take.
    pub heal_errors: Vec<String>,
    /// Repairs beyond undoing faults (a node restarted).
    pub repairs: Vec<String>,
    /// How long the run took, to the end of the audit.
    pub ran: Duration,
    /// Whether the clients and the auditor finished.
    pub audit: Result<(), String>,
    /// Whether the replicas agree.
    pub replicas: Replicas,
    /// Keys not acquired within the bound after the heal (INV-4).
    pub liveness: Vec<String>,
    /// Operations by kind.
    pub ops: OpCounts,
    /// The checker's report on the history.
    pub check: Report,
    /// Where the history is.
    pub history_file: PathBuf,
}

impl Summary {
    fn acquired(&self) -> u64 {
        self.ops.by_op.get("acquire").map_or(0, |c| c[1])
    }

    /// A safety or liveness violation: the checker's, INV-4's or INV-5's.
    pub fn violated(&self) -> bool {
        !self.check.violations.is_empty()
            || !self.liveness.is_empty()
            || matches!(self.replicas, Replicas::Differ(_))
    }

    /// Why the run proves nothing either way, if it does not.
    pub fn inconclusive(&self) -> Option<String> {
        if let Err(e) = &self.audit {
            return Some(e.clone());
        }
        if !self.heal_errors.is_empty() {
            return Some(format!(
                "faults were not all healed: {}",
                self.heal_errors.join("; ")
            ));
        }
        if let Replicas::Unknown(why) = &self.replicas {
            return Some(why.clone());
        }
        if !self.check.inconclusive.is_empty() {
            return Some(format!(
                "the linearizability search ran out of steps on {} key(s)",
                self.check.inconclusive.len()
            ));
        }
        if self.acquired() < 10 {
            return Some(format!(
                "only {} acquires succeeded: too little happened to judge",
                self.acquired()
            ));
        }
        None
    }

    /// 0 clean, 1 violation, 2 inconclusive.
    pub fn exit_code(&self) -> u8 {
        if self.violated() {
            1
        } else if self.inconclusive().is_some() {
            2
        } else {
            0
        }
    }

    /// The verdict in a word.
    pub fn verdict(&self) -> &'static str {
        match self.exit_code() {
            0 => "clean",
            1 => "VIOLATION",
            _ => "inconclusive",
        }
    }

    /// A few lines for the terminal.
    pub fn lines(&self) -> String {
        let mut s = format!(
            "chaos: {} faults in {:.0} s, {} operations checked ({} acquires granted), {} violations: {}",
            self.injected.len(),
            self.ran.as_secs_f64(),
            self.check.operations,
            self.acquired(),
            self.check.violations.len() + self.liveness.len(),
            self.verdict()
        );
        for v in &self.check.violations {
            let _ = write!(s, "\n  {} {}: {}", v.invariant, v.key, v.message);
        }
        for l in &self.liveness {
            let _ = write!(s, "\n  {l}");
        }
        if let Replicas::Differ(d) = &self.replicas {
            let _ = write!(s, "\n  INV-5 the replicas differ: {}", d.join("; "));
        }
        if let Some(why) = self.inconclusive().filter(|_| !self.violated()) {
            let _ = write!(s, "\n  inconclusive: {why}");
        }
        s
    }

    /// The report, as Markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Chaos run: {}\n", self.verdict());
        let _ = writeln!(
            s,
            "`tenure chaos --minutes {} --nodes {} --seed {}{}` on `{}`: {} nodes of the binary in network \
             namespaces on TLS, {} clients on {} keys{} with {} ms leases writing through a fenced store, \
             {:.0} s in all. Checked as `tenure check history {}` checks it.\n",
            self.minutes,
            self.nodes,
            self.seed,
            self.control
                .as_deref()
                .map(|c| format!(" --control {c}"))
                .unwrap_or_default(),
            self.bin,
            self.nodes,
            self.clients,
            self.keys,
            if self.key_epoch_secs > 0 {
                format!(" (a fresh set every {} s)", self.key_epoch_secs)
            } else {
                String::new()
            },
            self.ttl.as_millis(),
            self.ran.as_secs_f64(),
            self.history_file.display()
        );
        if let Some(c) = &self.control {
            let _ = writeln!(
                s,
                "**Negative control `{c}` on in every node**: this build is deliberately unsafe, and the \
                 run must report a violation.\n"
            );
        }
        let _ = writeln!(s, "## Verdict\n");
        let _ = writeln!(
            s,
            "- history: {} operations on {} keys, {} violations, {} keys inconclusive ({} search steps)",
            self.check.operations,
            self.check.keys,
            self.check.violations.len(),
            self.check.inconclusive.len(),
            self.check.search_steps
        );
        for v in &self.check.violations {
            let _ = writeln!(
                s,
                "  - {} {}: {} (history lines {:?})",
                v.invariant, v.key, v.message, v.lines
            );
        }
        let _ = writeln!(
            s,
            "- INV-4 after the heal (every key taken within {} ms): {}",
            self.bound.as_millis(),
            if self.liveness.is_empty() {
                "held".to_owned()
            } else {
                self.liveness.join("; ")
            }
        );
        let _ = writeln!(
            s,
            "- INV-5 replicas: {}",
            match &self.replicas {
                Replicas::Agree { applied, digest } =>
                    format!("every node at applied index {applied}, digest {digest}"),
                Replicas::Differ(d) => format!("DIFFER: {}", d.join("; ")),
                Replicas::Unknown(why) => format!("unknown: {why}"),
            }
        );
        if let Err(e) = &self.audit {
            let _ = writeln!(s, "- the run did not finish: {e}");
        }
        if let Some(why) = self.inconclusive().filter(|_| !self.violated()) {
            let _ = writeln!(s, "- inconclusive: {why}");
        }
        if !self.repairs.is_empty() {
            let _ = writeln!(
                s,
                "- nodes restarted beyond the faults: {}",
                self.repairs.join("; ")
            );
        }
        if !self.failed.is_empty() {
            let _ = writeln!(
                s,
                "- faults that could not be injected ({}): {}",
                self.failed.len(),
                self.failed.join("; ")
            );
        }
        if !self.heal_errors.is_empty() {
            let _ = writeln!(
                s,
                "- heals that did not take: {}",
                self.heal_errors.join("; ")
            );
        }

        let _ = writeln!(s, "\n## Operations\n");
        let _ = writeln!(s, "| op | invoked | ok | fail | unknown |");
        let _ = writeln!(s, "| --- | ---: | ---: | ---: | ---: |");
        for (op, [i, o, f, u]) in &self.ops.by_op {
            let _ = writeln!(s, "| {op} | {i} | {o} | {f} | {u} |");
        }

        let _ = writeln!(s, "\n## Faults by kind\n");
        let _ = writeln!(s, "| kind | injected | total s |");
        let _ = writeln!(s, "| --- | ---: | ---: |");
        for kind in &self.kinds {
            let of: Vec<&Injected> = self.injected.iter().filter(|f| f.kind == *kind).collect();
            let total: f64 = of
                .iter()
                .map(|f| f.end.saturating_sub(f.start).as_secs_f64())
                .sum();
            let _ = writeln!(s, "| {} | {} | {total:.1} |", kind.name(), of.len());
        }

        let _ = writeln!(s, "\n## Faults injected\n");
        let _ = writeln!(s, "| # | kind | nodes | what | start s | end s |");
        let _ = writeln!(s, "| ---: | --- | --- | --- | ---: | ---: |");
        for (i, f) in self.injected.iter().enumerate() {
            let _ = writeln!(
                s,
                "| {} | {} | {:?} | {} | {:.1} | {:.1} |",
                i + 1,
                f.kind.name(),
                f.nodes,
                f.detail.replace('|', "/"),
                f.start.as_secs_f64(),
                f.end.as_secs_f64()
            );
        }
        s
    }
}
