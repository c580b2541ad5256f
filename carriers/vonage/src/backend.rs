//! The `vonage` carrier: builds the SMS API request, maps Vonage's answers to carrier errors and
//! turns delivery-receipt webhooks into receipts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use verify_carrier::{
    CallbackRequest, CallbackResponse, Capabilities, Carrier, CarrierContext, CarrierError,
    Channel, ErrorKind, InFlightGate, OutboundMessage, PendingReceipts, ReceiptSink,
    SubmitAccepted, mask_number,
};

use crate::config::VonageConfig;
use crate::{KIND, signature};

/// Largest API answer read; Vonage's are a few hundred bytes per part.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Longest vendor text put into an error or receipt detail.
const MAX_TEXT: usize = 200;
/// Nonces of signed receipts remembered against replays, at most.
/// Receipt nonces remembered at once (per carrier): past that, receipts are refused for now.
const MAX_NONCES: usize = 1_000_000;

/// The factory registered under [`KIND`]: parses and checks settings, builds the HTTP client,
/// starts nothing.
pub(crate) fn build(
    settings: &serde_json::Value,
    context: CarrierContext,
) -> Result<Arc<dyn Carrier>, CarrierError> {
    let config: VonageConfig = context.parse_settings(settings)?;
    config.validate().map_err(|e| context.config_error(e))?;
    Ok(Arc::new(VonageCarrier::new(context, config)?))
}

/// A Vonage-style SMS carrier.
pub struct VonageCarrier {
    name: String,
    config: VonageConfig,
    client: reqwest::Client,
    endpoint: String,
    callback_url: Option<String>,
    receipts: ReceiptSink,
    gate: InFlightGate,
    pending: PendingReceipts,
    nonces: verify_carrier::ReplayGuard,
}

