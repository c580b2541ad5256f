//! The server's clock: the system time, or, with `[debug] clock_start`, a clock that started at
//! a chosen instant and runs at normal speed (to try country rules at another hour). Every
//! time verifyd stores or compares comes from here.

use std::sync::atomic::{AtomicI64, Ordering};

static OFFSET_MS: AtomicI64 = AtomicI64::new(0);

fn system_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Now, in unix milliseconds.
pub fn now_ms() -> i64 {
    system_ms() + OFFSET_MS.load(Ordering::Relaxed)
}

/// Makes the clock read `start_ms` now and run on from there.
pub fn start_at(start_ms: i64) {
    OFFSET_MS.store(start_ms - system_ms(), Ordering::Relaxed);
}
