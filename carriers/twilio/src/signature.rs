//! Twilio's request signature (`X-Twilio-Signature`): HMAC-SHA1 under the auth token over the
//! full URL followed by every POST parameter, sorted by name, as name then value; base64.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// The header Twilio puts its signature in.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// The signature Twilio sends for a request to `url` with form `params`.
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `signature` is Twilio's signature of `url` and `params`, compared in constant time.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    let expected = sign(auth_token, url, params);
    expected
        .as_bytes()
        .ct_eq(signature.trim().as_bytes())
        .into()
}

/// The forms of `url` Twilio may have signed: as given, and with the scheme's default port
/// added or removed (Twilio's own helper libraries accept both, since proxies rewrite it).
pub(crate) fn url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_string()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return variants;
    };
    let default_port = match scheme {
        "https" => "443",
        "http" => "80",
        _ => return variants,
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let has_port = host_port
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
        && !host_port.ends_with(']');
    if has_port {
        if let Some(stripped) = authority.strip_suffix(&format!(":{default_port}")) {
            variants.push(format!("{scheme}://{stripped}{tail}"));
        }
    } else {
        variants.push(format!("{scheme}://{authority}:{default_port}{tail}"));
    }
    variants
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The example of Twilio's security documentation (auth token `12345`).
    fn documented_params() -> Vec<(String, String)> {
        pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ])
    }

    const DOCUMENTED_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    #[test]
    fn matches_twilios_documented_example() {
        assert_eq!(
            sign("12345", DOCUMENTED_URL, &documented_params()),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        // The same request with the parameters in another order signs the same.
        let mut shuffled = documented_params();
        shuffled.reverse();
        assert!(verify(
            "12345",
            DOCUMENTED_URL,
            &shuffled,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let good = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        let mut changed = documented_params();
        changed[2].1 = "1235".into();
        assert!(!verify("12345", DOCUMENTED_URL, &changed, good));
        let mut added = documented_params();
        added.push(("Extra".into(), "1".into()));
        assert!(!verify("12345", DOCUMENTED_URL, &added, good));
        assert!(!verify(
            "12345",
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            &documented_params(),
            good
        ));
        assert!(!verify("54321", DOCUMENTED_URL, &documented_params(), good));
        assert!(!verify("12345", DOCUMENTED_URL, &documented_params(), ""));
    }

    #[test]
    fn default_ports_are_tried_both_ways() {
        assert_eq!(
            url_variants("https://example.com/callbacks/tw?a=1"),
            vec![
                "https://example.com/callbacks/tw?a=1".to_string(),
                "https://example.com:443/callbacks/tw?a=1".to_string()
            ]
        );
        assert_eq!(
            url_variants("http://example.com:80/x"),
            vec![
                "http://example.com:80/x".to_string(),
                "http://example.com/x".to_string()
            ]
        );
        assert_eq!(
            url_variants("http://127.0.0.1:8080/x"),
            vec!["http://127.0.0.1:8080/x".to_string()]
        );
    }
}
