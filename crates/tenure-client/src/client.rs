//! The facade: every call a program makes of a Tenure cluster, taking and
//! returning tenure-core types; requests go through the transport, guards
//! are kept alive by the keep-alive layer.

use std::sync::Arc;
use std::time::Duration;

use tenure_core::{AuditEvent, LeaseView, LockView, Mode, TableConfig};
use tenure_proto::convert;
use tenure_proto::v1;
use tenure_proto::v1::admin_client::AdminClient;
use tenure_proto::v1::lock_client::LockClient;
use tokio::time::Instant;

use crate::admin::{
    Imported, Leadership, LimitChanges, Membership, NodeStatus, RestoreDone, RestoreOptions,
    SnapshotInfo,
};
use crate::guard::LockGuard;
use crate::keepalive::KeepAlive;
use crate::transport::{Dialer, Error, Identity, Route, Settings, TlsConfig, Transport};
use crate::watch::{Watch, WatchOptions};

/// How to reach the cluster, and as whom.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `host:port` of any nodes; the leader is found from there.
    pub endpoints: Vec<String>,
    /// The tenant every call acts in.
    pub tenant: String,
    /// Who this client is on a development cluster (no auth file), sent
    /// as `x-owner-id`. Ignored by a cluster with an auth file.
    pub owner: String,
    /// The bearer token for a cluster started with an auth file; the
    /// principal it names owns the leases this client takes.
    pub token: Option<String>,
    /// Whether this client claims the admin role on a development cluster
    /// (no auth file), sent as `x-role: ADMIN` as the reference's admin
    /// clients did; without it, admin calls there are FORBIDDEN. A cluster
    /// with an auth file ignores it: roles come from the principal.
    pub admin: bool,
    /// The clock rate drift the deadline allows for (0.1 = 10 %).
    pub max_drift: f64,
    /// How long one call, with its retries, may take.
    pub call_timeout: Duration,
    /// How long one attempt at one endpoint may take before the next
    /// endpoint is tried (a leader that went silent, say).
    pub try_timeout: Duration,
    /// How to open a channel to an endpoint; `None`: plain TCP. Every
    /// connection the client makes goes through this one seam.
    pub dialer: Option<Dialer>,
    /// TLS to the nodes; `None`: plain TCP (a loopback cluster).
    pub tls: Option<TlsConfig>,
    /// The first half of every request_id this client makes (the second
    /// counts up); `None`: random. A simulation fixes it, so that a seed
    /// replays the same bytes.
    pub request_id_prefix: Option<u64>,
}

impl ClientConfig {
    /// A configuration with 10 % drift allowance, 10 s per call and 2 s per
    /// try, without a token.
    pub fn new<I, S>(endpoints: I, tenant: &str, owner: &str) -> ClientConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            tenant: tenant.into(),
            owner: owner.into(),
            token: None,
            admin: false,
            max_drift: 0.1,
            call_timeout: Duration::from_secs(10),
            try_timeout: Duration::from_secs(2),
            dialer: None,
            tls: None,
            request_id_prefix: None,
        }
    }

    /// The same configuration over TLS.
    pub fn with_tls(mut self, tls: TlsConfig) -> ClientConfig {
        self.tls = Some(tls);
        self
    }

    /// The same configuration, claiming the admin role on a development
    /// cluster (see [`ClientConfig::admin`]).
    pub fn with_admin(mut self) -> ClientConfig {
        self.admin = true;
        self
    }

    /// The same configuration, presenting `token` as a bearer token.
    pub fn with_token(mut self, token: impl Into<String>) -> ClientConfig {
        self.token = Some(token.into());
        self
    }
}

/// A lease as the cluster answered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The lease.
    pub view: LeaseView,
    /// The time left until the leader's deadline when it answered (0 for
    /// a lease that ended).
    pub expires_in_ms: u64,
}

/// A lock as the cluster answered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockState {
    /// The lock.
    pub view: LockView,
    /// The holder's time left when the cluster answered (0 when free).
    pub expires_in_ms: u64,
    /// Every holder, in grant order, with its time left.
    pub holders: Vec<Lease>,
}

/// What [`Client::backup`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupWritten {
    /// Lines before the trailer (header and records).
    pub lines: u64,
    /// Bytes, trailer included.
    pub bytes: u64,
    /// SHA-256 of the lines before the trailer, as the trailer states it.
    pub sha256: String,
}

