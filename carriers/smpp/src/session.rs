//! One SMPP bind: connects, binds, keeps the link alive with enquire_link, matches submit_sm to
//! responses by sequence number within a window, answers the SMSC's requests, turns deliver_sm
//! receipts into [`DeliveryReceipt`]s, and reconnects with back-off when the link drops.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use verify_carrier::{DeliveryReceipt, ReceiptSink};

use crate::config::SmppConfig;
use crate::pdu::{self, Bind, Frame, PduCodec, ShortMessage, command, status, status_name};
use crate::receipt::{GroupId, Tracker, parse_deliver_sm};

/// What a bind connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Submits and receipts.
    Transceiver,
    /// Submits only.
    Transmitter,
    /// Receipts only.
    Receiver,
}

impl Role {
    fn bind_command(self) -> (u32, u32) {
        match self {
            Role::Transceiver => (command::BIND_TRANSCEIVER, command::BIND_TRANSCEIVER_RESP),
            Role::Transmitter => (command::BIND_TRANSMITTER, command::BIND_TRANSMITTER_RESP),
            Role::Receiver => (command::BIND_RECEIVER, command::BIND_RECEIVER_RESP),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Role::Transceiver => "transceiver",
            Role::Transmitter => "transmitter",
            Role::Receiver => "receiver",
        }
    }

    /// Whether submits may use this bind.
    pub fn can_submit(self) -> bool {
        self != Role::Receiver
    }
}

/// What every bind of one carrier shares.
#[derive(Debug)]
pub struct Shared {
    /// The carrier's configured name.
    pub carrier: String,
    /// Settings.
    pub config: Arc<SmppConfig>,
    /// Receipt matching.
    pub tracker: Tracker,
    /// Where receipts go.
    pub receipts: ReceiptSink,
    /// Woken whenever a bind comes up.
    pub bind_up: Notify,
}

/// What became of one submit_sm that was queued to the writer (it may have reached the SMSC).
#[derive(Debug)]
pub enum Reply {
    /// submit_sm_resp.
    Response {
        /// command_status.
        status: u32,
        /// message_id (empty when refused).
        message_id: String,
    },
    /// generic_nack naming our sequence number.
    Nack(u32),
    /// The bind dropped before an answer came: the SMSC may have read the PDU.
    LinkLost,
    /// A submit_sm_resp with status ESME_ROK we could not read (no or a broken message_id):
    /// the SMSC took the message.
    Malformed(String),
}

/// Why a submit_sm got no [`Reply`].
#[derive(Debug)]
pub enum SendError {
    /// The bind is down; nothing was queued, nothing sent.
    NotUp,
    /// No answer within the response timeout after the PDU was queued: the SMSC may have it.
    Timeout,
}

/// Submits whose answer is still awaited, or (with a closed `reply`) that timed out and whose
/// late answer may still come: kept at most this many beyond the window per bind, so a late
/// submit_sm_resp still records the part's id and its receipt can name the message.
const LATE_ANSWERS_KEPT: usize = 1024;

struct Pending {
    reply: oneshot::Sender<Reply>,
    track: Option<(GroupId, usize)>,
}

struct Link {
    out: mpsc::UnboundedSender<Bytes>,
    pending: HashMap<u32, Pending>,
}

