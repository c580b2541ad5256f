//! Recipient lists for campaign tests and benchmarks: valid mobile numbers of ten countries in
//! shares close to a large consumer service's, each number once, the same list for the same
//! seed. The ten are in their marketing windows together on weekday afternoons in Europe
//! (15:30-19:00 UTC), when India's (09:00-21:00 IST) is closed.

use std::collections::HashSet;

use super::corpus::Random;
use crate::classify::{LineType, classify};

/// The countries of [`recipients`]: region, share of the list in percent, locale, and the
/// start of its mobile numbers with how many digits follow.
pub const COUNTRIES: [(&str, u32, &str, &str, u32); 10] = [
    ("IN", 20, "hi-IN", "+9198", 8),
    ("US", 15, "en-US", "+1212", 7),
    ("BR", 12, "pt-BR", "+55119", 8),
    ("CA", 10, "en-CA", "+1416", 7),
    ("MX", 10, "es-MX", "+5255", 8),
    ("NG", 8, "en-NG", "+234803", 7),
    ("DE", 7, "de", "+49151", 8),
    ("GB", 7, "en-GB", "+447400", 6),
    ("FR", 6, "fr", "+336", 8),
    ("HN", 5, "es-HN", "+5049", 7),
];

/// One recipient of a generated list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The number, E.164.
    pub number: String,
    /// Its region.
    pub region: &'static str,
    /// Its locale.
    pub locale: &'static str,
}

/// `count` recipients for `seed`, drawn from [`COUNTRIES`] (only those of `regions`, when it
/// is not empty) by their shares: each a valid mobile (or fixed-or-mobile) number, none twice.
pub fn recipients(count: usize, seed: u64, regions: &[&str]) -> Vec<Recipient> {
    let countries: Vec<_> = COUNTRIES
        .iter()
        .filter(|(region, ..)| regions.is_empty() || regions.contains(region))
        .collect();
    let total: u64 = countries
        .iter()
        .map(|(_, share, ..)| u64::from(*share))
        .sum();
    let mut random = Random(seed);
    let mut seen = HashSet::with_capacity(count);
    let mut list = Vec::with_capacity(count);
    while list.len() < count && total > 0 {
        let pick = random.next() % total;
        let mut share = 0;
        let Some((region, _, locale, prefix, length)) = countries
            .iter()
            .find(|(_, percent, ..)| {
                share += u64::from(*percent);
                pick < share
            })
            .copied()
        else {
            continue;
        };
        let suffix = random.next() % 10u64.pow(*length);
        let number = format!("{prefix}{suffix:0width$}", width = *length as usize);
        let classification = classify(&number, None);
        let mobile = matches!(
            classification.line_type,
            Some(LineType::Mobile | LineType::FixedLineOrMobile)
        );
        if classification.valid
            && mobile
            && classification.region_code.as_deref() == Some(*region)
            && seen.insert(number.clone())
        {
            list.push(Recipient {
                number,
                region,
                locale,
            });
        }
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_valid_distinct_and_repeatable() {
        let list = recipients(2_000, 7, &[]);
        assert_eq!(list.len(), 2_000);
        assert_eq!(list, recipients(2_000, 7, &[]));
        let distinct: HashSet<&str> = list.iter().map(|r| r.number.as_str()).collect();
        assert_eq!(distinct.len(), 2_000);
        for (region, ..) in COUNTRIES {
            let n = list.iter().filter(|r| r.region == region).count();
            assert!(n > 40, "{region}: {n}");
        }
        let only = recipients(50, 7, &["GB"]);
        assert!(only.iter().all(|r| r.region == "GB"));
    }
}
