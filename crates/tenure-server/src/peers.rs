//! Who may call the Raft service: with TLS, only the members of the
//! cluster, each proving it with its node certificate.
//!
//! Without TLS a node listens on loopback only (the binary refuses
//! anything else), and every caller that can reach it is admitted: that is
//! the development mode, and what simulations run.

use std::sync::Arc;

use tenure_raft::{NodeId, Raft};
use tonic::{Request, Status};

use crate::tls::{Tls, peer_chain};

/// The check at the door of the Raft service, and of anything else only
/// a node may do (vouching for a client a follower forwards).
#[derive(Clone)]
pub struct Peers {
    tls: Option<Arc<Tls>>,
    raft: Raft,
}

impl Peers {
    /// The members of `raft`'s cluster, proven by certificates under `tls`
    /// (`None`: no TLS, everyone admitted).
    pub fn new(tls: Option<Arc<Tls>>, raft: Raft) -> Peers {
        Peers { tls, raft }
    }

    /// This node's TLS, if it has any.
    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_deref()
    }

    /// The member that made a call: `Ok(None)` without TLS; UNAUTHENTICATED
    /// without a certificate, PERMISSION_DENIED for a certificate that is
    /// not a node certificate of the cluster's CA, or names a node that is
    /// not a member. A node that knows no membership yet (fresh, waiting to
    /// be added) admits any node certificate: the leader adding it must
    /// reach it before it learns who the members are.
    pub fn member(&self, extensions: &tonic::Extensions) -> Result<Option<NodeId>, Status> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        let chain = peer_chain(extensions).ok_or_else(|| {
            Status::unauthenticated(
                "the Raft service answers cluster members only: present a node certificate",
            )
        })?;
        let id = tls.node_of(&chain).ok_or_else(|| {
            Status::permission_denied(
                "the Raft service answers cluster members only: this certificate names no node \
                 (node-<id>) under the cluster's CA",
            )
        })?;
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let mut nodes = m.membership_config.membership().nodes().peekable();
        if nodes.peek().is_none() || m.membership_config.membership().get_node(&id).is_some() {
            Ok(Some(id))
        } else {
            Err(Status::permission_denied(format!(
                "node-{id} is not a member of this cluster"
            )))
        }
    }

    /// Whether a call came from a member node over TLS (never without TLS:
    /// then nothing proves who called).
    pub fn from_member(&self, extensions: &tonic::Extensions) -> bool {
        self.tls.is_some() && matches!(self.member(extensions), Ok(Some(_)))
    }

    /// The interceptor in front of the Raft service.
    pub fn gate(&self) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone + use<> {
        let peers = self.clone();
        move |request: Request<()>| {
            if let Err(refused) = peers.member(request.extensions()) {
                tracing::warn!(
                    remote = ?request.remote_addr(),
                    reason = %refused.message(),
                    "refused a call to the Raft service"
                );
                return Err(refused);
            }
            Ok(request)
        }
    }
}
