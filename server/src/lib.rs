//! verifyd, the phone-verification server. Its layers, outside in: transports (`grpc`), use
//! cases (`usecases`), the domain core (`domain`: every rule, no I/O), the store (`store`:
//! loads and saves), and the dispatcher (`dispatcher`: claims, sends, records outcomes).
//!
//! `app::run` assembles a server from a [`config::Config`]; the `verifyd` binary wraps it.

pub mod access;
pub mod app;
pub mod auth;
pub mod campaign_api;
pub mod campaign_sender;
pub mod carriers;
pub mod clock;
pub mod codes;
pub mod config;
pub mod config_errors;
pub mod convert;
pub mod dashboard;
pub mod decide;
pub mod dispatcher;
pub mod domain;
pub mod errors;
pub mod grpc;
pub mod metrics;
pub mod notify;
pub mod rollup;
pub mod services;
pub mod stats;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod usecases;
pub mod web;
pub mod webhooks;

/// The `verify.v1` messages and service, generated once in [`verify_proto`].
pub mod proto {
    pub use verify_proto::FILE_DESCRIPTOR_SET;
    pub use verify_proto::v1::*;
}
