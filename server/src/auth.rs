//! API keys: `authorization: Bearer <key>` on every VerifyService call, checked against the
//! SHA-256 hashes in the configuration in constant time. Health and reflection stay open.
//! Each request then carries its [`Caller`]: the key's name and what it may see (a key with a
//! `service` sees that service only; one without is an admin key).

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::access::CallerNote;
use crate::config::ApiKeyEntry;
use crate::usecases::{Caller, Scope};

/// One configured key: its name, the hash of the key, and its service (`None`: admin).
type KnownKey = (String, [u8; 32], Option<String>);

/// Checks the bearer key of each request and puts its [`Caller`] in the request's
/// extensions; with no keys configured every request passes, as an admin.
#[derive(Clone)]
pub struct ApiKeyCheck {
    keys: Arc<Vec<KnownKey>>,
}

impl ApiKeyCheck {
    /// From the configured entries (already validated as 64 hex digits).
    pub fn new(entries: &[ApiKeyEntry]) -> Self {
        let keys = entries
            .iter()
            .filter_map(|entry| {
                let bytes = hex::decode(&entry.sha256).ok()?;
                let hash: [u8; 32] = bytes.try_into().ok()?;
                Some((entry.name.clone(), hash, entry.service.clone()))
            })
            .collect();
        ApiKeyCheck {
            keys: Arc::new(keys),
        }
    }

    /// Whether any key is configured.
    pub fn is_enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The caller a presented key stands for, if it is one of the configured keys.
    fn caller_of(&self, presented: &str) -> Option<Caller> {
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        // Compare against every key so timing does not tell which one (or whether any) matched.
        for known in self.keys.iter() {
            if bool::from(known.1.ct_eq(&hash)) {
                found = Some(known);
            }
        }
        found.map(|(name, _, service)| Caller {
            key_name: Some(name.clone()),
            scope: match service {
                Some(service) => Scope::Service(service.clone()),
                None => Scope::Admin,
            },
        })
    }

    /// The services keys are bound to, for a check at start that each exists.
    pub fn services(&self) -> Vec<(String, String)> {
        self.keys
            .iter()
            .filter_map(|(name, _, service)| service.clone().map(|s| (name.clone(), s)))
            .collect()
    }
}

impl ApiKeyCheck {
    /// The caller an `authorization` header value stands for; with no keys configured,
    /// everyone is the local admin. The refusal says what was wrong with the header.
    pub fn caller_for(&self, header: Option<&str>) -> Result<Caller, String> {
        if !self.is_enabled() {
            return Ok(Caller::local());
        }
        let Some(header) = header else {
            return Err("missing API key: send `authorization: Bearer <key>`".into());
        };
        let Some(presented) = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
        else {
            return Err(
                "`authorization` must be `Bearer <key>` (the word Bearer, a space, then the key)"
                    .into(),
            );
        };
        self.caller_of(presented.trim())
            .ok_or_else(|| "invalid API key in `authorization: Bearer <key>`".into())
    }
}

impl ApiKeyCheck {
    /// The caller of an HTTP request to an operator page: the key as `Bearer <key>` (scripts,
    /// Prometheus' `authorization`) or as the password of HTTP Basic (browsers, Prometheus'
    /// `basic_auth`; the user name is not checked, and a key given as the user name with an
    /// empty password counts too). With no keys configured, everyone is the local admin.
    pub fn caller_for_http(&self, header: Option<&str>) -> Result<Caller, String> {
        let Some(credentials) = header.and_then(|value| {
            value
                .strip_prefix("Basic ")
                .or_else(|| value.strip_prefix("basic "))
        }) else {
            return self.caller_for(header);
        };
        if !self.is_enabled() {
            return Ok(Caller::local());
        }
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or("`authorization: Basic` must carry base64 of `user:key`")?;
        let (user, password) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
        let presented = if password.is_empty() { user } else { password };
        self.caller_of(presented)
            .ok_or_else(|| "invalid API key (give an API key as the password)".into())
    }
}

impl Interceptor for ApiKeyCheck {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok());
        let caller = self.caller_for(header).map_err(Status::unauthenticated)?;
        if self.is_enabled() {
            tracing::debug!(api_key = caller.name(), "authenticated");
        }
        if let Some(note) = request.extensions().get::<CallerNote>() {
            note.set(&caller);
        }
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> ApiKeyCheck {
        ApiKeyCheck::new(&[
            ApiKeyEntry {
                name: "backend".into(),
                sha256: crate::codes::hash_api_key("s3cret-key"),
                service: None,
            },
            ApiKeyEntry {
                name: "acme-backend".into(),
                sha256: crate::codes::hash_api_key("acme-key"),
                service: Some("acme".into()),
            },
        ])
    }

    fn request(header: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(value) = header {
            request
                .metadata_mut()
                .insert("authorization", value.parse().unwrap());
        }
        request
    }

    #[test]
    fn right_key_passes_and_others_are_unauthenticated() {
        let mut check = check();
        let passed = check.call(request(Some("Bearer s3cret-key"))).unwrap();
        assert_eq!(
            passed.extensions().get::<Caller>(),
            Some(&Caller::admin("backend"))
        );
        let passed = check.call(request(Some("Bearer acme-key"))).unwrap();
        assert_eq!(
            passed.extensions().get::<Caller>(),
            Some(&Caller::of_service("acme-backend", "acme"))
        );
        for header in [
            None,
            Some("Bearer wrong"),
            Some("s3cret-key"),
            Some("Bearer "),
        ] {
            let status = check.call(request(header)).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{header:?}");
            assert!(!status.message().contains("s3cret"));
        }
        let status = check.call(request(Some("s3cret-key"))).unwrap_err();
        assert_eq!(
            status.message(),
            "`authorization` must be `Bearer <key>` (the word Bearer, a space, then the key)"
        );
    }

    #[test]
    fn operator_pages_take_the_key_as_bearer_or_as_the_basic_password() {
        use base64::Engine as _;
        let check = check();
        let basic = |text: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(text)
            )
        };
        for header in [
            "Bearer s3cret-key".to_string(),
            basic("admin:s3cret-key"),
            basic(":s3cret-key"),
            basic("s3cret-key:"),
        ] {
            assert_eq!(
                check.caller_for_http(Some(&header)),
                Ok(Caller::admin("backend")),
                "{header}"
            );
        }
        assert_eq!(
            check.caller_for_http(Some(&basic("x:acme-key"))),
            Ok(Caller::of_service("acme-backend", "acme"))
        );
        assert_eq!(
            check.caller_for_http(Some(&basic("admin:wrong"))),
            Err("invalid API key (give an API key as the password)".to_string())
        );
        assert_eq!(
            check.caller_for_http(Some("Basic %%%")),
            Err("`authorization: Basic` must carry base64 of `user:key`".to_string())
        );
        assert!(check.caller_for_http(None).is_err());
        assert_eq!(
            ApiKeyCheck::new(&[]).caller_for_http(Some(&basic("a:b"))),
            Ok(Caller::local())
        );
    }

    #[test]
    fn no_keys_means_open() {
        let mut open = ApiKeyCheck::new(&[]);
        assert!(!open.is_enabled());
        let passed = open.call(request(None)).unwrap();
        assert_eq!(passed.extensions().get::<Caller>(), Some(&Caller::local()));
    }
}
