//! Conversion rollups: the tallies folded from the event log, stored per hour and per UTC day
//! (see `domain::conversion`), the cursor of how far the folding went, and the sums that answer
//! `GetConversionStats`.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use verify_carrier::Channel;

use super::db::{self, Row};
use super::rows::parse_text;
use super::{WriteTx, id_list, placeholders, value_rows};
use crate::domain::DeliveryStatus;
use crate::domain::conversion::{
    APPROVAL_TIME_BUCKETS, DAY_MS, Dimension, GroupKey, MessageRecord, Rollup, RollupKey,
    StatsQuery, StatsRow, Tally, VerificationRecord, approval_time_columns,
};
use crate::store::StoreResult;

/// The cursor's name in `rollup_cursors`.
const CONVERSION: &str = "conversion";
/// The key columns of both rollup tables.
const KEY_COLUMNS: [&str; 5] = ["period_ms", "service_id", "region", "channel", "carrier"];
/// Rows per upsert statement: 16 rows of 38 parameters make under 10 KB. sqlx does not turn
/// Nagle's algorithm off on PostgreSQL connections, so a statement larger than the socket
/// takes at once (16 KB at first) goes in two writes, and the second waits for the server's
/// delayed ACK: 40 ms. With 256-row statements a batch of 5,000 events took 90 ms.
pub(super) const UPSERT_ROWS: usize = 16;
/// Verifications read per statement (their ids make about 10 KB), for the same reason.
pub(super) const RECORDS_PER_READ: usize = 256;

/// The counter columns, in [`Tally`] order.
fn counter_columns() -> &'static [String] {
    static COLUMNS: OnceLock<Vec<String>> = OnceLock::new();
    COLUMNS.get_or_init(|| {
        [
            "verifications",
            "approved",
            "sent",
            "delivered",
            "failed",
            "fallback_sent",
            "fallback_approved",
            "cost_micros",
            "costed_sent",
        ]
        .into_iter()
        .map(String::from)
        .chain(approval_time_columns())
        .collect()
    })
}

/// A tally's counters in [`counter_columns`] order.
fn counter_values(tally: &Tally) -> impl Iterator<Item = i64> + '_ {
    [
        tally.verifications,
        tally.approved,
        tally.sent,
        tally.delivered,
        tally.failed,
        tally.fallback_sent,
        tally.fallback_approved,
        tally.cost_micros,
        tally.costed_sent,
    ]
    .into_iter()
    .chain(tally.approval_times)
    .map(|count| i64::try_from(count).unwrap_or(i64::MAX))
}

/// Reads a tally from a row with the counter columns (sums, in a query).
fn tally(row: &Row) -> StoreResult<Tally> {
    let columns = counter_columns();
    let mut values = Vec::with_capacity(columns.len());
    for column in columns {
        let value: i64 = row.try_get(column)?;
        values.push(u64::try_from(value).unwrap_or(0));
    }
    let mut approval_times = [0u64; APPROVAL_TIME_BUCKETS];
    approval_times.copy_from_slice(&values[9..]);
    Ok(Tally {
        verifications: values[0],
        approved: values[1],
        sent: values[2],
        delivered: values[3],
        failed: values[4],
        fallback_sent: values[5],
        fallback_approved: values[6],
        cost_micros: values[7],
        costed_sent: values[8],
        approval_times,
    })
}

/// How far the conversion rollup went in the event log.
pub(super) async fn cursor(exec: db::Exec<'_>) -> StoreResult<i64> {
    db::query("SELECT cursor FROM rollup_cursors WHERE name = $1")
        .bind(CONVERSION)
        .scalar_optional(exec)
        .await
        .map(Option::unwrap_or_default)
}

