//! One keep-alive stream per client, to the leader, for every lease it keeps.
//!
//! Each lease is renewed every third of its TTL; the answer to a renewal
//! moves the lease's deadline to the renewal's send time plus the TTL less
//! the drift allowance. Only two things lose a lease: the server saying it
//! is gone (an answer with a reason that no retry can change: expired,
//! released, not the owner's), or its deadline passing. Anything transient —
//! a NOT_LEADER answer, a broken stream, a node that went silent — reopens
//! the stream on the leader the cluster names, and the leases keep their
//! deadlines meanwhile.
//!
//! This layer sits on the transport and knows nothing of guards: it keeps
//! a deadline and a loss per lease id, which the guard layer reads.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tenure_core::Reason;
use tenure_proto::v1;
use tenure_proto::v1::lock_client::LockClient;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::transport::{Route, Transport};

/// How a kept lease was lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lost {
    /// The server's reason (LEASE_EXPIRED, LEASE_NOT_ACTIVE, …).
    pub reason: Reason,
    /// Words for people.
    pub message: String,
}

struct Kept {
    ttl: Duration,
    deadline: watch::Sender<Instant>,
    lost: watch::Sender<Option<Lost>>,
    last_sent: Option<Instant>,
}

#[derive(Default)]
struct State {
    /// Ordered, so renewals go out in the same order every run.
    leases: BTreeMap<String, Kept>,
    /// Renewals in flight: client_seq → send time.
    pending: HashMap<u64, Instant>,
    next_seq: u64,
    /// Whether the stream task runs.
    running: bool,
}

/// What the guard layer reads of one kept lease.
pub(crate) struct Watched {
    pub(crate) deadline: watch::Receiver<Instant>,
    pub(crate) lost: watch::Receiver<Option<Lost>>,
}

/// The keep-alive side of a client.
#[derive(Clone)]
pub(crate) struct KeepAlive {
    state: Arc<Mutex<State>>,
    transport: Weak<Transport>,
    tenant: String,
    drift: f64,
}

/// How often the stream task looks for renewals that are due (it scans
/// every kept lease, so not too often).
const TICK: Duration = Duration::from_millis(100);

