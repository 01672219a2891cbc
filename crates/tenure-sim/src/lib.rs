//! # tenure-sim: Tenure clusters in a deterministic simulation
//!
//! The real node code (tenure-server on tenure-raft) runs as turmoil hosts:
//! the network is turmoil's, the disks are [`tenure_raft::SimDisk`]s that
//! live outside the hosts (a crashed host keeps only what it flushed), and
//! one seed fixes turmoil's randomness and every election timeout
//! ([`tenure_raft::seed_thread_rng`]).
//!
//! This crate holds the network adapters and the cluster harness; the
//! nemeses, workloads, histories and the checker grow here with the
//! simulation issue.

pub mod cluster;
pub mod net;

pub use cluster::{Observation, SimCluster};
pub use net::{TurmoilConnector, admin_client, incoming, lock_client};
