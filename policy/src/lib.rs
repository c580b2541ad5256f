//! Decisions of verifyd that need no network, database or gRPC: which channel and which carriers
//! to use for a number, what the country rules allow, and what the message says.
//!
//! What a number is comes from `verify-numbers`; this crate re-exports the parts the server uses
//! (`classify`, `Classification` with its recommended channel, `LineType`, `engine`, ...). The
//! server asks; this crate answers from metadata and configuration alone.

pub mod abuse;
pub mod channel;
pub mod classify;
pub mod fallback;
pub mod messages;
pub mod routing;
pub mod rules;

pub use channel::{
    ChannelDecision, ChannelRefusal, accepts_sms, choose_channel, recommended_channel,
};
pub use classify::{Classification, InvalidReason, LineType, classify, parse_region_hint};
pub use fallback::{FallbackConfig, FallbackPolicy, FallbackStrategy, Workflow};
pub use routing::RouteTable;
pub use verify_carrier::Channel;
pub use verify_numbers::{TerritoryId, engine};
