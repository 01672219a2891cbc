//! A node, top to bottom: configuration → stores → network → `Raft::new` →
//! cluster formation → services, served on the incoming stream it is given
//! until the shutdown future resolves.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, SnapshotPolicy};
use tenure_raft::{
    Connector, Disk, Elections, LogStore, Network, NodeId, Proposer, Raft, RaftService,
    StateMachineStore, TableReader,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tokio_stream::Stream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::Connected;

use tenure_proto::v1;

use crate::access::Access;
use crate::admin::AdminService;
use crate::auth::Auth;
use crate::clock::Harness;
use crate::config::{ClusterState, NodeConfig};
use crate::error::ServerError;
use crate::leases::LeaseTimers;
use crate::lock::LockService;
use crate::peers::Peers;
use crate::router::Router;
use crate::tls::Tls;
use crate::transfer::{successor, transfer};
use crate::watch::History;
use crate::writer::Writer;

/// How often a node pings an HTTP/2 connection that is idle.
pub const HTTP2_KEEPALIVE: Duration = Duration::from_secs(20);
/// How long a ping may go unanswered before the connection is closed.
pub const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Streams (calls) one connection may have open at once.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 1024;

/// A running node.
pub struct Node {
    /// This node's id.
    pub id: NodeId,
    /// How it identifies callers: [`Auth::reload`] rereads the auth file.
    pub auth: Auth,
    /// What its HTTP port serves (the probes); the binary serves it on
    /// `--http-listen`.
    pub http: axum::Router,
    /// Its raft.
    pub raft: Raft,
    /// Read access to its applied lease table.
    pub table: TableReader,
    /// The lease deadlines this node keeps while it leads.
    pub timers: LeaseTimers,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    /// Run at a graceful stop: if this node leads, hand leadership over.
    handover: Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// Log entries per AppendEntries at most (see [`raft_config`]).
pub const MAX_PAYLOAD_ENTRIES: u64 = 16;

/// Entries between this node's snapshots: `every`, plus a tenth of it for
/// each step of the node's id (mod 5). Every node applies the same entries,
/// so with one policy all of them would copy and encode the table at the
/// same index; staggered, at most one of them usually does at a time.
fn staggered(every: u64, id: NodeId) -> u64 {
    every.saturating_add(every / 10 * (id % 5))
}

/// The openraft configuration of a node.
///
/// A follower campaigns a random time between (`election_min_ms` +
/// `election_max_ms`) / 2 and `election_max_ms` after it last heard a
/// leader, drawn afresh for every attempt, once a majority of the voters
/// hear no leader either ([`Elections`]); openraft's own timer elections,
/// which fire only on a tick every 1.5 heartbeats and draw one timeout per
/// process, are off. What openraft still takes from its election bounds is
/// the leader lease of a voter: it refuses to vote for another node until
/// `election_timeout_max` after it last heard its leader. That is
/// `election_min_ms` less one heartbeat, well inside the campaign window,
/// so a voter that heard the dead leader's last heartbeat a little after
/// the candidate did still grants the first campaign.
pub fn raft_config(config: &NodeConfig) -> Result<Arc<openraft::Config>, ServerError> {
    let lease = config.election_min_ms.saturating_sub(config.heartbeat_ms);
    let raft = openraft::Config {
        cluster_name: "tenure".into(),
        heartbeat_interval: config.heartbeat_ms,
        election_timeout_min: config.heartbeat_ms + 1,
        election_timeout_max: lease,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(staggered(config.snapshot_every, config.id)),
        max_in_snapshot_log_to_keep: config.keep_after_snapshot,
        install_snapshot_timeout: 2_000,
        // openraft 0.9 gives an AppendEntries one heartbeat interval, then
        // backs off from the follower for 500 ms. Its default of 300
        // entries per AppendEntries is far too many for entries that carry
        // up to 512 commands each (a follower catching up after a burst
        // could not append them in time, and fell silent long enough to
        // campaign), so fewer travel at once.
        max_payload_entries: MAX_PAYLOAD_ENTRIES,
        ..openraft::Config::default()
    };
    raft.validate()
        .map(Arc::new)
        .map_err(|e| ServerError::Config(e.to_string()))
}

impl Node {
    /// Starts a node on `disk`, reaching peers through `connector` and
    /// serving on `incoming` until `shutdown` resolves. With
    /// `initial_cluster_state = new`, a fresh node founds the cluster with
    /// the other initial members (the lowest-id founder at once, the others
    /// only if they hear nothing: see `found`); a node that has data rejoins.
    pub async fn start<D, C, I, IO, IE>(
        config: NodeConfig,
        disk: D,
        connector: C,
        incoming: I,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Node, ServerError>
    where
        D: Disk,
        C: Connector,
        I: Stream<Item = Result<IO, IE>> + Send + 'static,
        IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
        IE: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        Node::start_with(
            config,
            disk,
            connector,
            incoming,
            shutdown,
            Harness::default(),
        )
        .await
    }

    /// [`Node::start`] with the clocks and negative controls a simulation
    /// gives each host.
    pub async fn start_with<D, C, I, IO, IE>(
        config: NodeConfig,
        disk: D,
        connector: C,
        incoming: I,
        shutdown: impl Future<Output = ()> + Send + 'static,
        harness: Harness,
    ) -> Result<Node, ServerError>
    where
        D: Disk,
        C: Connector,
        I: Stream<Item = Result<IO, IE>> + Send + 'static,
        IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
        IE: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        if harness.sabotage.any() {
            tracing::warn!(sabotage = ?harness.sabotage, "negative controls in force: this node is deliberately unsafe");
        }
        let raft_config = raft_config(&config)?;
        let tls = config
            .tls
            .as_ref()
            .map(Tls::load)
            .transpose()?
            .map(Arc::new);
        let log = LogStore::new(disk.clone());
        let flush_counter = disk.clone();
        let sm = StateMachineStore::open(disk, harness.table.clone())
            .map_err(|e| ServerError::Raft(e.to_string()))?
            .with_retention(config.audit_retention);
        let table = sm.reader();
        let raft = Raft::new(
            config.id,
            raft_config,
            Network::new(connector.clone()),
            log,
            sm,
        )
        .await
        .map_err(|e| ServerError::Raft(e.to_string()))?;
        // Elections on Tenure's own timer (see raft_config).
        raft.runtime_config().elect(false);
        // Campaigns in the upper half of the window, as before this timer
        // (a leader stalled by a burst of large entries must not be
        // replaced after only election_min_ms: openraft gives an append
        // one heartbeat, then backs off 500 ms).
        let elections = Elections::new(
            Duration::from_millis((config.election_min_ms + config.election_max_ms) / 2),
            Duration::from_millis(config.election_max_ms),
        );
        tokio::spawn(elections.clone().run(
            raft.clone(),
            connector.clone(),
            Duration::from_millis(config.heartbeat_ms),
        ));

        let peers = Peers::new(tls.clone(), raft.clone());
        let auth = Auth::for_node(config.auth_file.as_deref(), peers.clone())?;
        let proposer = Proposer::new(raft.clone());
        let lease = Duration::from_millis(config.election_max_ms);
        let timers = LeaseTimers::with_harness(lease, &harness);
        tokio::spawn(timers.clone().run(
            raft.clone(),
            proposer.clone(),
            table.clone(),
            Duration::from_millis(config.heartbeat_ms),
        ));
        // The seam both services share: one router (where a call is
        // served), one writer (typed proposals), one access check.
        let router = Router::new(
            config.id,
            raft.clone(),
            timers.clone(),
            connector.clone(),
            auth.clone(),
        );
        let writer = Writer::new(
            proposer,
            table.clone(),
            harness.clock.clone(),
            timers.sabotage(),
        );
        let access = Access::new(auth.clone(), config.rate_limit);
        let admin = AdminService::new(
            config.id,
            raft.clone(),
            router.clone(),
            writer.clone(),
            access.clone(),
            table.clone(),
            connector.clone(),
            lease,
            timers.clone(),
            harness.clock.clone(),
        )
        .with_flush_counter(move || flush_counter.flushes());
        let history = History::new(table.history().clone());
        tokio::spawn(history.clone().run(table.clone()));
        let founder = Founder {
            writer: writer.clone(),
            timers: timers.clone(),
            limits: config.table.clone(),
        };
        let enforced = access.enforced();
        let lock = LockService::new(
            router,
            writer,
            access,
            table.clone(),
            timers.clone(),
            history.clone(),
        );
        // The HTTP port: probes, and the reference's JSON contract over the
        // same two services.
        let silence = Duration::from_millis(config.election_max_ms);
        let http = crate::http::router(raft.clone(), timers.clone(), elections.clone(), silence)
            .merge(crate::gateway::router(
                lock.clone(),
                admin.clone(),
                table.clone(),
                history,
                harness.clock.clone(),
                enforced,
            ))
            .layer(axum::middleware::from_fn(crate::metrics::http_call));
        let (health, health_service) = tonic_health::server::health_reporter();
        tokio::spawn(report_health(
            raft.clone(),
            elections.clone(),
            silence,
            health,
        ));
        tokio::spawn(crate::metrics::watch(raft.clone(), table.clone()));
        // Reflection in both protocol versions: grpcurl speaks v1, while
        // Python's grpcio-reflection, Postman, grpcui and older grpcurl
        // speak only v1alpha.
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tenure_proto::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| ServerError::Config(format!("reflection: {e}")))?;
        let reflection_alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tenure_proto::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(|e| ServerError::Config(format!("reflection (v1alpha): {e}")))?;
        // Answers carry the node's own wall clock as their Date (hyper would
        // read the system's), so a simulated node's bytes on the wire follow
        // its simulated clock and a seed replays the same run.
        let date_clock = harness.clock.clone();
        let mut builder = tonic::transport::Server::builder()
            // Bounds for slow, idle or greedy clients: a connection that
            // stops answering HTTP/2 pings is closed, and one connection
            // may not open streams without end.
            .http2_keepalive_interval(Some(HTTP2_KEEPALIVE))
            .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT))
            .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION));
        if let Some(tls) = &tls {
            builder = builder
                .tls_config(tls.server_config())
                .map_err(|e| ServerError::Config(format!("TLS: {e}")))?;
        }
        let server = builder
            .layer(crate::metrics::RpcLayer)
            .layer(tower::util::MapResponseLayer::new(
                move |mut response: tonic::codegen::http::Response<tonic::body::Body>| {
                    let at = std::time::UNIX_EPOCH + Duration::from_millis(date_clock.wall_ms());
                    if let Ok(value) = httpdate::fmt_http_date(at).parse() {
                        response
                            .headers_mut()
                            .insert(tonic::codegen::http::header::DATE, value);
                    }
                    response
                },
            ))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_alpha)
            // Only members, proven by their node certificates, may call it.
            .add_service(InterceptedService::new(
                RaftService::new(raft.clone(), elections),
                peers.gate(),
            ))
            .add_service(
                v1::admin_server::AdminServer::new(admin).max_decoding_message_size(8 << 20),
            )
            .add_service(v1::lock_server::LockServer::new(lock))
            .serve_with_incoming_shutdown(incoming, shutdown);
        let server = tokio::spawn(server);

        if config.initial_cluster_state == ClusterState::New {
            found(&raft, config.id, &config.initial_cluster, lease, founder).await?;
        }
        let handover = {
            let (raft, id) = (raft.clone(), config.id);
            Box::pin(async move {
                let leads = raft.metrics().borrow().state == openraft::ServerState::Leader;
                let Some(to) = successor(&raft, id).filter(|_| leads) else {
                    return;
                };
                match transfer(&raft, id, &connector, to, lease).await {
                    Ok(_) => tracing::info!(to, "leadership handed over before stopping"),
                    Err(e) => tracing::warn!(error = %e, "could not hand leadership over"),
                }
            })
        };
        tracing::info!(id = config.id, advertise = %config.advertise, tls = tls.is_some(), "node started");
        Ok(Node {
            id: config.id,
            http,
            auth,
            raft,
            table,
            timers,
            server,
            handover,
        })
    }

    /// Waits until the server stops (its shutdown future resolved), hands
    /// leadership to the most caught-up voter if this node leads, then
    /// stops raft.
    ///
    /// Raft's core can also stop on its own: openraft quits it on a storage
    /// error (a full or failing disk). A node without it can never serve
    /// again, so it does not run on: `wait` answers the error at once, and
    /// the binary exits non-zero for its supervisor to restart it.
    pub async fn wait(self) -> Result<(), ServerError> {
        let mut server = self.server;
        let raft = self.raft.clone();
        let core_stopped = async move {
            let metrics = raft.metrics();
            // The core holds the metrics' sender: it closes when the core stops.
            while metrics.has_changed().is_ok() {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            let cause = match raft.with_raft_state(|_| ()).await {
                Err(fatal) => fatal.to_string(),
                Ok(()) => "no cause given".to_owned(),
            };
            tracing::error!(%cause, "raft stopped on its own; the node exits");
            cause
        };
        let served = tokio::select! {
            served = &mut server => served,
            cause = core_stopped => {
                server.abort();
                return Err(ServerError::Raft(format!(
                    "raft stopped: {cause}; the node exits (fix the disk, then restart it)"
                )));
            }
        };
        self.handover.await;
        let stopped = self.raft.shutdown().await;
        served
            .map_err(|e| ServerError::Raft(e.to_string()))?
            .map_err(ServerError::Serve)?;
        stopped.map_err(|e| ServerError::Raft(e.to_string()))
    }

    /// Stops at once: the server and raft (a crash, in tests).
    pub async fn kill(self) {
        self.server.abort();
        let _ = self.raft.shutdown().await;
    }

    /// The leader this node knows of, if any.
    pub async fn leader(&self) -> Option<NodeId> {
        self.raft.current_leader().await
    }

    /// Waits up to `timeout` for a known leader.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<NodeId> {
        self.raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await
            .ok()
            .and_then(|m| m.current_leader)
    }
}

