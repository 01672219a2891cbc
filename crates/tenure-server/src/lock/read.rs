//! Reads: get and list (linearizable through the leader, or stale from the
//! node asked) and watch (the audit stream, from any node).

use tenure_core::Reason;
use tenure_proto::convert;
use tenure_proto::v1;
use tenure_proto::v1::lock_client::LockClient;
use tenure_raft::Connector;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response};

use super::{LockService, MAX_PAGE, Stream2, millis};
use crate::auth::Role;
use crate::errors::ServeError;
use crate::errors::forwarded;
use crate::router::Routed;

fn stale(consistency: i32) -> bool {
    consistency == v1::Consistency::Stale as i32
}

/// Events read from the kept history at a time when a watch replays.
const REPLAY_PAGE: usize = 1_024;

async fn send_error(
    tx: &mpsc::Sender<Result<v1::WatchEvent, tonic::Status>>,
    e: ServeError,
) -> bool {
    tx.send(Err(e.into_status(None))).await.is_ok()
}

impl<C: Connector> LockService<C> {
    pub(super) async fn get_call(
        &self,
        request: Request<v1::GetRequest>,
    ) -> Result<Response<v1::LockState>, ServeError> {
        let stale = stale(request.get_ref().consistency);
        let request = match self.router.route_read(request, stale).await? {
            Routed::Here(r) => r,
            Routed::Forward(c, r) => return forwarded(LockClient::new(c).get(r).await),
        };
        let r = request.get_ref();
        self.access.reader(&request, &r.tenant_id, false)?;
        tenure_core::validate::tenant(&r.tenant_id)?;
        tenure_core::validate::key(&r.lock_key)?;
        if !stale {
            self.router.confirm(false).await?;
        }
        let view = self.table.read().table.lock(&r.tenant_id, &r.lock_key);
        let left = |id| millis(self.timers.remaining(id));
        Ok(Response::new(convert::lock_state(&view, left)))
    }

    pub(super) async fn list_call(
        &self,
        request: Request<v1::ListRequest>,
    ) -> Result<Response<v1::ListResponse>, ServeError> {
        let stale = stale(request.get_ref().consistency);
        let request = match self.router.route_read(request, stale).await? {
            Routed::Here(r) => r,
            Routed::Forward(c, r) => return forwarded(LockClient::new(c).list(r).await),
        };
        let r = request.get_ref();
        self.access.reader(&request, &r.tenant_id, false)?;
        let after = convert::page_after(&r.page_token)?;
        let size = match r.page_size {
            0 => 100,
            n => (n as usize).min(MAX_PAGE),
        };
        if !stale {
            self.router.confirm(false).await?;
        }
        let locks =
            self.table
                .read()
                .table
                .list(&r.tenant_id, &r.key_prefix, after.as_deref(), size)?;
        let next_page_token = match locks.last() {
            Some(l) if locks.len() == size => convert::page_token(&l.key),
            _ => String::new(),
        };
        let locks = locks
            .iter()
            .map(|v| convert::lock_state(v, |id| millis(self.timers.remaining(id))))
            .collect();
        Ok(Response::new(v1::ListResponse {
            locks,
            next_page_token,
        }))
    }

    /// Streams the audit events the request selects: from now on
    /// (`from_sequence` 0), or first the retained events from
    /// `from_sequence` on, then new ones. `gap_before` marks the first
    /// event sent when events at or after the start are no longer retained;
    /// a start above the current sequence waits for it.
    pub(super) async fn watch_call(
        &self,
        request: Request<v1::WatchRequest>,
    ) -> Result<Response<Stream2<v1::WatchEvent>>, ServeError> {
        let (tenant, all) = (
            request.get_ref().tenant_id.clone(),
            request.get_ref().include_all_tenants,
        );
        self.access.reader(&request, &tenant, all)?;
        let mut standing = self.access.standing(&request);
        let enforced = self.access.enforced();
        let r = request.into_inner();
        if !r.include_all_tenants {
            tenure_core::validate::tenant(&r.tenant_id)?;
        }
        tenure_core::validate::prefix(&r.key_prefix)?;
        let wanted = move |e: &tenure_core::AuditEvent| {
            (r.include_all_tenants || *e.tenant == *r.tenant_id)
                && e.key.starts_with(r.key_prefix.as_str())
        };
        // Subscribe first, then read the history: nothing falls in between.
        let mut notices = self.table.subscribe();
        let current = self.table.read().table.audit_seq();
        let gap = self
            .history
            .gap(r.from_sequence, current)
            .map_err(|e| ServeError::refused(Reason::Unavailable, e.to_string()))?;
        let history = self.history.clone();
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            let _open = crate::metrics::Open::new("tenure_watch_subscribers");
            // Nothing at or below `last` is sent: from 0, only what comes
            // after now; from a later start, nothing before it.
            let mut last = match r.from_sequence {
                0 => current,
                from => from - 1,
            };
            // A gap is told on the first event sent, replayed or new, even
            // when nothing retained matches.
            let mut gap_before = gap;
            let mut send = async |e: &tenure_core::AuditEvent, last: &mut u64| {
                *last = e.seq;
                let mut w = convert::watch_event(e);
                w.gap_before = std::mem::take(&mut gap_before);
                tx.send(Ok(w)).await.is_ok()
            };
            // The kept events up to now, a page at a time, from the disk.
            let mut next = last + 1;
            while next <= current {
                let page = match history.page(next, REPLAY_PAGE) {
                    Ok(page) => page,
                    Err(e) => {
                        let s = ServeError::refused(Reason::Unavailable, e.to_string());
                        let _ = send_error(&tx, s).await;
                        return;
                    }
                };
                let Some(end) = page.last().map(|e| e.seq) else {
                    break;
                };
                for e in page.iter().take_while(|e| e.seq <= current) {
                    if e.seq <= last || !wanted(e) {
                        continue;
                    }
                    if !send(e, &mut last).await {
                        return;
                    }
                }
                next = end + 1;
            }
            // Filtered-out events still count as seen.
            last = last.max(current);
            loop {
                match notices.recv().await {
                    Ok(n) => {
                        // A reloaded auth file may have revoked the caller.
                        if enforced
                            && let Some(again) = standing.recheck()
                            && let Err(e) = again.and_then(|w| {
                                w.check_role(Role::Reader)?;
                                if all {
                                    w.check_all_tenants()
                                } else {
                                    w.check_tenant(&tenant)
                                }
                            })
                        {
                            let _ = tx.send(Err(e.into_status(None))).await;
                            return;
                        }
                        for e in &n.events {
                            if e.seq <= last || !wanted(e) {
                                continue;
                            }
                            if !send(e, &mut last).await {
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let s = ServeError::refused(
                            Reason::Unavailable,
                            "the watcher fell behind; resume from the last sequence",
                        );
                        let _ = tx.send(Err(s.into_status(None))).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(
            Box::pin(ReceiverStream::new(rx)) as Stream2<v1::WatchEvent>
        ))
    }
}
