//! A campaign: one text (per locale) sent to a list, each recipient under its own country's
//! rules. The campaign's life (ingesting, scheduled, running, paused, ended), what each
//! recipient gets, and how recipients and their messages are counted live here; the use cases
//! ask the country rules and store the result.

use std::collections::BTreeMap;

use verify_carrier::Channel;
use verify_policy::rules::Category;

use super::{DeliveryStatus, Event, EventKind, Subject, SubjectStatus, text_enum};

/// Longest text a recipient gets, in characters, once its variables are filled (ten
/// concatenated SMS parts, as for Notify).
pub const MAX_CAMPAIGN_TEXT_CHARS: usize = 1600;
/// Most variables a campaign may name.
pub const MAX_VARIABLES: usize = 32;
/// Longest value of one variable, in characters.
pub const MAX_VALUE_CHARS: usize = 500;

/// Where a campaign is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CampaignStatus {
    /// Its recipients are being streamed in; nothing is sent yet.
    Ingesting,
    /// Stored, waiting for its start time.
    Scheduled,
    /// Sending.
    Running,
    /// Paused by the client: nothing more goes to a carrier.
    Paused,
    /// Every recipient was sent, refused or reported.
    Completed,
    /// Canceled by the client.
    Canceled,
    /// Its deadline passed with recipients still waiting.
    Expired,
}

text_enum!(CampaignStatus {
    Ingesting => "ingesting",
    Scheduled => "scheduled",
    Running => "running",
    Paused => "paused",
    Completed => "completed",
    Canceled => "canceled",
    Expired => "expired",
});

impl CampaignStatus {
    /// Whether nothing more is sent, ever.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            CampaignStatus::Completed | CampaignStatus::Canceled | CampaignStatus::Expired
        )
    }
}

/// What a campaign does with a recipient whose number is a fixed line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandlineAction {
    /// Call it and read the text aloud.
    Voice,
    /// Do not send; count it as refused.
    Report,
}

text_enum!(LandlineAction {
    Voice => "voice",
    Report => "report",
});

impl LandlineAction {
    /// The action when the client chose none: alerts must reach people, so fixed lines get a
    /// call; other categories report them.
    pub fn default_for(category: Category) -> LandlineAction {
        match category {
            Category::Alert => LandlineAction::Voice,
            _ => LandlineAction::Report,
        }
    }
}

/// A problem with what a campaign asks for, naming the request field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidCampaign {
    /// The field at fault.
    pub field: &'static str,
    /// Why.
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidCampaign {
    InvalidCampaign {
        field,
        reason: reason.into(),
    }
}

/// What a campaign sends and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignSpec {
    /// A name for people.
    pub name: String,
    /// What it is for.
    pub category: Category,
    /// The sending program; empty for none.
    pub program_id: String,
    /// The registered template the bodies follow; empty for none.
    pub template: String,
    /// The text per locale, with `{name}` placeholders for the recipients' variables.
    pub bodies: BTreeMap<String, String>,
    /// The locale of recipients whose locale has no text.
    pub default_locale: String,
    /// The recipients' variables, in the order of their values.
    pub variable_names: Vec<String>,
    /// The sender to show; empty for the carrier's own.
    pub sender: String,
    /// The sender per region, for countries that need their own.
    pub senders_by_region: BTreeMap<String, String>,
    /// Nothing is sent before this, unix ms.
    pub start_at_ms: Option<i64>,
    /// Nothing is sent after this, unix ms.
    pub deadline_ms: Option<i64>,
    /// What fixed lines get.
    pub landline_action: LandlineAction,
    /// Whether confirmations are counted.
    pub tracks_confirmation: bool,
}

