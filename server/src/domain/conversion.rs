//! Conversion statistics: how verifications turn into approvals, per period, service, country,
//! channel and carrier. The event log is folded into [`Tally`]s per [`RollupKey`] as it grows
//! (see `rollup.rs`), and `GetConversionStats` adds tallies up per group and derives the rates
//! and approval-time percentiles from them. The rules of what counts live here.

use std::collections::BTreeMap;

use verify_carrier::Channel;

use super::{DeliveryStatus, Event, EventKind, SubjectKind};

/// One hour in milliseconds: the period of the finest rollup.
pub const HOUR_MS: i64 = 3_600_000;
/// One day in milliseconds: the period of the coarse rollup (UTC days).
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Upper bounds, in seconds, of the approval-time buckets (time from the first message handed
/// to a carrier to the approval); a last bucket holds the slower ones.
pub const APPROVAL_TIME_BOUNDS_S: [i64; 23] = [
    2, 4, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 90, 120, 180, 240, 300, 450, 600, 900, 1800,
    3600,
];
/// Approval-time buckets: one per bound and one for the slower.
pub const APPROVAL_TIME_BUCKETS: usize = APPROVAL_TIME_BOUNDS_S.len() + 1;

/// The column of each approval-time bucket in the rollup tables.
pub fn approval_time_columns() -> impl Iterator<Item = String> {
    APPROVAL_TIME_BOUNDS_S
        .iter()
        .map(|bound| format!("approvals_{bound}s"))
        .chain(std::iter::once(format!(
            "approvals_over_{}s",
            APPROVAL_TIME_BOUNDS_S[APPROVAL_TIME_BOUNDS_S.len() - 1]
        )))
}

/// The bucket an approval `elapsed_ms` after the first message falls in.
pub fn approval_time_bucket(elapsed_ms: i64) -> usize {
    APPROVAL_TIME_BOUNDS_S
        .iter()
        .position(|bound| elapsed_ms <= bound * 1000)
        .unwrap_or(APPROVAL_TIME_BOUNDS_S.len())
}

/// Where a tally belongs: the hour its verifications were created in, their service and
/// country, and the channel and carrier of the message concerned (empty when none was sent).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RollupKey {
    /// Start of the hour (unix ms) the verification was created in.
    pub hour_ms: i64,
    /// The verification's service.
    pub service_id: String,
    /// The number's ISO 3166-1 region ("" when it has none).
    pub region: String,
    /// The message's channel ("" for a verification none of whose messages was sent).
    pub channel: String,
    /// The message's carrier ("" likewise).
    pub carrier: String,
}

impl RollupKey {
    /// The same key for the UTC day that holds its hour.
    pub fn day(&self) -> RollupKey {
        RollupKey {
            hour_ms: self.hour_ms.div_euclid(DAY_MS) * DAY_MS,
            ..self.clone()
        }
    }
}

/// Counts over the verifications of a period (and their messages), as stored in the rollup
/// tables and as added up per group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Verifications that ended (approved, expired, canceled, out of checks).
    pub verifications: u64,
    /// Of them, approved.
    pub approved: u64,
    /// Messages handed to a carrier (accepted, or gone out with no answer).
    pub sent: u64,
    /// Messages the handset received, by receipt.
    pub delivered: u64,
    /// Messages that failed: refused at submission or undelivered by receipt.
    pub failed: u64,
    /// Messages of a fallback step (a workflow's second step or later) handed to a carrier.
    pub fallback_sent: u64,
    /// Approvals that came after a fallback step's message (the last one sent before it).
    pub fallback_approved: u64,
    /// What the messages sent on routes that declare a cost cost, in millionths of the
    /// routes' currency (exact sums).
    pub cost_micros: u64,
    /// Messages sent on routes that declare a cost.
    pub costed_sent: u64,
    /// Approvals per approval-time bucket ([`APPROVAL_TIME_BOUNDS_S`]).
    pub approval_times: [u64; APPROVAL_TIME_BUCKETS],
}

