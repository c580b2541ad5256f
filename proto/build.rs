//! Generates everything Rust needs from `verify/v1/verify.proto`, once for the whole workspace.
//!
//! protox compiles the proto in pure Rust (no system `protoc`). From its descriptors:
//! tonic-prost-build writes the prost messages with the tonic client and server, pbjson-build
//! writes their serde implementations (the proto3 JSON mapping), and the encoded descriptor set
//! is saved for server reflection.

use std::path::PathBuf;

use prost::Message;

/// The proto package generated here, as pbjson-build names it.
const PACKAGE: &str = ".verify.v1";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let protos = [proto_root.join("verify/v1/verify.proto")];
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let descriptors = protox::compile(&protos, [&proto_root])?;
    let encoded = descriptors.encode_to_vec();
    std::fs::write(out_dir.join("verify_descriptor.bin"), &encoded)?;

    // Timestamps use this crate's `Timestamp`, whose JSON form is the proto3 one.
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .extern_path(".google.protobuf.Timestamp", "crate::Timestamp")
        .compile_fds(descriptors)?;

    pbjson_build::Builder::new()
        .register_descriptors(&encoded)?
        .extern_path(".google.protobuf.Timestamp", "crate::Timestamp")
        .preserve_proto_field_names()
        .emit_fields()
        .build(&[PACKAGE])?;
    Ok(())
}
