//! The `smpp` carrier of verifyd (being built).

use verify_carrier::CarrierRegistry;

/// The kind name of this carrier in `[[carriers]]` tables.
pub const KIND: &str = "smpp";

/// Adds this carrier kind to `registry` (not yet: the crate is being built).
pub fn register(registry: &mut CarrierRegistry) {
    let _ = registry;
}
