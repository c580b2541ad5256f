//! Campaigns: create one from a stream of recipients (each validated, classified and judged by
//! its country's rules on the way in), read its counts, pause, resume, cancel it, and record
//! the recipients who confirmed. Sending is the campaign sender's (`crate::campaign_sender`).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use verify_carrier::Channel;
use verify_policy::abuse::{AbuseDefense, GeoPermission};
use verify_policy::classify::LineType;
use verify_policy::routing::Candidate;
use verify_policy::rules::Decision;

use super::listing::{id_of_page_token, page_token_of};
use super::{Caller, UseCaseError, UseCases, input, new_id};
use crate::clock::now_ms;
use crate::decide::Decider;
use crate::domain::campaign::{
    Admission, Campaign, CampaignCounts, CampaignRefusal, CampaignSpec, CampaignStatus,
    InvalidCampaign, LandlineAction, Recipient, RecipientState, Rejected, Rejection,
    summary_by_region,
};
use crate::domain::{MessageSpec, OutboxMessage, SubjectState};
use crate::notify::{NotifyPolicy, TextMessage};
use crate::store::{CampaignRepository, EventLog, Outbox, ServiceKey, SqlStore};

/// Rejected lines a CreateCampaign answer lists (ListCampaignRejections has them all).
pub const REJECTIONS_IN_ANSWER: usize = 100;
/// Writes of recipients at once while a campaign's list streams in: on PostgreSQL each is a
/// transaction of its own, and one at a time left both the database and verifyd mostly idle,
/// waiting for each other (a million recipients in 46 s); on SQLite they share commits.
const INGEST_WRITES_IN_FLIGHT: usize = 3;
/// Recipients stored in one write while a campaign's list streams in.
const INGEST_BATCH: usize = 4_096;
/// Refusal reasons a campaign's view lists.
const REFUSAL_REASONS: u32 = 20;
/// Most recipients in one chunk.
pub const MAX_CHUNK_RECIPIENTS: usize = 10_000;

/// A campaign as the transport parsed it.
#[derive(Debug, Clone)]
pub struct CampaignInput {
    /// What it sends and when (`landline_action` `None` for the category's default).
    pub spec: CampaignSpec,
    /// The landline action the client chose; `None` for the default.
    pub landline_action: Option<LandlineAction>,
    /// The service sending it; empty for the caller's own.
    pub service_id: String,
    /// The client's idempotency key; empty for none.
    pub idempotency_key: String,
}

/// One recipient line as the transport parsed it.
#[derive(Debug, Clone, Default)]
pub struct RecipientLine {
    /// Its line number.
    pub line: u64,
    /// The number.
    pub to: String,
    /// Its locale; empty for the default.
    pub locale: String,
    /// Its values.
    pub values: Vec<String>,
}

/// A chunk of recipient lines.
#[derive(Debug, Clone, Default)]
pub struct RecipientChunk {
    /// The lines, in order.
    pub lines: Vec<RecipientLine>,
    /// Region for national numbers; empty for none.
    pub region_hint: String,
}

/// What decides, for one recipient at one moment, whether and where its message goes: geo
/// permissions, the campaign's landline action, routing and the country rules. Owned, so
/// that a write on the store's writer can use it.
#[derive(Clone)]
pub struct CampaignJudge {
    defense: Arc<AbuseDefense>,
    rules: Arc<NotifyPolicy>,
    decider: Arc<Decider>,
}

impl CampaignJudge {
    /// What the rules say about sending `recipient` at `at_ms`: geo permissions, the landline
    /// action, a route for its channel (its `route`), the country's rules in its local time.
    pub fn admission(
        &self,
        campaign: &Campaign,
        recipient: &Recipient,
        time_zones: &[String],
        fixed_line: bool,
        at_ms: i64,
    ) -> Admission {
        let region = recipient.region_code.as_str();
        let geo = self
            .defense
            .geo
            .decide(Some(region), self.rules.has_country(region));
        if geo.permission == GeoPermission::Block {
            return Admission::Refuse { reason: geo.reason };
        }
        if fixed_line && campaign.spec.landline_action == LandlineAction::Report {
            return Admission::Refuse {
                reason: "a fixed line cannot receive SMS, and this campaign reports fixed lines instead of calling them".into(),
            };
        }
        if recipient.route.is_empty() {
            return Admission::Refuse {
                reason: format!(
                    "no configured route carries {} to {region}",
                    recipient.channel
                ),
            };
        }
        admission_of(self.rules.evaluate_text(
            &text_of(campaign, region, time_zones),
            recipient.channel,
            at_ms,
        ))
    }

