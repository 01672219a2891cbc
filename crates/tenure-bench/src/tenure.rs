//! The Tenure side: the lock service's gRPC API, as a careful client uses
//! it — calls go to the leader each answer names, and a refusal that may
//! pass (a leader change, an unreachable node) is retried with the same
//! request_id, so a retry never takes a second lease.

use std::future::Future;
use std::time::Duration;

use tenure_proto::convert;
use tenure_proto::v1;
use tenure_proto::v1::lock_client::LockClient;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use crate::target::{Downstream, OpError, Target};

/// How long one call, retries included, may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between retries of a refused call.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// A Tenure cluster reached through `endpoints`.
#[derive(Clone, Debug)]
pub struct TenureTarget {
    endpoints: Vec<String>,
    tenant: String,
    token: Option<String>,
    /// Makes owner names unique to this run, so a run never meets a lease
    /// an earlier run left behind as its own.
    run: u64,
}

impl TenureTarget {
    /// A target for the cluster at `endpoints` (`host:port`), acting in
    /// `tenant`, with a bearer `token` for clusters that require one.
    pub fn new(
        endpoints: Vec<String>,
        tenant: String,
        token: Option<String>,
        run: u64,
    ) -> TenureTarget {
        TenureTarget {
            endpoints,
            tenant,
            token,
            run,
        }
    }
}

/// One client's connections to every node, and its leases.
#[derive(Debug)]
pub struct TenureConn {
    nodes: Vec<LockClient<Channel>>,
    endpoints: Vec<String>,
    /// The node calls go to: the leader, as far as this client knows.
    current: usize,
    tenant: String,
    owner: String,
    token: Option<String>,
    next_request: u64,
    retries: u64,
    /// Leases of the keep-alive workload.
    held: Vec<String>,
    stream: Option<(
        mpsc::Sender<v1::KeepAliveRequest>,
        Streaming<v1::KeepAliveResponse>,
    )>,
}

fn reason_name(status: &Status) -> String {
    convert::reason_of(status).map_or_else(
        || format!("GRPC_{:?}", status.code()).to_uppercase(),
        |r| r.as_str().to_owned(),
    )
}

impl TenureConn {
    fn request<T>(&self, message: T) -> Request<T> {
        let mut r = Request::new(message);
        r.set_timeout(CALL_TIMEOUT);
        if let Ok(v) = self.owner.parse() {
            r.metadata_mut().insert("x-owner-id", v);
        }
        if let Some(Ok(v)) = self.token.as_ref().map(|t| format!("Bearer {t}").parse()) {
            r.metadata_mut().insert("authorization", v);
        }
        r
    }

    fn request_id(&mut self) -> String {
        self.next_request += 1;
        format!("{}-{}", self.owner, self.next_request)
    }

    /// Follows the leader an answer names, if it is one of our endpoints.
    fn follow(&mut self, leader: Option<String>) {
        if let Some(i) = leader.and_then(|l| self.endpoints.iter().position(|e| *e == l)) {
            self.current = i;
        }
    }

