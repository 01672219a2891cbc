//! The transport: channels to the nodes, the leader it follows, the caller's
//! identity on every request, per-try and per-call timeouts, and retries of
//! the same request on retryable refusals.
//!
//! This is the only code in the workspace (outside the server's own
//! forwarding) that calls a cluster. It knows nothing of leases or guards:
//! it sends a request, built once, to whichever node should answer it, and
//! hands back the answer or a typed [`Error`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tenure_core::Reason;
use tenure_proto::convert;
use tokio::time::Instant;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

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

    /// Whether the same request may succeed when sent again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Refused { reason, .. } => reason.is_retryable(),
            Error::Unavailable(_) => true,
            Error::Invalid(_) => false,
        }
    }

    /// A refusal read from a status: its reason, or UNAVAILABLE when the
    /// status carries none (a transport failure).
    pub(crate) fn from_status(status: &tonic::Status) -> Error {
        match convert::reason_of(status) {
            Some(reason) => Error::Refused {
                reason,
                message: status.message().to_owned(),
            },
            None => Error::Unavailable(format!("{:?}: {}", status.code(), status.message())),
        }
    }
}

/// Who the client is to the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// The owner name a development cluster (no auth file) trusts, sent as
    /// `x-owner-id`. A cluster with an auth file ignores it: its owners are
    /// the principals the tokens name.
    pub owner: String,
    /// The bearer token for a cluster with an auth file, sent as
    /// `authorization: Bearer …`.
    pub token: Option<String>,
    /// Claims the admin role on a development cluster, sent as
    /// `x-role: ADMIN`.
    pub admin: bool,
}

/// TLS to the cluster: the CA that signs the nodes' certificates and, for
/// a cluster that takes them (`--client-ca`), this client's certificate.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// The CA certificate(s), PEM.
    pub ca_pem: Vec<u8>,
    /// This client's certificate chain and key, PEM.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The name the nodes' certificates must carry, when it is not the
    /// host of the endpoint (a node reached through a tunnel, say).
    pub domain: Option<String>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("client_certificate", &self.identity.is_some())
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Reads the CA and, when both are given, this client's certificate
    /// and key from PEM files.
    pub fn from_files(
        ca: &std::path::Path,
        cert: Option<&std::path::Path>,
        key: Option<&std::path::Path>,
    ) -> Result<TlsConfig, Error> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| Error::Invalid(format!("{}: {e}", p.display())))
        };
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
            (None, None) => None,
            _ => {
                return Err(Error::Invalid(
                    "a client certificate needs both --tls-cert and --tls-key".into(),
                ));
            }
        };
        Ok(TlsConfig {
            ca_pem: read(ca)?,
            identity,
            domain: None,
        })
    }

    fn tonic(&self) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        if let Some((cert, key)) = &self.identity {
            config = config.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        if let Some(domain) = &self.domain {
            config = config.domain_name(domain.clone());
        }
        config
    }
}

/// Opens a channel to `host:port` some other way than TCP or TLS: a
/// simulated network, or a channel with a custom connector. The one seam through which every
/// connection of a client is made.
#[derive(Clone)]
pub struct Dialer(pub Arc<Dial>);

/// What a [`Dialer`] calls: `host:port` in, a channel or why not out.
pub type Dial = dyn Fn(&str) -> Result<Channel, String> + Send + Sync;

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dialer(..)")
    }
}

/// The transport's settings (a part of `ClientConfig`).
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) endpoints: Vec<String>,
    pub(crate) identity: Identity,
    pub(crate) call_timeout: Duration,
    pub(crate) try_timeout: Duration,
    pub(crate) dialer: Option<Dialer>,
    pub(crate) tls: Option<TlsConfig>,
    pub(crate) request_id_prefix: Option<u64>,
}

