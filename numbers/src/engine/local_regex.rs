//! Regexes whose scratch space lives in a per-thread slot instead of a shared pool.
//!
//! `regex::Regex` hands its caches out from a pool; threads other than the first contend for
//! it, and under contention build throw-away caches (and re-learn their lazy DFA each time). On
//! a server classifying on every core that is the bottleneck. Here each regex has an index into
//! a thread-local table of (cache, captures), so matching takes no lock and, after a thread's
//! first use of a regex, allocates nothing.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use regex_automata::meta::{Cache, Regex};
use regex_automata::util::captures::Captures;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input};

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SCRATCH: RefCell<Vec<Option<(Cache, Captures)>>> = const { RefCell::new(Vec::new()) };
}

/// A compiled regex, anchored at the start, matched over ASCII digits.
pub(crate) struct LocalRegex {
    regex: Regex,
    id: usize,
}

impl LocalRegex {
    /// Compiles `pattern` (libphonenumber syntax, a subset of the regex crate's).
    pub(crate) fn new(pattern: &str) -> Result<LocalRegex, String> {
        let regex = Regex::builder()
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .build(pattern)
            .map_err(|e| format!("{pattern}: {e}"))?;
        Ok(LocalRegex {
            regex,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Runs `work` with this regex's captures after an anchored search of `text`; `None` when
    /// it does not match.
    pub(crate) fn with_captures<T>(
        &self,
        text: &str,
        work: impl FnOnce(&Captures) -> T,
    ) -> Option<T> {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            if scratch.len() <= self.id {
                scratch.resize_with(self.id + 1, || None);
            }
            let (cache, captures) = scratch[self.id]
                .get_or_insert_with(|| (self.regex.create_cache(), self.regex.create_captures()));
            let input = Input::new(text).anchored(Anchored::Yes);
            self.regex.search_captures_with(cache, &input, captures);
            captures.is_match().then(|| work(captures))
        })
    }

    /// End of the anchored match at the start of `text`.
    pub(crate) fn prefix_end(&self, text: &str) -> Option<usize> {
        self.with_captures(text, |captures| captures.get_match().map(|m| m.end()))
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_and_interpolation_work_from_many_threads() {
        let regex = std::sync::Arc::new(LocalRegex::new(r"^(?:(\d{3})(\d{4}))$").unwrap());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let regex = regex.clone();
                std::thread::spawn(move || {
                    let mut out = String::new();
                    regex
                        .with_captures("5550123", |c| {
                            c.interpolate_string_into("5550123", "${1}-${2}", &mut out)
                        })
                        .unwrap();
                    assert_eq!(out, "555-0123");
                    assert!(regex.with_captures("55501", |_| ()).is_none());
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        let prefix = LocalRegex::new(r"^(?:00|011)").unwrap();
        assert_eq!(prefix.prefix_end("0114412"), Some(3));
        assert_eq!(prefix.prefix_end("4412"), None);
    }
}