impl CampaignSpec {
    /// Checks what no recipient can mend: a category a campaign may have, texts, placeholders
    /// that name variables, a default locale with a text, a deadline after the start.
    pub fn validate(&self, now_ms: i64) -> Result<(), InvalidCampaign> {
        if self.name.trim().is_empty() {
            return Err(invalid("campaign.name", "must not be empty"));
        }
        if self.name.chars().count() > 200 {
            return Err(invalid("campaign.name", "longer than 200 characters"));
        }
        if self.category == Category::Otp {
            return Err(invalid(
                "campaign.category",
                "one-time codes are sent with Verify, one per person; a campaign is an alert, transactional or marketing",
            ));
        }
        if self.variable_names.len() > MAX_VARIABLES {
            return Err(invalid(
                "campaign.variable_names",
                format!("at most {MAX_VARIABLES} variables"),
            ));
        }
        for (index, name) in self.variable_names.iter().enumerate() {
            let valid = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                return Err(invalid(
                    "campaign.variable_names",
                    format!("`{name}` is not a variable name (letters, digits, `_` and `-`)"),
                ));
            }
            if self.variable_names[..index].contains(name) {
                return Err(invalid(
                    "campaign.variable_names",
                    format!("`{name}` is named twice"),
                ));
            }
        }
        if self.bodies.is_empty() {
            return Err(invalid(
                "campaign.bodies",
                "give the text for at least one locale",
            ));
        }
        for (locale, body) in &self.bodies {
            let field = "campaign.bodies";
            if !is_locale(locale) {
                return Err(invalid(
                    field,
                    format!("`{locale}` is not a locale (e.g. en, hi, es-MX)"),
                ));
            }
            if body.trim().is_empty() {
                return Err(invalid(field, format!("the `{locale}` text is empty")));
            }
            for placeholder in placeholders(body) {
                if !self.variable_names.iter().any(|name| name == placeholder) {
                    return Err(invalid(
                        field,
                        format!(
                            "the `{locale}` text's `{{{placeholder}}}` names no variable; the variables are: {}",
                            if self.variable_names.is_empty() {
                                "none".to_string()
                            } else {
                                self.variable_names.join(", ")
                            }
                        ),
                    ));
                }
            }
            let longest = body.chars().count();
            if longest > MAX_CAMPAIGN_TEXT_CHARS {
                return Err(invalid(
                    field,
                    format!(
                        "the `{locale}` text is longer than {MAX_CAMPAIGN_TEXT_CHARS} characters"
                    ),
                ));
            }
        }
        if !self.bodies.contains_key(&self.default_locale) {
            return Err(invalid(
                "campaign.default_locale",
                format!(
                    "`{}` has no text in `bodies` (they have: {})",
                    self.default_locale,
                    self.bodies.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        if self.sender.chars().count() > 20 {
            return Err(invalid("campaign.sender", "longer than 20 characters"));
        }
        for (region, sender) in &self.senders_by_region {
            if region.len() != 2 || !region.chars().all(|c| c.is_ascii_uppercase()) {
                return Err(invalid(
                    "campaign.senders_by_region",
                    format!("`{region}` is not a region code (ISO 3166-1 alpha-2, e.g. IN)"),
                ));
            }
            if sender.trim().is_empty() || sender.chars().count() > 20 {
                return Err(invalid(
                    "campaign.senders_by_region",
                    format!("the sender for {region} must have 1 to 20 characters"),
                ));
            }
        }
        if let Some(deadline) = self.deadline_ms {
            if deadline <= now_ms {
                return Err(invalid("campaign.deadline", "is in the past"));
            }
            if let Some(start) = self.start_at_ms
                && deadline <= start
            {
                return Err(invalid("campaign.deadline", "must be after `start_time`"));
            }
        }
        Ok(())
    }

    /// The sender recipients of `region` see: the region's own, else the campaign's.
    pub fn sender_for(&self, region: &str) -> &str {
        self.senders_by_region
            .get(region)
            .map_or(self.sender.as_str(), String::as_str)
    }

    /// The text a recipient of `locale` gets: its locale's, else its language's, else the
    /// default locale's.
    pub fn body_for(&self, locale: &str) -> &str {
        let language = locale.split(['-', '_']).next().unwrap_or_default();
        self.bodies
            .get(locale)
            .or_else(|| self.bodies.get(language))
            .or_else(|| self.bodies.get(&self.default_locale))
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// The text a recipient gets, its variables filled.
    pub fn text_for(&self, locale: &str, values: &[String]) -> String {
        let body = self.body_for(locale);
        let mut text = String::with_capacity(body.len() + 32);
        let mut rest = body;
        while let Some(open) = rest.find('{') {
            let (before, after) = rest.split_at(open);
            text.push_str(before);
            match after[1..].find('}').map(|close| &after[1..1 + close]) {
                Some(name) if is_placeholder(name) => {
                    let index = self.variable_names.iter().position(|n| n == name);
                    text.push_str(index.and_then(|i| values.get(i)).map_or("", String::as_str));
                    rest = &after[name.len() + 2..];
                }
                _ => {
                    text.push('{');
                    rest = &after[1..];
                }
            }
        }
        text.push_str(rest);
        text
    }

    /// Checks one recipient's line: as many values as variables, none too long, the text
    /// within the length limit once filled.
    pub fn check_recipient(&self, locale: &str, values: &[String]) -> Result<(), Rejected> {
        if !locale.is_empty() && !is_locale(locale) {
            return Err(Rejected::new(
                "locale",
                format!("`{locale}` is not a locale (e.g. en, hi, es-MX)"),
            ));
        }
        if values.len() != self.variable_names.len() {
            return Err(Rejected::new(
                "values",
                format!(
                    "{} values for {} variables ({})",
                    values.len(),
                    self.variable_names.len(),
                    self.variable_names.join(", ")
                ),
            ));
        }
        if let Some((index, _)) = values
            .iter()
            .enumerate()
            .find(|(_, value)| value.chars().count() > MAX_VALUE_CHARS)
        {
            return Err(Rejected::new(
                "values",
                format!(
                    "`{}` is longer than {MAX_VALUE_CHARS} characters",
                    self.variable_names[index]
                ),
            ));
        }
        let length = self.text_for(locale, values).chars().count();
        if length > MAX_CAMPAIGN_TEXT_CHARS {
            return Err(Rejected::new(
                "values",
                format!("the text would be {length} characters, over {MAX_CAMPAIGN_TEXT_CHARS}"),
            ));
        }
        Ok(())
    }
}

/// `en`, `hi`, `es-MX`, `zh-Hant-TW`: letters and digits in parts joined by `-` or `_`.
fn is_locale(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 35
        && text
            .split(['-', '_'])
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric()))
        && text.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
}

fn is_placeholder(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The `{name}` placeholders of a text.
fn placeholders(body: &str) -> impl Iterator<Item = &str> {
    body.split('{').skip(1).filter_map(|part| {
        let name = &part[..part.find('}')?];
        is_placeholder(name).then_some(name)
    })
}

/// A line CreateCampaign does not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The field at fault.
    pub field: &'static str,
    /// Why.
    pub reason: String,
}

impl Rejected {
    /// A rejection of `field` for `reason`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Rejected {
        Rejected {
            field,
            reason: reason.into(),
        }
    }
}

/// A rejected line as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Its line number.
    pub line: u64,
    /// The field at fault.
    pub field: String,
    /// Why.
    pub reason: String,
}

