//! Status webhooks: every event of a service with a webhook goes to its URL as JSON, signed
//! per Standard Webhooks. Each service's webhook follows the event log from a cursor kept in
//! the database, held by one server at a time (a lease, so replicas share the work and a dead
//! one's is taken over): a subject's events go one after the other, different subjects side by
//! side. An event whose delivery fails waits in the database and is tried again on the retry
//! schedule (more than a day by default), the later events of its subject waiting behind it, so
//! a receiver sees each verification's events in order. Delivery is at least once: a server
//! that stops between sending and recording sends again, with the same `webhook-id`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::now_ms;
use crate::domain::webhook::{RetrySchedule, event_type};
use crate::domain::{RecordedEvent, Service};
use crate::services::ServiceDirectory;
use crate::store::{SqlStore, StoreError, WebhookRetry};

/// Events read per pass of a webhook.
const BATCH: u32 = 200;
/// Subjects delivered to at once per webhook.
const SUBJECTS_AT_ONCE: usize = 16;
/// How often a webhook looks for events without being woken, and for due retries.
const ROUND_EVERY: Duration = Duration::from_millis(500);
/// How long a server holds a webhook without renewing: it renews every third of that while a
/// round runs, and at the start of each round.
const LEASE: Duration = Duration::from_secs(30);
/// Deliveries given up are shown this long.
const KEEP_FAILED: Duration = Duration::from_secs(7 * 24 * 3600);

/// `[webhooks]`: how status webhooks are sent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Time a receiver gets to answer, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Waits between a failed delivery and its next try, in milliseconds, in turn; after the
    /// last, the delivery is given up. Unset: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_delays_ms: Option<Vec<u64>>,
    /// PEM file of CA certificates receivers' certificates may also chain to (a private CA);
    /// the system's are trusted either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
}

fn default_timeout_ms() -> u64 {
    10_000
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            timeout_ms: default_timeout_ms(),
            retry_delays_ms: None,
            ca: None,
        }
    }
}

impl WebhookSettings {
    /// The retry schedule.
    pub fn schedule(&self) -> RetrySchedule {
        match &self.retry_delays_ms {
            Some(delays) => {
                RetrySchedule(delays.iter().map(|ms| Duration::from_millis(*ms)).collect())
            }
            None => RetrySchedule::default(),
        }
    }

    /// Checks the values, naming the key that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(100..=120_000).contains(&self.timeout_ms) {
            return Err(format!(
                "webhooks.timeout_ms must be between 100 and 120000, got {}",
                self.timeout_ms
            ));
        }
        if let Some(delays) = &self.retry_delays_ms
            && (delays.len() > 50 || delays.iter().any(|ms| *ms == 0 || *ms > 7 * 86_400_000))
        {
            return Err(
                "webhooks.retry_delays_ms: at most 50 delays, each from 1 ms to 7 days".into(),
            );
        }
        if let Some(ca) = &self.ca {
            let pem =
                std::fs::read(ca).map_err(|e| format!("webhooks.ca {}: {e}", ca.display()))?;
            reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("webhooks.ca {}: {e}", ca.display()))?;
        }
        Ok(())
    }

    fn client(&self) -> Result<reqwest::Client, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let timeout = Duration::from_millis(self.timeout_ms);
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout((timeout / 2).min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("verifyd-webhooks/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &self.ca {
            let pem = std::fs::read(ca).map_err(|e| format!("webhooks.ca: {e}"))?;
            for certificate in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("webhooks.ca: {e}"))?
            {
                builder = builder.add_root_certificate(certificate);
            }
        }
        builder.build().map_err(|e| format!("webhooks: {e}"))
    }
}

/// Sends every service's events to its webhook.
pub struct WebhookSender {
    store: Arc<SqlStore>,
    services: Arc<ServiceDirectory>,
    client: reqwest::Client,
    schedule: RetrySchedule,
    /// This server, as the holder of the webhooks it sends.
    holder: String,
}

/// The host of a URL, for logs (a URL may carry a token in its path or query).
fn host_of(url: &str) -> &str {
    url.split("://")
        .nth(1)
        .and_then(|rest| rest.split(['/', '?', '#']).next())
        .unwrap_or("?")
}

