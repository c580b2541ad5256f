//! `verifyctl stats`: conversion statistics as a table (or JSON).

use std::io::Write;

use chrono::{DateTime, TimeDelta, Utc};
use clap::Args;
use verify_client::VerifyClient;
use verify_client::proto::Timestamp;
use verify_client::proto::v1::{
    Channel, ConversionStats, GetConversionStatsRequest, GetConversionStatsResponse, StatsDimension,
};

use crate::{Failure, time_text, words, write_json_line};

/// Arguments of `stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct StatsArgs {
    /// Group by these, comma-separated, in order: country, carrier, channel, service, day,
    /// hour (default: country).
    #[arg(long, value_name = "DIMENSIONS", value_delimiter = ',', value_parser = parse_dimension)]
    pub by: Vec<Dimension>,
    /// Verifications created at or after this time (RFC 3339); default: 7 days before --until.
    #[arg(long, value_name = "TIME", value_parser = crate::more::parse_time, conflicts_with = "last")]
    pub since: Option<DateTime<Utc>>,
    /// Verifications created before this time (RFC 3339); default: now.
    #[arg(long, value_name = "TIME", value_parser = crate::more::parse_time)]
    pub until: Option<DateTime<Utc>>,
    /// The last this long before --until, e.g. 24h or 30d.
    #[arg(long, value_name = "DURATION", value_parser = parse_span)]
    pub last: Option<TimeDelta>,
    /// Only this service's (a service's key sees its own only).
    #[arg(long, value_name = "ID")]
    pub service: Option<String>,
    /// Only numbers of this country (ISO 3166-1 alpha-2; repeat, or comma-separate, for
    /// several).
    #[arg(long = "country", value_name = "XX", value_delimiter = ',')]
    pub countries: Vec<String>,
    /// Only this channel: sms or voice.
    #[arg(long, value_name = "CHANNEL", value_parser = ["sms", "voice"])]
    pub channel: Option<String>,
}

/// A dimension as typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dimension(StatsDimension);

const DIMENSIONS: [(&str, StatsDimension); 6] = [
    ("country", StatsDimension::Country),
    ("carrier", StatsDimension::Carrier),
    ("channel", StatsDimension::Channel),
    ("service", StatsDimension::Service),
    ("day", StatsDimension::Day),
    ("hour", StatsDimension::Hour),
];

fn parse_dimension(text: &str) -> Result<Dimension, String> {
    DIMENSIONS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text.trim()))
        .map(|&(_, dimension)| Dimension(dimension))
        .ok_or_else(|| {
            format!("`{text}` is not one of country, carrier, channel, service, day, hour")
        })
}

fn parse_span(text: &str) -> Result<TimeDelta, String> {
    let refused = || format!("`{text}` is not a duration such as 24h or 30d");
    let text = text.trim();
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let count: i64 = number.parse().map_err(|_| refused())?;
    let span = match unit {
        "h" => TimeDelta::try_hours(count),
        "d" => TimeDelta::try_days(count),
        _ => None,
    };
    span.filter(|span| *span > TimeDelta::zero())
        .ok_or_else(refused)
}