/// Founds the cluster if this node is fresh; a node with data, or a cluster
/// formed already, is left as it is.
///
/// Only the founder with the lowest id initializes at once: it campaigns
/// alone, wins, and hands the membership to the others, so a new cluster
/// elects once. When every founder initialized, each campaigned at term 1
/// at the same moment, and (openraft allowing several leaders in one term,
/// the higher id winning) a late candidate deposed the first leader within
/// a second. The other founders initialize only if they have heard nothing
/// (no term, no membership) after waiting their turn, `3 × election_max ×
/// rank`: a cluster then forms even when the first founder never starts.
async fn found(
    raft: &Raft,
    id: NodeId,
    members: &BTreeMap<NodeId, String>,
    election_max: Duration,
    founder: Founder,
) -> Result<(), ServerError> {
    let nodes: BTreeMap<NodeId, BasicNode> = members
        .iter()
        .map(|(id, addr)| (*id, BasicNode::new(addr.clone())))
        .collect();
    let rank = members.keys().position(|m| *m == id).unwrap_or(0);
    if rank == 0 {
        if initialize(raft, nodes).await? {
            tokio::spawn(founder.propose(election_max));
        }
        return Ok(());
    }
    let raft = raft.clone();
    let wait = election_max * 3 * u32::try_from(rank).unwrap_or(u32::MAX);
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        let heard = {
            let m = raft.metrics().borrow().clone();
            m.current_term > 0 || m.membership_config.nodes().next().is_some()
        };
        if !heard {
            tracing::warn!(
                waited_ms = wait.as_millis() as u64,
                "no founder with a lower id formed the cluster: founding it"
            );
            match initialize(&raft, nodes).await {
                Ok(true) => founder.propose(election_max).await,
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "could not found the cluster"),
            }
        }
    });
    Ok(())
}