/// Why a campaign cannot do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("campaign_id: campaign {id} is {status}: it cannot be {action}")]
pub struct CampaignRefusal {
    /// The campaign.
    pub id: String,
    /// Where it is.
    pub status: CampaignStatus,
    /// What was asked (`paused`, `resumed`).
    pub action: &'static str,
}

/// A campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Campaign {
    /// Id (`cmp_...`).
    pub id: String,
    /// The service sending it.
    pub service_id: String,
    /// What it sends and when.
    pub spec: CampaignSpec,
    /// Where it is.
    pub status: CampaignStatus,
    /// Lines accepted.
    pub accepted: u64,
    /// Lines rejected.
    pub rejected: u64,
    /// The client's idempotency key.
    pub idempotency_key: Option<String>,
    /// Created, unix ms.
    pub created_at_ms: i64,
    /// Last change of status, unix ms.
    pub updated_at_ms: i64,
    /// When it ended, unix ms.
    pub finished_at_ms: Option<i64>,
}

impl Campaign {
    /// A new campaign, taking its recipients.
    pub fn new(
        id: String,
        service_id: String,
        spec: CampaignSpec,
        idempotency_key: Option<String>,
        now_ms: i64,
    ) -> Campaign {
        Campaign {
            id,
            service_id,
            spec,
            status: CampaignStatus::Ingesting,
            accepted: 0,
            rejected: 0,
            idempotency_key,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            finished_at_ms: None,
        }
    }

