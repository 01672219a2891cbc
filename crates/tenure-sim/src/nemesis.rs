//! Faults, planned from the seed and applied between simulation steps:
//! partitions (the leader cut off with some of its clients: split brain),
//! one-way partitions, flapping links and slow messages, crashes with the
//! unflushed writes lost, a node paused longer than a TTL, wall-clock
//! steps. One fault at a time; each heals when its window ends, and all
//! heal before the clients stop.
//!
//! A fault is planned by its kind and window; when it starts, the seed's
//! randomness makes it concrete (an [`Action`]: which nodes, which
//! clients, how lossy, how far the clock steps). The actions taken are
//! kept as [`Step`]s: a plan file of them replays the same faults without
//! the randomness, which is how `tenure sim shrink` drops faults and still
//! replays the rest exactly. "The leader" stays a role, not a node: it is
//! whichever node leads when the fault starts.

use std::fmt;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tenure_raft::NodeId;

use crate::cluster::SimCluster;

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// A minority of nodes, with some clients, cut off from the rest.
    Partition,
    /// The leader cut off, with some of its clients.
    SplitBrain,
    /// Messages get through in one direction only.
    Asymmetric,
    /// Links that flap (messages lost in flight) and slow messages.
    Lossy,
    /// A node crashes, losing what it had not flushed, and restarts.
    Crash,
    /// A node (the leader, mostly) stops answering for longer than a TTL
    /// (a GC pause), then carries on as if nothing happened.
    Pause,
    /// A node's wall clock is set forward or back.
    ClockStep,
}

impl Fault {
    /// The name in schedules and reports.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Partition => "partition",
            Fault::SplitBrain => "split-brain",
            Fault::Asymmetric => "asymmetric",
            Fault::Lossy => "lossy",
            Fault::Crash => "crash",
            Fault::Pause => "pause",
            Fault::ClockStep => "clock-step",
        }
    }
}

/// One planned fault.
#[derive(Clone, Debug)]
pub struct Planned {
    /// When it starts (true time since the simulation began).
    pub at: Duration,
    /// When it heals.
    pub until: Duration,
    /// What it is.
    pub fault: Fault,
    /// What exactly it does; `None`: drawn from the seed when it starts.
    pub action: Option<Action>,
}

/// A node a fault targets: whichever leads when the fault starts, or a
/// given one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// The node most nodes name as leader when the fault starts (the
    /// lowest id when none is agreed).
    Leader,
    /// This node.
    Node(NodeId),
}

/// A fault made concrete.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "kebab-case")]
pub enum Action {
    /// `side` (with `clients`) cut off from the other nodes and clients.
    Partition {
        /// The nodes on the minority side.
        side: Vec<NodeId>,
        /// The clients with them.
        clients: Vec<String>,
    },
    /// The leader, with `clients`, cut off from the rest.
    SplitBrain {
        /// The clients with it.
        clients: Vec<String>,
    },
    /// Messages from `from` to `to` lost (and `leader`'s to `client`).
    Asymmetric {
        /// The sender whose messages are lost.
        from: Target,
        /// Their receiver.
        to: Target,
        /// The leader side of the cut.
        leader: Target,
        /// A client whose answers from `leader` are lost too.
        client: Option<String>,
    },
    /// Links fail at `rate` per ms, messages up to `latency_ms` late.
    Lossy {
        /// Failures per link per ms.
        rate: f64,
        /// The longest message latency.
        latency_ms: u64,
    },
    /// A node crashes (unflushed writes lost), restarted at the heal.
    Crash {
        /// Which.
        victim: Target,
    },
    /// A node hears and says nothing until the heal.
    Pause {
        /// Which.
        victim: Target,
    },
    /// A node's wall clock steps by `by_ms`.
    ClockStep {
        /// Which.
        victim: Target,
        /// How far (negative: back).
        by_ms: i64,
    },
}

impl Action {
    /// Its kind.
    pub fn fault(&self) -> Fault {
        match self {
            Action::Partition { .. } => Fault::Partition,
            Action::SplitBrain { .. } => Fault::SplitBrain,
            Action::Asymmetric { .. } => Fault::Asymmetric,
            Action::Lossy { .. } => Fault::Lossy,
            Action::Crash { .. } => Fault::Crash,
            Action::Pause { .. } => Fault::Pause,
            Action::ClockStep { .. } => Fault::ClockStep,
        }
    }
}

/// A fault as it was (or is to be) applied: its window and its action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// When it starts, ms of true time since the simulation began (it
    /// starts at the first step at or after this with no fault active).
    pub at_ms: u64,
    /// When it heals, ms.
    pub until_ms: u64,
    /// What it does.
    #[serde(flatten)]
    pub action: Action,
}

