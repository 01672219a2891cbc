//! In-process clusters on loopback TCP, each node on a simulated disk.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use tenure_core::{Acquire, Command};
use tenure_proto::v1::admin_client::AdminClient;
use tenure_raft::{NodeId, Proposal, SimDisk, TcpConnector};
use tenure_server::{ClusterState, Node, NodeConfig};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

pub const WAIT: Duration = Duration::from_secs(10);

pub fn config(
    id: NodeId,
    addr: &str,
    members: &BTreeMap<NodeId, String>,
    state: ClusterState,
) -> NodeConfig {
    NodeConfig {
        id,
        listen: addr.to_owned(),
        advertise: addr.to_owned(),
        data_dir: "unused-with-a-sim-disk".into(),
        initial_cluster: members.clone(),
        initial_cluster_state: state,
        // Generous timing: tests share two cores, and a starved heartbeat
        // must not start an election the test did not ask for.
        heartbeat_ms: 100,
        election_min_ms: 800,
        election_max_ms: 1_600,
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

pub async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let addr = l.local_addr().expect("address").to_string();
    (l, addr)
}

pub async fn start_with(config: NodeConfig, disk: SimDisk, listener: TcpListener) -> Node {
    Node::start(
        config,
        disk,
        TcpConnector::default(),
        TcpListenerStream::new(listener),
        std::future::pending::<()>(),
    )
    .await
    .expect("node starts")
}

pub fn acquire(key: &str, owner: &str) -> Proposal {
    Proposal::one(
        0,
        Command::Acquire(Acquire {
            tenant: "t".into(),
            key: key.into(),
            owner: owner.into(),
            request_id: format!("{owner}-{key}"),
            ttl_ms: 10_000,
            wait_timeout_ms: 0,
        }),
    )
}

pub async fn applied(node: &Node, index: u64) {
    node.raft
        .wait(Some(WAIT))
        .applied_index_at_least(Some(index), "replicated")
        .await
        .expect("the entry applies");
}

/// Every node in `nodes` holds the same table (INV-5), compared once they
/// stand at the same applied position: a leader taking office proposes
/// commands of its own (the cluster's name, expiries), so right after a
/// write one replica can be a command further along than another, and a
/// table's digest covers its position.
pub async fn same_tables<'a>(nodes: impl IntoIterator<Item = &'a Node>) {
    let nodes: Vec<&Node> = nodes.into_iter().collect();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let seen: Vec<(u64, String)> = nodes
            .iter()
            .map(|n| {
                let t = n.table.read();
                (t.table.last_index(), t.table.digest_hex())
            })
            .collect();
        if seen.windows(2).all(|w| w[0].0 == w[1].0) {
            assert!(
                seen.windows(2).all(|w| w[0].1 == w[1].1),
                "replicas at the same position differ: {seen:?}"
            );
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replicas never stood at one position: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn admin(addr: &str) -> AdminClient<ClaimsAdmin> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .timeout(Duration::from_secs(20))
        .connect_lazy();
    AdminClient::with_interceptor(channel, claim_admin as Claim)
}

/// A function that marks a request.
pub type Claim = fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>;

/// A channel whose calls claim the admin role of a development node.
pub type ClaimsAdmin =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Claim>;

/// Claims the admin role a development node (no auth file) grants by
/// `x-role: ADMIN`.
pub fn claim_admin(mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    r.metadata_mut().insert(
        "x-role",
        tonic::metadata::MetadataValue::from_static("ADMIN"),
    );
    Ok(r)
}

/// Calls `f` until it succeeds or fails for good, as a client does: a
/// retryable refusal (a leader change in progress) is tried again for up to
/// ten seconds.
pub async fn retry<T, F, Fut>(mut f: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let start = tokio::time::Instant::now();
    loop {
        match f().await {
            Ok(r) => return Ok(r.into_inner()),
            Err(e)
                if start.elapsed() < Duration::from_secs(10)
                    && tenure_proto::convert::reason_of(&e).is_some_and(|r| r.is_retryable()) =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    }
}
