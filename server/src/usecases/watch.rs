//! WatchEvents: the stored events after a cursor, then new ones as they are recorded (by this
//! process, or by any other one sharing the database).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;

use super::ended::EndedViews;
use super::{Caller, UseCaseError, UseCases, input};
use crate::domain::{RecordedEvent, Subject};
use crate::store::SqlStore;

/// Events read from the store per round of a watch.
const WATCH_BATCH: u32 = 500;
/// How often a watcher looks for events without being woken: the fallback when the wake-up
/// signal from other processes (PostgreSQL `LISTEN`) is down.
const WATCH_POLL: Duration = Duration::from_millis(1000);

/// A stream of events, or the error that ended it.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<RecordedEvent, UseCaseError>> + Send>>;

/// The subject ids a watch may name; empty ones are not set.
#[derive(Debug, Clone, Copy, Default)]
pub struct WatchedIds<'a> {
    /// A verification's.
    pub verification_id: &'a str,
    /// A notification's.
    pub notification_id: &'a str,
    /// A campaign's.
    pub campaign_id: &'a str,
}

/// Builds a subject from a stored id.
type SubjectOf = fn(String) -> Subject;

impl WatchedIds<'_> {
    /// The one subject named, if any; naming several is refused.
    fn subject(&self) -> Result<Option<Subject>, UseCaseError> {
        let named: Vec<(&'static str, &str, SubjectOf)> = [
            (
                "verification_id",
                self.verification_id,
                Subject::Verification as SubjectOf,
            ),
            (
                "notification_id",
                self.notification_id,
                Subject::Notification,
            ),
            ("campaign_id", self.campaign_id, Subject::Campaign),
        ]
        .into_iter()
        .filter(|(_, id, _)| !id.is_empty())
        .collect();
        match named.as_slice() {
            [] => Ok(None),
            [(field, id, subject)] => {
                input::validate_id(field, id)?;
                Ok(Some(subject(id.to_string())))
            }
            [.., (field, _, _)] => Err(UseCaseError::invalid(
                field,
                "set at most one of verification_id, notification_id and campaign_id",
            )),
        }
    }
}

impl UseCases {
    /// Events of one subject (or all) after `after_cursor`, then live. A subject that does not
    /// exist is NOT_FOUND.
    /// A service's key sees only its service's events (and a subject of another service is
    /// NOT_FOUND); an admin sees every event unless it names a service.
    pub async fn watch(
        &self,
        caller: &Caller,
        watched: WatchedIds<'_>,
        service_id: &str,
        after_cursor: u64,
    ) -> Result<EventStream, UseCaseError> {
        let service = caller.events_of(service_id)?;
        let subject = watched.subject()?;
        let visible = |owner: &str| {
            caller.sees(owner) && service.as_deref().is_none_or(|wanted| wanted == owner)
        };
        if let Some(subject) = &subject
            && !self
                .store
                .service_of(subject)
                .await?
                .is_some_and(|owner| visible(&owner))
        {
            let (resource, field) = match subject {
                Subject::Verification(_) => ("verification", "verification_id"),
                Subject::Notification(_) => ("notification", "notification_id"),
                Subject::Block(_) => ("block", "block_id"),
                Subject::Campaign(_) => ("campaign", "campaign_id"),
            };
            return Err(UseCaseError::NotFound {
                resource,
                field,
                value: subject.id().to_string(),
            });
        }
        let cursor = i64::try_from(after_cursor)
            .map_err(|_| UseCaseError::invalid("after_cursor", "too large"))?;
        let (sender, receiver) = mpsc::channel(256);
        // A subject's events are its service's: the service filter is for watches of all.
        let service = if subject.is_some() { None } else { service };
        tokio::spawn(stream_events(
            Arc::clone(&self.store),
            Arc::clone(&self.ended),
            subject,
            service,
            cursor,
            sender,
            self.shutdown.clone(),
        ));
        Ok(Box::pin(ReceiverStream::new(receiver)))
    }
}

/// Sends the events after `cursor` to `sender` until the client goes away or shutdown.
async fn stream_events(
    store: Arc<SqlStore>,
    ended: Arc<EndedViews>,
    subject: Option<Subject>,
    service: Option<String>,
    mut cursor: i64,
    sender: mpsc::Sender<Result<RecordedEvent, UseCaseError>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut signal = store.event_signal();
    loop {
        // Mark the signal seen before reading, so an event recorded during the read wakes the
        // next wait instead of being missed.
        signal.borrow_and_update();
        let batch = match store
            .events_after(cursor, subject.as_ref(), service.as_deref(), WATCH_BATCH)
            .await
        {
            Ok(batch) => batch,
            Err(error) => {
                let _ = sender.send(Err(error.into())).await;
                return;
            }
        };
        let full = batch.len() as u32 == WATCH_BATCH;
        for event in batch {
            cursor = event.cursor;
            // A client told of a change may read the verification at once: its view kept in
            // memory must not be older than the event (the log's follower may not have
            // reached it yet).
            if let Subject::Verification(id) = &event.event.subject {
                ended.forget(std::iter::once(id.as_str()));
            }
            // A client that stops reading must not hold up shutdown.
            tokio::select! {
                sent = sender.send(Ok(event)) => {
                    if sent.is_err() {
                        return; // The client went away.
                    }
                }
                _ = shutdown.wait_for(|stopping| *stopping) => return,
            }
        }
        if full {
            continue;
        }
        tokio::select! {
            _ = signal.changed() => {}
            _ = tokio::time::sleep(WATCH_POLL) => {}
            _ = shutdown.wait_for(|stopping| *stopping) => return,
            _ = sender.closed() => return,
        }
    }
}