impl Step {
    /// The step as a planned fault.
    pub fn planned(&self) -> Planned {
        Planned {
            at: Duration::from_millis(self.at_ms),
            until: Duration::from_millis(self.until_ms),
            fault: self.action.fault(),
            action: Some(self.action.clone()),
        }
    }
}

/// Plans faults from `kinds` between `start` and `end`: windows of
/// `min_len`…`max_len`, with quiet gaps between them.
pub fn plan(
    rng: &mut StdRng,
    kinds: &[Fault],
    start: Duration,
    end: Duration,
    (min_len, max_len): (Duration, Duration),
) -> Vec<Planned> {
    let mut out = Vec::new();
    if kinds.is_empty() {
        return out;
    }
    let mut at = start + Duration::from_millis(rng.gen_range(0..1_000));
    loop {
        let len = Duration::from_millis(
            rng.gen_range(min_len.as_millis() as u64..=max_len.as_millis() as u64),
        );
        if at + len >= end {
            return out;
        }
        let fault = kinds[rng.gen_range(0..kinds.len())];
        out.push(Planned {
            at,
            until: at + len,
            fault,
            action: None,
        });
        at += len + Duration::from_millis(rng.gen_range(200..2_000));
    }
}

/// What a fault changed, to heal it.
enum Active {
    /// Links were cut or held: release every link.
    Links,
    /// Links flap and are slow: steady them.
    Lossy,
    /// A node is down: restart it.
    Crashed(NodeId),
    /// Nothing to heal (a clock step stays).
    Nothing,
}

/// A line of the fault log.
#[derive(Clone, Debug)]
pub struct Applied {
    /// When, true time.
    pub at: Duration,
    /// What happened.
    pub what: String,
}

impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>8.3}s {}", self.at.as_secs_f64(), self.what)
    }
}

/// Applies a plan to a running simulation.
pub struct Nemesis {
    cluster: SimCluster,
    clients: Vec<String>,
    /// Hosts no fault targets but a crash must cut off (the auditor).
    bystanders: Vec<String>,
    plan: std::vec::IntoIter<Planned>,
    next: Option<Planned>,
    active: Option<(Duration, Active)>,
    rng: StdRng,
    ttl: Duration,
    base_latency: Duration,
    /// What it did, in order.
    pub log: Vec<Applied>,
    /// The faults it applied, concrete: a plan that replays them.
    pub steps: Vec<Step>,
}

impl Nemesis {
    /// A nemesis over `cluster`, the client hosts it may partition, and
    /// bystanders (hosts it leaves alone).
    pub fn new(
        cluster: SimCluster,
        (clients, bystanders): (Vec<String>, Vec<String>),
        plan: Vec<Planned>,
        seed: u64,
        ttl: Duration,
        base_latency: Duration,
    ) -> Nemesis {
        let mut plan = plan.into_iter();
        let next = plan.next();
        Nemesis {
            cluster,
            clients,
            bystanders,
            plan,
            next,
            active: None,
            rng: StdRng::seed_from_u64(seed),
            ttl,
            base_latency,
            log: Vec::new(),
            steps: Vec::new(),
        }
    }

    fn nodes(&self) -> Vec<NodeId> {
        self.cluster.hosts.keys().copied().collect()
    }

    fn host(&self, id: NodeId) -> String {
        self.cluster.hosts.get(&id).cloned().unwrap_or_default()
    }

    /// The leader most nodes name as a target; with none agreed, a node
    /// drawn from the seed.
    fn leader(&mut self) -> Target {
        let nodes = self.nodes();
        match self.cluster.agreed_leader(&nodes) {
            Some(_) => Target::Leader,
            None => Target::Node(nodes[self.rng.gen_range(0..nodes.len())]),
        }
    }

    /// The node a target names now.
    fn resolve(&self, target: Target) -> NodeId {
        match target {
            Target::Node(id) => id,
            Target::Leader => {
                let nodes = self.nodes();
                match self.cluster.agreed_leader(&nodes) {
                    Some((l, _)) => l,
                    None => nodes.first().copied().unwrap_or(1),
                }
            }
        }
    }

    /// Every host of the simulation but `host`: nodes, clients, auditor.
    fn everyone_but(&self, host: &str) -> Vec<String> {
        self.cluster
            .hosts
            .values()
            .chain(self.clients.iter())
            .chain(self.bystanders.iter())
            .filter(|h| h.as_str() != host)
            .cloned()
            .collect()
    }

    fn note(&mut self, at: Duration, what: String) {
        tracing::info!(at_ms = at.as_millis() as u64, %what, "nemesis");
        self.log.push(Applied { at, what });
    }

