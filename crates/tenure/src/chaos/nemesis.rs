//! The nemesis of a chaos run: one fault at a time, drawn from the seed,
//! each held for a window and then healed, with a quiet gap between; at the
//! end of the run everything is healed at once. Every fault is logged with
//! the nodes it touched and its start and end, in seconds from the start of
//! the run.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::ValueEnum;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tenure_client::Client;

use super::lab::Lab;
use super::nodes::Nodes;
use crate::error::Error;

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
pub enum FaultKind {
    /// One node, any, cut off from the others (clients still reach it).
    PartitionMinority,
    /// The leader on the minority side of a cut; the majority must elect.
    PartitionMajority,
    /// Two halves that cannot talk, and one node that talks to both.
    PartitionBridge,
    /// Packets one way only: the leader unheard, or the leader deaf.
    PartitionOneWay,
    /// A slow link on one node: `tc netem` delay with jitter, or where the
    /// kernel has no netem, a narrow `tbf` token bucket that queues.
    Slow,
    /// A lossy link: a share of the packets reaching one node dropped at
    /// random (iptables' statistic match).
    Lossy,
    /// `kill -9` of a node (often the leader), restarted at the end.
    Kill,
    /// SIGSTOP of a node (often the leader) for longer than a TTL, then SIGCONT.
    Pause,
    /// A node restarted with its clocks running fast, within the drift the
    /// clients allow for (libfaketime); restarted at the true rate after.
    ClockFast,
    /// A node's wall clock stepped by up to half an hour either way while
    /// it runs (libfaketime); stepped back after.
    ClockStep,
    /// A node's disk (a small tmpfs) filled to the last byte, then freed.
    DiskFull,
}

impl FaultKind {
    /// Its name on the command line and in reports.
    pub fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }

    /// Whether it needs libfaketime.
    pub fn needs_faketime(self) -> bool {
        matches!(self, FaultKind::ClockFast | FaultKind::ClockStep)
    }

    /// Whether it needs packet filters (iptables).
    pub fn needs_filters(self) -> bool {
        matches!(
            self,
            FaultKind::PartitionMinority
                | FaultKind::PartitionMajority
                | FaultKind::PartitionBridge
                | FaultKind::PartitionOneWay
                | FaultKind::Lossy
        )
    }

    /// Whether it needs link shaping (`tc`).
    pub fn needs_tc(self) -> bool {
        matches!(self, FaultKind::Slow)
    }

    /// Every kind.
    pub fn all() -> Vec<FaultKind> {
        FaultKind::value_variants().to_vec()
    }
}

/// One fault as injected.
#[derive(Clone, Debug)]
pub struct Injected {
    /// What it was.
    pub kind: FaultKind,
    /// The nodes it touched.
    pub nodes: Vec<u64>,
    /// Its particulars (which way, how much).
    pub detail: String,
    /// When it began, from the start of the run.
    pub start: Duration,
    /// When it was healed.
    pub end: Duration,
}

/// What the nemesis did, and what went wrong on the way.
#[derive(Debug, Default)]
pub struct Record {
    /// The faults injected.
    pub injected: Vec<Injected>,
    /// Faults that could not be injected (each undone as far as it went).
    pub failed: Vec<String>,
    /// Heals that did not take: the run proves less than it says.
    pub heal_errors: Vec<String>,
    /// Repairs beyond undoing faults (a wedged node restarted).
    pub repairs: Vec<String>,
}

/// How to undo a fault.
enum Undo {
    Network,
    Restart(u64),
    Continue(u64),
    ClockRate(u64),
    WallClock(u64),
    Disk(std::path::PathBuf),
}

/// What the nemesis works with.
pub struct Nemesis<'a> {
    /// The network.
    pub lab: &'a Lab,
    /// The nodes.
    pub nodes: &'a mut Nodes,
    /// How many.
    pub n: u64,
    /// The kinds to draw from.
    pub kinds: Vec<FaultKind>,
    /// The clients' TTL (a pause outlasts it).
    pub ttl: Duration,
    /// An admin client, to find the leader.
    pub admin: &'a Client,
    /// The runtime the client lives on.
    pub runtime: tokio::runtime::Handle,
    /// Time since the start of the run.
    pub clock: &'a (dyn Fn() -> Duration + Sync),
    /// When faults stop and everything heals.
    pub stop_at: Duration,
    /// Set on Ctrl-C: heal now.
    pub interrupted: &'a AtomicBool,
    /// The fault log, as it happens (`faults.log`).
    pub log: std::fs::File,
}

