//! The `smpp` carrier: the factory the registry calls and the [`Carrier`] implementation that
//! turns an [`OutboundMessage`] into submit_sm PDUs spread over the carrier's binds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use verify_carrier::{
    Capabilities, Carrier, CarrierContext, CarrierError, Channel, ErrorKind, InFlightGate,
    OutboundMessage, SubmitAccepted, mask_number,
};

use crate::KIND;
use crate::config::{BindMode, SmppConfig, TlvEncoding, source_address, validate_sender};
use crate::pdu::{Address, ShortMessage, Tlv, command, status, status_name};
use crate::receipt::{GroupId, Tracker};
use crate::session::{Reply, Role, SendError, Session, Shared};
use crate::text::{TextError, encode_message};

/// Builds an `smpp` carrier from its settings. Starts nothing: binds open in [`Carrier::start`].
pub fn build(
    settings: &serde_json::Value,
    context: CarrierContext,
) -> Result<Arc<dyn Carrier>, CarrierError> {
    let config = SmppConfig::from_settings(settings).map_err(|e| context.config_error(e))?;
    Ok(Arc::new(SmppCarrier::new(context, config)))
}

/// An SMPP 3.4 client carrier: `binds` connections to one SMSC.
pub struct SmppCarrier {
    name: String,
    config: Arc<SmppConfig>,
    shared: Arc<Shared>,
    sessions: Vec<Arc<Session>>,
    gate: InFlightGate,
    started: AtomicBool,
    next_session: AtomicUsize,
    reference: AtomicU8,
    stop: CancellationToken,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for SmppCarrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmppCarrier")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SmppCarrier {
    /// A carrier named by `context`, with its binds not yet started.
    pub fn new(context: CarrierContext, config: SmppConfig) -> Self {
        let config = Arc::new(config);
        let shared = Arc::new(Shared {
            carrier: context.name.clone(),
            config: Arc::clone(&config),
            tracker: Tracker::new(config.tracked_messages, config.receipt_id_format),
            receipts: context.receipts,
            bind_up: Notify::new(),
        });
        let roles: &[Role] = match config.bind_mode {
            BindMode::Transceiver => &[Role::Transceiver],
            BindMode::TransmitterReceiver => &[Role::Transmitter, Role::Receiver],
        };
        let sessions = (0..config.binds)
            .flat_map(|index| roles.iter().map(move |&role| (index, role)))
            .map(|(index, role)| Arc::new(Session::new(Arc::clone(&shared), index, role)))
            .collect();
        Self {
            name: context.name,
            config,
            shared,
            sessions,
            gate: InFlightGate::new(),
            started: AtomicBool::new(false),
            next_session: AtomicUsize::new(0),
            reference: AtomicU8::new(0),
            stop: CancellationToken::new(),
            tasks: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Binds that are up now (for tests and health).
    pub fn binds_up(&self) -> usize {
        self.sessions.iter().filter(|s| s.is_up()).count()
    }

    /// The bind with the fewest outstanding submits, waiting up to `connect_wait_ms` for one.
    async fn pick_session(&self) -> Result<Arc<Session>, CarrierError> {
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(self.config.connect_wait_ms);
        loop {
            let bind_up = self.shared.bind_up.notified();
            if let Some(session) = self.least_busy() {
                return Ok(session);
            }
            if tokio::time::timeout_at(deadline, bind_up).await.is_err() {
                if let Some(session) = self.least_busy() {
                    return Ok(session);
                }
                let last = self
                    .sessions
                    .iter()
                    .find_map(|s| s.last_error())
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default();
                return Err(CarrierError::new(
                    ErrorKind::Unavailable,
                    format!(
                        "carrier `{}`: no SMPP bind up after {} ms{last}",
                        self.name, self.config.connect_wait_ms
                    ),
                ));
            }
        }
    }

    fn least_busy(&self) -> Option<Arc<Session>> {
        let count = self.sessions.len();
        let start = self.next_session.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|i| &self.sessions[(start + i) % count])
            .filter(|s| s.role().can_submit() && s.is_up())
            .min_by_key(|s| s.outstanding())
            .cloned()
    }

    /// Builds the submit_sm PDUs (with sequence 0) of `message`, or a permanent refusal.
    fn encode(&self, message: &OutboundMessage) -> Result<Vec<Bytes>, CarrierError> {
        let refuse = |kind: ErrorKind, text: String| {
            CarrierError::new(kind, format!("carrier `{}`: {text}", self.name)).set_permanent()
        };
        let digits = message.to.strip_prefix('+').unwrap_or(&message.to);
        if digits.is_empty() || digits.len() > 20 || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(refuse(
                ErrorKind::InvalidDestination,
                format!(
                    "destination {} is not an E.164 number",
                    mask_number(&message.to)
                ),
            ));
        }
        let sender = message
            .sender
            .as_deref()
            .or(self.config.source_addr.as_deref())
            .unwrap_or("");
        if !sender.is_empty() {
            validate_sender("sender", sender).map_err(|e| refuse(ErrorKind::Rejected, e))?;
        }
        let (ton, npi, addr) = if sender.is_empty() {
            (
                self.config.source_addr_ton.unwrap_or(0),
                self.config.source_addr_npi.unwrap_or(0),
                String::new(),
            )
        } else {
            source_address(
                sender,
                self.config.source_addr_ton,
                self.config.source_addr_npi,
            )
        };
        let mut tlvs = Vec::with_capacity(self.config.tlvs.len());
        for setting in &self.config.tlvs {
            let value = match (&setting.value, &setting.attribute) {
                (Some(value), _) => value.as_str(),
                (None, Some(name)) => message
                    .attributes
                    .get(name)
                    .map(String::as_str)
                    .ok_or_else(|| {
                        refuse(
                            ErrorKind::Rejected,
                            format!(
                                "the message lacks attribute `{name}`, required for TLV 0x{:04X}",
                                setting.tag
                            ),
                        )
                    })?,
                (None, None) => "",
            };
            let mut octets = value.as_bytes().to_vec();
            if setting.encoding == TlvEncoding::Cstring {
                octets.push(0);
            }
            tlvs.push(Tlv {
                tag: setting.tag,
                value: Bytes::from(octets),
            });
        }
        let reference = self.reference.fetch_add(1, Ordering::Relaxed);
        let encoded = encode_message(&message.body, reference).map_err(|e| match e {
            TextError::TooLong { parts } => refuse(
                ErrorKind::Rejected,
                format!("the text needs {parts} parts; at most 255 can be joined"),
            ),
        })?;
        encoded
            .parts
            .into_iter()
            .map(|part| {
                ShortMessage {
                    service_type: self.config.service_type.clone(),
                    source: Address {
                        ton,
                        npi,
                        addr: addr.clone(),
                    },
                    destination: Address {
                        ton: self.config.dest_addr_ton,
                        npi: self.config.dest_addr_npi,
                        addr: digits.to_string(),
                    },
                    esm_class: part.esm_class,
                    registered_delivery: self.config.registered_delivery,
                    data_coding: encoded.data_coding,
                    short_message: part.short_message,
                    tlvs: tlvs.clone(),
                    ..ShortMessage::default()
                }
                .encode(command::SUBMIT_SM, 0)
                .map_err(|e| refuse(ErrorKind::Rejected, format!("submit_sm not encodable: {e}")))
            })
            .collect()
    }

