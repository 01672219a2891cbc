//! Named scenarios, the negative controls, and one seeded run: a cluster,
//! its clients, a fault plan, the recorded history and the checker's
//! verdict on it.
//!
//! Everything comes from the seed: turmoil's randomness (latencies, link
//! failures, host order), every election timeout (tenure-raft's seeded
//! runtime), each host's clock rate and wall-clock offset, the clients'
//! choices, and the fault plan. The same seed gives the same history, byte
//! for byte.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tenure_check::{Limits, Report};
use tenure_client::ClientConfig;
use tenure_server::Sabotage;

use crate::cluster::{ClockSetting, PORT, SimCluster};
use crate::history::{self, Process, Recorder};
use crate::nemesis::{self, Fault, Nemesis};
use crate::store::Store;
use crate::workload::{Auditor, Modes, Worker, Workload, dialer};

/// The clock drift the clients allow for (`ClientConfig::max_drift`).
pub const MAX_DRIFT: f64 = 0.1;

/// How the hosts' clock rates are set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drift {
    /// Every clock at the true rate (wall clocks still differ).
    None,
    /// Each node's rate anywhere from 0.97 to 1.1: up to the drift the
    /// clients allow for (fast is the direction that could hurt), so it
    /// must not matter.
    Within,
    /// Nodes run 20–35 % fast: beyond what the clients allow for, where
    /// mutual exclusion is expected to break (the bound is not slack).
    Beyond,
}

/// A named scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Its name on the command line.
    pub name: &'static str,
    /// One line on what it does.
    pub about: &'static str,
    /// Nodes in the cluster (3 or 5).
    pub nodes: u64,
    /// The faults it draws from.
    pub faults: &'static [Fault],
    /// The shortest and longest fault window, ms.
    pub window_ms: (u64, u64),
    /// Clock rates.
    pub drift: Drift,
    /// What the clients do.
    pub workload: Workload,
    /// How long clients run, simulated.
    pub run_for: Duration,
    /// Whether violations are the expected outcome (drift beyond the
    /// allowance): such a scenario demonstrates a limit.
    pub expect_violation: bool,
    /// The invariant such a scenario is expected to break; a run shows the
    /// limit only when that invariant is violated.
    pub breaks: Option<&'static str>,
}

fn workload(clients: u64, keys: usize) -> Workload {
    Workload {
        clients,
        keys,
        ttl: Duration::from_millis(1_500),
        hold_max: Duration::from_millis(3_000),
        waiters: true,
        client_pause: None,
        key_epoch: None,
        modes: Modes::Exclusive,
    }
}

const ALL: &[Fault] = &[
    Fault::Partition,
    Fault::SplitBrain,
    Fault::Asymmetric,
    Fault::Lossy,
    Fault::Crash,
    Fault::Pause,
    Fault::ClockStep,
];

/// A 3-node scenario over `faults` with the common settings: fault
/// windows of 0.8–4 s, clocks at the true rate, 4 clients on 3 keys, and
/// 16 s of clients.
fn base(name: &'static str, about: &'static str, faults: &'static [Fault]) -> Scenario {
    Scenario {
        name,
        about,
        nodes: 3,
        faults,
        window_ms: (800, 4_000),
        drift: Drift::None,
        workload: workload(4, 3),
        run_for: Duration::from_secs(16),
        expect_violation: false,
        breaks: None,
    }
}

/// A 3-node scenario whose `clients` hold two keys in `modes`, under
/// partitions, split brain, crashes, pauses and clock steps, with clocks
/// drifting within the allowance.
fn in_modes(name: &'static str, about: &'static str, modes: Modes, clients: u64) -> Scenario {
    const FAULTS: &[Fault] = &[
        Fault::Partition,
        Fault::SplitBrain,
        Fault::Crash,
        Fault::Pause,
        Fault::ClockStep,
    ];
    Scenario {
        drift: Drift::Within,
        workload: Workload {
            modes,
            ..workload(clients, 2)
        },
        ..base(name, about, FAULTS)
    }
}