impl Tally {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Tally) {
        self.verifications += other.verifications;
        self.approved += other.approved;
        self.sent += other.sent;
        self.delivered += other.delivered;
        self.failed += other.failed;
        self.fallback_sent += other.fallback_sent;
        self.fallback_approved += other.fallback_approved;
        self.cost_micros += other.cost_micros;
        self.costed_sent += other.costed_sent;
        for (mine, theirs) in self.approval_times.iter_mut().zip(other.approval_times) {
            *mine += theirs;
        }
    }

    /// Approved / verifications; `None` with no verification.
    pub fn conversion_rate(&self) -> Option<f64> {
        ratio(self.approved, self.verifications)
    }

    /// Delivered / sent; `None` with nothing sent.
    pub fn delivery_rate(&self) -> Option<f64> {
        ratio(self.delivered, self.sent)
    }

    /// Approvals after a fallback step's message / fallback messages sent; `None` with none.
    pub fn fallback_yield(&self) -> Option<f64> {
        ratio(self.fallback_approved, self.fallback_sent)
    }

    /// The approval time (ms) that a share `quantile` (0..=1) of approvals took at most,
    /// interpolated within its bucket; `None` with no approval. In the last bucket (slower
    /// than the last bound) it is that bound.
    pub fn approval_time_quantile_ms(&self, quantile: f64) -> Option<i64> {
        let total: u64 = self.approval_times.iter().sum();
        if total == 0 {
            return None;
        }
        let target = quantile.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (bucket, &count) in self.approval_times.iter().enumerate() {
            if count == 0 {
                continue;
            }
            if (below + count) as f64 >= target {
                let lower = match bucket {
                    0 => 0,
                    _ => APPROVAL_TIME_BOUNDS_S[bucket - 1] * 1000,
                };
                let Some(upper) = APPROVAL_TIME_BOUNDS_S.get(bucket).map(|b| b * 1000) else {
                    return Some(lower);
                };
                let within = ((target - below as f64) / count as f64).clamp(0.0, 1.0);
                return Some(lower + ((upper - lower) as f64 * within).round() as i64);
            }
            below += count;
        }
        Some(APPROVAL_TIME_BOUNDS_S[APPROVAL_TIME_BOUNDS_S.len() - 1] * 1000)
    }
}

/// A declared cost in millionths (negative or unreadable costs count nothing).
pub fn cost_micros(cost: f64) -> u64 {
    if cost.is_finite() && cost > 0.0 {
        (cost * 1e6).round() as u64
    } else {
        0
    }
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// A message of a verification as the rollup needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    /// Message id.
    pub id: String,
    /// Its channel.
    pub channel: Channel,
    /// Its carrier.
    pub carrier: String,
    /// Its workflow step (0: the first).
    pub step: u32,
    /// Its status now.
    pub status: DeliveryStatus,
    /// When it was due to go out (unix ms).
    pub due_at_ms: i64,
    /// When it was queued (unix ms).
    pub created_at_ms: i64,
}

impl MessageRecord {
    /// Whether it went as far as a carrier (handed over, or refused by one). One being handed
    /// over counts: the person may have its code before its dispatcher records the carrier's
    /// answer (the receipt, even, can come first).
    fn attempted(&self) -> bool {
        matches!(
            self.status,
            DeliveryStatus::Sending
                | DeliveryStatus::Submitted
                | DeliveryStatus::MaybeSent
                | DeliveryStatus::Delivered
                | DeliveryStatus::Failed
        )
    }
}

/// What the rollup reads of a verification besides its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationRecord {
    /// Its service.
    pub service_id: String,
    /// Its number's region ("" when none).
    pub region: String,
    /// When it was created (unix ms).
    pub created_at_ms: i64,
    /// Its messages.
    pub messages: Vec<MessageRecord>,
}

impl VerificationRecord {
    fn key(&self, channel: &str, carrier: &str) -> RollupKey {
        RollupKey {
            hour_ms: self.created_at_ms.div_euclid(HOUR_MS) * HOUR_MS,
            service_id: self.service_id.clone(),
            region: self.region.clone(),
            channel: channel.to_string(),
            carrier: carrier.to_string(),
        }
    }

