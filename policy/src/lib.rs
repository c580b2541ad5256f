//! Decisions of verifyd that need no network, database or gRPC: what a number is, which channel
//! and which carriers to use, and what the message says.
//!
//! The server asks; this crate answers from metadata and configuration alone.

pub mod channel;
pub mod classify;
pub mod engine;
pub mod fallback;
pub mod messages;
pub mod number_data;
pub mod routing;
pub mod rules;

pub use channel::{ChannelDecision, ChannelRefusal, choose_channel};
pub use classify::{Classification, InvalidReason, LineType, classify, parse_region_hint};
pub use engine::TerritoryId;
pub use fallback::{FallbackConfig, FallbackPolicy, FallbackStrategy, Workflow};
pub use routing::RouteTable;
pub use verify_carrier::Channel;
