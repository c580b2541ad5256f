//! Abuse defense: what a request may ask for before anything is sent, whoever sends it.
//!
//! SMS pumping (bots requesting codes to number ranges whose operators pay the attacker per
//! message) and code guessing are stopped by rules that are data, each refusal naming the rule,
//! the count and the window that triggered it and when it ends. This module decides from counts
//! the store keeps; it holds no state and does no I/O.
//!
//! - [`RequestContext`]: what the client says about the person asking (IP address, device,
//!   user, app version, risk tags), all optional, used only for limits and signals.
//! - [`limits`]: rate limits as data, buckets keyed on the number, its prefix, its country, the
//!   client's IP address or network, device, user or API key, each with at most so many
//!   requests per interval.
//! - [`pumping`]: the pumping guard, which blocks a number prefix (or a country) whose codes
//!   look like a bot walking a range: neighbouring numbers, few approvals.
//! - [`guessing`]: wrong codes for one number counted across its verifications, and a
//!   cool-off that doubles on each repeat.
//! - [`geo`]: per country, allow, monitor or block.
//! - [`blocks`]: what a rule blocked, why, and for how long (growing on repeat).
//! - [`AbuseDefense`]: all of them, from `[abuse]`.

pub mod blocks;
pub mod context;
pub mod defense;
pub mod geo;
pub mod guessing;
pub mod limits;
pub mod pumping;

pub use blocks::{Block, BlockLadder, BlockRule, BlockTarget, Verdict};
pub use context::{ContextError, RawContext, RequestContext};
pub use defense::{AbuseConfig, AbuseDefense};
pub use geo::{GeoConfig, GeoDecision, GeoPermission, GeoPermissions};
pub use guessing::{GuessingConfig, GuessingGuard};
pub use limits::{
    BucketKey, KeyKind, LimitConfigError, LimitRefusal, RateLimit, RateLimitConfig, RateLimits,
    Usage,
};
pub use pumping::{CountryActivity, GuardLevel, PumpingConfig, PumpingGuard, RecentSend};