    /// One line as a recipient (pending, deferred to its window, or refused by a rule), or
    /// why the line is rejected.
    pub fn admit(
        &self,
        campaign: &Campaign,
        start_ms: i64,
        line: RecipientLine,
        hint: Option<verify_policy::TerritoryId>,
    ) -> Result<Recipient, Rejected> {
        if line.to.len() > input::MAX_NUMBER_INPUT_LENGTH {
            return Err(Rejected::new(
                "to",
                format!("longer than {} characters", input::MAX_NUMBER_INPUT_LENGTH),
            ));
        }
        campaign.spec.check_recipient(&line.locale, &line.values)?;
        let classification = verify_policy::classify(&line.to, hint);
        let (Some(e164), Some(region)) = (
            classification.e164.clone().filter(|_| classification.valid),
            classification.region_code.clone(),
        ) else {
            return Err(Rejected::new(
                "to",
                format!("invalid phone number: {}", classification.detail),
            ));
        };
        let fixed_line = classification.line_type == Some(LineType::FixedLine);
        let channel = if fixed_line && campaign.spec.landline_action == LandlineAction::Voice {
            Channel::Voice
        } else {
            Channel::Sms
        };
        let route = self
            .decider
            .routes_for(Some(&region), &e164, channel)
            .into_iter()
            .next()
            .map(|candidate| candidate.carrier)
            .unwrap_or_default();
        let mut recipient = Recipient {
            campaign_id: campaign.id.clone(),
            line: line.line,
            to_e164: e164,
            region_code: region,
            channel,
            route,
            locale: line.locale,
            values: line.values,
            state: RecipientState::Pending,
            not_before_ms: start_ms,
            detail: String::new(),
            message_id: None,
        };
        let admission = self.admission(
            campaign,
            &recipient,
            &classification.time_zones,
            fixed_line,
            start_ms,
        );
        recipient.admit(admission, start_ms);
        Ok(recipient)
    }

    /// The routes a recipient's message takes now, best first.
    pub fn routes(&self, recipient: &Recipient) -> Vec<Candidate> {
        self.decider.routes_for(
            Some(&recipient.region_code),
            &recipient.to_e164,
            recipient.channel,
        )
    }
}

/// What CreateCampaign did.
#[derive(Debug, Clone)]
pub struct CampaignCreated {
    /// The campaign and its counts.
    pub view: CampaignView,
    /// The first rejected lines.
    pub rejections: Vec<Rejection>,
    /// The idempotency key matched an earlier campaign.
    pub replayed: bool,
}

/// A campaign with its counts.
#[derive(Debug, Clone)]
pub struct CampaignView {
    /// The campaign.
    pub campaign: Campaign,
    /// Its counts over every recipient.
    pub total: CampaignCounts,
    /// Its counts per group, by the dimensions asked for.
    pub groups: Vec<(GroupOf, CampaignCounts)>,
    /// The earliest time a deferred recipient's window opens.
    pub next_window_ms: Option<i64>,
    /// Why recipients were refused: `(region, reason, count)`, most frequent first.
    pub refusals: Vec<(String, String, u64)>,
}

/// What a campaign's counts can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CampaignDimension {
    /// The recipient's country.
    Country,
    /// The carrier.
    Carrier,
    /// The channel.
    Channel,
}

/// One group's key: the dimensions not grouped by are empty / `None`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupOf {
    /// The region.
    pub region_code: String,
    /// The carrier.
    pub carrier: String,
    /// The channel.
    pub channel: Option<Channel>,
}

impl From<InvalidCampaign> for UseCaseError {
    fn from(error: InvalidCampaign) -> Self {
        UseCaseError::InvalidArgument {
            field: error.field,
            reason: error.reason,
        }
    }
}

impl From<CampaignRefusal> for UseCaseError {
    fn from(refusal: CampaignRefusal) -> Self {
        UseCaseError::precondition(
            "campaign_id",
            format!(
                "campaign {} is {}: it cannot be {}",
                refusal.id, refusal.status, refusal.action
            ),
        )
    }
}

/// What ingest keeps while recipients stream in.
struct Ingest {
    campaign: Campaign,
    start_ms: i64,
    last_line: u64,
    accepted: u64,
    rejected: u64,
    first_rejections: Vec<Rejection>,
    by_region: BTreeMap<String, CampaignCounts>,
}

/// One chunk's lines, judged: the recipients to store and the lines rejected.
#[derive(Default)]
struct JudgedChunk {
    recipients: Vec<Recipient>,
    rejections: Vec<Rejection>,
}