/// Every scenario, in the order `tenure sim list` shows them.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        base(
            "partitions",
            "a minority of nodes, with some clients, cut off and healed, over and over",
            &[Fault::Partition],
        ),
        Scenario {
            window_ms: (2_000, 6_000),
            workload: Workload {
                hold_max: Duration::from_millis(6_000),
                ..workload(6, 3)
            },
            ..base(
                "split-brain",
                "the leader cut off together with some of its clients while the majority elects another",
                &[Fault::SplitBrain],
            )
        },
        base(
            "asymmetric",
            "one-way partitions between the leader and a node, and lost answers to a client",
            &[Fault::Asymmetric],
        ),
        Scenario {
            window_ms: (1_000, 5_000),
            ..base(
                "lossy",
                "links that drop what is in flight, and messages up to 60 ms late",
                &[Fault::Lossy],
            )
        },
        Scenario {
            window_ms: (500, 4_000),
            workload: workload(5, 2),
            ..base(
                "crash-restart",
                "a node (often the leader) crashes, losing unflushed writes, and restarts",
                &[Fault::Crash],
            )
        },
        Scenario {
            window_ms: (1_600, 5_000),
            workload: workload(4, 2),
            ..base(
                "leader-pause",
                "the leader stops for longer than a TTL (a GC pause) and resumes as if nothing happened",
                &[Fault::Pause],
            )
        },
        Scenario {
            window_ms: (800, 3_000),
            workload: Workload {
                client_pause: Some((Duration::from_millis(2_500), 0.15)),
                ..workload(4, 2)
            },
            ..base(
                "client-pause",
                "clients pause longer than the TTL between checking their lock and writing under its token",
                &[Fault::Partition],
            )
        },
        Scenario {
            drift: Drift::Within,
            workload: Workload {
                client_pause: Some((Duration::from_millis(2_500), 0.1)),
                ..workload(4, 2)
            },
            ..base(
                "clock-drift",
                "clock rates up to 10 % fast, wall clocks offset and stepped, partitions and client pauses",
                &[Fault::ClockStep, Fault::Partition, Fault::SplitBrain],
            )
        },
        Scenario {
            workload: Workload {
                waiters: false,
                ..workload(6, 64)
            },
            ..base(
                "many-keys",
                "six clients over 64 keys through partitions and crashes",
                &[Fault::Partition, Fault::Crash, Fault::Lossy],
            )
        },
        Scenario {
            nodes: 5,
            drift: Drift::Within,
            workload: workload(5, 3),
            ..base(
                "five-nodes",
                "five nodes under every kind of fault, clocks drifting within the allowance",
                ALL,
            )
        },
        Scenario {
            drift: Drift::Within,
            ..base(
                "mixed",
                "three nodes under every kind of fault, clocks drifting within the allowance",
                ALL,
            )
        },
        in_modes(
            "readers-writers",
            "six clients share two read-write locks, a quarter of the grants exclusive, through partitions, crashes, pauses and drift",
            Modes::ReadWrite { writers: 0.25 },
            6,
        ),
        in_modes(
            "semaphore",
            "seven clients contend for two semaphores of three slots through partitions, crashes, pauses and drift",
            Modes::Semaphore { limit: 3 },
            7,
        ),
        Scenario {
            drift: Drift::Beyond,
            workload: Workload {
                client_pause: Some((Duration::from_millis(2_500), 0.1)),
                ..workload(4, 2)
            },
            expect_violation: true,
            breaks: Some(INV_MUTUAL_EXCLUSION),
            ..base(
                "drift-beyond",
                "node clocks 20-35 % fast, beyond the 10 % the clients allow for: violations expected",
                &[Fault::Partition, Fault::SplitBrain],
            )
        },
    ]
}

/// The scenario called `name`.
pub fn scenario(name: &str) -> Option<Scenario> {
    scenarios().into_iter().find(|s| s.name == name)
}

/// INV-1 as the checker names it: at most one holder at any instant.
pub const INV_MUTUAL_EXCLUSION: &str = "INV-1";

/// INV-2 as the checker names it: tokens unique and increasing per lock,
/// and no write under a stale one.
pub const INV_FENCING: &str = "INV-2";

/// A deliberate break of the time model, to show the simulation catches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Control {
    /// Renewals acknowledged without a read-index round.
    RenewWithoutReadIndex,
    /// A new leader does not extend the leases it inherits.
    NoExtensionOnPromotion,
    /// Lease deadlines on the wall clock (which steps) instead of the
    /// leader's monotonic clock.
    SharedWallClock,
    /// Grants answered before their entry commits.
    GrantBeforeCommit,
    /// Client deadlines without the drift margin.
    NoDriftMargin,
    /// The downstream store takes writes without checking their token.
    NoFencingCheck,
    /// Every semaphore grants one slot more than its callers asked for.
    SemaphoreExtraSlot,
}

