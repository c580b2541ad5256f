//! Client library for verifyd's `verify.v1.VerifyService` gRPC API, and the code behind `verifyctl`.
//!
//! [`proto`] holds the generated messages and raw tonic client (the [`verify_proto`] crate);
//! [`VerifyClient`] wraps them in a few plain async methods. The messages implement serde's
//! `Serialize` and `Deserialize` in the proto3 JSON mapping, which `verifyctl --json` prints.
//!
//! ```no_run
//! use verify_client::proto::v1::CheckResult;
//! use verify_client::{VerifyClient, VerifyOptions};
//!
//! # async fn demo() -> Result<(), verify_client::ClientError> {
//! let client = VerifyClient::connect("http://127.0.0.1:50051")
//!     .await?
//!     .with_api_key("my-key")?;
//! let started = client.verify(VerifyOptions::new("+447700900123")).await?;
//! let id = started.verification.map(|v| v.id).unwrap_or_default();
//! let checked = client.check_by_id(&id, "123456").await?;
//! if checked.result() == CheckResult::Approved {
//!     println!("verified");
//! }
//! # Ok(())
//! # }
//! ```

use std::fmt;

use prost::bytes::{Buf, Bytes};
use tokio_stream::{Stream, StreamExt};
use tonic::GrpcMethod;
use tonic::IntoStreamingRequest;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};
use tonic_prost::ProstEncoder;

use crate::proto::v1::verify_service_client::VerifyServiceClient;
use crate::proto::v1::{
    Block, CancelNotificationRequest, CancelVerificationRequest, Channel as DeliveryChannel,
    CheckRequest, CheckResponse, Classification, ClassifyBatchRequest, ClassifyBatchResponse,
    ClassifyRequest, CreateServiceRequest, Event, GetConversionStatsRequest,
    GetConversionStatsResponse, GetNotificationRequest, GetServiceRequest, GetVerificationRequest,
    ListBlocksRequest, ListNotificationsRequest, ListNotificationsResponse, ListServicesRequest,
    ListVerificationsRequest, ListVerificationsResponse, MessageCategory, Notification,
    NotifyRequest, NotifyResponse, RequestContext, Service, UnblockRequest, UpdateServiceRequest,
    Verification, VerifyRequest, VerifyResponse, WatchEventsRequest, check_request,
};
use crate::proto::v1::{
    Campaign, CampaignDimension, CampaignRecipients, CampaignSpec, CancelCampaignRequest,
    CreateCampaignRequest, CreateCampaignResponse, GetCampaignRequest, GetCampaignResponse,
    ListCampaignRejectionsRequest, ListCampaignRejectionsResponse, ListCampaignsRequest,
    ListCampaignsResponse, PauseCampaignRequest, ReportCampaignConfirmationRequest,
    ResumeCampaignRequest, create_campaign_request,
};

/// Code generated from `proto/verify/v1/verify.proto`: `proto::v1` holds the messages, enums
/// and the `VerifyService` client.
pub use verify_proto as proto;

/// Most numbers verifyd accepts in one [`ClassifyBatchRequest`] chunk.
pub const MAX_BATCH_CHUNK: usize = 10_000;

/// Largest [`ClassifyBatchResponse`] [`VerifyClient::classify_batch`] accepts, in bytes. A
/// classification takes a few hundred bytes, so a full chunk of long inputs can pass tonic's
/// default limit of 4 MiB.
pub const MAX_BATCH_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Encodes requests with prost and hands responses over still encoded, without copying them.
#[derive(Debug, Clone, Copy, Default)]
struct EncodedAnswers;

impl Codec for EncodedAnswers {
    type Encode = ClassifyBatchRequest;
    type Decode = Bytes;
    type Encoder = ProstEncoder<ClassifyBatchRequest>;
    type Decoder = EncodedAnswers;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        EncodedAnswers
    }
}

impl Decoder for EncodedAnswers {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let length = buf.remaining();
        Ok(Some(buf.copy_to_bytes(length)))
    }
}

/// The generated client as [`VerifyClient`] uses it: over a [`Channel`], with the API key added
/// to every call. Use it for calls or options the wrapper does not cover.
pub type RawClient = VerifyServiceClient<InterceptedService<Channel, ApiKeyInterceptor>>;

