//! A held lock: its fencing token and its client-side deadline.

use std::time::Duration;

use tenure_proto::v1;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::client::{Client, Error};

/// A lock this client holds. Valid until its client-side deadline passes
/// or the server reports it lost; kept alive meanwhile by the client's
/// keep-alive stream. Dropping it releases the lease (best effort).
pub struct LockGuard {
    client: Client,
    lease: v1::Lease,
    /// The client-side deadline; moved later by acknowledged renewals.
    deadline: watch::Receiver<Instant>,
    /// Set once the server reports the lease lost.
    lost: watch::Receiver<bool>,
    released: bool,
}

impl LockGuard {
    pub(crate) fn new(client: Client, lease: v1::Lease, sent: Instant) -> LockGuard {
        let ttl = Duration::from_millis(lease.ttl_ms);
        let drift = client.inner.config.max_drift.clamp(0.0, 0.9);
        let first = sent + ttl.mul_f64(1.0 - drift);
        let (deadline, lost) = client.inner.keepalive.register(&lease.lease_id, ttl, first);
        LockGuard {
            client,
            lease,
            deadline,
            lost,
            released: false,
        }
    }

    /// The fencing token of this grant: hand it to every write.
    pub fn fencing_token(&self) -> u64 {
        self.lease.fencing_token
    }

    /// The lease's opaque id.
    pub fn lease_id(&self) -> &str {
        &self.lease.lease_id
    }

    /// The lock's key.
    pub fn key(&self) -> &str {
        &self.lease.lock_key
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
        Duration::from_millis(self.lease.ttl_ms)
    }

    /// Whether the guard may still be used: before its deadline, not lost.
    pub fn is_valid(&self) -> bool {
        !*self.lost.borrow() && Instant::now() < self.deadline()
    }

    /// Resolves when the lock is lost: reported by the server, or the
    /// deadline passed without an acknowledged renewal.
    pub async fn lost(&self) {
        let mut deadline = self.deadline.clone();
        let mut lost = self.lost.clone();
        loop {
            if *lost.borrow() {
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
        self.client.inner.keepalive.forget(&self.lease.lease_id);
        self.client
            .release_lease(&self.lease.lease_id)
            .await
            .map(|_| ())
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        self.client.inner.keepalive.forget(&self.lease.lease_id);
        let (client, lease) = (self.client.clone(), self.lease.lease_id.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = client.release_lease(&lease).await {
                    tracing::debug!(lease, error = %e, "release on drop failed");
                }
            });
        }
    }
}
