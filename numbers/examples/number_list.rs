//! Writes a list of phone numbers for list-cleaning runs: the generated world-wide corpus
//! (every territory's example numbers of every type, the same numbers with digits changed, cut
//! and lengthened, national forms, junk), repeated until it has the number of lines asked for.
//!
//! `cargo run --release -p verify-numbers --example number_list -- 10000000 > numbers.txt`

use std::io::{BufWriter, Write};

use verify_numbers::engine::{Engine, corpus};

fn main() {
    let lines: usize = std::env::args()
        .nth(1)
        .and_then(|text| text.parse().ok())
        .unwrap_or(1_000_000);
    let entries = corpus::generate(Engine::embedded(), 20_261_125);
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for entry in entries.iter().cycle().take(lines) {
        if writeln!(out, "{}", entry.input.replace(['\n', '\r'], " ")).is_err() {
            return;
        }
    }
    let _ = out.flush();
}
