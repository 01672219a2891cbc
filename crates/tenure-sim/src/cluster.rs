//! A cluster of Tenure nodes as turmoil hosts, and what they are seen to do.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tenure_raft::{NodeId, SimDisk};
use tenure_server::{ClusterState, Harness, Node, NodeClock, NodeConfig, Sabotage};

use crate::net::{TurmoilConnector, incoming};

/// The port every simulated node serves on.
pub const PORT: u16 = 7000;

/// A change a node reported: its term, role or leader moved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// Simulated time since the start, ms.
    pub at_ms: u128,
    /// The reporting node.
    pub node: NodeId,
    /// Its term.
    pub term: u64,
    /// The leader it knows.
    pub leader: Option<NodeId>,
}

/// A simulated cluster: node ids, their host names, their disks, and the log
/// of observations every node appends to.
#[derive(Clone)]
pub struct SimCluster {
    /// Host name of each node.
    pub hosts: BTreeMap<NodeId, String>,
    /// Each node's disk, outside the hosts.
    pub disks: BTreeMap<NodeId, SimDisk>,
    /// Every node's role and term changes, in simulated time order.
    pub observations: Arc<Mutex<Vec<Observation>>>,
    /// Each node's clock setting: rate, and wall clock offset from the
    /// simulation's epoch (ms).
    pub clocks: BTreeMap<NodeId, ClockSetting>,
    /// The clocks of the running nodes (replaced at each restart), so a
    /// nemesis can step their wall clocks.
    pub running_clocks: Arc<Mutex<BTreeMap<NodeId, NodeClock>>>,
    /// Deliberate breaks every node runs with (none: the real thing).
    pub sabotage: Sabotage,
    /// Negative control: lease deadlines on the wall clock.
    pub wall_deadlines: bool,
    /// The bounds the table starts with: TTLs from 500 ms.
    pub table: tenure_core::TableConfig,
}

/// One host's clocks: how fast they run, and where its wall clock starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClockSetting {
    /// Local seconds per true second.
    pub rate: f64,
    /// The wall clock's offset from the simulation's epoch, ms.
    pub wall_offset_ms: i64,
}

impl Default for ClockSetting {
    fn default() -> ClockSetting {
        ClockSetting {
            rate: 1.0,
            wall_offset_ms: 0,
        }
    }
}

/// The simulated wall clock's epoch: 2026-01-01T00:00:00Z, in Unix ms.
pub const WALL_EPOCH_MS: u64 = 1_767_225_600_000;

impl SimCluster {
    /// `n` nodes named `n1`, `n2`, ….
    pub fn new(n: u64) -> SimCluster {
        SimCluster {
            hosts: (1..=n).map(|id| (id, format!("n{id}"))).collect(),
            disks: (1..=n).map(|id| (id, SimDisk::new())).collect(),
            observations: Arc::default(),
            clocks: (1..=n).map(|id| (id, ClockSetting::default())).collect(),
            running_clocks: Arc::default(),
            sabotage: Sabotage::default(),
            wall_deadlines: false,
            table: tenure_core::TableConfig {
                min_ttl_ms: 500,
                ..tenure_core::TableConfig::default()
            },
        }
    }

    /// Steps node `id`'s wall clock by `ms` (if it runs).
    pub fn step_wall(&self, id: NodeId, ms: i64) {
        if let Some(c) = self
            .running_clocks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
        {
            c.step_wall(ms);
        }
    }

    /// The clocks node `id` starts with now.
    fn harness(&self, id: NodeId) -> Harness {
        let setting = self.clocks.get(&id).copied().unwrap_or_default();
        let since = turmoil::sim_elapsed().unwrap_or_default();
        let wall = WALL_EPOCH_MS
            .saturating_add_signed(setting.wall_offset_ms)
            .saturating_add(u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
        let mut clock = NodeClock::simulated(setting.rate, wall);
        if self.wall_deadlines {
            clock = clock.with_wall_deadlines();
        }
        self.running_clocks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, clock.clone());
        Harness {
            clock,
            table: self.table.clone(),
            sabotage: self.sabotage,
        }
    }

    /// The configuration of node `id`.
    pub fn config(&self, id: NodeId) -> NodeConfig {
        let members: BTreeMap<NodeId, String> = self
            .hosts
            .iter()
            .map(|(i, h)| (*i, format!("{h}:{PORT}")))
            .collect();
        NodeConfig {
            id,
            listen: format!("0.0.0.0:{PORT}"),
            advertise: members[&id].clone(),
            data_dir: "simulated".into(),
            initial_cluster: members,
            initial_cluster_state: ClusterState::New,
            heartbeat_ms: 50,
            election_min_ms: 300,
            election_max_ms: 600,
            snapshot_every: 1_000,
            keep_after_snapshot: 100,
            auth_file: None,
            rate_limit: 0,
            cache_mb: 64,
            audit_retention: tenure_raft::AuditRetention::default(),
            tls: None,
            http_listen: None,
            table: tenure_core::TableConfig::default(),
        }
    }

    /// Adds every node as a turmoil host running the real node code.
    pub fn install(&self, sim: &mut turmoil::Sim<'_>) {
        for (id, host) in &self.hosts {
            let cluster = self.clone();
            let id = *id;
            sim.host(host.as_str(), move || {
                let cluster = cluster.clone();
                async move {
                    let node = cluster.start(id).await?;
                    cluster.observe(node).await;
                    Ok(())
                }
            });
        }
    }

    async fn start(&self, id: NodeId) -> Result<Node, Box<dyn std::error::Error>> {
        let incoming = incoming(PORT).await?;
        let node = Node::start_with(
            self.config(id),
            self.disks[&id].clone(),
            TurmoilConnector,
            incoming,
            std::future::pending::<()>(),
            self.harness(id),
        )
        .await?;
        Ok(node)
    }

    /// Records the node's term and leader whenever they change; runs as
    /// long as the host does.
    async fn observe(&self, node: Node) {
        let start = tokio::time::Instant::now();
        let mut metrics = node.raft.metrics();
        let mut last = None;
        loop {
            let (term, leader) = {
                let m = metrics.borrow_and_update();
                (m.current_term, m.current_leader)
            };
            if last != Some((term, leader)) {
                last = Some((term, leader));
                let at_ms = start.elapsed().as_millis();
                let o = Observation {
                    at_ms,
                    node: node.id,
                    term,
                    leader,
                };
                self.observations
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(o);
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    }

    /// The latest leader that a majority of `nodes` agrees on, if any.
    pub fn agreed_leader(&self, nodes: &[NodeId]) -> Option<(NodeId, u64)> {
        let obs = self
            .observations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut latest: BTreeMap<NodeId, (u64, Option<NodeId>)> = BTreeMap::new();
        for o in obs.iter().filter(|o| nodes.contains(&o.node)) {
            latest.insert(o.node, (o.term, o.leader));
        }
        let mut votes: BTreeMap<(u64, NodeId), usize> = BTreeMap::new();
        for (term, leader) in latest.values() {
            if let Some(l) = leader {
                *votes.entry((*term, *l)).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .filter(|(_, n)| *n * 2 > nodes.len())
            .map(|((term, leader), _)| (leader, term))
            .max_by_key(|(_, term)| *term)
    }
}

/// How long simulated waits poll.
pub const TICK: Duration = Duration::from_millis(10);
