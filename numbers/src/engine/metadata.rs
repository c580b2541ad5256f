//! libphonenumber's numbering-plan metadata (from `numbers/data/metadata.jsonl`), compiled once
//! into lookup structures: per territory one multi-pattern DFA that tells, in a single pass over
//! the national number, which number descriptions (mobile, fixed line ...) it matches.

use std::sync::OnceLock;

use regex_automata::dfa::{Automaton, dense};
use regex_automata::util::syntax;
use regex_automata::{Anchored, MatchKind};
use serde::Deserialize;

use super::local_regex::LocalRegex;

/// One description of numbers (a type of line) as the metadata gives it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RawDesc {
    pub national_number_pattern: Option<String>,
    #[serde(default)]
    pub possible_length: Vec<i32>,
    #[serde(default)]
    pub possible_length_local_only: Vec<i32>,
    pub example_number: Option<String>,
}

/// A formatting rule.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RawFormat {
    pub pattern: String,
    pub format: String,
    #[serde(default)]
    pub leading_digits_pattern: Vec<String>,
    pub national_prefix_formatting_rule: Option<String>,
}

/// One territory (region, or non-geographic entity "001") as the metadata file holds it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RawTerritory {
    pub id: String,
    pub country_code: u16,
    pub leading_digits: Option<String>,
    pub international_prefix: Option<String>,
    pub national_prefix: Option<String>,
    pub preferred_extn_prefix: Option<String>,
    pub national_prefix_for_parsing: Option<String>,
    pub national_prefix_transform_rule: Option<String>,
    #[serde(default)]
    pub same_mobile_and_fixed_line_pattern: bool,
    pub general_desc: Option<RawDesc>,
    pub fixed_line: Option<RawDesc>,
    pub mobile: Option<RawDesc>,
    pub toll_free: Option<RawDesc>,
    pub premium_rate: Option<RawDesc>,
    pub shared_cost: Option<RawDesc>,
    pub personal_number: Option<RawDesc>,
    pub voip: Option<RawDesc>,
    pub pager: Option<RawDesc>,
    pub uan: Option<RawDesc>,
    pub voicemail: Option<RawDesc>,
    #[serde(default)]
    pub number_format: Vec<RawFormat>,
    #[serde(default)]
    pub intl_number_format: Vec<RawFormat>,
}

/// The descriptions a territory's DFA recognises, in the order libphonenumber tests them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum DescKind {
    General = 0,
    PremiumRate,
    TollFree,
    SharedCost,
    Voip,
    PersonalNumber,
    Pager,
    Uan,
    Voicemail,
    FixedLine,
    Mobile,
}

pub(crate) const DESC_KINDS: [DescKind; 11] = [
    DescKind::General,
    DescKind::PremiumRate,
    DescKind::TollFree,
    DescKind::SharedCost,
    DescKind::Voip,
    DescKind::PersonalNumber,
    DescKind::Pager,
    DescKind::Uan,
    DescKind::Voicemail,
    DescKind::FixedLine,
    DescKind::Mobile,
];

impl RawTerritory {
    pub(crate) fn desc(&self, kind: DescKind) -> Option<&RawDesc> {
        match kind {
            DescKind::General => self.general_desc.as_ref(),
            DescKind::PremiumRate => self.premium_rate.as_ref(),
            DescKind::TollFree => self.toll_free.as_ref(),
            DescKind::SharedCost => self.shared_cost.as_ref(),
            DescKind::Voip => self.voip.as_ref(),
            DescKind::PersonalNumber => self.personal_number.as_ref(),
            DescKind::Pager => self.pager.as_ref(),
            DescKind::Uan => self.uan.as_ref(),
            DescKind::Voicemail => self.voicemail.as_ref(),
            DescKind::FixedLine => self.fixed_line.as_ref(),
            DescKind::Mobile => self.mobile.as_ref(),
        }
    }
}

/// A set of lengths 0..=31 as bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Lengths(pub u32);

impl Lengths {
    fn from_list(list: &[i32]) -> Lengths {
        Lengths(
            list.iter()
                .filter(|&&n| (0..32).contains(&n))
                .fold(0, |bits, &n| bits | (1 << n)),
        )
    }
    pub fn contains(self, length: usize) -> bool {
        length < 32 && self.0 & (1 << length) != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn min(self) -> usize {
        self.0.trailing_zeros() as usize
    }
    pub fn max(self) -> usize {
        31 - self.0.leading_zeros() as usize
    }
}

/// A compiled description: which DFA pattern it is and which lengths it allows.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Desc {
    /// Allowed national number lengths; `None` when the metadata lists none (any length). A
    /// list of only -1 (libphonenumber's "no numbers of this type") is `Some` of no lengths.
    pub lengths: Option<Lengths>,
    /// Lengths only dialable locally.
    pub local_only: Lengths,
}

