//! Configuration: built-in defaults, then the TOML file, then `VERIFYD_*` environment variables
//! and `DATABASE_URL`, then command-line flags; checked as a whole before anything starts.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use verify_policy::FallbackConfig;
use verify_policy::abuse::{AbuseConfig, AbuseDefense};
use verify_policy::routing::{RouteEntry, RoutePlan};
use verify_policy::rules::{Program, RuleSet, RulesConfig};

/// Default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// Default database: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://verifyd.db";
/// Default outbox file of the embedded `sim` carrier.
pub const DEFAULT_SIM_OUTBOX: &str = "verifyd-sim-outbox.jsonl";
/// Name of the file in the data directory that holds the generated code secret.
pub const SECRET_FILE_NAME: &str = "verifyd-secret.key";

/// The whole configuration of one `verifyd`.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the gRPC server listens on.
    pub listen: SocketAddr,
    /// `sqlite://PATH` or `postgres://...`.
    pub database_url: String,
    /// Directory for files verifyd creates itself (the generated code secret).
    pub data_dir: PathBuf,
    /// Secret for code hashing (hex, at least 32 bytes). Generated into `data_dir` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Outbox file of `sim` carriers that do not name their own.
    pub sim_outbox: PathBuf,
    /// Code lifetime and limits.
    pub codes: CodeSettings,
    /// API keys accepted in `authorization: Bearer <key>`; stored as SHA-256 hashes.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyEntry>,
    /// `[[services]]`: the apps verifying numbers through this server, each with its name in
    /// the messages and its own settings (unset ones from `[codes]`). The service `default`
    /// exists whether configured or not.
    #[serde(default)]
    pub services: Vec<crate::domain::ServiceSettings>,
    /// Carrier instances. With none, one `sim` carrier named `sim` is configured.
    #[serde(default)]
    pub carriers: Vec<CarrierEntry>,
    /// Which carriers carry messages to which countries.
    #[serde(default)]
    pub routes: RoutePlan,
    /// What to send first and what next when a code is not delivered or not checked in time.
    #[serde(default)]
    pub fallback: FallbackConfig,
    /// Outbox dispatcher tuning.
    pub dispatcher: DispatcherSettings,
    /// `[http]`: the HTTP listener (carriers' callbacks, `/metrics`).
    #[serde(default)]
    pub http: HttpSettings,
    /// The HTTP endpoint where HTTP carriers post delivery receipts.
    #[serde(default)]
    pub callbacks: CallbackSettings,
    /// Country rules: the shipped rule set, overrides and blocked countries.
    #[serde(default)]
    pub policy: PolicySettings,
    /// Client programs and what they registered per country (India's DLT entity, templates
    /// and headers), which country rules check for Notify.
    #[serde(default)]
    pub programs: Vec<Program>,
    /// `[abuse]`: what stops SMS pumping and code guessing (rate limits, the pumping guard,
    /// geo permissions, the guessing cool-off; see `verify_policy::abuse`).
    #[serde(default)]
    pub abuse: AbuseConfig,
    /// Settings for trying verifyd out, never for production.
    #[serde(default)]
    pub debug: DebugSettings,
    /// `[tls]`: TLS on the gRPC port and the HTTP listener (mutual TLS with `client_ca`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::TlsSettings>,
    /// `[webhooks]`: how services' status webhooks are sent.
    #[serde(default)]
    pub webhooks: crate::webhooks::WebhookSettings,
    /// `[telemetry]`: where OpenTelemetry traces go.
    #[serde(default)]
    pub telemetry: crate::telemetry::TelemetrySettings,
}

/// `[policy]`: country rules.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// `[policy.rules]`: see `policy/rules/README.md`.
    #[serde(default)]
    pub rules: RulesConfig,
}

/// `[debug]`: settings for trying verifyd out.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DebugSettings {
    /// Start the server's clock at this instant (RFC 3339, e.g. `2026-11-25T16:30:00Z`)
    /// instead of now, so country rules can be tried at another hour. Never in production:
    /// codes' lifetimes and every stored time follow this clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_start: Option<String>,
}

impl DebugSettings {
    /// The configured clock start, unix ms.
    pub fn clock_start_ms(&self) -> Result<Option<i64>, ConfigError> {
        self.clock_start
            .as_deref()
            .map(|text| {
                chrono::DateTime::parse_from_rfc3339(text)
                    .map(|t| t.timestamp_millis())
                    .map_err(|e| {
                        ConfigError(format!(
                            "debug.clock_start: `{text}` is not an RFC 3339 time such as 2026-11-25T16:30:00Z ({e})"
                        ))
                    })
            })
            .transpose()
    }
}