/// The verifications with these ids and their messages, by id; unknown ids are left out.
pub(super) async fn verification_records(
    exec: db::Exec<'_>,
    ids: &[String],
) -> StoreResult<HashMap<String, VerificationRecord>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let (list, bound) = id_list(1, ids);
    let sql = format!(
        "SELECT v.id AS verification_id, v.service_id, v.region_code, v.created_at_ms AS verification_created_at_ms, \
         m.id, m.channel, m.carrier, m.step, m.status, m.due_at_ms, m.created_at_ms \
         FROM verifications v LEFT JOIN messages m ON m.subject_id = v.id AND m.subject_kind = 'verification' \
         WHERE v.id IN ({list})"
    );
    let rows = db::query(sql).bind_all(bound).fetch_all(exec).await?;
    let mut records: HashMap<String, VerificationRecord> = HashMap::new();
    for row in &rows {
        let id: String = row.try_get("verification_id")?;
        let record = match records.entry(id) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => entry.insert(VerificationRecord {
                service_id: row.try_get("service_id")?,
                region: row
                    .try_get::<Option<String>>("region_code")?
                    .unwrap_or_default(),
                created_at_ms: row.try_get("verification_created_at_ms")?,
                messages: Vec::new(),
            }),
        };
        let Some(message_id) = row.try_get::<Option<String>>("id")? else {
            continue;
        };
        let step: i64 = row.try_get("step")?;
        record.messages.push(MessageRecord {
            id: message_id,
            channel: parse_text(row, "channel", Channel::parse)?,
            carrier: row.try_get("carrier")?,
            step: u32::try_from(step).unwrap_or(0),
            status: parse_text(row, "status", DeliveryStatus::parse)?,
            due_at_ms: row.try_get("due_at_ms")?,
            created_at_ms: row.try_get("created_at_ms")?,
        });
    }
    Ok(records)
}

impl WriteTx {
    /// Moves the conversion rollup's cursor from `from` to `to` and adds `rollup`'s tallies to
    /// the hourly and daily tables; `false` (nothing written) when the cursor is no longer at
    /// `from` (another replica rolled those events up first).
    pub async fn add_conversion_rollup(
        &mut self,
        from: i64,
        to: i64,
        rollup: &Rollup,
    ) -> StoreResult<bool> {
        let moved =
            db::query("UPDATE rollup_cursors SET cursor = $1 WHERE name = $2 AND cursor = $3")
                .bind(to)
                .bind(CONVERSION)
                .bind(from)
                .execute(self.conn().await?)
                .await?
                .rows_affected();
        if moved != 1 {
            return Ok(false);
        }
        let hourly: Vec<_> = rollup.hourly().iter().collect();
        self.upsert_tallies("conversion_hourly", &hourly).await?;
        let daily = rollup.daily();
        let daily: Vec<_> = daily.iter().collect();
        self.upsert_tallies("conversion_daily", &daily).await?;
        Ok(true)
    }

    async fn upsert_tallies(
        &mut self,
        table: &str,
        tallies: &[(&RollupKey, &Tally)],
    ) -> StoreResult<()> {
        let counters = counter_columns();
        let columns = KEY_COLUMNS.len() + counters.len();
        let updates = counters
            .iter()
            .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        for chunk in tallies.chunks(UPSERT_ROWS) {
            let sql = format!(
                "INSERT INTO {table} ({}, {}) VALUES {} ON CONFLICT ({}) DO UPDATE SET {updates}",
                KEY_COLUMNS.join(", "),
                counters.join(", "),
                value_rows(columns, chunk.len()),
                KEY_COLUMNS.join(", "),
            );
            let mut query = db::query(sql);
            for (key, tally) in chunk {
                query = query
                    .bind(key.hour_ms)
                    .bind(&key.service_id)
                    .bind(&key.region)
                    .bind(&key.channel)
                    .bind(&key.carrier)
                    .bind_all(counter_values(tally));
            }
            query.execute(self.conn().await?).await?;
        }
        Ok(())
    }
}