impl Control {
    /// Every control.
    pub const ALL: [Control; 7] = [
        Control::RenewWithoutReadIndex,
        Control::NoExtensionOnPromotion,
        Control::SharedWallClock,
        Control::GrantBeforeCommit,
        Control::NoDriftMargin,
        Control::NoFencingCheck,
        Control::SemaphoreExtraSlot,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Control::RenewWithoutReadIndex => "renew-without-read-index",
            Control::NoExtensionOnPromotion => "no-extension-on-promotion",
            Control::SharedWallClock => "shared-wall-clock",
            Control::GrantBeforeCommit => "grant-before-commit",
            Control::NoDriftMargin => "no-drift-margin",
            Control::NoFencingCheck => "no-fencing-check",
            Control::SemaphoreExtraSlot => "semaphore-extra-slot",
        }
    }

    /// The invariant it breaks. A run catches the control only when the
    /// checker finds this invariant violated: a linearizability failure
    /// (INV-3, which every break of the time model also shows) or a
    /// liveness miss (INV-4) alone does not count.
    pub fn breaks(self) -> &'static str {
        match self {
            Control::RenewWithoutReadIndex
            | Control::NoExtensionOnPromotion
            | Control::SharedWallClock
            | Control::NoDriftMargin
            | Control::SemaphoreExtraSlot => INV_MUTUAL_EXCLUSION,
            // A grant lost with its entry is granted again under the same
            // token; a store that skips the check takes stale tokens.
            Control::GrantBeforeCommit | Control::NoFencingCheck => INV_FENCING,
        }
    }

    /// The scenario whose faults expose it.
    pub fn scenario(self) -> &'static str {
        match self {
            Control::RenewWithoutReadIndex => "split-brain",
            Control::NoExtensionOnPromotion => "crash-restart",
            Control::SharedWallClock => "clock-drift",
            Control::GrantBeforeCommit => "split-brain",
            Control::NoDriftMargin => "clock-drift",
            Control::NoFencingCheck => "client-pause",
            Control::SemaphoreExtraSlot => "semaphore",
        }
    }
}

impl fmt::Display for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Control {
    type Err = String;

    fn from_str(s: &str) -> Result<Control, String> {
        Control::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Control::ALL.iter().map(|c| c.name()).collect();
                format!("no control {s:?}; there are: {}", names.join(", "))
            })
    }
}

/// What one run produced.
#[derive(Debug)]
pub struct Outcome {
    /// The scenario.
    pub scenario: &'static str,
    /// The seed.
    pub seed: u64,
    /// The negative control in force, if any.
    pub control: Option<Control>,
    /// The history, NDJSON.
    pub history: String,
    /// Its SHA-256, hex.
    pub hash: String,
    /// The checker's report on it.
    pub report: Report,
    /// INV-4 failures (a key not free in time after the faults).
    pub liveness: Vec<String>,
    /// The faults, as applied.
    pub faults: Vec<String>,
    /// The faults, concrete: a plan that replays them.
    pub steps: Vec<nemesis::Step>,
    /// The invariant this run is expected to break: its control's, or its
    /// scenario's when the scenario demonstrates a limit.
    pub breaks: Option<&'static str>,
    /// Simulated time the run covered.
    pub simulated: Duration,
    /// Host clock rates, by node.
    pub rates: Vec<f64>,
}

impl Outcome {
    /// Whether the checker found `invariant` (`INV-1`, …) violated.
    pub fn broke(&self, invariant: &str) -> bool {
        self.report
            .violations
            .iter()
            .any(|v| v.invariant == invariant)
    }

    /// Whether a run that should break an invariant did break that one
    /// (see [`Control::breaks`]); false for a run of the real
    /// configuration.
    pub fn caught(&self) -> bool {
        self.breaks.is_some_and(|inv| self.broke(inv))
    }

    /// What failed, to compare a shrunk run with the original: the
    /// invariant a control or a limit is expected to break when it did,
    /// else the first invariant violated (`INV-4` for liveness alone);
    /// `None` when the run passed.
    pub fn failure(&self) -> Option<String> {
        if let Some(inv) = self.breaks {
            return self.broke(inv).then(|| inv.to_owned());
        }
        match self.report.violations.first() {
            Some(v) => Some(v.invariant.to_owned()),
            None if !self.liveness.is_empty() => Some("INV-4".to_owned()),
            None => None,
        }
    }

    /// Whether the checker, or the liveness check, found a violation.
    pub fn violated(&self) -> bool {
        !self.report.violations.is_empty() || !self.liveness.is_empty()
    }

    /// `pass`, `violation` or `inconclusive`.
    pub fn verdict(&self) -> &'static str {
        if self.violated() {
            "violation"
        } else {
            self.report.verdict()
        }
    }
}