    /// The subject its messages and events name.
    pub fn subject(&self) -> Subject {
        Subject::Campaign(self.id.clone())
    }

    /// An event of the campaign itself, in its current state.
    pub fn event(&self, kind: EventKind, detail: impl Into<String>, now_ms: i64) -> Event {
        Event {
            kind,
            service_id: self.service_id.clone(),
            subject: self.subject(),
            message: None,
            subject_status: SubjectStatus::Campaign(Some(self.status)),
            detail: detail.into(),
            at_ms: now_ms,
        }
    }

    fn change(&mut self, status: CampaignStatus, now_ms: i64) {
        self.status = status;
        self.updated_at_ms = now_ms;
        if status.is_final() {
            self.finished_at_ms = Some(now_ms);
        }
    }

    /// Moves to `status` and returns the event of `kind` saying so.
    fn moved(
        &mut self,
        status: CampaignStatus,
        kind: EventKind,
        detail: &str,
        now_ms: i64,
    ) -> Option<Event> {
        self.change(status, now_ms);
        Some(self.event(kind, detail, now_ms))
    }

    /// Running, or scheduled while its start time is ahead.
    fn started_or_scheduled(&self, now_ms: i64) -> CampaignStatus {
        if self.spec.start_at_ms.is_some_and(|start| start > now_ms) {
            CampaignStatus::Scheduled
        } else {
            CampaignStatus::Running
        }
    }

    /// Its recipients are stored: it runs, or waits for its start time. `summary` counts
    /// them for the event.
    pub fn ingested(&mut self, accepted: u64, rejected: u64, summary: &str, now_ms: i64) -> Event {
        self.accepted = accepted;
        self.rejected = rejected;
        self.change(self.started_or_scheduled(now_ms), now_ms);
        self.event(
            EventKind::CampaignStarted,
            format!("{accepted} recipients ({rejected} lines rejected): {summary}"),
            now_ms,
        )
    }

    /// Starts it once its start time came; `None` otherwise.
    pub fn start_if_due(&mut self, now_ms: i64) -> Option<Event> {
        let due = self.status == CampaignStatus::Scheduled
            && self.spec.start_at_ms.is_none_or(|start| start <= now_ms);
        due.then(|| {
            self.change(CampaignStatus::Running, now_ms);
            self.event(EventKind::CampaignResumed, "its start time came", now_ms)
        })
    }

    /// Whether its messages may go to a carrier at `now_ms`.
    pub fn sends_at(&self, now_ms: i64) -> bool {
        self.status == CampaignStatus::Running && self.spec.deadline_ms.is_none_or(|d| now_ms < d)
    }

    /// Pauses it. Pausing a paused one changes nothing (`None`).
    pub fn pause(&mut self, now_ms: i64) -> Result<Option<Event>, CampaignRefusal> {
        match self.status {
            CampaignStatus::Paused => Ok(None),
            CampaignStatus::Running | CampaignStatus::Scheduled => Ok(self.moved(
                CampaignStatus::Paused,
                EventKind::CampaignPaused,
                "paused by the client: nothing more goes to a carrier until it is resumed",
                now_ms,
            )),
            status => Err(self.refusal(status, "paused")),
        }
    }

    /// Resumes a paused one (waiting again for its start time if that is still ahead).
    /// Resuming a running one changes nothing (`None`).
    pub fn resume(&mut self, now_ms: i64) -> Result<Option<Event>, CampaignRefusal> {
        match self.status {
            CampaignStatus::Running | CampaignStatus::Scheduled => Ok(None),
            CampaignStatus::Paused => Ok(self.moved(
                self.started_or_scheduled(now_ms),
                EventKind::CampaignResumed,
                "resumed by the client",
                now_ms,
            )),
            status => Err(self.refusal(status, "resumed")),
        }
    }

