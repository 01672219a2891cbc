//! The binary's errors: what a command can fail with, in words for people.

/// Why a `tenure` command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The lease table refused something the demo expected it to accept.
    #[error("the lease table refused {what}: {source}")]
    Refused {
        /// The step that was refused.
        what: &'static str,
        /// The table's refusal.
        source: tenure_core::Error,
    },
    /// The table answered with something the demo did not expect.
    #[error("unexpected answer to {0}")]
    Unexpected(&'static str),
    /// The node failed to start or stopped with an error.
    #[error(transparent)]
    Server(#[from] tenure_server::ServerError),
    /// A call to the cluster failed: refused with a reason, or no node answered.
    #[error(transparent)]
    Client(#[from] tenure_client::Error),
    /// A cluster command failed (no endpoint answered, or the cluster refused).
    #[error("{0}")]
    Cluster(String),
    /// Writing output failed (a closed pipe, say).
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
    /// Encoding JSON output failed.
    #[error("encoding JSON: {0}")]
    Json(#[from] serde_json::Error),
}