impl JudgedChunk {
    fn append(&mut self, other: JudgedChunk) {
        self.recipients.extend(other.recipients);
        self.rejections.extend(other.rejections);
    }

    fn len(&self) -> usize {
        self.recipients.len() + self.rejections.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Ingest {
    /// Counts a stored chunk: its recipients by region and state, its rejected lines.
    fn count(&mut self, stored: JudgedChunk) {
        self.accepted += stored.recipients.len() as u64;
        self.rejected += stored.rejections.len() as u64;
        for recipient in &stored.recipients {
            let counts = self
                .by_region
                .entry(recipient.region_code.clone())
                .or_default();
            counts.recipients += 1;
            match recipient.state {
                RecipientState::Refused => counts.refused += 1,
                _ if recipient.not_before_ms > self.start_ms => counts.deferred += 1,
                _ => counts.queued += 1,
            }
        }
        let room = REJECTIONS_IN_ANSWER.saturating_sub(self.first_rejections.len());
        self.first_rejections
            .extend(stored.rejections.into_iter().take(room));
    }
}

/// Stores a judged chunk in one write; a recipient whose number another line has is
/// rejected instead. Returns what was stored and every rejected line.
async fn store_chunk(
    store: Arc<SqlStore>,
    campaign_id: String,
    judged: JudgedChunk,
) -> Result<JudgedChunk, UseCaseError> {
    store
        .write(move |tx| {
            Box::pin(async move {
                let JudgedChunk {
                    mut recipients,
                    mut rejections,
                } = judged;
                // Writes run side by side: each takes the numbers' index entries in the same
                // order, so that two writes of one number wait for each other, never in a
                // circle.
                recipients.sort_by(|a, b| a.to_e164.cmp(&b.to_e164));
                let inserted = tx.insert_recipients(&recipients).await?;
                let stored = if inserted.len() == recipients.len() {
                    recipients
                } else {
                    let kept: std::collections::HashSet<u64> = inserted.into_iter().collect();
                    let (stored, repeated): (Vec<_>, Vec<_>) = recipients
                        .into_iter()
                        .partition(|recipient| kept.contains(&recipient.line));
                    rejections.extend(repeated.into_iter().map(|recipient| Rejection {
                        line: recipient.line,
                        field: "to".into(),
                        reason:
                            "the campaign has this number on another line: it is sent once".into(),
                    }));
                    rejections.sort_by_key(|r| r.line);
                    stored
                };
                tx.insert_rejections(&campaign_id, &rejections).await?;
                Ok::<_, UseCaseError>(JudgedChunk {
                    recipients: stored,
                    rejections,
                })
            })
        })
        .await
}

/// The answer of a spawned write.
async fn wait_for(
    write: tokio::task::JoinHandle<Result<JudgedChunk, UseCaseError>>,
) -> Result<JudgedChunk, UseCaseError> {
    write
        .await
        .map_err(|error| UseCaseError::internal("storing recipients", error))?
}

impl UseCases {
    /// The campaign judge of this server.
    pub fn judge(&self) -> CampaignJudge {
        CampaignJudge {
            defense: Arc::clone(&self.defense),
            rules: Arc::clone(&self.rules),
            decider: Arc::clone(&self.decider),
        }
    }

    /// Stores a campaign and the recipients `chunks` stream in, answering once all are
    /// durably stored. A broken stream cancels the campaign (and frees its idempotency key).
    pub async fn create_campaign<S>(
        &self,
        caller: &Caller,
        input: CampaignInput,
        mut chunks: S,
    ) -> Result<CampaignCreated, UseCaseError>
    where
        S: Stream<Item = Result<RecipientChunk, UseCaseError>> + Unpin,
    {
        let service = self.service_for(caller, &input.service_id).await?;
        let now = now_ms();
        let mut spec = input.spec;
        spec.landline_action = input
            .landline_action
            .unwrap_or_else(|| LandlineAction::default_for(spec.category));
        spec.validate(now)?;
        self.check_program(&spec.program_id)?;
        if spec.template.len() > input::MAX_ID_LENGTH {
            return Err(UseCaseError::invalid(
                "campaign.template",
                format!("longer than {} characters", input::MAX_ID_LENGTH),
            ));
        }
        let idempotency_key = input::idempotency_key(&input.idempotency_key)?;
        let campaign = Campaign::new(
            new_id("cmp"),
            service.id.clone(),
            spec,
            idempotency_key,
            now,
        );
        let stored = campaign.clone();
        let earlier = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    if let Some(key) = &stored.idempotency_key {
                        let key = ServiceKey {
                            service_id: stored.service_id.clone(),
                            key: key.clone(),
                        };
                        if let Some(earlier) = tx.campaign_for_key(&key).await? {
                            tx.discard();
                            return Ok::<_, UseCaseError>(Some(earlier));
                        }
                    }
                    tx.insert_campaign(&stored).await?;
                    Ok(None)
                })
            })
            .await?;
        if let Some(earlier) = earlier {
            let view = self.campaign_view(earlier, &[]).await?;
            let rejections = self
                .store
                .campaign_rejections(&view.campaign.id, 0, REJECTIONS_IN_ANSWER as u32)
                .await?;
            return Ok(CampaignCreated {
                view,
                rejections,
                replayed: true,
            });
        }
        let start_ms = campaign.spec.start_at_ms.unwrap_or(now).max(now);
        let mut ingest = Ingest {
            campaign,
            start_ms,
            last_line: 0,
            accepted: 0,
            rejected: 0,
            first_rejections: Vec::new(),
            by_region: BTreeMap::new(),
        };
        // Chunks are judged while the batches before them are being written (the judging and
        // the database run side by side), in batches of INGEST_BATCH recipients sorted by
        // number: an index page that several recipients of a batch touch is written once,
        // and pages are touched in order. Measured with a million recipients on the 2-core
        // machine: one write of 2,000 at a time took 29 s (SQLite) and 46 s (PostgreSQL);
        // three writes of 4,096 sorted at a time 22 s and 23 s, at a peak of 170 and 183 MiB
        // resident (writes of 8,192 took 19 s and 20 s but peaked above 200 MiB).
        let streamed = async {
            let mut writing = std::collections::VecDeque::new();
            let mut batch = JudgedChunk::default();
            loop {
                let chunk = chunks.next().await.transpose()?;
                let end = chunk.is_none();
                if let Some(chunk) = chunk {
                    batch.append(self.judge_chunk(&mut ingest, chunk)?);
                }
                if batch.len() < INGEST_BATCH && !end {
                    continue;
                }
                if writing.len() >= INGEST_WRITES_IN_FLIGHT
                    && let Some(oldest) = writing.pop_front()
                {
                    ingest.count(wait_for(oldest).await?);
                }
                if !batch.is_empty() {
                    writing.push_back(tokio::spawn(store_chunk(
                        Arc::clone(&self.store),
                        ingest.campaign.id.clone(),
                        std::mem::take(&mut batch),
                    )));
                }
                if end {
                    break;
                }
            }
            while let Some(oldest) = writing.pop_front() {
                ingest.count(wait_for(oldest).await?);
            }
            Ok::<_, UseCaseError>(())
        }
        .await;
        if let Err(error) = streamed {
            self.abandon_ingest(&ingest.campaign, &error).await;
            return Err(error);
        }
        let mut campaign = ingest.campaign;
        let summary = summary_by_region(&ingest.by_region);
        let event = campaign.ingested(ingest.accepted, ingest.rejected, &summary, now_ms());
        let saved = campaign.clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    tx.save_campaign(&saved).await?;
                    tx.record([event]);
                    Ok::<_, UseCaseError>(())
                })
            })
            .await?;
        tracing::info!(
            campaign = %campaign.id,
            accepted = ingest.accepted,
            rejected = ingest.rejected,
            status = %campaign.status,
            "campaign stored"
        );
        let view = self.campaign_view(campaign, &[]).await?;
        Ok(CampaignCreated {
            view,
            rejections: ingest.first_rejections,
            replayed: false,
        })
    }

    /// Validates, classifies and judges one chunk's lines: the recipients to store and the
    /// lines rejected.
    fn judge_chunk(
        &self,
        ingest: &mut Ingest,
        chunk: RecipientChunk,
    ) -> Result<JudgedChunk, UseCaseError> {
        if chunk.lines.len() > MAX_CHUNK_RECIPIENTS {
            return Err(UseCaseError::invalid(
                "recipients.recipients",
                format!("at most {MAX_CHUNK_RECIPIENTS} recipients in one chunk"),
            ));
        }
        let hint = input::region_hint(&chunk.region_hint)
            .map_err(|_| UseCaseError::invalid("recipients.region_hint", "not a region code"))?;
        let judge = self.judge();
        let mut judged = JudgedChunk {
            recipients: Vec::with_capacity(chunk.lines.len()),
            rejections: Vec::new(),
        };
        for line in chunk.lines {
            if line.line <= ingest.last_line {
                return Err(UseCaseError::invalid(
                    "recipients.recipients.line",
                    format!(
                        "line numbers must increase: {} came after {}",
                        line.line, ingest.last_line
                    ),
                ));
            }
            ingest.last_line = line.line;
            let number = line.line;
            match judge.admit(&ingest.campaign, ingest.start_ms, line, hint) {
                Ok(recipient) => judged.recipients.push(recipient),
                Err(rejected) => judged.rejections.push(Rejection {
                    line: number,
                    field: rejected.field.to_string(),
                    reason: rejected.reason,
                }),
            }
        }
        Ok(judged)
    }

    /// Cancels a campaign whose recipients' stream broke, freeing its idempotency key so that
    /// the client can send it again.
    async fn abandon_ingest(&self, campaign: &Campaign, error: &UseCaseError) {
        let mut campaign = campaign.clone();
        let reason = format!("its recipients' stream broke ({error}): nothing of it is sent");
        let now = now_ms();
        campaign.status = CampaignStatus::Canceled;
        campaign.updated_at_ms = now;
        campaign.finished_at_ms = Some(now);
        let event = campaign.event(crate::domain::EventKind::CampaignCanceled, reason, now);
        let written = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    tx.save_campaign(&campaign).await?;
                    tx.release_campaign_key(&campaign.id).await?;
                    tx.record([event]);
                    Ok::<_, UseCaseError>(())
                })
            })
            .await;
        if let Err(error) = written {
            tracing::error!(%error, "canceling a campaign whose stream broke failed");
        }
    }

    /// A campaign with its counts grouped by `group_by` (by country when empty).
    pub async fn get_campaign(
        &self,
        caller: &Caller,
        id: &str,
        group_by: &[CampaignDimension],
    ) -> Result<CampaignView, UseCaseError> {
        let campaign = self.visible_campaign(caller, id).await?;
        let group_by = if group_by.is_empty() {
            &[CampaignDimension::Country][..]
        } else {
            group_by
        };
        self.campaign_view(campaign, group_by).await
    }

    async fn visible_campaign(&self, caller: &Caller, id: &str) -> Result<Campaign, UseCaseError> {
        input::validate_id("campaign_id", id)?;
        self.store
            .campaign(id)
            .await?
            .filter(|c| caller.sees(&c.service_id))
            .ok_or_else(|| not_found_campaign(id))
    }

    /// A campaign's counts, in total and per group of `group_by`.
    async fn campaign_view(
        &self,
        campaign: Campaign,
        group_by: &[CampaignDimension],
    ) -> Result<CampaignView, UseCaseError> {
        let now = now_ms();
        let tallies = self.store.campaign_tallies(&campaign.id, now).await?;
        let mut total = CampaignCounts::default();
        let mut groups: BTreeMap<(String, String, &'static str), (GroupOf, CampaignCounts)> =
            BTreeMap::new();
        for tally in &tallies {
            total.add(tally, campaign.status);
            if !group_by.is_empty() {
                let key = GroupOf {
                    region_code: if group_by.contains(&CampaignDimension::Country) {
                        tally.region_code.clone()
                    } else {
                        String::new()
                    },
                    carrier: if group_by.contains(&CampaignDimension::Carrier) {
                        tally.carrier.clone()
                    } else {
                        String::new()
                    },
                    channel: group_by
                        .contains(&CampaignDimension::Channel)
                        .then_some(tally.channel),
                };
                let order = (
                    key.region_code.clone(),
                    key.carrier.clone(),
                    key.channel.map_or("", Channel::as_str),
                );
                groups
                    .entry(order)
                    .or_insert_with(|| (key, CampaignCounts::default()))
                    .1
                    .add(tally, campaign.status);
            }
        }
        let next_window_ms = if total.deferred > 0 && !campaign.status.is_final() {
            self.store.next_campaign_window(&campaign.id, now).await?
        } else {
            None
        };
        let refusals = if total.refused > 0 {
            self.store
                .campaign_refusals(&campaign.id, REFUSAL_REASONS)
                .await?
        } else {
            Vec::new()
        };
        Ok(CampaignView {
            campaign,
            total,
            groups: groups.into_values().collect(),
            next_window_ms,
            refusals,
        })
    }

    /// A page of campaigns, newest first.
    pub async fn list_campaigns(
        &self,
        caller: &Caller,
        service_id: &str,
        statuses: &[CampaignStatus],
        page_size: u32,
        page_token: &str,
    ) -> Result<(Vec<Campaign>, String), UseCaseError> {
        let service = caller.events_of(service_id)?;
        let limit = match page_size {
            0 => 50,
            n if n > 500 => {
                return Err(UseCaseError::invalid("page_size", "at most 500"));
            }
            n => n,
        };
        let before = id_of_page_token(page_token)?;
        let mut campaigns = self
            .store
            .list_campaigns(service.as_deref(), statuses, before.as_deref(), limit + 1)
            .await?;
        let more = campaigns.len() > limit as usize;
        campaigns.truncate(limit as usize);
        let next = match (more, campaigns.last()) {
            (true, Some(last)) => page_token_of(&last.id),
            _ => String::new(),
        };
        Ok((campaigns, next))
    }

    /// A page of a campaign's rejected lines, in line order.
    pub async fn list_campaign_rejections(
        &self,
        caller: &Caller,
        id: &str,
        page_size: u32,
        page_token: &str,
    ) -> Result<(Vec<Rejection>, String), UseCaseError> {
        let campaign = self.visible_campaign(caller, id).await?;
        let limit = match page_size {
            0 => 500,
            n if n > 5000 => {
                return Err(UseCaseError::invalid("page_size", "at most 5000"));
            }
            n => n,
        };
        let after = match id_of_page_token(page_token)? {
            None => 0,
            Some(line) => line.parse::<u64>().map_err(|_| {
                UseCaseError::invalid(
                    "page_token",
                    "not a token this server gave; pass the `next_page_token` of the page before",
                )
            })?,
        };
        let mut rejections = self
            .store
            .campaign_rejections(&campaign.id, after, limit + 1)
            .await?;
        let more = rejections.len() > limit as usize;
        rejections.truncate(limit as usize);
        let next = match (more, rejections.last()) {
            (true, Some(last)) => page_token_of(&last.line.to_string()),
            _ => String::new(),
        };
        Ok((rejections, next))
    }

    /// Pauses a campaign: the messages of it not yet handed over wait until it resumes.
    pub async fn pause_campaign(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<CampaignView, UseCaseError> {
        self.change_campaign(caller, id, CampaignChange::Pause)
            .await
    }

    /// Resumes a paused campaign.
    pub async fn resume_campaign(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<CampaignView, UseCaseError> {
        self.change_campaign(caller, id, CampaignChange::Resume)
            .await
    }

    /// Cancels a campaign: what is not yet handed over never is.
    pub async fn cancel_campaign(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<CampaignView, UseCaseError> {
        self.change_campaign(caller, id, CampaignChange::Cancel)
            .await
    }

    async fn change_campaign(
        &self,
        caller: &Caller,
        id: &str,
        change: CampaignChange,
    ) -> Result<CampaignView, UseCaseError> {
        let campaign = self.visible_campaign(caller, id).await?;
        let campaign = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    let now = now_ms();
                    let mut campaign = tx
                        .lock_campaign(&campaign.id)
                        .await?
                        .ok_or_else(|| not_found_campaign(&campaign.id))?;
                    let event = match change {
                        CampaignChange::Pause => campaign.pause(now)?,
                        CampaignChange::Resume => campaign.resume(now)?,
                        CampaignChange::Cancel => campaign.cancel(now)?,
                    };
                    let Some(event) = event else {
                        tx.discard();
                        return Ok::<_, UseCaseError>(campaign);
                    };
                    tx.save_campaign(&campaign).await?;
                    tx.record([event]);
                    let unsent = tx.lock_unsent_messages_of(&campaign.subject()).await?;
                    for mut message in unsent {
                        let moved = match change {
                            CampaignChange::Pause => message.hold(now),
                            CampaignChange::Resume => message.unhold(now),
                            CampaignChange::Cancel => {
                                let dropped = message.drop_unsent(
                                    "not sent: the campaign was canceled",
                                    SubjectState::Campaign,
                                    now,
                                );
                                let moved = dropped.is_some();
                                tx.record(dropped);
                                moved
                            }
                        };
                        if moved {
                            tx.save_message(&message).await?;
                        }
                    }
                    Ok(campaign)
                })
            })
            .await?;
        tracing::info!(campaign = %campaign.id, status = %campaign.status, "campaign changed");
        self.campaign_view(campaign, &[CampaignDimension::Country])
            .await
    }

    /// Records that a recipient of a campaign confirmed; `false` when it had before.
    pub async fn report_campaign_confirmation(
        &self,
        caller: &Caller,
        id: &str,
        to: &str,
        line: u64,
    ) -> Result<bool, UseCaseError> {
        let campaign = self.visible_campaign(caller, id).await?;
        if !campaign.spec.tracks_confirmation {
            return Err(UseCaseError::precondition(
                "campaign_id",
                format!(
                    "campaign {} does not track confirmations (create it with tracks_confirmation)",
                    campaign.id
                ),
            ));
        }
        let number = match (to.trim(), line) {
            ("", 0) => {
                return Err(UseCaseError::invalid(
                    "to",
                    "set `to` or `line` to say which recipient confirmed",
                ));
            }
            ("", _) => None,
            (to, _) => {
                input::validate_number_input("to", to)?;
                let classification = verify_policy::classify(to, None);
                Some(
                    classification
                        .e164
                        .filter(|_| classification.valid)
                        .ok_or_else(|| {
                            UseCaseError::invalid(
                                "to",
                                format!("invalid phone number: {}", classification.detail),
                            )
                        })?,
                )
            }
        };
        let campaign_id = campaign.id.clone();
        let answer = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    let line = (line > 0).then_some(line);
                    let counted = tx
                        .confirm_recipient(&campaign_id, number.as_deref(), line, now_ms())
                        .await?;
                    Ok::<_, UseCaseError>(counted)
                })
            })
            .await?;
        answer.ok_or_else(|| UseCaseError::NotFound {
            resource: "campaign recipient",
            field: if to.trim().is_empty() { "line" } else { "to" },
            value: if to.trim().is_empty() {
                line.to_string()
            } else {
                verify_carrier::mask_number(to.trim()).to_string()
            },
        })
    }
}