    /// Cancels it: recipients not yet handed to a carrier are never sent. Canceling one that
    /// ended changes nothing (`None`); one still taking its recipients cannot be canceled.
    pub fn cancel(&mut self, now_ms: i64) -> Result<Option<Event>, CampaignRefusal> {
        match self.status {
            status if status.is_final() => Ok(None),
            CampaignStatus::Ingesting => Err(self.refusal(CampaignStatus::Ingesting, "canceled")),
            _ => Ok(self.moved(
                CampaignStatus::Canceled,
                EventKind::CampaignCanceled,
                "canceled by the client: recipients not yet sent never are",
                now_ms,
            )),
        }
    }

    /// Ends a running campaign with nothing left to send: completed, or expired when its
    /// deadline passed with recipients still waiting. `summary` gives its counts.
    pub fn finish(&mut self, left_waiting: bool, summary: &str, now_ms: i64) -> Option<Event> {
        if self.status.is_final() || self.status == CampaignStatus::Ingesting {
            return None;
        }
        let past_deadline = self.spec.deadline_ms.is_some_and(|d| now_ms >= d);
        let status = if past_deadline && left_waiting {
            CampaignStatus::Expired
        } else if !left_waiting && self.status == CampaignStatus::Running {
            CampaignStatus::Completed
        } else {
            return None;
        };
        self.change(status, now_ms);
        Some(self.event(EventKind::CampaignFinished, summary.to_string(), now_ms))
    }

    /// Whether its deadline passed at `now_ms`.
    pub fn past_deadline(&self, now_ms: i64) -> bool {
        self.spec.deadline_ms.is_some_and(|d| now_ms >= d)
    }

    fn refusal(&self, status: CampaignStatus, action: &'static str) -> CampaignRefusal {
        CampaignRefusal {
            id: self.id.clone(),
            status,
            action,
        }
    }

    /// The id of the message that carries the text to the recipient of `line`: one message
    /// per recipient, named so that it cannot be created twice.
    pub fn message_id(&self, line: u64) -> String {
        message_id_of(&self.id, line)
    }
}

/// The id of the message of campaign `campaign_id`'s recipient of `line`.
pub fn message_id_of(campaign_id: &str, line: u64) -> String {
    let suffix = campaign_id.strip_prefix("cmp_").unwrap_or(campaign_id);
    format!("msg_{suffix}_{line}")
}

/// The line of the recipient a message of campaign `campaign_id` carries the text to;
/// `None` for a message that is not one of the campaign's.
pub fn line_of_message(campaign_id: &str, message_id: &str) -> Option<u64> {
    let suffix = campaign_id.strip_prefix("cmp_").unwrap_or(campaign_id);
    message_id
        .strip_prefix("msg_")?
        .strip_prefix(suffix)?
        .strip_prefix('_')?
        .parse()
        .ok()
}

/// Where a recipient is, before its message takes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecipientState {
    /// Waiting to be sent (due now, or held until `not_before_ms`).
    Pending,
    /// Refused: a country rule, a geo permission, the landline action; never sent.
    Refused,
    /// Its message is in the outbox: its status is the message's.
    Sent,
}

text_enum!(RecipientState {
    Pending => "pending",
    Refused => "refused",
    Sent => "sent",
});

/// One recipient of a campaign.
#[derive(Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The campaign.
    pub campaign_id: String,
    /// Its line in the client's list.
    pub line: u64,
    /// The number, E.164.
    pub to_e164: String,
    /// Its region.
    pub region_code: String,
    /// The channel it gets the text on (voice for fixed lines of an alert).
    pub channel: Channel,
    /// The carrier planned for it when it was taken in (its message may take another, if
    /// routing changed by then): the campaign sender takes recipients route by route.
    pub route: String,
    /// Its locale; empty for the campaign's default.
    pub locale: String,
    /// Its variables' values.
    pub values: Vec<String>,
    /// Where it is.
    pub state: RecipientState,
    /// Not sent before this, unix ms (its local window, the campaign's start).
    pub not_before_ms: i64,
    /// Why it was refused, or what held it.
    pub detail: String,
    /// Its message, once it has one.
    pub message_id: Option<String>,
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recipient")
            .field("campaign_id", &self.campaign_id)
            .field("line", &self.line)
            .field("to", &verify_carrier::mask_number(&self.to_e164))
            .field("region_code", &self.region_code)
            .field("channel", &self.channel)
            .field("state", &self.state)
            .field("not_before_ms", &self.not_before_ms)
            .finish_non_exhaustive()
    }
}