/// Each group's sums over one segment of `query`'s range (see [`StatsQuery::segments`]).
pub(super) async fn segment_sums(
    exec: db::Exec<'_>,
    query: &StatsQuery,
    (daily, from, to): (bool, i64, i64),
) -> StoreResult<Vec<(GroupKey, Tally)>> {
    let (sql, values) = segment_sql(query, daily, from, to);
    let rows = db::query(sql).bind_all(values).fetch_all(exec).await?;
    rows.iter()
        .map(|row| Ok((group_key(query, row)?, tally(row)?)))
        .collect()
}

/// Adds up the sums of each segment per group.
pub(super) fn merge(segments: Vec<Vec<(GroupKey, Tally)>>) -> Vec<StatsRow> {
    let mut groups: BTreeMap<GroupKey, Tally> = BTreeMap::new();
    for (group, tally) in segments.into_iter().flatten() {
        groups.entry(group).or_default().add(&tally);
    }
    groups
        .into_iter()
        .map(|(group, tally)| StatsRow { group, tally })
        .collect()
}

/// The statement that sums one segment of the range, and its parameters.
fn segment_sql(query: &StatsQuery, daily: bool, from: i64, to: i64) -> (String, Vec<db::Value>) {
    let table = if daily {
        "conversion_daily"
    } else {
        "conversion_hourly"
    };
    let mut selected = Vec::new();
    let mut grouped = Vec::new();
    for dimension in &query.group_by {
        let (expression, alias) = match dimension {
            Dimension::Country => ("region".to_string(), "g_country"),
            Dimension::Carrier => ("carrier".to_string(), "g_carrier"),
            Dimension::Channel => ("channel".to_string(), "g_channel"),
            Dimension::Service => ("service_id".to_string(), "g_service"),
            Dimension::Hour => ("period_ms".to_string(), "g_period"),
            Dimension::Day if daily => ("period_ms".to_string(), "g_period"),
            Dimension::Day => (format!("(period_ms / {DAY_MS}) * {DAY_MS}"), "g_period"),
        };
        if !grouped.contains(&expression) {
            selected.push(format!("{expression} AS {alias}"));
            grouped.push(expression);
        }
    }
    selected.extend(
        counter_columns()
            .iter()
            .map(|c| format!("CAST(COALESCE(SUM({c}), 0) AS BIGINT) AS {c}")),
    );
    let mut values: Vec<db::Value> = vec![from.into(), to.into()];
    let mut filters = vec!["period_ms >= $1".to_string(), "period_ms < $2".to_string()];
    if let Some(service_id) = &query.service_id {
        values.push(service_id.into());
        filters.push(format!("service_id = ${}", values.len()));
    }
    if let Some(channel) = query.channel {
        values.push(channel.as_str().into());
        filters.push(format!("channel = ${}", values.len()));
    }
    if !query.countries.is_empty() {
        filters.push(format!(
            "region IN ({})",
            placeholders(values.len() + 1, query.countries.len())
        ));
        values.extend(query.countries.iter().map(db::Value::from));
    }
    let mut sql = format!(
        "SELECT {} FROM {table} WHERE {}",
        selected.join(", "),
        filters.join(" AND ")
    );
    if !grouped.is_empty() {
        sql.push_str(" GROUP BY ");
        sql.push_str(&grouped.join(", "));
    }
    (sql, values)
}

fn group_key(query: &StatsQuery, row: &Row) -> StoreResult<GroupKey> {
    let text = |dimension: Dimension, alias: &str| -> StoreResult<Option<String>> {
        if query.groups_by(dimension) {
            row.try_get::<String>(alias).map(Some)
        } else {
            Ok(None)
        }
    };
    let period_start_ms = if query.groups_by(Dimension::Day) || query.groups_by(Dimension::Hour) {
        Some(row.try_get::<i64>("g_period")?)
    } else {
        None
    };
    Ok(GroupKey {
        country: text(Dimension::Country, "g_country")?,
        carrier: text(Dimension::Carrier, "g_carrier")?,
        channel: text(Dimension::Channel, "g_channel")?,
        service_id: text(Dimension::Service, "g_service")?,
        period_start_ms,
    })
}
