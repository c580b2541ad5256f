//! verifyd, the phone-verification server: gRPC API, storage, outbox dispatcher and carriers.
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
pub mod errors;
pub mod notify;
pub mod service;
pub mod stats;
pub mod store;

/// The generated `verify.v1` messages and service.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("verify.v1");

    /// The encoded descriptors of the verify.v1 protos, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/verify_descriptor.bin"));
}
