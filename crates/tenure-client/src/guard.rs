//! A held lock: its fencing token and its client-side deadline, kept alive
//! by the client's keep-alive layer.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::client::{Client, Lease};
use crate::keepalive::Lost;
use crate::transport::Error;

/// A lock this client holds. Valid until its client-side deadline passes
/// or the server reports it lost; kept alive meanwhile by the client's
/// keep-alive stream, across leader changes. Dropping it releases the lease
/// (best effort).
pub struct LockGuard {
    client: Client,
    lease: Lease,
    id: String,
    /// The client-side deadline; moved later by acknowledged renewals.
    deadline: watch::Receiver<Instant>,
    /// Set once the server reports the lease lost.
    lost: watch::Receiver<Option<Lost>>,
    released: bool,
}

impl LockGuard {
    pub(crate) fn new(client: Client, lease: Lease, sent: Instant) -> LockGuard {
        let ttl = Duration::from_millis(lease.view.ttl_ms);
        let first = sent + ttl.mul_f64(1.0 - client.inner.max_drift);
        let id = lease.view.id.to_string();
        let watched = client.inner.keepalive.register(&id, ttl, first);
        LockGuard {
            client,
            lease,
            id,
            deadline: watched.deadline,
            lost: watched.lost,
            released: false,
        }
    }

    /// The fencing token of this grant: hand it to every write.
    pub fn fencing_token(&self) -> u64 {
        self.lease.view.token
    }

    /// The lease's opaque id.
    pub fn lease_id(&self) -> &str {
        &self.id
    }

    /// The lease as the grant answered it.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// The lock's key.
    pub fn key(&self) -> &str {
        &self.lease.view.key
    }

    /// The client-side deadline: past it, the lock may be someone else's.
    pub fn deadline(&self) -> Instant {
        *self.deadline.borrow()
    }

    /// The deadline as it moves: each acknowledged renewal moves it later.
    pub fn deadlines(&self) -> watch::Receiver<Instant> {
        self.deadline.clone()
    }

    /// The lease's time to live.
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.lease.view.ttl_ms)
    }

    /// Whether the guard may still be used: before its deadline, not lost.
    pub fn is_valid(&self) -> bool {
        self.lost.borrow().is_none() && Instant::now() < self.deadline()
    }

    /// Why the server says the lease is gone, once it has said so.
    pub fn lost_reason(&self) -> Option<Lost> {
        self.lost.borrow().clone()
    }

    /// Resolves when the lock is lost: reported by the server, or the
    /// deadline passed without an acknowledged renewal.
    pub async fn lost(&self) {
        let mut deadline = self.deadline.clone();
        let mut lost = self.lost.clone();
        loop {
            if lost.borrow().is_some() {
                return;
            }
            let at = *deadline.borrow();
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {
                    if *deadline.borrow() <= Instant::now() {
                        return;
                    }
                }
                changed = deadline.changed() => if changed.is_err() { return },
                changed = lost.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Gives the lock up and waits for the answer.
    pub async fn release(mut self) -> Result<(), Error> {
        self.released = true;
        self.client.inner.keepalive.forget(&self.id);
        self.client.release(&self.id, None).await.map(|_| ())
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        self.client.inner.keepalive.forget(&self.id);
        let (client, lease) = (self.client.clone(), self.id.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = client.release(&lease, None).await {
                    tracing::debug!(lease, error = %e, "release on drop failed");
                }
            });
        }
    }
}
