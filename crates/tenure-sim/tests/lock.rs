//! The lock service under simulated faults: a deposed leader cut off from
//! the majority can neither extend nor grant, and an Acquire whose reply was
//! lost, retried with its request_id, gets the same lease and token.

use std::time::Duration;

use tenure_core::Reason;
use tenure_proto::convert::reason_of;
use tenure_proto::v1;
use tenure_raft::NodeId;
use tenure_sim::SimCluster;
use tenure_sim::cluster::TICK;

mod common;
use common::lock_client;

fn seed() -> u64 {
    std::env::var("TENURE_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(11)
}

fn sim(seed: u64) -> turmoil::Sim<'static> {
    tenure_raft::seed_thread_rng(seed);
    turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(120))
        .tcp_capacity(4096)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(5))
        .build()
}

fn as_owner<T>(owner: &str, body: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(body);
    r.metadata_mut()
        .insert("x-owner-id", owner.parse().expect("ascii"));
    r.set_timeout(Duration::from_secs(3));
    r
}

fn acquire(key: &str, rid: &str) -> v1::AcquireRequest {
    v1::AcquireRequest {
        tenant_id: "t".into(),
        lock_key: key.into(),
        owner_id: String::new(),
        request_id: rid.into(),
        ttl_ms: 10_000,
        wait_timeout_ms: 0,
        ..Default::default()
    }
}

async fn leader(c: &SimCluster, nodes: &[NodeId], above: u64) -> (NodeId, u64) {
    loop {
        if let Some(found) = c
            .agreed_leader(nodes)
            .filter(|(l, t)| nodes.contains(l) && *t > above)
        {
            // Give it a moment to take office (apply an entry of its term).
            tokio::time::sleep(Duration::from_millis(300)).await;
            return found;
        }
        tokio::time::sleep(TICK).await;
    }
}

#[test]
fn tn_time_006_a_deposed_leader_can_neither_extend_nor_grant() {
    let mut sim = sim(seed());
    let cluster = SimCluster::new(3);
    cluster.install(&mut sim);
    let c = cluster.clone();
    sim.client("client", async move {
        let all = [1, 2, 3];
        let (old, term) = leader(&c, &all, 0).await;
        let mut via_old = lock_client(&c.hosts[&old]);
        let lease = via_old
            .acquire(as_owner("a", acquire("k", "a1")))
            .await
            .expect("granted")
            .into_inner();
        let rest: Vec<NodeId> = all.iter().copied().filter(|n| *n != old).collect();
        for n in &rest {
            turmoil::partition(c.hosts[&old].as_str(), c.hosts[n].as_str());
        }
        // Cut off from the quorum, the old leader confirms nothing.
        let renew = v1::RenewRequest {
            tenant_id: "t".into(),
            lease_id: lease.lease_id.clone(),
            owner_id: String::new(),
            request_id: "a2".into(),
            ttl_ms: 0,
        };
        assert!(
            via_old.renew(as_owner("a", renew)).await.is_err(),
            "a deposed leader extended a lease"
        );
        assert!(
            via_old
                .acquire(as_owner("b", acquire("k2", "b1")))
                .await
                .is_err(),
            "a deposed leader granted a lock"
        );
        // The majority goes on.
        let (new, _) = leader(&c, &rest, term).await;
        let granted = lock_client(&c.hosts[&new])
            .acquire(as_owner("b", acquire("k2", "b2")))
            .await
            .expect("the majority grants");
        assert_eq!(granted.into_inner().fencing_token, 1);
        Ok(())
    });
    sim.run().expect("the simulation passes");
}

#[test]
fn tn_req_004_an_acquire_whose_reply_was_lost_is_retried_into_the_same_lease() {
    let mut sim = sim(seed());
    let cluster = SimCluster::new(3);
    cluster.install(&mut sim);
    let c = cluster.clone();
    sim.client("client", async move {
        let (l, _) = leader(&c, &[1, 2, 3], 0).await;
        let host = c.hosts[&l].clone();
        let follower = c
            .hosts
            .iter()
            .find(|(id, _)| **id != l)
            .map(|(_, h)| h.clone())
            .expect("a follower");
        // An open connection first, so the request itself gets through.
        let mut to_leader = lock_client(&host);
        let probe = v1::GetRequest {
            tenant_id: "t".into(),
            lock_key: "k".into(),
            consistency: 0,
        };
        to_leader
            .get(probe.clone())
            .await
            .expect("the leader answers");
        // Replies from the leader to this client are dropped: the request
        // applies, the answer never arrives.
        turmoil::partition_oneway(host.as_str(), "client");
        let first = to_leader
            .acquire(as_owner("a", acquire("k", "same-id")))
            .await;
        assert!(first.is_err(), "the reply was lost");
        let held = lock_client(&follower)
            .get(probe)
            .await
            .expect("a follower answers")
            .into_inner();
        let granted = held.active_lease.expect("the lost acquire applied");
        turmoil::repair_oneway(host.as_str(), "client");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let again = lock_client(&host)
            .acquire(as_owner("a", acquire("k", "same-id")))
            .await
            .expect("the retry answers")
            .into_inner();
        assert_eq!(
            (again.lease_id.clone(), again.fencing_token),
            (granted.lease_id, 1),
            "the same grant, not a second one"
        );
        let other = lock_client(&host)
            .acquire(as_owner("b", acquire("k", "b1")))
            .await
            .expect_err("held");
        assert_eq!(reason_of(&other), Some(Reason::LockHeld));
        let third = lock_client(&host)
            .acquire(as_owner("a", acquire("k", "same-id")))
            .await
            .expect("again")
            .into_inner();
        assert_eq!(third.lease_id, again.lease_id);
        Ok(())
    });
    sim.run().expect("the simulation passes");
}

