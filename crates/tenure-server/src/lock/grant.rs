//! Acquire (at once, or waiting in the lock's FIFO queue) and release.

use std::time::Duration;

use tenure_core::{
    CancelCause, CancelWait, Command, EndReason, Error, LeaseId, LeaseState, LeaseView, Reason,
};
use tenure_proto::convert;
use tenure_proto::v1;
use tenure_proto::v1::lock_client::LockClient;
use tenure_raft::{Connector, Proposer};
use tokio::sync::broadcast;
use tonic::{Request, Response};

use super::{LockService, millis};
use crate::errors::ServeError;
use crate::errors::forwarded;
use crate::router::Routed;

/// Extra time a waiting acquire is given beyond its wait timeout before the
/// call gives up on hearing the outcome.
const WAIT_SLACK: Duration = Duration::from_secs(5);

/// Proposes `CancelWait(Abandoned)` if a waiting acquire's call goes away
/// before its outcome: the waiter leaves the queue.
struct AbandonGuard {
    proposer: Proposer,
    clock: crate::clock::NodeClock,
    lease: Option<LeaseId>,
}

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        if let Some(lease_id) = self.lease.take() {
            let (proposer, at_ms) = (self.proposer.clone(), self.clock.wall_ms());
            tokio::spawn(async move {
                let command = Command::CancelWait(CancelWait {
                    lease_id,
                    cause: CancelCause::Abandoned,
                });
                let _ = proposer.propose(at_ms, command).await;
            });
        }
    }
}

fn ended_error(view: &LeaseView) -> Error {
    match view.ended {
        Some(EndReason::Expired) => Error::LeaseExpired(view.id),
        Some(EndReason::WaitTimedOut) => Error::WaitTimeout(view.id),
        _ => Error::LeaseNotActive(view.id),
    }
}

impl<C: Connector> LockService<C> {
    pub(super) async fn acquire_call(
        &self,
        request: Request<v1::AcquireRequest>,
    ) -> Result<Response<v1::Lease>, ServeError> {
        let request = match self.router.route(request).await? {
            Routed::Here(r) => r,
            Routed::Forward(c, r) => return forwarded(LockClient::new(c).acquire(r).await),
        };
        let who = self.access.writer(&request, &request.get_ref().tenant_id)?;
        let command = convert::acquire(request.get_ref(), &who.name)?;
        let mode = convert::acquire_mode(request.get_ref())?;
        // Listen before proposing, so a grant right after cannot be missed.
        let notices = self.table.subscribe();
        let view = self.writer.acquire(command, mode).await?;
        let view = match view.state {
            LeaseState::Waiting => self.await_grant(notices, view).await?,
            LeaseState::Active => view,
            _ => return Err(ended_error(&view).into()),
        };
        // The grant's deadline counts from now at the latest (the timer loop
        // arms it from the applied entry too; a deadline only moves later).
        let left = self
            .timers
            .renew(view.id, Duration::from_millis(view.ttl_ms), view.version)
            .ok();
        Ok(Response::new(convert::lease(&view, millis(left))))
    }

    pub(super) async fn release_call(
        &self,
        request: Request<v1::ReleaseRequest>,
    ) -> Result<Response<v1::Lease>, ServeError> {
        let request = match self.router.route(request).await? {
            Routed::Here(r) => r,
            Routed::Forward(c, r) => return forwarded(LockClient::new(c).release(r).await),
        };
        let who = self.access.writer(&request, &request.get_ref().tenant_id)?;
        let command = convert::release(request.get_ref(), &who.name)?;
        let view = self.writer.release(command).await?;
        Ok(Response::new(convert::lease(&view, 0)))
    }

    /// Waits until a waiting lease is granted, or ends.
    async fn await_grant(
        &self,
        mut notices: broadcast::Receiver<std::sync::Arc<tenure_raft::Notice>>,
        view: LeaseView,
    ) -> Result<LeaseView, ServeError> {
        let mut guard = AbandonGuard {
            proposer: self.writer.proposer().clone(),
            clock: self.writer.clock().clone(),
            lease: Some(view.id),
        };
        let give_up =
            tokio::time::Instant::now() + Duration::from_millis(view.wait_timeout_ms) + WAIT_SLACK;
        // The open call is the owner's renewal of its WAITING lease: while
        // it waits, the lease keeps its place however long the wait.
        let ttl = Duration::from_millis(view.ttl_ms);
        let mut keep = tokio::time::interval((ttl / 3).max(Duration::from_millis(1)));
        keep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let now = self.table.read().table.lease(&view.tenant, view.id);
            match now {
                Ok(v) if v.state == LeaseState::Active => {
                    guard.lease = None;
                    return Ok(v);
                }
                Ok(v) if v.state.is_terminal() => {
                    guard.lease = None;
                    return Err(ended_error(&v).into());
                }
                Ok(_) => {}
                Err(e) => {
                    guard.lease = None;
                    return Err(e.into());
                }
            }
            let notice = tokio::select! {
                notice = tokio::time::timeout_at(give_up, notices.recv()) => notice,
                _ = keep.tick() => {
                    // Refused when this node no longer leads: the caller
                    // retries on the new leader, which extended the lease.
                    let waiting = self.table.read().table.lease(&view.tenant, view.id);
                    if let Ok(v) = waiting
                        && v.state == LeaseState::Waiting
                    {
                        let _ = self.timers.renew(v.id, ttl, v.version);
                    }
                    continue;
                }
            };
            match notice {
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    return Err(ServeError::refused(
                        Reason::Unavailable,
                        "the node is stopping",
                    ));
                }
                Err(_) => return Err(Error::WaitTimeout(view.id).into()),
            }
        }
    }
}