/// What the rules said about a recipient when it was taken in, or is about to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// It may go now (or at the campaign's start).
    Now,
    /// Not before `until_ms` (its local window).
    Defer {
        /// When its window opens, unix ms.
        until_ms: i64,
        /// The rule, in one sentence.
        reason: String,
    },
    /// Never: the reason names the rule.
    Refuse {
        /// Why.
        reason: String,
    },
}

impl Recipient {
    /// Its message is in the outbox: from now on its state is the message's.
    pub fn sent_as(&mut self, message_id: String) {
        self.state = RecipientState::Sent;
        self.message_id = Some(message_id);
    }

    /// Holds it until `until_ms` (its window), saying why.
    pub fn defer(&mut self, until_ms: i64, reason: String) {
        self.not_before_ms = until_ms;
        self.detail = reason;
    }

    /// Refuses it for good, saying why.
    pub fn refuse(&mut self, reason: String) {
        self.state = RecipientState::Refused;
        self.detail = reason;
    }

    /// Applies what the rules said when it was taken in.
    pub fn admit(&mut self, admission: Admission, start_ms: i64) {
        match admission {
            Admission::Now => {
                self.state = RecipientState::Pending;
                self.not_before_ms = start_ms;
            }
            Admission::Defer { until_ms, reason } => {
                self.state = RecipientState::Pending;
                self.not_before_ms = until_ms.max(start_ms);
                self.detail = reason;
            }
            Admission::Refuse { reason } => self.refuse(reason),
        }
    }
}

/// A campaign's recipients counted by where they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CampaignCounts {
    /// Accepted recipients.
    pub recipients: u64,
    /// Due, waiting for a route (or being handed over).
    pub queued: u64,
    /// Held until their window opens or the campaign starts.
    pub deferred: u64,
    /// Accepted by a carrier.
    pub sent: u64,
    /// Delivered.
    pub delivered: u64,
    /// Refused by carriers or undelivered.
    pub failed: u64,
    /// Refused by a rule; never sent.
    pub refused: u64,
    /// Handed over with no answer.
    pub maybe_sent: u64,
    /// Not sent: the campaign was canceled or expired.
    pub canceled: u64,
    /// Confirmed by the recipient.
    pub confirmed: u64,
}

/// How many recipients share one state, as the store counts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientTally {
    /// Their region.
    pub region_code: String,
    /// Their message's carrier; empty before they have a message.
    pub carrier: String,
    /// Their channel.
    pub channel: Channel,
    /// Their state.
    pub state: RecipientState,
    /// Pending ones: whether they wait for a later time than the count's.
    pub waiting: bool,
    /// Sent ones: their message's status.
    pub message_status: Option<DeliveryStatus>,
    /// Whether they confirmed.
    pub confirmed: bool,
    /// How many.
    pub count: u64,
}

impl CampaignCounts {
    /// Adds a tally of recipients of a campaign in `status`.
    pub fn add(&mut self, tally: &RecipientTally, status: CampaignStatus) {
        let n = tally.count;
        self.recipients += n;
        if tally.confirmed {
            self.confirmed += n;
        }
        let bucket = match tally.state {
            RecipientState::Refused => &mut self.refused,
            RecipientState::Pending if status.is_final() => &mut self.canceled,
            RecipientState::Pending
                if tally.waiting
                    || matches!(
                        status,
                        CampaignStatus::Scheduled | CampaignStatus::Ingesting
                    ) =>
            {
                &mut self.deferred
            }
            RecipientState::Pending => &mut self.queued,
            RecipientState::Sent => match tally.message_status {
                Some(DeliveryStatus::Scheduled) => &mut self.deferred,
                Some(
                    DeliveryStatus::Queued | DeliveryStatus::Claimed | DeliveryStatus::Sending,
                )
                | None => &mut self.queued,
                Some(DeliveryStatus::Submitted) => &mut self.sent,
                Some(DeliveryStatus::MaybeSent) => &mut self.maybe_sent,
                Some(DeliveryStatus::Delivered) => &mut self.delivered,
                Some(DeliveryStatus::Failed) => &mut self.failed,
                Some(DeliveryStatus::Canceled) => &mut self.canceled,
            },
        };
        *bucket += n;
    }

