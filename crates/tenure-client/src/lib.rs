//! # tenure-client: locks from Rust
//!
//! A [`Client`] talks to a Tenure cluster through any of its endpoints and
//! follows the leader's address that every answer carries. It retries a
//! request that met a leader change with the same request_id, so a retry can
//! never take a second lease. A [`LockGuard`] carries the lease's fencing
//! token and its **client-side deadline** (DESIGN.md, time rule 5): the send
//! time of the last acknowledged grant or renewal plus `ttl × (1 −
//! max_drift)`, on this process's monotonic clock. One keep-alive stream per
//! client keeps every guard alive; [`LockGuard::lost`] resolves when the
//! server reports the lease lost or the deadline passes, whichever is first.
//! Dropping a guard releases its lease (best effort).
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
//! let client = Client::connect(ClientConfig::new(["127.0.0.1:7001", "127.0.0.1:7002"], "default", "worker-1")).await?;
//! let guard = client.acquire("jobs/nightly", Duration::from_secs(30)).await?;
//! println!("holding with fencing token {}", guard.fencing_token());
//! tokio::select! {
//!     _ = guard.lost() => eprintln!("lost the lock: stop writing"),
//!     _ = tokio::time::sleep(Duration::from_secs(5)) => guard.release().await?,
//! }
//! # Ok(())
//! # }
//! ```

mod client;
mod guard;
mod keepalive;

pub use client::{Client, ClientConfig, Dialer, Error};
pub use guard::LockGuard;
pub use tenure_core::{FencedResource, Reason};