/// Whether `host:port` names this machine: a loopback address or
/// `localhost`.
fn loopback(addr: &str) -> bool {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Where a call goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    /// To the leader, following hints, trying every endpoint.
    Leader,
    /// To this node only (a per-node status, say); no following.
    Node(&'a str),
}

/// Pause between rounds over every endpoint when none could answer.
const ROUND_PAUSE: Duration = Duration::from_millis(100);

/// The transport of one client: shared by its clones.
pub(crate) struct Transport {
    settings: Settings,
    owner: Option<AsciiMetadataValue>,
    bearer: Option<AsciiMetadataValue>,
    id_prefix: u64,
    id_count: AtomicU64,
    /// Tries that met a retryable refusal, since the client was made.
    retries: AtomicU64,
    leader: Mutex<Option<String>>,
    /// Ordered, so they close in the same order every run.
    channels: Mutex<BTreeMap<String, Channel>>,
}

/// Whether a failed attempt may succeed elsewhere or later.
fn retryable(status: &tonic::Status) -> bool {
    match convert::reason_of(status) {
        Some(r) => r.is_retryable(),
        None => matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
        ),
    }
}

impl Transport {
    pub(crate) fn new(settings: Settings) -> Result<Transport, Error> {
        if settings.endpoints.is_empty() {
            return Err(Error::Invalid("no endpoints".into()));
        }
        let owner = if settings.identity.owner.is_empty() {
            None
        } else {
            Some(settings.identity.owner.parse().map_err(|_| {
                Error::Invalid(format!(
                    "owner {:?} is not valid metadata",
                    settings.identity.owner
                ))
            })?)
        };
        let bearer = match &settings.identity.token {
            Some(t) => {
                let mut v: AsciiMetadataValue = format!("Bearer {t}")
                    .parse()
                    .map_err(|_| Error::Invalid("the token is not valid metadata".into()))?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        Ok(Transport {
            id_prefix: settings.request_id_prefix.unwrap_or_else(rand::random),
            settings,
            owner,
            bearer,
            id_count: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            leader: Mutex::new(None),
            channels: Mutex::new(BTreeMap::new()),
        })
    }

    /// A fresh request_id: unique to this client, the same on every retry
    /// of one request.
    pub(crate) fn request_id(&self) -> String {
        let n = self.id_count.fetch_add(1, Ordering::Relaxed);
        format!("rc-{:016x}{n:016x}", self.id_prefix)
    }

    /// How many tries met a retryable refusal (and were sent again).
    pub(crate) fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// The leader this client follows now, if it knows one.
    pub(crate) fn leader(&self) -> Option<String> {
        self.leader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_leader(&self, addr: Option<String>) {
        *self.leader.lock().unwrap_or_else(PoisonError::into_inner) = addr;
    }

    /// Forgets the leader: the next call asks the endpoints again.
    pub(crate) fn clear_leader(&self) {
        self.set_leader(None);
    }

    /// Forgets `addr` as the leader (it went silent).
    pub(crate) fn forget_leader(&self, addr: &str) {
        self.leader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take_if(|l| l == addr);
    }

    /// Follows the leader an answer's metadata names.
    pub(crate) fn follow(&self, metadata: &MetadataMap) {
        if let Some(addr) = metadata
            .get(convert::LEADER_METADATA)
            .and_then(|v| v.to_str().ok())
            .filter(|a| !a.is_empty())
        {
            self.set_leader(Some(addr.to_owned()));
        }
    }

    /// Follows the leader a refusal names.
    pub(crate) fn follow_refusal(&self, status: &tonic::Status) {
        if let Some(leader) = convert::leader_of(status).filter(|a| !a.is_empty()) {
            self.set_leader(Some(leader));
        }
    }

    /// The channel to `addr`, opened lazily once and then shared.
    pub(crate) fn channel(&self, addr: &str) -> Result<Channel, Error> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let c = match &self.settings.dialer {
            Some(Dialer(dial)) => dial(addr).map_err(|e| Error::Invalid(format!("{addr}: {e}")))?,
            None => {
                let invalid = |e: tonic::transport::Error| Error::Invalid(format!("{addr}: {e}"));
                let endpoint = match &self.settings.tls {
                    Some(tls) => Endpoint::from_shared(format!("https://{addr}"))
                        .map_err(invalid)?
                        .tls_config(tls.tonic())
                        .map_err(invalid)?,
                    None => {
                        // A bearer token in clear is a token given away.
                        if self.settings.identity.token.is_some() && !loopback(addr) {
                            return Err(Error::Invalid(format!(
                                "refusing to send a bearer token in clear to {addr}: connect over TLS (--tls-ca)"
                            )));
                        }
                        Endpoint::from_shared(format!("http://{addr}")).map_err(invalid)?
                    }
                };
                endpoint
                    .tcp_nodelay(true)
                    .connect_timeout(Duration::from_secs(1))
                    .http2_keep_alive_interval(Duration::from_secs(1))
                    .keep_alive_timeout(Duration::from_secs(1))
                    .connect_lazy()
            }
        };
        channels.insert(addr.to_owned(), c.clone());
        Ok(c)
    }

    /// Where to send the next call: the leader if known, then every endpoint.
    pub(crate) fn candidates(&self) -> Vec<String> {
        let mut out: Vec<String> = self.leader().into_iter().collect();
        for e in &self.settings.endpoints {
            if !out.contains(e) {
                out.push(e.clone());
            }
        }
        out
    }

    /// `body` as a request carrying the caller's identity.
    pub(crate) fn request<T>(&self, body: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(body);
        if let Some(owner) = &self.owner {
            r.metadata_mut().insert("x-owner-id", owner.clone());
        }
        if let Some(bearer) = &self.bearer {
            r.metadata_mut().insert("authorization", bearer.clone());
        }
        if self.settings.identity.admin {
            r.metadata_mut()
                .insert("x-role", AsciiMetadataValue::from_static("ADMIN"));
        }
        r
    }

    /// Sends one request built by `body` along `route`, following leader
    /// hints and retrying what may succeed elsewhere, within the call
    /// timeout plus `extra` (the time a waiting acquire may wait in the
    /// queue). The body is the same on every try (same request_id), so a
    /// retry never acts twice. `send` turns a channel and a request into
    /// the call of one RPC; it answers with whatever the RPC returns (a
    /// message, or a stream of them).
    pub(crate) async fn call<B, R, F, Fut>(
        &self,
        route: Route<'_>,
        body: &B,
        extra: Duration,
        mut send: F,
    ) -> Result<R, Error>
    where
        B: Clone,
        F: FnMut(Channel, tonic::Request<B>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let deadline = Instant::now() + self.settings.call_timeout + extra;
        let mut last = String::from("no endpoint tried");
        loop {
            let mut queue: std::collections::VecDeque<String> = match route {
                Route::Leader => self.candidates().into(),
                Route::Node(addr) => [addr.to_owned()].into(),
            };
            // A refusal that names another node as leader sends the next
            // try there at once (a few hops per round at most).
            let mut hops = 0;
            while let Some(addr) = queue.pop_front() {
                let attempt = send(self.channel(&addr)?, self.request(body.clone()));
                let give_up = deadline.min(Instant::now() + self.settings.try_timeout + extra);
                let answer = match tokio::time::timeout_at(give_up, attempt).await {
                    Ok(answer) => answer,
                    Err(_) if give_up < deadline => {
                        // Silent: forget it as leader, try the others.
                        last = format!("{addr}: no answer in time");
                        self.forget_leader(&addr);
                        continue;
                    }
                    Err(_) => return Err(Error::Unavailable(format!("{addr}: no answer in time"))),
                };
                match answer {
                    Ok(r) => {
                        if route == Route::Leader {
                            self.follow(r.metadata());
                        }
                        return Ok(r.into_inner());
                    }
                    Err(s) if retryable(&s) => {
                        self.retries.fetch_add(1, Ordering::Relaxed);
                        if route == Route::Leader {
                            self.follow_refusal(&s);
                            match convert::leader_of(&s) {
                                Some(l) if l != addr && hops < 3 => {
                                    hops += 1;
                                    queue.retain(|a| *a != l);
                                    queue.push_front(l);
                                }
                                Some(_) => {}
                                // Unreachable, or knows no leader: not one to follow.
                                None => self.forget_leader(&addr),
                            }
                        }
                        tracing::debug!(addr, code = ?s.code(), message = s.message(), "retryable refusal");
                        last = format!("{addr}: {}", s.message());
                    }
                    Err(s) => return Err(Error::from_status(&s)),
                }
            }
            if Instant::now() + ROUND_PAUSE >= deadline {
                return Err(Error::Unavailable(last));
            }
            tokio::time::sleep(ROUND_PAUSE).await;
        }
    }
}
