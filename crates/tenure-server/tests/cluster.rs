//! A three-node cluster in one process, on loopback TCP, each node on a
//! simulated disk: it forms by itself, replicates, loses its leader, elects
//! another, and the crashed node comes back and catches up with every
//! replica at the same table digest (INV-5).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{WAIT, acquire, applied, config, same_tables, start_with};
use tenure_core::Reply;
use tenure_raft::{NodeId, Proposal, Proposer, QuorumReads, SimDisk};
use tenure_server::{ClusterState, Node};
use tokio::net::TcpListener;

async fn start(
    id: NodeId,
    members: &BTreeMap<NodeId, String>,
    disk: SimDisk,
    listener: TcpListener,
) -> Node {
    start_with(
        config(id, &members[&id], members, ClusterState::New),
        disk,
        listener,
    )
    .await
}

/// Three nodes on loopback, each on its own simulated disk: their
/// addresses and the nodes.
async fn three_nodes() -> (BTreeMap<NodeId, String>, BTreeMap<NodeId, Node>) {
    let mut listeners = BTreeMap::new();
    let mut members = BTreeMap::new();
    for id in 1..=3 {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        members.insert(id, l.local_addr().expect("its address").to_string());
        listeners.insert(id, l);
    }
    let mut nodes = BTreeMap::new();
    for (id, l) in listeners {
        nodes.insert(id, start(id, &members, SimDisk::new(), l).await);
    }
    (members, nodes)
}

