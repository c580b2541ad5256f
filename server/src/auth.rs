//! API keys: `authorization: Bearer <key>` on every VerifyService call, checked against the
//! SHA-256 hashes in the configuration in constant time. Health and reflection stay open.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::config::ApiKeyEntry;

/// The configured name of the API key a request was authenticated with (in the request's
/// extensions; absent when no keys are configured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyName(pub String);

/// Checks the bearer key of each request; with no keys configured every request passes.
#[derive(Clone)]
pub struct ApiKeyCheck {
    keys: Arc<Vec<(String, [u8; 32])>>,
}

impl ApiKeyCheck {
    /// From the configured entries (already validated as 64 hex digits).
    pub fn new(entries: &[ApiKeyEntry]) -> Self {
        let keys = entries
            .iter()
            .filter_map(|entry| {
                let bytes = hex::decode(&entry.sha256).ok()?;
                let hash: [u8; 32] = bytes.try_into().ok()?;
                Some((entry.name.clone(), hash))
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

    fn key_name(&self, presented: &str) -> Option<&str> {
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        // Compare against every key so timing does not tell which one (or whether any) matched.
        for (name, stored) in self.keys.iter() {
            if bool::from(stored.ct_eq(&hash)) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

impl Interceptor for ApiKeyCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        if !self.is_enabled() {
            return Ok(request);
        }
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok());
        let Some(header) = header else {
            return Err(Status::unauthenticated(
                "missing API key: send metadata `authorization: Bearer <key>`",
            ));
        };
        let presented = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .unwrap_or("")
            .trim();
        match self.key_name(presented) {
            Some(name) => {
                tracing::debug!(api_key = name, "authenticated");
                let name = ApiKeyName(name.to_string());
                let mut request = request;
                request.extensions_mut().insert(name);
                Ok(request)
            }
            None => Err(Status::unauthenticated(
                "invalid API key in `authorization: Bearer <key>`",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> ApiKeyCheck {
        ApiKeyCheck::new(&[ApiKeyEntry {
            name: "backend".into(),
            sha256: crate::codes::hash_api_key("s3cret-key"),
        }])
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
            passed.extensions().get::<ApiKeyName>(),
            Some(&ApiKeyName("backend".into()))
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
    }

    #[test]
    fn no_keys_means_open() {
        let mut open = ApiKeyCheck::new(&[]);
        assert!(!open.is_enabled());
        assert!(open.call(request(None)).is_ok());
    }
}
