//! A cluster of Tenure nodes as turmoil hosts, and what they are seen to do.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tenure_raft::{NodeId, SimDisk};
use tenure_server::{ClusterState, Node, NodeConfig};

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
}

impl SimCluster {
    /// `n` nodes named `n1`, `n2`, ….
    pub fn new(n: u64) -> SimCluster {
        SimCluster {
            hosts: (1..=n).map(|id| (id, format!("n{id}"))).collect(),
            disks: (1..=n).map(|id| (id, SimDisk::new())).collect(),
            observations: Arc::default(),
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
        let node = Node::start(
            self.config(id),
            self.disks[&id].clone(),
            TurmoilConnector,
            incoming,
            std::future::pending::<()>(),
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
