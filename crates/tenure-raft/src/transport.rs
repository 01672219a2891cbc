//! The raft transport over gRPC: the client side (openraft's network
//! factory) and the server side (the `Raft` service of `raft.proto`).
//!
//! Both sides are generic over how bytes move: the client takes a
//! [`Connector`] that turns a peer's address into a tonic `Channel`, the
//! server is a tonic service that the node serves on whatever incoming stream
//! it was given. Production passes TCP; simulations pass turmoil's network.
//!
//! One channel per peer is made once and reused (tonic multiplexes calls over
//! its HTTP/2 connection); every call carries openraft's deadline, because a
//! call into a partition otherwise never returns. A peer that cannot be
//! reached is reported as `Unreachable`, which makes openraft back off.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::elections::Elections;
use crate::types::{NodeId, Raft, TypeConfig};

/// The generated code of `raft.proto`.
pub mod pb {
    #![allow(missing_docs, clippy::all, clippy::pedantic, clippy::unwrap_used)]
    tonic::include_proto!("tenure.raft.v1");
}

/// The version of the payload encoding; both ends must agree.
pub const FORMAT: u32 = 1;

/// Turns a peer's address into a channel to it.
pub trait Connector: Clone + Send + Sync + 'static {
    /// A channel to `addr` (`host:port`); it may connect lazily.
    fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error>;
}

/// TCP, for production nodes: plain on loopback, mutual TLS otherwise.
#[derive(Clone, Debug)]
pub struct TcpConnector {
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// The peers' CA and this node's certificate; `None`: plain TCP.
    pub tls: Option<ClientTlsConfig>,
}

impl Default for TcpConnector {
    fn default() -> Self {
        TcpConnector {
            connect_timeout: Duration::from_millis(500),
            tls: None,
        }
    }
}

impl TcpConnector {
    /// A connector that calls peers with mutual TLS.
    pub fn with_tls(tls: ClientTlsConfig) -> TcpConnector {
        TcpConnector {
            tls: Some(tls),
            ..TcpConnector::default()
        }
    }
}

impl Connector for TcpConnector {
    fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let endpoint = match &self.tls {
            Some(tls) => {
                Endpoint::from_shared(format!("https://{addr}"))?.tls_config(tls.clone())?
            }
            None => Endpoint::from_shared(format!("http://{addr}"))?,
        };
        Ok(endpoint
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            // Keep-alive finds a connection a partition silently broke, so the
            // channel reconnects once the network heals.
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(1))
            .keep_alive_while_idle(true)
            .connect_lazy())
    }
}

fn encode<T: Serialize>(value: &T) -> Result<pb::RaftMessage, postcard::Error> {
    Ok(pb::RaftMessage {
        format: FORMAT,
        payload: postcard::to_stdvec(value)?,
    })
}

/// Decodes a message from a peer: its format must be this build's.
pub(crate) fn decode<T: DeserializeOwned>(message: &pb::RaftMessage) -> Result<T, String> {
    if message.format != FORMAT {
        return Err(format!(
            "payload format {} (this node speaks {FORMAT})",
            message.format
        ));
    }
    postcard::from_bytes(&message.payload).map_err(|e| e.to_string())
}

/// A transport failure, as an error openraft can hold.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(String);

fn transport(e: impl Display) -> TransportError {
    TransportError(e.to_string())
}

/// openraft's network factory: one reused channel per peer.
#[derive(Clone)]
pub struct Network<C: Connector> {
    connector: C,
    /// Ordered, so they close in the same order every run (a simulation
    /// replays its seed only if connections close alike).
    channels: Arc<Mutex<BTreeMap<(NodeId, String), Channel>>>,
}

impl<C: Connector> Network<C> {
    /// A factory that reaches peers through `connector`.
    pub fn new(connector: C) -> Network<C> {
        Network {
            connector,
            channels: Arc::default(),
        }
    }
}

impl<C: Connector> RaftNetworkFactory<TypeConfig> for Network<C> {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        let key = (target, node.addr.clone());
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        let channel = match channels.get(&key) {
            Some(c) => Ok(c.clone()),
            None => self.connector.channel(&node.addr).inspect(|c| {
                channels.insert(key, c.clone());
            }),
        };
        Peer {
            target,
            client: channel.map(pb::raft_client::RaftClient::new).map_err(|e| {
                transport(format!("no channel to node {target} at {}: {e}", node.addr))
            }),
        }
    }
}

/// The client side of one peer.
pub struct Peer {
    target: NodeId,
    client: Result<pb::raft_client::RaftClient<Channel>, TransportError>,
}

type Rpc<E> = RPCError<NodeId, BasicNode, E>;