#[test]
fn tn_wait_006_a_waiter_whose_call_is_open_is_kept_alive_past_its_ttl() {
    let mut sim = sim(seed());
    let cluster = SimCluster::new(3);
    cluster.install(&mut sim);
    let c = cluster.clone();
    sim.client("client", async move {
        let (l, _) = leader(&c, &[1, 2, 3], 0).await;
        let host = c.hosts[&l].clone();
        let short = |rid: &str, wait_ms: u64| v1::AcquireRequest {
            ttl_ms: 1_000,
            wait_timeout_ms: wait_ms,
            ..acquire("k", rid)
        };
        let held = lock_client(&host)
            .acquire(as_owner("a", short("a1", 0)))
            .await
            .expect("granted")
            .into_inner();
        // The waiter waits up to 6 TTLs; its call stays open meanwhile.
        let waiter = tokio::spawn({
            let host = host.clone();
            async move {
                let mut r = as_owner("b", short("b1", 6_000));
                r.set_timeout(Duration::from_secs(10));
                lock_client(&host).acquire(r).await
            }
        });
        // The holder keeps its lease for 3 TTLs, then lets go.
        for i in 0..10 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let renew = v1::RenewRequest {
                tenant_id: "t".into(),
                lease_id: held.lease_id.clone(),
                owner_id: String::new(),
                request_id: format!("a-renew-{i}"),
                ttl_ms: 0,
            };
            lock_client(&host)
                .renew(as_owner("a", renew))
                .await
                .expect("the holder renews");
        }
        let release = v1::ReleaseRequest {
            tenant_id: "t".into(),
            lease_id: held.lease_id.clone(),
            owner_id: String::new(),
            request_id: "a-release".into(),
        };
        lock_client(&host)
            .release(as_owner("a", release))
            .await
            .expect("released");
        let granted = waiter
            .await
            .expect("the waiter's task")
            .expect("the waiter is granted, not expired while it waited")
            .into_inner();
        assert_eq!(granted.fencing_token, 2);
        Ok(())
    });
    sim.run().expect("the simulation passes");
}

#[test]
fn tn_client_004_a_silent_endpoint_is_left_after_the_try_timeout() {
    let mut sim = sim(seed());
    let cluster = SimCluster::new(3);
    cluster.install(&mut sim);
    let c = cluster.clone();
    sim.client("client", async move {
        let (l, _) = leader(&c, &[1, 2, 3], 0).await;
        let silent = c.hosts[&l].clone();
        // The leader first, then the others: a follower forwards.
        let mut endpoints = vec![format!("{silent}:7000")];
        endpoints.extend(
            c.hosts
                .iter()
                .filter(|(id, _)| **id != l)
                .map(|(_, h)| format!("{h}:7000")),
        );
        let mut config = tenure_client::ClientConfig::new(endpoints, "t", "a");
        config.dialer = Some(tenure_sim::workload::dialer());
        config.call_timeout = Duration::from_secs(5);
        config.try_timeout = Duration::from_millis(300);
        let client = tenure_client::Client::connect(config)
            .await
            .expect("connected");
        // Everything between the client and the leader is held: calls to it
        // hang, neither answered nor refused.
        turmoil::hold("client", silent.as_str());
        let started = tokio::time::Instant::now();
        let guard = client
            .acquire("k", Duration::from_secs(10))
            .await
            .expect("granted through another node");
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "the silent leader held the call for {took:?}"
        );
        assert_eq!(guard.fencing_token(), 1);
        turmoil::release("client", silent.as_str());
        Ok(())
    });
    sim.run().expect("the simulation passes");
}