    /// Confirmed out of those that went to a carrier (0 with none).
    pub fn confirmation_rate(&self) -> f64 {
        let reached = self.sent + self.delivered + self.maybe_sent;
        if reached == 0 {
            0.0
        } else {
            self.confirmed as f64 / reached as f64
        }
    }

    /// Those not yet settled: queued or deferred.
    pub fn waiting(&self) -> u64 {
        self.queued + self.deferred
    }

    /// One line for people: `12 queued, 3 deferred, ...`, leaving out zeros.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = [
            ("queued", self.queued),
            ("deferred", self.deferred),
            ("sent", self.sent),
            ("delivered", self.delivered),
            ("failed", self.failed),
            ("refused", self.refused),
            ("maybe sent", self.maybe_sent),
            ("canceled", self.canceled),
            ("confirmed", self.confirmed),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{n} {name}"))
        .collect();
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// Counts by region, for a campaign event: `IN 100 deferred; GB 80 queued, 20 refused`.
pub fn summary_by_region(counts: &BTreeMap<String, CampaignCounts>) -> String {
    counts
        .iter()
        .map(|(region, counts)| format!("{region} {}", counts.summary()))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> CampaignSpec {
        CampaignSpec {
            name: "alert".into(),
            category: Category::Alert,
            program_id: String::new(),
            template: String::new(),
            bodies: BTreeMap::from([
                ("en".to_string(), "Hi {name}, reset at {link}".to_string()),
                ("hi".to_string(), "नमस्ते {name}: {link}".to_string()),
            ]),
            default_locale: "en".into(),
            variable_names: vec!["name".into(), "link".into()],
            sender: String::new(),
            senders_by_region: BTreeMap::new(),
            start_at_ms: None,
            deadline_ms: None,
            landline_action: LandlineAction::Voice,
            tracks_confirmation: true,
        }
    }

    #[test]
    fn texts_are_filled_per_locale_with_fallbacks() {
        let spec = spec();
        let values = vec!["Asha".to_string(), "https://x.example/r".to_string()];
        assert_eq!(
            spec.text_for("hi-IN", &values),
            "नमस्ते Asha: https://x.example/r"
        );
        assert_eq!(
            spec.text_for("fr", &values),
            "Hi Asha, reset at https://x.example/r"
        );
        assert_eq!(
            spec.text_for("", &values),
            "Hi Asha, reset at https://x.example/r"
        );
        let mut braces = spec.clone();
        braces
            .bodies
            .insert("en".into(), "a {b c} {name} {".to_string());
        assert_eq!(braces.text_for("en", &values), "a {b c} Asha {");
    }

    #[test]
    fn a_placeholder_must_name_a_variable() {
        let mut spec = spec();
        spec.bodies.insert("en".into(), "Hi {nmae}".into());
        let error = spec.validate(0).unwrap_err();
        assert_eq!(error.field, "campaign.bodies");
        assert!(
            error.reason.contains("`{nmae}` names no variable"),
            "{error}"
        );
        let mut spec = self::spec();
        spec.default_locale = "fr".into();
        assert_eq!(
            spec.validate(0).unwrap_err().field,
            "campaign.default_locale"
        );
        let mut spec = self::spec();
        spec.category = Category::Otp;
        assert_eq!(spec.validate(0).unwrap_err().field, "campaign.category");
    }

    #[test]
    fn lines_are_checked_against_the_variables() {
        let spec = spec();
        let rejected = spec.check_recipient("en", &["only".into()]).unwrap_err();
        assert_eq!(rejected.field, "values");
        assert!(rejected.reason.contains("1 values for 2 variables"));
        let long = "x".repeat(MAX_VALUE_CHARS + 1);
        assert!(spec.check_recipient("en", &["a".into(), long]).is_err());
        assert_eq!(
            spec.check_recipient("e n", &["a".into(), "b".into()])
                .unwrap_err()
                .field,
            "locale"
        );
        assert!(
            spec.check_recipient("es-MX", &["a".into(), "b".into()])
                .is_ok()
        );
    }

    #[test]
    fn message_ids_name_the_recipient_once() {
        let id = message_id_of("cmp_01ABC", 42);
        assert_eq!(id, "msg_01ABC_42");
        assert_eq!(line_of_message("cmp_01ABC", &id), Some(42));
        assert_eq!(line_of_message("cmp_01ABD", &id), None);
        assert_eq!(line_of_message("cmp_01AB", &id), None);
    }

    #[test]
    fn a_campaign_pauses_resumes_and_ends_once() {
        let mut campaign = Campaign::new("cmp_1".into(), "default".into(), spec(), None, 0);
        assert!(campaign.cancel(1).is_err(), "still taking recipients");
        campaign.ingested(10, 1, "GB 10 queued", 1);
        assert_eq!(campaign.status, CampaignStatus::Running);
        assert!(campaign.sends_at(2));
        assert!(campaign.pause(2).unwrap().is_some());
        assert!(campaign.pause(3).unwrap().is_none());
        assert!(!campaign.sends_at(3));
        assert!(campaign.resume(4).unwrap().is_some());
        assert!(
            campaign.finish(true, "", 5).is_none(),
            "recipients still wait"
        );
        assert!(campaign.finish(false, "done", 5).is_some());
        assert_eq!(campaign.status, CampaignStatus::Completed);
        assert!(campaign.cancel(6).unwrap().is_none());
        let refusal = campaign.resume(6).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "campaign_id: campaign cmp_1 is completed: it cannot be resumed"
        );
    }

