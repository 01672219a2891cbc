//! One keep-alive stream per client, to the leader, for every guard.
//!
//! Each lease is renewed every third of its TTL; the answer to a renewal
//! moves the guard's deadline to the renewal's send time plus the TTL less
//! the drift allowance. A lost lease is reported to its guard at once. When
//! the stream breaks (a leader change), it is reopened on the leader the
//! cluster names; guards keep their deadlines meanwhile.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tenure_proto::v1;
use tenure_proto::v1::lock_client::LockClient;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::StreamExt;

use crate::client::Client;

struct Kept {
    ttl: Duration,
    deadline: watch::Sender<Instant>,
    lost: watch::Sender<bool>,
    last_sent: Option<Instant>,
}

#[derive(Default)]
struct State {
    /// Ordered, so renewals go out in the same order every run.
    leases: BTreeMap<String, Kept>,
    /// Renewals in flight: client_seq → (lease, send time).
    pending: HashMap<u64, (String, Instant)>,
    next_seq: u64,
}

/// The keep-alive side of a client.
#[derive(Clone, Default)]
pub(crate) struct KeepAlive {
    state: Arc<Mutex<State>>,
}

impl KeepAlive {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn register(
        &self,
        lease: &str,
        ttl: Duration,
        deadline: Instant,
    ) -> (watch::Receiver<Instant>, watch::Receiver<bool>) {
        let (d_tx, d_rx) = watch::channel(deadline);
        let (l_tx, l_rx) = watch::channel(false);
        self.lock().leases.insert(
            lease.to_owned(),
            Kept {
                ttl,
                deadline: d_tx,
                lost: l_tx,
                last_sent: Some(Instant::now()),
            },
        );
        (d_rx, l_rx)
    }

    pub(crate) fn forget(&self, lease: &str) {
        self.lock().leases.remove(lease);
    }

    /// Renewals due now.
    fn due(&self, tenant: &str, now: Instant) -> Vec<v1::KeepAliveRequest> {
        let mut s = self.lock();
        let mut out = Vec::new();
        let mut sent = Vec::new();
        for (id, k) in &mut s.leases {
            let every = k.ttl / 3;
            if k.last_sent.is_none_or(|t| now >= t + every) {
                k.last_sent = Some(now);
                sent.push(id.clone());
            }
        }
        for id in sent {
            s.next_seq += 1;
            let seq = s.next_seq;
            s.pending.insert(seq, (id.clone(), now));
            out.push(v1::KeepAliveRequest {
                tenant_id: tenant.to_owned(),
                lease_id: id,
                owner_id: String::new(),
                client_seq: seq,
            });
        }
        out
    }

    fn answer(&self, a: &v1::KeepAliveResponse, drift: f64) {
        let mut s = self.lock();
        let sent = s.pending.remove(&a.client_seq);
        let Some(k) = s.leases.get(&a.lease_id) else {
            return;
        };
        if !a.alive {
            let _ = k.lost.send(true);
            return;
        }
        if let Some((_, at)) = sent {
            let ttl = Duration::from_millis(a.ttl_ms);
            let deadline = at + ttl.mul_f64(1.0 - drift);
            k.deadline.send_if_modified(|d| {
                let later = deadline > *d;
                if later {
                    *d = deadline;
                }
                later
            });
        }
    }

    /// Runs the stream for as long as the client lives.
    pub(crate) fn start(&self, client: Client) {
        let me = self.clone();
        let weak = Arc::downgrade(&client.inner);
        drop(client);
        tokio::spawn(async move {
            let tick = Duration::from_millis(100);
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let client = Client { inner };
                let (tenant, drift) = (
                    client.inner.config.tenant.clone(),
                    client.inner.config.max_drift,
                );
                // Open a stream on the leader (a follower refuses and names it).
                let mut opened = None;
                for addr in client.candidates() {
                    let Ok(channel) = client.channel(&addr) else {
                        continue;
                    };
                    let (tx, rx) = mpsc::channel(1024);
                    let Ok(request) =
                        client.owner_request(tokio_stream::wrappers::ReceiverStream::new(rx))
                    else {
                        return;
                    };
                    match LockClient::new(channel).keep_alive(request).await {
                        Ok(r) => {
                            client.follow(r.metadata());
                            opened = Some((tx, r.into_inner()));
                            break;
                        }
                        Err(s) => {
                            if let Some(leader) = tenure_proto::convert::leader_of(&s) {
                                client.follow_addr(leader);
                            }
                        }
                    }
                }
                drop(client);
                let Some((tx, mut answers)) = opened else {
                    tokio::time::sleep(tick).await;
                    continue;
                };
                me.lock().pending.clear();
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(tick) => {
                            if weak.strong_count() == 0 {
                                return;
                            }
                            for r in me.due(&tenant, Instant::now()) {
                                if tx.send(r).await.is_err() {
                                    break;
                                }
                            }
                        }
                        answer = answers.next() => match answer {
                            Some(Ok(a)) => me.answer(&a, drift),
                            _ => break,
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

impl Client {
    pub(crate) fn follow_addr(&self, addr: String) {
        let mut md = tonic::metadata::MetadataMap::new();
        if let Ok(v) = addr.parse() {
            md.insert(tenure_proto::convert::LEADER_METADATA, v);
            self.follow(&md);
        }
    }
}
