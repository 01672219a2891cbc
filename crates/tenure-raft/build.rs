//! Generates the node-to-node transport from `proto/tenure/v1/raft.proto`,
//! with protoc from the `protoc-bin-vendored` crate (no system protoc).

use std::env;
use std::error::Error;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn Error>> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto");
    let raft_proto = proto_root.join("tenure/v1/raft.proto");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", raft_proto.display());

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_with_config(config, &[raft_proto], &[proto_root])?;
    Ok(())
}
