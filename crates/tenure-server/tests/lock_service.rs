//! The Lock service over gRPC against a 3-node loopback cluster: the
//! reference's acceptance cases, FIFO waiting, keep-alive and watch, with
//! calls spread over every node (followers forward to the leader).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{config, listener, start_with};
use tenure_core::{Command, Reason, TableConfig};
use tenure_proto::convert::reason_of;
use tenure_proto::v1;
use tenure_proto::v1::lock_client::LockClient;
use tenure_raft::{NodeId, Proposal, SimDisk};
use tenure_server::{ClusterState, Node};
use tokio_stream::StreamExt;

struct Cluster {
    nodes: BTreeMap<NodeId, Node>,
    addrs: BTreeMap<NodeId, String>,
}

async fn cluster() -> Cluster {
    let mut addrs = BTreeMap::new();
    let mut listeners = BTreeMap::new();
    for id in 1..=3 {
        let (l, addr) = listener().await;
        addrs.insert(id, addr);
        listeners.insert(id, l);
    }
    let mut nodes = BTreeMap::new();
    for (id, l) in listeners {
        nodes.insert(
            id,
            start_with(
                config(id, &addrs[&id], &addrs, ClusterState::New),
                SimDisk::new(),
                l,
            )
            .await,
        );
    }
    // Short TTLs for the tests, through the log like any configuration.
    let leader = loop {
        if let Some((id, _)) = nodes.iter().find(|(_, n)| n.timers.active()) {
            break *id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let short = TableConfig {
        min_ttl_ms: 100,
        ..TableConfig::default()
    };
    let mut via = leader;
    for _ in 0..100 {
        let configure = Proposal::one(0, Command::Configure(short.clone()));
        match nodes[&via].raft.client_write(configure).await {
            Ok(_) => break,
            Err(_) => {
                // Leadership was still settling: ask whoever leads now.
                tokio::time::sleep(Duration::from_millis(50)).await;
                via = nodes[&via].raft.current_leader().await.unwrap_or(via);
            }
        }
    }
    // Every node knows the leader in office before the tests start.
    for _ in 0..200 {
        let leaders: Vec<Option<NodeId>> = nodes
            .values()
            .map(|n| n.raft.metrics().borrow().current_leader)
            .collect();
        let agreed = leaders.windows(2).all(|w| w[0] == w[1]) && leaders[0].is_some();
        if agreed && nodes.values().any(|n| n.timers.active()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Cluster { nodes, addrs }
}

fn client(addr: &str) -> LockClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .timeout(Duration::from_secs(10))
        .connect_lazy();
    LockClient::new(channel)
}

fn as_owner<T>(owner: &str, body: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(body);
    r.metadata_mut()
        .insert("x-owner-id", owner.parse().expect("ascii"));
    r
}

/// As `owner`, claiming the admin role of a development node.
fn as_admin<T>(owner: &str, body: T) -> tonic::Request<T> {
    let mut r = as_owner(owner, body);
    r.metadata_mut()
        .insert("x-role", "ADMIN".parse().expect("ascii"));
    r
}

fn acquire(key: &str, rid: &str, ttl_ms: u64, wait_timeout_ms: u64) -> v1::AcquireRequest {
    v1::AcquireRequest {
        tenant_id: "t".into(),
        lock_key: key.into(),
        owner_id: String::new(),
        request_id: rid.into(),
        ttl_ms,
        wait_timeout_ms,
        ..Default::default()
    }
}

fn reason(s: &tonic::Status) -> Option<Reason> {
    reason_of(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_acc_01_ten_concurrent_clients_over_every_node_one_wins() {
    let c = cluster().await;
    let addrs: Vec<String> = c.addrs.values().cloned().collect();
    let mut calls = Vec::new();
    for i in 0..10 {
        let addr = addrs[i % addrs.len()].clone();
        calls.push(tokio::spawn(async move {
            client(&addr)
                .acquire(as_owner(
                    &format!("owner-{i}"),
                    acquire("job", &format!("r{i}"), 10_000, 0),
                ))
                .await
        }));
    }
    let mut wins = 0;
    let mut held = 0;
    for call in calls {
        match call.await.expect("joined") {
            Ok(r) => {
                assert!(
                    r.metadata().get("tenure-leader").is_some(),
                    "answers name the leader"
                );
                wins += 1;
            }
            Err(s) if reason(&s) == Some(Reason::LockHeld) => held += 1,
            Err(s) => panic!("unexpected refusal {s:?}"),
        }
    }
    assert_eq!((wins, held), (1, 9));
    for (_, n) in c.nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_acc_02_to_04_over_grpc() {
    let c = cluster().await;
    let mut a = client(&c.addrs[&1]);
    let mut b = client(&c.addrs[&2]);
    // ACC-02: B renews A's lease: OWNER_MISMATCH; after the TTL, A's release: LEASE_EXPIRED.
    let lease = a
        .acquire(as_owner("A", acquire("k2", "a1", 300, 0)))
        .await
        .expect("granted")
        .into_inner();
    let renew = v1::RenewRequest {
        tenant_id: "t".into(),
        lease_id: lease.lease_id.clone(),
        owner_id: String::new(),
        request_id: "b1".into(),
        ttl_ms: 0,
    };
    let refused = b.renew(as_owner("B", renew)).await.expect_err("not B's");
    assert_eq!(reason(&refused), Some(Reason::OwnerMismatch));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let release = v1::ReleaseRequest {
        tenant_id: "t".into(),
        lease_id: lease.lease_id.clone(),
        owner_id: String::new(),
        request_id: "a2".into(),
    };
    let expired = a
        .release(as_owner("A", release))
        .await
        .expect_err("expired");
    assert_eq!(reason(&expired), Some(Reason::LeaseExpired));

    // ACC-03 and ACC-04: tokens +1; the same acquire and release twice.
    let first = a
        .acquire(as_owner("A", acquire("k3", "a3", 10_000, 0)))
        .await
        .unwrap()
        .into_inner();
    let again = b
        .acquire(as_owner("A", acquire("k3", "a3", 10_000, 0)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (first.lease_id.clone(), first.fencing_token),
        (again.lease_id.clone(), again.fencing_token)
    );
    let rel = v1::ReleaseRequest {
        tenant_id: "t".into(),
        lease_id: first.lease_id.clone(),
        owner_id: String::new(),
        request_id: "a4".into(),
    };
    let r1 = a
        .release(as_owner("A", rel.clone()))
        .await
        .unwrap()
        .into_inner();
    let r2 = b.release(as_owner("A", rel)).await.unwrap().into_inner();
    assert_eq!(r1, r2);
    let second = b
        .acquire(as_owner("B", acquire("k3", "b3", 10_000, 0)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.fencing_token, first.fencing_token + 1);
    // Get, linearizable through a follower.
    let get = v1::GetRequest {
        tenant_id: "t".into(),
        lock_key: "k3".into(),
        consistency: 0,
    };
    let state = client(&c.addrs[&3]).get(get).await.unwrap().into_inner();
    assert!(state.held);
    assert_eq!(state.active_lease.unwrap().lease_id, second.lease_id);
    for (_, n) in c.nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_wait_005_and_tn_ka_002_waiters_are_granted_in_order_and_keep_alive_reports_loss() {
    let c = cluster().await;
    let mut h = client(&c.addrs[&1]);
    let holder = h
        .acquire(as_owner("h", acquire("q", "h1", 10_000, 0)))
        .await
        .unwrap()
        .into_inner();
    let mut waiters = Vec::new();
    for i in 0..5 {
        let addr = c.addrs[&(1 + (i % 3))].clone();
        waiters.push(tokio::spawn(async move {
            client(&addr)
                .acquire(as_owner(
                    &format!("w{i}"),
                    acquire("q", "w", 10_000, 20_000),
                ))
                .await
        }));
        // Arrival order is log order: give each a moment to queue.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let rel = v1::ReleaseRequest {
        tenant_id: "t".into(),
        lease_id: holder.lease_id.clone(),
        owner_id: String::new(),
        request_id: "h2".into(),
    };
    h.release(as_owner("h", rel)).await.unwrap();
    let mut tokens = Vec::new();
    for (i, w) in waiters.into_iter().enumerate() {
        let granted = w
            .await
            .expect("joined")
            .expect("granted in turn")
            .into_inner();
        tokens.push(granted.fencing_token);
        let rel = v1::ReleaseRequest {
            tenant_id: "t".into(),
            lease_id: granted.lease_id,
            owner_id: String::new(),
            request_id: format!("w{i}-rel"),
        };
        client(&c.addrs[&1])
            .release(as_owner(&format!("w{i}"), rel))
            .await
            .unwrap();
    }
    assert_eq!(tokens, vec![2, 3, 4, 5, 6], "granted in arrival order");

    // KeepAlive: one stream keeps a short lease alive, then reports its loss.
    let leader = c
        .nodes
        .iter()
        .find(|(_, n)| n.timers.active())
        .map(|(id, _)| *id)
        .expect("a leader");
    let mut k = client(&c.addrs[&leader]);
    let lease = k
        .acquire(as_owner("ka", acquire("ka", "ka1", 300, 0)))
        .await
        .unwrap()
        .into_inner();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let mut answers = k
        .keep_alive(as_owner(
            "ka",
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
        .await
        .expect("stream opens")
        .into_inner();
    for seq in 0..8 {
        tx.send(v1::KeepAliveRequest {
            tenant_id: "t".into(),
            lease_id: lease.lease_id.clone(),
            owner_id: String::new(),
            client_seq: seq,
        })
        .await
        .unwrap();
        let a = answers.next().await.expect("an answer").expect("ok");
        assert!(a.alive, "kept alive: {a:?}");
        assert_eq!(a.client_seq, seq);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    drop(tx);
    let lost = tokio::time::timeout(Duration::from_secs(10), answers.next())
        .await
        .expect("told")
        .expect("an answer")
        .expect("ok");
    assert!(!lost.alive);
    assert_eq!(lost.reason, "LEASE_EXPIRED");
    for (_, n) in c.nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_ops_004_health_and_reflection_serve_generic_grpc_tools() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let c = cluster().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", c.addrs[&2]))
        .expect("uri")
        .connect_lazy();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "tenure.v1.Lock", "tenure.v1.Admin"] {
        let check = tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        };
        let status = health
            .check(check)
            .await
            .expect("health answers")
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
    }
    let ask = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([ask]))
        .await
        .expect("reflection answers")
        .into_inner();
    let Some(Ok(answer)) = answers.next().await else {
        panic!("no reflection answer")
    };
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("not a service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for wanted in ["tenure.v1.Lock", "tenure.v1.Admin"] {
        assert!(
            names.iter().any(|n| n == wanted),
            "{wanted} missing from {names:?}"
        );
    }
    // The same over v1alpha, which Python's grpcio-reflection, Postman,
    // grpcui and older grpcurl speak.
    {
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", c.addrs[&2]))
            .expect("uri")
            .connect_lazy();
        let ask = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = ServerReflectionClient::new(channel)
            .server_reflection_info(tokio_stream::iter([ask]))
            .await
            .expect("v1alpha reflection answers")
            .into_inner();
        let Some(Ok(answer)) = answers.next().await else {
            panic!("no v1alpha reflection answer")
        };
        let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
            panic!("not a service list")
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(
            names.iter().any(|n| n == "tenure.v1.Lock"),
            "tenure.v1.Lock missing from {names:?} (v1alpha)"
        );
    }
    for (_, n) in c.nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_wait_003_tn_wait_006_twenty_waiters_in_order_skipping_one_that_left_with_a_short_ttl_kept_alive_by_its_open_call()
 {
    let c = cluster().await;
    let addrs: Vec<String> = c.addrs.values().cloned().collect();
    let mut h = client(&addrs[0]);
    let holder = h
        .acquire(as_owner("h", acquire("fifo", "h1", 60_000, 0)))
        .await
        .unwrap()
        .into_inner();
    let (left, short) = (4usize, 9usize);
    let mut waiters = Vec::new();
    for i in 0..20usize {
        let addr = addrs[i % addrs.len()].clone();
        // Waiter 9 asks for a TTL far shorter than its wait: its open call
        // keeps its WAITING lease alive (TN-WAIT-006).
        let ttl = if i == short { 300 } else { 60_000 };
        waiters.push(tokio::spawn(async move {
            client(&addr)
                .acquire(as_owner(
                    &format!("w{i}"),
                    acquire("fifo", "w", ttl, 60_000),
                ))
                .await
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Waiter 4 goes away: its call is dropped, so it leaves the queue.
    waiters[left].abort();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let rel = v1::ReleaseRequest {
        tenant_id: "t".into(),
        lease_id: holder.lease_id,
        owner_id: String::new(),
        request_id: "h2".into(),
    };
    h.release(as_owner("h", rel)).await.unwrap();
    let mut granted = Vec::new();
    for (i, w) in waiters.into_iter().enumerate() {
        if i == left {
            continue;
        }
        match w.await.expect("joined") {
            Ok(lease) => {
                let lease = lease.into_inner();
                granted.push(i);
                let rel = v1::ReleaseRequest {
                    tenant_id: "t".into(),
                    lease_id: lease.lease_id,
                    owner_id: String::new(),
                    request_id: format!("w{i}-rel"),
                };
                client(&addrs[0])
                    .release(as_owner(&format!("w{i}"), rel))
                    .await
                    .unwrap();
            }
            Err(s) => panic!("waiter {i} was refused: {s:?}"),
        }
    }
    let expected: Vec<usize> = (0..20).filter(|i| *i != left).collect();
    assert_eq!(
        granted, expected,
        "granted in arrival order, skipping the one that left"
    );
    let state = client(&addrs[1])
        .get(v1::GetRequest {
            tenant_id: "t".into(),
            lock_key: "fifo".into(),
            consistency: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        state.last_fencing_token,
        1 + expected.len() as u64,
        "no token went to the two"
    );
    for (_, n) in c.nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_val_004_bad_input_over_grpc_is_refused_with_its_reason_and_changes_nothing() {
    let c = cluster().await;
    let mut l = client(&c.addrs[&2]);
    let lease = l
        .acquire(as_owner("a", acquire("k", "a1", 10_000, 0)))
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let digests = |c: &Cluster| {
        c.nodes
            .values()
            .map(|n| n.table.read().table.digest_hex())
            .collect::<Vec<_>>()
    };
    let before = digests(&c);
    let bad = |f: fn(&mut v1::AcquireRequest)| {
        let mut r = acquire("k2", "x", 10_000, 0);
        f(&mut r);
        r
    };
    let long = "k".repeat(300);
    let acquires: Vec<(v1::AcquireRequest, Reason)> = vec![
        (bad(|r| r.tenant_id.clear()), Reason::InvalidRequest),
        (bad(|r| r.lock_key.clear()), Reason::InvalidRequest),
        (
            v1::AcquireRequest {
                lock_key: long.clone(),
                ..acquire("k2", "x", 10_000, 0)
            },
            Reason::InvalidRequest,
        ),
        (
            bad(|r| r.lock_key = "has space".into()),
            Reason::InvalidRequest,
        ),
        (bad(|r| r.request_id.clear()), Reason::InvalidRequest),
        (bad(|r| r.ttl_ms = 0), Reason::InvalidTtl),
        (bad(|r| r.ttl_ms = u64::MAX), Reason::InvalidTtl),
        (
            bad(|r| r.wait_timeout_ms = u64::MAX),
            Reason::InvalidRequest,
        ),
        (
            bad(|r| r.owner_id = "someone-else".into()),
            Reason::OwnerTokenMismatch,
        ),
    ];
    for (request, want) in acquires {
        let got = l
            .acquire(as_owner("a", request.clone()))
            .await
            .expect_err("refused");
        assert_eq!(reason(&got), Some(want), "{request:?}");
    }
    let anonymous = l
        .acquire(tonic::Request::new(acquire("k2", "x", 10_000, 0)))
        .await
        .expect_err("refused");
    assert_eq!(reason(&anonymous), Some(Reason::OwnerTokenRequired));
    let renew = |lease_id: &str, ttl_ms| v1::RenewRequest {
        tenant_id: "t".into(),
        lease_id: lease_id.into(),
        owner_id: String::new(),
        request_id: "n".into(),
        ttl_ms,
    };
    assert_eq!(
        reason(
            &l.renew(as_owner("a", renew("zz", 0)))
                .await
                .expect_err("bad id")
        ),
        Some(Reason::InvalidRequest)
    );
    assert_eq!(
        reason(
            &l.renew(as_owner("a", renew(&lease.lease_id, 5)))
                .await
                .expect_err("ttl")
        ),
        Some(Reason::InvalidTtl)
    );
    let release = |lease_id: &str, rid: &str| v1::ReleaseRequest {
        tenant_id: "t".into(),
        lease_id: lease_id.into(),
        owner_id: String::new(),
        request_id: rid.into(),
    };
    assert_eq!(
        reason(
            &l.release(as_owner("a", release("", "r")))
                .await
                .expect_err("no id")
        ),
        Some(Reason::InvalidRequest)
    );
    assert_eq!(
        reason(
            &l.release(as_owner("a", release(&lease.lease_id, "")))
                .await
                .expect_err("no rid")
        ),
        Some(Reason::InvalidRequest)
    );
    let get = |tenant: &str, key: &str| v1::GetRequest {
        tenant_id: tenant.into(),
        lock_key: key.into(),
        consistency: 0,
    };
    assert_eq!(
        reason(&l.get(get("", "k")).await.expect_err("no tenant")),
        Some(Reason::InvalidRequest)
    );
    assert_eq!(
        reason(&l.get(get("t", &long)).await.expect_err("long key")),
        Some(Reason::InvalidRequest)
    );
    let list = v1::ListRequest {
        tenant_id: "t".into(),
        key_prefix: String::new(),
        page_size: 10,
        page_token: "zz".into(),
        consistency: 0,
    };
    assert_eq!(
        reason(&l.list(list).await.expect_err("bad token")),
        Some(Reason::InvalidRequest)
    );
    let force = v1::ForceReleaseRequest {
        tenant_id: "t".into(),
        lock_key: "k".into(),
        reason: String::new(),
        lease_id: String::new(),
    };
    let mut admin = tenure_proto::v1::admin_client::AdminClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{}", c.addrs[&1]))
            .unwrap()
            .connect_lazy(),
    );
    assert_eq!(
        reason(
            &admin
                .force_release(as_admin("ops", force))
                .await
                .expect_err("no reason")
        ),
        Some(Reason::InvalidRequest)
    );
    let watch = v1::WatchRequest {
        tenant_id: "t".into(),
        key_prefix: "has space".into(),
        from_sequence: 0,
        include_all_tenants: false,
    };
    let Err(refused) = l.watch(watch).await else {
        panic!("a bad prefix was accepted")
    };
    assert_eq!(reason(&refused), Some(Reason::InvalidRequest));
    let added = admin
        .add_node(as_admin(
            "ops",
            v1::AddNodeRequest {
                node_id: 0,
                address: String::new(),
            },
        ))
        .await;
    assert_eq!(
        reason(&added.expect_err("no node")),
        Some(Reason::InvalidRequest)
    );
    let removed = admin
        .remove_node(as_admin("ops", v1::RemoveNodeRequest { node_id: 42 }))
        .await;
    assert_eq!(
        reason(&removed.expect_err("not a member")),
        Some(Reason::InvalidRequest)
    );
    // A keep-alive of a malformed lease id is answered, in-band, as invalid.
    let leader = c
        .nodes
        .iter()
        .find(|(_, n)| n.timers.active())
        .map(|(id, _)| *id)
        .expect("a leader");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut answers = client(&c.addrs[&leader])
        .keep_alive(as_owner(
            "a",
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
        .await
        .expect("stream")
        .into_inner();
    let bad_id = v1::KeepAliveRequest {
        tenant_id: "t".into(),
        lease_id: "zz".into(),
        owner_id: String::new(),
        client_seq: 1,
    };
    tx.send(bad_id).await.unwrap();
    let answer = answers.next().await.expect("an answer").expect("ok");
    assert!(!answer.alive);
    assert_eq!(answer.reason, "INVALID_REQUEST");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        digests(&c),
        before,
        "no refusal of bad input reached the table"
    );

    // The wrong tenant or owner: refused by the table, the lock untouched.
    let state = |l: &mut LockClient<tonic::transport::Channel>| {
        let mut l = l.clone();
        async move { l.get(get("t", "k")).await.unwrap().into_inner() }
    };
    let held = state(&mut l).await;
    let other_tenant = v1::ReleaseRequest {
        tenant_id: "u".into(),
        ..release(&lease.lease_id, "x1")
    };
    assert_eq!(
        reason(
            &l.release(as_owner("a", other_tenant))
                .await
                .expect_err("other tenant")
        ),
        Some(Reason::LeaseNotFound)
    );
    assert_eq!(
        reason(
            &l.renew(as_owner("b", renew(&lease.lease_id, 0)))
                .await
                .expect_err("not b's")
        ),
        Some(Reason::OwnerMismatch)
    );
    assert_eq!(
        reason(
            &l.release(as_owner("b", release(&lease.lease_id, "x2")))
                .await
                .expect_err("not b's")
        ),
        Some(Reason::OwnerMismatch)
    );
    let after = state(&mut l).await;
    assert_eq!(
        after.active_lease.map(|x| (x.lease_id, x.version)),
        held.active_lease.map(|x| (x.lease_id, x.version))
    );
    for (_, n) in c.nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_rate_001_a_caller_over_its_rate_is_told_to_retry_later() {
    let (l, addr) = listener().await;
    let members = BTreeMap::from([(1, addr.clone())]);
    let mut c = config(1, &addr, &members, ClusterState::New);
    c.rate_limit = 5;
    let node = start_with(c, SimDisk::new(), l).await;
    node.wait_for_leader(common::WAIT).await.expect("a leader");
    let mut lock = client(&addr);
    let get = || {
        as_owner(
            "busy",
            v1::GetRequest {
                tenant_id: "t".into(),
                lock_key: "k".into(),
                consistency: 1,
            },
        )
    };
    let mut limited = 0;
    for _ in 0..20 {
        if let Err(s) = lock.get(get()).await {
            assert_eq!(reason(&s), Some(Reason::RateLimited));
            assert!(Reason::RateLimited.is_retryable());
            limited += 1;
        }
    }
    assert!(limited >= 10, "only {limited} of 20 calls limited at 5/s");
    // Another caller has its own allowance.
    let other = as_owner(
        "calm",
        v1::GetRequest {
            tenant_id: "t".into(),
            lock_key: "k".into(),
            consistency: 1,
        },
    );
    assert!(lock.get(other).await.is_ok());
    node.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_auth_008_a_development_node_grants_admin_only_to_a_caller_that_claims_it() {
    let c = cluster().await;
    let mut l = client(&c.addrs[&1]);
    let held = l
        .acquire(as_owner("a", acquire("k", "dev1", 10_000, 0)))
        .await
        .expect("a writer without any claim")
        .into_inner();
    let admin = |addr: &str| {
        tenure_proto::v1::admin_client::AdminClient::new(
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .expect("uri")
                .timeout(Duration::from_secs(10))
                .connect_lazy(),
        )
    };
    let force = v1::ForceReleaseRequest {
        tenant_id: "t".into(),
        lock_key: "k".into(),
        reason: "test".into(),
        lease_id: String::new(),
    };
    // Every node, without the claim (or with another role): FORBIDDEN, the
    // lock still held; every admin call alike.
    for addr in c.addrs.values() {
        let mut a = admin(addr);
        let refused = a
            .force_release(as_owner("a", force.clone()))
            .await
            .expect_err("no claim");
        assert_eq!(reason(&refused), Some(Reason::Forbidden), "{refused:?}");
        let mut other = as_owner("a", force.clone());
        other
            .metadata_mut()
            .insert("x-role", "USER".parse().expect("ascii"));
        assert_eq!(
            reason(&a.force_release(other).await.expect_err("not admin")),
            Some(Reason::Forbidden)
        );
        let moved = a
            .transfer_leader(as_owner("a", v1::TransferLeaderRequest { node_id: 2 }))
            .await;
        assert_eq!(
            reason(&moved.expect_err("no claim")),
            Some(Reason::Forbidden)
        );
        let configure = a
            .configure(as_owner("a", v1::ConfigureRequest::default()))
            .await;
        assert_eq!(
            reason(&configure.expect_err("no claim")),
            Some(Reason::Forbidden)
        );
        let export = a
            .export_snapshot(as_owner("a", v1::ExportSnapshotRequest {}))
            .await;
        assert_eq!(
            reason(&export.expect_err("no claim")),
            Some(Reason::Forbidden)
        );
        // Status is anyone's.
        a.status(as_owner("a", v1::StatusRequest {}))
            .await
            .expect("status needs no role");
    }
    let state = l
        .get(as_owner(
            "a",
            v1::GetRequest {
                tenant_id: "t".into(),
                lock_key: "k".into(),
                consistency: 0,
            },
        ))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        state.active_lease.map(|x| x.lease_id),
        Some(held.lease_id.clone()),
        "nothing changed"
    );
    // The claim with a malformed caller: refused, not taken for "admin".
    let mut malformed = as_admin("ops", force.clone());
    malformed
        .metadata_mut()
        .insert("x-owner-id", "IOK,Q?".parse().expect("ascii"));
    assert_eq!(
        reason(
            &admin(&c.addrs[&1])
                .force_release(malformed)
                .await
                .expect_err("a malformed caller")
        ),
        Some(Reason::InvalidRequest)
    );
    // The claim, in any case, through a follower: granted.
    let follower = c
        .nodes
        .iter()
        .find(|(_, n)| !n.timers.active())
        .map(|(id, _)| *id)
        .expect("a follower");
    let mut claimed = as_owner("ops", force);
    claimed
        .metadata_mut()
        .insert("x-role", "admin".parse().expect("ascii"));
    let freed = admin(&c.addrs[&follower])
        .force_release(claimed)
        .await
        .expect("an admin by claim")
        .into_inner();
    assert!(!freed.held);
    for (_, n) in c.nodes {
        n.kill().await;
    }
}
