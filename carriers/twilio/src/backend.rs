//! The `twilio` carrier: the factory the registry calls, and the [`Carrier`] implementation
//! (SMS through the Messages API, voice through the Calls API, signed status callbacks).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;
use verify_carrier::{
    CallbackRequest, CallbackResponse, Capabilities, Carrier, CarrierContext, CarrierError,
    Channel, DeliveryReceipt, ErrorKind, InFlightGate, OutboundMessage, ReceiptSink, ReceiptStatus,
    SubmitAccepted, mask_number,
};

use crate::KIND;
use crate::config::TwilioConfig;
use crate::core::{Redactions, Resource, TwilioClient, delivery_error_words};
use crate::signature::{self, SIGNATURE_HEADER};
use crate::twiml::{self, MAX_TWIML_CHARS, VoiceOptions};

/// The query parameter of the status callback URL that carries verifyd's message id back.
pub const MESSAGE_ID_PARAM: &str = "message_id";

/// Accepted messages remembered while their final status callback is due; beyond this many,
/// the oldest ones are forgotten (their callbacks are still forwarded when they come).
const MAX_AWAITED: usize = 100_000;

/// Sids whose final callback came before their submission returned, kept to match them.
const MAX_FINISHED_EARLY: usize = 1_024;

/// The registry's factory: parses and validates the settings and builds the carrier. Starts
/// nothing (no connection, no task).
pub(crate) fn build(
    settings: &serde_json::Value,
    context: CarrierContext,
) -> Result<Arc<dyn Carrier>, CarrierError> {
    if settings.is_null() {
        return Err(context.config_error(
            "settings: account_sid, auth_token and from (or messaging_service_sid) are required",
        ));
    }
    let config: TwilioConfig = context.parse_settings(settings)?;
    Ok(Arc::new(TwilioCarrier::new(config, context)?))
}

/// A carrier speaking Twilio's REST API.
pub struct TwilioCarrier {
    name: String,
    config: TwilioConfig,
    client: TwilioClient,
    callback_url: Option<String>,
    receipts: ReceiptSink,
    voice: VoiceOptions,
    tracker: Tracker,
}

impl std::fmt::Debug for TwilioCarrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioCarrier")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("callback_url", &self.callback_url)
            .finish_non_exhaustive()
    }
}

impl TwilioCarrier {
    /// A carrier from validated settings; receipts go to `context.receipts`, and Twilio is told
    /// to send status callbacks to `context.callback_url`.
    pub fn new(config: TwilioConfig, context: CarrierContext) -> Result<Self, CarrierError> {
        config.validate().map_err(|e| context.config_error(e))?;
        let client = TwilioClient::new(&config)?;
        let voice = VoiceOptions {
            voice: config.voice.clone(),
            voices: config.voices.clone(),
            say_languages: config.say_languages.clone(),
        };
        Ok(Self {
            name: context.name,
            client,
            callback_url: context.callback_url,
            receipts: context.receipts,
            voice,
            config,
            tracker: Tracker::default(),
        })
    }

    /// The status callback URL for one message: verifyd's callback endpoint with the message
    /// id in the query, so receipts name it even when they beat the submission's answer.
    fn status_callback(&self, message_id: &str) -> Option<String> {
        let base = self.callback_url.as_ref()?;
        let separator = if base.contains('?') { '&' } else { '?' };
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair(MESSAGE_ID_PARAM, message_id)
            .finish();
        Some(format!("{base}{separator}{query}"))
    }

    /// The URLs Twilio may have signed for `request`: the public origin of the callback URL
    /// with the path and query received, the configured callback URL itself (when a proxy
    /// rewrote the path), each with and without the default port.
    fn signed_url_candidates(&self, request: &CallbackRequest) -> Vec<String> {
        let mut bases = Vec::new();
        match &self.callback_url {
            Some(url) => {
                if let Some(origin) = origin(url) {
                    bases.push(format!("{origin}{}", request.path_and_query));
                }
                let configured = url.split('?').next().unwrap_or(url);
                let query = request.query();
                bases.push(if query.is_empty() {
                    configured.to_string()
                } else {
                    format!("{configured}?{query}")
                });
            }
            None => {
                if let Some(host) = request.header("host") {
                    bases.push(format!("https://{host}{}", request.path_and_query));
                    bases.push(format!("http://{host}{}", request.path_and_query));
                }
            }
        }
        let mut candidates: Vec<String> = Vec::new();
        for url in bases.iter().flat_map(|b| signature::url_variants(b)) {
            if !candidates.contains(&url) {
                candidates.push(url);
            }
        }
        candidates
    }

