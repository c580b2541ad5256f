//! The classification engine: libphonenumber's answers (validity, region, line type, formats)
//! from its own metadata, compiled once into DFAs, with no lock and no allocation on the path
//! that parses and classifies a number.
//!
//! Parsing follows libphonenumber step by step for inputs made of digits, a leading `+` and
//! common separators (nearly all real traffic). Anything else (letters, extensions, RFC 3966,
//! non-ASCII digits) is parsed by `rlibphonenumber`, a full port, and then classified here.

pub mod corpus;
mod local_regex;
mod metadata;
pub mod recipients;

use std::sync::OnceLock;

use metadata::{DescKind, Lengths, RawTerritory, Territory};

use crate::classify::{InvalidReason, LineType};

/// Longest input libphonenumber looks at.
const MAX_INPUT_LENGTH: usize = 250;
/// Shortest national significant number.
const MIN_LENGTH_FOR_NSN: usize = 2;
/// Longest national significant number.
const MAX_LENGTH_FOR_NSN: usize = 17;

/// Digits of a national significant number, inline.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Digits {
    bytes: [u8; MAX_LENGTH_FOR_NSN],
    len: u8,
}

impl Digits {
    fn from_slice(digits: &[u8]) -> Digits {
        let mut bytes = [0u8; MAX_LENGTH_FOR_NSN];
        bytes[..digits.len()].copy_from_slice(digits);
        Digits {
            bytes,
            len: digits.len() as u8,
        }
    }

    /// The ASCII digits.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The digits as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).expect("ASCII digits")
    }
}

impl std::fmt::Debug for Digits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string could not be parsed as a number at all (libphonenumber's parse errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseFailure {
    /// Not a phone number.
    NotANumber,
    /// Unknown calling code, or national input without a region.
    InvalidCountryCode,
    /// Too short after an international prefix.
    TooShortAfterIdd,
    /// National number too short.
    TooShortNsn,
    /// Too long.
    TooLong,
}

impl ParseFailure {
    /// The reason reported to clients.
    pub fn reason(self) -> InvalidReason {
        match self {
            ParseFailure::NotANumber => InvalidReason::NotANumber,
            ParseFailure::InvalidCountryCode => InvalidReason::InvalidCountryCode,
            ParseFailure::TooShortAfterIdd | ParseFailure::TooShortNsn => InvalidReason::TooShort,
            ParseFailure::TooLong => InvalidReason::TooLong,
        }
    }
}

/// A parsed number: calling code, national significant number and extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedNumber {
    /// Country calling code.
    pub country_code: u16,
    /// National significant number (with Italian leading zeros).
    pub national: Digits,
    /// Extension digits, often empty.
    pub extension: Extension,
}

/// Extension digits of a number (libphonenumber allows up to 20), inline.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Extension {
    bytes: [u8; 20],
    len: u8,
}

impl Extension {
    fn from_text(text: &str) -> Extension {
        let mut extension = Extension::default();
        for byte in text.bytes().filter(u8::is_ascii_digit).take(20) {
            extension.bytes[extension.len as usize] = byte;
            extension.len += 1;
        }
        extension
    }

    /// The digits, empty when the number has no extension.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).expect("ASCII digits")
    }
}

impl std::fmt::Debug for Extension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a number is, without any allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    /// The parse result.
    pub parsed: Result<ParsedNumber, ParseFailure>,
    /// Whether the number is valid.
    pub valid: bool,
    /// The territory the number belongs to (libphonenumber's region for the number), if any.
    pub territory: Option<TerritoryId>,
    /// Line type (`Unknown` when invalid).
    pub line_type: LineType,
    /// Why it is invalid.
    pub invalid_reason: Option<InvalidReason>,
}

/// Index of a territory in the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TerritoryId(u16);

/// Result of libphonenumber's length test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LengthVerdict {
    Possible,
    PossibleLocalOnly,
    TooShort,
    TooLong,
    InvalidLength,
}