/// What PauseCampaign, ResumeCampaign and CancelCampaign do.
#[derive(Debug, Clone, Copy)]
enum CampaignChange {
    Pause,
    Resume,
    Cancel,
}

/// The text of a campaign to a recipient of `region`, as the rules see it.
pub(crate) fn text_of<'a>(
    campaign: &'a Campaign,
    region: &'a str,
    time_zones: &'a [String],
) -> TextMessage<'a> {
    TextMessage {
        region,
        time_zones,
        category: campaign.spec.category,
        program_id: &campaign.spec.program_id,
        template: &campaign.spec.template,
        sender: campaign.spec.sender_for(region),
    }
}

/// A rule decision as a recipient's admission.
pub(crate) fn admission_of(decision: Decision) -> Admission {
    match &decision {
        Decision::Reject { .. } => Admission::Refuse {
            reason: decision.explain(),
        },
        Decision::Defer { until, .. } => Admission::Defer {
            until_ms: until.timestamp_millis(),
            reason: decision.explain(),
        },
        _ => Admission::Now,
    }
}

fn not_found_campaign(id: &str) -> UseCaseError {
    UseCaseError::NotFound {
        resource: "campaign",
        field: "campaign_id",
        value: id.to_string(),
    }
}

/// How many recipients of one campaign the sender may hand to each route in one round.
#[derive(Debug, Clone, Default)]
pub struct FeedShares {
    /// Route (carrier name) to the most recipients planned for it to take now.
    pub per_route: Vec<(String, u32)>,
}