    /// Starts and heals faults due at `now`.
    pub fn tick(&mut self, sim: &mut turmoil::Sim<'_>, now: Duration) {
        if let Some((until, _)) = &self.active
            && *until <= now
            && let Some((_, active)) = self.active.take()
        {
            self.heal(sim, active, now);
        }
        if self.active.is_none()
            && let Some(p) = self.next.take_if(|p| p.at <= now)
        {
            self.next = self.plan.next();
            let action = match p.action {
                Some(a) => a,
                None => self.draw(p.fault),
            };
            self.steps.push(Step {
                at_ms: p.at.as_millis() as u64,
                until_ms: p.until.as_millis() as u64,
                action: action.clone(),
            });
            let active = self.start(sim, action, now);
            self.active = Some((p.until, active));
        }
    }

    /// Heals whatever is active (at the end of the faults).
    pub fn heal_all(&mut self, sim: &mut turmoil::Sim<'_>, now: Duration) {
        self.next = None;
        if let Some((_, active)) = self.active.take() {
            self.heal(sim, active, now);
        }
    }

    /// Cuts every link between `a` and `b`.
    fn cut(sim: &turmoil::Sim<'_>, a: &[String], b: &[String]) {
        for x in a {
            for y in b {
                sim.partition(x.as_str(), y.as_str());
            }
        }
    }

    /// Makes a fault concrete with the seed's randomness (the same draws,
    /// in the same order, as the faults always took).
    fn draw(&mut self, fault: Fault) -> Action {
        let nodes = self.nodes();
        match fault {
            Fault::Partition | Fault::SplitBrain => {
                let mut side: Vec<NodeId> = Vec::new();
                let leader = if fault == Fault::SplitBrain {
                    Some(self.leader())
                } else {
                    let k = self.rng.gen_range(1..=(nodes.len() - 1) / 2);
                    let mut shuffled = nodes.clone();
                    shuffled.shuffle(&mut self.rng);
                    side.extend(shuffled.into_iter().take(k));
                    side.sort_unstable();
                    None
                };
                let mut clients: Vec<String> = self
                    .clients
                    .iter()
                    .filter(|_| self.rng.gen_bool(0.5))
                    .cloned()
                    .collect();
                if fault == Fault::SplitBrain && clients.is_empty() {
                    clients.push(self.clients[self.rng.gen_range(0..self.clients.len())].clone());
                }
                match leader {
                    Some(Target::Leader) => Action::SplitBrain { clients },
                    // No leader agreed: the node drawn stands alone.
                    Some(Target::Node(id)) => Action::Partition {
                        side: vec![id],
                        clients,
                    },
                    None => Action::Partition { side, clients },
                }
            }
            Fault::Asymmetric => {
                let leader = self.leader();
                let leader_id = self.resolve(leader);
                let others: Vec<NodeId> =
                    nodes.iter().copied().filter(|n| *n != leader_id).collect();
                let other = Target::Node(others[self.rng.gen_range(0..others.len())]);
                let (from, to) = if self.rng.gen_bool(0.5) {
                    (leader, other)
                } else {
                    (other, leader)
                };
                let client = self
                    .rng
                    .gen_bool(0.5)
                    .then(|| self.clients[self.rng.gen_range(0..self.clients.len())].clone());
                Action::Asymmetric {
                    from,
                    to,
                    leader,
                    client,
                }
            }
            Fault::Lossy => Action::Lossy {
                rate: self.rng.gen_range(0.0005..0.004),
                latency_ms: self.rng.gen_range(10..60),
            },
            Fault::Crash | Fault::Pause => {
                let victim = if self.rng.gen_bool(0.8) {
                    self.leader()
                } else {
                    Target::Node(nodes[self.rng.gen_range(0..nodes.len())])
                };
                if fault == Fault::Crash {
                    Action::Crash { victim }
                } else {
                    Action::Pause { victim }
                }
            }
            Fault::ClockStep => {
                let victim = if self.rng.gen_bool(0.6) {
                    self.leader()
                } else {
                    Target::Node(nodes[self.rng.gen_range(0..nodes.len())])
                };
                let ttl = self.ttl.as_millis() as i64;
                let by = self.rng.gen_range(ttl / 2..=ttl * 3);
                let by_ms = if self.rng.gen_bool(0.7) { by } else { -by };
                Action::ClockStep { victim, by_ms }
            }
        }
    }

