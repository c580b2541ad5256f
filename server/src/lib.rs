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

/// The `verify.v1` messages and service, generated once in [`verify_proto`].
pub mod proto {
    pub use verify_proto::FILE_DESCRIPTOR_SET;
    pub use verify_proto::v1::*;
}
