//! The client: endpoints, the leader it follows, retries.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tenure_core::Reason;
use tenure_proto::convert;
use tenure_proto::v1;
use tenure_proto::v1::lock_client::LockClient;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::guard::LockGuard;
use crate::keepalive::KeepAlive;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cluster refused the request; `reason` is the stable reason.
    #[error("{reason}: {message}")]
    Refused {
        /// The stable reason (LOCK_HELD, LEASE_EXPIRED, …).
        reason: Reason,
        /// Words for people.
        message: String,
    },
    /// No endpoint could be reached, or none answered in time.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// An endpoint or a value was malformed.
    #[error("invalid: {0}")]
    Invalid(String),
}

impl Error {
    /// The stable reason of a refusal (UNAVAILABLE when nothing answered).
    pub fn reason(&self) -> Reason {
        match self {
            Error::Refused { reason, .. } => *reason,
            Error::Unavailable(_) => Reason::Unavailable,
            Error::Invalid(_) => Reason::InvalidRequest,
        }
    }
}

/// How to reach the cluster, and as whom.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `host:port` of any nodes; the leader is found from there.
    pub endpoints: Vec<String>,
    /// The tenant every call acts in.
    pub tenant: String,
    /// Who this client is (sent as `x-owner-id` to a development cluster).
    pub owner: String,
    /// The clock rate drift the deadline allows for (0.1 = 10 %).
    pub max_drift: f64,
    /// How long one call, with its retries, may take.
    pub call_timeout: Duration,
    /// How long one attempt at one endpoint may take before the next
    /// endpoint is tried (a leader that went silent, say).
    pub try_timeout: Duration,
    /// How to open a channel to an endpoint; `None`: TCP.
    pub dialer: Option<Dialer>,
    /// The first half of every request_id this client makes (the second
    /// counts up); `None`: random. A simulation fixes it, so that a seed
    /// replays the same bytes.
    pub request_id_prefix: Option<u64>,
}

/// Opens a channel to `host:port` some other way than TCP (a simulated
/// network, say).
#[derive(Clone)]
pub struct Dialer(pub Arc<Dial>);

/// What a [`Dialer`] calls: `host:port` in, a channel or why not out.
pub type Dial = dyn Fn(&str) -> Result<Channel, String> + Send + Sync;

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dialer(..)")
    }
}

impl ClientConfig {
    /// A configuration with 10 % drift allowance and 10 s per call.
    pub fn new<I, S>(endpoints: I, tenant: &str, owner: &str) -> ClientConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            tenant: tenant.into(),
            owner: owner.into(),
            max_drift: 0.1,
            call_timeout: Duration::from_secs(10),
            try_timeout: Duration::from_secs(2),
            dialer: None,
            request_id_prefix: None,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) config: ClientConfig,
    /// request_id = prefix, then a count.
    id_prefix: u64,
    id_count: std::sync::atomic::AtomicU64,
    leader: Mutex<Option<String>>,
    /// Ordered, so they close in the same order every run.
    channels: Mutex<BTreeMap<String, Channel>>,
    pub(crate) keepalive: KeepAlive,
}

/// A connection to a Tenure cluster. Cheap to clone; clones share the
/// leader they follow and the keep-alive stream.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

fn refused(status: &tonic::Status) -> Error {
    match convert::reason_of(status) {
        Some(reason) => Error::Refused {
            reason,
            message: status.message().to_owned(),
        },
        None => Error::Unavailable(status.message().to_owned()),
    }
}

/// Whether the same request may succeed when sent again (elsewhere).
fn retryable(status: &tonic::Status) -> bool {
    match convert::reason_of(status) {
        Some(r) => r.is_retryable(),
        None => matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
        ),
    }
}

impl Client {
    /// A fresh request_id: unique to this client, the same on every retry
    /// of one request.
    pub(crate) fn request_id(&self) -> String {
        let n = self
            .inner
            .id_count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("rc-{:016x}{n:016x}", self.inner.id_prefix)
    }

    /// Connects: one endpoint must answer.
    pub async fn connect(config: ClientConfig) -> Result<Client, Error> {
        if config.endpoints.is_empty() {
            return Err(Error::Invalid("no endpoints".into()));
        }
        let client = Client {
            inner: Arc::new(Inner {
                id_prefix: config.request_id_prefix.unwrap_or_else(rand::random),
                id_count: std::sync::atomic::AtomicU64::new(0),
                config,
                leader: Mutex::new(None),
                channels: Mutex::new(BTreeMap::new()),
                keepalive: KeepAlive::default(),
            }),
        };
        client
            .get("tenure-client-probe")
            .await
            .map(|_| ())
            .or_else(|e| match e {
                Error::Refused { .. } => Ok(()),
                other => Err(other),
            })?;
        client.inner.keepalive.start(client.clone());
        Ok(client)
    }