impl Peer {
    async fn call<Req, Resp, E>(
        &mut self,
        kind: Kind,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, Rpc<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(e))),
        };
        let message = encode(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut request = tonic::Request::new(message);
        request.set_timeout(option.hard_ttl());
        let reply = match kind {
            Kind::Vote => client.vote(request).await,
            Kind::Append => client.append_entries(request).await,
            Kind::Snapshot => client.install_snapshot(request).await,
        };
        let reply = reply.map_err(|status| match status.code() {
            tonic::Code::Unavailable | tonic::Code::Unknown => {
                RPCError::Unreachable(Unreachable::new(&transport(&status)))
            }
            _ => RPCError::Network(NetworkError::new(&transport(&status))),
        })?;
        let result: Result<Resp, E> = decode(reply.get_ref())
            .map_err(|e| RPCError::Network(NetworkError::new(&transport(e))))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Vote,
    Append,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, Rpc<RaftError<NodeId>>> {
        if rpc.entries.is_empty() {
            return self.call(Kind::Append, &rpc, &option).await;
        }
        // A replication round trip that carries entries: the network, the
        // follower's append and its flush (heartbeats are not counted).
        let start = tokio::time::Instant::now();
        let result = self.call(Kind::Append, &rpc, &option).await;
        metrics::histogram!("tenure_raft_replicate_seconds").record(start.elapsed().as_secs_f64());
        result
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, Rpc<RaftError<NodeId, InstallSnapshotError>>> {
        self.call(Kind::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, Rpc<RaftError<NodeId>>> {
        self.call(Kind::Vote, &rpc, &option).await
    }
}

/// What a leader handing over leadership asks of another node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Control {
    /// Turn the node's election timer on or off.
    Elections(bool),
    /// Campaign for leadership now.
    Campaign,
    /// Report the leader this node hears (none if it has not heard one
    /// within a voter's lease) and its term.
    Observe,
}

/// What a node answers to a [`Control`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Observed {
    /// The leader the node hears, if any.
    pub leader: Option<NodeId>,
    /// The node's term.
    pub term: u64,
}

/// Sends `control` to the node at `addr`, with a deadline.
pub async fn control<C: Connector>(
    connector: &C,
    addr: &str,
    control: Control,
) -> Result<Observed, TransportError> {
    let channel = connector.channel(addr).map_err(transport)?;
    let mut request = tonic::Request::new(encode(&control).map_err(transport)?);
    request.set_timeout(Duration::from_secs(2));
    let reply = pb::raft_client::RaftClient::new(channel)
        .control(request)
        .await
        .map_err(transport)?;
    decode::<Result<Observed, String>>(reply.get_ref())
        .map_err(transport)?
        .map_err(TransportError)
}

/// The server side: hands each call to the local Raft.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft,
    /// Told whenever this node hears a leader, and paused on request.
    elections: Elections,
}

impl RaftService {
    /// The service of `raft`, ready to add to a tonic server; what it
    /// accepts from a leader restarts `elections`.
    pub fn new(raft: Raft, elections: Elections) -> pb::raft_server::RaftServer<RaftService> {
        pb::raft_server::RaftServer::new(RaftService { raft, elections })
            .max_decoding_message_size(64 * 1024 * 1024)
    }
}

fn bad_request(e: String) -> tonic::Status {
    tonic::Status::invalid_argument(e)
}

fn reply<T: Serialize>(value: &T) -> Result<tonic::Response<pb::RaftMessage>, tonic::Status> {
    encode(value)
        .map(tonic::Response::new)
        .map_err(|e| tonic::Status::internal(e.to_string()))
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn vote(
        &self,
        request: tonic::Request<pb::RaftMessage>,
    ) -> Result<tonic::Response<pb::RaftMessage>, tonic::Status> {
        let rpc: VoteRequest<NodeId> = decode(request.get_ref()).map_err(bad_request)?;
        let (term, theirs) = (rpc.vote.leader_id.term, rpc.last_log_id);
        let result = self.raft.vote(rpc).await;
        match &result {
            // A vote granted restarts the timer, as a leader heard does.
            Ok(r) if r.vote_granted => {
                self.elections.asked(term);
                self.elections.heard();
            }
            // Refused: a candidate whose log is behind this node's cannot
            // win, and this node is the one that should campaign.
            Ok(r) if r.last_log_id > theirs => {
                let lease = Duration::from_millis(self.raft.config().election_timeout_max);
                self.elections.refused(term, lease);
            }
            Ok(_) => self.elections.asked(term),
            Err(_) => {}
        }
        reply(&result)
    }

    async fn append_entries(
        &self,
        request: tonic::Request<pb::RaftMessage>,
    ) -> Result<tonic::Response<pb::RaftMessage>, tonic::Status> {
        let rpc: AppendEntriesRequest<TypeConfig> =
            decode(request.get_ref()).map_err(bad_request)?;
        let entries = !rpc.entries.is_empty();
        // A follower's append of entries, its flush included.
        let start = tokio::time::Instant::now();
        let result = self.raft.append_entries(rpc).await;
        if entries {
            metrics::histogram!("tenure_raft_follower_append_seconds")
                .record(start.elapsed().as_secs_f64());
        }
        // Accepted from a leader of this term or a later one: it is alive.
        if result
            .as_ref()
            .is_ok_and(|r| !matches!(r, AppendEntriesResponse::HigherVote(_)))
        {
            self.elections.heard();
        }
        reply(&result)
    }

    async fn install_snapshot(
        &self,
        request: tonic::Request<pb::RaftMessage>,
    ) -> Result<tonic::Response<pb::RaftMessage>, tonic::Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> =
            decode(request.get_ref()).map_err(bad_request)?;
        let result = self.raft.install_snapshot(rpc).await;
        if result.is_ok() {
            self.elections.heard();
        }
        reply(&result)
    }

    async fn control(
        &self,
        request: tonic::Request<pb::RaftMessage>,
    ) -> Result<tonic::Response<pb::RaftMessage>, tonic::Status> {
        let control: Control = decode(request.get_ref()).map_err(bad_request)?;
        let done: Result<(), String> = match control {
            Control::Elections(enabled) => {
                self.elections.enable(enabled);
                Ok(())
            }
            Control::Campaign => self.raft.trigger().elect().await.map_err(|e| e.to_string()),
            Control::Observe => Ok(()),
        };
        let m = self.raft.metrics().borrow().clone();
        // A follower names its leader only while it hears it (within a
        // voter's lease): a campaigner's pre-vote asks exactly that.
        let lease = Duration::from_millis(self.raft.config().election_timeout_max);
        let hears = m.state == openraft::ServerState::Leader || self.elections.heard_within(lease);
        let observed = Observed {
            leader: m.current_leader.filter(|_| hears),
            term: m.current_term,
        };
        reply(&done.map(|()| observed))
    }
}