    /// Submits one part: picks a bind, retries throttling, maps the answer.
    async fn submit_part(
        &self,
        pdu: &[u8],
        track: Option<(GroupId, usize)>,
        to: &str,
    ) -> Result<String, CarrierError> {
        let mut throttled = 0;
        let mut not_up = 0;
        let error = |kind: ErrorKind, text: String| {
            CarrierError::new(kind, format!("carrier `{}`: {text}", self.name))
        };
        loop {
            let session = self.pick_session().await?;
            let reply = match session.submit(pdu, track).await {
                Ok(reply) => reply,
                // Nothing was queued: another bind (or a later try) may take it.
                Err(SendError::NotUp) => {
                    not_up += 1;
                    if not_up > 3 {
                        return Err(error(
                            ErrorKind::Unavailable,
                            "SMPP binds keep dropping".into(),
                        ));
                    }
                    continue;
                }
                // The PDU was queued to the SMSC and no answer came: it may have the message.
                Err(SendError::Timeout) => {
                    return Err(CarrierError::maybe_sent(
                        ErrorKind::Timeout,
                        format!(
                            "carrier `{}`: no submit_sm_resp within {} ms",
                            self.name, self.config.response_timeout_ms
                        ),
                    ));
                }
            };
            match reply {
                Reply::Response {
                    status: status::ESME_ROK,
                    message_id,
                } => return Ok(message_id),
                Reply::Response { status: code, .. }
                    if code == status::ESME_RTHROTTLED || code == status::ESME_RMSGQFUL =>
                {
                    throttled += 1;
                    if throttled > self.config.throttle_retries {
                        tracing::warn!(carrier = %self.name, to = %mask_number(to), status_name = status_name(code), attempts = throttled, "SMSC still throttling; giving up for now");
                        return Err(error(
                            ErrorKind::RateLimited,
                            format!(
                                "SMSC throttled the message {throttled} times: {} (0x{code:08X})",
                                status_name(code)
                            ),
                        ));
                    }
                    tracing::info!(carrier = %self.name, to = %mask_number(to), status_name = status_name(code), attempt = throttled, delay_ms = self.config.throttle_retry_delay_ms, "SMSC throttling; retrying later");
                    tokio::time::sleep(Duration::from_millis(self.config.throttle_retry_delay_ms))
                        .await;
                }
                Reply::Response { status: code, .. } => {
                    let described = format!("{} (0x{code:08X})", status_name(code));
                    let (kind, text) = match code {
                        status::ESME_RINVDSTADR => (
                            ErrorKind::InvalidDestination,
                            format!("SMSC refused destination {}: {described}", mask_number(to)),
                        ),
                        status::ESME_RINVSRCADR => (
                            ErrorKind::Rejected,
                            format!("SMSC refused the sender: {described}"),
                        ),
                        _ => (
                            ErrorKind::Rejected,
                            format!("SMSC refused the message: {described}"),
                        ),
                    };
                    return Err(error(kind, text).set_permanent());
                }
                Reply::Nack(code) => {
                    return Err(error(
                        ErrorKind::Other,
                        format!(
                            "SMSC answered generic_nack {} (0x{code:08X})",
                            status_name(code)
                        ),
                    )
                    .set_temporary());
                }
                // The bind dropped after the PDU was queued: the SMSC may have read it, so the
                // message must not go to another route (a duplicate).
                Reply::LinkLost => {
                    return Err(CarrierError::maybe_sent(
                        ErrorKind::Unavailable,
                        format!(
                            "carrier `{}`: the SMPP bind dropped after the submit_sm was sent, before the SMSC answered",
                            self.name
                        ),
                    ));
                }
                // ESME_ROK without a readable message_id: the SMSC took the message.
                Reply::Malformed(reason) => {
                    return Err(CarrierError::maybe_sent(
                        ErrorKind::Other,
                        format!("carrier `{}`: {reason}", self.name),
                    ));
                }
            }
        }
    }
}