    fn sms_form(&self, message: &OutboundMessage) -> Vec<(&'static str, String)> {
        let mut form = vec![("To", message.to.clone())];
        if let Some(from) = message.sender.as_ref().or(self.config.from.as_ref()) {
            form.push(("From", from.clone()));
        }
        if let Some(service) = &self.config.messaging_service_sid {
            form.push(("MessagingServiceSid", service.clone()));
        }
        form.push(("Body", message.body.clone()));
        if let Some(callback) = self.status_callback(&message.message_id) {
            form.push(("StatusCallback", callback));
        }
        form
    }

    fn call_form(
        &self,
        message: &OutboundMessage,
    ) -> Result<Vec<(&'static str, String)>, CarrierError> {
        // A call shows a number: a route's alphanumeric sender ID cannot place it.
        let from = message
            .sender
            .as_ref()
            .filter(|s| s.starts_with('+') && s[1..].bytes().all(|b| b.is_ascii_digit()))
            .or(self.config.from.as_ref())
            .ok_or_else(|| {
                CarrierError::new(
                    ErrorKind::Config,
                    format!("carrier `{}`: from: required for voice", self.name),
                )
            })?;
        let twiml = twiml::verification_twiml(message, &self.voice);
        if twiml.chars().count() > MAX_TWIML_CHARS {
            return Err(CarrierError::new(
                ErrorKind::Rejected,
                format!(
                    "the voice script is longer than the {MAX_TWIML_CHARS} characters Twilio takes inline"
                ),
            ));
        }
        let mut form = vec![
            ("To", message.to.clone()),
            ("From", from.clone()),
            ("Twiml", twiml),
        ];
        if let Some(callback) = self.status_callback(&message.message_id) {
            form.push(("StatusCallback", callback));
            form.push(("StatusCallbackMethod", "POST".to_string()));
            // One final event per call: its CallStatus is the outcome (completed, busy,
            // no-answer, failed, canceled).
            form.push(("StatusCallbackEvent", "completed".to_string()));
        }
        if let Some(detection) = self.config.machine_detection.as_twilio() {
            form.push(("MachineDetection", detection.to_string()));
        }
        Ok(form)
    }

    fn receipt(
        &self,
        request: &CallbackRequest,
        params: &[(String, String)],
    ) -> Result<Option<DeliveryReceipt>, String> {
        let get = |name: &str| -> Option<&str> {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        };
        let message_id = request
            .query_pairs()
            .into_iter()
            .find(|(k, _)| k == MESSAGE_ID_PARAM)
            .map(|(_, v)| v);
        let error_code = get("ErrorCode").map(short);
        let error_detail = || match &error_code {
            Some(code) => match delivery_error_words(code) {
                Some(words) => format!(" ErrorCode={code} ({words})"),
                None => format!(" ErrorCode={code}"),
            },
            None => String::new(),
        };
        let (sid, outcome) = if let Some(sid) = get("MessageSid").or(get("SmsSid")) {
            let status = get("MessageStatus")
                .or(get("SmsStatus"))
                .ok_or("a message status callback without MessageStatus")?;
            let outcome = match status {
                "delivered" => Some((ReceiptStatus::Delivered, "delivered".to_string())),
                "undelivered" | "failed" | "canceled" => Some((
                    ReceiptStatus::Failed,
                    format!("{}{}", short(status), error_detail()),
                )),
                // accepted, scheduled, queued, sending, sent, read, ...: not final.
                _ => None,
            };
            (sid, outcome)
        } else if let Some(sid) = get("CallSid") {
            let status = get("CallStatus").ok_or("a call status callback without CallStatus")?;
            let outcome = match status {
                "completed" => {
                    let mut detail = "call completed".to_string();
                    if let Some(seconds) = get("CallDuration") {
                        detail.push_str(&format!(", {} s", short(seconds)));
                    }
                    if let Some(answered_by) = get("AnsweredBy") {
                        detail.push_str(&format!(", answered by {}", short(answered_by)));
                    }
                    Some((ReceiptStatus::Delivered, detail))
                }
                "busy" | "no-answer" | "failed" | "canceled" => {
                    let mut detail = format!("call {}{}", short(status), error_detail());
                    if let Some(sip) = get("SipResponseCode") {
                        detail.push_str(&format!(" SIP {}", short(sip)));
                    }
                    Some((ReceiptStatus::Failed, detail))
                }
                // queued, initiated, ringing, in-progress: not final.
                _ => None,
            };
            (sid, outcome)
        } else {
            return Err("neither MessageSid nor CallSid in the callback".into());
        };
        Ok(outcome.map(|(status, detail)| DeliveryReceipt {
            carrier: self.name.clone(),
            carrier_message_id: sid.to_string(),
            message_id,
            status,
            detail,
            alternative_ids: Vec::new(),
        }))
    }
}