/// What the node that founds the cluster puts in the log first: its
/// limits (flags, `TENURE_*`, the config file), unless they are the
/// defaults, which a fresh table has already.
struct Founder {
    writer: Writer,
    timers: LeaseTimers,
    limits: tenure_core::TableConfig,
}

impl Founder {
    /// Once in office (it campaigned first, so it normally wins), proposes
    /// the limits; a founder that did not win leaves them to `tenure
    /// cluster configure`, and says so.
    async fn propose(self, election_max: Duration) {
        if self.limits == tenure_core::TableConfig::default() {
            return;
        }
        let deadline = tokio::time::Instant::now() + election_max * 20;
        while !self.timers.active() {
            if tokio::time::Instant::now() > deadline {
                tracing::warn!(
                    "this founder is not the leader: its limits are not proposed; set them with `tenure cluster configure`"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        match self.writer.configure(self.limits).await {
            Ok(limits) => tracing::info!(?limits, "the founding limits are in force"),
            Err(e) => tracing::error!(error = %e, "could not put the founding limits in force"),
        }
    }
}

/// Initializes raft with the founding members: `true` if this call did,
/// `false` if the node was initialized already.
async fn initialize(raft: &Raft, nodes: BTreeMap<NodeId, BasicNode>) -> Result<bool, ServerError> {
    match raft.initialize(nodes).await {
        Ok(()) => Ok(true),
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(false),
        Err(e) => Err(ServerError::Raft(e.to_string())),
    }
}

/// The standard gRPC health service: SERVING while this node hears a
/// leader (it can answer, or forward: it leads, or heard its leader within
/// `silence`), NOT_SERVING otherwise. Reported for the whole server ("")
/// and for each public service.
async fn report_health(
    raft: Raft,
    elections: Elections,
    silence: Duration,
    health: tonic_health::server::HealthReporter,
) {
    use tonic_health::ServingStatus;
    let mut metrics = raft.metrics();
    let mut last = None;
    loop {
        let serving = {
            let m = metrics.borrow_and_update();
            m.current_leader
                .is_some_and(|l| l == m.id || elections.heard_within(silence))
        };
        if last != Some(serving) {
            last = Some(serving);
            let status = if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            for service in ["", "tenure.v1.Lock", "tenure.v1.Admin"] {
                health.set_service_status(service, status).await;
            }
        }
        // A leader that falls silent changes nothing in the metrics:
        // look again every so often as well.
        tokio::select! {
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep(silence / 4) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::staggered;

    #[test]
    fn the_nodes_of_a_five_node_cluster_snapshot_at_different_indexes() {
        let every: Vec<u64> = (1..=5).map(|id| staggered(10_000, id)).collect();
        assert_eq!(every, [11_000, 12_000, 13_000, 14_000, 10_000]);
        assert_eq!(staggered(u64::MAX, 3), u64::MAX, "no overflow");
        assert_eq!(staggered(1, 3), 1, "a tiny policy stays as asked");
    }
}