#[async_trait]
impl Carrier for SmppCarrier {
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
            max_messages_per_second: self
                .config
                .max_messages_per_second
                .map(|rate| rate.saturating_mul(self.config.binds as u32)),
            delivery_receipts: self.config.registered_delivery != 0,
            deduplicates_submissions: false,
        }
    }

    async fn submit(&self, message: OutboundMessage) -> Result<SubmitAccepted, CarrierError> {
        let _in_flight = self.gate.enter(&self.name)?;
        if message.channel != Channel::Sms {
            return Err(CarrierError::new(
                ErrorKind::Unsupported,
                format!(
                    "carrier `{}` (SMPP) carries SMS only, not {}",
                    self.name, message.channel
                ),
            )
            .set_permanent());
        }
        let pdus = self.encode(&message)?;
        // Without registered delivery no receipt will come: nothing to track or wait for.
        let group = (self.config.registered_delivery != 0)
            .then(|| self.shared.tracker.open(&message.message_id, pdus.len()));
        let mut first = None;
        for (index, pdu) in pdus.iter().enumerate() {
            match self
                .submit_part(pdu, group.map(|g| (g, index)), &message.to)
                .await
            {
                Ok(id) => {
                    first.get_or_insert(id);
                }
                Err(error) => {
                    // Earlier parts went out: whatever happened to this one, the phone may show
                    // part of the text, and sending the message again (here or on another
                    // route) would repeat it. Maybe sent.
                    let error = if index > 0 && !error.is_maybe_sent() {
                        CarrierError::maybe_sent(
                            error.kind(),
                            format!(
                                "carrier `{}`: part {} of {} failed after the SMSC took the earlier parts ({})",
                                self.name,
                                index + 1,
                                pdus.len(),
                                error.message()
                            ),
                        )
                    } else {
                        error
                    };
                    // A maybe-sent message stays tracked (not awaited at shutdown): a late
                    // answer and a receipt for a part that went out still name the message.
                    if let Some(group) = group
                        && !error.is_maybe_sent()
                    {
                        self.shared.tracker.abandon(group);
                    }
                    tracing::debug!(carrier = %self.name, to = %mask_number(&message.to), part = index, maybe_sent = error.is_maybe_sent(), error = %error, "submit failed");
                    return Err(error);
                }
            }
        }
        if let Some(group) = group {
            self.shared.tracker.accepted(group);
        }
        let carrier_message_id = first.unwrap_or_default();
        tracing::debug!(carrier = %self.name, to = %mask_number(&message.to), parts = pdus.len(), carrier_message_id = %carrier_message_id, "submitted");
        Ok(SubmitAccepted { carrier_message_id })
    }

    async fn start(&self) -> Result<(), CarrierError> {
        if self.started.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        for session in &self.sessions {
            tasks.push(tokio::spawn(
                Arc::clone(session).run(self.stop.child_token()),
            ));
        }
        Ok(())
    }

    async fn shutdown(&self) {
        self.gate.close();
        // Outstanding submits get their responses (each is bounded by the response timeout).
        self.gate.wait_idle(None).await;
        let wait = Duration::from_millis(self.config.shutdown_receipt_wait_ms);
        if tokio::time::timeout(wait, self.shared.tracker.wait_settled())
            .await
            .is_err()
        {
            tracing::warn!(carrier = %self.name, awaiting = self.shared.tracker.awaiting(), "shutdown: receipts still missing after the wait");
        }
        self.stop.cancel();
        let tasks: Vec<_> = self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
        }
        tracing::info!(carrier = %self.name, "SMPP carrier stopped");
    }
}

impl Drop for SmppCarrier {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
