//! The `webhook` carrier: POSTs each message as signed JSON to the in-house gateway, maps its
//! answers to carrier errors and turns its signed receipts into delivery receipts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use verify_carrier::{
    CallbackRequest, CallbackResponse, Capabilities, Carrier, CarrierContext, CarrierError,
    Channel, ErrorKind, InFlightGate, OutboundMessage, PendingReceipts, ReceiptSink,
    SubmitAccepted,
};

use crate::KIND;
use crate::config::WebhookConfig;
use crate::signature::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// Largest gateway answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Longest gateway text put into an error or receipt detail.
const MAX_TEXT: usize = 200;
/// Longest carrier message id accepted from the gateway.
const MAX_ID: usize = 200;
/// Receipt signatures remembered against replays, at most.
/// Receipt signatures remembered at once: past that, receipts are refused for now.
const MAX_SEEN: usize = 1_000_000;

/// The factory registered under [`KIND`]: parses and checks settings, builds the HTTP client,
/// starts nothing.
pub(crate) fn build(
    settings: &serde_json::Value,
    context: CarrierContext,
) -> Result<Arc<dyn Carrier>, CarrierError> {
    let config: WebhookConfig = context.parse_settings(settings)?;
    config.validate().map_err(|e| context.config_error(e))?;
    Ok(Arc::new(WebhookCarrier::new(context, config)?))
}

/// The JSON body of a request to the gateway (documented in the crate's README).
#[derive(Debug, Serialize, Deserialize)]
pub struct GatewayRequest {
    /// verifyd's message id; also the `Idempotency-Key` header.
    pub message_id: String,
    /// The verification the message belongs to.
    pub verification_id: String,
    /// Destination, E.164 with `+`.
    pub to: String,
    /// ISO 3166-1 alpha-2 region of the destination, when known.
    pub region_code: Option<String>,
    /// `sms` or `voice`.
    pub channel: Channel,
    /// The full text to send (or to speak).
    pub body: String,
    /// The code on its own, for voice scripts or the gateway's own templates.
    pub code: String,
    /// Locale of the text, e.g. `en`, `hi-IN`.
    pub locale: String,
    /// Sender to show, when the route sets one.
    pub sender: Option<String>,
    /// Registration values (e.g. `dlt_entity_id`, `dlt_template_id`).
    pub attributes: BTreeMap<String, String>,
    /// Where to POST receipts; `null` when verifyd takes none.
    pub callback_url: Option<String>,
}

/// The JSON body of a receipt from the gateway.
#[derive(Debug, Serialize, Deserialize)]
pub struct GatewayReceipt {
    /// The gateway's id, as answered to the request.
    #[serde(default)]
    pub id: Option<String>,
    /// verifyd's message id.
    #[serde(default)]
    pub message_id: Option<String>,
    /// `delivered` or `failed` (final); `queued`, `sent`, `accepted` (intermediate, ignored).
    pub status: String,
    /// The gateway's words on the outcome.
    #[serde(default)]
    pub detail: Option<String>,
}

/// A generic webhook carrier for an in-house gateway.
pub struct WebhookCarrier {
    name: String,
    config: WebhookConfig,
    client: reqwest::Client,
    callback_url: Option<String>,
    receipts: ReceiptSink,
    gate: InFlightGate,
    pending: PendingReceipts,
    seen: verify_carrier::ReplayGuard,
}

