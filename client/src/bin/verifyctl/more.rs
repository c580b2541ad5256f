//! The commands for notifications, lists and services: `notify`, `get-notification`,
//! `cancel-notification`, `list`, `notifications` and `services ...`, each printing text or,
//! with `--json`, the response as one JSON line.

use std::io::Write;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand, ValueEnum};
use verify_client::proto::Timestamp;
use verify_client::proto::v1::{
    CancelNotificationResponse, Channel, GetNotificationResponse, GetServiceResponse,
    ListNotificationsRequest, ListServicesResponse, ListVerificationsRequest,
    ListWebhookDeliveriesRequest, MessageCategory, MessageTemplate, Notification,
    NotificationStatus, NotifyResponse, PolicyAction, Service, VerificationStatus,
    WebhookDeliveryStatus,
};
use verify_client::{NotifyOptions, VerifyClient};

use crate::{Failure, aligned, or_dash, time_text, verification_summary, words, write_json_line};

/// What a notification is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CategoryArg {
    /// A one-time code your own system made.
    Otp,
    /// A receipt, a booking, a delivery: what the person's own action triggered.
    Transactional,
    /// An alert the person must not miss.
    Alert,
    /// A promotion (quiet hours and consent rules apply).
    Marketing,
}

impl From<CategoryArg> for MessageCategory {
    fn from(category: CategoryArg) -> Self {
        match category {
            CategoryArg::Otp => MessageCategory::Otp,
            CategoryArg::Transactional => MessageCategory::Transactional,
            CategoryArg::Alert => MessageCategory::Alert,
            CategoryArg::Marketing => MessageCategory::Marketing,
        }
    }
}

/// Arguments of `notify`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct NotifyArgs {
    /// The recipient, in E.164 (or national form with --region).
    #[arg(value_name = "NUMBER")]
    pub number: String,
    /// What the message is for; country rules differ by category.
    #[arg(long, value_enum)]
    pub category: CategoryArg,
    /// The text, at most 1,600 characters.
    #[arg(long, value_name = "TEXT")]
    pub body: String,
    /// Region of a NUMBER in national form (ISO 3166-1 alpha-2).
    #[arg(long, value_name = "XX")]
    pub region: Option<String>,
    /// The configured program sending it (its registrations are checked and sent).
    #[arg(long, value_name = "ID")]
    pub program: Option<String>,
    /// The registered template the body follows, by the program's name for it.
    #[arg(long, value_name = "NAME")]
    pub template: Option<String>,
    /// The sender to show; the carrier's own when unset.
    #[arg(long, value_name = "SENDER")]
    pub sender: Option<String>,
    /// Makes retries safe: a repeated call with the same key stores nothing new.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// The service sending it; the API key's own when unset.
    #[arg(long, value_name = "ID")]
    pub service: Option<String>,
}

/// Arguments of `list` and `notifications`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct ListArgs {
    /// Only this service's (an admin key lists every service's by default).
    #[arg(long, value_name = "ID")]
    pub service: Option<String>,
    /// Only this status (repeat for several), e.g. pending, approved, scheduled, delivered.
    #[arg(long = "status", value_name = "STATUS")]
    pub statuses: Vec<String>,
    /// Only numbers of this country (ISO 3166-1 alpha-2).
    #[arg(long, value_name = "XX")]
    pub country: Option<String>,
    /// Only this number (E.164).
    #[arg(long, value_name = "NUMBER")]
    pub to: Option<String>,
    /// Only those created at or after this time (RFC 3339, e.g. 2026-12-01T00:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Only those created before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,
    /// At most this many (the server's default is 50, its most 500).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub limit: u32,
    /// The page after the one that printed this token.
    #[arg(long, value_name = "TOKEN")]
    pub page_token: Option<String>,
}

pub(crate) fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|e| format!("`{text}` is not an RFC 3339 time such as 2026-12-01T00:00:00Z ({e})"))
}

fn timestamp(time: Option<DateTime<Utc>>) -> Option<Timestamp> {
    time.map(|time| Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    })
}

/// The value of an enum's name with `prefix` (`pending` → `VERIFICATION_STATUS_PENDING`);
/// the error names the values there are.
fn enum_value(
    text: &str,
    prefix: &str,
    parse: fn(&str) -> Option<i32>,
    known: &[&str],
) -> Result<i32, Failure> {
    let name = format!(
        "{prefix}{}",
        text.trim().to_uppercase().replace(['-', ' '], "_")
    );
    parse(&name).ok_or_else(|| {
        Failure::Message(format!("--status {text}: not one of {}", known.join(", ")))
    })
}

