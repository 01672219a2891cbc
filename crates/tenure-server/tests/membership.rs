//! Membership changes under load, and catching up through a snapshot.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{WAIT, acquire, admin, applied, config, listener, retry, same_tables, start_with};
use tenure_proto::v1;
use tenure_raft::{NodeId, SimDisk};
use tenure_server::{ClusterState, Node};
use tokio::sync::Mutex;

type Nodes = Arc<Mutex<BTreeMap<NodeId, Node>>>;

/// The node whose lease timers run: the leader, in office.
async fn in_office(nodes: &BTreeMap<NodeId, Node>) -> NodeId {
    for _ in 0..500 {
        if let Some((id, _)) = nodes.iter().find(|(_, n)| n.timers.active()) {
            return *id;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no leader took office");
}

/// Writes distinct keys through whichever node leads, until told to stop;
/// returns the keys whose write was acknowledged.
async fn writer(nodes: Nodes, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut acked = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let key = format!("k{n}");
        let raft = {
            let nodes = nodes.lock().await;
            let mut leader = None;
            for node in nodes.values() {
                if node.raft.metrics().borrow().state == openraft::ServerState::Leader {
                    leader = Some(node.raft.clone());
                }
            }
            leader
        };
        let Some(raft) = raft else {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        };
        let written = tokio::time::timeout(WAIT, raft.client_write(acquire(&key, "w"))).await;
        if let Ok(Ok(reply)) = written
            && reply.data[0].result.is_ok()
        {
            acked.push(key);
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_repl_005_membership_goes_3_to_5_to_3_while_a_writer_commits_and_nothing_is_lost() {
    let mut listeners = BTreeMap::new();
    let mut members = BTreeMap::new();
    for id in 1..=5 {
        let (l, addr) = listener().await;
        if id <= 3 {
            members.insert(id, addr.clone());
        }
        listeners.insert(id, (l, addr));
    }
    let nodes: Nodes = Arc::default();
    let mut addrs = BTreeMap::new();
    for (id, (l, addr)) in listeners {
        let state = if id <= 3 {
            ClusterState::New
        } else {
            ClusterState::Existing
        };
        let node = start_with(config(id, &addr, &members, state), SimDisk::new(), l).await;
        nodes.lock().await.insert(id, node);
        addrs.insert(id, addr);
    }
    nodes.lock().await[&1]
        .wait_for_leader(WAIT)
        .await
        .expect("a leader");

    let stop = Arc::new(AtomicBool::new(false));
    let writing = tokio::spawn(writer(nodes.clone(), stop.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for id in [4, 5] {
        let add = v1::AddNodeRequest {
            node_id: id,
            address: addrs[&id].clone(),
        };
        retry(|| {
            let (mut c, r) = (admin(&addrs[&2]), add.clone());
            async move { c.add_node(r).await }
        })
        .await
        .expect("node added");
    }
    let five = retry(|| {
        let mut c = admin(&addrs[&3]);
        async move { c.status(v1::StatusRequest {}).await }
    })
    .await
    .unwrap();
    assert_eq!(five.members.iter().filter(|m| m.voter).count(), 5);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for id in [1, 2] {
        retry(|| {
            let mut c = admin(&addrs[&5]);
            async move { c.remove_node(v1::RemoveNodeRequest { node_id: id }).await }
        })
        .await
        .expect("node removed");
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = writing.await.expect("writer ends");
    assert!(
        acked.len() > 10,
        "the writer kept committing ({} writes)",
        acked.len()
    );

    let nodes = nodes.lock().await;
    let status = admin(&addrs[&3])
        .status(v1::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let voters: Vec<NodeId> = status
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.node_id)
        .collect();
    assert_eq!(voters, vec![3, 4, 5]);
    let last = nodes[&3]
        .raft
        .metrics()
        .borrow()
        .last_log_index
        .unwrap_or(0);
    for id in [3, 4, 5] {
        applied(&nodes[&id], last).await;
        let table = nodes[&id].table.read();
        for key in &acked {
            assert!(
                table.table.lock("t", key).active.is_some(),
                "node {id} lost acknowledged {key}"
            );
        }
    }
    eprintln!("{} acknowledged writes through 3 -> 5 -> 3", acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_repl_006_a_wiped_node_readded_catches_up_through_a_snapshot() {
    let mut members = BTreeMap::new();
    let mut listeners = BTreeMap::new();
    for id in 1..=3 {
        let (l, addr) = listener().await;
        members.insert(id, addr.clone());
        listeners.insert(id, l);
    }
    let small = |id: NodeId, state| {
        let mut c = config(id, &members[&id], &members, state);
        c.snapshot_every = 50;
        c.keep_after_snapshot = 5;
        c
    };
    let mut nodes = BTreeMap::new();
    for (id, l) in listeners {
        nodes.insert(
            id,
            start_with(small(id, ClusterState::New), SimDisk::new(), l).await,
        );
    }
    let leader = in_office(&nodes).await;
    let wiped = (1..=3).find(|id| *id != leader).expect("a follower");

    // The follower is wiped and removed; the others move far ahead.
    nodes.remove(&wiped).expect("node").kill().await;
    retry(|| {
        let mut c = admin(&members[&leader]);
        async move {
            c.remove_node(v1::RemoveNodeRequest { node_id: wiped })
                .await
        }
    })
    .await
    .expect("removed");
    let mut last = 0;
    for n in 0..300 {
        last = nodes[&leader]
            .raft
            .client_write(acquire(&format!("s{n}"), "o"))
            .await
            .expect("commits")
            .log_id
            .index;
    }
    let purged = nodes[&leader].raft.metrics().borrow().purged;
    assert!(
        purged.is_some(),
        "the leader purged its log behind a snapshot"
    );

    // Fresh disk, same id: it joins and can only catch up by snapshot.
    let (l, addr) = (
        tokio::net::TcpListener::bind(&members[&wiped])
            .await
            .expect("address free"),
        members[&wiped].clone(),
    );
    let back = start_with(small(wiped, ClusterState::Existing), SimDisk::new(), l).await;
    let add = v1::AddNodeRequest {
        node_id: wiped,
        address: addr,
    };
    retry(|| {
        let (mut c, r) = (admin(&members[&leader]), add.clone());
        async move { c.add_node(r).await }
    })
    .await
    .expect("re-added");
    applied(&back, last).await;
    assert!(
        back.raft.metrics().borrow().snapshot.is_some(),
        "it installed a snapshot"
    );
    applied(&nodes[&leader], last).await;
    same_tables([&back, &nodes[&leader]]).await;
    assert_eq!(back.table.read().table.stats().locks, 300);
}
