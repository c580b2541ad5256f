//! verifyd, the phone-verification server. Its layers, outside in: transports (`grpc`), use
//! cases (`usecases`), the domain core (`domain`: every rule, no I/O), the store (`store`:
//! loads and saves), and the dispatcher (`dispatcher`: claims, sends, records outcomes).
//!
//! `app::run` assembles a server from a [`config::Config`]; the `verifyd` binary wraps it.

pub mod app;
pub mod auth;
pub mod carriers;
pub mod clock;
pub mod codes;
pub mod config;
pub mod convert;
pub mod decide;
pub mod dispatcher;
pub mod domain;
pub mod errors;
pub mod grpc;
pub mod notify;
pub mod stats;
pub mod store;
pub mod usecases;

/// The generated `verify.v1` messages and service.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("verify.v1");

    /// The encoded descriptors of the verify.v1 protos, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/verify_descriptor.bin"));
}
