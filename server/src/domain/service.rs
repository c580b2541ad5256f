//! A service: one app verifying numbers through verifyd, with its own name in the messages,
//! code settings, channels, locale, templates and workflow. Every verification and
//! notification belongs to one; an API key may belong to one and then sees only its own.
//! The rules of what a service may be are here; where services come from (the configuration
//! file, the database) is the server's business.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use verify_carrier::Channel;
use verify_policy::Workflow;
use verify_policy::messages::{Wording, check_app_hash, check_domain, check_template};

use super::webhook::{WebhookSecret, check_webhook_url};

/// The id of the service that always exists: what requests belong to when nothing names
/// another, and what every verification stored before services existed belongs to.
pub const DEFAULT_SERVICE: &str = "default";
/// Longest service id.
pub const MAX_SERVICE_ID_LENGTH: usize = 64;
/// Longest friendly name (it goes into every message).
pub const MAX_FRIENDLY_NAME_LENGTH: usize = 32;
/// Most templates per service.
pub const MAX_TEMPLATES: usize = 64;

/// A service's own words for one locale and channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageTemplate {
    /// The locale it is for (`en`, `es-MX`).
    pub locale: String,
    /// The channel it is for.
    pub channel: Channel,
    /// The text with `{code}` and optionally `{service}` and `{lifetime}`.
    pub text: String,
}

/// What a service is made of, as configured (`[[services]]`), stored, or asked for by
/// CreateService/UpdateService: unset values take the server's `[codes]` settings when the
/// service is resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    /// The id.
    pub id: String,
    /// The name in messages; empty names none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub friendly_name: String,
    /// Digits per code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_length: Option<u32>,
    /// Code lifetime, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_lifetime_seconds: Option<u64>,
    /// Checks per verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_checks: Option<u32>,
    /// Sends per verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sends: Option<u32>,
    /// Channels allowed; empty allows all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<Channel>,
    /// Locale when a request does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_locale: Option<String>,
    /// Its own words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<MessageTemplate>,
    /// Its fallback workflow; empty for the country's.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workflow: String,
    /// Default Android SMS Retriever app hash of its codes' SMS; empty for none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub app_hash: String,
    /// Default host of its codes' domain-bound line (`@host #code`); empty for none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    /// Status webhook URL; empty for none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub webhook_url: String,
    /// The webhook's signing secret (`whsec_...`); made when a URL comes without one.
    #[serde(default, skip_serializing_if = "WebhookSecret::is_empty")]
    pub webhook_secret: WebhookSecret,
    /// In the configuration file: the environment variable that holds `webhook_secret`.
    #[serde(default, skip_serializing)]
    pub webhook_secret_env: Option<String>,
    /// Abuse defense for its requests: empty for the server's `[abuse]`, or `strict` for the
    /// pumping guard at level strict (a service may tighten the server's rules, never loosen
    /// them).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub abuse_level: String,
}

/// The values a service takes where its settings say nothing (the server's `[codes]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDefaults {
    /// Digits per code.
    pub code_length: u32,
    /// Code lifetime, seconds.
    pub code_lifetime_seconds: u64,
    /// Checks per verification.
    pub max_checks: u32,
    /// Sends per verification.
    pub max_sends: u32,
    /// Locale of messages.
    pub default_locale: String,
}

/// A service ready to use: every value known and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The id.
    pub id: String,
    /// The name in messages; empty names none.
    pub friendly_name: String,
    /// Digits per code when a request does not say.
    pub code_length: u32,
    /// How long a code is accepted.
    pub code_lifetime: Duration,
    /// Checks per verification.
    pub max_checks: u32,
    /// Sends per verification.
    pub max_sends: u32,
    /// Channels allowed; empty allows all.
    pub channels: Vec<Channel>,
    /// Locale when a request does not say.
    pub default_locale: String,
    /// Its own words.
    pub templates: Vec<MessageTemplate>,
    /// Its fallback workflow, if it has one.
    pub workflow: Option<Workflow>,
    /// Default Android SMS Retriever app hash; empty for none.
    pub app_hash: String,
    /// Default host of the domain-bound code line; empty for none.
    pub domain: String,
    /// Status webhook URL; empty for none.
    pub webhook_url: String,
    /// The webhook's signing secret (set whenever the URL is).
    pub webhook_secret: WebhookSecret,
    /// Its requests meet the pumping guard at level strict.
    pub strict_abuse: bool,
    /// From the configuration file (changed there, not through the API).
    pub configured: bool,
    /// When it was stored; `None` for a configured service.
    pub created_at_ms: Option<i64>,
    /// When it last changed; `None` for a configured service.
    pub updated_at_ms: Option<i64>,
}