    /// Calls `call` on the current node, following the leader and retrying
    /// retryable refusals until [`CALL_TIMEOUT`].
    async fn call<M, R, F, Fut>(&mut self, message: M, call: F) -> Result<R, OpError>
    where
        M: Clone,
        F: Fn(LockClient<Channel>, Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let node = self.nodes[self.current].clone();
            match call(node, self.request(message.clone())).await {
                Ok(response) => {
                    let leader = response
                        .metadata()
                        .get(convert::LEADER_METADATA)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    self.follow(leader);
                    return Ok(response.into_inner());
                }
                Err(status) => {
                    let reason = convert::reason_of(&status);
                    let leader = convert::leader_of(&status);
                    if leader.is_none()
                        && reason.is_none_or(|r| r == tenure_core::Reason::Unavailable)
                    {
                        // Unreachable, or it knows no leader: try the next node.
                        self.current = (self.current + 1) % self.nodes.len();
                    }
                    self.follow(leader);
                    let retryable = reason.is_none_or(|r| r.is_retryable());
                    if !retryable || Instant::now() + RETRY_PAUSE >= deadline {
                        return Err(OpError::new(reason_name(&status)));
                    }
                    self.retries += 1;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }

    async fn acquire(
        &mut self,
        key: &str,
        ttl: Duration,
        wait: Option<Duration>,
    ) -> Result<v1::Lease, OpError> {
        let request = v1::AcquireRequest {
            tenant_id: self.tenant.clone(),
            lock_key: key.to_owned(),
            owner_id: self.owner.clone(),
            request_id: self.request_id(),
            ttl_ms: ttl.as_millis() as u64,
            wait_timeout_ms: wait.map_or(0, |w| w.as_millis() as u64),
        };
        self.call(request, |mut c, r| async move { c.acquire(r).await })
            .await
    }

    async fn release(&mut self, lease_id: String) -> Result<(), OpError> {
        let request = v1::ReleaseRequest {
            tenant_id: self.tenant.clone(),
            lease_id,
            owner_id: self.owner.clone(),
            request_id: self.request_id(),
        };
        self.call(request, |mut c, r| async move { c.release(r).await })
            .await
            .map(|_| ())
    }

    async fn read(
        &mut self,
        key: &str,
        consistency: v1::Consistency,
    ) -> Result<v1::LockState, OpError> {
        let request = v1::GetRequest {
            tenant_id: self.tenant.clone(),
            lock_key: key.to_owned(),
            consistency: consistency as i32,
        };
        self.call(request, |mut c, r| async move { c.get(r).await })
            .await
    }

    async fn open_stream(&mut self) -> Result<(), OpError> {
        let (tx, rx) = mpsc::channel(self.held.len().max(1));
        let mut node = self.nodes[self.current].clone();
        let responses = node
            .keep_alive(self.request(ReceiverStream::new(rx)))
            .await
            .map_err(|s| OpError::new(reason_name(&s)))?
            .into_inner();
        self.stream = Some((tx, responses));
        Ok(())
    }
}

impl Target for TenureTarget {
    type Conn = TenureConn;

    fn system(&self) -> &'static str {
        "tenure"
    }

    async fn connect(&self, client: u32) -> Result<TenureConn, OpError> {
        let mut nodes = Vec::new();
        for e in &self.endpoints {
            let endpoint = Endpoint::from_shared(format!("http://{e}"))
                .map_err(|_| OpError::new("INVALID_ENDPOINT"))?
                .tcp_nodelay(true)
                .connect_timeout(Duration::from_secs(2))
                .http2_keep_alive_interval(Duration::from_secs(5));
            nodes.push(LockClient::new(endpoint.connect_lazy()));
        }
        let mut conn = TenureConn {
            nodes,
            endpoints: self.endpoints.clone(),
            current: client as usize % self.endpoints.len().max(1),
            tenant: self.tenant.clone(),
            owner: format!("bench-{:x}-{client}", self.run),
            token: self.token.clone(),
            next_request: 0,
            retries: 0,
            held: Vec::new(),
            stream: None,
        };
        // A read finds the leader (and proves the cluster answers).
        for consistency in [v1::Consistency::Stale, v1::Consistency::Linearizable] {
            conn.read("bench/probe", consistency).await?;
        }
        Ok(conn)
    }

    async fn lock_cycle(
        conn: &mut TenureConn,
        key: &str,
        ttl: Duration,
        wait: Option<Duration>,
        downstream: Option<&Downstream>,
    ) -> Result<(), OpError> {
        let lease = conn.acquire(key, ttl, wait).await?;
        let written = downstream.map_or(Ok(()), |d| d.write(key, lease.fencing_token));
        conn.release(lease.lease_id).await?;
        written
    }

    async fn get(conn: &mut TenureConn, key: &str) -> Result<(), OpError> {
        conn.read(key, v1::Consistency::Linearizable)
            .await
            .map(|_| ())
    }

    async fn hold(conn: &mut TenureConn, keys: &[String], ttl: Duration) -> Result<(), OpError> {
        for key in keys {
            let lease = conn.acquire(key, ttl, None).await?;
            conn.held.push(lease.lease_id);
        }
        Ok(())
    }

    async fn keep_alive_round(conn: &mut TenureConn) -> Result<u64, OpError> {
        if conn.stream.is_none() {
            conn.open_stream().await?;
        }
        let Some((tx, responses)) = conn.stream.as_mut() else {
            return Err(OpError::new("NO_STREAM"));
        };
        for (seq, lease_id) in conn.held.iter().enumerate() {
            let request = v1::KeepAliveRequest {
                tenant_id: conn.tenant.clone(),
                lease_id: lease_id.clone(),
                owner_id: conn.owner.clone(),
                client_seq: seq as u64,
            };
            if tx.send(request).await.is_err() {
                conn.stream = None;
                return Err(OpError::new("STREAM_CLOSED"));
            }
        }
        let mut alive = 0;
        let mut lost = None;
        for _ in 0..conn.held.len() {
            match responses.next().await {
                Some(Ok(r)) if r.alive => alive += 1,
                Some(Ok(r)) => lost = Some(r.reason),
                Some(Err(status)) => {
                    conn.stream = None;
                    return Err(OpError::new(reason_name(&status)));
                }
                None => {
                    conn.stream = None;
                    return Err(OpError::new("STREAM_CLOSED"));
                }
            }
        }
        match lost {
            Some(reason) => Err(OpError::new(if reason.is_empty() {
                "LEASE_LOST".into()
            } else {
                reason
            })),
            None => Ok(alive),
        }
    }

    fn retries(conn: &TenureConn) -> u64 {
        conn.retries
    }

    async fn release_all(conn: &mut TenureConn) {
        conn.stream = None;
        for lease_id in std::mem::take(&mut conn.held) {
            let _ = conn.release(lease_id).await;
        }
    }
}
