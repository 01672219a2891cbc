//! # tenure-client: Tenure from Rust
//!
//! The one client of a Tenure cluster: the CLI, the benchmark and the
//! simulations use it, and so should every Rust program. It is built in
//! layers, each knowing only the ones below it:
//!
//! 1. **transport** — channels to the nodes (through one seam, a
//!    [`Dialer`], for simulated networks and custom connectors), the leader
//!    it follows from every answer's hint, the caller's identity on every
//!    request (`x-owner-id` for a development cluster, a bearer token for a
//!    cluster with an auth file), per-try and per-call timeouts, and retries
//!    of the *same* request (same request_id) on retryable refusals, so a
//!    retry can never take a second lease;
//! 2. **keep-alive** — one stream to the leader for every lease the client
//!    keeps, reopened on the new leader after a transient refusal or a
//!    broken stream; only the server saying a lease is gone, or its
//!    deadline passing, loses it;
//! 3. **guard** — a [`LockGuard`] carries the lease's fencing token and its
//!    **client-side deadline** (docs/time.md, rule 5): the send time of the
//!    last acknowledged grant or renewal plus `ttl × (1 − max_drift)`, on
//!    this process's monotonic clock; [`LockGuard::lost`] resolves when the
//!    server reports the lease lost or the deadline passes;
//! 4. **[`Client`]** — the facade: acquire (now or waiting), renew,
//!    release, get, list (paged), watch (resumable), force-release, and
//!    the Admin calls (status, membership, transfer, export and import).
//!
//! Pass [`LockGuard::fencing_token`] to the storage you write to, and let
//! it refuse stale tokens ([`FencedResource`] does that in memory): a lock
//! alone cannot stop a paused holder from writing late.
//!
//! ```no_run
//! # async fn example() -> Result<(), tenure_client::Error> {
//! use std::time::Duration;
//! use tenure_client::{Client, ClientConfig};
//!
//! let config = ClientConfig::new(["127.0.0.1:7001", "127.0.0.1:7002"], "default", "worker-1")
//!     .with_token("tnr_…"); // for a cluster started with --auth-file
//! let client = Client::connect(config).await?;
//! let guard = client.acquire("jobs/nightly", Duration::from_secs(30)).await?;
//! println!("holding with fencing token {}", guard.fencing_token());
//! tokio::select! {
//!     _ = guard.lost() => eprintln!("lost the lock: stop writing"),
//!     _ = tokio::time::sleep(Duration::from_secs(5)) => guard.release().await?,
//! }
//! # Ok(())
//! # }
//! ```
//!
//! ## Left out
//! TLS options of its own (the TLS issue adds them; until then a [`Dialer`]
//! can open any channel), and any retry of a call whose refusal is final.

mod admin;
mod client;
mod guard;
mod keepalive;
mod transport;
mod watch;

pub use admin::{
    Imported, Leadership, LimitChanges, Member, Membership, NodeRole, NodeStatus, RestoreDone,
    RestoreOptions, SnapshotInfo,
};
pub use client::{
    AcquireOptions, BackupWritten, Client, ClientConfig, KeepAliveStream, Lease, ListPage,
    LockState, Renewed, Snapshot, WatchEvent,
};
pub use guard::LockGuard;
pub use keepalive::Lost;
pub use tenure_core::{FencedResource, Mode, Reason, TableConfig};
pub use transport::{Dial, Dialer, Error, Identity, TlsConfig};
pub use watch::{Watch, WatchOptions};