impl std::fmt::Debug for VonageCarrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VonageCarrier")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl VonageCarrier {
    /// A carrier from checked settings ([`VonageConfig::validate`]); starts nothing.
    pub fn new(context: CarrierContext, config: VonageConfig) -> Result<Self, CarrierError> {
        let client = verify_carrier::http_client(Duration::from_millis(config.timeout_ms))?;
        let endpoint = format!("{}/sms/json", config.base_url.trim_end_matches('/'));
        // A nonce is remembered while its timestamp could still pass the clock-skew check.
        let nonces = verify_carrier::ReplayGuard::new(config.max_clock_skew_s, MAX_NONCES);
        Ok(Self {
            name: context.name,
            client,
            endpoint,
            callback_url: context.callback_url,
            receipts: context.receipts,
            gate: InFlightGate::new(),
            pending: PendingReceipts::new(),
            nonces,
            config,
        })
    }

    /// The form parameters of one SMS request, signed or carrying the API secret.
    fn request_params(
        &self,
        message: &OutboundMessage,
    ) -> Result<Vec<(String, String)>, CarrierError> {
        let to = message.to.strip_prefix('+').unwrap_or(&message.to);
        if to.is_empty() || !to.chars().all(|c| c.is_ascii_digit()) {
            return Err(CarrierError::new(
                ErrorKind::InvalidDestination,
                format!("`{}` is not an E.164 number", mask_number(&message.to)),
            ));
        }
        let from = message.sender.as_deref().unwrap_or(&self.config.from);
        let kind = if verify_carrier::gsm7::fits(&message.body) {
            "text"
        } else {
            "unicode"
        };
        let mut params: Vec<(String, String)> = vec![
            ("api_key".into(), self.config.api_key.clone()),
            ("from".into(), from.to_string()),
            ("to".into(), to.to_string()),
            ("text".into(), message.body.clone()),
            ("type".into(), kind.into()),
            ("client-ref".into(), message.message_id.clone()),
        ];
        if let Some(callback) = &self.callback_url {
            params.push(("callback".into(), callback.clone()));
            params.push(("status-report-req".into(), "1".into()));
        }
        if let Some(entity) = message.attributes.get(&self.config.dlt.entity_id_attribute) {
            params.push(("entity-id".into(), entity.clone()));
        }
        if let Some(content) = message
            .attributes
            .get(&self.config.dlt.content_id_attribute)
        {
            params.push(("content-id".into(), content.clone()));
        }
        match (&self.config.signature_secret, self.config.signs_requests()) {
            (Some(secret), true) => {
                params.push(("timestamp".into(), verify_carrier::unix_now().to_string()));
                let sig = signature::sign(
                    params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                    secret.expose(),
                    self.config.signature_method,
                );
                params.push(("sig".into(), sig));
            }
            _ => {
                let secret = self.config.api_secret.as_ref().ok_or_else(|| {
                    CarrierError::new(ErrorKind::Config, "no api_secret to authenticate with")
                })?;
                params.push(("api_secret".into(), secret.expose().to_string()));
            }
        }
        Ok(params)
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SubmitAccepted, CarrierError> {
        let params = self.request_params(message)?;
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        let response = self
            .client
            .post(&self.endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(verify_carrier::request_error)?;
        let (status, answer) = verify_carrier::read_answer(response, MAX_ANSWER_BYTES).await?;
        let code = message.code.expose();
        if status == 504 {
            return Err(verify_carrier::gateway_timeout("Vonage"));
        }
        if status == 429 {
            return Err(CarrierError::new(
                ErrorKind::RateLimited,
                "Vonage answered HTTP 429 (throttled)",
            ));
        }
        if status >= 500 {
            return Err(CarrierError::new(
                ErrorKind::Unavailable,
                format!("Vonage answered HTTP {status}"),
            ));
        }
        if status == 401 || status == 403 {
            return Err(CarrierError::new(
                ErrorKind::Config,
                format!("Vonage refused the account credentials (HTTP {status})"),
            ));
        }
        if !(200..300).contains(&status) {
            return Err(CarrierError::new(
                ErrorKind::Rejected,
                format!("Vonage answered HTTP {status}"),
            ));
        }
        // From here on Vonage answered 2xx: it may have taken the message, so an answer that
        // does not say which parts it took is maybe sent, never failed over.
        let parts = parse_answer(&answer).ok_or_else(|| {
            verify_carrier::unreadable_acceptance(
                "Vonage",
                status,
                "a body that is not an SMS API answer",
            )
        })?;
        let accepted: Vec<String> = parts
            .iter()
            .filter(|p| p.status == "0")
            .filter_map(|p| p.message_id.clone())
            .collect();
        if let Some(failed) = parts.iter().find(|p| p.status != "0") {
            let refusal = status_error(&failed.status, failed.error_text.as_deref(), code);
            if accepted.is_empty() {
                return Err(refusal);
            }
            // Earlier parts went out: the phone may show part of the text, and sending it
            // again (here or elsewhere) would repeat them. Their receipts are ignored; the
            // message is maybe sent.
            tracing::warn!(carrier = %self.name, message_id = %message.message_id, parts = parts.len(),
                accepted = accepted.len(), "Vonage refused part of a multi-part message");
            self.pending.suppress(&accepted, &message.message_id);
            return Err(CarrierError::maybe_sent(
                refusal.kind(),
                format!(
                    "Vonage took {} of {} parts and refused the rest: {}",
                    accepted.len(),
                    parts.len(),
                    refusal.message()
                ),
            ));
        }
        if accepted.is_empty() || accepted.len() != parts.len() {
            return Err(verify_carrier::unreadable_acceptance(
                "Vonage",
                status,
                "no message-id for every part",
            ));
        }
        self.pending.accepted(&accepted, &message.message_id);
        tracing::debug!(carrier = %self.name, message_id = %message.message_id,
            carrier_message_id = %accepted[0], parts = accepted.len(), "Vonage accepted the message");
        Ok(SubmitAccepted {
            carrier_message_id: accepted[0].clone(),
        })
    }

    /// Checks a receipt's signature, timestamp and nonce; `Err` is the answer to refuse with.
    fn authenticate(&self, params: &BTreeMap<String, String>) -> Result<(), CallbackResponse> {
        let Some(secret) = &self.config.signature_secret else {
            return Ok(());
        };
        let Some(sig) = params.get("sig") else {
            if self.config.requires_signed_receipts() {
                return Err(CallbackResponse::rejected(401, "unsigned receipt"));
            }
            return Ok(());
        };
        let timestamp = params
            .get("timestamp")
            .and_then(|t| t.trim().parse::<u64>().ok())
            .ok_or_else(|| CallbackResponse::rejected(401, "signed receipt without a timestamp"))?;
        let now = verify_carrier::unix_now();
        if now.abs_diff(timestamp) > self.config.max_clock_skew_s {
            return Err(CallbackResponse::rejected(
                403,
                format!(
                    "receipt timestamp is {}s away from now",
                    now.abs_diff(timestamp)
                ),
            ));
        }
        let valid = signature::verify(
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            sig,
            secret.expose(),
            self.config.signature_method,
        );
        if !valid {
            return Err(CallbackResponse::rejected(
                403,
                "receipt signature does not match",
            ));
        }
        if let Some(nonce) = params.get("nonce") {
            match self.nonces.first_use(nonce, timestamp.max(now)) {
                Ok(()) => {}
                Err(verify_carrier::Replay::Seen) => {
                    return Err(CallbackResponse::rejected(
                        403,
                        "receipt nonce was already used",
                    ));
                }
                Err(verify_carrier::Replay::Full) => {
                    return Err(CallbackResponse::rejected(
                        503,
                        "too many receipts to check for replays; retry later",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Carrier for VonageCarrier {
    async fn start(&self) -> Result<(), CarrierError> {
        if self.callback_url.is_none() {
            tracing::warn!(carrier = %self.name, "no callback URL (set [callbacks] in the server config): Vonage will send no delivery receipts");
        }
        if !self.config.requires_signed_receipts() {
            tracing::warn!(carrier = %self.name, "unsigned delivery receipts are accepted");
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
            channels: vec![Channel::Sms],
            regions: self.config.regions.clone(),
            max_messages_per_second: Some(self.config.max_messages_per_second),
            delivery_receipts: self.callback_url.is_some(),
            deduplicates_submissions: false,
        }
    }

    async fn submit(&self, message: OutboundMessage) -> Result<SubmitAccepted, CarrierError> {
        let _in_flight = self.gate.enter(&self.name)?;
        if message.channel != Channel::Sms {
            return Err(CarrierError::new(
                ErrorKind::Unsupported,
                format!("carrier `{}` (Vonage SMS API) carries SMS only", self.name),
            )
            .set_permanent());
        }
        self.send(&message).await
    }

    async fn handle_callback(&self, request: CallbackRequest) -> CallbackResponse {
        let pairs = match request.method.as_str() {
            "GET" => request.query_pairs(),
            "POST" => match body_pairs(&request) {
                Ok(pairs) => pairs,
                Err(reason) => return CallbackResponse::rejected(400, reason),
            },
            _ => return CallbackResponse::rejected(405, "receipts are GET or POST"),
        };
        let mut params = BTreeMap::new();
        for (name, value) in pairs {
            if params.insert(name, value).is_some() {
                return CallbackResponse::rejected(400, "a receipt parameter appears twice");
            }
        }
        if let Err(refusal) = self.authenticate(&params) {
            return refusal;
        }
        if params
            .get("api-key")
            .is_some_and(|key| key != &self.config.api_key)
        {
            return CallbackResponse::rejected(403, "receipt for another account");
        }
        let Some(part_id) = params.get("messageId").filter(|id| !id.is_empty()) else {
            return CallbackResponse::rejected(400, "receipt without messageId");
        };
        let status = params.get("status").map(String::as_str).unwrap_or("");
        let delivered = match status {
            "delivered" => true,
            "failed" | "rejected" | "expired" => false,
            "accepted" | "buffered" | "unknown" => {
                tracing::debug!(carrier = %self.name, %status, "intermediate Vonage receipt");
                return CallbackResponse::ok();
            }
            _ => return CallbackResponse::rejected(400, "receipt with an unknown status"),
        };
        let err_code = params.get("err-code").map(String::as_str).unwrap_or("");
        let detail = receipt_detail(status, err_code);
        let message_id = params.get("client-ref").filter(|r| !r.is_empty()).cloned();
        // Waits while verifyd is behind on receipts: the vendor's request waits with it.
        let Some(permit) = self.receipts.reserve().await else {
            return CallbackResponse::rejected(503, "verifyd is not taking receipts now");
        };
        self.pending
            .report(permit, &self.name, part_id, delivered, message_id, detail);
        CallbackResponse::ok()
    }

    async fn shutdown(&self) {
        let wait = Duration::from_millis(self.config.shutdown_receipt_wait_ms);
        let missing = verify_carrier::receipts::drain(&self.gate, &self.pending, wait).await;
        if missing > 0 {
            tracing::warn!(carrier = %self.name, missing, "shut down before every delivery receipt arrived");
        }
    }
}

/// The name/value pairs of a POSTed receipt: a JSON object or a form.
fn body_pairs(request: &CallbackRequest) -> Result<Vec<(String, String)>, &'static str> {
    let is_json = request
        .header("content-type")
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/json"));
    if !is_json {
        return Ok(request.form_pairs());
    }
    let value: serde_json::Value =
        serde_json::from_slice(&request.body).map_err(|_| "receipt body is not JSON")?;
    let serde_json::Value::Object(object) = value else {
        return Err("receipt body is not a JSON object");
    };
    Ok(object
        .into_iter()
        .filter_map(|(name, value)| match value {
            serde_json::Value::String(s) => Some((name, s)),
            serde_json::Value::Number(n) => Some((name, n.to_string())),
            serde_json::Value::Bool(b) => Some((name, b.to_string())),
            _ => None,
        })
        .collect())
}

/// One part of an SMS API answer.
#[derive(Debug)]
struct AnswerPart {
    status: String,
    message_id: Option<String>,
    error_text: Option<String>,
}

/// The parts of an SMS API answer, or `None` when the body is not one.
fn parse_answer(body: &[u8]) -> Option<Vec<AnswerPart>> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let parts: Vec<AnswerPart> = value
        .get("messages")?
        .as_array()?
        .iter()
        .map(|part| AnswerPart {
            status: part.get("status").and_then(text).unwrap_or_default(),
            message_id: part
                .get("message-id")
                .and_then(text)
                .filter(|id| !id.is_empty()),
            error_text: part.get("error-text").and_then(text),
        })
        .collect();
    (!parts.is_empty()).then_some(parts)
}

/// Vendor text fit for an error: bounded, one line, without the code.
fn clean_text(text: &str, code: &str) -> String {
    verify_carrier::vendor_text(text, code, MAX_TEXT)
}

/// Maps a non-zero SMS API status to a carrier error with Vonage's status and words.
fn status_error(status: &str, error_text: Option<&str>, code: &str) -> CarrierError {
    let words = error_text
        .map(|t| clean_text(t, code))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "no error-text".into());
    let reason = format!("Vonage status {}: {words}", clean_text(status, code));
    let (kind, temporary) = match status.parse::<u32>().unwrap_or(u32::MAX) {
        1 => (ErrorKind::RateLimited, true),
        5 => (ErrorKind::Unavailable, true),
        // Out of credit, too many binds: the account cannot send now, another route can.
        9 | 10 => (ErrorKind::Unavailable, true),
        4 | 8 | 14 => {
            return CarrierError::new(
                ErrorKind::Config,
                format!("Vonage refused the account credentials ({reason})"),
            )
            .set_permanent();
        }
        11 | 23 | 32 => (ErrorKind::Config, false),
        3 | 7 | 22 | 29 | 33 => (ErrorKind::InvalidDestination, false),
        2 | 6 | 12 | 15 => (ErrorKind::Rejected, false),
        _ => (ErrorKind::Other, false),
    };
    let error = CarrierError::new(kind, reason);
    if temporary {
        error.set_temporary()
    } else {
        error.set_permanent()
    }
}

/// The detail of a receipt: Vonage's status, its `err-code` and what the code means.
fn receipt_detail(status: &str, err_code: &str) -> String {
    let status = clean_text(status, "");
    if err_code.is_empty() {
        return format!("status:{status}");
    }
    let meaning = match err_code {
        "0" => "delivered",
        "1" => "unknown",
        "2" => "absent subscriber, temporary",
        "3" => "absent subscriber, permanent",
        "4" => "call barred by user",
        "5" => "portability error",
        "6" => "anti-spam rejection",
        "7" => "handset busy",
        "8" => "network error",
        "9" => "illegal number",
        "10" => "illegal message",
        "11" => "unroutable",
        "12" => "destination unreachable",
        "13" => "subscriber age restriction",
        "14" => "number blocked by carrier",
        "15" => "prepaid insufficient funds",
        "16" => "gateway quota exceeded",
        "50" => "entity filter",
        "51" => "header filter",
        "52" => "content filter",
        "53" => "consent filter",
        "54" => "regulation error",
        "99" => "general error",
        _ => "",
    };
    let err_code = clean_text(err_code, "");
    if meaning.is_empty() {
        format!("status:{status} err-code:{err_code}")
    } else {
        format!("status:{status} err-code:{err_code} ({meaning})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_to_kinds() {
        let cases = [
            ("1", ErrorKind::RateLimited, true),
            ("5", ErrorKind::Unavailable, true),
            ("9", ErrorKind::Unavailable, true),
            ("4", ErrorKind::Config, false),
            ("8", ErrorKind::Config, false),
            ("14", ErrorKind::Config, false),
            ("3", ErrorKind::InvalidDestination, false),
            ("7", ErrorKind::InvalidDestination, false),
            ("29", ErrorKind::InvalidDestination, false),
            ("33", ErrorKind::InvalidDestination, false),
            ("6", ErrorKind::Rejected, false),
            ("12", ErrorKind::Rejected, false),
            ("15", ErrorKind::Rejected, false),
            ("2", ErrorKind::Rejected, false),
            ("77", ErrorKind::Other, false),
            ("x", ErrorKind::Other, false),
        ];
        for (status, kind, temporary) in cases {
            let error = status_error(status, Some("words"), "123456");
            assert_eq!(error.kind(), kind, "status {status}");
            assert_eq!(error.is_temporary(), temporary, "status {status}");
            assert!(
                error.message().contains(&format!("status {status}")),
                "{error}"
            );
            assert!(error.message().contains("words"), "{error}");
        }
    }

    #[test]
    fn error_text_is_bounded_and_never_carries_the_code() {
        let long = format!("Bad text 123456 {}", "x".repeat(1000));
        let error = status_error("6", Some(&long), "123456");
        assert!(!error.message().contains("123456"), "{error}");
        assert!(error.message().len() < 300, "{error}");
    }

    #[test]
    fn answers_are_parsed_leniently() {
        let body = br#"{"message-count":"2","messages":[
            {"to":"447700900123","message-id":"A1","status":"0"},
            {"to":"447700900123","message-id":"A2","status":0}]}"#;
        let parts = parse_answer(body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].status, "0");
        assert!(parse_answer(b"<html>").is_none());
        assert!(parse_answer(br#"{"messages":[]}"#).is_none());
    }

    #[test]
    fn receipt_detail_names_the_error() {
        assert_eq!(
            receipt_detail("failed", "2"),
            "status:failed err-code:2 (absent subscriber, temporary)"
        );
        assert_eq!(receipt_detail("expired", ""), "status:expired");
    }
}