/// What one round of feeding a campaign did.
#[derive(Debug, Clone, Default)]
pub struct Fed {
    /// Messages queued, per carrier.
    pub queued: BTreeMap<String, u32>,
    /// Recipients held again until their window opens.
    pub deferred: u32,
    /// Recipients refused at send time.
    pub refused: u32,
}

impl UseCases {
    /// One round of sending for a running campaign: takes due recipients route by route, up
    /// to each route's share, asks the rules again for each (its window may have closed, a
    /// geo permission changed), and queues a message for each that may go now, recording the
    /// recipient as sent in the same transaction (so no recipient gets two messages). Does
    /// nothing for a campaign that does not send now.
    pub async fn feed_campaign(
        &self,
        campaign_id: &str,
        shares: FeedShares,
    ) -> Result<Fed, UseCaseError> {
        let judge = self.judge();
        let campaign_id = campaign_id.to_string();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let now = now_ms();
                    let Some(campaign) = tx.lock_campaign(&campaign_id).await? else {
                        return Ok::<_, UseCaseError>(Fed::default());
                    };
                    if !campaign.sends_at(now) {
                        tx.discard();
                        return Ok(Fed::default());
                    }
                    let mut fed = Fed::default();
                    let mut messages = Vec::new();
                    let mut events = Vec::new();
                    let mut changed = Vec::new();
                    for (route, share) in &shares.per_route {
                        if *share == 0 {
                            continue;
                        }
                        let due = tx
                            .lock_due_recipients(&campaign.id, route, now, *share)
                            .await?;
                        for mut recipient in due {
                            let time_zones =
                                verify_policy::classify(&recipient.to_e164, None).time_zones;
                            let routes = judge.routes(&recipient);
                            let Some((first, rest)) = routes.split_first() else {
                                fed.refused += 1;
                                recipient.refuse(format!(
                                    "no configured route carries {} to {} now",
                                    recipient.channel, recipient.region_code
                                ));
                                changed.push(recipient);
                                continue;
                            };
                            match judge.admission(&campaign, &recipient, &time_zones, false, now) {
                                Admission::Now => {
                                    let spec = MessageSpec {
                                        id: campaign.message_id(recipient.line),
                                        service_id: campaign.service_id.clone(),
                                        subject: campaign.subject(),
                                        channel: recipient.channel,
                                        carrier: first.carrier.clone(),
                                        fallback_carriers: rest
                                            .iter()
                                            .map(|c| c.carrier.clone())
                                            .collect(),
                                        step: 0,
                                        trace_parent: None,
                                    };
                                    let detail = format!(
                                        "campaign {} line {}: route {}: {}",
                                        campaign.id, recipient.line, first.carrier, first.reason
                                    );
                                    let (message, event) = OutboxMessage::queue(
                                        spec,
                                        &detail,
                                        SubjectState::Campaign,
                                        now,
                                    );
                                    *fed.queued.entry(first.carrier.clone()).or_default() += 1;
                                    recipient.sent_as(message.id.clone());
                                    messages.push(message);
                                    events.push(event);
                                }
                                Admission::Defer { until_ms, reason } => {
                                    fed.deferred += 1;
                                    recipient.defer(until_ms, reason);
                                }
                                Admission::Refuse { reason } => {
                                    fed.refused += 1;
                                    recipient.refuse(reason);
                                }
                            }
                            changed.push(recipient);
                        }
                    }
                    if changed.is_empty() {
                        tx.discard();
                        return Ok(fed);
                    }
                    tx.insert_messages(&messages).await?;
                    tx.save_recipients(&changed).await?;
                    tx.record(events);
                    Ok(fed)
                })
            })
            .await
    }

    /// Starts a scheduled campaign whose start time came, and ends a running one with nothing
    /// left to send (completed) or past its deadline (expired, its unsent messages dropped).
    /// Returns the campaign as it is after.
    pub async fn settle_campaign(&self, campaign: &Campaign) -> Result<Campaign, UseCaseError> {
        let now = now_ms();
        let subject = campaign.subject();
        let done = campaign.status == CampaignStatus::Running
            && !campaign.past_deadline(now)
            && !self
                .store
                .has_pending_campaign_recipients(&campaign.id)
                .await?
            && !self.store.has_unsettled_messages(&subject).await?;
        let expired = campaign.past_deadline(now) && !campaign.status.is_final();
        let starts = campaign.status == CampaignStatus::Scheduled
            && campaign.spec.start_at_ms.is_none_or(|start| start <= now);
        if !(done || expired || starts) {
            return Ok(campaign.clone());
        }
        let summary = if done || expired {
            let view = self
                .campaign_view(campaign.clone(), &[CampaignDimension::Country])
                .await?;
            let by_region: BTreeMap<String, CampaignCounts> = view
                .groups
                .into_iter()
                .map(|(group, counts)| (group.region_code, counts))
                .collect();
            summary_by_region(&by_region)
        } else {
            String::new()
        };
        let id = campaign.id.clone();
        let settled = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    let now = now_ms();
                    let Some(mut campaign) = tx.lock_campaign(&id).await? else {
                        return Err(not_found_campaign(&id));
                    };
                    let event = if expired {
                        let waiting = tx.has_pending_recipients(&campaign.id).await?;
                        let event = campaign.finish(waiting, &summary, now);
                        if event.is_some() {
                            for mut message in
                                tx.lock_unsent_messages_of(&campaign.subject()).await?
                            {
                                if let Some(event) = message.drop_unsent(
                                    "not sent: the campaign's deadline passed",
                                    SubjectState::Campaign,
                                    now,
                                ) {
                                    tx.save_message(&message).await?;
                                    tx.record([event]);
                                }
                            }
                        }
                        event
                    } else if done {
                        campaign.finish(false, &summary, now)
                    } else {
                        campaign.start_if_due(now)
                    };
                    match event {
                        Some(event) => {
                            tx.save_campaign(&campaign).await?;
                            tx.record([event]);
                        }
                        None => tx.discard(),
                    }
                    Ok::<_, UseCaseError>(campaign)
                })
            })
            .await?;
        if settled.status != campaign.status {
            tracing::info!(campaign = %settled.id, status = %settled.status, "campaign changed");
        }
        Ok(settled)
    }
}
