//! Writes a campaign's recipient list as CSV (`to,locale,name,link`): valid mobile numbers of
//! ten countries (see `verify_numbers::engine::recipients`), each once, the same list for the
//! same count.
//!
//! `cargo run --release -p verify-numbers --example campaign_list -- 1000000 > recipients.csv`

use std::io::{BufWriter, Write};

use verify_numbers::engine::recipients::recipients;

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|text| text.parse().ok())
        .unwrap_or(1_000_000);
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut lines = std::iter::once("to,locale,name,link".to_string()).chain(
        recipients(count, 20_261_207, &[])
            .into_iter()
            .enumerate()
            .map(|(index, r)| {
                format!(
                    "{},{},Customer {},https://example.com/r/{:08x}",
                    r.number,
                    r.locale,
                    index + 1,
                    (index as u32).wrapping_mul(2_654_435_761)
                )
            }),
    );
    if lines.try_for_each(|line| writeln!(out, "{line}")).is_err() {
        return;
    }
    let _ = out.flush();
}
