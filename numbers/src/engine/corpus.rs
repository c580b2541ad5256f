//! A test corpus made from the metadata itself: every territory's example number of every type,
//! the same numbers with digits changed, cut and lengthened, national forms with region hints,
//! international-prefix forms, random numbers per calling code, and junk. Deterministic for a
//! seed, so a disagreement can be reproduced.

use super::Engine;
use super::metadata::DESC_KINDS;

/// One corpus entry: the text a person typed and the region hint sent with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusEntry {
    /// The input.
    pub input: String,
    /// The region hint, if any.
    pub region_hint: Option<String>,
}

/// A small deterministic generator (SplitMix64), shared with the recipient lists.
pub(crate) struct Random(pub(crate) u64);

impl Random {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn digit(&mut self) -> char {
        (b'0' + self.below(10) as u8) as char
    }
}

fn entry(input: impl Into<String>, hint: Option<&str>) -> CorpusEntry {
    CorpusEntry {
        input: input.into(),
        region_hint: hint.map(str::to_string),
    }
}

/// Junk and edge cases that must never break a classifier.
const JUNK: &[&str] = &[
    "",
    " ",
    "+",
    "++",
    "+-",
    "abc",
    "call me",
    "0",
    "00",
    "+0",
    "+00 123 456",
    "+1",
    "+12",
    "+999 123 456 789",
    "1-800-FLOWERS",
    "+1 800 FLOWERS",
    "tel:+1-650-253-0000",
    "tel:253-0000;phone-context=+1-650",
    "+1 650 253 0000 ext. 123",
    "+44 20 7946 0123 x12",
    "+٩٧١٥٠١٢٣٤٥٦٧",
    "＋４４ ２０ ７９４６ ０１２３",
    "+44 (0) 20 7946 0123",
    "(+44) 20 7946 0123",
    "+49 (0)30 1234567",
    "+7 8 495 123-45-67",
    "💥",
    "+44\u{200B}20 7946 0123",
    "12345678901234567890123456789012345678901234567890",
    "+1234567890123456789012345678901234567890",
    "0049 30 1234567",
    "+44 20 7946 0123 / +44 20 7946 0124",
];

/// The corpus for `seed`; about 22,000 entries for the shipped metadata.
pub fn generate(engine: &Engine, seed: u64) -> Vec<CorpusEntry> {
    let mut random = Random(seed);
    let mut corpus = Vec::new();
    for territory in &engine.territories {
        let code = territory.country_code;
        let region = (territory.id != "001").then_some(territory.id.as_str());
        for kind in DESC_KINDS {
            let Some(example) = territory
                .raw
                .desc(kind)
                .and_then(|d| d.example_number.clone())
            else {
                continue;
            };
            let example_bytes: Vec<char> = example.chars().collect();
            corpus.push(entry(format!("+{code}{example}"), None));
            corpus.push(entry(format!("+{code} {example}"), region));
            if let Some(region) = region {
                // National forms: as formatted, and with the national prefix typed in front.
                let number = super::ParsedNumber {
                    country_code: code,
                    national: super::Digits::from_slice(example.as_bytes()),
                    extension: super::Extension::default(),
                };
                corpus.push(entry(engine.format(&number, true), Some(region)));
                corpus.push(entry(example.clone(), Some(region)));
                if let Some(prefix) = territory.raw.national_prefix.as_deref() {
                    corpus.push(entry(format!("{prefix}{example}"), Some(region)));
                }
                corpus.push(entry(format!("{code}{example}"), Some(region)));
                // Dialled from abroad with an international prefix.
                corpus.push(entry(format!("00{code}{example}"), Some("DE")));
                corpus.push(entry(format!("011 {code} {example}"), Some("US")));
            }
            // Digits changed, cut and lengthened.
            for _ in 0..3 {
                let mut changed = example_bytes.clone();
                let position = random.below(changed.len());
                changed[position] = random.digit();
                corpus.push(entry(
                    format!("+{code}{}", changed.iter().collect::<String>()),
                    None,
                ));
            }
            for cut in 1..=2 {
                if example_bytes.len() > cut {
                    let shorter: String =
                        example_bytes[..example_bytes.len() - cut].iter().collect();
                    corpus.push(entry(format!("+{code}{shorter}"), None));
                }
            }
            for extra in 1..=2 {
                let mut longer = example.clone();
                for _ in 0..extra {
                    longer.push(random.digit());
                }
                corpus.push(entry(format!("+{code}{longer}"), None));
            }
        }
        // Random numbers of every plausible length in this calling code.
        for _ in 0..12 {
            let length = 4 + random.below(12);
            let digits: String = (0..length).map(|_| random.digit()).collect();
            corpus.push(entry(format!("+{code}{digits}"), None));
        }
    }
    // Random calling codes, known or not.
    for _ in 0..2000 {
        let length = 6 + random.below(12);
        let digits: String = (0..length).map(|_| random.digit()).collect();
        corpus.push(entry(format!("+{digits}"), None));
    }
    for junk in JUNK {
        corpus.push(entry(*junk, None));
        corpus.push(entry(*junk, Some("US")));
        corpus.push(entry(*junk, Some("IN")));
    }
    corpus
}
