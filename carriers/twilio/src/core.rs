//! The wire client of Twilio's REST API (2010-04-01): creates Message and Call resources and
//! maps Twilio's error bodies to carrier errors.

use std::time::Duration;

use serde::Deserialize;
use verify_carrier::{CarrierError, ErrorKind, mask_number};

use crate::config::TwilioConfig;

/// The REST API version in every resource path.
pub const API_VERSION: &str = "2010-04-01";

/// The body Twilio answers a failed request with.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ApiErrorBody {
    /// Twilio's error code, e.g. 21211.
    #[serde(default)]
    pub code: Option<u32>,
    /// Twilio's explanation.
    #[serde(default)]
    pub message: Option<String>,
}

/// The part of a created Message or Call resource the carrier reads.
#[derive(Debug, Clone, Deserialize)]
struct CreatedResource {
    sid: String,
}

/// Which resource to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resource {
    Messages,
    Calls,
}

impl Resource {
    fn path(self) -> &'static str {
        match self {
            Resource::Messages => "Messages.json",
            Resource::Calls => "Calls.json",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Resource::Messages => "message",
            Resource::Calls => "call",
        }
    }
}

/// Text that must not reach an error message (the destination is masked, the code dropped).
pub(crate) struct Redactions<'a> {
    pub to: &'a str,
    pub code: &'a str,
}

impl Redactions<'_> {
    fn apply(&self, text: &str) -> String {
        let mut text = text.to_string();
        if !self.to.is_empty() {
            text = text.replace(self.to, &mask_number(self.to));
            if let Some(digits) = self.to.strip_prefix('+') {
                text = text.replace(digits, &mask_number(digits));
            }
        }
        if self.code.len() >= 4 {
            text = text.replace(self.code, "<code>");
        }
        text.chars().filter(|c| !c.is_control()).take(300).collect()
    }
}

/// The REST client of one carrier.
pub(crate) struct TwilioClient {
    http: reqwest::Client,
    base: String,
    account_sid: String,
    username: String,
    password: String,
}

impl TwilioClient {
    pub(crate) fn new(config: &TwilioConfig) -> Result<Self, CarrierError> {
        let http = verify_carrier::http_client(Duration::from_millis(config.timeout_ms))?;
        let (username, password) = match (&config.api_key_sid, &config.api_key_secret) {
            (Some(sid), Some(secret)) => (sid.clone(), secret.expose().to_string()),
            _ => (
                config.account_sid.clone(),
                config.auth_token.expose().to_string(),
            ),
        };
        Ok(Self {
            http,
            base: config.api_base().to_string(),
            account_sid: config.account_sid.clone(),
            username,
            password,
        })
    }

    /// Creates a Message or Call from `form` and returns its sid.
    pub(crate) async fn create(
        &self,
        resource: Resource,
        form: &[(&str, &str)],
        redactions: &Redactions<'_>,
    ) -> Result<String, CarrierError> {
        let url = format!(
            "{}/{API_VERSION}/Accounts/{}/{}",
            self.base,
            self.account_sid,
            resource.path()
        );
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter())
            .finish();
        let response = self
            .http
            .post(&url)
            .basic_auth(&self.username, Some(&self.password))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(verify_carrier::request_error)?;
        let (status, bytes) = verify_carrier::read_answer(response, MAX_ANSWER_BYTES).await?;
        if (200..300).contains(&status) {
            // Twilio created the resource: whatever is wrong with the answer, the message may be
            // on its way, so it is maybe sent, never failed over.
            let sid = serde_json::from_slice::<CreatedResource>(&bytes)
                .map(|created| created.sid)
                .unwrap_or_default();
            if sid.is_empty() {
                return Err(verify_carrier::unreadable_acceptance(
                    "Twilio",
                    status,
                    &format!("no readable sid for the new {}", resource.noun()),
                ));
            }
            return Ok(sid);
        }
        let error: ApiErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
        Err(map_api_error(status, &error, redactions))
    }
}

/// The most of an answer's body that is read: Twilio's answers are a few kilobytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A form body's name/value pairs, percent-decoded, in order.
#[cfg_attr(not(feature = "test-peer"), allow(dead_code))]
pub(crate) fn decode_form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body)
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

/// Error codes that say the destination cannot be reached on this channel.
const DESTINATION_CODES: &[(u32, &str)] = &[
    (21211, "invalid 'To' number"),
    (21214, "'To' number cannot be reached"),
    (21217, "'To' number is not valid"),
    (21401, "invalid phone number"),
    (21407, "destination not supported for SMS"),
    (21421, "invalid phone number"),
    (21612, "'To' number is not reachable via SMS"),
    (21614, "'To' number is not a mobile number"),
    (13223, "invalid phone number format"),
    (13224, "invalid phone number"),
];

/// Error codes that say this account, sender or recipient refuses the message for good.
const REJECTION_CODES: &[(u32, &str)] = &[
    (21408, "permission to send to this region is not enabled"),
    (21610, "the recipient has unsubscribed (replied STOP)"),
    (
        21215,
        "geographic permission for calls to this number is not enabled",
    ),
    (21216, "the account may not call this number"),
    (21212, "invalid 'From' number"),
    (
        21606,
        "'From' number is not a valid message-capable Twilio number",
    ),
    (21659, "'From' number is not a Twilio number"),
    (21602, "message body is required"),
    (21617, "message body is too long"),
];