/// Why settings are not a service: the field (as named in `Service`, with its position in a
/// list) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ServiceError {
    /// The field, e.g. `templates[1].text`.
    pub field: String,
    /// What is wrong and what would be right.
    pub reason: String,
}

fn refuse(field: impl Into<String>, reason: impl Into<String>) -> ServiceError {
    ServiceError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Whether `id` may name a service: 1 to 64 lower-case letters, digits, `-` and `_`,
/// starting with a letter or digit.
pub fn check_service_id(id: &str) -> Result<(), ServiceError> {
    let well_formed = !id.is_empty()
        && id.len() <= MAX_SERVICE_ID_LENGTH
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && id
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if well_formed {
        Ok(())
    } else {
        Err(refuse(
            "id",
            format!(
                "`{id}` is not a service id: use 1 to {MAX_SERVICE_ID_LENGTH} lower-case letters, digits, `-` and `_`, e.g. acme-shop"
            ),
        ))
    }
}

/// A language tag such as `en`, `es-MX` or `pt-BR`.
fn is_language_tag(locale: &str) -> bool {
    !locale.is_empty()
        && locale.len() <= 35
        && locale.split(['-', '_']).all(|part| {
            !part.is_empty() && part.len() <= 8 && part.chars().all(|c| c.is_ascii_alphanumeric())
        })
}

impl ServiceSettings {
    /// Settings of the service `default` from the server's `[codes]` (no name, no templates).
    pub fn default_service() -> ServiceSettings {
        ServiceSettings {
            id: DEFAULT_SERVICE.to_string(),
            ..ServiceSettings::default()
        }
    }

    /// The service these settings describe, unset values taken from `defaults`; every value
    /// is checked, and the first wrong one named.
    pub fn resolve(&self, defaults: &ServiceDefaults) -> Result<Service, ServiceError> {
        check_service_id(&self.id)?;
        let friendly_name = self.friendly_name.trim().to_string();
        if friendly_name.chars().count() > MAX_FRIENDLY_NAME_LENGTH {
            return Err(refuse(
                "friendly_name",
                format!("longer than {MAX_FRIENDLY_NAME_LENGTH} characters"),
            ));
        }
        if friendly_name
            .chars()
            .any(|c| c.is_control() || c == '{' || c == '}')
        {
            return Err(refuse(
                "friendly_name",
                "must not hold control characters or braces",
            ));
        }
        let code_length = self.code_length.unwrap_or(defaults.code_length);
        if !(4..=10).contains(&code_length) {
            return Err(refuse(
                "code_length",
                format!("must be between 4 and 10, got {code_length}"),
            ));
        }
        let lifetime = self
            .code_lifetime_seconds
            .unwrap_or(defaults.code_lifetime_seconds);
        if !(1..=86_400).contains(&lifetime) {
            return Err(refuse(
                "code_lifetime_seconds",
                format!("must be between 1 and 86400, got {lifetime}"),
            ));
        }
        let max_checks = self.max_checks.unwrap_or(defaults.max_checks);
        if !(1..=100).contains(&max_checks) {
            return Err(refuse(
                "max_checks",
                format!("must be between 1 and 100, got {max_checks}"),
            ));
        }
        let max_sends = self.max_sends.unwrap_or(defaults.max_sends);
        if !(1..=100).contains(&max_sends) {
            return Err(refuse(
                "max_sends",
                format!("must be between 1 and 100, got {max_sends}"),
            ));
        }
        let mut channels = self.channels.clone();
        channels.sort_by_key(|channel| channel.as_str());
        channels.dedup();
        let default_locale = self
            .default_locale
            .clone()
            .filter(|locale| !locale.is_empty())
            .unwrap_or_else(|| defaults.default_locale.clone());
        if !is_language_tag(&default_locale) {
            return Err(refuse(
                "default_locale",
                format!("`{default_locale}` is not a language tag such as en, es-MX or pt-BR"),
            ));
        }
        if self.templates.len() > MAX_TEMPLATES {
            return Err(refuse(
                "templates",
                format!("at most {MAX_TEMPLATES} templates"),
            ));
        }
        for (index, template) in self.templates.iter().enumerate() {
            let field = |name: &str| format!("templates[{index}].{name}");
            if !is_language_tag(&template.locale) {
                return Err(refuse(
                    field("locale"),
                    format!(
                        "`{}` is not a language tag such as en, es-MX or pt-BR",
                        template.locale
                    ),
                ));
            }
            let twice = self.templates[..index].iter().any(|earlier| {
                earlier.channel == template.channel
                    && earlier.locale.eq_ignore_ascii_case(&template.locale)
            });
            if twice {
                return Err(refuse(
                    field("locale"),
                    format!(
                        "a second {} template for `{}`",
                        template.channel, template.locale
                    ),
                ));
            }
            check_template(
                template.channel,
                &template.locale,
                &template.text,
                &friendly_name,
            )
            .map_err(|reason| refuse(field("text"), reason))?;
        }
        let workflow = match self.workflow.trim() {
            "" => None,
            text => Some(Workflow::parse(text).map_err(|e| refuse("workflow", e.to_string()))?),
        };
        let app_hash = self.app_hash.trim().to_string();
        if !app_hash.is_empty() {
            check_app_hash(&app_hash).map_err(|reason| refuse("app_hash", reason))?;
        }
        let domain = match self.domain.trim() {
            "" => String::new(),
            domain => check_domain(domain).map_err(|reason| refuse("domain", reason))?,
        };
        let webhook_url = self.webhook_url.trim().to_string();
        let webhook_secret = match (webhook_url.is_empty(), self.webhook_secret.is_empty()) {
            (true, _) => WebhookSecret::default(),
            (false, true) => {
                return Err(refuse(
                    "webhook_secret",
                    "a webhook needs a signing secret (`whsec_` and base64)",
                ));
            }
            (false, false) => WebhookSecret::parse(self.webhook_secret.expose())
                .map_err(|reason| refuse("webhook_secret", reason))?,
        };
        if !webhook_url.is_empty() {
            check_webhook_url(&webhook_url).map_err(|reason| refuse("webhook_url", reason))?;
        }
        let strict_abuse = match self.abuse_level.trim() {
            "" => false,
            "strict" => true,
            other => {
                return Err(refuse(
                    "abuse_level",
                    format!(
                        "`{other}` is not a level a service may ask for: leave it empty for the server's [abuse] rules, or use strict (a service may tighten them, never loosen them)"
                    ),
                ));
            }
        };
        let service = Service {
            id: self.id.clone(),
            friendly_name,
            code_length,
            code_lifetime: Duration::from_secs(lifetime),
            max_checks,
            max_sends,
            channels,
            default_locale,
            templates: self.templates.clone(),
            workflow,
            app_hash,
            domain,
            webhook_url,
            webhook_secret,
            strict_abuse,
            configured: false,
            created_at_ms: None,
            updated_at_ms: None,
        };
        if let Some(workflow) = &service.workflow
            && workflow
                .keeping(|channel| service.allows(channel))
                .is_none()
        {
            return Err(refuse(
                "workflow",
                format!(
                    "no step uses the channels the service allows ({})",
                    service.channel_names()
                ),
            ));
        }
        Ok(service)
    }
}

impl Service {
    /// Whether its verifications may use `channel`.
    pub fn allows(&self, channel: Channel) -> bool {
        self.channels.is_empty() || self.channels.contains(&channel)
    }

    /// The channels it allows, for messages (`sms, voice`).
    pub fn channel_names(&self) -> String {
        if self.channels.is_empty() {
            return "every channel".into();
        }
        self.channels
            .iter()
            .map(|channel| channel.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Its template for `channel` in `locale`: the same locale, else the same language.
    pub fn template_for(&self, channel: Channel, locale: &str) -> Option<&str> {
        let language = |tag: &str| {
            tag.split(['-', '_'])
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase()
        };
        let of_channel = || self.templates.iter().filter(|t| t.channel == channel);
        of_channel()
            .find(|t| t.locale.eq_ignore_ascii_case(locale))
            .or_else(|| of_channel().find(|t| language(&t.locale) == language(locale)))
            .map(|t| t.text.as_str())
    }

    /// What it adds to the words of a message on `channel` in `locale` (the autofill lines
    /// are the verification's, which took this service's defaults or its request's own).
    pub fn wording(&self, channel: Channel, locale: &str) -> Wording<'_> {
        Wording {
            service: &self.friendly_name,
            template: self.template_for(channel, locale),
            ..Wording::default()
        }
    }

    /// Its settings, as stored and as the API shows them (every value set).
    pub fn settings(&self) -> ServiceSettings {
        ServiceSettings {
            id: self.id.clone(),
            friendly_name: self.friendly_name.clone(),
            code_length: Some(self.code_length),
            code_lifetime_seconds: Some(self.code_lifetime.as_secs()),
            max_checks: Some(self.max_checks),
            max_sends: Some(self.max_sends),
            channels: self.channels.clone(),
            default_locale: Some(self.default_locale.clone()),
            templates: self.templates.clone(),
            workflow: self
                .workflow
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            app_hash: self.app_hash.clone(),
            domain: self.domain.clone(),
            webhook_url: self.webhook_url.clone(),
            webhook_secret: self.webhook_secret.clone(),
            webhook_secret_env: None,
            abuse_level: if self.strict_abuse {
                "strict".into()
            } else {
                String::new()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> ServiceDefaults {
        ServiceDefaults {
            code_length: 6,
            code_lifetime_seconds: 600,
            max_checks: 5,
            max_sends: 5,
            default_locale: "en".into(),
        }
    }

    fn acme() -> ServiceSettings {
        ServiceSettings {
            id: "acme".into(),
            friendly_name: "Acme".into(),
            ..ServiceSettings::default()
        }
    }

    #[test]
    fn unset_values_come_from_the_defaults() {
        let service = acme().resolve(&defaults()).unwrap();
        assert_eq!(service.code_length, 6);
        assert_eq!(service.code_lifetime, Duration::from_secs(600));
        assert_eq!(service.default_locale, "en");
        assert!(service.allows(Channel::Voice));
        let again = service.settings().resolve(&defaults()).unwrap();
        assert_eq!(again, service);
    }

    #[test]
    fn every_wrong_value_is_named() {
        let cases: Vec<(ServiceSettings, &str)> = vec![
            (
                ServiceSettings {
                    id: "Acme Shop".into(),
                    ..acme()
                },
                "id",
            ),
            (
                ServiceSettings {
                    friendly_name: "x".repeat(33),
                    ..acme()
                },
                "friendly_name",
            ),
            (
                ServiceSettings {
                    code_length: Some(3),
                    ..acme()
                },
                "code_length",
            ),
            (
                ServiceSettings {
                    code_lifetime_seconds: Some(0),
                    ..acme()
                },
                "code_lifetime_seconds",
            ),
            (
                ServiceSettings {
                    max_sends: Some(101),
                    ..acme()
                },
                "max_sends",
            ),
            (
                ServiceSettings {
                    default_locale: Some("english please".into()),
                    ..acme()
                },
                "default_locale",
            ),
            (
                ServiceSettings {
                    templates: vec![MessageTemplate {
                        locale: "en".into(),
                        channel: Channel::Sms,
                        text: "Welcome to {service}".into(),
                    }],
                    ..acme()
                },
                "templates[0].text",
            ),
            (
                ServiceSettings {
                    workflow: "sms(30s) ->".into(),
                    ..acme()
                },
                "workflow",
            ),
            (
                ServiceSettings {
                    app_hash: "too-short".into(),
                    ..acme()
                },
                "app_hash",
            ),
            (
                ServiceSettings {
                    domain: "https://acme.example".into(),
                    ..acme()
                },
                "domain",
            ),
            (
                ServiceSettings {
                    webhook_url: "https://acme.example/hooks".into(),
                    ..acme()
                },
                "webhook_secret",
            ),
            (
                ServiceSettings {
                    abuse_level: "off".into(),
                    ..acme()
                },
                "abuse_level",
            ),
            (
                ServiceSettings {
                    webhook_url: "http://acme.example/hooks".into(),
                    webhook_secret: WebhookSecret::generate(),
                    ..acme()
                },
                "webhook_url",
            ),
            (
                ServiceSettings {
                    channels: vec![Channel::Sms],
                    workflow: "voice(30s)".into(),
                    ..acme()
                },
                "workflow",
            ),
        ];
        for (settings, field) in cases {
            let error = settings.resolve(&defaults()).unwrap_err();
            assert_eq!(error.field, field, "{error}");
        }
    }

    #[test]
    fn templates_are_found_by_locale_then_language() {
        let template = |locale: &str, text: &str| MessageTemplate {
            locale: locale.into(),
            channel: Channel::Sms,
            text: text.into(),
        };
        let service = ServiceSettings {
            templates: vec![
                template("es", "{code} es tu código"),
                template("es-MX", "{code} es tu código, compa"),
            ],
            ..acme()
        }
        .resolve(&defaults())
        .unwrap();
        assert_eq!(
            service.template_for(Channel::Sms, "es-mx"),
            Some("{code} es tu código, compa")
        );
        assert_eq!(
            service.template_for(Channel::Sms, "es-AR"),
            Some("{code} es tu código")
        );
        assert_eq!(service.template_for(Channel::Sms, "en"), None);
        assert_eq!(service.template_for(Channel::Voice, "es"), None);
    }
}