/// A page of [`Client::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListPage {
    /// The locks, in key order.
    pub locks: Vec<LockState>,
    /// Pass it to the next call for the next page; `None`: the last page.
    pub next_page_token: Option<String>,
}

/// One event of a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// The audit event.
    pub event: AuditEvent,
    /// Events before this one (at or after the requested start) may have
    /// been missed: the node no longer retains them.
    pub gap_before: bool,
}

/// An exported lease table: the snapshot's bytes and what the node said of
/// them, checked against the SHA-256 it sent.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// What the node said of the snapshot.
    pub meta: SnapshotInfo,
    /// The snapshot.
    pub bytes: Vec<u8>,
}

/// A keep-alive stream a program drives itself: see
/// [`Client::keep_alive_stream`].
pub struct KeepAliveStream {
    tenant: String,
    tx: tokio::sync::mpsc::Sender<v1::KeepAliveRequest>,
    answers: tonic::Streaming<v1::KeepAliveResponse>,
}

/// The answer to one renewal on a [`KeepAliveStream`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Renewed {
    /// The lease.
    pub lease_id: String,
    /// `Ok(time left)`, or the reason it was not renewed.
    pub result: Result<Duration, tenure_core::Reason>,
}

impl KeepAliveStream {
    /// Renews every lease in `leases` and waits for every answer. A broken
    /// stream is an error: open another.
    pub async fn renew_all(&mut self, leases: &[String]) -> Result<Vec<Renewed>, Error> {
        let KeepAliveStream {
            tenant,
            tx,
            answers,
        } = self;
        // Send and read at once: with more renewals in flight than the
        // stream buffers, a sender that read nothing until it had sent all
        // would wait on the server, and the server on it.
        let send = async {
            for (seq, lease_id) in leases.iter().enumerate() {
                let request = v1::KeepAliveRequest {
                    tenant_id: tenant.clone(),
                    lease_id: lease_id.clone(),
                    owner_id: String::new(),
                    client_seq: seq as u64,
                };
                if tx.send(request).await.is_err() {
                    return Err(Error::Unavailable("the keep-alive stream closed".into()));
                }
            }
            Ok(())
        };
        let receive = async {
            let mut out = Vec::with_capacity(leases.len());
            while out.len() < leases.len() {
                match answers.message().await {
                    Ok(Some(a)) => out.push(renewed(a)),
                    Ok(None) => {
                        return Err(Error::Unavailable("the keep-alive stream closed".into()));
                    }
                    Err(s) => return Err(Error::from_status(&s)),
                }
            }
            Ok(out)
        };
        let (sent, received) = tokio::join!(send, receive);
        sent?;
        received
    }
}

/// Options of an acquire.
#[derive(Clone, Debug, Default)]
pub struct AcquireOptions {
    /// How long to wait in the lock's FIFO queue (zero: LOCK_HELD at once).
    pub wait: Duration,
    /// The request's idempotency key; `None`: a fresh one. A retry with
    /// the same id gets the same lease.
    pub request_id: Option<String>,
    /// How to hold the lock: EXCLUSIVE (the default), SHARED, or one slot
    /// of a semaphore of N (every caller of the key must name the same N).
    pub mode: Mode,
}

impl AcquireOptions {
    /// Wait up to `wait` in the lock's queue.
    pub fn waiting(wait: Duration) -> AcquireOptions {
        AcquireOptions {
            wait,
            ..AcquireOptions::default()
        }
    }

    /// Hold the lock in `mode`.
    pub fn in_mode(mut self, mode: Mode) -> AcquireOptions {
        self.mode = mode;
        self
    }
}

/// Chunks of an import stream.
const IMPORT_CHUNK: usize = 1 << 20;

pub(crate) struct Inner {
    pub(crate) transport: Arc<Transport>,
    pub(crate) keepalive: KeepAlive,
    tenant: String,
    pub(crate) max_drift: f64,
}

/// A connection to a Tenure cluster. Cheap to clone; clones share the
/// leader they follow and the keep-alive stream.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn decoded<T>(r: Result<T, convert::ConvertError>) -> Result<T, Error> {
    r.map_err(|e| Error::Invalid(format!("the cluster answered something malformed: {e}")))
}

pub(crate) fn lease(l: &v1::Lease) -> Result<Lease, Error> {
    Ok(Lease {
        view: decoded(convert::lease_view(l))?,
        expires_in_ms: l.expires_in_ms,
    })
}