    pub(crate) fn channel(&self, addr: &str) -> Result<Channel, Error> {
        let mut channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        if let Some(Dialer(dial)) = &self.inner.config.dialer {
            let c = dial(addr).map_err(|e| Error::Invalid(format!("{addr}: {e}")))?;
            channels.insert(addr.to_owned(), c.clone());
            return Ok(c);
        }
        let c = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Error::Invalid(format!("{addr}: {e}")))?
            .connect_timeout(Duration::from_secs(1))
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(1))
            .connect_lazy();
        channels.insert(addr.to_owned(), c.clone());
        Ok(c)
    }

    /// Where to send the next call: the leader if known, then every endpoint.
    pub(crate) fn candidates(&self) -> Vec<String> {
        let leader = self
            .inner
            .leader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        leader
            .into_iter()
            .chain(self.inner.config.endpoints.iter().cloned())
            .collect()
    }

    pub(crate) fn follow(&self, metadata: &tonic::metadata::MetadataMap) {
        if let Some(addr) = metadata
            .get(convert::LEADER_METADATA)
            .and_then(|v| v.to_str().ok())
        {
            *self
                .inner
                .leader
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(addr.to_owned());
        }
    }

    fn request<T>(&self, body: T) -> Result<tonic::Request<T>, Error> {
        let mut r = tonic::Request::new(body);
        let owner = self
            .inner
            .config
            .owner
            .parse()
            .map_err(|_| Error::Invalid("owner is not valid metadata".into()))?;
        r.metadata_mut().insert("x-owner-id", owner);
        Ok(r)
    }

    /// Sends one request, following leader hints and retrying what may
    /// succeed elsewhere, within the call timeout. The request is the same
    /// on every try (same request_id), so a retry never acts twice.
    pub(crate) async fn call<B, R, F, Fut>(&self, body: B, send: F) -> Result<R, Error>
    where
        B: Clone,
        F: FnMut(LockClient<Channel>, tonic::Request<B>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        self.call_for(body, Duration::ZERO, send).await
    }

    /// [`Client::call`] for a call the server may hold `extra` longer than
    /// an ordinary one (a waiting acquire waits in the queue).
    pub(crate) async fn call_for<B, R, F, Fut>(
        &self,
        body: B,
        extra: Duration,
        mut send: F,
    ) -> Result<R, Error>
    where
        B: Clone,
        F: FnMut(LockClient<Channel>, tonic::Request<B>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let deadline = Instant::now() + self.inner.config.call_timeout + extra;
        let mut last = String::from("no endpoint tried");
        loop {
            for addr in self.candidates() {
                let lock = LockClient::new(self.channel(&addr)?);
                let attempt = send(lock, self.request(body.clone())?);
                let give_up = deadline.min(Instant::now() + self.inner.config.try_timeout + extra);
                let answer = match tokio::time::timeout_at(give_up, attempt).await {
                    Ok(answer) => answer,
                    Err(_) if give_up < deadline => {
                        // Silent: forget it as leader, try the others.
                        last = format!("{addr}: no answer in time");
                        self.inner
                            .leader
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .take_if(|l| *l == addr);
                        continue;
                    }
                    Err(_) => return Err(Error::Unavailable(format!("{addr}: no answer in time"))),
                };
                match answer {
                    Ok(r) => {
                        self.follow(r.metadata());
                        return Ok(r.into_inner());
                    }
                    Err(s) if retryable(&s) => {
                        if let Some(leader) = convert::leader_of(&s) {
                            *self
                                .inner
                                .leader
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner) = Some(leader);
                        }
                        last = format!("{addr}: {}", s.message());
                    }
                    Err(s) => return Err(refused(&s)),
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Unavailable(last));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Takes `key` now, or fails with LOCK_HELD.
    pub async fn acquire(&self, key: &str, ttl: Duration) -> Result<LockGuard, Error> {
        self.acquire_waiting(key, ttl, Duration::ZERO).await
    }

    /// Takes `key`, waiting in its FIFO queue up to `wait` (WAIT_TIMEOUT).
    pub async fn acquire_waiting(
        &self,
        key: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<LockGuard, Error> {
        let body = v1::AcquireRequest {
            tenant_id: self.inner.config.tenant.clone(),
            lock_key: key.to_owned(),
            owner_id: String::new(),
            request_id: self.request_id(),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            wait_timeout_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        };
        // Rule 5: the deadline counts from the first attempt's send time.
        let sent = Instant::now();
        let lease = self
            .call_for(body, wait, |mut c, r| async move { c.acquire(r).await })
            .await?;
        Ok(LockGuard::new(self.clone(), lease, sent))
    }

    /// The state of `key`, linearizable.
    pub async fn get(&self, key: &str) -> Result<v1::LockState, Error> {
        let body = v1::GetRequest {
            tenant_id: self.inner.config.tenant.clone(),
            lock_key: key.to_owned(),
            consistency: v1::Consistency::Linearizable as i32,
        };
        self.call(body, |mut c, r| async move { c.get(r).await })
            .await
    }

    pub(crate) async fn release_lease(&self, lease_id: &str) -> Result<v1::Lease, Error> {
        let body = v1::ReleaseRequest {
            tenant_id: self.inner.config.tenant.clone(),
            lease_id: lease_id.to_owned(),
            owner_id: String::new(),
            request_id: self.request_id(),
        };
        self.call(body, |mut c, r| async move { c.release(r).await })
            .await
    }

    pub(crate) fn owner_request<T>(&self, body: T) -> Result<tonic::Request<T>, Error> {
        self.request(body)
    }
}
