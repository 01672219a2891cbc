//! Renew (one lease, keeping or changing its TTL) and keep-alive streams
//! (many leases over one stream).
//!
//! A renewal that keeps the TTL never reaches the log: the leader checks it
//! against the table, confirms with a quorum that it still leads *after*
//! the renewal arrived, and only then moves its own deadline (docs/time.md,
//! rule 3). A renewal that changes the TTL goes through the log.

use std::collections::HashSet;
use std::time::Duration;

use tenure_core::{AuditKind, LeaseId, Reason};
use tenure_proto::convert::{self, RenewCall};
use tenure_proto::v1;
use tenure_proto::v1::lock_client::LockClient;
use tenure_raft::Connector;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Streaming};

use super::{LockService, Stream2, millis};
use crate::auth::Role;
use crate::errors::ServeError;
use crate::errors::forwarded;
use crate::router::Routed;

/// Leases one KeepAliveMany call may renew.
pub const MAX_KEEP_ALIVE_MANY: usize = 1_024;

impl<C: Connector> LockService<C> {
    pub(super) async fn renew_call(
        &self,
        request: Request<v1::RenewRequest>,
    ) -> Result<Response<v1::Lease>, ServeError> {
        let request = match self.router.route(request).await? {
            Routed::Here(r) => r,
            Routed::Forward(c, r) => return forwarded(LockClient::new(c).renew(r).await),
        };
        let who = self.access.writer(&request, &request.get_ref().tenant_id)?;
        match convert::renew(request.get_ref(), &who.name)? {
            RenewCall::Change(renew) => {
                let view = self.writer.renew(renew).await?;
                Ok(Response::new(self.lease_reply(&view)))
            }
            RenewCall::Keep(t) => {
                // A renewal the table refuses now needs no quorum round.
                self.table
                    .read()
                    .table
                    .check_renew(&t.tenant, t.lease_id, &t.owner)?;
                // Still the leader, confirmed by a quorum after the renewal arrived.
                self.router.confirm(true).await?;
                // The table again: an expiry or a release may have applied
                // while the quorum answered.
                let view = self
                    .table
                    .read()
                    .table
                    .check_renew(&t.tenant, t.lease_id, &t.owner)?;
                let left = self
                    .timers
                    .renew(view.id, Duration::from_millis(view.ttl_ms), view.version)
                    .map_err(|r| ServeError::refused(r.reason(), "not renewed"))?;
                Ok(Response::new(convert::lease(&view, millis(Some(left)))))
            }
        }
    }

