//! Where a call is served: the router both public services share.
//!
//! One definition of "the leader" for every handler: the node **in office**,
//! that is, a raft leader that has applied an entry of its own term and
//! armed its lease timers (docs/time.md, rule 4). A node in office serves
//! the call; any other node forwards it, once, to the leader it knows, and
//! answers NOT_LEADER (retryable, with the leader's address when known)
//! only when it knows none or the call was forwarded already. A raft leader
//! not yet in office waits a moment for it rather than refusing.
//!
//! Every handler routes first and identifies the caller after, so a
//! follower never spends an Argon2 verification on a call it forwards,
//! and the leader checks the same credentials the caller sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tenure_core::Reason;
use tenure_proto::convert;
use tenure_raft::{Connector, NodeId, QuorumReads, Raft};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::auth::Auth;
use crate::errors::{self, FORWARDED, ServeError, marked};
use crate::leases::LeaseTimers;

/// Leader addresses a router keeps a channel to (membership changes can
/// bring new ones; past this many, the kept channels start over).
const MAX_CHANNELS: usize = 16;

/// How long a newly elected leader's call waits for it to take office.
const IN_OFFICE_WAIT: Duration = Duration::from_secs(2);

/// Where a call goes.
pub enum Routed<T> {
    /// This node serves it.
    Here(Request<T>),
    /// Forward it, marked, over this channel to the leader.
    Forward(Channel, Request<T>),
}

/// The router of one node.
#[derive(Clone)]
pub struct Router<C: Connector> {
    id: NodeId,
    raft: Raft,
    timers: LeaseTimers,
    connector: C,
    /// Read-index rounds, one for every read waiting.
    reads: QuorumReads,
    /// Vouches for the callers it forwards.
    auth: Auth,
    /// One channel per leader address, kept across calls: a forwarded call
    /// reuses its HTTP/2 connection (and TLS session) instead of opening
    /// one of its own.
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl<C: Connector> Router<C> {
    /// The router of node `id`.
    pub fn new(id: NodeId, raft: Raft, timers: LeaseTimers, connector: C, auth: Auth) -> Router<C> {
        Router {
            id,
            auth,
            reads: QuorumReads::new(raft.clone()),
            raft,
            timers,
            connector,
            channels: Arc::default(),
        }
    }

    /// The kept channel to `addr`, made on first use.
    fn channel(&self, addr: &str) -> Result<Channel, ServeError> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let c = self
            .connector
            .channel(addr)
            .map_err(|e| ServeError::refused(Reason::Unavailable, e.to_string()))?;
        // Leaders come and go: keep a few addresses, not every one seen.
        if channels.len() >= MAX_CHANNELS {
            channels.clear();
        }
        channels.insert(addr.to_owned(), c.clone());
        Ok(c)
    }

    /// Whether this node is the leader in office.
    pub fn in_office(&self) -> bool {
        self.timers.active()
    }

    /// The leader's id and address, as raft knows them.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        errors::leader(&self.raft)
    }

    /// The leader's address, for answers and refusals.
    pub fn hint(&self) -> Option<String> {
        self.leader().map(|l| l.1)
    }

    /// The one exit of every handler of both services: the answer with
    /// the leader's address in its `tenure-leader` metadata, or the error
    /// as a status with its reason and the leader's address.
    pub fn answer<T>(
        &self,
        result: Result<Response<T>, ServeError>,
    ) -> Result<Response<T>, Status> {
        let hint = self.hint();
        match result {
            Ok(mut response) => {
                if let Some(addr) = &hint
                    && response.metadata().get(convert::LEADER_METADATA).is_none()
                {
                    convert::set_leader(response.metadata_mut(), addr);
                }
                Ok(response)
            }
            Err(e) => Err(e.into_status(hint.as_deref())),
        }
    }

    /// Serves `request` here if this node is in office, or forwards it.
    pub async fn route<T>(&self, mut request: Request<T>) -> Result<Routed<T>, ServeError> {
        if self.wait_in_office().await {
            return Ok(Routed::Here(request));
        }
        match self.leader() {
            Some((id, addr)) if id != self.id && request.metadata().get(FORWARDED).is_none() => {
                let channel = self.channel(&addr)?;
                self.auth.vouch(&mut request);
                Ok(Routed::Forward(channel, marked(request)))
            }
            _ => Err(ServeError::refused(
                Reason::NotLeader,
                "no leader in office is known",
            )),
        }
    }

    /// A read: a stale one is served by the node asked, a linearizable one
    /// is routed like a write (and confirmed by a quorum read after).
    pub async fn route_read<T>(
        &self,
        request: Request<T>,
        stale: bool,
    ) -> Result<Routed<T>, ServeError> {
        if stale {
            Ok(Routed::Here(request))
        } else {
            self.route(request).await
        }
    }

    /// For calls that are never forwarded (streams the leader must hold):
    /// NOT_LEADER unless this node is in office.
    pub async fn here(&self, what: &str) -> Result<(), ServeError> {
        if self.wait_in_office().await {
            Ok(())
        } else {
            Err(ServeError::refused(
                Reason::NotLeader,
                format!("{what} go to the leader"),
            ))
        }
    }

    /// True once in office; a raft leader just elected gets a moment to
    /// take office (within a heartbeat or two, once it applied an entry of
    /// its term).
    async fn wait_in_office(&self) -> bool {
        if self.in_office() {
            return true;
        }
        if self.raft.metrics().borrow().state == openraft::ServerState::Leader {
            let deadline = tokio::time::Instant::now() + IN_OFFICE_WAIT;
            while tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
                if self.in_office() {
                    return true;
                }
            }
        }
        false
    }

    /// Confirms with a quorum that this node still leads (read-index),
    /// after the call arrived: a deposed leader answers NOT_LEADER. The
    /// negative control `renew_without_read_index` skips it for renewals.
    pub async fn confirm(&self, renewal: bool) -> Result<(), ServeError> {
        if renewal && self.timers.sabotage().renew_without_read_index {
            return Ok(());
        }
        self.reads
            .confirm()
            .await
            .map_err(|e| ServeError::refused(Reason::NotLeader, e.to_string()))
    }
}
