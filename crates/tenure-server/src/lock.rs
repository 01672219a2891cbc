//! The `Lock` service: acquire (at once or waiting in FIFO order), renew,
//! keep-alive, release, get, list and watch, on the leader's time model.
//!
//! Writes and linearizable reads are served by the leader once it has taken
//! office (its lease timers are active); any other node forwards the call to
//! the leader it knows, once, and answers NOT_LEADER (retryable, with the
//! leader's address when known) only while no leader is known. Stale reads
//! and watches are served by any node. Every answer names the leader in the
//! `tenure-leader` metadata entry.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tenure_core::{
    AuditKind, CancelCause, CancelWait, Command, EndReason, Error, LeaseId, LeaseState, LeaseView,
    Reason, Reply,
};
use tenure_proto::convert::{self, RenewCall};
use tenure_proto::v1;
use tenure_proto::v1::lock_client::LockClient;
use tenure_raft::{Connector, NodeId, Proposer, QuorumReads, Raft, TableReader};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Auth;
use crate::errors::{self, FORWARDED, marked};
use crate::leases::LeaseTimers;
use crate::watch::History;

/// Who may call, and how often.
pub struct Access {
    /// How callers are identified.
    pub auth: Auth,
    /// Calls per second per caller (0: no limit).
    pub rate_limit: u32,
}

/// One rate limiter, keyed by caller.
type Limiter = governor::DefaultKeyedRateLimiter<String>;

type Stream2<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Longest page of `List`.
pub const MAX_PAGE: usize = 1_000;
/// Extra time a waiting acquire is given beyond its wait timeout before the
/// call gives up on hearing the outcome.
const WAIT_SLACK: Duration = Duration::from_secs(5);
/// How long a newly elected leader's call waits for it to take office.
const IN_OFFICE_WAIT: Duration = Duration::from_secs(2);

/// The Lock service of one node.
#[derive(Clone)]
pub struct LockService<C: Connector> {
    id: NodeId,
    raft: Raft,
    proposer: Proposer,
    /// Read-index rounds, one for every read waiting.
    reads: QuorumReads,
    table: TableReader,
    timers: LeaseTimers,
    history: History,
    connector: C,
    auth: Auth,
    /// Calls per second per caller; `None`: no limit.
    limiter: Option<Arc<Limiter>>,
}

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