/// A value from the network, shortened and stripped of control characters for a receipt.
fn short(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// `scheme://authority` of `url`.
fn origin(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&url[..scheme.len() + 3 + end])
}

#[async_trait]
impl Carrier for TwilioCarrier {
    async fn start(&self) -> Result<(), CarrierError> {
        if self.callback_url.is_none() {
            tracing::warn!(
                carrier = %self.name,
                "no callback URL (set [callbacks] in the server config): Twilio cannot report delivery"
            );
        }
        Ok(())
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            channels: self.config.channels.clone(),
            regions: self.config.regions.clone(),
            max_messages_per_second: None,
            delivery_receipts: self.callback_url.is_some(),
            deduplicates_submissions: false,
        }
    }

    async fn submit(&self, message: OutboundMessage) -> Result<SubmitAccepted, CarrierError> {
        if !self.config.channels.contains(&message.channel) {
            return Err(CarrierError::new(
                ErrorKind::Unsupported,
                format!("carrier `{}` does not carry {}", self.name, message.channel),
            )
            .set_permanent());
        }
        let (resource, form) = match message.channel {
            Channel::Sms => (Resource::Messages, self.sms_form(&message)),
            Channel::Voice => (Resource::Calls, self.call_form(&message)?),
        };
        let _in_flight = self.tracker.gate.enter(&self.name)?;
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let redactions = Redactions {
            to: &message.to,
            code: message.code.expose(),
        };
        match self.client.create(resource, &form, &redactions).await {
            Ok(sid) => {
                if self.callback_url.is_some() {
                    self.tracker.accepted(&sid);
                }
                tracing::debug!(
                    carrier = %self.name,
                    message_id = %message.message_id,
                    to = %mask_number(&message.to),
                    sid = %sid,
                    channel = %message.channel,
                    "Twilio accepted the message"
                );
                Ok(SubmitAccepted {
                    carrier_message_id: sid,
                })
            }
            Err(error) => Err(error),
        }
    }

    async fn handle_callback(&self, request: CallbackRequest) -> CallbackResponse {
        if !request.method.eq_ignore_ascii_case("POST") {
            return CallbackResponse::rejected(405, "Twilio status callbacks are POSTed");
        }
        let Some(signature) = request.header(SIGNATURE_HEADER) else {
            return CallbackResponse::rejected(403, "missing X-Twilio-Signature");
        };
        let params = request.form_pairs();
        let token = self.config.auth_token.expose();
        let valid = self
            .signed_url_candidates(&request)
            .iter()
            .any(|url| signature::verify(token, url, &params, signature));
        if !valid {
            return CallbackResponse::rejected(
                403,
                "X-Twilio-Signature does not match (check auth_token and [callbacks] public_url)",
            );
        }
        match self.receipt(&request, &params) {
            Ok(Some(receipt)) => {
                let sid = receipt.carrier_message_id.clone();
                // Waits while verifyd is behind on receipts: Twilio's request waits with it.
                if !self.receipts.deliver(receipt).await {
                    tracing::warn!(carrier = %self.name, %sid, "receipt dropped: the server is gone");
                }
                self.tracker.finished(&sid);
                CallbackResponse::ok()
            }
            Ok(None) => CallbackResponse::ok(),
            Err(reason) => CallbackResponse::rejected(400, reason),
        }
    }

    async fn shutdown(&self) {
        self.tracker.close();
        self.tracker.gate.wait_idle(None).await;
        let deadline = Instant::now() + Duration::from_millis(self.config.shutdown_receipt_wait_ms);
        let all_in = self
            .tracker
            .wait(|state| state.awaited.is_empty(), Some(deadline))
            .await;
        if !all_in {
            let missing = self.tracker.lock().awaited.len();
            tracing::warn!(
                carrier = %self.name,
                missing,
                "shut down before every status callback came"
            );
        }
    }
}