impl ListArgs {
    /// The `--status` values as the enum's values, read with `prefix` and `parse`; the error
    /// names the `known` ones.
    fn statuses_of(
        &self,
        prefix: &str,
        parse: fn(&str) -> Option<i32>,
        known: &[&str],
    ) -> Result<Vec<i32>, Failure> {
        self.statuses
            .iter()
            .map(|text| enum_value(text, prefix, parse, known))
            .collect()
    }
}

/// Arguments that describe a service, for `services create` and `services update`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct ServiceArgs {
    /// The service id: lower-case letters, digits, `-` and `_`.
    #[arg(value_name = "ID")]
    pub id: String,
    /// The name shown in messages ("Your Acme code is ...").
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Digits per code (4 to 10).
    #[arg(long, value_name = "N")]
    pub code_length: Option<u32>,
    /// How long a code is accepted, in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub lifetime: Option<u32>,
    /// Checks allowed per verification.
    #[arg(long, value_name = "N")]
    pub max_checks: Option<u32>,
    /// Sends allowed per verification.
    #[arg(long, value_name = "N")]
    pub max_sends: Option<u32>,
    /// Channels allowed, comma-separated (sms, voice); every channel when unset.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub channels: Option<Vec<String>>,
    /// Locale of messages when a request does not say.
    #[arg(long, value_name = "LOCALE")]
    pub locale: Option<String>,
    /// A template, as LOCALE:CHANNEL:TEXT (e.g. `en:sms:{code} is your {service} code`);
    /// repeat for several.
    #[arg(long = "template", value_name = "LOCALE:CHANNEL:TEXT")]
    pub templates: Option<Vec<String>>,
    /// Fallback workflow, e.g. `sms(30s) -> voice(60s)`.
    #[arg(long, value_name = "STEPS")]
    pub workflow: Option<String>,
    /// Default Android SMS Retriever app hash.
    #[arg(long, value_name = "HASH")]
    pub app_hash: Option<String>,
    /// Default host of the domain-bound code line.
    #[arg(long, value_name = "HOST")]
    pub domain: Option<String>,
    /// Status webhook URL (https); a signing secret is made when none is given.
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// The webhook's signing secret (`whsec_...`).
    #[arg(long, value_name = "SECRET")]
    pub webhook_secret: Option<String>,
    /// `strict` for the pumping guard at level strict for this service's requests (empty:
    /// the server's rules).
    #[arg(long, value_name = "LEVEL")]
    pub abuse_level: Option<String>,
}

fn channel_value(text: &str) -> Result<i32, Failure> {
    match text.trim().to_lowercase().as_str() {
        "sms" => Ok(Channel::Sms as i32),
        "voice" => Ok(Channel::Voice as i32),
        other => Err(Failure::Message(format!(
            "`{other}` is not a channel; use sms or voice"
        ))),
    }
}