/// The leader every node names, once they agree (leadership can still move
/// right after a cluster forms on a loaded machine).
async fn leader_now(nodes: &BTreeMap<NodeId, Node>) -> NodeId {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut seen = BTreeSet::new();
        for n in nodes.values() {
            seen.insert(n.raft.current_leader().await);
        }
        if let [Some(leader)] = seen.into_iter().collect::<Vec<_>>()[..]
            && nodes[&leader].raft.metrics().borrow().state == openraft::ServerState::Leader
        {
            return leader;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the nodes never agreed on a leader"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Every node applies `index` and holds the same table (INV-5).
async fn same_state(nodes: &BTreeMap<NodeId, Node>, index: u64) {
    for node in nodes.values() {
        applied(node, index).await;
    }
    same_tables(nodes.values()).await;
}

/// Writes through `leader`, or, while leadership is still settling, through
/// whichever node leads now.
async fn write(nodes: &BTreeMap<NodeId, Node>, leader: NodeId, p: Proposal) -> u64 {
    let mut via = leader;
    let mut tries = 0;
    let reply = loop {
        match nodes[&via].raft.client_write(p.clone()).await {
            Ok(reply) => break reply,
            Err(e) if tries < 50 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                via = nodes[&via]
                    .raft
                    .current_leader()
                    .await
                    .filter(|l| nodes.contains_key(l))
                    .unwrap_or(via);
                eprintln!("write through {via} after: {e}");
            }
            Err(e) => panic!("no leader commits: {e}"),
        }
    };
    assert!(
        matches!(reply.data[0].result, Ok(Reply::Lease(_))),
        "{:?}",
        reply.data[0].result
    );
    reply.log_id.index
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_repl_003_a_three_node_cluster_forms_replicates_and_survives_its_leader() {
    let mut listeners = BTreeMap::new();
    let mut members = BTreeMap::new();
    for id in 1..=3 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        members.insert(id, l.local_addr().unwrap().to_string());
        listeners.insert(id, l);
    }
    let disks: BTreeMap<NodeId, SimDisk> = (1..=3).map(|id| (id, SimDisk::new())).collect();
    let mut nodes = BTreeMap::new();
    for (id, l) in listeners {
        nodes.insert(id, start(id, &members, disks[&id].clone(), l).await);
    }

    let leader = nodes[&1]
        .wait_for_leader(WAIT)
        .await
        .expect("a leader is elected");
    let index = write(&nodes, leader, acquire("a", "o1")).await;
    same_state(&nodes, index).await;

    // The leader crashes: its unflushed writes are lost, the others elect.
    let old = nodes.remove(&leader).unwrap();
    old.kill().await;
    disks[&leader].crash();
    let survivor = *nodes.keys().next().unwrap();
    let new_leader = nodes[&survivor]
        .raft
        .wait(Some(WAIT))
        .metrics(
            |m| m.current_leader.is_some_and(|l| l != leader),
            "a new leader",
        )
        .await
        .expect("the majority elects a new leader")
        .current_leader
        .unwrap();
    let index = write(&nodes, new_leader, acquire("b", "o2")).await;

    // The crashed node restarts on its disk and catches up.
    let listener = TcpListener::bind(&members[&leader])
        .await
        .expect("the old address is free");
    let back = start(leader, &members, disks[&leader].clone(), listener).await;
    applied(&back, index).await;
    nodes.insert(leader, back);
    same_state(&nodes, index).await;
    assert_eq!(nodes[&leader].table.read().table.stats().active, 2);
    for (_, n) in nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_repl_009_concurrent_commands_share_log_entries_and_each_caller_gets_its_own_answer() {
    let (_, nodes) = three_nodes().await;
    let leader = nodes[&1].wait_for_leader(WAIT).await.expect("a leader");
    // Settle leadership with one write before the burst.
    let first = write(&nodes, leader, acquire("warm-up", "o")).await;
    let leader = leader_now(&nodes).await;
    let raft = nodes[&leader].raft.clone();
    // One entry in flight at a time: the rest of the burst queues behind it.
    let proposer = Proposer::with_limits(raft, 512, 1);

    const N: usize = 64;
    let mut calls = Vec::new();
    for i in 0..N {
        let (proposer, p) = (
            proposer.clone(),
            acquire(&format!("k{i}"), &format!("o{i}")),
        );
        let command = p.commands.into_iter().next().unwrap();
        calls.push(tokio::spawn(
            async move { proposer.propose(0, command).await },
        ));
    }
    let mut entries = BTreeSet::new();
    let mut leases = BTreeSet::new();
    for (i, call) in calls.into_iter().enumerate() {
        let committed = call.await.unwrap().expect("committed");
        entries.insert(committed.log_id.index);
        match committed.applied.result {
            Ok(Reply::Lease(view)) => {
                assert_eq!(
                    &*view.key,
                    format!("k{i}"),
                    "caller {i} got another's answer"
                );
                assert_eq!(&*view.owner, format!("o{i}"));
                leases.insert(view.id);
            }
            other => panic!("caller {i}: {other:?}"),
        }
    }
    assert_eq!(leases.len(), N, "every command has its own lease id");
    assert!(
        entries.len() < N,
        "{N} concurrent commands took {} log entries: no batching",
        entries.len()
    );
    let last = *entries.last().unwrap();
    assert!(last > first);
    same_state(&nodes, last).await;
    assert_eq!(nodes[&leader].table.read().table.stats().active, N + 1);
    for (_, n) in nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_repl_010_waiting_reads_share_a_quorum_round_and_a_follower_confirms_none() {
    let (_, nodes) = three_nodes().await;
    let first = nodes[&1].wait_for_leader(WAIT).await.expect("a leader");
    write(&nodes, first, acquire("warm-up", "o")).await;
    const N: usize = 64;
    // Leadership can move while a young cluster settles on a busy machine:
    // a burst that met a leader change is tried again, as clients would.
    let mut batched = None;
    for _ in 0..3 {
        let leader = leader_now(&nodes).await;
        let reads = QuorumReads::new(nodes[&leader].raft.clone());
        let calls: Vec<_> = (0..N)
            .map(|_| {
                let reads = reads.clone();
                tokio::spawn(async move { reads.confirm().await })
            })
            .collect();
        let mut all = true;
        for call in calls {
            all &= call.await.unwrap().is_ok();
        }
        if all {
            batched = Some((leader, reads.rounds()));
            break;
        }
    }
    let (leader, rounds) = batched.expect("the leader confirms every read");
    assert!(
        rounds < N as u64,
        "{N} waiting reads took {rounds} rounds: no batching"
    );
    // A node that does not lead confirms nothing.
    let follower = *nodes.keys().find(|&&id| id != leader).unwrap();
    let theirs = QuorumReads::new(nodes[&follower].raft.clone());
    assert!(theirs.confirm().await.is_err());
    for (_, n) in nodes {
        n.kill().await;
    }
}

#[test]
fn tn_ops_003_the_deploy_configs_resolve() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy");
    let mut files = vec![std::path::PathBuf::from(format!("{root}/tenure.toml"))];
    for n in [3, 5] {
        for i in 1..=n {
            files.push(format!("{root}/cluster-{n}/node-{i}.toml").into());
        }
    }
    for f in files {
        let config = tenure_server::Settings::from_file(&f)
            .and_then(tenure_server::Settings::resolve)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert!(
            config.initial_cluster.contains_key(&config.id),
            "{}",
            f.display()
        );
    }
    let auth = std::path::PathBuf::from(format!("{root}/auth.example.toml"));
    let auth = tenure_server::auth::Auth::from_file(&auth).expect("the example auth file reads");
    assert!(auth.enforced());
    // The storage cache: 64 MiB by default and in the example; 0 refused.
    let example =
        tenure_server::Settings::from_file(std::path::Path::new(&format!("{root}/tenure.toml")))
            .and_then(tenure_server::Settings::resolve)
            .expect("resolves");
    assert_eq!(example.cache_mb, tenure_server::config::DEFAULT_CACHE_MB);
    let with_cache = |mb| tenure_server::Settings {
        id: Some(1),
        initial_cluster: Some([(1, "127.0.0.1:7001".to_owned())].into()),
        cache_mb: Some(mb),
        ..tenure_server::Settings::default()
    };
    assert_eq!(with_cache(1).resolve().map(|c| c.cache_mb).ok(), Some(1));
    assert!(with_cache(0).resolve().is_err(), "a zero cache is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_ops_002_leadership_moves_to_the_voter_asked_for_and_writes_go_on() {
    let (members, nodes) = three_nodes().await;
    let first = nodes[&1].wait_for_leader(WAIT).await.expect("a leader");
    write(&nodes, first, acquire("a", "o")).await;
    for target in (1..=3).filter(|id| *id != first) {
        let reply = common::retry(|| {
            let mut c = common::admin(&members[&first]);
            async move {
                c.transfer_leader(tenure_proto::v1::TransferLeaderRequest { node_id: target })
                    .await
            }
        })
        .await
        .expect("the transfer succeeds");
        assert_eq!(reply.leader_id, target);
        let seen = nodes[&first]
            .raft
            .wait(Some(WAIT))
            .metrics(
                |m| m.current_leader == Some(target),
                "the old leader follows",
            )
            .await
            .expect("the old leader sees the new one");
        assert!(seen.current_term >= reply.term);
        write(&nodes, target, acquire(&format!("after-{target}"), "o")).await;
        // Back to the first leader, through a follower (forwarded).
        let back = common::retry(|| {
            let mut c = common::admin(&members[&first]);
            async move {
                c.transfer_leader(tenure_proto::v1::TransferLeaderRequest { node_id: first })
                    .await
            }
        })
        .await
        .expect("the transfer back succeeds");
        assert_eq!(back.leader_id, first);
    }
    let refused = common::admin(&members[&first])
        .transfer_leader(tenure_proto::v1::TransferLeaderRequest { node_id: 9 })
        .await
        .expect_err("not a voter");
    assert_eq!(
        tenure_proto::convert::reason_of(&refused),
        Some(tenure_core::Reason::InvalidRequest)
    );
    for (_, n) in nodes {
        n.kill().await;
    }
}

/// A TCP connector that counts the channels it makes, by address.
#[derive(Clone, Default)]
struct Counting {
    made: std::sync::Arc<std::sync::Mutex<BTreeMap<String, u64>>>,
}

impl tenure_raft::Connector for Counting {
    fn channel(&self, addr: &str) -> Result<tonic::transport::Channel, tonic::transport::Error> {
        *self
            .made
            .lock()
            .expect("not poisoned")
            .entry(addr.to_owned())
            .or_default() += 1;
        tenure_raft::TcpConnector::default().channel(addr)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_ops_006_a_follower_forwards_over_one_channel_per_leader_not_one_per_call() {
    let mut listeners = BTreeMap::new();
    let mut members = BTreeMap::new();
    for id in 1..=3 {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        members.insert(id, l.local_addr().expect("its address").to_string());
        listeners.insert(id, l);
    }
    let mut nodes = BTreeMap::new();
    let mut counters = BTreeMap::new();
    for (id, l) in listeners {
        let counting = Counting::default();
        counters.insert(id, counting.clone());
        let node = Node::start(
            config(id, &members[&id], &members, ClusterState::New),
            SimDisk::new(),
            counting,
            tokio_stream::wrappers::TcpListenerStream::new(l),
            std::future::pending::<()>(),
        )
        .await
        .expect("node starts");
        nodes.insert(id, node);
    }
    let leader = leader_now(&nodes).await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let mut lock = tenure_proto::v1::lock_client::LockClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{}", members[&follower]))
            .expect("uri")
            .connect_lazy(),
    );
    let made = |id: NodeId| -> u64 {
        counters[&id]
            .made
            .lock()
            .expect("not poisoned")
            .get(&members[&leader])
            .copied()
            .unwrap_or(0)
    };
    let mut forwarded = 0;
    let before = made(follower);
    for n in 0..40 {
        let mut r = tonic::Request::new(tenure_proto::v1::AcquireRequest {
            tenant_id: "t".into(),
            lock_key: format!("fwd-{n}"),
            owner_id: String::new(),
            request_id: format!("fwd-{n}"),
            ttl_ms: 10_000,
            wait_timeout_ms: 0,
            ..Default::default()
        });
        r.metadata_mut()
            .insert("x-owner-id", "o".parse().expect("ascii"));
        if lock.acquire(r).await.is_ok() {
            forwarded += 1;
        }
    }
    assert!(
        forwarded >= 30,
        "only {forwarded} of 40 forwarded calls answered"
    );
    let opened = made(follower) - before;
    assert!(
        opened <= 1,
        "{opened} channels to the leader for {forwarded} forwarded calls"
    );
    for (_, n) in nodes {
        n.kill().await;
    }
}
