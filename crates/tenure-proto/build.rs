//! Generates the gRPC contract's Rust code from `proto/tenure/v1/lock.proto`.
//!
//! protoc comes from the `protoc-bin-vendored` crate, never from the system,
//! so a clean machine builds without installing anything. Besides the
//! messages, the client and the server stubs, the build writes the file
//! descriptor set that `FILE_DESCRIPTOR_SET` embeds for gRPC reflection.

use std::env;
use std::error::Error;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn Error>> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto");
    let lock_proto = proto_root.join("tenure/v1/lock.proto");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", proto_root.display());
    println!("cargo:rerun-if-changed={}", lock_proto.display());

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .file_descriptor_set_path(out_dir.join("tenure_v1_descriptor.bin"))
        .compile_with_config(config, &[lock_proto], &[proto_root])?;
    Ok(())
}