impl Nemesis<'_> {
    /// Injects faults until `stop_at`, heals everything, and answers what
    /// it did. Restarts (after the heal) any node that is not running or
    /// does not answer.
    pub fn run(mut self, seed: u64) -> Record {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut record = Record::default();
        self.wait(Duration::from_secs(3));
        while !self.over() && !self.kinds.is_empty() {
            let kind = self.kinds[rng.gen_range(0..self.kinds.len())];
            let window = match kind {
                FaultKind::Pause => self.ttl + Duration::from_millis(rng.gen_range(500..4_000)),
                _ => Duration::from_millis(rng.gen_range(1_500..8_000)),
            };
            let start = (self.clock)();
            match self.inject(kind, &mut rng) {
                Ok((nodes, detail, undo)) => {
                    self.note(&format!(
                        "{:>8.1}s start {} nodes={nodes:?} {detail}",
                        start.as_secs_f64(),
                        kind.name()
                    ));
                    self.wait(window);
                    if let Err(e) = self.undo(undo) {
                        let line = format!("healing {}: {e}", kind.name());
                        self.note(&line);
                        record.heal_errors.push(line);
                    }
                    let end = (self.clock)();
                    self.note(&format!(
                        "{:>8.1}s end   {}",
                        end.as_secs_f64(),
                        kind.name()
                    ));
                    record.injected.push(Injected {
                        kind,
                        nodes,
                        detail,
                        start,
                        end,
                    });
                }
                Err(e) => {
                    let line = format!(
                        "{:>8.1}s could not inject {}: {e}",
                        start.as_secs_f64(),
                        kind.name()
                    );
                    self.note(&line);
                    record.failed.push(line.trim_start().to_owned());
                    record.heal_errors.extend(self.lab.heal_network());
                }
            }
            let restarted = self.restart_exited();
            record.repairs.extend(restarted);
            self.wait(Duration::from_millis(rng.gen_range(1_000..4_000)));
        }
        let (repairs, heal_errors) = self.heal_all();
        record.repairs.extend(repairs);
        record.heal_errors.extend(heal_errors);
        record
    }

    fn over(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst) || (self.clock)() >= self.stop_at
    }

    /// Sleeps `d`, or until the run is over.
    fn wait(&self, d: Duration) {
        let until = (self.clock)() + d;
        while !self.over() && (self.clock)() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn note(&mut self, line: &str) {
        tracing::info!(fault = line, "chaos");
        if let Err(e) = writeln!(self.log, "{line}") {
            tracing::warn!(error = %e, "chaos: writing the fault log");
        }
    }

    /// The current leader, if one answers within a second or two.
    fn leader(&self) -> Option<u64> {
        let admin = self.admin;
        self.runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(2), admin.status())
                .await
                .ok()
                .and_then(Result::ok)
                .and_then(|s| s.leader_id)
        })
    }

    /// The leader, or when none is known, `fallback` (drawn whether or not
    /// it is used, so the seed fixes the rest of the schedule).
    fn leader_or(&self, fallback: u64) -> u64 {
        self.leader().unwrap_or(fallback)
    }

    /// Half the time the leader (when one is known), else any node.
    fn victim(&self, rng: &mut StdRng) -> u64 {
        let any = rng.gen_range(1..=self.n);
        if rng.gen_bool(0.5) {
            self.leader().unwrap_or(any)
        } else {
            any
        }
    }

    fn cut(&self, a: &[u64], b: &[u64]) -> Result<(), Error> {
        for &x in a {
            for &y in b {
                self.lab.drop_from(x, y)?;
                self.lab.drop_from(y, x)?;
            }
        }
        Ok(())
    }

    fn others(&self, of: &[u64]) -> Vec<u64> {
        (1..=self.n).filter(|i| !of.contains(i)).collect()
    }

    fn inject(
        &mut self,
        kind: FaultKind,
        rng: &mut StdRng,
    ) -> Result<(Vec<u64>, String, Undo), Error> {
        match kind {
            FaultKind::PartitionMinority => {
                let alone = rng.gen_range(1..=self.n);
                let rest = self.others(&[alone]);
                self.cut(&[alone], &rest)?;
                Ok((
                    vec![alone],
                    format!("{alone} cut from {rest:?}"),
                    Undo::Network,
                ))
            }
            FaultKind::PartitionMajority => {
                let fallback = rng.gen_range(1..=self.n);
                let leader = self.leader_or(fallback);
                let mut rest = self.others(&[leader]);
                rest.shuffle(rng);
                let extra = usize::try_from((self.n - 1) / 2 - 1).unwrap_or(0);
                let mut minority = vec![leader];
                minority.extend(rest.drain(..extra));
                self.cut(&minority, &rest)?;
                Ok((
                    minority.clone(),
                    format!("leader side {minority:?} cut from {rest:?}"),
                    Undo::Network,
                ))
            }
            FaultKind::PartitionBridge => {
                let mut all: Vec<u64> = (1..=self.n).collect();
                all.shuffle(rng);
                let half = all.len() / 2;
                let bridge = all[half];
                let (left, right) = (all[..half].to_vec(), all[half + 1..].to_vec());
                self.cut(&left, &right)?;
                Ok((
                    all.clone(),
                    format!("{left:?} cut from {right:?}, {bridge} reaches both"),
                    Undo::Network,
                ))
            }
            FaultKind::PartitionOneWay => {
                let fallback = rng.gen_range(1..=self.n);
                let leader = self.leader_or(fallback);
                let rest = self.others(&[leader]);
                let unheard = rng.gen_bool(0.5);
                for &o in &rest {
                    let r = if unheard {
                        self.lab.drop_from(leader, o)
                    } else {
                        self.lab.drop_from(o, leader)
                    };
                    r?;
                }
                let detail = if unheard {
                    format!("{leader} -> {rest:?} dropped (the leader unheard)")
                } else {
                    format!("{rest:?} -> {leader} dropped (the leader deaf)")
                };
                Ok((vec![leader], detail, Undo::Network))
            }
            FaultKind::Slow => {
                let node = rng.gen_range(1..=self.n);
                let (delay, jitter) = (rng.gen_range(50..250), rng.gen_range(10..60));
                let (d, j) = (format!("{delay}ms"), format!("{jitter}ms"));
                // netem where the kernel has it; else a token bucket so
                // narrow that what the node sends queues (no netem here).
                let detail = match self.lab.netem(node, &["delay", &d, &j]) {
                    Ok(()) => format!("netem delay {d} ± {j}"),
                    Err(_) => {
                        let rate = format!("{}kbit", rng.gen_range(64..512));
                        let latency = format!("{}ms", rng.gen_range(200..800));
                        self.lab.shape(
                            node,
                            &["tbf", "rate", &rate, "burst", "16kbit", "latency", &latency],
                        )?;
                        format!("tbf rate {rate}, queue up to {latency}")
                    }
                };
                Ok((vec![node], detail, Undo::Network))
            }
            FaultKind::Lossy => {
                let node = rng.gen_range(1..=self.n);
                let loss = rng.gen_range(5..35);
                self.lab.lose(node, f64::from(loss) / 100.0)?;
                Ok((
                    vec![node],
                    format!("{loss}% of what reaches it dropped"),
                    Undo::Network,
                ))
            }
            FaultKind::Kill => {
                let node = self.victim(rng);
                self.nodes.kill(node)?;
                Ok((vec![node], "kill -9".into(), Undo::Restart(node)))
            }
            FaultKind::Pause => {
                let node = self.victim(rng);
                self.nodes.pause(node, true)?;
                Ok((vec![node], "SIGSTOP".into(), Undo::Continue(node)))
            }
            FaultKind::ClockFast => {
                let node = self.victim(rng);
                let rate = 1.0 + f64::from(rng.gen_range(10_u32..=50)) / 1_000.0;
                self.nodes.kill(node)?;
                if let Err(e) = self.set_rate(node, rate) {
                    // Back at the true rate: a failed fault leaves nothing behind.
                    let _ = self.set_rate(node, 1.0);
                    return Err(e);
                }
                Ok((
                    vec![node],
                    format!("restarted with clocks at x{rate:.3}"),
                    Undo::ClockRate(node),
                ))
            }
            FaultKind::ClockStep => {
                let node = rng.gen_range(1..=self.n);
                let secs = rng.gen_range(60_i64..=1_800) * if rng.gen_bool(0.5) { 1 } else { -1 };
                self.nodes.set_clock(node, &format!("{secs:+}"))?;
                Ok((
                    vec![node],
                    format!("wall clock stepped {secs:+} s"),
                    Undo::WallClock(node),
                ))
            }
            FaultKind::DiskFull => {
                let node = rng.gen_range(1..=self.n);
                let filler = self.nodes.disk(node).join("filler");
                let written = fill(&filler).inspect_err(|_| {
                    let _ = std::fs::remove_file(&filler);
                })?;
                Ok((
                    vec![node],
                    format!("disk filled ({} MiB written)", written >> 20),
                    Undo::Disk(filler),
                ))
            }
        }
    }

    fn set_rate(&mut self, node: u64, rate: f64) -> Result<(), Error> {
        let slot = usize::try_from(node.saturating_sub(1)).unwrap_or(0);
        if let Some(r) = self.nodes.rates.get_mut(slot) {
            *r = rate;
        }
        let spec = if rate == 1.0 {
            "+0".to_owned()
        } else {
            format!("+0 x{rate:.3}")
        };
        self.nodes.set_clock(node, &spec)?;
        self.nodes.start(self.lab, node)
    }

    fn undo(&mut self, undo: Undo) -> Result<(), Error> {
        match undo {
            Undo::Network => match self.lab.heal_network().as_slice() {
                [] => Ok(()),
                failed => Err(Error::Cluster(failed.join("; "))),
            },
            Undo::Restart(node) => self.nodes.start(self.lab, node),
            Undo::Continue(node) => self.nodes.pause(node, false),
            Undo::ClockRate(node) => {
                // It may have exited meanwhile (a full disk, say).
                let _ = self.nodes.kill(node);
                self.set_rate(node, 1.0)
            }
            Undo::WallClock(node) => self.nodes.set_clock(node, "+0"),
            Undo::Disk(filler) => std::fs::remove_file(&filler).map_err(Error::from),
        }
    }

    /// Starts any node whose process exited on its own; answers what it
    /// restarted (nothing once the run is interrupted).
    fn restart_exited(&mut self) -> Vec<String> {
        let mut restarted = Vec::new();
        if self.interrupted.load(Ordering::SeqCst) {
            return restarted;
        }
        for i in 1..=self.n {
            if !self.nodes.running(i) {
                let line = match self.nodes.start(self.lab, i) {
                    Ok(()) => format!("node {i} had exited: restarted"),
                    Err(e) => format!("node {i} had exited, and restarting it failed: {e}"),
                };
                self.note(&line);
                restarted.push(line);
            }
        }
        restarted
    }

    /// Heals everything: links, filters, clocks, disks, paused and dead
    /// nodes; then restarts a node that still does not answer. Answers the
    /// repairs it had to make beyond undoing faults, and what it could not
    /// heal.
    fn heal_all(&mut self) -> (Vec<String>, Vec<String>) {
        let mut failed = self.lab.heal_network();
        for i in 1..=self.n {
            // A node that is not running has nothing to continue.
            let _ = self.nodes.pause(i, false);
            let filler = self.nodes.disk(i).join("filler");
            if filler.exists()
                && let Err(e) = std::fs::remove_file(&filler)
            {
                failed.push(format!("node {i}: freeing its disk: {e}"));
            }
            let slot = usize::try_from(i - 1).unwrap_or(0);
            if self.nodes.rates.get(slot).is_some_and(|&r| r != 1.0) {
                let _ = self.nodes.kill(i);
                if let Err(e) = self.set_rate(i, 1.0) {
                    failed.push(format!("node {i}: restarting at the true rate: {e}"));
                }
            }
            if let Err(e) = self.nodes.set_clock(i, "+0") {
                failed.push(format!("node {i}: clock: {e}"));
            }
        }
        let mut repairs = self.restart_exited();
        // A node that runs but does not answer within 20 s is wedged:
        // restart it, and say so (not when the run was interrupted).
        for i in 1..=self.n {
            if self.interrupted.load(Ordering::SeqCst) {
                break;
            }
            let addr = format!("{}:{}", self.lab.ip(i), super::nodes::PORT);
            let (admin, interrupted) = (self.admin, self.interrupted);
            let answers = self.runtime.block_on(async {
                let until = tokio::time::Instant::now() + Duration::from_secs(20);
                while tokio::time::Instant::now() < until && !interrupted.load(Ordering::SeqCst) {
                    if let Ok(Ok(_)) =
                        tokio::time::timeout(Duration::from_secs(2), admin.status_of(&addr)).await
                    {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                interrupted.load(Ordering::SeqCst)
            });
            if !answers {
                let line = format!("node {i} did not answer 20 s after the heal: restarted");
                self.note(&line);
                repairs.push(line);
                let _ = self.nodes.kill(i);
                if let Err(e) = self.nodes.start(self.lab, i) {
                    failed.push(format!("node {i}: {e}"));
                }
            }
        }
        let end = (self.clock)();
        self.note(&format!("{:>8.1}s healed everything", end.as_secs_f64()));
        (repairs, failed)
    }
}

/// Writes `path` until the disk refuses; answers the bytes written.
fn fill(path: &std::path::Path) -> Result<u64, Error> {
    let mut file = std::fs::File::create(path)?;
    let chunk = vec![0_u8; 1 << 20];
    let mut written = 0_u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => return Err(e.into()),
        }
    }
    // Whatever a partial write left: fill the last bytes too.
    while let Ok(n) = file.write(&chunk[..4096]) {
        if n == 0 {
            break;
        }
        written += n as u64;
    }
    Ok(written)
}