/// Maps Twilio's answer to a failed create to a carrier error.
pub(crate) fn map_api_error(
    status: u16,
    error: &ApiErrorBody,
    redactions: &Redactions<'_>,
) -> CarrierError {
    let code = error.code;
    let words = error
        .message
        .as_deref()
        .map(|m| redactions.apply(m))
        .filter(|m| !m.is_empty());
    let described = |fallback: &str| -> String {
        let code = code.map(|c| format!(" {c}")).unwrap_or_default();
        let words = words.clone().unwrap_or_else(|| fallback.to_string());
        format!("Twilio error{code} (HTTP {status}): {words}")
    };
    if status == 429 || code == Some(20429) {
        return CarrierError::new(ErrorKind::RateLimited, described("too many requests"))
            .set_temporary();
    }
    if status == 504 {
        // A gateway timeout: Twilio's edge gave up on the service behind it, which may have
        // created the message.
        return verify_carrier::gateway_timeout("Twilio");
    }
    if status >= 500 {
        return CarrierError::new(ErrorKind::Unavailable, described("service unavailable"))
            .set_temporary();
    }
    if status == 401 || status == 403 || code == Some(20003) {
        // Twilio's words are not repeated: they could echo what was sent.
        return CarrierError::new(
            ErrorKind::Config,
            format!(
                "Twilio refused the credentials (HTTP {status}{}): check account_sid, auth_token or the API key",
                code.map(|c| format!(", code {c}")).unwrap_or_default()
            ),
        )
        .set_permanent();
    }
    if status == 404 || code == Some(20404) {
        return CarrierError::new(
            ErrorKind::Config,
            described("resource not found: check account_sid and base_url"),
        )
        .set_permanent();
    }
    if let Some((_, fallback)) = code.and_then(|c| DESTINATION_CODES.iter().find(|(k, _)| *k == c))
    {
        return CarrierError::new(ErrorKind::InvalidDestination, described(fallback))
            .set_permanent();
    }
    if let Some((_, fallback)) = code.and_then(|c| REJECTION_CODES.iter().find(|(k, _)| *k == c)) {
        return CarrierError::new(ErrorKind::Rejected, described(fallback)).set_permanent();
    }
    if (400..500).contains(&status) {
        return CarrierError::new(ErrorKind::Rejected, described("request refused"))
            .set_permanent();
    }
    CarrierError::new(ErrorKind::Other, described("unexpected answer")).set_temporary()
}

/// A short description of an `ErrorCode` in a status callback, for receipts.
pub(crate) fn delivery_error_words(code: &str) -> Option<&'static str> {
    Some(match code {
        "30001" => "queue overflow",
        "30002" => "account suspended",
        "30003" => "unreachable destination handset",
        "30004" => "message blocked",
        "30005" => "unknown destination handset",
        "30006" => "landline or unreachable carrier",
        "30007" => "filtered by the carrier",
        "30008" => "unknown error",
        "30009" => "missing segment",
        "30010" => "message price exceeds max price",
        "30034" => "US A2P 10DLC: sender not registered",
        "21610" => "recipient unsubscribed",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: u32, message: &str) -> ApiErrorBody {
        ApiErrorBody {
            code: Some(code),
            message: Some(message.into()),
        }
    }

    const NONE: Redactions<'static> = Redactions {
        to: "+15005550001",
        code: "424242",
    };

    #[test]
    fn documented_errors_map_to_kinds() {
        let cases: &[(u16, u32, ErrorKind, bool)] = &[
            (429, 20429, ErrorKind::RateLimited, true),
            (503, 20503, ErrorKind::Unavailable, true),
            (500, 20500, ErrorKind::Unavailable, true),
            (401, 20003, ErrorKind::Config, false),
            (403, 20003, ErrorKind::Config, false),
            (404, 20404, ErrorKind::Config, false),
            (400, 21211, ErrorKind::InvalidDestination, false),
            (400, 21614, ErrorKind::InvalidDestination, false),
            (400, 21610, ErrorKind::Rejected, false),
            (400, 21408, ErrorKind::Rejected, false),
            (400, 21215, ErrorKind::Rejected, false),
            (400, 12345, ErrorKind::Rejected, false),
        ];
        for (status, code, kind, temporary) in cases {
            let error = map_api_error(*status, &body(*code, "words"), &NONE);
            assert_eq!(error.kind(), *kind, "{status}/{code}: {error}");
            assert_eq!(error.is_temporary(), *temporary, "{status}/{code}: {error}");
            assert!(!error.is_maybe_sent(), "{status}/{code}: {error}");
        }
        let timeout = map_api_error(504, &body(20504, "Gateway Timeout"), &NONE);
        assert!(timeout.is_maybe_sent(), "{timeout}");
        assert_eq!(timeout.kind(), ErrorKind::Timeout);
    }

    #[test]
    fn messages_keep_twilios_code_and_words_without_the_number_or_code() {
        let error = map_api_error(
            400,
            &body(
                21211,
                "The 'To' number +15005550001 is not a valid phone number (code 424242).",
            ),
            &NONE,
        );
        let shown = error.to_string();
        assert!(shown.contains("21211"), "{shown}");
        assert!(shown.contains("is not a valid phone number"), "{shown}");
        assert!(!shown.contains("5005550001"), "{shown}");
        assert!(!shown.contains("424242"), "{shown}");
        let refused = map_api_error(401, &body(20003, "Authenticate as tok3n"), &NONE);
        assert!(
            refused.message().contains("refused the credentials"),
            "{refused}"
        );
        assert!(!refused.message().contains("tok3n"), "{refused}");
    }

    #[test]
    fn unreadable_error_bodies_still_map_by_status() {
        let none = ApiErrorBody::default();
        assert_eq!(
            map_api_error(502, &none, &NONE).kind(),
            ErrorKind::Unavailable
        );
        assert_eq!(
            map_api_error(429, &none, &NONE).kind(),
            ErrorKind::RateLimited
        );
        assert_eq!(map_api_error(400, &none, &NONE).kind(), ErrorKind::Rejected);
        assert!(map_api_error(302, &none, &NONE).is_temporary());
    }
}