    /// The first message that went as far as a carrier.
    fn first_attempted(&self) -> Option<&MessageRecord> {
        self.messages
            .iter()
            .filter(|m| m.attempted())
            .min_by_key(|m| (m.step, m.due_at_ms, m.created_at_ms))
    }

    /// The message an approval at `approved_at_ms` is credited to: the last one that went as
    /// far as a carrier before it.
    fn converting(&self, approved_at_ms: i64) -> Option<&MessageRecord> {
        self.messages
            .iter()
            .filter(|m| m.attempted() && m.created_at_ms <= approved_at_ms)
            .max_by(|a, b| (a.created_at_ms, a.step, &a.id).cmp(&(b.created_at_ms, b.step, &b.id)))
    }
}

/// Whether a status means the message was handed to a carrier.
fn handed_over(status: DeliveryStatus) -> bool {
    matches!(
        status,
        DeliveryStatus::Submitted | DeliveryStatus::MaybeSent | DeliveryStatus::Delivered
    )
}

/// Tallies folded from events, per key; written to the rollup tables as increments.
#[derive(Debug, Default)]
pub struct Rollup {
    tallies: BTreeMap<RollupKey, Tally>,
}

impl Rollup {
    /// Nothing counted yet.
    pub fn new() -> Self {
        Rollup::default()
    }

    /// The tallies per hour.
    pub fn hourly(&self) -> &BTreeMap<RollupKey, Tally> {
        &self.tallies
    }

    /// The same tallies per UTC day.
    pub fn daily(&self) -> BTreeMap<RollupKey, Tally> {
        let mut days: BTreeMap<RollupKey, Tally> = BTreeMap::new();
        for (key, tally) in &self.tallies {
            days.entry(key.day()).or_default().add(tally);
        }
        days
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.tallies.is_empty()
    }

    fn at(&mut self, key: RollupKey) -> &mut Tally {
        self.tallies.entry(key).or_default()
    }

    /// Counts one event of `verification` (events of notifications and blocks count nothing).
    /// `cost` gives the declared cost of a message to a region through a carrier.
    pub fn count(
        &mut self,
        event: &Event,
        verification: &VerificationRecord,
        cost: impl Fn(&str, &str) -> Option<f64>,
    ) {
        if event.subject.kind() != SubjectKind::Verification {
            return;
        }
        match event.kind {
            EventKind::VerificationApproved
            | EventKind::VerificationExpired
            | EventKind::VerificationCanceled
            | EventKind::VerificationMaxAttemptsReached => {
                self.count_end(event, verification);
            }
            _ => self.count_message(event, verification, cost),
        }
    }

    fn count_message(
        &mut self,
        event: &Event,
        verification: &VerificationRecord,
        cost: impl Fn(&str, &str) -> Option<f64>,
    ) {
        let Some(message) = &event.message else {
            return;
        };
        let step = verification
            .messages
            .iter()
            .find(|m| m.id == message.id)
            .map_or(0, |m| m.step);
        let newly_sent = handed_over(message.status)
            && !message
                .previous_status
                .is_some_and(|before| handed_over(before) || before == DeliveryStatus::Failed);
        let delivered = message.status == DeliveryStatus::Delivered
            && message.previous_status != Some(DeliveryStatus::Delivered);
        let failed = message.status == DeliveryStatus::Failed
            && message.previous_status != Some(DeliveryStatus::Failed);
        if !(newly_sent || delivered || failed) {
            return;
        }
        let declared_cost = newly_sent
            .then(|| cost(&verification.region, &message.carrier))
            .flatten();
        let tally = self.at(verification.key(message.channel.as_str(), &message.carrier));
        if newly_sent {
            tally.sent += 1;
            if step > 0 {
                tally.fallback_sent += 1;
            }
            if let Some(cost) = declared_cost {
                tally.cost_micros += cost_micros(cost);
                tally.costed_sent += 1;
            }
        }
        tally.delivered += u64::from(delivered);
        tally.failed += u64::from(failed);
    }

