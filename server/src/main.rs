//! The `verifyd` binary: parses flags, loads the configuration, runs the server until SIGINT or
//! SIGTERM.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use verify_server::codes::hash_api_key;
use verify_server::config::Config;
use verify_server::telemetry::{self, Telemetry};

/// mimalloc instead of the system allocator: the SQLite writer thread, the one thread every
/// write goes through, spent about a fifth of its time in glibc's malloc and free (see the
/// README's Performance section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// verifyd: self-hosted phone verification over gRPC.
#[derive(Parser, Debug)]
#[command(name = "verifyd", version, about, long_about = None)]
struct Cli {
    /// TOML configuration file. Without one verifyd runs the embedded default:
    /// 127.0.0.1:50051, SQLite ./verifyd.db, the sim carrier.
    #[arg(long, short = 'c', value_name = "FILE", env = "VERIFYD_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (overrides the file and VERIFYD_LISTEN).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Check the configuration, print what it sets up, and exit without starting.
    #[arg(long)]
    check_config: bool,
    /// How logs are written to standard error: `text` for people, `json` for log collectors
    /// (one JSON object per line). The level comes from RUST_LOG (default info,sqlx=warn).
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text, env = "VERIFYD_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Readable lines.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with `message`).
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the SHA-256 to put in an [[api_keys]] entry for a key read from standard input.
    HashApiKey,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();

    if let Some(Command::HashApiKey) = cli.command {
        let mut key = String::new();
        if let Err(error) = std::io::stdin().read_to_string(&mut key) {
            eprintln!("error: reading the key from standard input: {error}");
            return std::process::ExitCode::FAILURE;
        }
        let key = key.trim_end_matches(['\r', '\n']);
        if key.is_empty() {
            eprintln!("error: no key on standard input");
            return std::process::ExitCode::FAILURE;
        }
        println!("{}", hash_api_key(key));
        return std::process::ExitCode::SUCCESS;
    }

    let mut config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    if let Some(listen) = cli.listen {
        config.listen = listen;
        if let Err(error) = config.validate() {
            eprintln!("error: {error}");
            return std::process::ExitCode::from(2);
        }
    }
    if cli.check_config {
        // Written with errors ignored: `verifyd --check-config | head` must not panic.
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "configuration ok");
        let _ = writeln!(out, "listen: {}", config.listen);
        let _ = writeln!(
            out,
            "database: {}",
            verify_server::config::redact_url_password(&config.database_url)
        );
        for carrier in &config.carriers {
            let _ = writeln!(out, "carrier: {} (kind {})", carrier.name, carrier.kind);
        }
        let names = |entries: &[verify_policy::routing::RouteEntry]| {
            entries
                .iter()
                .map(|entry| entry.carrier.as_str())
                .collect::<Vec<_>>()
                .join(" -> ")
        };
        let _ = writeln!(out, "route default: {}", names(&config.routes.default));
        for (region, entries) in &config.routes.countries {
            let _ = writeln!(out, "route {region}: {}", names(entries));
        }
        let fallback = &config.fallback;
        let _ = writeln!(
            out,
            "fallback default: {} {}",
            fallback.strategy, fallback.workflow
        );
        for (region, country) in &fallback.countries {
            let _ = writeln!(
                out,
                "fallback {region}: {} {}",
                country.strategy.unwrap_or(fallback.strategy),
                country.workflow.as_ref().unwrap_or(&fallback.workflow)
            );
        }
        let rules = &config.policy.rules;
        let _ = writeln!(
            out,
            "country rules: {}{} override(s){}",
            if rules.builtin {
                "shipped set, "
            } else {
                "none shipped, "
            },
            rules.overrides.len(),
            if rules.blocked_countries.is_empty() {
                String::new()
            } else {
                format!(", blocked: {}", rules.blocked_countries.join(", "))
            }
        );
        for program in &config.programs {
            let regions: Vec<&str> = program.registrations.keys().map(String::as_str).collect();
            let _ = writeln!(
                out,
                "program: {} (registered in {})",
                program.id,
                if regions.is_empty() {
                    "no country".to_string()
                } else {
                    regions.join(", ")
                }
            );
        }
        if let Some(start) = &config.debug.clock_start {
            let _ = writeln!(out, "debug clock starts at {start}: not for production");
        }
        match config.callbacks.base_url(None, config.tls.is_some()) {
            Some(base) => {
                let _ = writeln!(out, "callbacks: {base}/callbacks/{{carrier}}");
                if let Some(listen) = config.http.listen {
                    let _ = writeln!(out, "http: {listen} (/callbacks, /metrics, /dashboard)");
                }
            }
            None => {
                let _ = writeln!(
                    out,
                    "http: off (no [http] listen: no callbacks, /metrics or /dashboard)"
                );
            }
        }
        let admin_keys = config
            .api_keys
            .iter()
            .filter(|k| k.service.is_none())
            .count();
        let _ = writeln!(
            out,
            "api keys: {} ({admin_keys} admin, {} for a service)",
            config.api_keys.len(),
            config.api_keys.len() - admin_keys
        );
        let mut services: Vec<String> = config
            .services
            .iter()
            .map(|s| {
                if s.webhook_url.is_empty() {
                    s.id.clone()
                } else {
                    format!("{} (webhook)", s.id)
                }
            })
            .collect();
        if !config.services.iter().any(|s| s.id == "default") {
            services.insert(0, "default".into());
        }
        let _ = writeln!(
            out,
            "services in the file: {} (others may be stored with CreateService)",
            services.join(", ")
        );
        let _ = writeln!(
            out,
            "tls: {}",
            match &config.tls {
                Some(tls) if tls.client_ca.is_some() => format!(
                    "on, mutual ({}; client CA {})",
                    tls.cert.display(),
                    tls.client_ca
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                ),
                Some(tls) => format!("on ({})", tls.cert.display()),
                None => "off".to_string(),
            }
        );
        let telemetry = &config.telemetry;
        let _ = match &telemetry.otlp_endpoint {
            Some(endpoint) => writeln!(
                out,
                "traces: OTLP to {endpoint} as {} every {} ms",
                telemetry.service_name, telemetry.export_interval_ms
            ),
            None => writeln!(out, "traces: off (no [telemetry] otlp_endpoint)"),
        };
        if let Ok(defense) = verify_policy::abuse::AbuseDefense::from_config(&config.abuse) {
            for line in defense.describe() {
                let _ = writeln!(out, "{line}");
            }
        }
        return std::process::ExitCode::SUCCESS;
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let format = match cli.log_format {
        LogFormat::Text => telemetry::LogFormat::Text,
        LogFormat::Json => telemetry::LogFormat::Json,
    };
    // Logs start once the configuration is read (its errors are printed as they are); the
    // trace exporter's connection runs on the runtime.
    let telemetry = match runtime.block_on(async { Telemetry::install(&config.telemetry, format) })
    {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("error: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let ran = runtime.block_on(verify_server::app::run(config, shutdown_signal()));
    runtime.block_on(async {
        tokio::task::spawn_blocking(move || telemetry.shutdown())
            .await
            .ok()
    });
    match ran {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // Said once: as a log line when logs are JSON (one format on stderr), else plainly.
        Err(error) => {
            match format {
                telemetry::LogFormat::Json => tracing::error!("{error}"),
                telemetry::LogFormat::Text => eprintln!("error: {error}"),
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}
