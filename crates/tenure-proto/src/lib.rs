//! # tenure-proto: Tenure's gRPC contract in Rust
//!
//! ## What
//! The public API of Tenure is one proto file, `proto/tenure/v1/lock.proto`
//! at the top of the workspace: the `Lock` service (acquire, renew, release,
//! get, list, keep-alive, watch) and the `Admin` service (force-release,
//! status, membership, snapshot export and import). This crate compiles it at
//! build time and offers:
//! - [`v1`]: the generated messages, enums, clients (`v1::lock_client`,
//!   `v1::admin_client`) and server traits (`v1::lock_server`,
//!   `v1::admin_server`), exactly as `tonic-prost-build` writes them;
//! - [`FILE_DESCRIPTOR_SET`]: the compiled descriptors, for gRPC server
//!   reflection, so `grpcurl` and friends work without the `.proto` at hand;
//! - [`convert`]: the one module that turns proto messages into tenure-core
//!   commands and views and back, and the error model: the gRPC code of every
//!   [`tenure_core::Reason`] and how the reason and the leader's address ride
//!   in a [`tonic::Status`];
//! - [`rpc`]: the two `google.rpc` messages the error details use.
//!
//! ## Why a crate of its own
//! The server, the Rust client, the checker and the simulations all speak
//! this contract. Generating it once, and converting in one place, means a
//! reason cannot map to `ABORTED` on the server and be read back as something
//! else by the client, and a change to the wire shows up as a compile error
//! everywhere that depends on it. The proto file, not this crate, is the
//! contract for other languages; this crate adds no wire behaviour of its own.
//!
//! protoc comes from the `protoc-bin-vendored` crate, so building needs no
//! system package.
//!
//! ## What is left out
//! - The node-to-node Raft transport (`raft.proto`) belongs with the
//!   replication crate, not with the public API.
//! - Validation of lengths, alphabets and TTL bounds: the core does it inside
//!   the replicated apply, against the replicated configuration. The
//!   conversions check only what the core cannot see (lease id syntax, enum
//!   numbers, the request's owner against the authenticated caller).
//! - Deadlines: the core has none, so `expires_in_ms` is an argument the
//!   server supplies when it builds a reply.
//! - The HTTP/JSON gateway's shapes, and authentication itself.

pub mod convert;
pub mod rpc;

/// The generated code of package `tenure.v1` (messages, enums, clients and
/// servers). Its documentation is the comments of `lock.proto`.
pub mod v1 {
    #![allow(missing_docs)]
    #![allow(clippy::all, clippy::pedantic, clippy::unwrap_used)]

    tonic::include_proto!("tenure.v1");
}

/// The encoded `google.protobuf.FileDescriptorSet` of `tenure/v1/lock.proto`,
/// for a gRPC reflection service.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tenure_v1_descriptor.bin"));

pub use convert::ConvertError;
