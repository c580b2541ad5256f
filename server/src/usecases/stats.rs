//! Conversion statistics: `GetConversionStats` checks the question, scopes it to the caller's
//! service and sums the rollup (see `domain::conversion`).

use verify_carrier::Channel;

use super::caller::Caller;
use super::{UseCaseError, UseCases};
use crate::clock::now_ms;
use crate::domain::conversion::{
    DAY_MS, Dimension, HOUR_MS, MAX_RANGE_MS, StatsQuery, StatsRow, Tally,
};

/// The range an empty request covers.
pub const DEFAULT_RANGE_MS: i64 = 7 * DAY_MS;
/// Most countries one request may name.
const MAX_COUNTRIES: usize = 300;

/// A statistics request as the transport parsed it.
#[derive(Debug, Clone, Default)]
pub struct StatsInput {
    /// Verifications created at or after this time (unix ms); default `end_ms` - 7 days.
    pub start_ms: Option<i64>,
    /// Before this time (unix ms); default now.
    pub end_ms: Option<i64>,
    /// Dimensions in order; empty: by country.
    pub group_by: Vec<Dimension>,
    /// The service asked for; empty for all the caller sees.
    pub service_id: String,
    /// Only these countries; empty for all.
    pub region_codes: Vec<String>,
    /// Only this channel.
    pub channel: Option<Channel>,
}

/// The answer: a row per group, their total, the range covered and how far the rollup went.
#[derive(Debug, Clone)]
pub struct StatsAnswer {
    /// One per group, ordered by the dimensions' values.
    pub rows: Vec<StatsRow>,
    /// Over every group.
    pub total: Tally,
    /// Start of the range covered (unix ms, a whole hour).
    pub start_ms: i64,
    /// End of the range covered (unix ms, exclusive, a whole hour).
    pub end_ms: i64,
    /// Events up to this cursor are counted.
    pub counted_through_cursor: i64,
}

impl StatsInput {
    /// The query this input asks, for `caller`, at `now_ms`.
    fn query(&self, caller: &Caller, now_ms: i64) -> Result<StatsQuery, UseCaseError> {
        let end = self.end_ms.unwrap_or(now_ms);
        let start = self.start_ms.unwrap_or(end - DEFAULT_RANGE_MS);
        if start >= end {
            return Err(UseCaseError::invalid(
                "end_time",
                "must be later than start_time",
            ));
        }
        let from_ms = start.div_euclid(HOUR_MS) * HOUR_MS;
        let to_ms = (end + HOUR_MS - 1).div_euclid(HOUR_MS) * HOUR_MS;
        if to_ms - from_ms > MAX_RANGE_MS {
            return Err(UseCaseError::invalid(
                "start_time",
                format!(
                    "the range is at most {} days; ask for several ranges",
                    MAX_RANGE_MS / DAY_MS
                ),
            ));
        }
        let mut group_by = Vec::with_capacity(self.group_by.len());
        for &dimension in &self.group_by {
            if group_by.contains(&dimension) {
                return Err(UseCaseError::invalid(
                    "group_by",
                    format!("{} is named twice", dimension),
                ));
            }
            group_by.push(dimension);
        }
        if group_by.contains(&Dimension::Day) && group_by.contains(&Dimension::Hour) {
            return Err(UseCaseError::invalid(
                "group_by",
                "group by day or by hour, not both",
            ));
        }
        if group_by.is_empty() {
            group_by.push(Dimension::Country);
        }
        if self.region_codes.len() > MAX_COUNTRIES {
            return Err(UseCaseError::invalid(
                "region_codes",
                format!("at most {MAX_COUNTRIES} countries"),
            ));
        }
        let mut countries = Vec::with_capacity(self.region_codes.len());
        for region in &self.region_codes {
            let region = region.trim();
            if region.len() != 2 || !region.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(UseCaseError::invalid(
                    "region_codes",
                    format!("`{region}` is not an ISO 3166-1 alpha-2 code such as HN"),
                ));
            }
            countries.push(region.to_ascii_uppercase());
        }
        countries.sort();
        countries.dedup();
        Ok(StatsQuery {
            from_ms,
            to_ms,
            group_by,
            service_id: caller.events_of(&self.service_id)?,
            countries,
            channel: self.channel,
        })
    }
}

impl UseCases {
    /// Conversion statistics for what `input` asks, over the services `caller` sees.
    pub async fn conversion_stats(
        &self,
        caller: &Caller,
        input: &StatsInput,
    ) -> Result<StatsAnswer, UseCaseError> {
        let query = input.query(caller, now_ms())?;
        // Read first: the sums then hold at least what the cursor says.
        let counted_through_cursor = self.store.conversion_rollup_cursor().await?;
        let rows = self.store.conversion_stats(&query).await?;
        let mut total = Tally::default();
        for row in &rows {
            total.add(&row.tally);
        }
        Ok(StatsAnswer {
            rows,
            total,
            start_ms: query.from_ms,
            end_ms: query.to_ms,
            counted_through_cursor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 20_000 * DAY_MS + 5 * HOUR_MS + 123;

    fn refusal(input: StatsInput) -> String {
        match input.query(&Caller::local(), NOW) {
            Err(UseCaseError::InvalidArgument { field, reason }) => format!("{field}: {reason}"),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn an_empty_request_is_the_last_week_by_country_in_whole_hours() {
        let query = StatsInput::default().query(&Caller::local(), NOW).unwrap();
        assert_eq!(query.group_by, [Dimension::Country]);
        assert_eq!(query.to_ms, NOW - 123 + HOUR_MS);
        assert_eq!(query.from_ms, NOW - 123 - DEFAULT_RANGE_MS);
        assert_eq!(query.service_id, None);
    }

    #[test]
    fn bad_questions_name_the_field() {
        assert_eq!(
            refusal(StatsInput {
                start_ms: Some(NOW),
                end_ms: Some(NOW - 1),
                ..StatsInput::default()
            }),
            "end_time: must be later than start_time"
        );
        assert_eq!(
            refusal(StatsInput {
                group_by: vec![Dimension::Day, Dimension::Carrier, Dimension::Hour],
                ..StatsInput::default()
            }),
            "group_by: group by day or by hour, not both"
        );
        assert_eq!(
            refusal(StatsInput {
                group_by: vec![Dimension::Carrier, Dimension::Carrier],
                ..StatsInput::default()
            }),
            "group_by: carrier is named twice"
        );
        assert_eq!(
            refusal(StatsInput {
                region_codes: vec!["Honduras".into()],
                ..StatsInput::default()
            }),
            "region_codes: `Honduras` is not an ISO 3166-1 alpha-2 code such as HN"
        );
        assert!(
            refusal(StatsInput {
                start_ms: Some(NOW - 500 * DAY_MS),
                ..StatsInput::default()
            })
            .starts_with("start_time: the range is at most 400 days")
        );
    }

    #[test]
    fn a_service_key_sees_its_own_service_only() {
        let caller = Caller::of_service("app", "shop");
        let query = StatsInput::default().query(&caller, NOW).unwrap();
        assert_eq!(query.service_id.as_deref(), Some("shop"));
        let other = StatsInput {
            service_id: "bank".into(),
            ..StatsInput::default()
        };
        assert!(matches!(
            other.query(&caller, NOW),
            Err(UseCaseError::NotFound { .. })
        ));
    }
}