impl ServiceArgs {
    /// The service these arguments describe, and the names of the fields they set.
    fn service(&self) -> Result<(Service, Vec<String>), Failure> {
        let mut fields = Vec::new();
        let mut set = |name: &str, given: bool| {
            if given {
                fields.push(name.to_string());
            }
        };
        set("friendly_name", self.name.is_some());
        set("code_length", self.code_length.is_some());
        set("code_lifetime_seconds", self.lifetime.is_some());
        set("max_checks", self.max_checks.is_some());
        set("max_sends", self.max_sends.is_some());
        set("channels", self.channels.is_some());
        set("default_locale", self.locale.is_some());
        set("templates", self.templates.is_some());
        set("workflow", self.workflow.is_some());
        set("app_hash", self.app_hash.is_some());
        set("domain", self.domain.is_some());
        set("webhook_url", self.webhook_url.is_some());
        set("webhook_secret", self.webhook_secret.is_some());
        set("abuse_level", self.abuse_level.is_some());
        let templates = self
            .templates
            .iter()
            .flatten()
            .map(|text| {
                let mut parts = text.splitn(3, ':');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(locale), Some(channel), Some(text)) => Ok(MessageTemplate {
                        locale: locale.to_string(),
                        channel: channel_value(channel)?,
                        text: text.to_string(),
                    }),
                    _ => Err(Failure::Message(format!(
                        "--template {text}: write LOCALE:CHANNEL:TEXT, e.g. en:sms:{{code}} is your {{service}} code"
                    ))),
                }
            })
            .collect::<Result<_, _>>()?;
        let service = Service {
            id: self.id.clone(),
            friendly_name: self.name.clone().unwrap_or_default(),
            code_length: self.code_length.unwrap_or(0),
            code_lifetime_seconds: self.lifetime.unwrap_or(0),
            max_checks: self.max_checks.unwrap_or(0),
            max_sends: self.max_sends.unwrap_or(0),
            channels: self
                .channels
                .iter()
                .flatten()
                .map(|c| channel_value(c))
                .collect::<Result<_, _>>()?,
            default_locale: self.locale.clone().unwrap_or_default(),
            templates,
            workflow: self.workflow.clone().unwrap_or_default(),
            app_hash: self.app_hash.clone().unwrap_or_default(),
            domain: self.domain.clone().unwrap_or_default(),
            webhook_url: self.webhook_url.clone().unwrap_or_default(),
            webhook_secret: self.webhook_secret.clone().unwrap_or_default(),
            abuse_level: self.abuse_level.clone().unwrap_or_default(),
            ..Service::default()
        };
        Ok((service, fields))
    }
}

/// `services ...`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ServicesCommand {
    /// List the services this key sees.
    List,
    /// Show one service.
    Get {
        /// The service id.
        id: String,
    },
    /// Create a service (admin keys only); unset values take the server's [codes].
    Create(ServiceArgs),
    /// Change the values given of a stored service (admin keys only).
    Update(ServiceArgs),
    /// Show a service's status webhook: how far its events went, and the deliveries that
    /// failed (retrying, waiting behind one, or given up).
    Webhook {
        /// The service id; the API key's own when unset.
        id: Option<String>,
    },
}

fn notification_status_words(value: i32) -> String {
    words(
        value,
        NotificationStatus::as_str_name,
        "NOTIFICATION_STATUS_",
    )
}

fn category_words(value: i32) -> String {
    words(value, MessageCategory::as_str_name, "MESSAGE_CATEGORY_")
}

/// One line about a notification: `notification nt_1 scheduled, alert to +91..., send at ...`.
pub fn notification_summary(notification: &Notification) -> String {
    format!(
        "notification {} {}, {} to {}, send at {}",
        notification.id,
        notification_status_words(notification.status),
        category_words(notification.category),
        notification.to,
        time_text(notification.send_at.as_ref())
    )
}

fn notification_text(notification: &Notification) -> String {
    aligned(&[
        ("notification", notification.id.clone()),
        ("service", notification.service_id.clone()),
        ("to", notification.to.clone()),
        ("category", category_words(notification.category)),
        ("status", notification_status_words(notification.status)),
        ("send at", time_text(notification.send_at.as_ref())),
        ("carrier", or_dash(&notification.carrier).to_string()),
        (
            "carrier id",
            or_dash(&notification.carrier_message_id).to_string(),
        ),
        ("program", or_dash(&notification.program_id).to_string()),
        ("decision", notification.decision.clone()),
        ("detail", or_dash(&notification.detail).to_string()),
        ("created", time_text(notification.created_at.as_ref())),
    ])
}