/// What went wrong with a request, in words, without its URL.
fn failure_text(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "no answer in time"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let error = error.without_url();
    let mut text = format!("{kind}: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl WebhookSender {
    /// A sender over the store and the services.
    pub fn new(
        store: Arc<SqlStore>,
        services: Arc<ServiceDirectory>,
        settings: &WebhookSettings,
    ) -> Result<Arc<WebhookSender>, String> {
        Ok(Arc::new(WebhookSender {
            store,
            services,
            client: settings.client()?,
            schedule: settings.schedule(),
            holder: format!("webhooks-{}", uuid::Uuid::now_v7().simple()),
        }))
    }

    /// Sets up the webhooks of services that have one and none yet, at the latest event, before
    /// requests are served: none of their events is then missed, however soon they come.
    pub async fn prepare(&self) -> Result<(), StoreError> {
        let latest = self.store.latest_event_cursor().await?;
        let mut tx = self.store.begin_background().await?;
        for service in self.services.all() {
            if !service.webhook_url.is_empty() {
                tx.start_webhook(&service.id, &service.webhook_url, latest)
                    .await?;
            }
        }
        tx.commit().await
    }

    /// Runs a webhook for each service that has one (started and stopped as services
    /// change) until `shutdown` turns true.
    pub fn start(self: &Arc<Self>, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        let sender = Arc::clone(self);
        tokio::spawn(async move {
            let mut shutdown = shutdown;
            // A start may follow a fix (the URL, the CA): what waits is tried again at once.
            let now_due = async {
                let mut tx = sender.store.begin_background().await?;
                let due = tx.retry_webhooks_now(now_ms()).await?;
                tx.commit().await?;
                Ok::<_, StoreError>(due)
            };
            match now_due.await {
                Ok(0) => {}
                Ok(due) => tracing::info!(
                    due,
                    "webhook deliveries waiting to be retried are tried again now"
                ),
                Err(error) => tracing::warn!(%error, "could not bring the webhook retries forward"),
            }
            let mut running: HashMap<String, JoinHandle<()>> = HashMap::new();
            loop {
                running.retain(|_, task| !task.is_finished());
                for service in sender.services.all() {
                    if service.webhook_url.is_empty() || running.contains_key(&service.id) {
                        continue;
                    }
                    let task = tokio::spawn(
                        Arc::clone(&sender).follow(service.id.clone(), shutdown.clone()),
                    );
                    running.insert(service.id.clone(), task);
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.wait_for(|stopping| *stopping) => break,
                }
            }
            for (_, task) in running {
                let _ = task.await;
            }
        })
    }

    /// One service's webhook, round after round, while the service has one.
    async fn follow(self: Arc<Self>, service_id: String, mut shutdown: watch::Receiver<bool>) {
        let mut events = self.store.event_signal();
        loop {
            let Some(service) = self
                .services
                .get(&service_id)
                .filter(|s| !s.webhook_url.is_empty())
            else {
                // The webhook was turned off: turned on again, it starts afresh.
                let turned_off = async {
                    let mut tx = self.store.begin_background().await?;
                    tx.turn_off_webhook(&service_id).await?;
                    tx.commit().await
                };
                if let Err(error) = turned_off.await {
                    tracing::warn!(service = %service_id, %error, "recording a webhook turned off failed");
                }
                return;
            };
            events.borrow_and_update();
            if let Err(error) = self.round(&service).await {
                tracing::warn!(service = %service_id, %error, "webhook round failed; trying again");
            }
            let stopping = tokio::select! {
                _ = events.changed() => false,
                _ = tokio::time::sleep(ROUND_EVERY) => false,
                _ = shutdown.wait_for(|stopping| *stopping) => true,
            };
            if stopping {
                self.release(&service_id).await;
                return;
            }
        }
    }

    /// Gives the webhook up at shutdown, so the next server to start takes it at once.
    async fn release(&self, service_id: &str) {
        let released = async {
            let mut tx = self.store.begin_background().await?;
            tx.release_webhook(service_id, &self.holder).await?;
            tx.commit().await
        };
        if let Err(error) = released.await {
            tracing::debug!(service = %service_id, %error, "releasing the webhook failed; its lease runs out");
        }
    }

    /// Sends the new events and the due retries, if this server holds the webhook.
    async fn round(&self, service: &Service) -> Result<(), StoreError> {
        let Some(mut cursor) = self.claim(service).await? else {
            return Ok(()); // Another server sends this webhook.
        };
        // The lease is renewed while the round runs (a slow receiver can hold a round up for
        // longer than the lease); should it be lost, nothing more of this round is recorded.
        let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let keeper = self.keep_lease(service, Arc::clone(&lost));
        let held = || !lost.load(std::sync::atomic::Ordering::SeqCst);
        let result = async {
            while held() {
                let events = self
                    .store
                    .events_after(cursor, None, Some(&service.id), BATCH)
                    .await?;
                let Some(last) = events.last().map(|e| e.cursor) else {
                    break;
                };
                let full = events.len() == BATCH as usize;
                let failed = self.send_new(service, events).await?;
                let mut tx = self.store.begin_background().await?;
                if !held() || !tx.advance_webhook(&service.id, &self.holder, last).await? {
                    // Another server took the webhook over: it sends from the cursor.
                    tx.rollback().await?;
                    return Ok(());
                }
                tx.insert_webhook_retries(&failed, now_ms()).await?;
                tx.commit().await?;
                cursor = last;
                if !full {
                    break;
                }
            }
            if held() {
                self.send_due_retries(service, &held).await?;
            }
            Ok(())
        }
        .await;
        keeper.abort();
        result
    }

    /// Takes or renews the lease on a service's webhook; its cursor, or `None` when another
    /// server holds it.
    async fn claim(&self, service: &Service) -> Result<Option<i64>, StoreError> {
        let now = now_ms();
        let start = self.store.latest_event_cursor().await?;
        let mut tx = self.store.begin_background().await?;
        let claimed = tx
            .claim_webhook(
                &service.id,
                &service.webhook_url,
                &self.holder,
                now,
                now + LEASE.as_millis() as i64,
                Some(start),
            )
            .await?;
        tx.commit().await?;
        Ok(claimed)
    }

    /// Renews the lease every third of it until aborted; sets `lost` when it cannot.
    fn keep_lease(
        &self,
        service: &Service,
        lost: Arc<std::sync::atomic::AtomicBool>,
    ) -> JoinHandle<()> {
        let (store, holder, service_id, url) = (
            Arc::clone(&self.store),
            self.holder.clone(),
            service.id.clone(),
            service.webhook_url.clone(),
        );
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE / 3).await;
                let now = now_ms();
                let renewed = async {
                    let mut tx = store.begin_background().await?;
                    let claimed = tx
                        .claim_webhook(
                            &service_id,
                            &url,
                            &holder,
                            now,
                            now + LEASE.as_millis() as i64,
                            None,
                        )
                        .await?;
                    tx.commit().await?;
                    Ok::<_, StoreError>(claimed.is_some())
                }
                .await;
                if !matches!(renewed, Ok(true)) {
                    lost.store(true, std::sync::atomic::Ordering::SeqCst);
                    return;
                }
            }
        })
    }

    /// Sends events not sent before: each subject's in order, subjects side by side. Returns
    /// what failed (and what waits behind it) to keep for retries.
    async fn send_new(
        &self,
        service: &Service,
        events: Vec<RecordedEvent>,
    ) -> Result<Vec<WebhookRetry>, StoreError> {
        let blocked = self.store.webhook_blocked_subjects(&service.id).await?;
        let mut by_subject: Vec<(String, Vec<RecordedEvent>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for event in events {
            let subject = event.event.subject.id().to_string();
            let at = *index.entry(subject.clone()).or_insert_with(|| {
                by_subject.push((subject, Vec::new()));
                by_subject.len() - 1
            });
            by_subject[at].1.push(event);
        }
        let outcomes: Vec<Vec<WebhookRetry>> = futures::stream::iter(by_subject)
            .map(|(subject, events)| {
                let waiting = blocked.contains(&subject);
                self.send_subject(service, subject, events, waiting)
            })
            .buffer_unordered(SUBJECTS_AT_ONCE)
            .collect()
            .await;
        Ok(outcomes.into_iter().flatten().collect())
    }

    /// One subject's events in order; from the first failure on (or from the start when an
    /// earlier event of the subject is being retried) they are kept to try again.
    async fn send_subject(
        &self,
        service: &Service,
        subject: String,
        events: Vec<RecordedEvent>,
        mut waiting: bool,
    ) -> Vec<WebhookRetry> {
        let mut kept = Vec::new();
        for event in events {
            let Some(kind) = event_type(event.event.kind, &event.event.subject) else {
                continue;
            };
            let now = now_ms();
            let mut retry = WebhookRetry {
                service_id: service.id.clone(),
                cursor: event.cursor,
                subject_id: subject.clone(),
                event_type: kind,
                failed: false,
                attempts: 0,
                next_attempt_at_ms: now,
                first_failed_at_ms: now,
                last_error: "waiting behind an earlier event of the same subject".into(),
            };
            if !waiting {
                match self.send(service, &event).await {
                    Ok(()) => continue,
                    Err(error) => {
                        waiting = true;
                        self.failed_again(&mut retry, error, now);
                    }
                }
            }
            kept.push(retry);
        }
        kept
    }

    /// Records a failed attempt: when to try next, or that it is given up.
    fn failed_again(&self, retry: &mut WebhookRetry, error: String, now: i64) {
        retry.attempts += 1;
        retry.last_error = error;
        match self.schedule.after_failure(retry.attempts) {
            Some(delay) => retry.next_attempt_at_ms = now + delay.as_millis() as i64,
            None => retry.failed = true,
        }
        tracing::info!(
            service = %retry.service_id,
            webhook_id = %format!("evt_{}", retry.cursor),
            attempts = retry.attempts,
            given_up = retry.failed,
            error = %retry.last_error,
            "webhook delivery failed"
        );
    }

    /// Tries the due retries again, the earliest of each subject, until none is due (or the
    /// lease is lost: `held` says).
    async fn send_due_retries(
        &self,
        service: &Service,
        held: &impl Fn() -> bool,
    ) -> Result<(), StoreError> {
        while held() {
            let now = now_ms();
            let due = self
                .store
                .due_webhook_retries(&service.id, now, SUBJECTS_AT_ONCE as u32 * 4)
                .await?;
            if due.is_empty() {
                break;
            }
            let tried: Vec<(WebhookRetry, bool)> = futures::stream::iter(due)
                .map(|mut retry| async move {
                    let sent = match self.store.event_at(retry.cursor).await {
                        Ok(Some(event)) => self.send(service, &event).await,
                        // The event is gone from the log: nothing to send.
                        Ok(None) => Ok(()),
                        Err(error) => Err(format!("reading the event: {error}")),
                    };
                    match sent {
                        Ok(()) => (retry, true),
                        Err(error) => {
                            self.failed_again(&mut retry, error, now_ms());
                            (retry, false)
                        }
                    }
                })
                .buffer_unordered(SUBJECTS_AT_ONCE)
                .collect()
                .await;
            let mut tx = self.store.begin_background().await?;
            if !held() {
                tx.rollback().await?;
                break;
            }
            for (retry, delivered) in &tried {
                tx.save_webhook_retry(retry, *delivered, now_ms()).await?;
            }
            tx.forget_webhook_failures_before(now - KEEP_FAILED.as_millis() as i64)
                .await?;
            tx.commit().await?;
            if !tried.iter().any(|(_, delivered)| *delivered) {
                break;
            }
        }
        Ok(())
    }

    /// One request: the event as JSON, signed; `Err` says why it did not succeed (any
    /// answer but 2xx, no answer in time, no connection).
    async fn send(&self, service: &Service, event: &RecordedEvent) -> Result<(), String> {
        let kind = event_type(event.event.kind, &event.event.subject)
            .ok_or_else(|| "not a service's event".to_string())?;
        let data = serde_json::to_value(crate::convert::event(event))
            .map_err(|e| format!("encoding the event: {e}"))?;
        let timestamp = chrono::DateTime::from_timestamp_millis(event.event.at_ms)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let body = serde_json::to_vec(&serde_json::json!({
            "type": kind,
            "timestamp": timestamp,
            "data": data,
        }))
        .map_err(|e| format!("encoding the event: {e}"))?;
        let id = format!("evt_{}", event.cursor);
        let sent_at = now_ms().div_euclid(1000);
        let signature = service.webhook_secret.sign(&id, sent_at, &body)?;
        let answer = self
            .client
            .post(&service.webhook_url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", sent_at.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(failure_text)?;
        let status = answer.status();
        if status.is_success() {
            tracing::debug!(service = %service.id, webhook_id = %id, host = host_of(&service.webhook_url), "webhook delivered");
            Ok(())
        } else {
            Err(format!("HTTP {status}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_and_give_the_schedule() {
        let settings = WebhookSettings::default();
        settings.validate().unwrap();
        assert_eq!(settings.schedule(), RetrySchedule::default());
        let short = WebhookSettings {
            retry_delays_ms: Some(vec![100, 200]),
            ..WebhookSettings::default()
        };
        assert_eq!(
            short.schedule().after_failure(2),
            Some(Duration::from_millis(200))
        );
        let bad = WebhookSettings {
            timeout_ms: 5,
            ..WebhookSettings::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .starts_with("webhooks.timeout_ms")
        );
        assert_eq!(
            host_of("https://hooks.example.com/x?token=secret"),
            "hooks.example.com"
        );
    }
}