    #[test]
    fn a_deadline_expires_those_still_waiting() {
        let mut spec = spec();
        spec.start_at_ms = Some(100);
        spec.deadline_ms = Some(200);
        let mut campaign = Campaign::new("cmp_1".into(), "default".into(), spec, None, 0);
        campaign.ingested(5, 0, "", 10);
        assert_eq!(campaign.status, CampaignStatus::Scheduled);
        assert!(campaign.start_if_due(50).is_none());
        assert!(campaign.start_if_due(100).is_some());
        assert!(!campaign.sends_at(200));
        campaign.finish(true, "IN 5 deferred", 200).unwrap();
        assert_eq!(campaign.status, CampaignStatus::Expired);
    }

    #[test]
    fn counts_follow_recipients_and_their_messages() {
        let tally = |state, waiting, message_status, count| RecipientTally {
            region_code: "IN".into(),
            carrier: String::new(),
            channel: Channel::Sms,
            state,
            waiting,
            message_status,
            confirmed: false,
            count,
        };
        let mut counts = CampaignCounts::default();
        for t in [
            tally(RecipientState::Pending, true, None, 5),
            tally(RecipientState::Pending, false, None, 2),
            tally(RecipientState::Refused, false, None, 1),
            tally(
                RecipientState::Sent,
                false,
                Some(DeliveryStatus::Delivered),
                7,
            ),
        ] {
            counts.add(&t, CampaignStatus::Running);
        }
        assert_eq!(
            (
                counts.recipients,
                counts.deferred,
                counts.queued,
                counts.refused,
                counts.delivered
            ),
            (15, 5, 2, 1, 7)
        );
        let mut ended = CampaignCounts::default();
        ended.add(
            &tally(RecipientState::Pending, true, None, 5),
            CampaignStatus::Canceled,
        );
        assert_eq!(ended.canceled, 5);
        assert_eq!(
            counts.summary(),
            "2 queued, 5 deferred, 7 delivered, 1 refused"
        );
    }
}