fn service_text(service: &Service) -> String {
    let channels = if service.channels.is_empty() {
        "every channel".to_string()
    } else {
        service
            .channels
            .iter()
            .map(|&c| crate::channel_words(c))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut rows = vec![
        ("service", service.id.clone()),
        ("name", or_dash(&service.friendly_name).to_string()),
        (
            "codes",
            format!(
                "{} digits, valid {}s, {} checks, {} sends",
                service.code_length,
                service.code_lifetime_seconds,
                service.max_checks,
                service.max_sends
            ),
        ),
        ("channels", channels),
        ("locale", service.default_locale.clone()),
        ("workflow", or_dash(&service.workflow).to_string()),
        ("app hash", or_dash(&service.app_hash).to_string()),
        ("domain", or_dash(&service.domain).to_string()),
        ("webhook", or_dash(&service.webhook_url).to_string()),
        (
            "webhook secret",
            or_dash(&service.webhook_secret).to_string(),
        ),
        (
            "abuse defense",
            match service.abuse_level.as_str() {
                "" => "the server's".to_string(),
                level => level.to_string(),
            },
        ),
        (
            "source",
            if service.configured {
                "configuration file".to_string()
            } else {
                format!("stored, changed {}", time_text(service.updated_at.as_ref()))
            },
        ),
    ];
    for template in &service.templates {
        rows.push((
            "template",
            format!(
                "{} {}: {}",
                template.locale,
                crate::channel_words(template.channel),
                template.text
            ),
        ));
    }
    aligned(&rows)
}

/// `notify`.
pub async fn notify(
    client: &VerifyClient,
    args: NotifyArgs,
    json: bool,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let options = NotifyOptions {
        region_hint: args.region,
        program_id: args.program,
        template: args.template,
        sender: args.sender,
        idempotency_key: args.idempotency_key,
        service_id: args.service,
        ..NotifyOptions::new(args.number, args.category.into(), args.body)
    };
    let response: NotifyResponse = client.notify(options).await?;
    if json {
        return write_json_line(out, &response);
    }
    let notification = response.notification.unwrap_or_default();
    let decision = response.decision.unwrap_or_default();
    let verdict = match PolicyAction::try_from(decision.action) {
        Ok(PolicyAction::Defer) => format!(
            "held by {} until {}",
            decision.rule_id,
            time_text(decision.send_at.as_ref())
        ),
        _ => format!("sending now via {}", or_dash(&decision.carrier)),
    };
    let replayed = if response.replayed {
        " (same idempotency key: nothing new stored)"
    } else {
        ""
    };
    writeln!(
        out,
        "notification {} to {}: {verdict}{replayed}\n  {}",
        notification.id, notification.to, decision.explanation
    )?;
    Ok(())
}

/// `get-notification`.
pub async fn get_notification(
    client: &VerifyClient,
    id: &str,
    json: bool,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let notification = client.get_notification(id).await?;
    if json {
        return write_json_line(
            out,
            &GetNotificationResponse {
                notification: Some(notification),
            },
        );
    }
    write!(out, "{}", notification_text(&notification))?;
    Ok(())
}

/// `cancel-notification`.
pub async fn cancel_notification(
    client: &VerifyClient,
    id: &str,
    json: bool,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let notification = client.cancel_notification(id).await?;
    if json {
        return write_json_line(
            out,
            &CancelNotificationResponse {
                notification: Some(notification),
            },
        );
    }
    writeln!(out, "{}", notification_summary(&notification))?;
    Ok(())
}

/// The line that tells how to get the next page.
fn next_page_line(out: &mut impl Write, token: &str) -> Result<(), Failure> {
    if !token.is_empty() {
        writeln!(out, "more: --page-token {token}")?;
    }
    Ok(())
}

/// `list`: verifications.
pub async fn list_verifications(
    client: &VerifyClient,
    args: ListArgs,
    json: bool,
    now: DateTime<Utc>,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let statuses = args.statuses_of(
        "VERIFICATION_STATUS_",
        |name| VerificationStatus::from_str_name(name).map(|s| s as i32),
        &[
            "pending",
            "approved",
            "canceled",
            "expired",
            "max-attempts-reached",
        ],
    )?;
    let request = ListVerificationsRequest {
        service_id: args.service.unwrap_or_default(),
        statuses,
        region_code: args.country.unwrap_or_default(),
        to: args.to.unwrap_or_default(),
        created_after: timestamp(args.since),
        created_before: timestamp(args.until),
        page_size: args.limit,
        page_token: args.page_token.unwrap_or_default(),
    };
    let response = client.list_verifications(request).await?;
    if json {
        return write_json_line(out, &response);
    }
    if response.verifications.is_empty() {
        writeln!(out, "no verifications")?;
    }
    for verification in &response.verifications {
        writeln!(
            out,
            "{} [{}]",
            verification_summary(verification, now),
            verification.service_id
        )?;
    }
    next_page_line(out, &response.next_page_token)
}

/// `notifications`: a list of notifications.
pub async fn list_notifications(
    client: &VerifyClient,
    args: ListArgs,
    json: bool,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let statuses = args.statuses_of(
        "NOTIFICATION_STATUS_",
        |name| NotificationStatus::from_str_name(name).map(|s| s as i32),
        &[
            "scheduled",
            "queued",
            "submitted",
            "delivered",
            "failed",
            "maybe-sent",
            "canceled",
        ],
    )?;
    let request = ListNotificationsRequest {
        service_id: args.service.unwrap_or_default(),
        statuses,
        region_code: args.country.unwrap_or_default(),
        to: args.to.unwrap_or_default(),
        created_after: timestamp(args.since),
        created_before: timestamp(args.until),
        page_size: args.limit,
        page_token: args.page_token.unwrap_or_default(),
    };
    let response = client.list_notifications(request).await?;
    if json {
        return write_json_line(out, &response);
    }
    if response.notifications.is_empty() {
        writeln!(out, "no notifications")?;
    }
    for notification in &response.notifications {
        writeln!(
            out,
            "{} [{}]",
            notification_summary(notification),
            notification.service_id
        )?;
    }
    next_page_line(out, &response.next_page_token)
}

/// `services ...`.
pub async fn services(
    client: &VerifyClient,
    command: ServicesCommand,
    json: bool,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let service = match command {
        ServicesCommand::List => {
            let services = client.list_services().await?;
            if json {
                return write_json_line(out, &ListServicesResponse { services });
            }
            for service in &services {
                let name = or_dash(&service.friendly_name);
                let source = if service.configured {
                    "configured"
                } else {
                    "stored"
                };
                writeln!(out, "{}  {name}  ({source})", service.id)?;
            }
            return Ok(());
        }
        ServicesCommand::Get { id } => client.get_service(&id).await?,
        ServicesCommand::Webhook { id } => {
            let state = client
                .raw()
                .list_webhook_deliveries(ListWebhookDeliveriesRequest {
                    service_id: id.unwrap_or_default(),
                    limit: 0,
                })
                .await
                .map_err(verify_client::ClientError::from)?
                .into_inner();
            if json {
                return write_json_line(out, &state);
            }
            writeln!(
                out,
                "webhook {}: events through {} sent or waiting here, {} not delivered yet",
                or_dash(&state.webhook_url),
                state.delivered_through_cursor,
                state.deliveries.len()
            )?;
            for delivery in &state.deliveries {
                writeln!(
                    out,
                    "  {} {} {} {}, {} attempt{}, next {}: {}",
                    delivery.webhook_id,
                    delivery.event_type,
                    delivery.subject_id,
                    words(
                        delivery.status,
                        WebhookDeliveryStatus::as_str_name,
                        "WEBHOOK_DELIVERY_STATUS_"
                    ),
                    delivery.attempts,
                    if delivery.attempts == 1 { "" } else { "s" },
                    time_text(delivery.next_attempt_at.as_ref()),
                    delivery.last_error
                )?;
            }
            return Ok(());
        }
        ServicesCommand::Create(args) => client.create_service(args.service()?.0).await?,
        ServicesCommand::Update(args) => {
            let (service, fields) = args.service()?;
            if fields.is_empty() {
                return Err(Failure::Message(
                    "services update: give at least one value to change (--name, --template ...)"
                        .into(),
                ));
            }
            client.update_service(service, fields).await?
        }
    };
    if json {
        return write_json_line(
            out,
            &GetServiceResponse {
                service: Some(service),
            },
        );
    }
    write!(out, "{}", service_text(&service))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_arguments_name_the_fields_they_set() {
        let args = ServiceArgs {
            id: "acme".into(),
            name: Some("Acme".into()),
            channels: Some(vec!["sms".into()]),
            templates: Some(vec!["en:sms:{code} is your {service} code".into()]),
            ..ServiceArgs::default()
        };
        let (service, fields) = args.service().ok().unwrap();
        assert_eq!(fields, ["friendly_name", "channels", "templates"]);
        assert_eq!(service.channels, [Channel::Sms as i32]);
        assert_eq!(service.templates[0].text, "{code} is your {service} code");
        let bad = ServiceArgs {
            id: "acme".into(),
            templates: Some(vec!["en-sms".into()]),
            ..ServiceArgs::default()
        };
        assert!(bad.service().is_err());
    }

    #[test]
    fn statuses_are_read_in_words() {
        let value = enum_value(
            "max-attempts-reached",
            "VERIFICATION_STATUS_",
            |name| VerificationStatus::from_str_name(name).map(|s| s as i32),
            &[],
        )
        .ok()
        .unwrap();
        assert_eq!(value, VerificationStatus::MaxAttemptsReached as i32);
    }
}