fn millis(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl<C: Connector> LockService<C> {
    /// The service of node `id`.
    // One argument per collaborator the node wires in; a parameter struct
    // would only give them a second name.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: NodeId,
        raft: Raft,
        proposer: Proposer,
        table: TableReader,
        timers: LeaseTimers,
        history: History,
        connector: C,
        access: Access,
    ) -> LockService<C> {
        let Access { auth, rate_limit } = access;
        LockService {
            id,
            reads: QuorumReads::new(raft.clone()),
            raft,
            proposer,
            table,
            timers,
            history,
            connector,
            auth,
            limiter: std::num::NonZeroU32::new(rate_limit).map(|n| {
                let limiter = Arc::new(Limiter::keyed(governor::Quota::per_second(n)));
                // Forget callers that went quiet, so the map stays small.
                let weak = Arc::downgrade(&limiter);
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        match weak.upgrade() {
                            Some(l) => l.retain_recent(),
                            None => return,
                        }
                    }
                });
                limiter
            }),
        }
    }

    /// RATE_LIMITED when `caller` went past its calls per second.
    fn limit(&self, caller: &str) -> Result<(), Status> {
        match &self.limiter {
            Some(l) if l.check_key(&caller.to_owned()).is_err() => Err(convert::status(
                Reason::RateLimited,
                format!("{caller} is over its rate limit"),
                self.hint().as_deref(),
            )),
            _ => Ok(()),
        }
    }

    /// The caller, allowed to use `tenant`.
    fn caller<T>(&self, request: &Request<T>, tenant: &str) -> Result<String, Status> {
        let who = self.auth.identify(request)?;
        who.check_tenant(tenant)?;
        self.limit(&who.name)?;
        Ok(who.name)
    }

    /// Reads need an identity only when tokens are enforced.
    fn reader<T>(
        &self,
        request: &Request<T>,
        tenant: &str,
        all_tenants: bool,
    ) -> Result<(), Status> {
        let named = request
            .metadata()
            .get(crate::errors::OWNER_METADATA)
            .and_then(|v| v.to_str().ok());
        self.limit(named.unwrap_or("anonymous"))?;
        if self.auth.enforced() {
            let who = self.auth.identify(request)?;
            if all_tenants {
                who.check_admin()?;
            } else {
                who.check_tenant(tenant)?;
            }
        }
        Ok(())
    }

    fn leader(&self) -> Option<(NodeId, String)> {
        errors::leader(&self.raft)
    }

    fn hint(&self) -> Option<String> {
        self.leader().map(|l| l.1)
    }

    /// Confirms with a quorum that this node still leads (read-index),
    /// after the call arrived: a deposed leader answers NOT_LEADER.
    async fn quorum_read(&self) -> Result<(), Status> {
        self.reads
            .confirm()
            .await
            .map_err(|e| convert::status(Reason::NotLeader, e.to_string(), self.hint().as_deref()))
    }

    /// An answer, with the leader's address in its metadata.
    fn respond<T>(&self, body: T) -> Response<T> {
        let mut response = Response::new(body);
        if let Some(addr) = self.hint() {
            convert::set_leader(response.metadata_mut(), &addr);
        }
        response
    }

    fn fail(&self, e: &Error) -> Status {
        convert::error_status(e, self.hint().as_deref())
    }

    /// `None` when this node serves the call; otherwise a client to the
    /// leader to forward it to, or NOT_LEADER.
    async fn route<T>(
        &self,
        request: &Request<T>,
    ) -> Result<Option<LockClient<tonic::transport::Channel>>, Status> {
        if self.timers.active() {
            return Ok(None);
        }
        // A leader just elected takes office within a heartbeat or two
        // (once it applied an entry of its term): wait for that, not refuse.
        if self.raft.metrics().borrow().state == openraft::ServerState::Leader {
            let deadline = tokio::time::Instant::now() + IN_OFFICE_WAIT;
            while tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
                if self.timers.active() {
                    return Ok(None);
                }
            }
        }
        let leader = self.leader();
        let hint = leader.as_ref().map(|l| l.1.as_str());
        match &leader {
            Some((id, addr)) if *id != self.id && request.metadata().get(FORWARDED).is_none() => {
                let channel = self
                    .connector
                    .channel(addr)
                    .map_err(|e| convert::status(Reason::Unavailable, e.to_string(), hint))?;
                Ok(Some(LockClient::new(channel)))
            }
            _ => Err(convert::status(
                Reason::NotLeader,
                "no leader in office is known",
                hint,
            )),
        }
    }

    async fn propose(&self, command: Command) -> Result<Reply, Status> {
        let at_ms = self.timers.clock().wall_ms();
        errors::propose(
            &self.raft,
            &self.proposer,
            &self.table,
            at_ms,
            command,
            |e| self.fail(e),
        )
        .await
        .map(|(_, reply)| reply)
    }

    /// Negative control `grant_before_commit`: answers from the command
    /// applied to a copy of the table, and proposes it in the background.
    /// A leader cut off from its quorum thus grants what never commits.
    fn speculate(&self, command: Command) -> Result<LeaseView, Status> {
        let mut copy = self.table.read().table.clone();
        let ctx = tenure_core::ApplyCtx {
            index: copy.next_index(),
            at_ms: self.timers.clock().wall_ms(),
        };
        let reply = copy
            .apply(ctx, command.clone())
            .result
            .map_err(|e| self.fail(&e))?;
        let Reply::Lease(view) = reply else {
            return Err(Status::internal(format!("acquire answered {reply:?}")));
        };
        let (proposer, at_ms) = (self.proposer.clone(), ctx.at_ms);
        tokio::spawn(async move {
            let _ = proposer.propose(at_ms, command).await;
        });
        Ok(view)
    }

    fn lease_reply(&self, view: &LeaseView) -> v1::Lease {
        convert::lease(view, millis(self.timers.remaining(view.id)))
    }

    /// Waits until a waiting lease is granted, or ends.
    async fn await_grant(
        &self,
        mut notices: broadcast::Receiver<std::sync::Arc<tenure_raft::Notice>>,
        view: LeaseView,
    ) -> Result<LeaseView, Status> {
        let mut guard = AbandonGuard {
            proposer: self.proposer.clone(),
            clock: self.timers.clock().clone(),
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
                    return Err(self.fail(&ended_error(&v)));
                }
                Ok(_) => {}
                Err(e) => {
                    guard.lease = None;
                    return Err(self.fail(&e));
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
                    return Err(convert::status(
                        Reason::Unavailable,
                        "the node is stopping",
                        None,
                    ));
                }
                Err(_) => return Err(self.fail(&Error::WaitTimeout(view.id))),
            }
        }
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