fn lock_state(s: &v1::LockState) -> Result<LockState, Error> {
    Ok(LockState {
        view: decoded(convert::lock_view(s))?,
        expires_in_ms: s.active_lease.as_ref().map_or(0, |l| l.expires_in_ms),
        holders: s.holders.iter().map(lease).collect::<Result<_, _>>()?,
    })
}

pub(crate) fn watch_event(e: &v1::WatchEvent) -> Result<WatchEvent, Error> {
    Ok(WatchEvent {
        event: decoded(convert::audit_event(e))?,
        gap_before: e.gap_before,
    })
}

impl Client {
    /// Connects: one endpoint must answer (a refusal counts as an answer).
    pub async fn connect(config: ClientConfig) -> Result<Client, Error> {
        let transport = Arc::new(Transport::new(Settings {
            endpoints: config.endpoints.clone(),
            identity: Identity {
                owner: config.owner.clone(),
                token: config.token.clone(),
                admin: config.admin,
            },
            call_timeout: config.call_timeout,
            try_timeout: config.try_timeout,
            dialer: config.dialer.clone(),
            tls: config.tls.clone(),
            request_id_prefix: config.request_id_prefix,
        })?);
        let drift = config.max_drift.clamp(0.0, 0.9);
        let client = Client {
            inner: Arc::new(Inner {
                keepalive: KeepAlive::new(&transport, &config.tenant, drift),
                transport,
                tenant: config.tenant,
                max_drift: drift,
            }),
        };
        // A stale read: any node answers it, with or without a leader.
        match client.get_with("tenure-client-probe", true).await {
            Ok(_) | Err(Error::Refused { .. }) => Ok(client),
            Err(e) => Err(e),
        }
    }

    fn t(&self) -> &Transport {
        &self.inner.transport
    }

    /// The tenant this client acts in.
    pub fn tenant(&self) -> &str {
        &self.inner.tenant
    }

    /// The leader this client follows now, as far as it knows.
    pub fn leader(&self) -> Option<String> {
        self.t().leader()
    }

    /// How many tries met a retryable refusal (a leader change, say) and
    /// were sent again, since this client connected.
    pub fn retries(&self) -> u64 {
        self.t().retries()
    }

    /// A fresh request_id for a mutating call.
    pub fn request_id(&self) -> String {
        self.t().request_id()
    }

    // ---------------------------------------------------------------------
    // Locks
    // ---------------------------------------------------------------------

    /// Takes `key` now, or fails with LOCK_HELD; the guard is kept alive.
    pub async fn acquire(&self, key: &str, ttl: Duration) -> Result<LockGuard, Error> {
        self.acquire_with(key, ttl, AcquireOptions::default()).await
    }

