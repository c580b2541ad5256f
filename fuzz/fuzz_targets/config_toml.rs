//! The server's configuration loader: `Config::from_toml_str` on fuzzed TOML text, which merges
//! it over the built-in defaults, extracts the whole `Config` (routes, fallback, country rules,
//! programs, carriers' tables), resolves `*_env` settings, fills the embedded defaults,
//! validates every key and builds each configured carrier from its settings, as
//! `verifyd --check-config` does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verify_server::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml_str(text) {
        Ok(config) => {
            assert!(
                !config.carriers.is_empty(),
                "a finished config has a carrier"
            );
            assert!(
                !config.routes.default.is_empty(),
                "a finished config has a default route"
            );
            if let Some(secret) = config.secret.as_deref().filter(|s| s.len() >= 8) {
                assert!(
                    !format!("{config:?}").contains(secret),
                    "the code secret is shown in the config's Debug output"
                );
            }
        }
        Err(error) => assert!(!error.0.is_empty(), "an error that says nothing"),
    }
});