#[tonic::async_trait]
impl<C: Connector> v1::lock_server::Lock for LockService<C> {
    async fn acquire(
        &self,
        request: Request<v1::AcquireRequest>,
    ) -> Result<Response<v1::Lease>, Status> {
        if let Some(mut leader) = self.route(&request).await? {
            return leader.acquire(marked(request)).await;
        }
        let caller = self.caller(&request, &request.get_ref().tenant_id)?;
        let command = convert::acquire(request.get_ref(), &caller).map_err(Status::from)?;
        // Listen before proposing, so a grant right after cannot be missed.
        let notices = self.table.subscribe();
        if self.timers.sabotage().grant_before_commit && command.wait_timeout_ms == 0 {
            let view = self.speculate(Command::Acquire(command))?;
            return Ok(self.respond(convert::lease(&view, view.ttl_ms)));
        }
        let view = match self.propose(Command::Acquire(command)).await? {
            Reply::Lease(v) => v,
            other => return Err(Status::internal(format!("acquire answered {other:?}"))),
        };
        let view = match view.state {
            LeaseState::Waiting => self.await_grant(notices, view).await?,
            LeaseState::Active => view,
            _ => return Err(self.fail(&ended_error(&view))),
        };
        // The grant's deadline counts from now at the latest (the timer loop
        // arms it from the applied entry too; a deadline only moves later).
        let left = self
            .timers
            .renew(view.id, Duration::from_millis(view.ttl_ms), view.version)
            .ok();
        Ok(self.respond(convert::lease(&view, millis(left))))
    }

    async fn renew(
        &self,
        request: Request<v1::RenewRequest>,
    ) -> Result<Response<v1::Lease>, Status> {
        if let Some(mut leader) = self.route(&request).await? {
            return leader.renew(marked(request)).await;
        }
        let caller = self.caller(&request, &request.get_ref().tenant_id)?;
        match convert::renew(request.get_ref(), &caller).map_err(Status::from)? {
            RenewCall::Change(renew) => match self.propose(Command::Renew(renew)).await? {
                Reply::Lease(v) => Ok(self.respond(self.lease_reply(&v))),
                other => Err(Status::internal(format!("renew answered {other:?}"))),
            },
            RenewCall::Keep(t) => {
                let view = self
                    .table
                    .read()
                    .table
                    .check_renew(&t.tenant, t.lease_id, &t.owner)
                    .map_err(|e| self.fail(&e))?;
                // Still the leader, confirmed by a quorum after the renewal arrived.
                if !self.timers.sabotage().renew_without_read_index {
                    self.quorum_read().await?;
                }
                let left = self
                    .timers
                    .renew(view.id, Duration::from_millis(view.ttl_ms), view.version)
                    .map_err(|r| {
                        convert::status(r.reason(), "not renewed", self.hint().as_deref())
                    })?;
                Ok(self.respond(convert::lease(&view, millis(Some(left)))))
            }
        }
    }

    async fn release(
        &self,
        request: Request<v1::ReleaseRequest>,
    ) -> Result<Response<v1::Lease>, Status> {
        if let Some(mut leader) = self.route(&request).await? {
            return leader.release(marked(request)).await;
        }
        let caller = self.caller(&request, &request.get_ref().tenant_id)?;
        let command = convert::release(request.get_ref(), &caller).map_err(Status::from)?;
        match self.propose(Command::Release(command)).await? {
            Reply::Lease(v) => Ok(self.respond(convert::lease(&v, 0))),
            other => Err(Status::internal(format!("release answered {other:?}"))),
        }
    }

    async fn get(
        &self,
        request: Request<v1::GetRequest>,
    ) -> Result<Response<v1::LockState>, Status> {
        let stale = request.get_ref().consistency == v1::Consistency::Stale as i32;
        if !stale {
            if let Some(mut leader) = self.route(&request).await? {
                return leader.get(marked(request)).await;
            }
            self.quorum_read().await?;
        }
        let r = request.get_ref();
        self.reader(&request, &r.tenant_id, false)?;
        tenure_core::validate::tenant(&r.tenant_id).map_err(|e| self.fail(&e))?;
        tenure_core::validate::key(&r.lock_key).map_err(|e| self.fail(&e))?;
        let view = self.table.read().table.lock(&r.tenant_id, &r.lock_key);
        let left = view
            .active
            .as_ref()
            .and_then(|l| self.timers.remaining(l.id));
        Ok(self.respond(convert::lock_state(&view, millis(left))))
    }