    fn count_end(&mut self, event: &Event, verification: &VerificationRecord) {
        let first = verification.first_attempted();
        let (channel, carrier) = first.map_or(("", ""), |m| (m.channel.as_str(), &m.carrier));
        let approved = event.kind == EventKind::VerificationApproved;
        let tally = self.at(verification.key(channel, carrier));
        tally.verifications += 1;
        if !approved {
            return;
        }
        tally.approved += 1;
        if let Some(first) = first {
            let elapsed = event.at_ms - first.due_at_ms.max(verification.created_at_ms);
            tally.approval_times[approval_time_bucket(elapsed.max(0))] += 1;
        }
        if let Some(converting) = verification.converting(event.at_ms)
            && converting.step > 0
        {
            let key = verification.key(converting.channel.as_str(), &converting.carrier);
            self.at(key).fallback_approved += 1;
        }
    }
}

/// What `GetConversionStats` may group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dimension {
    /// The number's country.
    Country,
    /// The carrier.
    Carrier,
    /// The channel.
    Channel,
    /// The service.
    Service,
    /// The UTC day the verifications were created.
    Day,
    /// The hour the verifications were created.
    Hour,
}

super::text_enum!(Dimension {
    Country => "country",
    Carrier => "carrier",
    Channel => "channel",
    Service => "service",
    Day => "day",
    Hour => "hour",
});

/// A group's values of the dimensions asked for (`None` for those not asked for).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    /// Country, when grouped by it.
    pub country: Option<String>,
    /// Carrier, when grouped by it.
    pub carrier: Option<String>,
    /// Channel, when grouped by it.
    pub channel: Option<String>,
    /// Service, when grouped by it.
    pub service_id: Option<String>,
    /// Start of the day or hour, when grouped by one (unix ms).
    pub period_start_ms: Option<i64>,
}

/// A statistics question: a time range (whole hours), what to group by, and filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsQuery {
    /// Verifications created from (unix ms, inclusive; a whole hour).
    pub from_ms: i64,
    /// Until (unix ms, exclusive; a whole hour).
    pub to_ms: i64,
    /// Dimensions, in the order asked.
    pub group_by: Vec<Dimension>,
    /// Only this service's verifications.
    pub service_id: Option<String>,
    /// Only these countries (empty: all).
    pub countries: Vec<String>,
    /// Only this channel.
    pub channel: Option<Channel>,
}

/// The longest range a query may cover.
pub const MAX_RANGE_MS: i64 = 400 * DAY_MS;

impl StatsQuery {
    /// Whether it groups by `dimension`.
    pub fn groups_by(&self, dimension: Dimension) -> bool {
        self.group_by.contains(&dimension)
    }

    /// The parts of the range to read from each table: whole UTC days from the daily rollup
    /// (unless grouped by hour), the hours before and after them from the hourly one. Each
    /// part is `(daily, from_ms, to_ms)`.
    pub fn segments(&self) -> Vec<(bool, i64, i64)> {
        let (from, to) = (self.from_ms, self.to_ms);
        if from >= to {
            return Vec::new();
        }
        let first_day = from.div_euclid(DAY_MS) * DAY_MS
            + if from.rem_euclid(DAY_MS) == 0 {
                0
            } else {
                DAY_MS
            };
        let last_day = to.div_euclid(DAY_MS) * DAY_MS;
        if self.groups_by(Dimension::Hour) || first_day >= last_day {
            return vec![(false, from, to)];
        }
        let mut parts = Vec::with_capacity(3);
        if from < first_day {
            parts.push((false, from, first_day));
        }
        parts.push((true, first_day, last_day));
        if last_day < to {
            parts.push((false, last_day, to));
        }
        parts
    }
}

impl GroupKey {
    /// Its values in the order `dimensions` name them, for sorting rows that way.
    fn in_order(&self, dimensions: &[Dimension]) -> Vec<(Option<&str>, Option<i64>)> {
        dimensions
            .iter()
            .map(|dimension| match dimension {
                Dimension::Country => (self.country.as_deref(), None),
                Dimension::Carrier => (self.carrier.as_deref(), None),
                Dimension::Channel => (self.channel.as_deref(), None),
                Dimension::Service => (self.service_id.as_deref(), None),
                Dimension::Day | Dimension::Hour => (None, self.period_start_ms),
            })
            .collect()
    }
}

