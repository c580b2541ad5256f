//! Replay protection for signed callbacks: remembers what was seen within a time window (a
//! nonce, a signature) so that the same signed request is accepted once.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, MutexGuard};

/// Why a callback is refused as a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Seen before within the window.
    Seen,
    /// Too many callbacks within the window to tell (at the guard's capacity): refused for
    /// now, so that replay protection never silently stops; the vendor retries later.
    Full,
}

#[derive(Debug, Default)]
struct Window {
    /// Keys by time seen, oldest first, to forget those that left the window.
    order: VecDeque<(u64, u64)>,
    keys: HashSet<u64>,
}

/// Keys seen within the last `window` seconds, at most `capacity` of them. Keys are kept as
/// 64-bit hashes, so memory stays small (a false "seen" needs a hash collision).
#[derive(Debug)]
pub struct ReplayGuard {
    window: u64,
    capacity: usize,
    seen: Mutex<Window>,
}

impl ReplayGuard {
    /// A guard that remembers keys for `window_seconds`, at most `capacity` at once.
    pub fn new(window_seconds: u64, capacity: usize) -> Self {
        ReplayGuard {
            window: window_seconds,
            capacity,
            seen: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Window> {
        // A panic elsewhere while holding the lock leaves plain data behind: keep using it.
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `key` seen at `now` (unix seconds), or says why it is refused.
    pub fn first_use(&self, key: &str, now: u64) -> Result<(), Replay> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let hash = hasher.finish();
        let mut seen = self.lock();
        let horizon = now.saturating_sub(self.window);
        while let Some(&(at, old)) = seen.order.front() {
            if at >= horizon {
                break;
            }
            seen.order.pop_front();
            seen.keys.remove(&old);
        }
        if seen.keys.contains(&hash) {
            return Err(Replay::Seen);
        }
        if seen.keys.len() >= self.capacity {
            return Err(Replay::Full);
        }
        seen.keys.insert(hash);
        seen.order.push_back((now, hash));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_accepted_once_within_the_window_and_forgotten_after() {
        let guard = ReplayGuard::new(300, 10);
        assert_eq!(guard.first_use("n1", 1_000), Ok(()));
        assert_eq!(guard.first_use("n1", 1_200), Err(Replay::Seen));
        assert_eq!(guard.first_use("n2", 1_200), Ok(()));
        // 301 s later n1 left the window (its timestamp would be refused as too old anyway).
        assert_eq!(guard.first_use("n1", 1_301), Ok(()));
    }

    #[test]
    fn a_full_guard_refuses_instead_of_forgetting() {
        let guard = ReplayGuard::new(300, 2);
        assert_eq!(guard.first_use("a", 10), Ok(()));
        assert_eq!(guard.first_use("b", 10), Ok(()));
        assert_eq!(guard.first_use("c", 10), Err(Replay::Full));
        assert_eq!(guard.first_use("a", 20), Err(Replay::Seen));
        // Room again once the first ones leave the window.
        assert_eq!(guard.first_use("c", 311), Ok(()));
    }
}