/// The compiled metadata and everything needed to classify.
pub struct Engine {
    territories: Vec<Territory>,
    /// Territory by two-letter region, indexed by `(a - b'A') * 26 + (b - b'A')`.
    by_region: Vec<u16>,
    /// Territories per calling code (main region first; "001" entities for non-geographic codes).
    by_calling_code: Vec<Vec<u16>>,
    metadata_version: String,
}

const NONE: u16 = u16::MAX;

static ENGINE: OnceLock<Engine> = OnceLock::new();

fn region_slot(region: &str) -> Option<usize> {
    let bytes = region.as_bytes();
    if bytes.len() != 2 || !bytes.iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    let a = bytes[0].to_ascii_uppercase() - b'A';
    let b = bytes[1].to_ascii_uppercase() - b'A';
    Some(a as usize * 26 + b as usize)
}

impl Engine {
    /// The engine over the metadata shipped with this crate, compiled on first use.
    pub fn embedded() -> &'static Engine {
        ENGINE.get_or_init(|| {
            Engine::from_jsonl(include_str!("../../data/metadata.jsonl"))
                .expect("the shipped metadata compiles")
        })
    }

    /// Compiles metadata in the `metadata.jsonl` format.
    pub fn from_jsonl(text: &str) -> Result<Engine, String> {
        let mut territories = Vec::new();
        let mut metadata_version = String::new();
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            if line.contains("\"_metadata_version\"") {
                let value: serde_json::Value =
                    serde_json::from_str(line).map_err(|e| format!("line {}: {e}", number + 1))?;
                metadata_version = value["_metadata_version"]
                    .as_str()
                    .unwrap_or_default()
                    .into();
                continue;
            }
            let raw: RawTerritory =
                serde_json::from_str(line).map_err(|e| format!("line {}: {e}", number + 1))?;
            territories.push(Territory::compile(raw)?);
        }
        let mut by_region = vec![NONE; 26 * 26];
        let mut by_calling_code = vec![Vec::new(); 1000];
        for (index, territory) in territories.iter().enumerate() {
            if let Some(slot) = region_slot(&territory.id) {
                by_region[slot] = index as u16;
            }
        }
        for line in include_str!("../../data/calling_codes.tsv").lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (code, regions) = line
                .split_once('\t')
                .ok_or_else(|| format!("calling_codes.tsv: bad line `{line}`"))?;
            let code: usize = code
                .parse()
                .map_err(|_| format!("calling_codes.tsv: bad code `{code}`"))?;
            for region in regions.split(',') {
                let index = if region == "001" {
                    territories
                        .iter()
                        .position(|t| t.id == "001" && t.country_code as usize == code)
                } else {
                    region_slot(region)
                        .map(|slot| by_region[slot])
                        .filter(|&i| i != NONE)
                        .map(usize::from)
                };
                if let (Some(index), Some(list)) = (index, by_calling_code.get_mut(code)) {
                    list.push(index as u16);
                }
            }
        }
        Ok(Engine {
            territories,
            by_region,
            by_calling_code,
            metadata_version,
        })
    }

    /// Compiles every territory's formatting rules now rather than on first use, so no request
    /// pays for it (the server calls this at start).
    pub fn compile_all_formats(&self) {
        for territory in &self.territories {
            let _ = territory.formats();
        }
    }

    /// The libphonenumber metadata version compiled in.
    pub fn metadata_version(&self) -> &str {
        &self.metadata_version
    }

    /// Number of territories (regions and non-geographic entities).
    pub fn territory_count(&self) -> usize {
        self.territories.len()
    }

    /// The territory of a two-letter region.
    pub fn region(&self, region: &str) -> Option<TerritoryId> {
        let index = self.by_region[region_slot(region)?];
        (index != NONE).then_some(TerritoryId(index))
    }

    /// The region code of a territory: two letters, or "001".
    pub fn region_code(&self, id: TerritoryId) -> &str {
        &self.territories[id.0 as usize].id
    }

    fn territory(&self, id: TerritoryId) -> &Territory {
        &self.territories[id.0 as usize]
    }

    fn main_territory(&self, country_code: u16) -> Option<TerritoryId> {
        self.by_calling_code
            .get(country_code as usize)?
            .first()
            .map(|&i| TerritoryId(i))
    }

    fn is_known_calling_code(&self, code: u32) -> bool {
        self.by_calling_code
            .get(code as usize)
            .is_some_and(|list| !list.is_empty())
    }

    /// Parses and classifies `input`, national input read for `region_hint`.
    pub fn classify(&self, input: &str, region_hint: Option<TerritoryId>) -> Classified {
        let parsed = self.parse(input, region_hint);
        let Ok(number) = parsed else {
            return Classified {
                parsed,
                valid: false,
                territory: None,
                line_type: LineType::Unknown,
                invalid_reason: parsed.err().map(ParseFailure::reason),
            };
        };
        let nsn = number.national.as_bytes();
        let territory = self.territory_for_number(number.country_code, nsn);
        let line_type = match territory {
            Some(id) => self.number_type(self.territory(id), nsn),
            None => None,
        };
        // libphonenumber: valid when the region's country code matches and the type is known.
        let valid = match (territory, line_type) {
            (Some(id), Some(_)) => {
                let t = self.territory(id);
                t.id == "001" || t.country_code == number.country_code
            }
            _ => false,
        };
        let invalid_reason = if valid {
            None
        } else {
            Some(match self.possibility(number.country_code, nsn) {
                None => InvalidReason::InvalidCountryCode,
                Some(LengthVerdict::TooShort) => InvalidReason::TooShort,
                Some(LengthVerdict::TooLong) => InvalidReason::TooLong,
                Some(LengthVerdict::InvalidLength) => InvalidReason::InvalidLength,
                Some(LengthVerdict::Possible | LengthVerdict::PossibleLocalOnly) => {
                    InvalidReason::NoSuchRange
                }
            })
        };
        Classified {
            parsed,
            valid,
            territory,
            line_type: if valid {
                line_type.unwrap_or(LineType::Unknown)
            } else {
                LineType::Unknown
            },
            invalid_reason,
        }
    }

    /// libphonenumber's `isPossibleNumberWithReason` for the main territory of the code.
    fn possibility(&self, country_code: u16, nsn: &[u8]) -> Option<LengthVerdict> {
        let main = self.main_territory(country_code)?;
        Some(self.test_number_length(self.territory(main), nsn))
    }

    /// libphonenumber's `getRegionCodeForNumber`.
    fn territory_for_number(&self, country_code: u16, nsn: &[u8]) -> Option<TerritoryId> {
        let list = self.by_calling_code.get(country_code as usize)?;
        match list.as_slice() {
            [] => None,
            [only] => Some(TerritoryId(*only)),
            many => many.iter().copied().map(TerritoryId).find(|&id| {
                let territory = self.territory(id);
                match &territory.leading_digits {
                    Some(leading) => leading.matches_prefix(nsn),
                    None => self.number_type(territory, nsn).is_some(),
                }
            }),
        }
    }

    /// libphonenumber's `getNumberTypeHelper`; `None` is UNKNOWN.
    fn number_type(&self, territory: &Territory, nsn: &[u8]) -> Option<LineType> {
        let bits = territory.matching_descs(nsn);
        let has = |kind: DescKind| bits & (1 << kind as u32) != 0;
        if !has(DescKind::General) {
            return None;
        }
        for (kind, line_type) in [
            (DescKind::PremiumRate, LineType::PremiumRate),
            (DescKind::TollFree, LineType::TollFree),
            (DescKind::SharedCost, LineType::SharedCost),
            (DescKind::Voip, LineType::Voip),
            (DescKind::PersonalNumber, LineType::PersonalNumber),
            (DescKind::Pager, LineType::Pager),
            (DescKind::Uan, LineType::Uan),
            (DescKind::Voicemail, LineType::Voicemail),
        ] {
            if has(kind) {
                return Some(line_type);
            }
        }
        if has(DescKind::FixedLine) {
            if territory.same_mobile_and_fixed_line_pattern || has(DescKind::Mobile) {
                return Some(LineType::FixedLineOrMobile);
            }
            return Some(LineType::FixedLine);
        }
        if !territory.same_mobile_and_fixed_line_pattern && has(DescKind::Mobile) {
            return Some(LineType::Mobile);
        }
        None
    }

    /// libphonenumber's `testNumberLength` against the general description.
    fn test_number_length(&self, territory: &Territory, nsn: &[u8]) -> LengthVerdict {
        let general = territory.descs[DescKind::General as usize];
        let lengths = general.lengths.unwrap_or(Lengths(0));
        if lengths.is_empty() {
            return LengthVerdict::InvalidLength;
        }
        let length = nsn.len();
        if general.local_only.contains(length) {
            return LengthVerdict::PossibleLocalOnly;
        }
        let min = lengths.min();
        if min == length {
            LengthVerdict::Possible
        } else if min > length {
            LengthVerdict::TooShort
        } else if lengths.max() < length {
            LengthVerdict::TooLong
        } else if lengths.contains(length) {
            LengthVerdict::Possible
        } else {
            LengthVerdict::InvalidLength
        }
    }

    /// Whether the general description's pattern (without length check) matches.
    fn general_pattern_matches(&self, territory: &Territory, digits: &[u8]) -> bool {
        let pattern = territory.pattern_of[DescKind::General as usize];
        pattern != u8::MAX && territory.types.full_matches(digits) & (1 << pattern) != 0
    }

    /// libphonenumber's `maybeStripNationalPrefixAndCarrierCode`: the national number with the
    /// national prefix removed or transformed, when the metadata says so; `None` to keep it.
    fn strip_national_prefix(&self, territory: &Territory, number: &[u8]) -> Option<Stripped> {
        let gate = territory.national_prefix_gate.as_ref()?;
        // The DFA answers the common "no national prefix here" without the regex engine.
        if number.is_empty() || !gate.matches_prefix(number) {
            return None;
        }
        let prefix = territory.national_prefix_for_parsing.as_ref()?;
        let text = std::str::from_utf8(number).expect("ASCII digits");
        let stripped = prefix.with_captures(text, |captures| {
            let end = captures.get_match().map_or(0, |m| m.end());
            let groups = captures.group_len().saturating_sub(1);
            let last_group_matched = groups > 0 && captures.get_group(groups).is_some();
            match &territory.national_prefix_transform_rule {
                Some(rule) if last_group_matched => {
                    let mut expanded = String::new();
                    captures.interpolate_string_into(text, rule, &mut expanded);
                    expanded.push_str(&text[end..]);
                    Stripped::Transformed(expanded.into_bytes())
                }
                _ => Stripped::Suffix(end),
            }
        })?;
        let viable_before = self.general_pattern_matches(territory, number);
        if viable_before && !self.general_pattern_matches(territory, stripped.apply(number)) {
            return None;
        }
        Some(stripped)
    }

    /// Parses like libphonenumber's `parse(input, region)`.
    pub fn parse(
        &self,
        input: &str,
        region_hint: Option<TerritoryId>,
    ) -> Result<ParsedNumber, ParseFailure> {
        if input.len() > MAX_INPUT_LENGTH {
            return Err(ParseFailure::TooLong);
        }
        match clean_digits(input) {
            Some((plus, digits, count)) => {
                let digits = &digits[..count];
                match self.parse_clean(plus, digits, region_hint, false) {
                    // libphonenumber: an unknown code after '+' is tried once more as if the
                    // '+' were not there (it may have been typed before an international prefix).
                    Err(ParseFailure::InvalidCountryCode) if plus && region_hint.is_some() => {
                        self.parse_clean(false, digits, region_hint, true)
                    }
                    other => other,
                }
            }
            None => self.parse_with_full_port(input, region_hint),
        }
    }

    /// The steps of libphonenumber's `parseHelper` for a `+`, ASCII digits and separators.
    fn parse_clean(
        &self,
        plus: bool,
        digits: &[u8],
        region_hint: Option<TerritoryId>,
        require_calling_code: bool,
    ) -> Result<ParsedNumber, ParseFailure> {
        // checkRegionForParsing: national input needs a region.
        let hint = match (plus, region_hint) {
            (false, None) => return Err(ParseFailure::InvalidCountryCode),
            (_, hint) => hint.map(|id| self.territory(id)),
        };
        // maybeExtractCountryCode: a '+', or the region's international prefix (unless a 0
        // follows it), announces a calling code.
        let mut after_prefix = plus.then_some(digits);
        if !plus && let Some(idd) = hint.and_then(|t| t.international_prefix.as_ref()) {
            let text = std::str::from_utf8(digits).expect("ASCII digits");
            if let Some(end) = idd.prefix_end(text)
                && digits.get(end) != Some(&b'0')
            {
                after_prefix = Some(&digits[end..]);
            }
        }
        let mut buffer = [0u8; 32];
        let (country_code, metadata, mut national): (u16, Option<&Territory>, &[u8]) =
            match (after_prefix, hint) {
                (Some(full), _) => {
                    if full.len() <= MIN_LENGTH_FOR_NSN {
                        return Err(ParseFailure::TooShortAfterIdd);
                    }
                    let (code, rest) = self
                        .extract_country_code(full)
                        .ok_or(ParseFailure::InvalidCountryCode)?;
                    let main = self.main_territory(code).map(|id| self.territory(id));
                    (code, main, rest)
                }
                (None, Some(territory)) => {
                    // The region's own calling code typed without '+': drop it when that makes
                    // a better number (libphonenumber's rule).
                    let code_text = territory.country_code.to_string();
                    let mut national = digits;
                    let mut found_code = false;
                    if let Some(rest) = digits.strip_prefix(code_text.as_bytes()) {
                        let stripped = self.strip_national_prefix(territory, rest);
                        let potential = stripped.as_ref().map_or(rest, |s| s.apply(rest));
                        if (!self.general_pattern_matches(territory, digits)
                            && self.general_pattern_matches(territory, potential))
                            || self.test_number_length(territory, digits) == LengthVerdict::TooLong
                        {
                            let length = potential.len().min(buffer.len());
                            buffer[..length].copy_from_slice(&potential[..length]);
                            national = &buffer[..length];
                            found_code = true;
                        }
                    }
                    if require_calling_code && !found_code {
                        return Err(ParseFailure::InvalidCountryCode);
                    }
                    (territory.country_code, Some(territory), national)
                }
                (None, None) => unreachable!("checked above"),
            };
        if national.len() < MIN_LENGTH_FOR_NSN {
            return Err(ParseFailure::TooShortNsn);
        }
        let mut stripped_buffer = [0u8; 32];
        if let Some(territory) = metadata
            && let Some(stripped) = self.strip_national_prefix(territory, national)
        {
            let potential = stripped.apply(national);
            let verdict = self.test_number_length(territory, potential);
            if !matches!(
                verdict,
                LengthVerdict::TooShort
                    | LengthVerdict::PossibleLocalOnly
                    | LengthVerdict::InvalidLength
            ) {
                let length = potential.len().min(stripped_buffer.len());
                stripped_buffer[..length].copy_from_slice(&potential[..length]);
                national = &stripped_buffer[..length];
            }
        }
        if national.len() < MIN_LENGTH_FOR_NSN {
            return Err(ParseFailure::TooShortNsn);
        }
        if national.len() > MAX_LENGTH_FOR_NSN {
            return Err(ParseFailure::TooLong);
        }
        Ok(ParsedNumber {
            country_code,
            national: Digits::from_slice(national),
            extension: Extension::default(),
        })
    }

    /// libphonenumber's `extractCountryCode`: 1 to 3 leading digits that form a known code.
    fn extract_country_code<'a>(&self, full: &'a [u8]) -> Option<(u16, &'a [u8])> {
        if full.first() == Some(&b'0') {
            return None;
        }
        let mut code = 0u32;
        for (i, &digit) in full.iter().take(3).enumerate() {
            code = code * 10 + u32::from(digit - b'0');
            if self.is_known_calling_code(code) {
                return Some((code as u16, &full[i + 1..]));
            }
        }
        None
    }

    /// Parses with the full libphonenumber port for inputs outside the clean path.
    fn parse_with_full_port(
        &self,
        input: &str,
        region_hint: Option<TerritoryId>,
    ) -> Result<ParsedNumber, ParseFailure> {
        use rlibphonenumber::{ParseError, PhoneNumber, Region};
        let region = region_hint.and_then(|id| Region::from_code(self.region_code(id)).ok());
        let number = PhoneNumber::parse(input, region).map_err(|error| match error {
            ParseError::InvalidCountryCode => ParseFailure::InvalidCountryCode,
            ParseError::NotANumber(_) => ParseFailure::NotANumber,
            ParseError::TooShortAfterIdd => ParseFailure::TooShortAfterIdd,
            ParseError::TooShortNsn => ParseFailure::TooShortNsn,
            ParseError::TooLongNsn => ParseFailure::TooLong,
        })?;
        let national = number.get_national_significant_number();
        if national.len() > MAX_LENGTH_FOR_NSN || !national.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseFailure::TooLong);
        }
        Ok(ParsedNumber {
            country_code: u16::try_from(number.country_code)
                .map_err(|_| ParseFailure::InvalidCountryCode)?,
            national: Digits::from_slice(national.as_bytes()),
            extension: Extension::from_text(number.extension.as_deref().unwrap_or("")),
        })
    }

    /// E.164 text of a parsed number.
    pub fn e164(&self, number: &ParsedNumber) -> String {
        format!("+{}{}", number.country_code, number.national.as_str())
    }

    /// National (`national = true`) or international format, as libphonenumber formats it.
    pub fn format(&self, number: &ParsedNumber, national: bool) -> String {
        let nsn = number.national.as_str();
        let Some(main) = self.main_territory(number.country_code) else {
            return nsn.to_string();
        };
        let main = self.territory(main);
        let formats = main.formats();
        let list = if national {
            &formats.national
        } else {
            &formats.international
        };
        let mut formatted = list
            .iter()
            .filter(|f| {
                f.last_leading_digits
                    .as_ref()
                    .is_none_or(|leading| leading.matches_prefix(nsn.as_bytes()))
            })
            .find_map(|f| {
                let rule = if national {
                    &f.national_rule
                } else {
                    &f.international_rule
                };
                f.pattern.with_captures(nsn, |captures| {
                    let mut out = String::with_capacity(nsn.len() + 6);
                    captures.interpolate_string_into(nsn, rule, &mut out);
                    out
                })
            })
            .unwrap_or_else(|| nsn.to_string());
        if !number.extension.as_str().is_empty() {
            formatted.push_str(
                main.raw
                    .preferred_extn_prefix
                    .as_deref()
                    .unwrap_or(" ext. "),
            );
            formatted.push_str(number.extension.as_str());
        }
        if national {
            formatted
        } else {
            format!("+{} {formatted}", number.country_code)
        }
    }
}