/// An anchored DFA used for prefix ("looking at") or whole-string matches over ASCII digits.
pub(crate) struct DigitDfa {
    dfa: dense::DFA<Vec<u32>>,
    start: regex_automata::util::primitives::StateID,
}

impl DigitDfa {
    fn build(patterns: &[String], match_kind: MatchKind) -> Result<DigitDfa, String> {
        let dfa = dense::Builder::new()
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .configure(
                dense::Config::new()
                    .match_kind(match_kind)
                    .start_kind(regex_automata::dfa::StartKind::Anchored)
                    .minimize(false),
            )
            .build_many(patterns)
            .map_err(|e| format!("{e}"))?;
        let start = dfa
            .start_state(&regex_automata::util::start::Config::new().anchored(Anchored::Yes))
            .map_err(|e| format!("{e}"))?;
        Ok(DigitDfa { dfa, start })
    }

    /// Bit i set when pattern i matches the whole of `digits`.
    pub fn full_matches(&self, digits: &[u8]) -> u32 {
        let mut state = self.start;
        for &byte in digits {
            state = self.dfa.next_state(state, byte);
            if self.dfa.is_dead_state(state) {
                return 0;
            }
        }
        state = self.dfa.next_eoi_state(state);
        if !self.dfa.is_match_state(state) {
            return 0;
        }
        let mut bits = 0;
        for i in 0..self.dfa.match_len(state) {
            bits |= 1 << self.dfa.match_pattern(state, i).as_usize();
        }
        bits
    }

    /// Whether the single pattern matches a prefix of `digits` (libphonenumber's `lookingAt`).
    pub fn matches_prefix(&self, digits: &[u8]) -> bool {
        let mut state = self.start;
        for &byte in digits {
            state = self.dfa.next_state(state, byte);
            if self.dfa.is_match_state(state) {
                return true;
            }
            if self.dfa.is_dead_state(state) {
                return false;
            }
        }
        self.dfa.is_match_state(self.dfa.next_eoi_state(state))
    }
}

/// A territory compiled for lookups.
pub(crate) struct Territory {
    pub raw: RawTerritory,
    /// Two letters, or "001".
    pub id: String,
    pub country_code: u16,
    pub descs: [Desc; 11],
    /// Which DFA pattern each description is (`u8::MAX`: none).
    pub pattern_of: [u8; 11],
    pub types: DigitDfa,
    pub leading_digits: Option<DigitDfa>,
    /// Lock-free prefix test for `national_prefix_for_parsing`, run before the regex engine.
    pub national_prefix_gate: Option<DigitDfa>,
    pub national_prefix_for_parsing: Option<LocalRegex>,
    /// The transform rule in the `regex` crate's replacement syntax (`$1` -> `${1}`).
    pub national_prefix_transform_rule: Option<String>,
    pub international_prefix: Option<LocalRegex>,
    pub same_mobile_and_fixed_line_pattern: bool,
    formats: OnceLock<CompiledFormats>,
}

/// Formatting rules compiled on first use (formatting is not on the classification hot path).
pub(crate) struct CompiledFormats {
    pub national: Vec<CompiledFormat>,
    pub international: Vec<CompiledFormat>,
}

pub(crate) struct CompiledFormat {
    /// The whole-number pattern, with the groups the rules refer to.
    pub pattern: LocalRegex,
    /// Replacement for national format (national-prefix rule applied to the first group).
    pub national_rule: String,
    /// Replacement for international format.
    pub international_rule: String,
    /// libphonenumber looks only at the last leading-digits pattern.
    pub last_leading_digits: Option<DigitDfa>,
}

/// libphonenumber's `\1` / `$1` group references in the `regex` crate's `${1}` form.
pub(crate) fn to_replacement_syntax(rule: &str) -> String {
    let mut out = String::with_capacity(rule.len() + 4);
    let mut chars = rule.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' | '$' if chars.peek().is_some_and(|d| d.is_ascii_digit()) => {
                let digit = chars.next().expect("peeked");
                out.push_str("${");
                out.push(digit);
                out.push('}');
            }
            '$' => out.push_str("$$"),
            other => out.push(other),
        }
    }
    out
}

fn anchored_regex(pattern: &str) -> Result<LocalRegex, String> {
    LocalRegex::new(&format!("^(?:{pattern})"))
}