fn timestamp(time: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

/// The request `args` ask for at `now`.
pub fn request(args: &StatsArgs, now: DateTime<Utc>) -> GetConversionStatsRequest {
    let until = args.until;
    let since = match args.last {
        Some(span) => Some(until.unwrap_or(now) - span),
        None => args.since,
    };
    GetConversionStatsRequest {
        start_time: since.map(timestamp),
        end_time: until.map(timestamp),
        group_by: args.by.iter().map(|d| d.0 as i32).collect(),
        service_id: args.service.clone().unwrap_or_default(),
        region_codes: args.countries.clone(),
        channel: match args.channel.as_deref() {
            Some("sms") => Channel::Sms as i32,
            Some("voice") => Channel::Voice as i32,
            _ => Channel::Unspecified as i32,
        },
    }
}

/// Runs `stats`.
pub async fn stats(
    client: &VerifyClient,
    args: StatsArgs,
    json: bool,
    now: DateTime<Utc>,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let response = client.conversion_stats(request(&args, now)).await?;
    if json {
        return write_json_line(out, &response);
    }
    let dimensions: Vec<StatsDimension> = if args.by.is_empty() {
        vec![StatsDimension::Country]
    } else {
        args.by.iter().map(|d| d.0).collect()
    };
    out.write_all(table(&response, &dimensions).as_bytes())?;
    Ok(())
}

/// The response as a table: a row per group and the total, then the range.
pub fn table(response: &GetConversionStatsResponse, dimensions: &[StatsDimension]) -> String {
    let mut header: Vec<String> = dimensions
        .iter()
        .map(|&d| {
            DIMENSIONS
                .iter()
                .find(|(_, known)| *known == d)
                .map_or("?", |(name, _)| name)
                .to_string()
        })
        .collect();
    header.extend(
        [
            "verifications",
            "approved",
            "conversion",
            "sent",
            "delivered",
            "failed",
            "delivery",
            "p50",
            "p90",
            "fallback",
            "yield",
            "cost",
        ]
        .map(String::from),
    );
    let mut rows = vec![header];
    for stats in &response.rows {
        let mut row: Vec<String> = dimensions.iter().map(|&d| group_value(stats, d)).collect();
        row.extend(figures(stats));
        rows.push(row);
    }
    let mut total = vec!["total".to_string()];
    total.extend(std::iter::repeat_n(
        String::new(),
        dimensions.len().saturating_sub(1),
    ));
    if let Some(stats) = &response.total {
        total.extend(figures(stats));
    }
    rows.push(total);
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|column| {
            rows.iter()
                .map(|row| row.get(column).map_or(0, |cell| cell.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in &rows {
        let line = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(column, (cell, &width))| {
                if column < dimensions.len() {
                    format!("{cell:<width$}")
                } else {
                    format!("{cell:>width$}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ");
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text.push_str(&format!(
        "verifications created from {} to {}; events counted through cursor {}\n",
        time_text(response.start_time.as_ref()),
        time_text(response.end_time.as_ref()),
        response.counted_through_cursor
    ));
    text
}

fn group_value(stats: &ConversionStats, dimension: StatsDimension) -> String {
    let dash = |text: &str| {
        if text.is_empty() {
            "-".to_string()
        } else {
            text.to_string()
        }
    };
    match dimension {
        StatsDimension::Country => dash(&stats.region_code),
        StatsDimension::Carrier => dash(&stats.carrier),
        StatsDimension::Channel if stats.channel == Channel::Unspecified as i32 => "-".into(),
        StatsDimension::Channel => words(stats.channel, Channel::as_str_name, "CHANNEL_"),
        StatsDimension::Service => dash(&stats.service_id),
        StatsDimension::Day => time_text(stats.period_start.as_ref())
            .split('T')
            .next()
            .unwrap_or("-")
            .to_string(),
        StatsDimension::Hour => time_text(stats.period_start.as_ref()),
        StatsDimension::Unspecified => "-".into(),
    }
}

fn percent(rate: f64, whole: u64) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.1}%", rate * 100.0)
    }
}

fn seconds(ms: u64, approved: u64) -> String {
    if approved == 0 {
        "-".into()
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

fn figures(stats: &ConversionStats) -> Vec<String> {
    vec![
        stats.verifications.to_string(),
        stats.approved.to_string(),
        percent(stats.conversion_rate, stats.verifications),
        stats.sent.to_string(),
        stats.delivered.to_string(),
        stats.failed.to_string(),
        percent(stats.delivery_rate, stats.sent),
        seconds(stats.approval_time_p50_ms, stats.approved),
        seconds(stats.approval_time_p90_ms, stats.approved),
        stats.fallback_sent.to_string(),
        percent(stats.fallback_yield, stats.fallback_sent),
        if stats.sent > stats.sent_without_cost {
            let cost = format!("{:.4}", stats.cost);
            cost.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            "-".into()
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_and_spans_parse_or_say_why_not() {
        assert_eq!(
            parse_dimension("Country"),
            Ok(Dimension(StatsDimension::Country))
        );
        assert_eq!(
            parse_dimension("week").unwrap_err(),
            "`week` is not one of country, carrier, channel, service, day, hour"
        );
        assert_eq!(parse_span("24h"), Ok(TimeDelta::hours(24)));
        assert_eq!(parse_span("30d"), Ok(TimeDelta::days(30)));
        assert!(parse_span("0d").is_err());
        assert!(parse_span("1w").is_err());
    }

    #[test]
    fn the_table_aligns_groups_left_and_figures_right() {
        let row = |region: &str, verifications, approved| ConversionStats {
            region_code: region.into(),
            channel: Channel::Sms as i32,
            verifications,
            approved,
            conversion_rate: approved as f64 / verifications as f64,
            sent: verifications,
            delivered: approved,
            delivery_rate: approved as f64 / verifications as f64,
            approval_time_p50_ms: 4_200,
            approval_time_p90_ms: 9_000,
            ..ConversionStats::default()
        };
        let response = GetConversionStatsResponse {
            rows: vec![row("GB", 100, 97), row("HN", 100, 55)],
            total: Some(row("", 200, 152)),
            counted_through_cursor: 42,
            ..GetConversionStatsResponse::default()
        };
        let text = table(
            &response,
            &[StatsDimension::Country, StatsDimension::Channel],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("country  channel  verifications  approved  conversion"));
        assert!(lines[1].starts_with("GB       sms                100        97       97.0%"));
        assert!(lines[2].contains("55.0%"));
        assert!(lines[3].starts_with(&format!("total{}200       152       76.0%", " ".repeat(23))));
        assert!(lines[4].ends_with("events counted through cursor 42"));
    }
}