/// What went wrong talking to verifyd.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not a URI tonic can connect to.
    #[error("invalid address {address:?}")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// Why tonic rejected it.
        #[source]
        source: tonic::transport::Error,
    },
    /// No connection could be made to the address.
    #[error("cannot connect to {address}")]
    Connect {
        /// The address as given.
        address: String,
        /// The transport failure (refused, unreachable, timed out ...).
        #[source]
        source: tonic::transport::Error,
    },
    /// The API key cannot be sent in a gRPC header (it holds non-visible-ASCII characters).
    #[error("the API key is not a valid header value (visible ASCII only)")]
    InvalidApiKey,
    /// verifyd (or the transport underneath) answered the call with an error status.
    #[error("{}: {}", grpc_code_name(.0.code()), .0.message())]
    Status(Status),
    /// verifyd answered OK but left out a field the contract says is always set.
    #[error("verifyd's response lacks `{0}`")]
    MissingField(&'static str),
    /// The TLS settings are not usable (a certificate or key that tonic refuses).
    #[error("TLS settings for {address}")]
    Tls {
        /// The address as given.
        address: String,
        /// What was wrong.
        #[source]
        source: tonic::transport::Error,
    },
}

/// TLS for [`VerifyClient::connect_tls`]: whom to trust, and the client certificate for mutual
/// TLS. PEM text, as read from files.
#[derive(Clone, Default)]
pub struct TlsOptions {
    /// CA certificates the server's certificate must chain to; `None` trusts the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// The client certificate chain, for a server that requires one (mutual TLS).
    pub cert_pem: Option<Vec<u8>>,
    /// The client certificate's private key.
    pub key_pem: Option<Vec<u8>>,
    /// The name the server's certificate must carry, when not the address's host.
    pub domain: Option<String>,
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field("cert_pem", &self.cert_pem.as_ref().map(|_| "<pem>"))
            .field("key_pem", &self.key_pem.as_ref().map(|_| "<redacted>"))
            .field("domain", &self.domain)
            .finish()
    }
}

impl ClientError {
    /// The gRPC status when the error came from a call, for branching on its code.
    pub fn status(&self) -> Option<&Status> {
        match self {
            ClientError::Status(status) => Some(status),
            _ => None,
        }
    }

    /// The gRPC code of a failed call, `None` for errors before any call was made.
    pub fn code(&self) -> Option<Code> {
        self.status().map(Status::code)
    }
}

impl From<Status> for ClientError {
    fn from(status: Status) -> Self {
        ClientError::Status(status)
    }
}

/// The canonical name of a gRPC status code (`NOT_FOUND` ...), shared with the server's logs.
pub use verify_proto::grpc_code_name;

/// Adds `authorization: Bearer <key>` to every call when an API key is set; passes calls
/// through untouched otherwise.
#[derive(Clone, Default)]
pub struct ApiKeyInterceptor {
    authorization: Option<MetadataValue<Ascii>>,
}

impl ApiKeyInterceptor {
    /// An interceptor that sends `key` as a bearer token.
    pub fn new(key: &str) -> Result<Self, ClientError> {
        let mut value = MetadataValue::try_from(format!("Bearer {key}"))
            .map_err(|_| ClientError::InvalidApiKey)?;
        value.set_sensitive(true);
        Ok(Self {
            authorization: Some(value),
        })
    }
}

impl fmt::Debug for ApiKeyInterceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = self.authorization.as_ref().map(|_| "<redacted>");
        f.debug_struct("ApiKeyInterceptor")
            .field("authorization", &key)
            .finish()
    }
}

impl Interceptor for ApiKeyInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// What to send with [`VerifyClient::verify`]. `None` fields leave the choice to verifyd.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// The number to verify, in E.164 or, with `region_hint`, in national form.
    pub to: String,
    /// The channel for the code; `None` lets verifyd choose from the line type.
    pub channel: Option<DeliveryChannel>,
    /// Locale of the message text, e.g. "en" or "es-MX"; `None` for the server default.
    pub locale: Option<String>,
    /// Digits in the code, 4 to 10; `None` for the server default (6).
    pub code_length: Option<u32>,
    /// A key that makes retries safe: a repeated call with the same key sends nothing new.
    pub idempotency_key: Option<String>,
    /// ISO 3166-1 alpha-2 region for a `to` written in national form, e.g. "IN".
    pub region_hint: Option<String>,
    /// A fallback workflow instead of the configured one, e.g. "sms(30s) -> voice(60s)".
    pub workflow: Option<String>,
    /// The configured program the code is sent for (its registrations are checked and sent).
    pub program_id: Option<String>,
    /// What your server knows of the person asking (IP address, device, user), used only for
    /// verifyd's rate limits and abuse signals.
    pub context: Option<RequestContext>,
    /// The service the verification belongs to; `None` for the API key's own (or `default`).
    pub service_id: Option<String>,
    /// Android SMS Retriever: the app's 11-character hash, for the SMS to carry; `None` for
    /// the service's default.
    pub app_hash: Option<String>,
    /// Domain-bound code: the web site's host (the SMS ends `@host #code`); `None` for the
    /// service's default.
    pub domain: Option<String>,
}

impl VerifyOptions {
    /// Options for verifying `to`, leaving every other choice to verifyd.
    pub fn new(to: impl Into<String>) -> Self {
        Self {
            to: to.into(),
            ..Self::default()
        }
    }
}