    pub(super) async fn keep_alive_call(
        &self,
        request: Request<Streaming<v1::KeepAliveRequest>>,
    ) -> Result<Response<Stream2<v1::KeepAliveResponse>>, ServeError> {
        self.router.here("keep-alive streams").await?;
        let mut who = self.access.streamer(&request)?;
        let slot = self.access.stream_slot(&who)?;
        let mut standing = self.access.standing(&request);
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(1024);
        let service = self.clone();
        tokio::spawn(async move {
            // Held while the stream lives.
            let _slot = slot;
            let mut notices = service.table.subscribe();
            let mut kept: HashSet<LeaseId> = HashSet::new();
            // Requests that arrive together share one quorum read.
            let batches = inbound.chunks_timeout(1024, Duration::from_millis(2));
            tokio::pin!(batches);
            // After the caller stops sending, its leases are still watched:
            // it hears of each loss until none is left.
            let mut sending = true;
            loop {
                if !sending && kept.is_empty() {
                    return;
                }
                tokio::select! {
                    batch = batches.next(), if sending => {
                        let Some(batch) = batch else {
                            sending = false;
                            continue;
                        };
                        let requests: Vec<v1::KeepAliveRequest> = batch.into_iter().filter_map(Result::ok).collect();
                        // A reloaded auth file may have revoked the caller.
                        if let Some(again) = standing.recheck() {
                            match again.and_then(|w| w.check_role(Role::Writer).map(|()| w)) {
                                Ok(w) => who = w,
                                Err(e) => {
                                    let _ = tx.send(Err(e.into_status(service.router.hint().as_deref()))).await;
                                    return;
                                }
                            }
                        }
                        if let Err(e) = service.router.confirm(true).await {
                            let _ = tx.send(Err(e.into_status(service.router.hint().as_deref()))).await;
                            return;
                        }
                        for r in &requests {
                            let answer = match who.check_tenant(&r.tenant_id) {
                                Ok(()) => service.keep_one(r, &who.name),
                                Err(_) => convert::keep_alive_lost(r, Reason::Forbidden, "tenant not allowed"),
                            };
                            if answer.alive
                                && let Ok(id) = r.lease_id.parse::<LeaseId>()
                            {
                                kept.insert(id);
                                metrics::counter!("tenure_keepalive_renewals_total").increment(1);
                            }
                            if tx.send(Ok(answer)).await.is_err() {
                                return;
                            }
                        }
                    }
                    notice = notices.recv() => {
                        let Ok(notice) = notice else { continue };
                        for answer in lost_answers(&mut kept, &notice) {
                            if tx.send(Ok(answer)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        Ok(Response::new(
            Box::pin(ReceiverStream::new(rx)) as Stream2<v1::KeepAliveResponse>
        ))
    }

    pub(super) async fn keep_alive_many_call(
        &self,
        request: Request<v1::KeepAliveManyRequest>,
    ) -> Result<Response<v1::KeepAliveManyResponse>, ServeError> {
        let request = match self.router.route(request).await? {
            Routed::Here(r) => r,
            Routed::Forward(c, r) => {
                return forwarded(LockClient::new(c).keep_alive_many(r).await);
            }
        };
        let who = self.access.writer(&request, &request.get_ref().tenant_id)?;
        let r = request.into_inner();
        tenure_core::validate::tenant(&r.tenant_id)?;
        convert::owner(&r.owner_id, &who.name)?;
        if r.lease_ids.is_empty() || r.lease_ids.len() > MAX_KEEP_ALIVE_MANY {
            return Err(ServeError::refused(
                Reason::InvalidRequest,
                format!(
                    "lease_ids has {} entries: 1 to {MAX_KEEP_ALIVE_MANY} allowed",
                    r.lease_ids.len()
                ),
            ));
        }
        let mut seen = HashSet::with_capacity(r.lease_ids.len());
        for id in &r.lease_ids {
            convert::lease_id(id)?;
            if !seen.insert(id.as_str()) {
                return Err(ServeError::refused(
                    Reason::InvalidRequest,
                    format!("lease_ids names {id} twice"),
                ));
            }
        }
        // Still the leader, confirmed by a quorum after the call arrived;
        // each lease is then read from the table (rule 3, as a stream does).
        self.router.confirm(true).await?;
        let leases = r
            .lease_ids
            .iter()
            .enumerate()
            .map(|(i, lease_id)| {
                let one = v1::KeepAliveRequest {
                    tenant_id: r.tenant_id.clone(),
                    lease_id: lease_id.clone(),
                    owner_id: who.name.clone(),
                    client_seq: i as u64,
                };
                let answer = self.keep_one(&one, &who.name);
                if answer.alive {
                    metrics::counter!("tenure_keepalive_renewals_total").increment(1);
                }
                answer
            })
            .collect();
        Ok(Response::new(v1::KeepAliveManyResponse { leases }))
    }

    /// A keep-alive of one lease: table checks, then the timers extend it.
    fn keep_one(&self, req: &v1::KeepAliveRequest, caller: &str) -> v1::KeepAliveResponse {
        let target = match convert::keep_alive(req, caller) {
            Ok(t) => t,
            Err(e) => return convert::keep_alive_lost(req, e.reason(), e.to_string()),
        };
        let view = match self.table.read().table.check_renew(
            &target.tenant,
            target.lease_id,
            &target.owner,
        ) {
            Ok(v) => v,
            Err(e) => return convert::keep_alive_lost(req, e.reason(), e.to_string()),
        };
        match self
            .timers
            .renew(view.id, Duration::from_millis(view.ttl_ms), view.version)
        {
            Ok(left) => convert::keep_alive_alive(req, &view, millis(Some(left))),
            Err(r) => convert::keep_alive_lost(req, r.reason(), "not renewed"),
        }
    }
}

/// The losses, among the leases a keep-alive stream kept, that one applied
/// entry reports; each is forgotten once told.
fn lost_answers(
    kept: &mut HashSet<LeaseId>,
    notice: &tenure_raft::Notice,
) -> Vec<v1::KeepAliveResponse> {
    let mut answers = Vec::new();
    for e in &notice.events {
        let reason = match e.kind {
            AuditKind::LeaseExpire => Reason::LeaseExpired,
            AuditKind::LeaseRelease | AuditKind::ForceRelease | AuditKind::LeaseWaitCancel => {
                Reason::LeaseNotActive
            }
            _ => continue,
        };
        if let Some(id) = e.lease_id
            && kept.remove(&id)
        {
            let req = v1::KeepAliveRequest {
                tenant_id: e.tenant.to_string(),
                lease_id: id.to_string(),
                owner_id: String::new(),
                client_seq: 0,
            };
            answers.push(convert::keep_alive_lost(&req, reason, e.kind.as_str()));
        }
    }
    answers
}
