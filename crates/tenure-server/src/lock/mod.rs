//! The `Lock` service: acquire (at once or waiting in FIFO order), renew,
//! keep-alive, release, get, list and watch, on the leader's time model.
//!
//! Every handler reads the same way: **route** (serve here if this node is
//! the leader in office, or forward once to the leader — [`Router`]),
//! **identify** the caller ([`Access`]), **convert** the request into a core
//! command (tenure-proto's `convert`), **write** it through the typed
//! [`Writer`] or read the table, and **respond**. Handlers fail with a
//! [`crate::errors::ServeError`]; [`Router::answer`] is the one place it becomes a
//! status, and the one place every answer gets the leader's address in its
//! `tenure-leader` metadata.
//!
//! The RPC families live in their own files: `grant.rs` (acquire, release),
//! `keep.rs` (renew, keep-alive) and `read.rs` (get, list, watch).

mod grant;
mod keep;
mod read;

use std::pin::Pin;
use std::time::Duration;

use tenure_proto::convert;
use tenure_proto::v1;
use tenure_raft::{Connector, TableReader};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::access::Access;
use crate::leases::LeaseTimers;
use crate::router::Router;
use crate::watch::History;
use crate::writer::Writer;

type Stream2<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Longest page of `List`.
pub const MAX_PAGE: usize = 1_000;

/// The Lock service of one node.
#[derive(Clone)]
pub struct LockService<C: Connector> {
    router: Router<C>,
    writer: Writer,
    access: Access,
    table: TableReader,
    timers: LeaseTimers,
    history: History,
}

fn millis(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl<C: Connector> LockService<C> {
    /// The service: `router` says where calls are served, `writer` writes,
    /// `access` identifies, the table and the timers answer reads.
    pub fn new(
        router: Router<C>,
        writer: Writer,
        access: Access,
        table: TableReader,
        timers: LeaseTimers,
        history: History,
    ) -> LockService<C> {
        LockService {
            router,
            writer,
            access,
            table,
            timers,
            history,
        }
    }

    /// The time left on a lease's deadline, as the API shows it.
    fn lease_reply(&self, view: &tenure_core::LeaseView) -> v1::Lease {
        convert::lease(view, millis(self.timers.remaining(view.id)))
    }
}

#[tonic::async_trait]
impl<C: Connector> v1::lock_server::Lock for LockService<C> {
    async fn acquire(
        &self,
        request: Request<v1::AcquireRequest>,
    ) -> Result<Response<v1::Lease>, Status> {
        self.router.answer(self.acquire_call(request).await)
    }

    async fn renew(
        &self,
        request: Request<v1::RenewRequest>,
    ) -> Result<Response<v1::Lease>, Status> {
        self.router.answer(self.renew_call(request).await)
    }

    async fn release(
        &self,
        request: Request<v1::ReleaseRequest>,
    ) -> Result<Response<v1::Lease>, Status> {
        self.router.answer(self.release_call(request).await)
    }

    async fn get(
        &self,
        request: Request<v1::GetRequest>,
    ) -> Result<Response<v1::LockState>, Status> {
        self.router.answer(self.get_call(request).await)
    }

    async fn list(
        &self,
        request: Request<v1::ListRequest>,
    ) -> Result<Response<v1::ListResponse>, Status> {
        self.router.answer(self.list_call(request).await)
    }

    type KeepAliveStream = Stream2<v1::KeepAliveResponse>;

    async fn keep_alive(
        &self,
        request: Request<Streaming<v1::KeepAliveRequest>>,
    ) -> Result<Response<Self::KeepAliveStream>, Status> {
        self.router.answer(self.keep_alive_call(request).await)
    }

    async fn keep_alive_many(
        &self,
        request: Request<v1::KeepAliveManyRequest>,
    ) -> Result<Response<v1::KeepAliveManyResponse>, Status> {
        self.router.answer(self.keep_alive_many_call(request).await)
    }

    type WatchStream = Stream2<v1::WatchEvent>;

    async fn watch(
        &self,
        request: Request<v1::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.router.answer(self.watch_call(request).await)
    }
}