    async fn list(
        &self,
        request: Request<v1::ListRequest>,
    ) -> Result<Response<v1::ListResponse>, Status> {
        let stale = request.get_ref().consistency == v1::Consistency::Stale as i32;
        if !stale {
            if let Some(mut leader) = self.route(&request).await? {
                return leader.list(marked(request)).await;
            }
            self.quorum_read().await?;
        }
        let r = request.get_ref();
        self.reader(&request, &r.tenant_id, false)?;
        let after = convert::page_after(&r.page_token).map_err(Status::from)?;
        let size = match r.page_size {
            0 => 100,
            n => (n as usize).min(MAX_PAGE),
        };
        let locks = self
            .table
            .read()
            .table
            .list(&r.tenant_id, &r.key_prefix, after.as_deref(), size)
            .map_err(|e| self.fail(&e))?;
        let next_page_token = match locks.last() {
            Some(l) if locks.len() == size => convert::page_token(&l.key),
            _ => String::new(),
        };
        let locks = locks
            .iter()
            .map(|v| {
                let left = v.active.as_ref().and_then(|l| self.timers.remaining(l.id));
                convert::lock_state(v, millis(left))
            })
            .collect();
        Ok(self.respond(v1::ListResponse {
            locks,
            next_page_token,
        }))
    }

    type KeepAliveStream = Stream2<v1::KeepAliveResponse>;

    async fn keep_alive(
        &self,
        request: Request<Streaming<v1::KeepAliveRequest>>,
    ) -> Result<Response<Self::KeepAliveStream>, Status> {
        if !self.timers.active() {
            return Err(convert::status(
                Reason::NotLeader,
                "keep-alive streams go to the leader",
                self.hint().as_deref(),
            ));
        }
        let who = self.auth.identify(&request)?;
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(1024);
        let service = self.clone();
        tokio::spawn(async move {
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
                        if !service.timers.sabotage().renew_without_read_index
                            && let Err(s) = service.quorum_read().await
                        {
                            let _ = tx.send(Err(s)).await;
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
        Ok(self.respond(Box::pin(ReceiverStream::new(rx)) as Self::KeepAliveStream))
    }

    type WatchStream = Stream2<v1::WatchEvent>;

    async fn watch(
        &self,
        request: Request<v1::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (tenant, all) = (
            request.get_ref().tenant_id.clone(),
            request.get_ref().include_all_tenants,
        );
        self.reader(&request, &tenant, all)?;
        let r = request.into_inner();
        if !r.include_all_tenants {
            tenure_core::validate::tenant(&r.tenant_id).map_err(|e| self.fail(&e))?;
        }
        tenure_core::validate::prefix(&r.key_prefix).map_err(|e| self.fail(&e))?;
        let wanted = move |e: &tenure_core::AuditEvent| {
            (r.include_all_tenants || *e.tenant == *r.tenant_id)
                && e.key.starts_with(r.key_prefix.as_str())
        };
        // Subscribe first, then read the history: nothing falls in between.
        let mut notices = self.table.subscribe();
        let (past, gap) = self.history.since(r.from_sequence);
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            let mut last = 0;
            let mut first = true;
            for e in past.iter().filter(|e| wanted(e)) {
                let mut w = convert::watch_event(e);
                w.gap_before = gap && first;
                first = false;
                last = e.seq;
                if tx.send(Ok(w)).await.is_err() {
                    return;
                }
            }
            loop {
                match notices.recv().await {
                    Ok(n) => {
                        for e in &n.events {
                            if e.seq <= last || !wanted(e) {
                                continue;
                            }
                            last = e.seq;
                            if tx.send(Ok(convert::watch_event(e))).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let s = convert::status(
                            Reason::Unavailable,
                            "the watcher fell behind; resume from the last sequence",
                            None,
                        );
                        let _ = tx.send(Err(s)).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(self.respond(Box::pin(ReceiverStream::new(rx)) as Self::WatchStream))
    }
}
