//! What a phone number is: valid or not (and why), country calling code, region, E.164 and
//! national/international formats, line type, original carrier and time zones, from
//! libphonenumber's metadata compiled into the crate. No I/O, no lock on the classify path.
//!
//! This crate knows nothing of channels, carriers or rules: what to do about a number is
//! `verify-policy`'s business.

pub mod classify;
pub mod engine;
pub mod number_data;

pub use classify::{
    Classification, InvalidReason, LineType, UnknownRegion, classify, parse_region_hint, warm_up,
};
pub use engine::TerritoryId;
