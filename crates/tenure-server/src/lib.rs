//! # tenure-server: a Tenure node
//!
//! A node runs openraft over the tenure-raft stores and serves, on the
//! incoming stream it is given:
//! - the node-to-node `Raft` service (append-entries, vote, snapshots);
//! - the public `Lock` service ([`lock`]): acquire (at once or waiting in
//!   FIFO order), renew, keep-alive streams, release, get, list and watch;
//! - the public `Admin` service ([`admin`]): status, membership, leadership
//!   transfer, force-release, snapshot export and import;
//! - the standard gRPC health service (SERVING while the node knows a
//!   leader), and server reflection in both protocol versions, v1 and
//!   v1alpha, so generic tools old and new can list and call the services.
//!
//! While it leads, the node also keeps the lease deadlines
//! ([`leases::LeaseTimers`]), the leader's half of the time model in
//! docs/time.md.
//!
//! ## Why this shape
//! The two public services share one seam, and every handler reads as the
//! same sentence: **route** ([`router::Router`]: serve here if this node is
//! the leader in office, otherwise forward once to the leader), **identify**
//! ([`access::Access`]: a bearer token checked against Argon2 hashes, or
//! `x-owner-id` on a development cluster), **convert** (tenure-proto's
//! `convert`), **write** ([`writer::Writer`]: one typed method per command,
//! checked against the table before it is proposed) and **respond**. Every
//! failure is an [`errors::ServeError`], and [`router::Router::answer`] is
//! the one place where it becomes a gRPC status with its reason, and where
//! every answer gets the leader's address. docs/architecture.md follows one
//! acquire through all of it.
//!
//! The transport is the seam with the outside world: [`Node::start`] takes
//! its listener as a stream of connections, its peers' channels from a
//! `Connector`, and a shutdown future, so the same code runs on tokio TCP in
//! production and on turmoil's simulated network (docs/architecture.md,
//! "Seams"). Configuration is layered: defaults, then a file, then the
//! environment, then flags ([`config`]).
//!
//! ## Cluster formation
//! etcd-style: every founding member is started with the same
//! `initial_cluster` and `initial_cluster_state = new`. Only the founder
//! with the lowest id initializes raft at once, so a new cluster holds a
//! single election; each other founder initializes only if, after waiting
//! its turn, it has still heard of no term and no membership, so a cluster
//! forms even when the first founder never starts. A restarted node finds
//! its data and rejoins; a node added later runs with `existing` and waits
//! for the leader to add it. On a graceful stop a leader hands leadership
//! to its most caught-up voter first ([`transfer`]).
//!
//! ## Deliberately left out
//! Lock semantics (tenure-core's table decides every outcome) and storage
//! (tenure-raft's); the server adds time, identity and transport around
//! them. Not built yet: Prometheus metrics, and the HTTP/JSON gateway of
//! the reference's API.
//!
//! ## Transport security
//! With `tls` files ([`tls`]) a node serves TLS only and calls its peers
//! with mutual TLS; the Raft service answers only members presenting their
//! node certificate ([`peers`]), and clients may authenticate with a
//! certificate from `--client-ca` as well as with a bearer token
//! ([`auth`]).

pub mod access;
pub mod admin;
pub mod auth;
pub mod clock;
pub mod config;
mod error;
pub mod errors;
pub mod gateway;
pub mod http;
pub mod leases;
pub mod lock;
pub mod metrics;
mod node;
pub mod peers;
pub mod router;
pub mod tls;
pub mod transfer;
pub mod watch;
pub mod writer;

pub use admin::AdminService;
pub use clock::{Harness, NodeClock, Sabotage};
pub use config::{ClusterState, NodeConfig, Settings};
pub use error::ServerError;
pub use node::{Node, raft_config};
