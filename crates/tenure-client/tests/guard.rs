//! The client against a 3-node loopback cluster: guards with fencing tokens
//! stay valid through keep-alive (and through a leader change), learn at
//! once when they are lost, and release on drop.

use std::collections::BTreeMap;
use std::time::Duration;

use tenure_client::{AcquireOptions, Client, ClientConfig, Reason, WatchOptions};
use tenure_core::{Command, TableConfig};
use tenure_raft::{NodeId, Proposal, SimDisk, TcpConnector};
use tenure_server::{ClusterState, Node, NodeConfig};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

struct Cluster {
    nodes: BTreeMap<NodeId, Node>,
    addrs: Vec<String>,
}

async fn cluster() -> Cluster {
    cluster_with(None).await
}

async fn cluster_with(auth_file: Option<std::path::PathBuf>) -> Cluster {
    let mut members = BTreeMap::new();
    let mut listeners = BTreeMap::new();
    for id in 1..=3u64 {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("port");
        members.insert(id, l.local_addr().expect("addr").to_string());
        listeners.insert(id, l);
    }
    let mut nodes = BTreeMap::new();
    for (id, l) in listeners {
        let config = NodeConfig {
            id,
            listen: members[&id].clone(),
            advertise: members[&id].clone(),
            data_dir: "unused".into(),
            initial_cluster: members.clone(),
            initial_cluster_state: ClusterState::New,
            heartbeat_ms: 100,
            election_min_ms: 800,
            election_max_ms: 1_600,
            snapshot_every: 10_000,
            keep_after_snapshot: 100,
            auth_file: auth_file.clone(),
            rate_limit: 0,
            cache_mb: 64,
            audit_retention: tenure_raft::AuditRetention::default(),
            tls: None,
            http_listen: None,
            table: tenure_core::TableConfig::default(),
        };
        let node = Node::start(
            config,
            SimDisk::new(),
            TcpConnector::default(),
            TcpListenerStream::new(l),
            std::future::pending::<()>(),
        )
        .await
        .expect("node");
        nodes.insert(id, node);
    }
    // Short TTLs for the tests, through whichever node leads (retrying
    // while leadership settles: tests share two cores).
    let short = TableConfig {
        min_ttl_ms: 100,
        ..TableConfig::default()
    };
    let mut configured = false;
    for _ in 0..200 {
        if let Some((_, n)) = nodes.iter().find(|(_, n)| n.timers.active()) {
            let p = Proposal::one(0, Command::Configure(short.clone()));
            if n.raft.client_write(p).await.is_ok() {
                configured = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(configured, "no leader took the configuration");
    Cluster {
        nodes,
        addrs: members.values().cloned().collect(),
    }
}

async fn client(c: &Cluster, owner: &str) -> Client {
    Client::connect(ClientConfig::new(c.addrs.clone(), "t", owner))
        .await
        .expect("connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_client_001_a_guard_is_kept_alive_refuses_others_and_releases_on_drop() {
    let c = cluster().await;
    let alice = client(&c, "alice").await;
    let bob = client(&c, "bob").await;
    let guard = alice
        .acquire("k", Duration::from_millis(400))
        .await
        .expect("granted");
    assert_eq!(guard.fencing_token(), 1);
    assert!(guard.is_valid());
    let held = bob
        .acquire("k", Duration::from_millis(400))
        .await
        .err()
        .expect("held");
    assert_eq!(held.reason(), Reason::LockHeld);
    // Four TTLs later the guard is still valid: the keep-alive stream renews.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    assert!(guard.is_valid(), "kept alive");
    assert!(guard.deadline() > tokio::time::Instant::now());
    drop(guard);
    // Dropped: released; bob gets the next token.
    let mut next = None;
    for _ in 0..50 {
        if let Ok(g) = bob.acquire("k", Duration::from_millis(400)).await {
            next = Some(g);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let next = next.expect("released on drop");
    assert_eq!(next.fencing_token(), 2);
    next.release().await.expect("released");
    for (_, n) in c.nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_client_002_a_guard_learns_at_once_that_it_was_lost() {
    let c = cluster().await;
    let alice = client(&c, "alice").await;
    let guard = alice
        .acquire("k", Duration::from_secs(10))
        .await
        .expect("granted");
    // Let the keep-alive stream take the lease on.
    tokio::time::sleep(Duration::from_millis(4_000)).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", c.addrs[0]))
        .unwrap()
        .connect_lazy();
    let mut force = tonic::Request::new(tenure_proto::v1::ForceReleaseRequest {
        tenant_id: "t".into(),
        lock_key: "k".into(),
        reason: "test".into(),
        lease_id: String::new(),
    });
    force
        .metadata_mut()
        .insert("x-owner-id", "ops".parse().unwrap());
    force
        .metadata_mut()
        .insert("x-role", "ADMIN".parse().unwrap());
    tenure_proto::v1::admin_client::AdminClient::new(channel)
        .force_release(force)
        .await
        .expect("forced");
    tokio::time::timeout(Duration::from_secs(5), guard.lost())
        .await
        .expect("told well before the 10 s deadline");
    assert!(!guard.is_valid());
    for (_, n) in c.nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_client_003_a_guard_survives_a_change_of_leader() {
    let mut c = cluster().await;
    let alice = client(&c, "alice").await;
    let guard = alice
        .acquire("k", Duration::from_millis(2_000))
        .await
        .expect("granted");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let leader = c
        .nodes
        .iter()
        .find(|(_, n)| n.timers.active())
        .map(|(id, _)| *id)
        .expect("a leader");
    c.nodes.remove(&leader).expect("leader").kill().await;
    // Longer than the TTL: the stream follows the new leader and renews.
    tokio::time::sleep(Duration::from_millis(5_000)).await;
    assert!(
        guard.is_valid(),
        "the guard outlived its TTL across the failover"
    );
    let state = alice.get("k").await.expect("readable");
    assert_eq!(
        state.view.active.map(|l| l.id.to_string()),
        Some(guard.lease_id().to_owned())
    );
    for (_, n) in c.nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_client_005_a_client_with_a_bearer_token_takes_locks_as_its_principal() {
    let dir = std::env::temp_dir().join(format!("tenure-client-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let file = dir.join("auth.toml");
    let hash = tenure_server::auth::hash_token("s3cret").expect("hashed");
    std::fs::write(
        &file,
        format!(
            "[[principal]]\nname = \"svc\"\ntoken_hash = \"{hash}\"\nroles = [\"writer\", \"reader\"]\ntenants = [\"t\"]\n"
        ),
    )
    .expect("written");
    let c = cluster_with(Some(file)).await;
    let config = ClientConfig::new(c.addrs.clone(), "t", "ignored").with_token("s3cret");
    let svc = Client::connect(config).await.expect("connects");
    let guard = svc
        .acquire("k", Duration::from_millis(600))
        .await
        .expect("granted");
    assert_eq!(
        guard.lease().view.owner.as_ref(),
        "svc",
        "the principal owns it"
    );
    // Kept alive with the token too: past three TTLs, still held.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert!(guard.is_valid(), "kept alive");
    let state = svc.get("k").await.expect("readable with the token");
    assert_eq!(
        state.view.active.map(|l| l.id.to_string()),
        Some(guard.lease_id().to_owned())
    );
    // Without a token, or with a wrong one: refused, and clearly.
    for token in [None, Some("wrong")] {
        let mut config = ClientConfig::new(c.addrs.clone(), "t", "svc");
        config.token = token.map(str::to_owned);
        let other = Client::connect(config).await.expect("connects");
        let refused = other
            .acquire("k2", Duration::from_millis(600))
            .await
            .err()
            .expect("refused");
        assert_eq!(refused.reason(), Reason::OwnerTokenRequired, "{refused}");
    }
    // Another tenant than the principal's: FORBIDDEN.
    let config = ClientConfig::new(c.addrs.clone(), "u", "svc").with_token("s3cret");
    let elsewhere = Client::connect(config).await.expect("connects");
    let refused = elsewhere
        .acquire("k", Duration::from_millis(600))
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.reason(), Reason::Forbidden);
    guard.release().await.expect("released");
    let _ = std::fs::remove_dir_all(&dir);
    for (_, n) in c.nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_client_006_a_guard_survives_a_leadership_transfer_without_being_lost() {
    let c = cluster().await;
    // Alice also moves the leader: an admin call, claimed on this
    // development cluster.
    let alice = Client::connect(ClientConfig::new(c.addrs.clone(), "t", "alice").with_admin())
        .await
        .expect("connects");
    let guard = alice
        .acquire("k", Duration::from_millis(1_500))
        .await
        .expect("granted");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let leader = alice
        .status()
        .await
        .expect("status")
        .leader_id
        .expect("a leader");
    let to = if leader == 1 { 2 } else { 1 };
    let moved = alice.transfer_leader(to).await.expect("transferred");
    assert_eq!(moved.leader_id, to);
    // The old leader now refuses keep-alives (NOT_LEADER): transient, the
    // stream reopens on the new leader; three TTLs later the guard holds.
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    assert_eq!(
        guard.lost_reason(),
        None,
        "a transient refusal lost nothing"
    );
    assert!(guard.is_valid(), "kept alive across the transfer");
    let state = alice.get("k").await.expect("readable");
    assert_eq!(
        state.view.active.map(|l| l.id.to_string()),
        Some(guard.lease_id().to_owned())
    );
    guard.release().await.expect("released");
    for (_, n) in c.nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_watch_001_a_watch_from_zero_starts_now_and_one_from_later_waits_for_it() {
    let c = cluster().await;
    let alice = client(&c, "alice").await;
    let first = alice
        .acquire("w/a", Duration::from_secs(5))
        .await
        .expect("granted");
    let now = alice.status().await.expect("status").audit_sequence;
    assert!(now >= 1);
    // From 0: nothing already applied comes back, only what happens next.
    let mut from_now = alice
        .watch(WatchOptions::default())
        .await
        .expect("watching");
    // From two past now: the next event is skipped, the one after is first.
    let mut later = alice
        .watch(WatchOptions {
            from_sequence: now + 2,
            ..WatchOptions::default()
        })
        .await
        .expect("watching");
    // From 1: the retained past replays, with no gap.
    let mut replay = alice
        .watch(WatchOptions {
            from_sequence: 1,
            ..WatchOptions::default()
        })
        .await
        .expect("watching");
    first.release().await.expect("released"); // now + 1
    let second = alice
        .acquire("w/b", Duration::from_secs(5))
        .await
        .expect("granted"); // now + 2
    let e = next_event(&mut from_now).await;
    assert_eq!(e.event.seq, now + 1, "from 0 starts after what was applied");
    assert!(!e.gap_before);
    let e = next_event(&mut later).await;
    assert_eq!(e.event.seq, now + 2, "a start above now waits for it");
    assert!(!e.gap_before);
    let e = next_event(&mut replay).await;
    assert_eq!(e.event.seq, 1, "from 1 replays from the first event");
    assert!(!e.gap_before, "every event since 1 is retained");
    second.release().await.expect("released");
    for (_, n) in c.nodes {
        n.kill().await;
    }
}

async fn next_event(w: &mut tenure_client::Watch) -> tenure_client::WatchEvent {
    tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("an event in time")
        .expect("the stream is open")
        .expect("an event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_client_007_a_guard_granted_after_a_wait_longer_than_its_ttl_is_valid() {
    let c = cluster().await;
    let alice = client(&c, "alice").await;
    let bob = client(&c, "bob").await;
    let held = alice
        .acquire("k", Duration::from_millis(600))
        .await
        .expect("granted");
    let waiter = tokio::spawn(async move {
        let guard = bob
            .acquire_waiting("k", Duration::from_millis(600), Duration::from_secs(10))
            .await
            .expect("granted after the wait");
        let valid_at_grant = guard.is_valid();
        // And kept alive from there on.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        (valid_at_grant, guard.is_valid(), guard)
    });
    // The wait (2 s) is over three times bob's TTL.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    held.release().await.expect("released");
    let (at_grant, later, guard) = waiter.await.expect("the waiter ran");
    assert!(
        at_grant,
        "the deadline counts from after the wait, not from the first send"
    );
    assert!(later, "kept alive after the grant");
    guard.release().await.expect("released");
    for (_, n) in c.nodes {
        n.kill().await;
    }
}

/// A round of far more renewals than one stream buffers (8,000; the
/// benchmark's keep-alive workload holds 6,250 per client) completes: the
/// client sends and reads at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_round_of_more_leases_than_the_stream_buffers_completes() {
    let c = cluster().await;
    let alice = client(&c, "alice").await;
    // Taken 250 at a time: thousands of calls at once on one connection
    // would meet HTTP/2's limit on concurrent streams.
    let mut ids = Vec::new();
    for batch in 0..32 {
        let mut pending = Vec::new();
        for i in batch * 250..(batch + 1) * 250 {
            let a = alice.clone();
            pending.push(tokio::spawn(async move {
                a.lease(
                    &format!("many/{i:05}"),
                    Duration::from_secs(60),
                    tenure_client::AcquireOptions::default(),
                )
                .await
            }));
        }
        for p in pending {
            let lease = p.await.expect("joined").expect("granted");
            ids.push(lease.view.id.to_string());
        }
    }
    let mut stream = alice.keep_alive_stream().await.expect("a stream");
    let answers = tokio::time::timeout(Duration::from_secs(20), stream.renew_all(&ids))
        .await
        .expect("the round completes")
        .expect("renewed");
    assert_eq!(answers.len(), 8_000);
    assert!(answers.iter().all(|a| a.result.is_ok()));
    for (_, n) in c.nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_auth_006_each_role_is_allowed_and_refused_exactly_as_listed() {
    let dir = tempfile_dir("roles");
    let file = dir.join("auth.toml");
    let mut text = String::new();
    let mut tokens = BTreeMap::new();
    for (who, role, tenants) in [
        ("writer", "writer", "t"),
        ("reader", "reader", "t"),
        ("admin", "admin", "*"),
        ("narrow-admin", "admin", "t"),
    ] {
        let (token, id) = tenure_server::auth::new_token();
        let hash = tenure_server::auth::hash_token(&token).expect("hashed");
        text.push_str(&format!(
            "[[principal]]\nname = \"{who}-svc\"\ntoken_id = \"{id}\"\ntoken_hash = \"{hash}\"\nroles = [\"{role}\"]\ntenants = [\"{tenants}\"]\n\n"
        ));
        tokens.insert(who, token);
    }
    std::fs::write(&file, text).expect("written");
    let c = cluster_with(Some(file)).await;
    let as_role = |role: &str| {
        let config =
            ClientConfig::new(c.addrs.clone(), "t", "ignored").with_token(tokens[role].clone());
        Client::connect(config)
    };
    let writer = as_role("writer").await.expect("connects");
    let reader = as_role("reader").await.expect("connects");
    let admin = as_role("admin").await.expect("connects");
    let forbidden = |what: &str, r: Result<(), tenure_client::Error>| match r {
        Err(e) => assert_eq!(e.reason(), Reason::Forbidden, "{what}: {e}"),
        Ok(()) => panic!("{what} was allowed"),
    };
    let ttl = Duration::from_secs(2);

    // writer: acquire, renew, release and keep-alive; nothing else.
    let lease = writer
        .lease("k", ttl, AcquireOptions::default())
        .await
        .expect("writer acquires");
    let id = lease.view.id.to_string();
    writer.renew(&id, None).await.expect("writer renews");
    let mut stream = writer
        .keep_alive_stream()
        .await
        .expect("writer keeps alive");
    stream
        .renew_all(std::slice::from_ref(&id))
        .await
        .expect("writer's keep-alive answered");
    writer.release(&id, None).await.expect("writer releases");
    forbidden("writer get", writer.get("k").await.map(|_| ()));
    forbidden("writer list", writer.list("", 10, None).await.map(|_| ()));
    forbidden("writer watch", first_event(&writer).await);
    forbidden(
        "writer force-release",
        writer.force_release("k", "r", None).await.map(|_| ()),
    );
    forbidden("writer backup", writer.export().await.map(|_| ()));
    forbidden("writer membership", writer.remove_node(9).await.map(|_| ()));

    // reader: get, list and watch; nothing else.
    reader.get("k").await.expect("reader gets");
    reader.list("", 10, None).await.expect("reader lists");
    first_event(&reader).await.expect("reader watches");
    forbidden(
        "reader acquire",
        reader
            .lease("k", ttl, AcquireOptions::default())
            .await
            .map(|_| ()),
    );
    forbidden("reader renew", reader.renew(&id, None).await.map(|_| ()));
    forbidden(
        "reader release",
        reader.release(&id, None).await.map(|_| ()),
    );
    forbidden(
        "reader keep-alive",
        async {
            reader
                .keep_alive_stream()
                .await?
                .renew_all(std::slice::from_ref(&id))
                .await
                .map(|_| ())
        }
        .await,
    );
    forbidden(
        "reader force-release",
        reader.force_release("k", "r", None).await.map(|_| ()),
    );
    forbidden("reader backup", reader.export().await.map(|_| ()));

    // admin: force-release, backup, membership; no lock of its own.
    admin
        .force_release("k", "r", None)
        .await
        .expect("admin force-releases");
    admin.export().await.expect("admin backs up");
    let removed = admin.remove_node(9).await;
    assert!(
        !matches!(&removed, Err(e) if e.reason() == Reason::Forbidden),
        "admin may change membership: {removed:?}"
    );
    forbidden(
        "admin acquire",
        admin
            .lease("k", ttl, AcquireOptions::default())
            .await
            .map(|_| ()),
    );
    forbidden("admin get", admin.get("k").await.map(|_| ()));
    // Anyone identified may read the cluster's status.
    for client in [&writer, &reader, &admin] {
        client.status().await.expect("status for every role");
    }
}

/// The first event of a watch from sequence 1; `Ok` also when none came
/// within five seconds (the watch was allowed).
async fn first_event(client: &Client) -> Result<(), tenure_client::Error> {
    let mut watch = client
        .watch(WatchOptions {
            from_sequence: 1,
            ..WatchOptions::default()
        })
        .await?;
    match tokio::time::timeout(Duration::from_secs(5), watch.next()).await {
        Ok(Some(Err(e))) => Err(e),
        _ => Ok(()),
    }
}

fn tempfile_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tenure-client-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    dir
}