/// Reservation-style token bucket: each caller learns how long to wait for its token.
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u32) -> Self {
        let rate = f64::from(rate);
        let burst = (rate / 10.0).max(1.0);
        Self {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    fn reserve(&mut self) -> Duration {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst) - 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// One bind (one TCP connection) and its state.
pub struct Session {
    label: String,
    role: Role,
    shared: Arc<Shared>,
    link: Mutex<Option<Link>>,
    up: AtomicBool,
    window: Semaphore,
    window_size: usize,
    sequence: AtomicU32,
    rate: Option<Mutex<TokenBucket>>,
    last_error: Mutex<Option<String>>,
}

/// How a connection ended.
enum Ended {
    /// Shutdown asked for it (after unbind).
    Stopped,
    /// Lost; `was_up` says whether the bind had come up.
    Lost { was_up: bool, reason: String },
}

enum Flow {
    Continue,
    PeerUnbound,
    UnbindResp,
}

impl Session {
    /// A bind of `role`, numbered `index` within its carrier.
    pub fn new(shared: Arc<Shared>, index: usize, role: Role) -> Self {
        let config = &shared.config;
        Self {
            label: format!("{}#{index}/{}", shared.carrier, role.as_str()),
            role,
            window: Semaphore::new(config.window),
            window_size: config.window,
            sequence: AtomicU32::new(0),
            rate: config
                .max_messages_per_second
                .map(|rate| Mutex::new(TokenBucket::new(rate))),
            link: Mutex::new(None),
            up: AtomicBool::new(false),
            last_error: Mutex::new(None),
            shared,
        }
    }

    /// What the bind is for.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the bind is up.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// submit_sm awaiting their response.
    pub fn outstanding(&self) -> usize {
        self.window_size - self.window.available_permits()
    }

    /// Why the last connection attempt failed, for "unavailable" errors.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    fn next_sequence(&self) -> u32 {
        // Sequence numbers run 1..=0x7FFFFFFF and wrap.
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        (n % 0x7FFF_FFFF) + 1
    }

    /// Sends one submit_sm (`template` is the encoded PDU; its sequence number is set here)
    /// within the window and the rate limit, and waits for its answer.
    pub async fn submit(
        &self,
        template: &[u8],
        track: Option<(GroupId, usize)>,
    ) -> Result<Reply, SendError> {
        if !self.is_up() {
            return Err(SendError::NotUp);
        }
        let Ok(_permit) = self.window.acquire().await else {
            return Err(SendError::NotUp);
        };
        if let Some(bucket) = &self.rate {
            let wait = lock(bucket).reserve();
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        let sequence = self.next_sequence();
        let mut pdu = BytesMut::from(template);
        if pdu.len() >= pdu::HEADER_LEN {
            pdu[12..16].copy_from_slice(&sequence.to_be_bytes());
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        {
            let mut link = lock(&self.link);
            let Some(link) = link.as_mut() else {
                return Err(SendError::NotUp);
            };
            if link.out.send(pdu.freeze()).is_err() {
                return Err(SendError::NotUp);
            }
            // From here on the PDU may reach the SMSC: every outcome but an answer is "maybe
            // sent" for the caller.
            if link.pending.len() >= self.window_size + LATE_ANSWERS_KEPT {
                link.pending.retain(|_, pending| !pending.reply.is_closed());
            }
            link.pending.insert(
                sequence,
                Pending {
                    reply: reply_tx,
                    track,
                },
            );
        }
        match tokio::time::timeout(self.shared.config.response_timeout(), reply_rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Ok(Reply::LinkLost),
            // The entry stays (its reply closed): a late submit_sm_resp still records the id.
            Err(_) => Err(SendError::Timeout),
        }
    }

    /// Keeps the bind up until `stop` is cancelled: connect, bind, serve, and on loss wait the
    /// back-off and try again.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let config = Arc::clone(&self.shared.config);
        let min = Duration::from_millis(config.reconnect_min_ms);
        let max = Duration::from_millis(config.reconnect_max_ms);
        let mut backoff = min;
        let mut attempt: u32 = 0;
        while !stop.is_cancelled() {
            attempt += 1;
            let ended = self.connect_and_serve(&stop).await;
            match ended {
                Ended::Stopped => break,
                Ended::Lost { was_up, reason } => {
                    if was_up {
                        tracing::warn!(carrier = %self.shared.carrier, bind = %self.label, reason = %reason, "SMPP bind down");
                        backoff = min;
                        attempt = 1;
                    } else {
                        tracing::warn!(carrier = %self.shared.carrier, bind = %self.label, attempt, reason = %reason, "SMPP bind attempt failed");
                    }
                    *lock(&self.last_error) = Some(reason);
                }
            }
            tracing::info!(carrier = %self.shared.carrier, bind = %self.label, attempt, backoff_ms = backoff.as_millis() as u64, "SMPP reconnecting after back-off");
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = stop.cancelled() => break,
            }
            backoff = (backoff * 2).min(max);
        }
        self.tear_down();
    }

    fn tear_down(&self) {
        self.up.store(false, Ordering::Release);
        let link = lock(&self.link).take();
        if let Some(link) = link {
            for (_, pending) in link.pending {
                let _ = pending.reply.send(Reply::LinkLost);
            }
        }
    }

    async fn open(&self) -> Result<(FramedRead<OwnedReadHalf, PduCodec>, OwnedWriteHalf), String> {
        let config = &self.shared.config;
        let connect = TcpStream::connect((config.host.as_str(), config.port));
        let stream =
            match tokio::time::timeout(Duration::from_millis(config.connect_timeout_ms), connect)
                .await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    return Err(format!(
                        "connect to {}:{} failed: {e}",
                        config.host, config.port
                    ));
                }
                Err(_) => {
                    return Err(format!(
                        "connect to {}:{} timed out",
                        config.host, config.port
                    ));
                }
            };
        let _ = stream.set_nodelay(true);
        let (read_half, mut write_half) = stream.into_split();
        let mut reader = FramedRead::with_capacity(read_half, PduCodec, 64 * 1024);
        self.bind(&mut reader, &mut write_half).await?;
        Ok((reader, write_half))
    }

    async fn connect_and_serve(&self, stop: &CancellationToken) -> Ended {
        let config = &self.shared.config;
        let opened = tokio::select! {
            opened = self.open() => opened,
            () = stop.cancelled() => return Ended::Stopped,
        };
        let (mut reader, write_half) = match opened {
            Ok(halves) => halves,
            Err(reason) => {
                return Ended::Lost {
                    was_up: false,
                    reason,
                };
            }
        };
        tracing::info!(carrier = %self.shared.carrier, bind = %self.label, system_id = %config.system_id, host = %config.host, port = config.port, "SMPP bind up");
        *lock(&self.last_error) = None;
        let (out, out_rx) = mpsc::unbounded_channel();
        let mut writer = tokio::spawn(write_loop(write_half, out_rx));
        *lock(&self.link) = Some(Link {
            out: out.clone(),
            pending: HashMap::new(),
        });
        self.up.store(true, Ordering::Release);
        self.shared.bind_up.notify_waiters();
        let ended = self.serve(&mut reader, &out, &mut writer, stop).await;
        self.tear_down();
        drop(out);
        // Let the writer flush what is queued (the unbind, responses), then close. A writer
        // that already ended was awaited by `serve` and must not be polled again.
        if !writer.is_finished()
            && tokio::time::timeout(Duration::from_secs(1), &mut writer)
                .await
                .is_err()
        {
            writer.abort();
        }
        ended
    }

    async fn bind(
        &self,
        reader: &mut FramedRead<OwnedReadHalf, PduCodec>,
        writer: &mut OwnedWriteHalf,
    ) -> Result<(), String> {
        let config = &self.shared.config;
        let (request, response) = self.role.bind_command();
        let sequence = self.next_sequence();
        let bind = Bind {
            command_id: request,
            system_id: config.system_id.clone(),
            password: config.password.expose().to_string(),
            system_type: config.system_type.clone(),
            interface_version: pdu::INTERFACE_VERSION_34,
            addr_ton: 0,
            addr_npi: 0,
            address_range: String::new(),
        };
        let encoded = bind
            .encode(sequence)
            .map_err(|e| format!("bind not encodable: {e}"))?;
        writer
            .write_all(&encoded)
            .await
            .map_err(|e| format!("bind write failed: {e}"))?;
        let answer = async {
            loop {
                match reader.next().await {
                    None => return Err("SMSC closed the connection during bind".to_string()),
                    Some(Err(e)) => return Err(format!("unreadable PDU during bind: {e}")),
                    Some(Ok(frame)) if frame.sequence == sequence => return Ok(frame),
                    Some(Ok(frame)) if frame.command_id == command::ENQUIRE_LINK => {
                        let resp = pdu::header_only(command::ENQUIRE_LINK_RESP, 0, frame.sequence);
                        writer
                            .write_all(&resp)
                            .await
                            .map_err(|e| format!("write failed during bind: {e}"))?;
                    }
                    Some(Ok(_)) => {}
                }
            }
        };
        let frame = tokio::time::timeout(config.response_timeout(), answer)
            .await
            .map_err(|_| "no bind response in time".to_string())??;
        if frame.command_id == command::GENERIC_NACK {
            return Err(format!(
                "bind answered with generic_nack {} (0x{:08X})",
                status_name(frame.status),
                frame.status
            ));
        }
        if frame.command_id != response {
            return Err(format!(
                "unexpected answer 0x{:08X} to bind",
                frame.command_id
            ));
        }
        if frame.status != status::ESME_ROK {
            let hint = match frame.status {
                status::ESME_RBINDFAIL | status::ESME_RINVPASWD | status::ESME_RINVSYSID => {
                    "check system_id and password"
                }
                _ => "",
            };
            tracing::error!(carrier = %self.shared.carrier, bind = %self.label, system_id = %config.system_id, status = %format!("0x{:08X}", frame.status), status_name = status_name(frame.status), hint, "SMPP bind refused");
            return Err(format!(
                "bind refused: {} (0x{:08X}) {hint}",
                status_name(frame.status),
                frame.status
            ));
        }
        Ok(())
    }

    async fn serve(
        &self,
        reader: &mut FramedRead<OwnedReadHalf, PduCodec>,
        out: &mpsc::UnboundedSender<Bytes>,
        writer: &mut JoinHandle<std::io::Result<()>>,
        stop: &CancellationToken,
    ) -> Ended {
        let config = &self.shared.config;
        let interval = Duration::from_millis(config.enquire_link_interval_ms);
        let mut next_enquire = Instant::now() + interval;
        let mut awaiting_enquire: Option<(u32, Instant)> = None;
        let mut unbind_deadline: Option<Instant> = None;
        let lost = |reason: String| Ended::Lost {
            was_up: true,
            reason,
        };
        loop {
            let mut wake = next_enquire;
            if let Some((_, deadline)) = awaiting_enquire {
                wake = wake.min(deadline);
            }
            if let Some(deadline) = unbind_deadline {
                wake = wake.min(deadline);
            }
            tokio::select! {
                frame = reader.next() => match frame {
                    None => return lost("SMSC closed the connection".into()),
                    Some(Err(e)) => {
                        let _ = out.send(pdu::header_only(command::GENERIC_NACK, status::ESME_RINVCMDLEN, 0));
                        return lost(format!("unreadable PDU: {e}"));
                    }
                    Some(Ok(frame)) => {
                        if frame.command_id == command::ENQUIRE_LINK_RESP
                            || (frame.command_id == command::GENERIC_NACK
                                && awaiting_enquire.is_some_and(|(s, _)| s == frame.sequence))
                        {
                            if awaiting_enquire.is_some_and(|(s, _)| s == frame.sequence) {
                                awaiting_enquire = None;
                            }
                            continue;
                        }
                        let handling = Instant::now();
                        let flow = self.handle(frame, out).await;
                        // Time spent waiting for room for a receipt is not the SMSC's silence.
                        let waited = handling.elapsed();
                        if let Some((_, deadline)) = awaiting_enquire.as_mut() {
                            *deadline += waited;
                        }
                        match flow {
                            Flow::Continue => {}
                            Flow::PeerUnbound => return lost("SMSC sent unbind".into()),
                            Flow::UnbindResp => {
                                tracing::info!(carrier = %self.shared.carrier, bind = %self.label, "SMPP unbound");
                                return Ended::Stopped;
                            }
                        }
                    }
                },
                () = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    if unbind_deadline.is_some_and(|d| now >= d) {
                        tracing::info!(carrier = %self.shared.carrier, bind = %self.label, "SMPP closed without unbind_resp");
                        return Ended::Stopped;
                    }
                    if awaiting_enquire.is_some_and(|(_, d)| now >= d) {
                        return lost(format!("no enquire_link_resp within {} ms", config.response_timeout_ms));
                    }
                    if now >= next_enquire {
                        if awaiting_enquire.is_none() && unbind_deadline.is_none() {
                            let sequence = self.next_sequence();
                            let _ = out.send(pdu::header_only(command::ENQUIRE_LINK, 0, sequence));
                            awaiting_enquire = Some((sequence, now + config.response_timeout()));
                        }
                        next_enquire = now + interval;
                    }
                },
                () = stop.cancelled(), if unbind_deadline.is_none() => {
                    self.up.store(false, Ordering::Release);
                    let sequence = self.next_sequence();
                    let _ = out.send(pdu::header_only(command::UNBIND, 0, sequence));
                    unbind_deadline = Some(Instant::now() + Duration::from_secs(1).min(config.response_timeout()));
                },
                result = &mut *writer => {
                    let reason = match result {
                        Ok(Err(e)) => format!("write failed: {e}"),
                        _ => "writer stopped".to_string(),
                    };
                    return lost(reason);
                },
            }
        }
    }

    async fn handle(&self, frame: Frame, out: &mpsc::UnboundedSender<Bytes>) -> Flow {
        match frame.command_id {
            command::SUBMIT_SM_RESP => self.on_submit_sm_resp(frame),
            command::GENERIC_NACK => {
                tracing::warn!(carrier = %self.shared.carrier, bind = %self.label, sequence = frame.sequence, status = %format!("0x{:08X}", frame.status), status_name = status_name(frame.status), "SMSC sent generic_nack");
                let pending = lock(&self.link)
                    .as_mut()
                    .and_then(|link| link.pending.remove(&frame.sequence));
                if let Some(pending) = pending {
                    let _ = pending.reply.send(Reply::Nack(frame.status));
                }
            }
            command::DELIVER_SM => self.on_deliver_sm(frame, out).await,
            command::ENQUIRE_LINK => {
                let _ = out.send(pdu::header_only(
                    command::ENQUIRE_LINK_RESP,
                    0,
                    frame.sequence,
                ));
            }
            command::UNBIND => {
                let _ = out.send(pdu::header_only(command::UNBIND_RESP, 0, frame.sequence));
                self.up.store(false, Ordering::Release);
                return Flow::PeerUnbound;
            }
            command::UNBIND_RESP => return Flow::UnbindResp,
            id if command::is_response(id) => {
                tracing::debug!(carrier = %self.shared.carrier, bind = %self.label, command_id = %format!("0x{id:08X}"), "ignoring unexpected response");
            }
            id => {
                tracing::debug!(carrier = %self.shared.carrier, bind = %self.label, command_id = %format!("0x{id:08X}"), "answering unsupported command with generic_nack");
                let _ = out.send(pdu::header_only(
                    command::GENERIC_NACK,
                    status::ESME_RINVCMDID,
                    frame.sequence,
                ));
            }
        }
        Flow::Continue
    }

    fn on_submit_sm_resp(&self, frame: Frame) {
        let pending = lock(&self.link)
            .as_mut()
            .and_then(|link| link.pending.remove(&frame.sequence));
        let Some(pending) = pending else {
            tracing::debug!(carrier = %self.shared.carrier, bind = %self.label, sequence = frame.sequence, "submit_sm_resp for no pending submit (timed out?)");
            return;
        };
        let reply = if frame.status != status::ESME_ROK {
            Reply::Response {
                status: frame.status,
                message_id: String::new(),
            }
        } else {
            match pdu::decode_submit_sm_resp(&frame.body) {
                Ok(message_id) if !message_id.is_empty() => {
                    // Registered before the submitter learns of it, so a receipt read right
                    // after this response already finds its message.
                    if let Some((group, index)) = pending.track {
                        self.shared.tracker.part_accepted(group, index, &message_id);
                    }
                    Reply::Response {
                        status: frame.status,
                        message_id,
                    }
                }
                Ok(_) => Reply::Malformed("submit_sm_resp without a message_id".into()),
                Err(e) => Reply::Malformed(format!("unreadable submit_sm_resp: {e}")),
            }
        };
        let _ = pending.reply.send(reply);
    }

    /// Reads a deliver_sm. A receipt waits for room in the receipt sink before it is matched
    /// and handed over, and only then is deliver_sm_resp sent: a receipt the server has not
    /// taken is never acknowledged, and a full sink slows the SMSC (it gets no deliver_sm_resp
    /// and TCP stops reading) instead of growing memory.
    ///
    /// This read loop waits meanwhile, so on a transceiver bind the submit_sm_resp queued
    /// behind the receipt waits too: submits on that bind that are not answered within
    /// `response_timeout_ms` end as maybe sent. The enquire_link deadline is moved by the wait
    /// (see `serve`). With `bind_mode = "transmitter_receiver"` submits do not wait for
    /// receipts.
    async fn on_deliver_sm(&self, frame: Frame, out: &mpsc::UnboundedSender<Bytes>) {
        let sm = match ShortMessage::decode(&frame.body) {
            Ok(sm) => sm,
            Err(e) => {
                tracing::warn!(carrier = %self.shared.carrier, bind = %self.label, error = %e, "malformed deliver_sm answered with generic_nack");
                let _ = out.send(pdu::header_only(
                    command::GENERIC_NACK,
                    status::ESME_RINVCMDLEN,
                    frame.sequence,
                ));
                return;
            }
        };
        let acknowledge = || {
            let _ = out.send(pdu::deliver_sm_resp(frame.sequence));
        };
        if sm.esm_class & 0x04 == 0 {
            tracing::debug!(carrier = %self.shared.carrier, bind = %self.label, from = %verify_carrier::mask_number(&sm.source.addr), "ignoring mobile-originated deliver_sm");
            return acknowledge();
        }
        let Some(parsed) = parse_deliver_sm(&sm) else {
            tracing::warn!(carrier = %self.shared.carrier, bind = %self.label, "delivery receipt without a message id");
            return acknowledge();
        };
        let Some(status) = parsed.status else {
            tracing::debug!(carrier = %self.shared.carrier, bind = %self.label, detail = %parsed.detail, "intermediate receipt ignored");
            return acknowledge();
        };
        let Some(permit) = self.shared.receipts.reserve().await else {
            // The server stopped reading receipts (it is shutting down): let the SMSC keep
            // this one and send it again later.
            tracing::warn!(carrier = %self.shared.carrier, bind = %self.label, "receipt refused for now: verifyd takes no receipts");
            let _ = out.send(pdu::deliver_sm_resp_with_status(
                frame.sequence,
                status::ESME_RX_T_APPN,
            ));
            return;
        };
        self.shared
            .tracker
            .receipt_then(&parsed.id, status, &parsed.detail, |resolved| {
                permit.deliver(DeliveryReceipt {
                    carrier: self.shared.carrier.clone(),
                    carrier_message_id: resolved.carrier_message_id,
                    message_id: resolved.message_id,
                    status: resolved.status,
                    detail: resolved.detail,
                    alternative_ids: resolved.alternative_ids,
                });
            });
        acknowledge();
    }
}

/// Writes queued PDUs, batching what is ready into one write.
async fn write_loop(
    mut writer: OwnedWriteHalf,
    mut queue: mpsc::UnboundedReceiver<Bytes>,
) -> std::io::Result<()> {
    let mut buffer = BytesMut::with_capacity(64 * 1024);
    while let Some(first) = queue.recv().await {
        buffer.extend_from_slice(&first);
        while buffer.len() < 64 * 1024 {
            match queue.try_recv() {
                Ok(next) => buffer.extend_from_slice(&next),
                Err(_) => break,
            }
        }
        writer.write_all(&buffer).await?;
        buffer.clear();
    }
    writer.shutdown().await
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