impl From<VerifyOptions> for VerifyRequest {
    fn from(options: VerifyOptions) -> Self {
        VerifyRequest {
            to: options.to,
            channel: options.channel.unwrap_or(DeliveryChannel::Unspecified) as i32,
            locale: options.locale.unwrap_or_default(),
            code_length: options.code_length.unwrap_or(0),
            idempotency_key: options.idempotency_key.unwrap_or_default(),
            region_hint: options.region_hint.unwrap_or_default(),
            workflow: options.workflow.unwrap_or_default(),
            program_id: options.program_id.unwrap_or_default(),
            context: options.context,
            service_id: options.service_id.unwrap_or_default(),
            app_hash: options.app_hash.unwrap_or_default(),
            domain: options.domain.unwrap_or_default(),
        }
    }
}

/// What to send with [`VerifyClient::notify`]: a message that is not a verification code, sent
/// under the country rules. `None` fields are left out of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyOptions {
    /// The recipient, in E.164 or, with `region_hint`, in national form.
    pub to: String,
    /// What the message is for; country rules differ by category.
    pub category: MessageCategory,
    /// The text, at most 1,600 characters.
    pub body: String,
    /// ISO 3166-1 alpha-2 region for a `to` written in national form, e.g. "IN".
    pub region_hint: Option<String>,
    /// The configured program sending it, whose registrations country rules check.
    pub program_id: Option<String>,
    /// The registered template the body follows, by the name the program gives it.
    pub template: Option<String>,
    /// The sender to show (alphanumeric name, long code, short code, toll-free number);
    /// `None` for the carrier's own.
    pub sender: Option<String>,
    /// A key that makes retries safe: a repeated call with the same key stores nothing new.
    pub idempotency_key: Option<String>,
    /// What your server knows of the person the message is for, used only for verifyd's rate
    /// limits and abuse signals.
    pub context: Option<RequestContext>,
    /// The service sending it; `None` for the API key's own (or `default`).
    pub service_id: Option<String>,
}

impl NotifyOptions {
    /// Options for sending `body` to `to` as a `category` message, leaving every other choice
    /// to verifyd.
    pub fn new(to: impl Into<String>, category: MessageCategory, body: impl Into<String>) -> Self {
        Self {
            to: to.into(),
            category,
            body: body.into(),
            region_hint: None,
            program_id: None,
            template: None,
            sender: None,
            idempotency_key: None,
            context: None,
            service_id: None,
        }
    }
}

impl From<NotifyOptions> for NotifyRequest {
    fn from(options: NotifyOptions) -> Self {
        NotifyRequest {
            to: options.to,
            region_hint: options.region_hint.unwrap_or_default(),
            category: options.category as i32,
            program_id: options.program_id.unwrap_or_default(),
            template: options.template.unwrap_or_default(),
            body: options.body,
            sender: options.sender.unwrap_or_default(),
            idempotency_key: options.idempotency_key.unwrap_or_default(),
            context: options.context,
            service_id: options.service_id.unwrap_or_default(),
        }
    }
}

/// A connection to verifyd with one method per call. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct VerifyClient {
    channel: Channel,
    interceptor: ApiKeyInterceptor,
    raw: RawClient,
}