    /// Takes `key`, waiting in its FIFO queue up to `wait` (WAIT_TIMEOUT).
    pub async fn acquire_waiting(
        &self,
        key: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<LockGuard, Error> {
        self.acquire_with(key, ttl, AcquireOptions::waiting(wait))
            .await
    }

    /// Takes `key` SHARED, beside any other shared holders, waiting in its
    /// FIFO queue up to `wait` (a waiting exclusive request is served
    /// first); the guard is kept alive. Its fencing token is the key's next,
    /// like every grant's.
    pub async fn acquire_shared(
        &self,
        key: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<LockGuard, Error> {
        let options = AcquireOptions::waiting(wait).in_mode(Mode::Shared);
        self.acquire_with(key, ttl, options).await
    }

    /// Takes one of `limit` slots of the semaphore `key`, waiting in its
    /// FIFO queue up to `wait`; the guard is kept alive. Every caller of
    /// the key must name the same `limit` (LOCK_MODE_CONFLICT otherwise).
    pub async fn acquire_semaphore(
        &self,
        key: &str,
        limit: u32,
        ttl: Duration,
        wait: Duration,
    ) -> Result<LockGuard, Error> {
        let options = AcquireOptions::waiting(wait).in_mode(Mode::Semaphore(limit));
        self.acquire_with(key, ttl, options).await
    }

    /// Takes `key` as `options` say; the guard is kept alive.
    pub async fn acquire_with(
        &self,
        key: &str,
        ttl: Duration,
        options: AcquireOptions,
    ) -> Result<LockGuard, Error> {
        // Rule 5: the deadline counts from the first attempt's send time.
        let mut sent = Instant::now();
        let waited = !options.wait.is_zero();
        let mut granted = self.lease(key, ttl, options).await?;
        // A grant after a wait may come longer than a TTL after the first
        // send, and that deadline would be gone on arrival. A renewal sent
        // now (confirmed by a quorum read on the leader) gives a deadline
        // that counts from now instead.
        if waited && sent.elapsed() > ttl.mul_f64(1.0 - self.inner.max_drift) / 3 {
            let renewed_at = Instant::now();
            let id = granted.view.id.to_string();
            match self.renew(&id, None).await {
                Ok(renewed) => {
                    sent = renewed_at;
                    granted.expires_in_ms = renewed.expires_in_ms;
                }
                Err(e) if e.is_retryable() => {
                    tracing::debug!(lease = id, error = %e, "no renewal after the wait; the keep-alive will try");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(LockGuard::new(self.clone(), granted, sent))
    }

    /// Takes `key` as `options` say, and nothing more: no guard, no
    /// keep-alive (a one-shot acquire from a shell, say). Renew it with
    /// [`Client::renew`] before its TTL runs out.
    pub async fn lease(
        &self,
        key: &str,
        ttl: Duration,
        options: AcquireOptions,
    ) -> Result<Lease, Error> {
        let body = v1::AcquireRequest {
            tenant_id: self.inner.tenant.clone(),
            lock_key: key.to_owned(),
            owner_id: String::new(),
            request_id: options.request_id.unwrap_or_else(|| self.request_id()),
            ttl_ms: millis(ttl),
            wait_timeout_ms: millis(options.wait),
            mode: convert::lock_mode(options.mode) as i32,
            limit: options.mode.limit(),
        };
        let l = self
            .t()
            .call(Route::Leader, &body, options.wait, |c, r| async move {
                LockClient::new(c).acquire(r).await
            })
            .await?;
        lease(&l)
    }

    /// Renews a lease: keeping its TTL (`None`), or setting a new one.
    pub async fn renew(&self, lease_id: &str, ttl: Option<Duration>) -> Result<Lease, Error> {
        let body = v1::RenewRequest {
            tenant_id: self.inner.tenant.clone(),
            lease_id: lease_id.to_owned(),
            owner_id: String::new(),
            request_id: self.request_id(),
            ttl_ms: ttl.map_or(0, millis),
        };
        let l = self
            .t()
            .call(Route::Leader, &body, Duration::ZERO, |c, r| async move {
                LockClient::new(c).renew(r).await
            })
            .await?;
        lease(&l)
    }

    /// Renews many leases of this client's tenant in one call (keeping
    /// their TTLs): one answer per lease, in order, each renewed or lost
    /// with its reason. For a program that renews on its own schedule;
    /// guards keep themselves alive over one stream instead.
    pub async fn keep_alive_many(&self, lease_ids: &[String]) -> Result<Vec<Renewed>, Error> {
        let body = v1::KeepAliveManyRequest {
            tenant_id: self.inner.tenant.clone(),
            lease_ids: lease_ids.to_vec(),
            owner_id: String::new(),
        };
        let answer = self
            .t()
            .call(Route::Leader, &body, Duration::ZERO, |c, r| async move {
                LockClient::new(c).keep_alive_many(r).await
            })
            .await?;
        Ok(answer.leases.into_iter().map(renewed).collect())
    }

    /// Gives a lease up (a waiting one leaves the queue). `request_id`:
    /// the idempotency key, or `None` for a fresh one.
    pub async fn release(&self, lease_id: &str, request_id: Option<&str>) -> Result<Lease, Error> {
        let body = v1::ReleaseRequest {
            tenant_id: self.inner.tenant.clone(),
            lease_id: lease_id.to_owned(),
            owner_id: String::new(),
            request_id: request_id.map_or_else(|| self.request_id(), str::to_owned),
        };
        let l = self
            .t()
            .call(Route::Leader, &body, Duration::ZERO, |c, r| async move {
                LockClient::new(c).release(r).await
            })
            .await?;
        lease(&l)
    }

    /// The state of `key`, linearizable.
    pub async fn get(&self, key: &str) -> Result<LockState, Error> {
        self.get_with(key, false).await
    }

    /// The state of `key`; `stale`: the answering node's copy, possibly
    /// behind, without a quorum round.
    pub async fn get_with(&self, key: &str, stale: bool) -> Result<LockState, Error> {
        let body = v1::GetRequest {
            tenant_id: self.inner.tenant.clone(),
            lock_key: key.to_owned(),
            consistency: consistency(stale),
        };
        let s = self
            .t()
            .call(Route::Leader, &body, Duration::ZERO, |c, r| async move {
                LockClient::new(c).get(r).await
            })
            .await?;
        lock_state(&s)
    }

    /// One page of the locks whose key starts with `prefix`, linearizable;
    /// `page_token` from the previous page's `next_page_token`.
    pub async fn list(
        &self,
        prefix: &str,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<ListPage, Error> {
        let body = v1::ListRequest {
            tenant_id: self.inner.tenant.clone(),
            key_prefix: prefix.to_owned(),
            page_size,
            page_token: page_token.unwrap_or_default().to_owned(),
            consistency: consistency(false),
        };
        let r = self
            .t()
            .call(Route::Leader, &body, Duration::ZERO, |c, r| async move {
                LockClient::new(c).list(r).await
            })
            .await?;
        Ok(ListPage {
            locks: r.locks.iter().map(lock_state).collect::<Result<_, _>>()?,
            next_page_token: (!r.next_page_token.is_empty()).then_some(r.next_page_token),
        })
    }

    /// Opens a keep-alive stream of its own on the leader, for a program
    /// that renews many leases in rounds itself (the benchmark does).
    /// Guards need none of this: the client keeps them alive.
    pub async fn keep_alive_stream(&self) -> Result<KeepAliveStream, Error> {
        let (tx, answers) = crate::keepalive::open(self.t()).await?;
        Ok(KeepAliveStream {
            tenant: self.inner.tenant.clone(),
            tx,
            answers,
        })
    }

    /// Follows lock events (the audit stream) as `options` say. The watch
    /// resumes by itself after a broken stream, from the event after the
    /// last it delivered.
    pub async fn watch(&self, options: WatchOptions) -> Result<Watch, Error> {
        Watch::open(self.clone(), options).await
    }

    pub(crate) async fn open_watch(
        &self,
        options: &WatchOptions,
        from: u64,
    ) -> Result<tonic::Streaming<v1::WatchEvent>, Error> {
        let body = v1::WatchRequest {
            tenant_id: self.inner.tenant.clone(),
            key_prefix: options.prefix.clone(),
            from_sequence: from,
            include_all_tenants: options.all_tenants,
        };
        self.t()
            .call(Route::Leader, &body, Duration::ZERO, |c, r| async move {
                LockClient::new(c).watch(r).await
            })
            .await
    }

    // ---------------------------------------------------------------------
    // Admin (the admin role, on a cluster with an auth file)
    // ---------------------------------------------------------------------

    /// Frees `key` whoever holds it, for `reason`; with `lease_id`, only
    /// if that lease still holds it (a retry then changes nothing).
    pub async fn force_release(
        &self,
        key: &str,
        reason: &str,
        lease_id: Option<&str>,
    ) -> Result<LockState, Error> {
        let body = v1::ForceReleaseRequest {
            tenant_id: self.inner.tenant.clone(),
            lock_key: key.to_owned(),
            reason: reason.to_owned(),
            lease_id: lease_id.unwrap_or_default().to_owned(),
        };
        let s = self
            .t()
            .call(Route::Leader, &body, Duration::ZERO, |c, r| async move {
                AdminClient::new(c).force_release(r).await
            })
            .await?;
        lock_state(&s)
    }

    /// The status of the leader, or of any node that answers when no
    /// leader is known.
    pub async fn status(&self) -> Result<NodeStatus, Error> {
        self.t()
            .call(
                Route::Leader,
                &v1::StatusRequest {},
                Duration::ZERO,
                |c, r| async move { AdminClient::new(c).status(r).await },
            )
            .await
            .map(NodeStatus::from)
    }

    /// The status of the node at `addr`, as it sees the cluster.
    pub async fn status_of(&self, addr: &str) -> Result<NodeStatus, Error> {
        self.t()
            .call(
                Route::Node(addr),
                &v1::StatusRequest {},
                Duration::ZERO,
                |c, r| async move { AdminClient::new(c).status(r).await },
            )
            .await
            .map(NodeStatus::from)
    }

    /// Adds node `id` at `address`: a learner first, then a voter.
    pub async fn add_node(&self, id: u64, address: &str) -> Result<Membership, Error> {
        let body = v1::AddNodeRequest {
            node_id: id,
            address: address.to_owned(),
        };
        self.admin_write(&body, |c, r| async move {
            AdminClient::new(c).add_node(r).await
        })
        .await
        .map(Membership::from)
    }

    /// Removes node `id` from the cluster.
    pub async fn remove_node(&self, id: u64) -> Result<Membership, Error> {
        let body = v1::RemoveNodeRequest { node_id: id };
        self.admin_write(&body, |c, r| async move {
            AdminClient::new(c).remove_node(r).await
        })
        .await
        .map(Membership::from)
    }

    /// Hands leadership to voter `to`; answers with the new leader and term.
    pub async fn transfer_leader(&self, to: u64) -> Result<Leadership, Error> {
        let body = v1::TransferLeaderRequest { node_id: to };
        self.admin_write(&body, |c, r| async move {
            AdminClient::new(c).transfer_leader(r).await
        })
        .await
        .map(Leadership::from)
    }

    /// Changes the cluster's limits (admin, every tenant): the ones given
    /// replace those in force; answers the limits now in force. An
    /// unworkable combination is refused (INVALID_REQUEST).
    pub async fn configure(&self, changes: &LimitChanges) -> Result<TableConfig, Error> {
        let body = v1::ConfigureRequest::from(changes);
        self.admin_write(&body, |c, r| async move {
            AdminClient::new(c).configure(r).await
        })
        .await
        .map(|l| convert::table_config(&l))
    }

    /// Membership changes can take a while (a learner catching up): they
    /// get a minute on top of the call timeout.
    async fn admin_write<B, R, F, Fut>(&self, body: &B, send: F) -> Result<R, Error>
    where
        B: Clone,
        F: FnMut(tonic::transport::Channel, tonic::Request<B>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        self.t()
            .call(Route::Leader, body, Duration::from_secs(60), send)
            .await
    }

    /// Exports the lease table from the leader, streamed, and checks the
    /// bytes against the SHA-256 the node sent.
    pub async fn export(&self) -> Result<Snapshot, Error> {
        use sha2::Digest as _;
        let mut stream = self
            .t()
            .call(
                Route::Leader,
                &v1::ExportSnapshotRequest {},
                Duration::ZERO,
                |c, r| async move {
                    AdminClient::new(c)
                        .max_decoding_message_size(64 << 20)
                        .export_snapshot(r)
                        .await
                },
            )
            .await?;
        let mut bytes = Vec::new();
        let mut meta = None;
        let mut sha = None;
        while let Some(chunk) = stream.message().await.map_err(|s| Error::from_status(&s))? {
            if chunk.offset != bytes.len() as u64 {
                return Err(Error::Invalid(format!(
                    "export chunk at offset {} after {} bytes",
                    chunk.offset,
                    bytes.len()
                )));
            }
            meta = meta.or(chunk.meta);
            bytes.extend_from_slice(&chunk.data);
            if chunk.last {
                sha = Some(chunk.sha256);
                break;
            }
        }
        let (Some(meta), Some(sha)) = (meta, sha) else {
            return Err(Error::Unavailable(
                "the export stream ended before its last chunk".into(),
            ));
        };
        if hex_sha256(&sha2::Sha256::digest(&bytes)) != sha {
            return Err(Error::Invalid(
                "the exported bytes do not match their SHA-256".into(),
            ));
        }
        Ok(Snapshot {
            meta: meta.into(),
            bytes,
        })
    }

    /// Backs the whole table up as JSON lines (`tenure-backup/1`), read on
    /// the leader from one state, writing each chunk to `out` as it comes.
    /// The lines are counted and hashed on the way: a stream that ends
    /// without its trailer, or whose trailer does not match the lines, is
    /// an error (what was written is then not a backup).
    pub async fn backup(
        &self,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<BackupWritten, Error> {
        use sha2::Digest as _;
        let mut stream = self
            .t()
            .call(
                Route::Leader,
                &v1::BackupRequest {},
                Duration::ZERO,
                |c, r| async move {
                    AdminClient::new(c)
                        .max_decoding_message_size(8 << 20)
                        .backup(r)
                        .await
                },
            )
            .await?;
        let mut sha = sha2::Sha256::new();
        let mut written = BackupWritten::default();
        let mut pending: Vec<u8> = Vec::new();
        let mut trailer: Option<(u64, String)> = None;
        while let Some(chunk) = stream.message().await.map_err(|s| Error::from_status(&s))? {
            out.write_all(&chunk.data)
                .map_err(|e| Error::Invalid(format!("writing the backup: {e}")))?;
            written.bytes += chunk.data.len() as u64;
            pending.extend_from_slice(&chunk.data);
            let mut start = 0;
            while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
                let line = &pending[start..start + end + 1];
                start += end + 1;
                if trailer.is_some() {
                    return Err(Error::Invalid("a line after the backup's trailer".into()));
                }
                if let Some(t) = tenure_core::backup::trailer(line) {
                    trailer = Some(t);
                } else {
                    sha.update(line);
                    written.lines += 1;
                }
            }
            pending.drain(..start);
        }
        out.flush()
            .map_err(|e| Error::Invalid(format!("writing the backup: {e}")))?;
        let Some(trailer) = trailer else {
            return Err(Error::Unavailable(
                "the backup stream ended before its trailer".into(),
            ));
        };
        written.sha256 = hex_sha256(&sha.finalize());
        if !pending.is_empty() || trailer != (written.lines, written.sha256.clone()) {
            return Err(Error::Invalid(
                "the backup's trailer does not match its lines".into(),
            ));
        }
        Ok(written)
    }

    /// Imports an exported lease table into the cluster (through its
    /// leader), streamed in 1 MiB chunks with the SHA-256 of the whole.
    pub async fn import(&self, bytes: &[u8]) -> Result<Imported, Error> {
        use sha2::Digest as _;
        let sha = hex_sha256(&sha2::Sha256::digest(bytes));
        let count = bytes.len().div_ceil(IMPORT_CHUNK).max(1);
        let chunks: Vec<v1::SnapshotChunk> = (0..count)
            .map(|i| {
                let start = i * IMPORT_CHUNK;
                let end = (start + IMPORT_CHUNK).min(bytes.len());
                let last = i + 1 == count;
                v1::SnapshotChunk {
                    data: bytes[start..end].to_vec(),
                    offset: start as u64,
                    last,
                    meta: None,
                    sha256: if last { sha.clone() } else { String::new() },
                }
            })
            .collect();
        self.admin_write(&chunks, |c, r| async move {
            let r = r.map(tokio_stream::iter);
            AdminClient::new(c).import_snapshot(r).await
        })
        .await
        .map(Imported::from)
    }
}

impl Client {
    /// Restores a backup (`tenure-backup/1`) through the leader. The
    /// leader checks the whole file before it writes anything, then stages
    /// it through the log and commits it at once; a backup restored before
    /// answers `report.already` and changes nothing. Check the file first
    /// with [`tenure_core::backup::read`] to name a damaged line without a
    /// round trip.
    pub async fn restore(
        &self,
        bytes: &[u8],
        options: RestoreOptions,
    ) -> Result<RestoreDone, Error> {
        let count = bytes.len().div_ceil(IMPORT_CHUNK).max(1);
        let chunks: Vec<v1::RestoreChunk> = (0..count)
            .map(|i| {
                let start = i * IMPORT_CHUNK;
                let end = (start + IMPORT_CHUNK).min(bytes.len());
                v1::RestoreChunk {
                    data: bytes[start..end].to_vec(),
                    merge: options.merge,
                    token_gap: options.token_gap.unwrap_or(0),
                }
            })
            .collect();
        self.t()
            .call(
                Route::Leader,
                &chunks,
                Duration::from_secs(600),
                |c, r| async move {
                    let r = r.map(tokio_stream::iter);
                    AdminClient::new(c).restore(r).await
                },
            )
            .await
            .map(RestoreDone::from)
    }
}

/// One keep-alive answer as a [`Renewed`].
fn renewed(a: v1::KeepAliveResponse) -> Renewed {
    Renewed {
        result: if a.alive {
            Ok(Duration::from_millis(a.expires_in_ms))
        } else {
            Err(tenure_core::Reason::parse(&a.reason)
                .unwrap_or(tenure_core::Reason::LeaseNotActive))
        },
        lease_id: a.lease_id,
    }
}

fn consistency(stale: bool) -> i32 {
    if stale {
        v1::Consistency::Stale as i32
    } else {
        v1::Consistency::Linearizable as i32
    }
}

fn hex_sha256(digest: &[u8]) -> String {
    use std::fmt::Write as _;
    digest.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
