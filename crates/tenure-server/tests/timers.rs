//! The leader's lease timers on a real 3-node cluster (loopback TCP): leases
//! expire by `Expire` proposals after their TTL, never before the client's
//! own deadline; renewals extend them; a new leader extends every lease;
//! waits time out; lock-delays end. Safety is asserted (never expired before
//! the client-side deadline); how late an expiry comes is only bounded
//! generously, for liveness.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{WAIT, config, listener, start_with};
use tenure_core::{Acquire, Command, EndReason, LeaseId, LeaseState, Reply, TableConfig};
use tenure_raft::{NodeId, Proposal, SimDisk};
use tenure_server::{ClusterState, Node};
use tokio::time::Instant;

/// The client-side deadline margin: `ttl × (1 − max_drift)`, with 10 % drift.
fn client_deadline(sent: Instant, ttl_ms: u64) -> Instant {
    sent + Duration::from_millis(ttl_ms * 9 / 10)
}

async fn cluster() -> BTreeMap<NodeId, Node> {
    let mut members = BTreeMap::new();
    let mut listeners = BTreeMap::new();
    for id in 1..=3 {
        let (l, addr) = listener().await;
        members.insert(id, addr);
        listeners.insert(id, l);
    }
    let mut nodes = BTreeMap::new();
    for (id, l) in listeners {
        let c = config(id, &members[&id], &members, ClusterState::New);
        nodes.insert(id, start_with(c, SimDisk::new(), l).await);
    }
    nodes
}

async fn leader(nodes: &BTreeMap<NodeId, Node>) -> NodeId {
    for _ in 0..200 {
        for (id, n) in nodes {
            if n.timers.active() {
                return *id;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no leader took office");
}

/// Proposes through the leader in office, retrying while leadership settles
/// (these tests share two cores with others; an election may happen).
async fn propose(nodes: &BTreeMap<NodeId, Node>, command: Command) -> Reply {
    for _ in 0..200 {
        if let Some((_, n)) = nodes.iter().find(|(_, n)| n.timers.active()) {
            let proposal = Proposal::one(0, command.clone());
            if let Ok(written) = n.raft.client_write(proposal).await {
                return written.data[0].result.clone().expect("accepted");
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no leader committed {command:?}");
}

fn acquire(key: &str, owner: &str, ttl_ms: u64, wait_timeout_ms: u64) -> Command {
    Command::Acquire(Acquire {
        tenant: "t".into(),
        key: key.into(),
        owner: owner.into(),
        request_id: format!("{owner}-{key}"),
        ttl_ms,
        wait_timeout_ms,
    })
}

fn lease_id(reply: Reply) -> LeaseId {
    match reply {
        Reply::Lease(l) => l.id,
        other => panic!("expected a lease, got {other:?}"),
    }
}

fn state(node: &Node, id: LeaseId) -> (LeaseState, Option<EndReason>) {
    let l = node
        .table
        .read()
        .table
        .lease("t", id)
        .expect("the lease is known");
    (l.state, l.ended)
}

/// Checks, until `until`, that the lease stays live on `node`.
async fn live_until(node: &Node, id: LeaseId, until: Instant) {
    while Instant::now() < until {
        let (s, _) = state(node, id);
        assert!(
            matches!(s, LeaseState::Active | LeaseState::Waiting),
            "lease ended before the client's deadline"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn ends_as(node: &Node, id: LeaseId, ended: EndReason) {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        if state(node, id).1 == Some(ended) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("lease {id} did not end as {ended:?}: {:?}", state(node, id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_time_003_leases_expire_after_their_ttl_and_never_before_the_client_deadline() {
    let nodes = cluster().await;
    let l = leader(&nodes).await;
    let short = TableConfig {
        min_ttl_ms: 100,
        lock_delay_ms: 300,
        ..TableConfig::default()
    };
    propose(&nodes, Command::Configure(short)).await;

    let sent = Instant::now();
    let a = lease_id(propose(&nodes, acquire("a", "o", 400, 0)).await);
    live_until(&nodes[&l], a, client_deadline(sent, 400)).await;
    ends_as(&nodes[&l], a, EndReason::Expired).await;
    // The expiry started a lock-delay, which the leader ends.
    assert!(nodes[&l].table.read().table.lock("t", "a").delayed);
    let start = Instant::now();
    while nodes[&l].table.read().table.lock("t", "a").delayed {
        assert!(start.elapsed() < WAIT, "the lock-delay never ended");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_time_004_renewals_extend_the_deadline_and_a_wait_times_out() {
    let nodes = cluster().await;
    let l = leader(&nodes).await;
    let short = TableConfig {
        min_ttl_ms: 100,
        ..TableConfig::default()
    };
    propose(&nodes, Command::Configure(short)).await;

    let b = lease_id(propose(&nodes, acquire("b", "o", 400, 0)).await);
    let renewed_until = Instant::now() + Duration::from_millis(1_500);
    let mut last_sent = Instant::now();
    while Instant::now() < renewed_until {
        tokio::time::sleep(Duration::from_millis(150)).await;
        // A client renews through whichever node leads now.
        let Some(leader) = nodes.values().find(|n| n.timers.active()) else {
            continue;
        };
        let sent = Instant::now();
        let view = leader
            .table
            .read()
            .table
            .check_renew("t", b, "o")
            .expect("renewable");
        if leader.raft.ensure_linearizable().await.is_err() {
            continue;
        }
        if let Ok(left) = leader
            .timers
            .renew(b, Duration::from_millis(400), view.version)
        {
            // At least the TTL from now (more if a leader change or a
            // stall extended it: deadlines only move later).
            assert!(left >= Duration::from_millis(350), "{left:?}");
            last_sent = sent;
        }
        assert_eq!(state(&nodes[&l], b).0, LeaseState::Active);
    }
    live_until(&nodes[&l], b, client_deadline(last_sent, 400)).await;
    ends_as(&nodes[&l], b, EndReason::Expired).await;
    // The table refuses a renewal of the expired lease before the timers are asked.
    let refused = nodes[&l].table.read().table.check_renew("t", b, "o");
    assert_eq!(
        refused.map(|_| ()).unwrap_err().reason(),
        tenure_core::Reason::LeaseExpired
    );

    // A waiter whose wait runs out leaves the queue: WAIT_TIMEOUT.
    lease_id(propose(&nodes, acquire("c", "holder", 5_000, 0)).await);
    let w = lease_id(propose(&nodes, acquire("c", "waiter", 5_000, 300)).await);
    ends_as(&nodes[&l], w, EndReason::WaitTimedOut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_time_005_a_new_leader_extends_every_lease() {
    let mut nodes = cluster().await;
    let l = leader(&nodes).await;
    let short = TableConfig {
        min_ttl_ms: 100,
        ..TableConfig::default()
    };
    propose(&nodes, Command::Configure(short)).await;
    let sent = Instant::now();
    let d = lease_id(propose(&nodes, acquire("d", "o", 1_500, 0)).await);
    let index = nodes[&l]
        .raft
        .metrics()
        .borrow()
        .last_applied
        .map_or(0, |x| x.index);
    for n in nodes.values() {
        common::applied(n, index).await;
    }
    nodes.remove(&l).expect("leader").kill().await;
    let next = leader(&nodes).await;
    assert_ne!(next, l);
    // Nobody expires the lease before its holder's own deadline.
    live_until(&nodes[&next], d, client_deadline(sent, 1_500)).await;
    ends_as(&nodes[&next], d, EndReason::Expired).await;
    for (_, n) in nodes {
        n.kill().await;
    }
}
