//! Raw gRPC clients bound to one simulated node, for tests that probe what
//! that node itself answers (a deposed leader, a follower) on the wire.
//! Programs use tenure-client, which follows the leader instead.

use tenure_raft::Connector as _;
use tenure_sim::TurmoilConnector;
use tonic::transport::Channel;

fn channel(host: &str) -> Channel {
    TurmoilConnector
        .channel(&format!("{host}:{}", tenure_sim::cluster::PORT))
        .expect("a simulated address is a valid URI")
}

/// A `Lock` client to the simulated node `host`.
#[allow(dead_code)] // each test crate uses one of the two
pub fn lock_client(host: &str) -> tenure_proto::v1::lock_client::LockClient<Channel> {
    tenure_proto::v1::lock_client::LockClient::new(channel(host))
}

/// An `Admin` client to the simulated node `host`.
#[allow(dead_code)] // each test crate uses one of the two
pub fn admin_client(host: &str) -> tenure_proto::v1::admin_client::AdminClient<Channel> {
    tenure_proto::v1::admin_client::AdminClient::new(channel(host))
}