/// Submissions in flight (the shared [`InFlightGate`]) and accepted messages whose final
/// status callback is due. Unlike [`verify_carrier::PendingReceipts`], nothing is deduplicated
/// (every callback is forwarded): only sids are kept, at most [`MAX_AWAITED`].
#[derive(Default)]
struct Tracker {
    gate: InFlightGate,
    state: Mutex<TrackerState>,
    changed: Notify,
}

#[derive(Default)]
struct TrackerState {
    awaited: HashMap<String, Instant>,
    finished_early: VecDeque<String>,
}

impl Tracker {
    fn lock(&self) -> MutexGuard<'_, TrackerState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts a submission in, unless shutdown has begun.
    #[cfg(test)]
    fn begin(&self) -> Option<verify_carrier::InFlight> {
        self.gate.try_enter()
    }

    fn accepted(&self, sid: &str) {
        let mut state = self.lock();
        if let Some(i) = state.finished_early.iter().position(|s| s == sid) {
            state.finished_early.remove(i);
            return;
        }
        if state.awaited.len() >= MAX_AWAITED
            && let Some(oldest) = state
                .awaited
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(sid, _)| sid.clone())
        {
            state.awaited.remove(&oldest);
        }
        state.awaited.insert(sid.to_string(), Instant::now());
    }

    fn finished(&self, sid: &str) {
        let mut state = self.lock();
        if state.awaited.remove(sid).is_none() && self.gate.in_flight() > 0 {
            // The callback may have beaten the answer to its own submission.
            if state.finished_early.len() >= MAX_FINISHED_EARLY {
                state.finished_early.pop_front();
            }
            state.finished_early.push_back(sid.to_string());
        }
        drop(state);
        self.changed.notify_waiters();
    }

    fn close(&self) {
        self.gate.close();
    }

    /// Waits until `done` holds (true) or `deadline` passes (false).
    async fn wait(&self, done: impl Fn(&TrackerState) -> bool, deadline: Option<Instant>) -> bool {
        verify_carrier::shutdown::wait_for(&self.changed, || done(&self.lock()), deadline).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_keeps_scheme_host_and_port() {
        assert_eq!(
            origin("https://verify.example.com/callbacks/tw"),
            Some("https://verify.example.com")
        );
        assert_eq!(
            origin("http://127.0.0.1:8080/callbacks/tw?x=1"),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(origin("http://h"), Some("http://h"));
        assert_eq!(origin("nonsense"), None);
    }

    fn carrier(
        callback_url: Option<&str>,
    ) -> (TwilioCarrier, tokio::sync::mpsc::Receiver<DeliveryReceipt>) {
        let (receipts, rx) = ReceiptSink::channel(16);
        let config = TwilioConfig::new(
            "AC0123456789abcdef0123456789abcdef",
            crate::Secret::new("token"),
            "+15005550006",
        );
        let context = CarrierContext {
            name: "tw".into(),
            receipts,
            callback_url: callback_url.map(str::to_string),
        };
        (TwilioCarrier::new(config, context).unwrap(), rx)
    }

    fn signed_request(url: &str, path_and_query: &str, params: &[(&str, &str)]) -> CallbackRequest {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        CallbackRequest {
            method: "POST".into(),
            path_and_query: path_and_query.into(),
            headers: vec![
                ("host".into(), "internal:8080".into()),
                (
                    "x-twilio-signature".into(),
                    signature::sign("token", url, &params),
                ),
            ],
            body: body.into_bytes(),
        }
    }

    #[tokio::test]
    async fn signatures_are_checked_against_the_public_url() {
        let (carrier, mut rx) = carrier(Some("https://verify.example.com/verifyd/callbacks/tw"));
        let params = [("MessageSid", "SM1"), ("MessageStatus", "delivered")];
        // A proxy stripped `/verifyd`: the configured URL is what Twilio signed.
        let request = signed_request(
            "https://verify.example.com/verifyd/callbacks/tw?message_id=m1",
            "/callbacks/tw?message_id=m1",
            &params,
        );
        assert_eq!(carrier.handle_callback(request).await.status, 200);
        assert_eq!(rx.try_recv().unwrap().message_id.as_deref(), Some("m1"));
        // Public origin plus the path received, with the default port spelled out.
        let request = signed_request(
            "https://verify.example.com:443/callbacks/tw?message_id=m2",
            "/callbacks/tw?message_id=m2",
            &params,
        );
        assert_eq!(carrier.handle_callback(request).await.status, 200);
        assert_eq!(rx.try_recv().unwrap().message_id.as_deref(), Some("m2"));
        // Signed for another host, or for the internal address: refused.
        for url in [
            "https://evil.example.com/verifyd/callbacks/tw?message_id=m3",
            "http://internal:8080/callbacks/tw?message_id=m3",
        ] {
            let request = signed_request(url, "/callbacks/tw?message_id=m3", &params);
            let answer = carrier.handle_callback(request).await;
            assert_eq!(answer.status, 403, "{url}");
            assert!(answer.rejection.is_some());
        }
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn call_and_message_statuses_map_to_receipts() {
        let url = "http://127.0.0.1:9/callbacks/tw";
        let (carrier, mut rx) = carrier(Some(url));
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<ReceiptStatus>, &'a str);
        let cases: &[Case] = &[
            (
                &[
                    ("CallSid", "CA1"),
                    ("CallStatus", "completed"),
                    ("CallDuration", "9"),
                ],
                Some(ReceiptStatus::Delivered),
                "call completed, 9 s",
            ),
            (
                &[("CallSid", "CA1"), ("CallStatus", "busy")],
                Some(ReceiptStatus::Failed),
                "call busy",
            ),
            (
                &[("CallSid", "CA1"), ("CallStatus", "no-answer")],
                Some(ReceiptStatus::Failed),
                "call no-answer",
            ),
            (
                &[
                    ("CallSid", "CA1"),
                    ("CallStatus", "failed"),
                    ("ErrorCode", "13227"),
                ],
                Some(ReceiptStatus::Failed),
                "call failed ErrorCode=13227",
            ),
            (
                &[("CallSid", "CA1"), ("CallStatus", "canceled")],
                Some(ReceiptStatus::Failed),
                "call canceled",
            ),
            (&[("CallSid", "CA1"), ("CallStatus", "ringing")], None, ""),
            (
                &[
                    ("MessageSid", "SM1"),
                    ("MessageStatus", "failed"),
                    ("ErrorCode", "30005"),
                ],
                Some(ReceiptStatus::Failed),
                "failed ErrorCode=30005 (unknown destination handset)",
            ),
            (
                &[("MessageSid", "SM1"), ("MessageStatus", "queued")],
                None,
                "",
            ),
            (
                &[("MessageSid", "SM1"), ("MessageStatus", "accepted")],
                None,
                "",
            ),
            (
                &[("MessageSid", "SM1"), ("MessageStatus", "sending")],
                None,
                "",
            ),
            (
                &[("SmsSid", "SM1"), ("SmsStatus", "delivered")],
                Some(ReceiptStatus::Delivered),
                "delivered",
            ),
        ];
        for (params, status, detail) in cases {
            let answer = carrier
                .handle_callback(signed_request(url, "/callbacks/tw", params))
                .await;
            assert_eq!(answer.status, 200, "{params:?}");
            match status {
                Some(status) => {
                    let receipt = rx.try_recv().expect("a receipt");
                    assert_eq!(receipt.status, *status, "{params:?}");
                    assert_eq!(receipt.detail, *detail);
                    assert_eq!(receipt.message_id, None);
                }
                None => assert!(rx.try_recv().is_err(), "{params:?}"),
            }
        }
        let answer = carrier
            .handle_callback(signed_request(url, "/callbacks/tw", &[("Foo", "bar")]))
            .await;
        assert_eq!(answer.status, 400);
    }

    #[tokio::test]
    async fn tracker_matches_early_callbacks_and_waits_with_a_deadline() {
        let tracker = Tracker::default();
        let guard = tracker.begin().unwrap();
        tracker.finished("SM1"); // before its submission returned
        tracker.accepted("SM1");
        tracker.accepted("SM2");
        drop(guard);
        assert_eq!(tracker.lock().awaited.len(), 1);
        let soon = Instant::now() + Duration::from_millis(20);
        assert!(!tracker.wait(|s| s.awaited.is_empty(), Some(soon)).await);
        tracker.finished("SM2");
        assert!(tracker.wait(|s| s.awaited.is_empty(), Some(soon)).await);
        tracker.close();
        assert!(tracker.begin().is_none());
    }
}