/// The result of stripping a national prefix.
enum Stripped {
    /// The number from this offset on.
    Suffix(usize),
    /// A new number built by the transform rule.
    Transformed(Vec<u8>),
}

impl Stripped {
    fn apply<'a>(&'a self, number: &'a [u8]) -> &'a [u8] {
        match self {
            Stripped::Suffix(start) => &number[*start..],
            Stripped::Transformed(digits) => digits,
        }
    }
}

/// For an input of optional whitespace and `(`, an optional `+`, then ASCII digits with the
/// separators ` -.()`, the digits (at most 32) and whether a `+` led. `None` sends the input to the
/// full parser.
fn clean_digits(input: &str) -> Option<(bool, [u8; 32], usize)> {
    let bytes = input.as_bytes();
    let mut i = 0;
    while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b'(') {
        i += 1;
    }
    let plus = bytes.get(i) == Some(&b'+');
    if plus {
        i += 1;
    }
    let mut digits = [0u8; 32];
    let mut count = 0;
    for &byte in &bytes[i..] {
        match byte {
            b'0'..=b'9' => {
                if count == digits.len() {
                    return None;
                }
                digits[count] = byte;
                count += 1;
            }
            b' ' | b'-' | b'.' | b'(' | b')' | b'\t' => {}
            _ => return None,
        }
    }
    // libphonenumber needs at least three digits here (two-digit inputs go the long way).
    if count < 3 {
        return None;
    }
    Some((plus, digits, count))
}

#[cfg(test)]
mod tests;