impl Territory {
    pub(crate) fn compile(raw: RawTerritory) -> Result<Territory, String> {
        let mut descs = [Desc::default(); 11];
        let mut pattern_of = [u8::MAX; 11];
        let mut patterns = Vec::new();
        for kind in DESC_KINDS {
            let Some(desc) = raw.desc(kind) else { continue };
            let Some(pattern) = desc.national_number_pattern.as_deref() else {
                continue;
            };
            if pattern.is_empty() {
                continue;
            }
            pattern_of[kind as usize] = patterns.len() as u8;
            patterns.push(format!("^(?:{pattern})$"));
            descs[kind as usize] = Desc {
                lengths: (!desc.possible_length.is_empty())
                    .then(|| Lengths::from_list(&desc.possible_length)),
                local_only: Lengths::from_list(&desc.possible_length_local_only),
            };
        }
        // General lengths also serve descriptions that list none (libphonenumber's rule).
        let types = DigitDfa::build(&patterns, MatchKind::All)
            .map_err(|e| format!("{}: types: {e}", raw.id))?;
        let leading_digits = raw
            .leading_digits
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(|p| DigitDfa::build(&[format!("^(?:{p})")], MatchKind::LeftmostFirst))
            .transpose()
            .map_err(|e| format!("{}: leading_digits: {e}", raw.id))?;
        let national_prefix_for_parsing = raw
            .national_prefix_for_parsing
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(anchored_regex)
            .transpose()?;
        let national_prefix_gate = raw
            .national_prefix_for_parsing
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(|p| DigitDfa::build(&[format!("^(?:{p})")], MatchKind::LeftmostFirst))
            .transpose()
            .map_err(|e| format!("{}: national_prefix_for_parsing: {e}", raw.id))?;
        let international_prefix = raw
            .international_prefix
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(anchored_regex)
            .transpose()?;
        Ok(Territory {
            id: raw.id.clone(),
            country_code: raw.country_code,
            descs,
            pattern_of,
            types,
            leading_digits,
            national_prefix_gate,
            national_prefix_for_parsing,
            national_prefix_transform_rule: raw
                .national_prefix_transform_rule
                .as_deref()
                .filter(|r| !r.is_empty())
                .map(to_replacement_syntax),
            international_prefix,
            same_mobile_and_fixed_line_pattern: raw.same_mobile_and_fixed_line_pattern,
            raw,
            formats: OnceLock::new(),
        })
    }

    /// Bits of [`DescKind`] whose description matches `nsn` (pattern and length).
    pub(crate) fn matching_descs(&self, nsn: &[u8]) -> u32 {
        let pattern_bits = self.types.full_matches(nsn);
        if pattern_bits == 0 {
            return 0;
        }
        let mut bits = 0;
        for kind in DESC_KINDS {
            let index = kind as usize;
            let pattern = self.pattern_of[index];
            if pattern == u8::MAX || pattern_bits & (1 << pattern) == 0 {
                continue;
            }
            if let Some(lengths) = self.descs[index].lengths
                && !lengths.contains(nsn.len())
            {
                continue;
            }
            bits |= 1 << index;
        }
        bits
    }

    pub(crate) fn formats(&self) -> &CompiledFormats {
        self.formats.get_or_init(|| {
            let compile = |list: &[RawFormat]| {
                list.iter()
                    .filter_map(|f| {
                        let international_rule = to_replacement_syntax(&f.format);
                        let national_rule = match &f.national_prefix_formatting_rule {
                            Some(np_rule) if !np_rule.is_empty() => {
                                first_group_with_prefix_rule(&international_rule, np_rule)
                            }
                            _ => international_rule.clone(),
                        };
                        Some(CompiledFormat {
                            pattern: LocalRegex::new(&format!("^(?:{})$", f.pattern)).ok()?,
                            national_rule,
                            international_rule,
                            last_leading_digits: match f.leading_digits_pattern.last() {
                                Some(p) => Some(
                                    DigitDfa::build(
                                        &[format!("^(?:{p})")],
                                        MatchKind::LeftmostFirst,
                                    )
                                    .ok()?,
                                ),
                                None => None,
                            },
                        })
                    })
                    .collect::<Vec<_>>()
            };
            let national = compile(&self.raw.number_format);
            let international = if self.raw.intl_number_format.is_empty() {
                compile(&self.raw.number_format)
            } else {
                compile(&self.raw.intl_number_format)
            };
            CompiledFormats {
                national,
                international,
            }
        })
    }
}

/// libphonenumber's national formatting: the first group reference of the format (`${N}`) is
/// replaced by the national-prefix formatting rule, in which `\1` stands for that reference.
fn first_group_with_prefix_rule(format: &str, np_rule: &str) -> String {
    let Some(start) = format.find("${") else {
        return format.to_string();
    };
    let Some(len) = format[start..].find('}') else {
        return format.to_string();
    };
    let group = &format[start..start + len + 1];
    let rule = to_replacement_syntax(np_rule).replace("${1}", group);
    format!("{}{}{}", &format[..start], rule, &format[start + len + 1..])
}
