//! Generates the `verify.v1` client code from the shared proto at build time.
//!
//! protox compiles the proto in pure Rust (no system `protoc`); tonic-prost-build turns the
//! descriptors into prost messages and a tonic client. The server side is not generated here.

use std::path::Path;

const PROTO_ROOT: &str = "../proto";
const PROTO_FILE: &str = "../proto/verify/v1/verify.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_FILE}");
    println!("cargo:rerun-if-changed=build.rs");

    let descriptors = protox::compile([Path::new(PROTO_FILE)], [Path::new(PROTO_ROOT)])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
