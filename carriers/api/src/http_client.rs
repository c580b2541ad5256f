//! The HTTP client HTTP carriers share (rustls with the ring provider, the platform's roots, a
//! timeout per request, a user agent naming verifyd) and the small helpers for vendors' answers.

use std::sync::Once;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{CarrierError, ErrorKind};

static INSTALL_PROVIDER: Once = Once::new();

/// Makes ring the process's rustls crypto provider (once; an earlier choice is kept).
pub fn install_crypto_provider() {
    INSTALL_PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A client for one carrier: each request gives up after `timeout`. Connecting gives up after
/// half of it (at most 5 s), so a peer that cannot be reached ends as a connect error (nothing
/// sent) rather than as a request that timed out (maybe sent).
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, CarrierError> {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout((timeout / 2).min(Duration::from_secs(5)))
        .user_agent(concat!("verifyd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| CarrierError::new(ErrorKind::Config, format!("HTTP client: {e}")))
}

/// Maps a failed request (no complete HTTP answer) to a carrier error. The message names the
/// host only, never the URL's query or credentials.
///
/// - The connection was never made (refused, DNS, TLS handshake, connect timeout: reqwest's
///   `is_connect`) or the request could not be built: nothing reached the vendor, a temporary
///   `Unavailable`.
/// - Anything later (no answer in time, the connection reset or closed after the request was
///   written, an answer body that could not be read): the vendor may have taken the message,
///   so it is *maybe sent* ([`CarrierError::maybe_sent`]), `Timeout` when time ran out, else
///   `Unavailable`. A request written on a kept-alive connection the vendor had just closed
///   also lands here: the client cannot tell whether the vendor read it.
pub fn request_error(error: reqwest::Error) -> CarrierError {
    let host = error
        .url()
        .and_then(|url| url.host_str().map(str::to_string))
        .unwrap_or_else(|| "the carrier".to_string());
    if error.is_connect() {
        let how = if error.is_timeout() {
            "timed out"
        } else {
            "failed"
        };
        CarrierError::new(
            ErrorKind::Unavailable,
            format!("connecting to {host} {how}"),
        )
    } else if error.is_builder() {
        CarrierError::new(
            ErrorKind::Unavailable,
            format!("request to {host} not sent: {}", error.without_url()),
        )
        .set_temporary()
    } else if error.is_timeout() {
        CarrierError::maybe_sent(
            ErrorKind::Timeout,
            format!("{host} did not answer in time after the request was sent"),
        )
    } else {
        CarrierError::maybe_sent(
            ErrorKind::Unavailable,
            format!(
                "the request to {host} was sent and no answer could be read: {}",
                error.without_url()
            ),
        )
    }
}

/// Reads an answer body, keeping at most `max_bytes` of it (vendors' answers are small; a
/// larger one is cut, not buffered whole). A body that cannot be read is a maybe-sent error
/// (see [`request_error`]).
pub async fn read_bounded(
    mut response: reqwest::Response,
    max_bytes: usize,
) -> Result<Vec<u8>, CarrierError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(request_error)? {
        let room = max_bytes.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room <= chunk.len() {
            break;
        }
    }
    Ok(body)
}

/// An answer's status and body (at most `max_bytes`, see [`read_bounded`]). When the body of
/// an answer that is not a success cannot be read, the status alone tells the refusal: the
/// body is then empty. A success whose body cannot be read is maybe sent (the vendor took the
/// message and its id was lost on the way).
pub async fn read_answer(
    response: reqwest::Response,
    max_bytes: usize,
) -> Result<(u16, Vec<u8>), CarrierError> {
    let status = response.status().as_u16();
    match read_bounded(response, max_bytes).await {
        Ok(body) => Ok((status, body)),
        Err(_) if !(200..300).contains(&status) => Ok((status, Vec::new())),
        Err(error) => Err(error),
    }
}

/// The error for an answer in the 2xx range that cannot be read as an acceptance (no id, a
/// body that is not the vendor's format): the vendor took the message, so it is maybe sent,
/// and the message says what was wrong (`what`, e.g. "a body that is not JSON").
pub fn unreadable_acceptance(vendor: &str, status: u16, what: &str) -> CarrierError {
    CarrierError::maybe_sent(
        ErrorKind::Other,
        format!("{vendor} accepted the request (HTTP {status}) with {what}"),
    )
}

/// The error for HTTP 504 (Gateway Timeout): the vendor's front end gave up waiting for the
/// service behind it, which may have taken the message. Maybe sent, like our own timeout.
pub fn gateway_timeout(vendor: &str) -> CarrierError {
    CarrierError::maybe_sent(
        ErrorKind::Timeout,
        format!("{vendor} answered HTTP 504: its service did not answer in time"),
    )
}

/// Seconds since the Unix epoch (0 for a clock before it): the timestamps of vendors' request
/// and receipt signatures.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Vendor text fit for an error or a receipt detail: at most `max_chars` characters, control
/// characters as spaces, and the one-time `code` (when not empty) replaced by `<code>`.
pub fn vendor_text(text: &str, code: &str, max_chars: usize) -> String {
    let mut clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max_chars)
        .collect();
    if !code.is_empty() {
        clean = clean.replace(code, "<code>");
    }
    clean
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// Reads one HTTP request (head and a `content-length` body) from `stream`.
    async fn read_request(stream: &mut TcpStream) -> Vec<u8> {
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let n = stream.read(&mut buffer).await.expect("read the request");
            assert!(n > 0, "the client closed before sending its request");
            request.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
            let Some(head_end) = text.find("\r\n\r\n") else {
                continue;
            };
            let length: usize = text
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if request.len() >= head_end + 4 + length {
                return request;
            }
        }
    }

    /// A local peer that reads one request and then does what `then` does with the stream.
    async fn peer<F, Fut>(then: F) -> String
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            read_request(&mut stream).await;
            then(stream).await;
        });
        format!("http://{address}/messages")
    }

    async fn post(url: &str) -> Result<reqwest::Response, CarrierError> {
        http_client(Duration::from_millis(400))
            .expect("client")
            .post(url)
            .body("code=424242")
            .send()
            .await
            .map_err(request_error)
    }

    #[tokio::test]
    async fn a_peer_that_reads_the_request_and_never_answers_leaves_it_maybe_sent() {
        let (hold, held) = tokio::sync::oneshot::channel::<()>();
        let url = peer(|stream| async move {
            let _ = held.await;
            drop(stream);
        })
        .await;
        let error = post(&url).await.expect_err("no answer");
        assert!(error.is_maybe_sent(), "{error}");
        assert!(!error.is_temporary(), "{error}");
        assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
        assert!(!error.message().contains("424242"), "{error}");
        drop(hold);
    }

    #[tokio::test]
    async fn a_peer_that_closes_after_reading_the_request_leaves_it_maybe_sent() {
        let url = peer(|stream| async move { drop(stream) }).await;
        let error = post(&url).await.expect_err("closed without an answer");
        assert!(error.is_maybe_sent(), "{error}");
        assert!(!error.is_temporary(), "{error}");
        assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    }

    #[tokio::test]
    async fn a_peer_nobody_listens_on_is_temporarily_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        let error = post(&format!("http://{address}/messages"))
            .await
            .expect_err("refused");
        assert!(!error.is_maybe_sent(), "{error}");
        assert!(error.is_temporary(), "{error}");
        assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    }

    /// A peer that answers `status` with a body cut short: it promises 100 bytes, sends 10
    /// and closes.
    async fn cut_answer(status: u16) -> String {
        peer(move |mut stream| async move {
            let head = format!("HTTP/1.1 {status} X\r\ncontent-length: 100\r\n\r\n0123456789");
            stream.write_all(head.as_bytes()).await.expect("write");
            stream.flush().await.expect("flush");
        })
        .await
    }

    #[tokio::test]
    async fn an_answer_cut_short_is_maybe_sent_on_success_and_a_refusal_otherwise() {
        let response = post(&cut_answer(200).await).await.expect("an answer");
        let error = read_answer(response, 1024).await.expect_err("body lost");
        assert!(error.is_maybe_sent(), "{error}");
        let response = post(&cut_answer(422).await).await.expect("an answer");
        let (status, body) = read_answer(response, 1024).await.expect("the status tells");
        assert_eq!(status, 422);
        assert!(body.is_empty());
    }
}
