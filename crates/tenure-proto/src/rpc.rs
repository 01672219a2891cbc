//! The two `google.rpc` messages Tenure's error details use.
//!
//! A failed call carries, in its gRPC status details, a `google.rpc.Status`
//! whose `details` hold one `google.rpc.ErrorInfo` naming the stable reason.
//! That is the standard shape every gRPC ecosystem decodes (Go's `status`
//! package, `grpcurl`, Rust's `tonic-types`), so a client in any language gets
//! the reason without knowing Tenure's own types.
//!
//! Rather than pull in all of googleapis for two small messages, they are
//! declared here with prost's derive, field for field and tag for tag as in
//! `google/rpc/status.proto` and `google/rpc/error_details.proto`; the bytes
//! they encode are the bytes the upstream definitions encode.

use std::collections::BTreeMap;

/// The `type_url` of an `ErrorInfo` packed in a `google.protobuf.Any`.
pub const ERROR_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.ErrorInfo";

/// `google.rpc.Status`: the payload of gRPC's `grpc-status-details-bin`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    /// The gRPC status code, as its number.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// The message for people.
    #[prost(string, tag = "2")]
    pub message: String,
    /// Typed details; Tenure sends exactly one `ErrorInfo`.
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<prost_types::Any>,
}

/// `google.rpc.ErrorInfo`: the machine-readable cause of an error.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ErrorInfo {
    /// The stable reason string, e.g. `LOCK_HELD`.
    #[prost(string, tag = "1")]
    pub reason: String,
    /// Who defines the reason: `tenure.dev` for Tenure's reasons.
    #[prost(string, tag = "2")]
    pub domain: String,
    /// Extra facts; Tenure sets `leader` to the leader's address when known.
    #[prost(btree_map = "string, string", tag = "3")]
    pub metadata: BTreeMap<String, String>,
}