impl fmt::Debug for VerifyClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyClient")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl VerifyClient {
    /// Connects to verifyd at `addr`, e.g. `http://127.0.0.1:50051`; `host:port` without a
    /// scheme means plain-text `http://`. Fails when the server cannot be reached.
    pub async fn connect(addr: impl Into<String>) -> Result<Self, ClientError> {
        let address = addr.into();
        let uri = if address.contains("://") {
            address.clone()
        } else {
            format!("http://{address}")
        };
        let endpoint = match Endpoint::from_shared(uri) {
            Ok(endpoint) => endpoint,
            Err(source) => return Err(ClientError::InvalidAddress { address, source }),
        };
        match endpoint.connect().await {
            Ok(channel) => Ok(Self::from_channel(channel)),
            Err(source) => Err(ClientError::Connect { address, source }),
        }
    }

    /// Connects to verifyd at `addr` over TLS (`https://host:port`, or `host:port`), trusting
    /// `tls.ca_pem` (or the system's CAs) and presenting a client certificate when given.
    pub async fn connect_tls(
        addr: impl Into<String>,
        tls: TlsOptions,
    ) -> Result<Self, ClientError> {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let address = addr.into();
        let uri = match address.split_once("://") {
            Some(("http", rest)) => format!("https://{rest}"),
            Some(_) => address.clone(),
            None => format!("https://{address}"),
        };
        let endpoint = match Endpoint::from_shared(uri) {
            Ok(endpoint) => endpoint,
            Err(source) => return Err(ClientError::InvalidAddress { address, source }),
        };
        let mut config = ClientTlsConfig::new();
        config = match &tls.ca_pem {
            Some(pem) => config.ca_certificate(Certificate::from_pem(pem)),
            None => config.with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&tls.cert_pem, &tls.key_pem) {
            config = config.identity(Identity::from_pem(cert, key));
        }
        if let Some(domain) = &tls.domain {
            config = config.domain_name(domain.clone());
        }
        let endpoint = match endpoint.tls_config(config) {
            Ok(endpoint) => endpoint,
            Err(source) => return Err(ClientError::Tls { address, source }),
        };
        match endpoint.connect().await {
            Ok(channel) => Ok(Self::from_channel(channel)),
            Err(source) => Err(ClientError::Connect { address, source }),
        }
    }

    /// Wraps a channel built elsewhere, e.g. with timeouts, TLS or lazy connection.
    pub fn from_channel(channel: Channel) -> Self {
        let interceptor = ApiKeyInterceptor::default();
        let raw = VerifyServiceClient::with_interceptor(channel.clone(), interceptor.clone());
        Self {
            channel,
            interceptor,
            raw,
        }
    }

    /// Sends `authorization: Bearer <key>` with every call from now on, raw client included.
    pub fn with_api_key(self, key: impl AsRef<str>) -> Result<Self, ClientError> {
        let interceptor = ApiKeyInterceptor::new(key.as_ref())?;
        let raw = VerifyServiceClient::with_interceptor(self.channel.clone(), interceptor.clone());
        Ok(Self {
            channel: self.channel,
            interceptor,
            raw,
        })
    }

    /// The generated client, sharing this connection and API key, for anything the wrapper
    /// does not offer (request metadata, compression, message size limits ...).
    pub fn raw(&self) -> RawClient {
        self.raw.clone()
    }

    /// Tells what kind of number `number` is. An invalid number is a classification with
    /// `valid == false`, not an error. `region_hint` is for numbers in national form.
    pub async fn classify(
        &self,
        number: &str,
        region_hint: Option<&str>,
    ) -> Result<Classification, ClientError> {
        let request = ClassifyRequest {
            number: number.to_owned(),
            region_hint: region_hint.unwrap_or_default().to_owned(),
        };
        let response = self.raw().classify(request).await?.into_inner();
        response
            .classification
            .ok_or(ClientError::MissingField("classification"))
    }

    /// Classifies lists: sends each chunk of `chunks` (at most [`MAX_BATCH_CHUNK`] numbers, with
    /// an optional region hint for numbers in national form) and returns verifyd's answers,
    /// one [`ClassifyBatchResponse`] per chunk, in the order the chunks were sent, each with one
    /// classification per number in the chunk's order and the chunk's position in `chunk_index`.
    ///
    /// Chunks are sent as `chunks` yields them while answers come back, and verifyd works on a
    /// few chunks at once, so keep several in flight (but bound how many: unanswered chunks
    /// wait in buffers). The call ends once `chunks` has ended and every chunk is answered; an
    /// error status (e.g. `INVALID_ARGUMENT` for an oversized chunk or an unknown region hint)
    /// is the last item of the answers. Answers up to [`MAX_BATCH_RESPONSE_BYTES`] are accepted.
    pub async fn classify_batch(
        &self,
        chunks: impl Stream<Item = ClassifyBatchRequest> + Send + 'static,
    ) -> Result<
        impl Stream<Item = Result<ClassifyBatchResponse, Status>> + Send + Unpin + 'static,
        ClientError,
    > {
        let mut raw = self
            .raw()
            .max_decoding_message_size(MAX_BATCH_RESPONSE_BYTES);
        Ok(raw.classify_batch(chunks).await?.into_inner())
    }

    /// [`classify_batch`](Self::classify_batch) with the answers left encoded: each item is
    /// the protobuf encoding of one [`ClassifyBatchResponse`], for callers that decode it
    /// elsewhere (on another thread, say) or read it in place without building a
    /// [`Classification`] per number, as `verifyctl classify --input` does. Decode an item
    /// with `prost::Message::decode`.
    pub async fn classify_batch_encoded(
        &self,
        chunks: impl Stream<Item = ClassifyBatchRequest> + Send + 'static,
    ) -> Result<impl Stream<Item = Result<Bytes, Status>> + Send + Unpin + 'static, ClientError>
    {
        let service = InterceptedService::new(self.channel.clone(), self.interceptor.clone());
        let mut grpc =
            tonic::client::Grpc::new(service).max_decoding_message_size(MAX_BATCH_RESPONSE_BYTES);
        grpc.ready()
            .await
            .map_err(|error| Status::unavailable(format!("connection not ready: {error}")))?;
        let mut request = chunks.into_streaming_request();
        request
            .extensions_mut()
            .insert(GrpcMethod::new("verify.v1.VerifyService", "ClassifyBatch"));
        let path = PathAndQuery::from_static("/verify.v1.VerifyService/ClassifyBatch");
        let response = grpc.streaming(request, path, EncodedAnswers).await?;
        Ok(response.into_inner())
    }

    /// Starts a verification, or resends the code of the pending one for the same number
    /// (`resent`), or returns the earlier one for a repeated idempotency key (`replayed`).
    pub async fn verify(&self, options: VerifyOptions) -> Result<VerifyResponse, ClientError> {
        let response = self
            .raw()
            .verify(VerifyRequest::from(options))
            .await?
            .into_inner();
        if response.verification.is_none() {
            return Err(ClientError::MissingField("verification"));
        }
        Ok(response)
    }

    /// Checks `code` against the verification `id`. Wrong, expired and similar outcomes are
    /// an OK response whose `result` tells; an unknown id is a `NOT_FOUND` error.
    pub async fn check_by_id(&self, id: &str, code: &str) -> Result<CheckResponse, ClientError> {
        self.check(check_request::Target::VerificationId(id.to_owned()), code)
            .await
    }

    /// Checks `code` against the most recent verification of the number `to` (E.164).
    pub async fn check_by_number(
        &self,
        to: &str,
        code: &str,
    ) -> Result<CheckResponse, ClientError> {
        self.check(check_request::Target::To(to.to_owned()), code)
            .await
    }

    async fn check(
        &self,
        target: check_request::Target,
        code: &str,
    ) -> Result<CheckResponse, ClientError> {
        let request = CheckRequest {
            target: Some(target),
            code: code.to_owned(),
            service_id: String::new(),
        };
        Ok(self.raw().check(request).await?.into_inner())
    }

    /// Returns the verification `id` with all its delivery attempts.
    pub async fn get(&self, id: &str) -> Result<Verification, ClientError> {
        let request = GetVerificationRequest {
            verification_id: id.to_owned(),
            ..GetVerificationRequest::default()
        };
        let response = self.raw().get_verification(request).await?.into_inner();
        response
            .verification
            .ok_or(ClientError::MissingField("verification"))
    }

    /// Returns the latest verification of the number `to` in the API key's service (or in
    /// `service_id`, for an admin key).
    pub async fn get_latest(
        &self,
        to: &str,
        service_id: Option<&str>,
    ) -> Result<Verification, ClientError> {
        let request = GetVerificationRequest {
            verification_id: String::new(),
            to: to.to_owned(),
            service_id: service_id.unwrap_or_default().to_owned(),
        };
        let response = self.raw().get_verification(request).await?.into_inner();
        response
            .verification
            .ok_or(ClientError::MissingField("verification"))
    }

    /// One page of verifications, newest first, as `request` filters them; pass the
    /// response's `next_page_token` back for the next page.
    pub async fn list_verifications(
        &self,
        request: ListVerificationsRequest,
    ) -> Result<ListVerificationsResponse, ClientError> {
        Ok(self.raw().list_verifications(request).await?.into_inner())
    }

    /// One page of notifications, newest first, as `request` filters them.
    pub async fn list_notifications(
        &self,
        request: ListNotificationsRequest,
    ) -> Result<ListNotificationsResponse, ClientError> {
        Ok(self.raw().list_notifications(request).await?.into_inner())
    }

    /// Cancels the notification `id` while its message has not gone to a carrier
    /// (`FAILED_PRECONDITION` once it has); canceling a canceled one is a no-op.
    pub async fn cancel_notification(&self, id: &str) -> Result<Notification, ClientError> {
        let request = CancelNotificationRequest {
            notification_id: id.to_owned(),
        };
        self.raw()
            .cancel_notification(request)
            .await?
            .into_inner()
            .notification
            .ok_or(ClientError::MissingField("notification"))
    }

    /// Cancels the pending verification `id`; canceling a canceled one is a no-op.
    pub async fn cancel(&self, id: &str) -> Result<Verification, ClientError> {
        let request = CancelVerificationRequest {
            verification_id: id.to_owned(),
        };
        let response = self.raw().cancel_verification(request).await?.into_inner();
        response
            .verification
            .ok_or(ClientError::MissingField("verification"))
    }

    /// The blocks abuse defense started, newest first: those in force, or with
    /// `include_ended` also those that ended or were lifted in the last week; at most `limit`
    /// (0 for the server's default of 100).
    pub async fn list_blocks(
        &self,
        include_ended: bool,
        limit: u32,
    ) -> Result<Vec<Block>, ClientError> {
        let request = ListBlocksRequest {
            include_ended,
            limit,
        };
        Ok(self.raw().list_blocks(request).await?.into_inner().blocks)
    }

    /// Lifts block `id` before it ends; lifting one that ended or was lifted changes nothing.
    pub async fn unblock(&self, id: &str) -> Result<Block, ClientError> {
        let request = UnblockRequest {
            block_id: id.to_owned(),
        };
        self.raw()
            .unblock(request)
            .await?
            .into_inner()
            .block
            .ok_or(ClientError::MissingField("block"))
    }

    /// Sends a message that is not a verification code under the country rules: now, or held
    /// until the recipient's local window opens (the response's `decision` says which and why),
    /// or refused with `FAILED_PRECONDITION` naming the rule. A repeated idempotency key
    /// returns the first call's notification (`replayed`).
    pub async fn notify(&self, options: NotifyOptions) -> Result<NotifyResponse, ClientError> {
        let response = self
            .raw()
            .notify(NotifyRequest::from(options))
            .await?
            .into_inner();
        if response.notification.is_none() {
            return Err(ClientError::MissingField("notification"));
        }
        if response.decision.is_none() {
            return Err(ClientError::MissingField("decision"));
        }
        Ok(response)
    }

    /// Returns the notification `id` as it is now; an unknown id is a `NOT_FOUND` error.
    pub async fn get_notification(&self, id: &str) -> Result<Notification, ClientError> {
        let request = GetNotificationRequest {
            notification_id: id.to_owned(),
        };
        let response = self.raw().get_notification(request).await?.into_inner();
        response
            .notification
            .ok_or(ClientError::MissingField("notification"))
    }

    /// Streams events after `after_cursor` (0 for all stored ones), then new ones as they
    /// happen; only those of `verification_id` when given. Resume with the last cursor seen.
    /// The stream ends when the server ends it; a broken stream yields its error status last.
    pub async fn watch(
        &self,
        verification_id: Option<&str>,
        after_cursor: u64,
    ) -> Result<impl Stream<Item = Result<Event, Status>> + Send + Unpin + 'static, ClientError>
    {
        self.watch_events(WatchEventsRequest {
            verification_id: verification_id.unwrap_or_default().to_owned(),
            after_cursor,
            notification_id: String::new(),
            service_id: String::new(),
            campaign_id: String::new(),
        })
        .await
    }

    /// Streams the events of the notification `notification_id` (from [`Self::notify`]) after
    /// `after_cursor`, then new ones as they happen, like [`Self::watch`] does for a
    /// verification.
    pub async fn watch_notification(
        &self,
        notification_id: &str,
        after_cursor: u64,
    ) -> Result<impl Stream<Item = Result<Event, Status>> + Send + Unpin + 'static, ClientError>
    {
        self.watch_events(WatchEventsRequest {
            verification_id: String::new(),
            after_cursor,
            notification_id: notification_id.to_owned(),
            service_id: String::new(),
            campaign_id: String::new(),
        })
        .await
    }

    /// Streams the events of the campaign `campaign_id` and its messages after
    /// `after_cursor`, then new ones as they happen.
    pub async fn watch_campaign(
        &self,
        campaign_id: &str,
        after_cursor: u64,
    ) -> Result<impl Stream<Item = Result<Event, Status>> + Send + Unpin + 'static, ClientError>
    {
        self.watch_events(WatchEventsRequest {
            verification_id: String::new(),
            after_cursor,
            notification_id: String::new(),
            service_id: String::new(),
            campaign_id: campaign_id.to_owned(),
        })
        .await
    }

    /// Creates a campaign: `spec`, then the chunks of recipients `recipients` yields (a few
    /// thousand per chunk). Answers once every recipient is stored, with the first rejected
    /// lines.
    pub async fn create_campaign(
        &self,
        spec: CampaignSpec,
        recipients: impl Stream<Item = CampaignRecipients> + Send + 'static,
    ) -> Result<CreateCampaignResponse, ClientError> {
        use create_campaign_request::Part;
        let first = tokio_stream::once(CreateCampaignRequest {
            part: Some(Part::Campaign(spec)),
        });
        let rest = recipients.map(|chunk| CreateCampaignRequest {
            part: Some(Part::Recipients(chunk)),
        });
        Ok(self
            .raw()
            .create_campaign(first.chain(rest))
            .await?
            .into_inner())
    }

    /// A campaign with its counts, grouped by `group_by` (by country when empty).
    pub async fn get_campaign(
        &self,
        campaign_id: &str,
        group_by: &[CampaignDimension],
    ) -> Result<GetCampaignResponse, ClientError> {
        Ok(self
            .raw()
            .get_campaign(GetCampaignRequest {
                campaign_id: campaign_id.to_owned(),
                group_by: group_by.iter().map(|d| *d as i32).collect(),
            })
            .await?
            .into_inner())
    }

    /// A page of campaigns, newest first.
    pub async fn list_campaigns(
        &self,
        request: ListCampaignsRequest,
    ) -> Result<ListCampaignsResponse, ClientError> {
        Ok(self.raw().list_campaigns(request).await?.into_inner())
    }

    /// A page of a campaign's rejected lines.
    pub async fn campaign_rejections(
        &self,
        campaign_id: &str,
        page_size: u32,
        page_token: &str,
    ) -> Result<ListCampaignRejectionsResponse, ClientError> {
        Ok(self
            .raw()
            .list_campaign_rejections(ListCampaignRejectionsRequest {
                campaign_id: campaign_id.to_owned(),
                page_size,
                page_token: page_token.to_owned(),
            })
            .await?
            .into_inner())
    }

    /// Pauses a campaign.
    pub async fn pause_campaign(&self, campaign_id: &str) -> Result<Campaign, ClientError> {
        let request = PauseCampaignRequest {
            campaign_id: campaign_id.to_owned(),
        };
        let response = self.raw().pause_campaign(request).await?.into_inner();
        response
            .campaign
            .ok_or(ClientError::MissingField("campaign"))
    }

    /// Resumes a paused campaign.
    pub async fn resume_campaign(&self, campaign_id: &str) -> Result<Campaign, ClientError> {
        let request = ResumeCampaignRequest {
            campaign_id: campaign_id.to_owned(),
        };
        let response = self.raw().resume_campaign(request).await?.into_inner();
        response
            .campaign
            .ok_or(ClientError::MissingField("campaign"))
    }

    /// Cancels a campaign.
    pub async fn cancel_campaign(&self, campaign_id: &str) -> Result<Campaign, ClientError> {
        let request = CancelCampaignRequest {
            campaign_id: campaign_id.to_owned(),
        };
        let response = self.raw().cancel_campaign(request).await?.into_inner();
        response
            .campaign
            .ok_or(ClientError::MissingField("campaign"))
    }

    /// Records that a campaign's recipient (by number, or by line when `to` is empty)
    /// confirmed; `false` when it had before.
    pub async fn report_campaign_confirmation(
        &self,
        campaign_id: &str,
        to: &str,
        line: u64,
    ) -> Result<bool, ClientError> {
        let request = ReportCampaignConfirmationRequest {
            campaign_id: campaign_id.to_owned(),
            to: to.to_owned(),
            line,
        };
        Ok(self
            .raw()
            .report_campaign_confirmation(request)
            .await?
            .into_inner()
            .counted)
    }

    /// Stores a new service (admin keys only); unset numbers take the server's defaults.
    pub async fn create_service(&self, service: Service) -> Result<Service, ClientError> {
        let request = CreateServiceRequest {
            service: Some(service),
        };
        self.raw()
            .create_service(request)
            .await?
            .into_inner()
            .service
            .ok_or(ClientError::MissingField("service"))
    }

    /// Returns the service `id` (a service's key sees only its own).
    pub async fn get_service(&self, id: &str) -> Result<Service, ClientError> {
        let request = GetServiceRequest {
            service_id: id.to_owned(),
        };
        self.raw()
            .get_service(request)
            .await?
            .into_inner()
            .service
            .ok_or(ClientError::MissingField("service"))
    }

    /// The services this key sees, by id.
    pub async fn list_services(&self) -> Result<Vec<Service>, ClientError> {
        Ok(self
            .raw()
            .list_services(ListServicesRequest {})
            .await?
            .into_inner()
            .services)
    }

    /// Changes a stored service (admin keys only): the fields named in `update_fields` take
    /// their values from `service`, or every field when it is empty.
    pub async fn update_service(
        &self,
        service: Service,
        update_fields: Vec<String>,
    ) -> Result<Service, ClientError> {
        let request = UpdateServiceRequest {
            service: Some(service),
            update_fields,
        };
        self.raw()
            .update_service(request)
            .await?
            .into_inner()
            .service
            .ok_or(ClientError::MissingField("service"))
    }

    /// Conversion statistics for the range, grouping and filters of `request` (an empty
    /// request: the last 7 days by country).
    pub async fn conversion_stats(
        &self,
        request: GetConversionStatsRequest,
    ) -> Result<GetConversionStatsResponse, ClientError> {
        Ok(self.raw().get_conversion_stats(request).await?.into_inner())
    }

    /// Streams the events `request` selects (a verification, a notification, or every event
    /// of a service, after a cursor), then new ones as they happen.
    pub async fn watch_events(
        &self,
        request: WatchEventsRequest,
    ) -> Result<impl Stream<Item = Result<Event, Status>> + Send + Unpin + 'static, ClientError>
    {
        let stream = self.raw().watch_events(request).await?.into_inner();
        Ok(stream.map(|item| {
            item?.event.ok_or_else(|| {
                Status::internal("verifyd sent a WatchEventsResponse without `event`")
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_options_map_unset_fields_to_server_defaults() {
        let request = VerifyRequest::from(VerifyOptions::new("+447700900123"));
        assert_eq!(
            request,
            VerifyRequest {
                to: "+447700900123".into(),
                channel: DeliveryChannel::Unspecified as i32,
                locale: String::new(),
                code_length: 0,
                idempotency_key: String::new(),
                region_hint: String::new(),
                workflow: String::new(),
                program_id: String::new(),
                context: None,
                service_id: String::new(),
                app_hash: String::new(),
                domain: String::new(),
            }
        );
    }

    #[test]
    fn verify_options_carry_every_choice() {
        let options = VerifyOptions {
            to: "098123 45678".into(),
            channel: Some(DeliveryChannel::Voice),
            locale: Some("es-MX".into()),
            code_length: Some(8),
            idempotency_key: Some("k-1".into()),
            region_hint: Some("IN".into()),
            workflow: Some("sms(30s) -> voice(60s)".into()),
            program_id: Some("shop".into()),
            context: Some(RequestContext {
                client_ip: "203.0.113.9".into(),
                ..RequestContext::default()
            }),
            service_id: Some("acme".into()),
            app_hash: Some("FA+9qCX9VSu".into()),
            domain: Some("example.com".into()),
        };
        let request = VerifyRequest::from(options);
        assert_eq!(request.service_id, "acme");
        assert_eq!(request.app_hash, "FA+9qCX9VSu");
        assert_eq!(request.domain, "example.com");
        assert_eq!(request.context.unwrap().client_ip, "203.0.113.9");
        assert_eq!(request.channel, DeliveryChannel::Voice as i32);
        assert_eq!(request.locale, "es-MX");
        assert_eq!(request.code_length, 8);
        assert_eq!(request.idempotency_key, "k-1");
        assert_eq!(request.region_hint, "IN");
        assert_eq!(request.workflow, "sms(30s) -> voice(60s)");
    }

    #[test]
    fn notify_options_map_unset_fields_to_empty() {
        let options = NotifyOptions::new("+919812345678", MessageCategory::Alert, "Outage.");
        assert_eq!(
            NotifyRequest::from(options),
            NotifyRequest {
                to: "+919812345678".into(),
                region_hint: String::new(),
                category: MessageCategory::Alert as i32,
                program_id: String::new(),
                template: String::new(),
                body: "Outage.".into(),
                sender: String::new(),
                idempotency_key: String::new(),
                context: None,
                service_id: String::new(),
            }
        );
    }

    #[test]
    fn notify_options_carry_every_choice() {
        let options = NotifyOptions {
            region_hint: Some("IN".into()),
            program_id: Some("shop".into()),
            template: Some("sale".into()),
            sender: Some("SHOPIN".into()),
            idempotency_key: Some("n-1".into()),
            ..NotifyOptions::new("098123 45678", MessageCategory::Marketing, "Sale.")
        };
        let request = NotifyRequest::from(options);
        assert_eq!(request.category(), MessageCategory::Marketing);
        assert_eq!(request.region_hint, "IN");
        assert_eq!(request.program_id, "shop");
        assert_eq!(request.template, "sale");
        assert_eq!(request.sender, "SHOPIN");
        assert_eq!(request.idempotency_key, "n-1");
    }

    #[test]
    fn api_key_is_sent_as_bearer_token() {
        let mut interceptor = ApiKeyInterceptor::new("s3cret").unwrap();
        let request = interceptor.call(Request::new(())).unwrap();
        assert_eq!(
            request.metadata().get("authorization").unwrap(),
            "Bearer s3cret"
        );
    }

    #[test]
    fn no_api_key_sends_no_authorization() {
        let mut interceptor = ApiKeyInterceptor::default();
        let request = interceptor.call(Request::new(())).unwrap();
        assert!(request.metadata().get("authorization").is_none());
    }

    #[test]
    fn api_key_with_newline_is_rejected() {
        assert!(matches!(
            ApiKeyInterceptor::new("bad\nkey"),
            Err(ClientError::InvalidApiKey)
        ));
    }

    #[test]
    fn api_key_stays_out_of_debug_output() {
        let interceptor = ApiKeyInterceptor::new("s3cret").unwrap();
        let debug = format!("{interceptor:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
    }

    #[test]
    fn status_errors_show_grpc_code_and_message() {
        let error = ClientError::from(Status::not_found("no verification vf_x"));
        assert_eq!(error.to_string(), "NOT_FOUND: no verification vf_x");
        assert_eq!(error.code(), Some(Code::NotFound));
    }

    #[tokio::test]
    async fn connect_rejects_a_malformed_address() {
        let error = VerifyClient::connect("http://exa mple:1")
            .await
            .unwrap_err();
        assert!(
            matches!(error, ClientError::InvalidAddress { .. }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn connect_reports_an_unreachable_server() {
        // Bind then drop a listener so the port is very likely closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let error = VerifyClient::connect(format!("127.0.0.1:{port}"))
            .await
            .unwrap_err();
        assert!(matches!(error, ClientError::Connect { .. }), "{error:?}");
    }
}
