//! The node's errors.

/// Why a node could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration cannot work.
    #[error("configuration: {0}")]
    Config(String),
    /// The data directory could not be opened.
    #[error("disk: {0}")]
    Disk(#[from] tenure_raft::DiskError),
    /// openraft refused to start or failed.
    #[error("raft: {0}")]
    Raft(String),
    /// The gRPC server failed.
    #[error("serving: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// Binding the listen address failed.
    #[error("listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// The IO error.
        source: std::io::Error,
    },
}
