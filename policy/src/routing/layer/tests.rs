use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use verify_carrier::{Channel, OneTimeCode};

use super::*;
use crate::routing::BreakerSettings;

/// A carrier that answers from a script; `None` never answers.
#[derive(Default)]
struct Scripted {
    answers: Mutex<VecDeque<Option<Result<SubmitAccepted, CarrierError>>>>,
    calls: AtomicUsize,
    seen_attributes: Mutex<Vec<Vec<String>>>,
}

#[async_trait]
impl Carrier for Scripted {
    fn name(&self) -> &str {
        "airtel"
    }
    fn kind(&self) -> &'static str {
        "scripted"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            channels: vec![Channel::Sms],
            regions: Vec::new(),
            max_messages_per_second: None,
            delivery_receipts: true,
            deduplicates_submissions: false,
        }
    }
    async fn submit(&self, message: OutboundMessage) -> Result<SubmitAccepted, CarrierError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen_attributes
            .lock()
            .unwrap()
            .push(message.attributes.keys().cloned().collect());
        let answer = self.answers.lock().unwrap().pop_front().expect("scripted");
        match answer {
            Some(result) => result,
            None => std::future::pending().await,
        }
    }
}

#[derive(Debug)]
struct ManualClock(Mutex<Instant>);

impl ManualClock {
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap()
    }
}

fn message() -> OutboundMessage {
    OutboundMessage {
        message_id: "msg_1".into(),
        verification_id: "vf_1".into(),
        to: "+919012345678".into(),
        region_code: Some("IN".into()),
        channel: Channel::Sms,
        body: "Your code is 123456".into(),
        code: OneTimeCode::new("123456"),
        locale: "en".into(),
        sender: None,
        attributes: Default::default(),
    }
}

fn accepted() -> Option<Result<SubmitAccepted, CarrierError>> {
    Some(Ok(SubmitAccepted {
        carrier_message_id: "c-1".into(),
    }))
}

fn throttled() -> Option<Result<SubmitAccepted, CarrierError>> {
    Some(Err(CarrierError::new(
        ErrorKind::RateLimited,
        "ESME_RTHROTTLED",
    )))
}

struct Setup {
    carrier: Arc<Scripted>,
    clock: Arc<ManualClock>,
    breakers: Arc<CircuitBreakers>,
    layer: BreakerLayer,
}

fn setup(script: Vec<Option<Result<SubmitAccepted, CarrierError>>>) -> Setup {
    let carrier = Arc::new(Scripted::default());
    carrier.answers.lock().unwrap().extend(script);
    let clock = Arc::new(ManualClock(Mutex::new(Instant::now())));
    let breakers = Arc::new(CircuitBreakers::new(BreakerSettings {
        consecutive_failures: 2,
        cool_down: Duration::from_secs(30),
        ..BreakerSettings::default()
    }));
    let layer = BreakerLayer::new(
        carrier.clone() as Arc<dyn Carrier>,
        Arc::clone(&breakers),
        clock.clone() as Arc<dyn Clock>,
    );
    Setup {
        carrier,
        clock,
        breakers,
        layer,
    }
}

fn route() -> RouteKey {
    RouteKey::new("airtel", Some("IN"), Channel::Sms)
}

#[tokio::test]
async fn an_open_breaker_refuses_for_now_without_calling_the_carrier() {
    let s = setup(vec![throttled(), throttled(), accepted()]);
    for _ in 0..2 {
        let error = s.layer.submit(message()).await.unwrap_err();
        assert!(error.is_temporary());
    }
    let error = s.layer.submit(message()).await.unwrap_err();
    assert!(error.is_temporary(), "so the dispatcher fails over");
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    assert!(
        error.message().starts_with(
            "not sent: airtel breaker open for 0s after 2 temporary failures in a row (last: ESME_RTHROTTLED)"
        ),
        "{}",
        error.message()
    );
    assert_eq!(s.carrier.calls.load(Ordering::SeqCst), 2);

    // After the cool-down one probe goes through; its success closes the breaker.
    s.clock.advance(Duration::from_secs(30));
    assert!(s.layer.submit(message()).await.is_ok());
    assert_eq!(
        s.breakers.snapshot(&route(), s.clock.now()).state,
        crate::routing::BreakerState::Closed
    );
}

#[tokio::test]
async fn the_last_route_is_tried_through_an_open_breaker_and_the_marker_is_removed() {
    let s = setup(vec![throttled(), throttled(), accepted()]);
    for _ in 0..2 {
        s.layer.submit(message()).await.unwrap_err();
    }
    let mut last = message();
    last.attributes
        .insert(LAST_RESORT_ATTRIBUTE.into(), "1".into());
    last.attributes
        .insert("dlt_template_id".into(), "1107".into());
    assert!(s.layer.submit(last).await.is_ok());
    assert_eq!(
        s.carrier.seen_attributes.lock().unwrap().last().unwrap(),
        &["dlt_template_id".to_string()]
    );
}

#[tokio::test]
async fn a_submission_given_up_on_counts_as_a_failure() {
    let s = setup(vec![None, None]);
    for _ in 0..2 {
        let outcome =
            tokio::time::timeout(Duration::from_millis(10), s.layer.submit(message())).await;
        assert!(outcome.is_err(), "the carrier never answers");
    }
    let snapshot = s.breakers.snapshot(&route(), s.clock.now());
    assert_eq!(snapshot.state, crate::routing::BreakerState::Open);
    assert_eq!(
        snapshot.cause.as_deref(),
        Some("2 temporary failures in a row (last: no answer in time)")
    );
}

#[tokio::test]
async fn permanent_refusals_show_the_route_answers() {
    let invalid = Some(Err(CarrierError::new(
        ErrorKind::InvalidDestination,
        "unknown subscriber",
    )));
    let s = setup(vec![throttled(), invalid, throttled(), accepted()]);
    for _ in 0..3 {
        s.layer.submit(message()).await.unwrap_err();
    }
    // throttled, refused for good, throttled: never two temporary failures in a row.
    assert!(s.layer.submit(message()).await.is_ok());
    assert_eq!(s.layer.name(), "airtel");
}
