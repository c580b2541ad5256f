//! Conversion counts for the `adaptive` fallback strategy: messages the carriers took, and the
//! approved verifications credited to them, per region, channel and carrier.

use super::db;
use verify_carrier::Channel;

use crate::store::StoreError;

/// Messages sent and verifications approved after them, for one region, channel and carrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionCount {
    /// ISO 3166-1 alpha-2 region of the verifications' numbers.
    pub region: String,
    /// Channel of the messages.
    pub channel: Channel,
    /// Carrier that carried them (after any failover).
    pub carrier: String,
    /// Messages the carrier took: submitted, delivered or failed.
    pub sent: u64,
    /// Of those, the messages whose verification was approved while they were its last one
    /// sent: the step that was running when the right code came in.
    pub verified: u64,
}

/// Counts over the messages queued (or last rerouted) from `since_ms` on.
///
/// A message counts as sent once the carrier took it (`submitted`, `delivered`, `failed`) or
/// may have (`maybe_sent`); queued, claimed, sending and canceled messages do not. It counts as verified when its verification
/// is approved and it is the verification's last sent message queued before the approval (an
/// approved verification's `updated_at_ms` is the approval: nothing changes it afterwards).
/// The window uses `messages_due (status, due_at_ms)`; the credit lookup uses
/// `messages_by_subject (subject_id, created_at_ms)` and runs only for approved
/// verifications. Verifications without a region are left out.
pub(super) async fn conversion_counts(
    exec: db::Exec<'_>,
    since_ms: i64,
) -> Result<Vec<ConversionCount>, StoreError> {
    let rows = db::query(
        "SELECT v.region_code AS region, m.channel AS channel, m.carrier AS carrier, \
         COUNT(*) AS sent, \
         CAST(SUM(CASE WHEN v.status = 'approved' AND m.id = ( \
             SELECT l.id FROM messages l WHERE l.subject_id = v.id \
             AND l.status IN ('submitted', 'maybe_sent', 'delivered', 'failed') \
             AND l.created_at_ms <= v.updated_at_ms \
             ORDER BY l.created_at_ms DESC, l.step DESC, l.id DESC LIMIT 1) \
         THEN 1 ELSE 0 END) AS BIGINT) AS verified \
         FROM messages m JOIN verifications v ON v.id = m.subject_id AND m.subject_kind = 'verification' \
         WHERE m.status IN ('submitted', 'maybe_sent', 'delivered', 'failed') AND m.due_at_ms >= $1 \
         AND v.region_code IS NOT NULL \
         GROUP BY v.region_code, m.channel, m.carrier \
         ORDER BY v.region_code, m.channel, m.carrier",
    )
    .bind(since_ms)
    .fetch_all(exec)
    .await?;
    let mut counts = Vec::with_capacity(rows.len());
    for row in rows {
        let channel: String = row.try_get("channel")?;
        let Some(channel) = Channel::parse(&channel) else {
            // A channel this build does not know (a newer replica's): nothing to choose from.
            continue;
        };
        let sent: i64 = row.try_get("sent")?;
        let verified: Option<i64> = row.try_get("verified")?;
        counts.push(ConversionCount {
            region: row.try_get("region")?,
            channel,
            carrier: row.try_get("carrier")?,
            sent: sent.max(0) as u64,
            verified: verified.unwrap_or(0).max(0) as u64,
        });
    }
    Ok(counts)
}