impl std::fmt::Debug for WebhookCarrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookCarrier")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl WebhookCarrier {
    /// A carrier from checked settings ([`WebhookConfig::validate`]); starts nothing.
    pub fn new(context: CarrierContext, config: WebhookConfig) -> Result<Self, CarrierError> {
        let client = verify_carrier::http_client(Duration::from_millis(config.timeout_ms))?;
        // A signature is remembered while its timestamp could still pass the skew check, in
        // either direction.
        let seen =
            verify_carrier::ReplayGuard::new(config.max_clock_skew_s.saturating_mul(2), MAX_SEEN);
        Ok(Self {
            name: context.name,
            config,
            client,
            callback_url: context.callback_url,
            receipts: context.receipts,
            gate: InFlightGate::new(),
            pending: PendingReceipts::new(),
            seen,
        })
    }

    fn host(&self) -> String {
        reqwest::Url::parse(&self.config.url)
            .ok()
            .and_then(|url| url.host_str().map(str::to_string))
            .unwrap_or_else(|| "the gateway".into())
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SubmitAccepted, CarrierError> {
        let request = GatewayRequest {
            message_id: message.message_id.clone(),
            verification_id: message.verification_id.clone(),
            to: message.to.clone(),
            region_code: message.region_code.clone(),
            channel: message.channel,
            body: message.body.clone(),
            code: message.code.expose().to_string(),
            locale: message.locale.clone(),
            sender: message.sender.clone(),
            attributes: message.attributes.clone(),
            callback_url: self.callback_url.clone(),
        };
        let body = serde_json::to_vec(&request)
            .map_err(|e| CarrierError::new(ErrorKind::Other, format!("request body: {e}")))?;
        let timestamp = verify_carrier::unix_now();
        let signature = signature::sign(self.config.secret.expose().as_bytes(), timestamp, &body);
        let mut builder = self
            .client
            .post(&self.config.url)
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .header("idempotency-key", &message.message_id);
        for (name, value) in &self.config.headers {
            builder = builder.header(name.as_str(), value.expose());
        }
        let response = builder
            .body(body)
            .send()
            .await
            .map_err(verify_carrier::request_error)?;
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(|v| clean_text(v, "", 40));
        let (status, answer) = verify_carrier::read_answer(response, MAX_ANSWER_BYTES).await?;
        let code = message.code.expose();
        let host = self.host();
        if status == 504 {
            // The gateway's front end gave up on the service behind it, which may have taken
            // the message.
            return Err(verify_carrier::gateway_timeout(&host));
        }
        let parsed: Option<serde_json::Value> = if answer.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            match serde_json::from_slice(&answer) {
                Ok(value) => Some(value),
                Err(_) if (200..300).contains(&status) => {
                    // Accepted, but the id was lost: the message may be on its way.
                    return Err(verify_carrier::unreadable_acceptance(
                        &host,
                        status,
                        "a body that is not JSON",
                    ));
                }
                Err(_) => {
                    let error = CarrierError::new(
                        ErrorKind::Other,
                        format!("{host} answered HTTP {status} with a body that is not JSON"),
                    );
                    return Err(if status >= 500 {
                        error.set_temporary()
                    } else {
                        error.set_permanent()
                    });
                }
            }
        };
        let field = |name: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(name))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        if (200..300).contains(&status) {
            let id = match field("id") {
                Some(id) if !id.is_empty() && id.len() <= MAX_ID => id,
                Some(_) => {
                    return Err(verify_carrier::unreadable_acceptance(
                        &host,
                        status,
                        "an empty or overlong id",
                    ));
                }
                None => {
                    // Accepted without an id: the message may be on its way, so failing over
                    // would send it twice. Receipts then name verifyd's message id.
                    tracing::warn!(carrier = %self.name, message_id = %message.message_id,
                        "gateway accepted the message without an id; using verifyd's message id");
                    message.message_id.clone()
                }
            };
            self.pending
                .accepted(std::slice::from_ref(&id), &message.message_id);
            return Ok(SubmitAccepted {
                carrier_message_id: id,
            });
        }
        let words = field("error")
            .map(|e| clean_text(&e, code, MAX_TEXT))
            .filter(|e| !e.is_empty())
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        let error = match status {
            429 => {
                let after = retry_after
                    .map(|a| format!(", retry after {a}"))
                    .unwrap_or_default();
                CarrierError::new(
                    ErrorKind::RateLimited,
                    format!("{host} throttled the message (HTTP 429{after}){words}"),
                )
            }
            500.. => CarrierError::new(
                ErrorKind::Unavailable,
                format!("{host} failed (HTTP {status}){words}"),
            ),
            401 | 403 => CarrierError::new(
                ErrorKind::Config,
                format!("{host} refused verifyd's signature or credentials (HTTP {status}){words}"),
            ),
            400..=499 => {
                let kind = match field("kind").as_deref() {
                    Some("invalid_destination") => ErrorKind::InvalidDestination,
                    Some("unsupported") => ErrorKind::Unsupported,
                    _ => ErrorKind::Rejected,
                };
                CarrierError::new(
                    kind,
                    format!("{host} refused the message (HTTP {status}){words}"),
                )
                .set_permanent()
            }
            _ => CarrierError::new(
                ErrorKind::Other,
                format!("{host} answered HTTP {status}{words}"),
            ),
        };
        Err(error)
    }

    /// Checks a receipt's timestamp, signature and freshness; `Err` is the answer to refuse with.
    fn authenticate(&self, request: &CallbackRequest) -> Result<(), CallbackResponse> {
        let now = verify_carrier::unix_now();
        let signature_header = request.header(SIGNATURE_HEADER);
        signature::verify(
            self.config.secret.expose().as_bytes(),
            request.header(TIMESTAMP_HEADER),
            signature_header,
            &request.body,
            now,
            self.config.max_clock_skew_s,
        )
        .map_err(|e| {
            let status = if e == signature::SignatureError::Missing {
                401
            } else {
                403
            };
            CallbackResponse::rejected(status, e.reason())
        })?;
        // A valid signature seen before within the window is a replay.
        match self
            .seen
            .first_use(signature_header.unwrap_or_default(), now)
        {
            Ok(()) => Ok(()),
            Err(verify_carrier::Replay::Seen) => Err(CallbackResponse::rejected(
                403,
                "receipt was already received",
            )),
            Err(verify_carrier::Replay::Full) => Err(CallbackResponse::rejected(
                503,
                "too many receipts to check for replays; retry later",
            )),
        }
    }
}