/// `[http]`: verifyd's HTTP listener, which serves carriers' receipts at
/// `/callbacks/{carrier}` and Prometheus metrics at `/metrics`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Its address; no HTTP listener when unset (`callbacks.listen`, the older name, sets the
    /// same listener).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
}

/// Where verifyd serves `/callbacks/{carrier}` for HTTP carriers' receipts.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackSettings {
    /// Address of the HTTP listener; no callback endpoint when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// The URL vendors reach that listener at (e.g. `https://verify.example.com` behind a
    /// proxy); `http://{listen}` when unset. Each carrier's callback URL is
    /// `{public_url}/callbacks/{name}`, and signatures are checked against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

impl CallbackSettings {
    /// The public base URL, without a trailing slash, when callbacks are served (`https`
    /// when the listener speaks TLS).
    pub fn base_url(&self, bound: Option<SocketAddr>, tls: bool) -> Option<String> {
        let listen = bound.or(self.listen)?;
        let scheme = if tls { "https" } else { "http" };
        Some(match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("{scheme}://{listen}"),
        })
    }
}

/// Code generation and checking limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CodeSettings {
    /// Digits per code when a request does not say (4 to 10).
    pub length: u32,
    /// How long a code is accepted, in seconds.
    pub ttl_seconds: u64,
    /// Checks allowed per verification.
    pub max_checks: u32,
    /// Sends (first send plus resends) allowed per verification.
    pub max_sends: u32,
    /// Locale of messages when a request does not say.
    pub default_locale: String,
}

impl CodeSettings {
    /// What a service takes where its settings say nothing.
    pub fn service_defaults(&self) -> crate::domain::ServiceDefaults {
        crate::domain::ServiceDefaults {
            code_length: self.length,
            code_lifetime_seconds: self.ttl_seconds,
            max_checks: self.max_checks,
            max_sends: self.max_sends,
            default_locale: self.default_locale.clone(),
        }
    }
}

/// One accepted API key.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// Who uses the key (for logs).
    pub name: String,
    /// Lower-case hex SHA-256 of the key (`verifyd hash-api-key` prints it).
    pub sha256: String,
    /// The service the key belongs to: it sees and acts on that service only. Unset: an
    /// admin key, for every service (and for blocks and services themselves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// One carrier instance: a name, a kind, and the kind's own settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CarrierEntry {
    /// Name routes refer to.
    pub name: String,
    /// Carrier kind, e.g. `sim`.
    pub kind: String,
    /// Everything else in the table, handed to the carrier's factory.
    #[serde(flatten)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

/// How the dispatcher claims and submits queued messages.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DispatcherSettings {
    /// Messages claimed per round.
    pub batch_size: u32,
    /// Pause between rounds when nothing is due, in milliseconds.
    pub poll_interval_ms: u64,
    /// Submissions in flight at once.
    pub max_in_flight: usize,
    /// Time a carrier gets to accept a message, in milliseconds. A carrier that does not
    /// answer in time may have sent it: the message is maybe sent, never resent.
    pub submit_timeout_ms: u64,
    /// How long a dispatcher's hold on its messages lasts without a heartbeat, in seconds (it
    /// renews it every fifth of that). When it lapses, or at once when the dispatcher ran on
    /// the same host and its process is gone, other dispatchers take its messages over.
    pub lease_seconds: u64,
}