    fn start(&mut self, sim: &mut turmoil::Sim<'_>, action: Action, now: Duration) -> Active {
        match action {
            Action::Partition { side, clients } => {
                self.split(sim, "partition", &side, &clients, now)
            }
            Action::SplitBrain { clients } => {
                let leader = self.resolve(Target::Leader);
                self.split(sim, "split-brain", &[leader], &clients, now)
            }
            Action::Asymmetric {
                from,
                to,
                leader,
                client,
            } => {
                let (from, to) = (self.resolve(from), self.resolve(to));
                if from == to {
                    self.note(
                        now,
                        format!("asymmetric: n{from} -> n{to} is one node: nothing cut"),
                    );
                    return Active::Links;
                }
                sim.partition_oneway(self.host(from).as_str(), self.host(to).as_str());
                let mut what = format!("asymmetric: n{from} -> n{to} lost");
                if let Some(c) = client {
                    let leader = self.resolve(leader);
                    sim.partition_oneway(self.host(leader).as_str(), c.as_str());
                    what.push_str(&format!(", n{leader} -> {c} lost"));
                }
                self.note(now, what);
                Active::Links
            }
            Action::Lossy { rate, latency_ms } => {
                sim.set_fail_rate(rate);
                sim.set_max_message_latency(Duration::from_millis(latency_ms));
                self.note(
                    now,
                    format!(
                        "lossy: links fail at {rate:.4} per ms, messages up to {latency_ms} ms late"
                    ),
                );
                Active::Lossy
            }
            Action::Crash { victim } => {
                let victim = self.resolve(victim);
                let host = self.host(victim);
                // Cut first: a crashed machine says nothing, and the FINs its
                // dropped connections would send (in an order tokio does not
                // fix) must not reach the network, or a seed would not replay.
                for other in self.everyone_but(&host) {
                    sim.partition(host.as_str(), other.as_str());
                }
                sim.crash(host.as_str());
                if let Some(d) = self.cluster.disks.get(&victim) {
                    d.crash();
                }
                self.note(now, format!("crash: n{victim}, unflushed writes lost"));
                Active::Crashed(victim)
            }
            Action::Pause { victim } => {
                let victim = self.resolve(victim);
                let host = self.host(victim);
                let everyone: Vec<String> = self
                    .cluster
                    .hosts
                    .values()
                    .filter(|h| **h != host)
                    .chain(self.clients.iter())
                    .cloned()
                    .collect();
                for other in &everyone {
                    sim.hold(host.as_str(), other.as_str());
                }
                self.note(now, format!("pause: n{victim} hears and says nothing"));
                Active::Links
            }
            Action::ClockStep { victim, by_ms } => {
                let victim = self.resolve(victim);
                self.cluster.step_wall(victim, by_ms);
                self.note(
                    now,
                    format!("clock-step: n{victim}'s wall clock {by_ms:+} ms"),
                );
                Active::Nothing
            }
        }
    }

    /// Cuts `side` (with `clients_a`) from the other nodes and clients.
    fn split(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        name: &str,
        side: &[NodeId],
        clients_a: &[String],
        now: Duration,
    ) -> Active {
        let nodes = self.nodes();
        let a: Vec<String> = side.iter().map(|n| self.host(*n)).collect();
        let b: Vec<String> = nodes
            .iter()
            .filter(|n| !side.contains(n))
            .map(|n| self.host(*n))
            .collect();
        let clients_b: Vec<String> = self
            .clients
            .iter()
            .filter(|c| !clients_a.contains(c))
            .cloned()
            .collect();
        Self::cut(sim, &a, &b);
        Self::cut(sim, clients_a, &b);
        Self::cut(sim, &clients_b, &a);
        self.note(
            now,
            format!("{name}: {a:?} with clients {clients_a:?} | {b:?} with clients {clients_b:?}"),
        );
        Active::Links
    }

    fn heal(&mut self, sim: &mut turmoil::Sim<'_>, active: Active, now: Duration) {
        match active {
            Active::Links => {
                let hosts: Vec<String> = self
                    .cluster
                    .hosts
                    .values()
                    .chain(self.clients.iter())
                    .cloned()
                    .collect();
                for (i, a) in hosts.iter().enumerate() {
                    for b in &hosts[i + 1..] {
                        sim.release(a.as_str(), b.as_str());
                    }
                }
                self.note(now, "heal: every link".into());
            }
            Active::Lossy => {
                sim.set_fail_rate(0.0);
                sim.set_max_message_latency(self.base_latency);
                self.note(now, "heal: links steady".into());
            }
            Active::Crashed(id) => {
                let host = self.host(id);
                for other in self.everyone_but(&host) {
                    sim.repair(host.as_str(), other.as_str());
                }
                sim.bounce(host.as_str());
                self.note(now, format!("heal: n{id} restarted"));
            }
            Active::Nothing => {}
        }
    }
}