#[async_trait]
impl Carrier for WebhookCarrier {
    async fn start(&self) -> Result<(), CarrierError> {
        if self.callback_url.is_none() {
            tracing::warn!(carrier = %self.name, "no callback URL (set [callbacks] in the server config): the gateway cannot send receipts");
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
            max_messages_per_second: self.config.max_messages_per_second,
            delivery_receipts: self.callback_url.is_some(),
            // Every request carries `Idempotency-Key`, which gateways must honour (see README).
            deduplicates_submissions: true,
        }
    }

    async fn submit(&self, message: OutboundMessage) -> Result<SubmitAccepted, CarrierError> {
        let _in_flight = self.gate.enter(&self.name)?;
        if !self.config.channels.contains(&message.channel) {
            return Err(CarrierError::new(
                ErrorKind::Unsupported,
                format!("carrier `{}` does not carry {}", self.name, message.channel),
            )
            .set_permanent());
        }
        self.send(&message).await
    }

    async fn handle_callback(&self, request: CallbackRequest) -> CallbackResponse {
        if request.method != "POST" {
            return CallbackResponse::rejected(405, "receipts are POSTed");
        }
        if let Err(refusal) = self.authenticate(&request) {
            return refusal;
        }
        let Ok(receipt) = serde_json::from_slice::<GatewayReceipt>(&request.body) else {
            return CallbackResponse::rejected(400, "receipt body is not the documented JSON");
        };
        let key = receipt
            .id
            .clone()
            .filter(|id| !id.is_empty())
            .or_else(|| receipt.message_id.clone().filter(|id| !id.is_empty()));
        let Some(key) = key else {
            return CallbackResponse::rejected(400, "receipt names neither id nor message_id");
        };
        let delivered = match receipt.status.as_str() {
            "delivered" => true,
            "failed" => false,
            "queued" | "sent" | "accepted" => return CallbackResponse::ok(),
            _ => return CallbackResponse::rejected(400, "receipt with an unknown status"),
        };
        let detail = receipt
            .detail
            .as_deref()
            .map(|d| clean_text(d, "", MAX_TEXT))
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| receipt.status.clone());
        let message_id = receipt.message_id.filter(|id| !id.is_empty());
        // Waits while verifyd is behind on receipts: the vendor's request waits with it.
        let Some(permit) = self.receipts.reserve().await else {
            return CallbackResponse::rejected(503, "verifyd is not taking receipts now");
        };
        self.pending
            .report(permit, &self.name, &key, delivered, message_id, detail);
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

/// Gateway text fit for an error: at most `max` characters, one line, without the code.
fn clean_text(text: &str, code: &str, max: usize) -> String {
    verify_carrier::vendor_text(text, code, max)
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_text_bounds_and_redacts() {
        let text = format!("bad\ncode 424242 {}", "y".repeat(500));
        let clean = clean_text(&text, "424242", MAX_TEXT);
        assert!(
            !clean.contains("424242") && !clean.contains('\n'),
            "{clean}"
        );
        assert!(clean.chars().count() <= MAX_TEXT + 6);
    }
}