impl DispatcherSettings {
    /// The lease as a duration.
    pub fn lease(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.lease_seconds)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN
                .parse()
                .expect("default listen address parses"),
            database_url: DEFAULT_DATABASE_URL.to_string(),
            data_dir: PathBuf::from("."),
            secret: None,
            sim_outbox: PathBuf::from(DEFAULT_SIM_OUTBOX),
            codes: CodeSettings {
                length: 6,
                ttl_seconds: 600,
                max_checks: 5,
                max_sends: 5,
                default_locale: "en".to_string(),
            },
            api_keys: Vec::new(),
            services: Vec::new(),
            carriers: Vec::new(),
            routes: RoutePlan::default(),
            fallback: FallbackConfig::default(),
            dispatcher: DispatcherSettings {
                batch_size: 512,
                poll_interval_ms: 100,
                max_in_flight: 2048,
                submit_timeout_ms: 30_000,
                lease_seconds: 10,
            },
            http: HttpSettings::default(),
            callbacks: CallbackSettings::default(),
            policy: PolicySettings::default(),
            programs: Vec::new(),
            abuse: AbuseConfig::default(),
            debug: DebugSettings::default(),
            tls: None,
            webhooks: crate::webhooks::WebhookSettings::default(),
            telemetry: crate::telemetry::TelemetrySettings::default(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("database_url", &redact_url_password(&self.database_url))
            .field("data_dir", &self.data_dir)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("sim_outbox", &self.sim_outbox)
            .field("codes", &self.codes)
            .field("api_keys", &self.api_keys.len())
            .field(
                "services",
                &self.services.iter().map(|s| &s.id).collect::<Vec<_>>(),
            )
            .field(
                "carriers",
                &self
                    .carriers
                    .iter()
                    .map(|c| format!("{} ({})", c.name, c.kind))
                    .collect::<Vec<_>>(),
            )
            .field("routes", &self.routes)
            .field("fallback", &self.fallback)
            .field("dispatcher", &self.dispatcher)
            .field("http", &self.http)
            .field("callbacks", &self.callbacks)
            .field("policy", &self.policy)
            .field("programs", &self.programs.len())
            .field("abuse", &self.abuse)
            .field("debug", &self.debug)
            .field("tls", &self.tls)
            .field("webhooks", &self.webhooks)
            .field("telemetry", &self.telemetry)
            .finish()
    }
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`, for logs.
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// Top-level keys that `VERIFYD_*` variables may set (others, like the CLI's `VERIFYD_ADDR`,
/// belong to other programs and are ignored).
const ENV_KEYS: &[&str] = &[
    "listen",
    "database_url",
    "data_dir",
    "secret",
    "sim_outbox",
    "codes",
    "dispatcher",
    "callbacks",
    "http",
    "debug",
    "tls",
    "webhooks",
    "telemetry",
];

impl Config {
    /// Loads defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let variables: Vec<String> = std::env::vars_os()
            .filter_map(|(name, _)| name.into_string().ok())
            .collect();
        let unknown =
            crate::config_errors::unknown_variables(variables.iter().map(String::as_str), ENV_KEYS);
        if !unknown.is_empty() {
            return Err(ConfigError(unknown.join("\n  ")));
        }
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment
            .merge(Env::prefixed("VERIFYD_").split("__").filter(|key| {
                // figment hands the key over before lower-casing it.
                let top = key.as_str().split('.').next().unwrap_or_default();
                ENV_KEYS.iter().any(|known| top.eq_ignore_ascii_case(known))
            }))
            .merge(
                Env::raw()
                    .only(&["DATABASE_URL"])
                    .map(|_| "database_url".into()),
            );
        // A check that fails names its key: say where the file or the environment sets it.
        Config::from_figment(figment).map_err(|error| {
            ConfigError(crate::config_errors::locate_message(
                file,
                &error.0,
                |name| std::env::var_os(name).is_some(),
            ))
        })
    }

    /// Reads a configuration from TOML text over the built-in defaults, without the
    /// environment, then completes and validates it as [`Config::load`] does. For the fuzz
    /// target of the config loader and for tests.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        Config::from_figment(
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(text)),
        )
    }

    /// Extracts the merged sources into a `Config` and finishes it.
    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError(crate::config_errors::describe(e)))?;
        Config::finish(config)
    }

    /// Completes a configuration built in code (the embedded default carrier and routes where
    /// none are set) and validates it, carrier settings included.
    pub fn finish(mut config: Config) -> Result<Config, ConfigError> {
        config.resolve_secret_variables(|name| std::env::var(name).ok())?;
        config.fill_embedded_default();
        config.one_http_listener()?;
        config.validate()?;
        crate::carriers::check_settings(&config.carriers)
            .map_err(|e| ConfigError(e.message().to_string()))?;
        Ok(config)
    }

    /// `http.listen` and `callbacks.listen` name the same listener: whichever is set sets
    /// both; two different addresses are refused.
    fn one_http_listener(&mut self) -> Result<(), ConfigError> {
        match (self.http.listen, self.callbacks.listen) {
            (Some(http), Some(callbacks)) if http != callbacks => Err(ConfigError(format!(
                "http.listen ({http}) and callbacks.listen ({callbacks}) differ: verifyd has one \
                 HTTP listener, for callbacks and metrics alike; set http.listen only"
            ))),
            (Some(address), _) | (None, Some(address)) => {
                self.http.listen = Some(address);
                self.callbacks.listen = Some(address);
                Ok(())
            }
            (None, None) => Ok(()),
        }
    }

    /// With no carriers, configures the embedded `sim` carrier and routes everything to it;
    /// `sim` carriers without an outbox get `sim_outbox`.
    fn fill_embedded_default(&mut self) {
        if self.carriers.is_empty() {
            self.carriers.push(CarrierEntry {
                name: "sim".to_string(),
                kind: verify_carrier_sim::KIND.to_string(),
                settings: Default::default(),
            });
        }
        if self.routes.default.is_empty() {
            self.routes.default = vec![RouteEntry::named(&self.carriers[0].name)];
        }
        for carrier in &mut self.carriers {
            if carrier.kind == verify_carrier_sim::KIND && !carrier.settings.contains_key("outbox")
            {
                let outbox = self.sim_outbox.to_string_lossy().into_owned();
                carrier
                    .settings
                    .insert("outbox".into(), serde_json::Value::String(outbox));
            }
        }
    }

    /// Replaces every carrier setting `X_env = "VARIABLE"`, at any depth (`headers.X_env`
    /// too), with `X` = the variable's value, so secrets (passwords, auth tokens, API secrets)
    /// stay out of config files. A variable that is unset or empty is an error naming the
    /// carrier, the key and the variable.
    fn resolve_secret_variables(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        // Every problem at once: a deployment missing three secrets learns all three.
        let mut problems = Vec::new();
        for carrier in &mut self.carriers {
            resolve_table(
                &carrier.name,
                "",
                &mut carrier.settings,
                &lookup,
                &mut problems,
            );
        }
        for service in &mut self.services {
            let Some(variable) = service.webhook_secret_env.take() else {
                continue;
            };
            if !service.webhook_secret.is_empty() {
                problems.push(format!(
                    "services `{}`: set webhook_secret or webhook_secret_env, not both",
                    service.id
                ));
                continue;
            }
            let Some(value) = lookup(&variable).filter(|v| !v.is_empty()) else {
                problems.push(format!(
                    "services `{}`: webhook_secret_env names the environment variable {variable}, which is not set",
                    service.id
                ));
                continue;
            };
            match crate::domain::webhook::WebhookSecret::parse(&value) {
                Ok(secret) => service.webhook_secret = secret,
                Err(reason) => problems.push(format!(
                    "services `{}`: webhook_secret from {variable}: {reason}",
                    service.id
                )),
            }
        }
        match problems.len() {
            0 => Ok(()),
            1 => Err(ConfigError(problems.remove(0))),
            n => Err(ConfigError(format!(
                "{n} problems:\n  {}",
                problems.join("\n  ")
            ))),
        }
    }

    /// Cross-field checks, each naming the key that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |message: String| Err(ConfigError(message));
        if let Err(error) = AbuseDefense::from_config(&self.abuse) {
            return fail(error);
        }
        if !(4..=10).contains(&self.codes.length) {
            return fail(format!(
                "codes.length must be between 4 and 10, got {}",
                self.codes.length
            ));
        }
        if self.codes.ttl_seconds == 0 || self.codes.ttl_seconds > 24 * 3600 {
            return fail(format!(
                "codes.ttl_seconds must be between 1 and 86400, got {}",
                self.codes.ttl_seconds
            ));
        }
        if self.codes.max_checks == 0 || self.codes.max_checks > 100 {
            return fail("codes.max_checks must be between 1 and 100".into());
        }
        if self.codes.max_sends == 0 || self.codes.max_sends > 100 {
            return fail("codes.max_sends must be between 1 and 100".into());
        }
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            return fail(format!(
                "database_url must start with sqlite:, postgres:// or postgresql://, got `{}`",
                redact_url_password(&self.database_url)
            ));
        }
        if let Some(secret) = &self.secret {
            crate::codes::parse_secret(secret).map_err(|e| ConfigError(format!("secret: {e}")))?;
        }
        let defaults = self.codes.service_defaults();
        let mut service_ids = std::collections::HashSet::new();
        for (index, service) in self.services.iter().enumerate() {
            service
                .resolve(&defaults)
                .map_err(|e| ConfigError(format!("services[{index}] (`{}`): {e}", service.id)))?;
            if !service_ids.insert(service.id.as_str()) {
                return fail(format!("services: id `{}` is used twice", service.id));
            }
        }
        for key in &self.api_keys {
            let valid = key.sha256.len() == 64 && key.sha256.bytes().all(|b| b.is_ascii_hexdigit());
            if !valid {
                return fail(format!(
                    "api_keys `{}`: sha256 must be 64 hex digits (run `verifyd hash-api-key`)",
                    key.name
                ));
            }
            if let Some(service) = &key.service {
                crate::domain::service::check_service_id(service).map_err(|e| {
                    ConfigError(format!("api_keys `{}`: service: {}", key.name, e.reason))
                })?;
            }
        }
        if self.api_keys.is_empty() && !self.listen.ip().is_loopback() {
            return fail(format!(
                "listen = {} is not a loopback address, and no api_keys are configured: \
                 refusing to serve unauthenticated on the network; add [[api_keys]] or listen on 127.0.0.1",
                self.listen
            ));
        }
        let mut names = std::collections::HashSet::new();
        for carrier in &self.carriers {
            if !names.insert(carrier.name.as_str()) {
                return fail(format!("carriers: name `{}` is used twice", carrier.name));
            }
        }
        self.routes
            .validate(|name| names.contains(name))
            .map_err(|e| ConfigError(e.to_string()))?;
        self.fallback
            .validate()
            .map_err(|e| ConfigError(e.to_string()))?;
        RuleSet::from_config(&self.policy.rules).map_err(|e| ConfigError(e.to_string()))?;
        let mut programs = std::collections::HashSet::new();
        for program in &self.programs {
            if program.id.trim().is_empty() {
                return fail("programs: every program needs an id".into());
            }
            if !programs.insert(program.id.as_str()) {
                return fail(format!("programs: id `{}` is used twice", program.id));
            }
        }
        self.debug.clock_start_ms()?;
        if let Some(tls) = &self.tls {
            crate::tls::ReloadingTls::load(tls).map_err(ConfigError)?;
        }
        self.webhooks.validate().map_err(ConfigError)?;
        let d = &self.dispatcher;
        if !(1..=10_000).contains(&d.batch_size) {
            return fail(format!(
                "dispatcher.batch_size must be between 1 and 10000, got {}",
                d.batch_size
            ));
        }
        if !(1..=100_000).contains(&d.max_in_flight) {
            return fail(format!(
                "dispatcher.max_in_flight must be between 1 and 100000, got {}",
                d.max_in_flight
            ));
        }
        if !(1..=60_000).contains(&d.poll_interval_ms) {
            return fail(format!(
                "dispatcher.poll_interval_ms must be between 1 and 60000, got {}",
                d.poll_interval_ms
            ));
        }
        if !(100..=600_000).contains(&d.submit_timeout_ms) {
            return fail(format!(
                "dispatcher.submit_timeout_ms must be between 100 and 600000, got {}",
                d.submit_timeout_ms
            ));
        }
        if let Some(url) = &self.callbacks.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return fail(format!(
                "callbacks.public_url must start with http:// or https://, got `{url}`"
            ));
        }
        if self.callbacks.public_url.is_some() && self.callbacks.listen.is_none() {
            return fail("callbacks.public_url is set but http.listen is not".into());
        }
        self.telemetry.validate().map_err(ConfigError)?;
        if !(2..=3_600).contains(&d.lease_seconds) {
            return fail(format!(
                "dispatcher.lease_seconds must be between 2 and 3600, got {}",
                d.lease_seconds
            ));
        }
        Ok(())
    }
}

/// Resolves the `X_env` keys of one settings table and of the tables inside it; `path` is the
/// table's dotted position, for errors.
fn resolve_table(
    carrier: &str,
    path: &str,
    table: &mut serde_json::Map<String, serde_json::Value>,
    lookup: &impl Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) {
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        let dotted = format!("{path}{key}");
        if let Some(serde_json::Value::Object(inner)) = table.get_mut(&key) {
            resolve_table(carrier, &format!("{dotted}."), inner, lookup, problems);
            continue;
        }
        let Some(target) = key.strip_suffix("_env").filter(|t| !t.is_empty()) else {
            continue;
        };
        let target = target.to_string();
        let Some(serde_json::Value::String(variable)) = table.remove(&key) else {
            problems.push(format!(
                "carriers `{carrier}`: {dotted} must be the name of an environment variable"
            ));
            continue;
        };
        if table.contains_key(&target) {
            problems.push(format!(
                "carriers `{carrier}`: set {path}{target} or {dotted}, not both"
            ));
            continue;
        }
        match lookup(&variable).filter(|value| !value.is_empty()) {
            Some(value) => {
                table.insert(target, serde_json::Value::String(value));
            }
            None => problems.push(format!(
                "carriers `{carrier}`: {dotted} names the environment variable {variable}, which is not set"
            )),
        }
    }
}

/// A configuration problem, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_means_the_embedded_default() {
        let mut config = Config::default();
        config.fill_embedded_default();
        config.validate().unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:50051");
        assert_eq!(config.carriers.len(), 1);
        assert_eq!(config.carriers[0].kind, "sim");
        assert_eq!(config.routes.default, [RouteEntry::named("sim")]);
        assert_eq!(
            config.carriers[0].settings["outbox"],
            serde_json::json!("verifyd-sim-outbox.jsonl")
        );
    }

    #[test]
    fn carrier_secrets_come_from_the_environment() {
        let mut config = Config::default();
        config.carriers.push(CarrierEntry {
            name: "operator".into(),
            kind: "smpp".into(),
            settings: serde_json::json!({
                "password_env": "OPERATOR_PASSWORD",
                "port": 2775,
                "headers": { "Authorization_env": "OPERATOR_PASSWORD" },
            })
            .as_object()
            .cloned()
            .unwrap(),
        });
        let lookup = |name: &str| (name == "OPERATOR_PASSWORD").then(|| "s3cret".to_string());
        let mut resolved = config.clone();
        resolved.resolve_secret_variables(lookup).unwrap();
        assert_eq!(resolved.carriers[0].settings["password"], "s3cret");
        assert!(!resolved.carriers[0].settings.contains_key("password_env"));
        assert_eq!(
            resolved.carriers[0].settings["headers"]["Authorization"],
            "s3cret"
        );
        assert!(!format!("{resolved:?}").contains("s3cret"));

        let error = config.resolve_secret_variables(|_| None).unwrap_err();
        assert!(
            error.0.contains(
                "_env names the environment variable OPERATOR_PASSWORD, which is not set"
            ),
            "{error}"
        );
    }

    #[test]
    fn public_listen_without_keys_is_refused() {
        let mut config = Config::default();
        config.fill_embedded_default();
        config.listen = "0.0.0.0:50051".parse().unwrap();
        let error = config.validate().unwrap_err();
        assert!(error.0.contains("not a loopback address"), "{error}");
        config.api_keys.push(ApiKeyEntry {
            name: "backend".into(),
            sha256: "a".repeat(64),
            service: None,
        });
        config.validate().unwrap();
    }

    #[test]
    fn file_values_and_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("verifyd.toml");
        std::fs::write(
            &path,
            r#"
listen = "127.0.0.1:6000"
[codes]
length = 8
ttl_seconds = 300
max_checks = 3
max_sends = 2
default_locale = "es"
[[carriers]]
name = "slow-sim"
kind = "sim"
latency_ms = 500
[routes]
default = ["slow-sim"]
"#,
        )
        .unwrap();
        let config = Config::load(Some(&path)).unwrap();
        assert_eq!(config.listen.port(), 6000);
        assert_eq!(config.codes.length, 8);
        assert_eq!(config.carriers[0].settings["latency_ms"], 500);

        std::fs::write(&path, "listn = \"127.0.0.1:1\"\n").unwrap();
        let error = Config::load(Some(&path)).unwrap_err();
        assert!(error.0.contains("listn"), "{error}");
    }

    #[test]
    fn toml_text_over_the_defaults() {
        let config =
            Config::from_toml_str("listen = \"127.0.0.1:6001\"\n[codes]\nlength = 7\n").unwrap();
        assert_eq!(config.listen.port(), 6001);
        assert_eq!(config.codes.length, 7);
        assert_eq!(
            config.codes.ttl_seconds, 600,
            "unset keys keep their defaults"
        );
        assert_eq!(config.carriers[0].kind, "sim");
        let error = Config::from_toml_str("[codes]\nlength = 99\n").unwrap_err();
        assert!(error.0.contains("codes.length"), "{error}");
        let error = Config::from_toml_str("listen = [").unwrap_err();
        assert!(!error.0.is_empty());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url_password("postgres://app:hunter2@db:5432/verify"),
            "postgres://app:***@db:5432/verify"
        );
        let config = Config {
            secret: Some("ab".repeat(32)),
            ..Config::default()
        };
        assert!(!format!("{config:?}").contains("abab"));
    }
}
