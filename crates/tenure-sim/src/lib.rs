//! # tenure-sim: Tenure clusters in a deterministic simulation
//!
//! The real node code (tenure-server on tenure-raft) runs as turmoil hosts:
//! the network is turmoil's, the disks are [`tenure_raft::SimDisk`]s that
//! live outside the hosts (a crashed host keeps only what it flushed), each
//! node has its own clocks (a rate drift and a wall-clock offset), and one
//! seed fixes turmoil's randomness, every election timeout
//! ([`tenure_raft::seed_thread_rng`]), the clients' choices and the faults.
//!
//! - [`cluster`]: the nodes as hosts, and what they are seen to do;
//! - [`workload`]: clients on tenure-client, recording a history;
//! - [`nemesis`]: the faults;
//! - [`mod@scenario`]: named scenarios, negative controls, one seeded run
//!   checked by tenure-check;
//! - [`plan`]: fault schedules as files, and shrinking a failing run;
//! - [`store`]: the fenced downstream store;
//! - [`history`]: the recorder.

pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod net;
pub mod plan;
pub mod scenario;
pub mod store;
pub mod workload;

pub use cluster::{Observation, SimCluster};
pub use net::{TurmoilConnector, incoming};
pub use scenario::{Control, Outcome, Scenario, run, scenario, scenarios};