impl StatsQuery {
    /// Sorts `rows` by the dimensions in the order asked (country then day, or day then
    /// country).
    pub fn sort(&self, rows: &mut [StatsRow]) {
        rows.sort_by(|a, b| {
            a.group
                .in_order(&self.group_by)
                .cmp(&b.group.in_order(&self.group_by))
        });
    }
}

/// A group's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsRow {
    /// The group.
    pub group: GroupKey,
    /// Its counts.
    pub tally: Tally,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MessageFacts, Subject, SubjectStatus, VerificationStatus};

    const T0: i64 = 1_764_000_000_000; // an instant inside some hour

    fn record(messages: Vec<MessageRecord>) -> VerificationRecord {
        VerificationRecord {
            service_id: "default".into(),
            region: "HN".into(),
            created_at_ms: T0,
            messages,
        }
    }

    fn message(id: &str, channel: Channel, carrier: &str, step: u32, at: i64) -> MessageRecord {
        MessageRecord {
            id: id.into(),
            channel,
            carrier: carrier.into(),
            step,
            status: DeliveryStatus::Delivered,
            due_at_ms: at,
            created_at_ms: at,
        }
    }

    fn message_event(
        kind: EventKind,
        m: &MessageRecord,
        status: DeliveryStatus,
        previous: Option<DeliveryStatus>,
    ) -> Event {
        Event {
            kind,
            service_id: "default".into(),
            subject: Subject::Verification("vf_1".into()),
            message: Some(MessageFacts {
                id: m.id.clone(),
                channel: m.channel,
                carrier: m.carrier.clone(),
                status,
                previous_status: previous,
            }),
            subject_status: SubjectStatus::Verification(VerificationStatus::Pending),
            detail: String::new(),
            at_ms: T0,
        }
    }

    fn end_event(kind: EventKind, status: VerificationStatus, at_ms: i64) -> Event {
        Event {
            kind,
            service_id: "default".into(),
            subject: Subject::Verification("vf_1".into()),
            message: None,
            subject_status: SubjectStatus::Verification(status),
            detail: String::new(),
            at_ms,
        }
    }

    fn no_cost(_: &str, _: &str) -> Option<f64> {
        None
    }

    #[test]
    fn a_message_is_sent_once_whatever_events_follow() {
        use DeliveryStatus as S;
        let sms = message("msg_1", Channel::Sms, "sim", 0, T0);
        let verification = record(vec![sms.clone()]);
        let mut rollup = Rollup::new();
        for (kind, status, previous) in [
            (EventKind::MessageQueued, S::Queued, None),
            (EventKind::MessageMaybeSent, S::MaybeSent, Some(S::Sending)),
            // The carrier's answer after the timeout: already counted as sent.
            (
                EventKind::MessageSubmitted,
                S::Submitted,
                Some(S::MaybeSent),
            ),
            (
                EventKind::MessageDelivered,
                S::Delivered,
                Some(S::Submitted),
            ),
        ] {
            rollup.count(
                &message_event(kind, &sms, status, previous),
                &verification,
                no_cost,
            );
        }
        let tally = &rollup.hourly()[&verification.key("sms", "sim")];
        assert_eq!((tally.sent, tally.delivered, tally.failed), (1, 1, 0));
    }

    #[test]
    fn a_refused_message_fails_without_being_sent_and_costs_are_summed() {
        use DeliveryStatus as S;
        let sms = message("msg_1", Channel::Sms, "dear", 0, T0);
        let verification = record(vec![sms.clone()]);
        let mut rollup = Rollup::new();
        let cost =
            |region: &str, carrier: &str| (region == "HN" && carrier == "dear").then_some(0.25);
        rollup.count(
            &message_event(EventKind::MessageFailed, &sms, S::Failed, Some(S::Sending)),
            &verification,
            cost,
        );
        rollup.count(
            &message_event(
                EventKind::MessageSubmitted,
                &sms,
                S::Submitted,
                Some(S::Sending),
            ),
            &verification,
            cost,
        );
        let tally = &rollup.hourly()[&verification.key("sms", "dear")];
        assert_eq!((tally.sent, tally.failed, tally.costed_sent), (1, 1, 1));
        assert_eq!(tally.cost_micros, 250_000);
    }

    #[test]
    fn an_approval_after_fallback_counts_for_the_first_route_and_yields_for_the_step() {
        let sms = message("msg_1", Channel::Sms, "sim", 0, T0);
        // The call's code approved before its dispatcher recorded the carrier's answer.
        let mut voice = message("msg_2", Channel::Voice, "sim", 1, T0 + 30_000);
        voice.status = DeliveryStatus::Sending;
        let verification = record(vec![sms, voice]);
        let mut rollup = Rollup::new();
        rollup.count(
            &end_event(
                EventKind::VerificationApproved,
                VerificationStatus::Approved,
                T0 + 41_000,
            ),
            &verification,
            no_cost,
        );
        let first = &rollup.hourly()[&verification.key("sms", "sim")];
        assert_eq!((first.verifications, first.approved), (1, 1));
        assert_eq!(first.approval_times[approval_time_bucket(41_000)], 1);
        let step = &rollup.hourly()[&verification.key("voice", "sim")];
        assert_eq!((step.verifications, step.fallback_approved), (0, 1));
    }

    #[test]
    fn a_verification_with_nothing_sent_counts_under_no_channel() {
        let verification = record(Vec::new());
        let mut rollup = Rollup::new();
        rollup.count(
            &end_event(
                EventKind::VerificationExpired,
                VerificationStatus::Expired,
                T0 + 600_000,
            ),
            &verification,
            no_cost,
        );
        let tally = &rollup.hourly()[&verification.key("", "")];
        assert_eq!((tally.verifications, tally.approved), (1, 0));
        assert_eq!(tally.conversion_rate(), Some(0.0));
        assert_eq!(rollup.daily().len(), 1);
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let mut tally = Tally::default();
        // Ten approvals between 10 s and 12 s, ten between 40 s and 50 s.
        tally.approval_times[approval_time_bucket(11_000)] = 10;
        tally.approval_times[approval_time_bucket(45_000)] = 10;
        assert_eq!(tally.approval_time_quantile_ms(0.5), Some(12_000));
        assert_eq!(tally.approval_time_quantile_ms(0.9), Some(48_000));
        assert_eq!(Tally::default().approval_time_quantile_ms(0.5), None);
        let mut slow = Tally::default();
        slow.approval_times[APPROVAL_TIME_BUCKETS - 1] = 3;
        assert_eq!(slow.approval_time_quantile_ms(0.5), Some(3_600_000));
    }

    #[test]
    fn ranges_read_whole_days_from_the_daily_rollup() {
        let day = 20_000 * DAY_MS;
        let query = |from, to, group_by: Vec<Dimension>| StatsQuery {
            from_ms: from,
            to_ms: to,
            group_by,
            service_id: None,
            countries: Vec::new(),
            channel: None,
        };
        assert_eq!(
            query(day - 2 * HOUR_MS, day + 2 * DAY_MS + HOUR_MS, vec![]).segments(),
            vec![
                (false, day - 2 * HOUR_MS, day),
                (true, day, day + 2 * DAY_MS),
                (false, day + 2 * DAY_MS, day + 2 * DAY_MS + HOUR_MS)
            ]
        );
        assert_eq!(
            query(day, day + 3 * HOUR_MS, vec![]).segments(),
            vec![(false, day, day + 3 * HOUR_MS)]
        );
        assert_eq!(
            query(day, day + 2 * DAY_MS, vec![Dimension::Hour]).segments(),
            vec![(false, day, day + 2 * DAY_MS)]
        );
        assert_eq!(
            query(day, day + 2 * DAY_MS, vec![]).segments(),
            vec![(true, day, day + 2 * DAY_MS)]
        );
    }
}
