//! The gRPC access log and RPC metrics: a tower layer around every gRPC service that, when a
//! call ends (its status sent, or the client gone), logs one line (method, status code,
//! duration, API key and service; the reason of a refusal, with any phone number in it
//! masked) and counts it in the metrics.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body::{Body, Frame, SizeHint};
use tonic::Code;
use tower::{Layer, Service};

use crate::usecases::{Caller, Scope};

/// Who made a call, filled in by the API key check (the layer runs before it).
#[derive(Debug, Clone, Default)]
pub struct CallerNote(Arc<Mutex<Option<Caller>>>);

impl CallerNote {
    /// Notes the caller.
    pub fn set(&self, caller: &Caller) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(caller.clone());
    }

    fn get(&self) -> Option<Caller> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct AccessLayer;

impl<S> Layer<S> for AccessLayer {
    type Service = Access<S>;

    fn layer(&self, inner: S) -> Access<S> {
        Access { inner }
    }
}

/// The service the layer wraps around another.
#[derive(Debug, Clone)]
pub struct Access<S> {
    inner: S,
}

/// One call being served.
struct Call {
    method: String,
    started: Instant,
    caller: CallerNote,
    span: tracing::Span,
    ended: bool,
}

impl Call {
    fn end(&mut self, code: Code, message: Option<&str>) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let elapsed = self.started.elapsed();
        self.span.record("rpc.grpc.status_code", code as i64);
        if code != Code::Ok {
            self.span.record("otel.status_code", "ERROR");
        }
        crate::metrics::metrics().rpc(&self.method, verify_proto::grpc_code_name(code), elapsed);
        log_call(&self.method, code, message, elapsed, self.caller.get());
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // The response went away before its status: the client canceled (or the connection
        // dropped).
        self.end(
            Code::Cancelled,
            Some("the client went away before the answer ended"),
        );
    }
}

fn log_call(
    method: &str,
    code: Code,
    message: Option<&str>,
    elapsed: Duration,
    caller: Option<Caller>,
) {
    let duration_ms = (elapsed.as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
    let (key, service) = match &caller {
        Some(caller) => (
            caller.name().to_string(),
            match &caller.scope {
                Scope::Admin => "*".to_string(),
                Scope::Service(id) => id.clone(),
            },
        ),
        None => ("-".to_string(), "-".to_string()),
    };
    let code = verify_proto::grpc_code_name(code);
    match message {
        Some(message) if code != "OK" => {
            let reason = mask_numbers(message);
            tracing::info!(target: "verifyd::access", method, code, duration_ms, key, service, reason = %reason, "rpc");
        }
        _ => {
            tracing::info!(target: "verifyd::access", method, code, duration_ms, key, service, "rpc")
        }
    }
}

/// The method's name as logs and metrics show it: `Verify` for verifyd's own service, the full
/// path for health and reflection (`grpc.health.v1.Health/Check`), `other` for paths no
/// service serves (a scanner's guesses must not each become a metric).
fn method_of(path: &str) -> String {
    let path = path.trim_start_matches('/');
    if let Some(method) = path.strip_prefix("verify.v1.VerifyService/") {
        return method.to_string();
    }
    let known = [
        "grpc.health.v1.Health/",
        "grpc.reflection.v1.ServerReflection/",
        "grpc.reflection.v1alpha.ServerReflection/",
    ];
    if known.iter().any(|service| path.starts_with(service)) && path.len() < 100 {
        return path.to_string();
    }
    "other".to_string()
}

/// `text` with every run of seven or more digits (a phone number, whole or nearly) masked but
/// its first three and last two digits, as the rate limits write numbers.
pub fn mask_numbers(text: &str) -> String {
    let mut masked = String::with_capacity(text.len());
    let mut digits = String::new();
    let flush = |digits: &mut String, masked: &mut String| {
        if digits.len() >= 7 {
            let keep_end = digits.len() - 2;
            for (i, c) in digits.chars().enumerate() {
                masked.push(if i < 3 || i >= keep_end { c } else { '*' });
            }
        } else {
            masked.push_str(digits);
        }
        digits.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut masked);
            masked.push(c);
        }
    }
    flush(&mut digits, &mut masked);
    masked
}

/// The status a set of headers or trailers carries, if any.
fn status_in(headers: &http::HeaderMap) -> Option<(Code, Option<String>)> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    let message = headers
        .get("grpc-message")
        .and_then(|value| value.to_str().ok())
        // Percent-encoded on the wire.
        .map(|value| {
            percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .into_owned()
        });
    Some((Code::from_i32(code), message))
}

impl<S, RequestBody, ResponseBody> Service<http::Request<RequestBody>> for Access<S>
where
    S: Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    RequestBody: Send + 'static,
    ResponseBody: Body + Unpin + Send + 'static,
{
    type Response = http::Response<ObservedBody<ResponseBody>>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<RequestBody>) -> Self::Future {
        let caller = CallerNote::default();
        request.extensions_mut().insert(caller.clone());
        let method = method_of(request.uri().path());
        let span = tracing::info_span!(
            "rpc",
            otel.name = %method,
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        crate::telemetry::continue_from_headers(&span, request.headers());
        let mut call = Call {
            method,
            started: Instant::now(),
            caller,
            span: span.clone(),
            ended: false,
        };
        // The clone that was made ready is the one called (tower's rule for cloned services).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = tracing::Instrument::instrument(inner.call(request), span).await;
            match response {
                Ok(response) => {
                    if let Some((code, message)) = status_in(response.headers()) {
                        call.end(code, message.as_deref());
                    }
                    Ok(response.map(|body| ObservedBody { inner: body, call }))
                }
                Err(error) => {
                    call.end(Code::Internal, Some("the service failed before answering"));
                    Err(error)
                }
            }
        })
    }
}

/// A response body that ends its call when the status arrives in its trailers.
pub struct ObservedBody<B> {
    inner: B,
    call: Call,
}

impl<B: Body + Unpin> Body for ObservedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some((code, message)) = status_in(trailers)
                {
                    self.call.end(code, message.as_deref());
                }
            }
            Poll::Ready(Some(Err(_))) => {
                self.call
                    .end(Code::Internal, Some("the response failed while being sent"));
            }
            Poll::Ready(None) => self.call.end(Code::Unknown, Some("no status was sent")),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_masked_and_short_digit_runs_kept() {
        assert_eq!(
            mask_numbers("to: +447400123456 is not a mobile; 5 requests in 10m"),
            "to: +447*******56 is not a mobile; 5 requests in 10m"
        );
        assert_eq!(mask_numbers("code 123456 wrong"), "code 123456 wrong");
        assert_eq!(mask_numbers("1234567"), "123**67");
    }

    #[test]
    fn method_names_and_status_messages_read_as_sent() {
        assert_eq!(method_of("/verify.v1.VerifyService/Verify"), "Verify");
        assert_eq!(
            method_of("/grpc.health.v1.Health/Check"),
            "grpc.health.v1.Health/Check"
        );
        assert_eq!(method_of("/wp-admin/setup.php"), "other");
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-status", "3".parse().unwrap());
        headers.insert("grpc-message", "to%3A%20bad%20%25".parse().unwrap());
        assert_eq!(
            status_in(&headers),
            Some((Code::InvalidArgument, Some("to: bad %".to_string())))
        );
    }
}
