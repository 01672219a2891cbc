//! # tenure-server: a Tenure node
//!
//! A node runs openraft over the tenure-raft stores and serves, on the
//! incoming stream it is given, the node-to-node `Raft` service and the
//! public `Admin` service (status, membership, force-release, snapshot export
//! and import); the `Lock` service arrives with the lock-service issue.
//!
//! ## Why this shape
//! The transport is the seam: [`Node::start`] takes its listener as a stream
//! of connections, its peers' channels from a `Connector`, and a shutdown
//! future, so the same code runs on tokio TCP in production and on turmoil's
//! simulated network (shared/STYLE.md, point 10). Configuration is layered
//! defaults → file → environment → flags ([`config`]).
//!
//! ## Cluster formation
//! etcd-style: every founding member is started with the same
//! `initial_cluster` and `initial_cluster_state = new`; each fresh founder
//! initializes raft with that membership (openraft accepts the same
//! initialization from several nodes), so the cluster forms with no manual
//! step. A restarted node finds its data and rejoins; a node added later runs
//! with `existing` and waits for the leader to add it.
//!
//! ## Deliberately left out (for now)
//! The lock services, leader-side lease timers and identity arrive with the
//! lock-service issue.

pub mod access;
pub mod admin;
pub mod auth;
pub mod clock;
pub mod config;
mod error;
pub mod errors;
pub mod leases;
pub mod lock;
mod node;
pub mod router;
pub mod transfer;
pub mod watch;
pub mod writer;

pub use admin::AdminService;
pub use clock::{Harness, NodeClock, Sabotage};
pub use config::{ClusterState, NodeConfig, Settings};
pub use error::ServerError;
pub use node::{Node, raft_config};