/// Why a run could not complete.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The simulation itself failed (a host panicked, or it ran too long).
    #[error("the simulation failed: {0}")]
    Sim(String),
    /// The recorded history did not parse.
    #[error("the history did not parse: {0}")]
    History(#[from] tenure_check::Error),
}

/// Runs `scenario` with `seed`, under `control` if given.
pub fn run(scenario: &Scenario, seed: u64, control: Option<Control>) -> Result<Outcome, Error> {
    run_with(scenario, seed, control, &Overrides::default())
}

/// What a plan changes in a seeded run: fewer clients, a shorter run, and
/// the faults themselves (concrete, instead of drawn from the seed).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// Clients (instead of the scenario's).
    pub clients: Option<u64>,
    /// How long clients run (instead of the scenario's).
    pub run_for: Option<Duration>,
    /// The faults, in order (instead of the seed's plan).
    pub faults: Option<Vec<nemesis::Step>>,
}

/// Runs `scenario` with `seed` as `overrides` say. Everything not
/// overridden comes from the seed exactly as in [`run`], so a run with the
/// steps a seeded run applied (and nothing else changed) replays it byte
/// for byte.
pub fn run_with(
    scenario: &Scenario,
    seed: u64,
    control: Option<Control>,
    overrides: &Overrides,
) -> Result<Outcome, Error> {
    let mut scenario = scenario.clone();
    if let Some(c) = overrides.clients {
        scenario.workload.clients = c.max(1);
    }
    if let Some(r) = overrides.run_for {
        scenario.run_for = r;
    }
    let scenario = &scenario;
    tenure_raft::seed_thread_rng(seed);
    let mut rng = StdRng::seed_from_u64(seed);
    let base_latency = Duration::from_millis(5);
    let w = &scenario.workload;
    // Long enough for the clients, the auditor and the liveness bound.
    let bound = (Duration::from_millis(600) + w.ttl) * 2 + Duration::from_secs(1);
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_millis(crate::cluster::WALL_EPOCH_MS))
        .simulation_duration(scenario.run_for + bound * 4 + Duration::from_secs(60))
        .tcp_capacity(4096)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(base_latency)
        .repair_rate(0.05)
        .enable_random_order()
        .build();

    let mut cluster = SimCluster::new(scenario.nodes);
    let mut rates = Vec::new();
    for (i, setting) in cluster.clocks.values_mut().enumerate() {
        let rate = match scenario.drift {
            Drift::None => 1.0,
            Drift::Within => rng.gen_range(0.97..=1.0 + MAX_DRIFT),
            // One node at the allowance's edge is not enough to show the
            // limit: all run fast, the first the fastest.
            Drift::Beyond => {
                if i == 0 {
                    1.35
                } else {
                    rng.gen_range(1.2..=1.35)
                }
            }
        };
        rates.push(rate);
        *setting = ClockSetting {
            rate,
            wall_offset_ms: rng.gen_range(-3_600_000..=3_600_000),
        };
    }
    let mut sabotage = Sabotage::default();
    match control {
        Some(Control::RenewWithoutReadIndex) => sabotage.renew_without_read_index = true,
        Some(Control::NoExtensionOnPromotion) => sabotage.no_extension_on_promotion = true,
        Some(Control::GrantBeforeCommit) => sabotage.grant_before_commit = true,
        Some(Control::SemaphoreExtraSlot) => sabotage.semaphore_extra_slot = true,
        Some(Control::SharedWallClock) => cluster.wall_deadlines = true,
        _ => {}
    }
    cluster.sabotage = sabotage;
    cluster.install(&mut sim);

    let recorder = Recorder::default();
    let store = Store::new(control != Some(Control::NoFencingCheck));
    let endpoints: Vec<String> = cluster
        .hosts
        .values()
        .map(|h| format!("{h}:{PORT}"))
        .collect();
    let node_hosts: Vec<String> = cluster.hosts.values().cloned().collect();
    let max_drift = if control == Some(Control::NoDriftMargin) {
        0.0
    } else {
        MAX_DRIFT
    };
    let finished = Arc::new(AtomicUsize::new(0));
    let renew_ids = Arc::new(AtomicU64::new(1_000_000));
    let liveness = Arc::new(Mutex::new(Vec::new()));
    let client_config = |owner: &str, prefix: u64| {
        let mut c = ClientConfig::new(endpoints.clone(), "sim", owner);
        c.request_id_prefix = Some(prefix);
        c.max_drift = max_drift;
        c.call_timeout = Duration::from_secs(3);
        c.try_timeout = Duration::from_millis(500);
        c.dialer = Some(dialer());
        c
    };
    // Start the clients once the cluster has had time to elect.
    let start = Duration::from_secs(2);
    let stop_at = start + scenario.run_for;
    let mut client_hosts = Vec::new();
    for c in 1..=w.clients {
        let host = format!("c{c}");
        client_hosts.push(host.clone());
        let offset: u64 = rng.gen_range(0..1_000_000_000_000);
        let worker_seed: u64 = rng.r#gen();
        let (recorder, store, config) = (
            recorder.clone(),
            store.clone(),
            client_config(&format!("owner-{c}"), c),
        );
        let (w, nodes, ids, finished) = (
            w.clone(),
            node_hosts.clone(),
            renew_ids.clone(),
            finished.clone(),
        );
        let name = host.clone();
        sim.client(name.as_str(), async move {
            tokio::time::sleep(start).await;
            Worker {
                process: Process::new(c, "sim", recorder, offset),
                config,
                store,
                workload: w,
                seed: worker_seed,
                stop_at,
                nodes,
                host,
                renew_ids: ids,
                finished,
            }
            .run()
            .await
        });
    }
    {
        let auditor = w.clients + 1;
        let offset: u64 = rng.gen_range(0..1_000_000_000_000);
        let (recorder, store, config, w, finished, liveness) = (
            recorder.clone(),
            store.clone(),
            client_config("auditor", auditor),
            w.clone(),
            finished.clone(),
            liveness.clone(),
        );
        let clients = w.clients as usize;
        sim.client("auditor", async move {
            tokio::time::sleep(start).await;
            Auditor {
                process: Process::new(auditor, "sim", recorder, offset),
                config,
                store,
                workload: w,
                clients,
                finished,
                bound,
                liveness,
                keys_of: stop_at,
            }
            .run()
            .await
        });
    }

    let (min_len, max_len) = scenario.window_ms;
    let plan = nemesis::plan(
        &mut rng,
        scenario.faults,
        start + Duration::from_secs(1),
        stop_at - Duration::from_millis(500),
        (
            Duration::from_millis(min_len),
            Duration::from_millis(max_len),
        ),
    );
    // The seed's plan is drawn either way, so the randomness after it is
    // the same whether it is used or replaced.
    let plan = match &overrides.faults {
        Some(steps) => steps.iter().map(nemesis::Step::planned).collect(),
        None => plan,
    };
    let mut nemesis = Nemesis::new(
        cluster.clone(),
        (client_hosts, vec!["auditor".to_owned()]),
        plan,
        rng.r#gen(),
        w.ttl,
        base_latency,
    );
    let mut healed = false;
    loop {
        let now = sim.elapsed();
        if now >= stop_at && !healed {
            nemesis.heal_all(&mut sim, now);
            healed = true;
        } else if !healed {
            nemesis.tick(&mut sim, now);
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => return Err(Error::Sim(e.to_string())),
        }
    }
    let simulated = sim.elapsed();
    let text = recorder.ndjson();
    let report = tenure_check::check_history(&text, Limits::default())?;
    let liveness = liveness
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    Ok(Outcome {
        scenario: scenario.name,
        seed,
        control,
        hash: history::hash(&text),
        history: text,
        report,
        liveness,
        faults: nemesis.log.iter().map(ToString::to_string).collect(),
        steps: nemesis.steps,
        simulated,
        rates,
        breaks: control.map(Control::breaks).or(scenario.breaks),
    })
}

/// The one-line command that reproduces a run.
pub fn reproduce(scenario: &str, seed: u64, control: Option<Control>) -> String {
    match control {
        Some(c) => format!("tenure sim run {scenario} --seed {seed} --control {c}"),
        None => format!("tenure sim run {scenario} --seed {seed}"),
    }
}

/// Given which seeds (in order) caught a control, the median number of
/// seeds one must run, starting from each seed in turn (wrapping around),
/// to meet a catch. `None` when none caught it.
pub fn median_seeds_to_catch(caught: &[bool]) -> Option<f64> {
    let n = caught.len();
    if !caught.contains(&true) {
        return None;
    }
    let mut distances: Vec<usize> = (0..n)
        .filter_map(|start| (0..n).position(|i| caught[(start + i) % n]).map(|p| p + 1))
        .collect();
    distances.sort_unstable();
    let m = distances.len();
    Some(if m % 2 == 1 {
        distances[m / 2] as f64
    } else {
        (distances[m / 2 - 1] + distances[m / 2]) as f64 / 2.0
    })
}