impl KeepAlive {
    pub(crate) fn new(transport: &Arc<Transport>, tenant: &str, drift: f64) -> KeepAlive {
        KeepAlive {
            state: Arc::default(),
            transport: Arc::downgrade(transport),
            tenant: tenant.to_owned(),
            drift,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `lease` alive from now on; its deadline starts at `deadline`.
    pub(crate) fn register(&self, lease: &str, ttl: Duration, deadline: Instant) -> Watched {
        let (d_tx, d_rx) = watch::channel(deadline);
        let (l_tx, l_rx) = watch::channel(None);
        let start = {
            let mut s = self.lock();
            s.leases.insert(
                lease.to_owned(),
                Kept {
                    ttl,
                    deadline: d_tx,
                    lost: l_tx,
                    last_sent: Some(Instant::now()),
                },
            );
            !std::mem::replace(&mut s.running, true)
        };
        if start {
            self.spawn();
        }
        Watched {
            deadline: d_rx,
            lost: l_rx,
        }
    }

    /// Stops keeping `lease` alive.
    pub(crate) fn forget(&self, lease: &str) {
        self.lock().leases.remove(lease);
    }

    /// Renewals due now.
    fn due(&self, now: Instant) -> Vec<v1::KeepAliveRequest> {
        let mut s = self.lock();
        let mut sent = Vec::new();
        for (id, k) in &mut s.leases {
            let every = k.ttl / 3;
            if k.last_sent.is_none_or(|t| now >= t + every) {
                k.last_sent = Some(now);
                sent.push(id.clone());
            }
        }
        let mut out = Vec::with_capacity(sent.len());
        for id in sent {
            s.next_seq += 1;
            let seq = s.next_seq;
            s.pending.insert(seq, now);
            out.push(v1::KeepAliveRequest {
                tenant_id: self.tenant.clone(),
                lease_id: id,
                owner_id: String::new(),
                client_seq: seq,
            });
        }
        out
    }

    /// Takes one answer in; `false` when the stream should be reopened (the
    /// node answered with a transient refusal: it no longer leads, say).
    fn answer(&self, a: &v1::KeepAliveResponse) -> bool {
        let mut s = self.lock();
        let sent = s.pending.remove(&a.client_seq);
        let Some(k) = s.leases.get_mut(&a.lease_id) else {
            return true;
        };
        if !a.alive {
            let reason = Reason::parse(&a.reason).unwrap_or(Reason::LeaseNotActive);
            if reason.is_retryable() {
                // Not a loss: ask again, elsewhere.
                k.last_sent = None;
                return false;
            }
            let lost = Lost {
                reason,
                message: a.message.clone(),
            };
            let _ = k.lost.send(Some(lost));
            s.leases.remove(&a.lease_id);
            return true;
        }
        if let Some(at) = sent {
            let ttl = Duration::from_millis(a.ttl_ms);
            let deadline = at + ttl.mul_f64(1.0 - self.drift);
            k.deadline.send_if_modified(|d| {
                let later = deadline > *d;
                if later {
                    *d = deadline;
                }
                later
            });
        }
        true
    }

    /// The server refused the stream itself for a reason a retry cannot
    /// change (the caller's credentials were revoked, say): every lease it
    /// kept is lost, for that reason.
    fn lose_all(&self, error: &crate::Error) {
        let crate::Error::Refused { reason, message } = error else {
            return;
        };
        if reason.is_retryable() {
            return;
        }
        let mut s = self.lock();
        for (_, k) in std::mem::take(&mut s.leases) {
            let _ = k.lost.send(Some(Lost {
                reason: *reason,
                message: message.clone(),
            }));
        }
    }

    /// Runs the stream while the client lives and leases are kept.
    fn spawn(&self) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                if me.lock().leases.is_empty() {
                    // Nothing to keep: stop, until a lease is registered.
                    let mut s = me.lock();
                    if s.leases.is_empty() {
                        s.running = false;
                        return;
                    }
                }
                let Some(transport) = me.transport.upgrade() else {
                    return;
                };
                let opened = open(&transport).await;
                drop(transport);
                let (tx, mut answers) = match opened {
                    Ok(o) => o,
                    Err(e) => {
                        me.lose_all(&e);
                        tracing::debug!(error = %e, "keep-alive stream not opened; trying again");
                        tokio::time::sleep(TICK * 4).await;
                        continue;
                    }
                };
                me.lock().pending.clear();
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(TICK) => {
                            if me.transport.strong_count() == 0 {
                                return;
                            }
                            if me.lock().leases.is_empty() {
                                break;
                            }
                            for r in me.due(Instant::now()) {
                                if tx.send(r).await.is_err() {
                                    break;
                                }
                            }
                        }
                        answer = answers.next() => match answer {
                            Some(Ok(a)) => if !me.answer(&a) {
                                tracing::debug!(reason = a.reason, "keep-alive refused for now; reopening on the leader");
                                if let Some(t) = me.transport.upgrade() {
                                    t.clear_leader();
                                }
                                break;
                            },
                            Some(Err(status)) => {
                                me.lose_all(&crate::Error::from_status(&status));
                                tracing::debug!(code = ?status.code(), message = status.message(), "keep-alive stream failed; reopening");
                                if let Some(t) = me.transport.upgrade() {
                                    t.clear_leader();
                                    t.follow_refusal(&status);
                                }
                                break;
                            }
                            None => break,
                        },
                    }
                }
                // Renew everything at once on the next stream.
                for k in me.lock().leases.values_mut() {
                    k.last_sent = None;
                }
            }
        });
    }
}

/// A keep-alive stream's sending half and its answers.
pub(crate) type Stream = (
    mpsc::Sender<v1::KeepAliveRequest>,
    tonic::Streaming<v1::KeepAliveResponse>,
);

/// Opens a keep-alive stream on the leader (a follower refuses and names
/// it; the transport follows and retries).
pub(crate) async fn open(transport: &Transport) -> Result<Stream, crate::Error> {
    let mut sender = None;
    let answers = transport
        .call(Route::Leader, &(), Duration::ZERO, |channel, request| {
            let (tx, rx) = mpsc::channel(1024);
            sender = Some(tx);
            let request = request.map(|()| ReceiverStream::new(rx));
            async move { LockClient::new(channel).keep_alive(request).await }
        })
        .await?;
    let tx = sender.ok_or_else(|| crate::Error::Unavailable("no stream opened".into()))?;
    Ok((tx, answers))
}
