//! verifyctl: verifyd from the shell — classify numbers (one, or whole lists to CSV), start,
//! check, inspect and cancel verifications, and follow the event stream. Readable text by
//! default, JSON lines with `--json`.

#[path = "verifyctl/answer.rs"]
mod answer;
#[path = "verifyctl/batch.rs"]
mod batch;
#[path = "verifyctl/campaign.rs"]
mod campaign;
#[path = "verifyctl/more.rs"]
mod more;
#[path = "verifyctl/simulate.rs"]
mod simulate;
#[path = "verifyctl/stats.rs"]
mod stats;

use std::error::Error as _;
use std::fmt::{self, Display};
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use clap::error::ErrorKind;
use clap::{ArgGroup, Args, CommandFactory, Parser, Subcommand, ValueEnum};
use tokio_stream::StreamExt;
use verify_client::proto::Timestamp;
use verify_client::proto::v1::{
    Attempt, CampaignStatus, CancelVerificationResponse, Channel, CheckResponse, CheckResult,
    Classification, ClassifyResponse, DeliveryStatus, Event, EventType, GetVerificationResponse,
    InvalidReason, LineType, ListBlocksResponse, RequestContext, UnblockResponse, Verification,
    VerificationStatus, VerifyResponse, WatchEventsRequest, WatchEventsResponse,
};
use verify_client::{ClientError, MAX_BATCH_CHUNK, VerifyClient, VerifyOptions};

use crate::batch::ListOptions;

/// Exit status of a `check` that ran but did not approve the code.
const EXIT_NOT_APPROVED: u8 = 3;

const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  success
  1  verifyd or the connection failed; stderr says `error: <gRPC code>: <message>`
  2  usage error
  3  `check` ran but did not approve the code (wrong code, expired, too many attempts, canceled)";

/// Talk to a verifyd server: classify numbers, send and check one-time codes, watch events.
#[derive(Debug, Parser)]
#[command(name = "verifyctl", version, after_help = EXIT_STATUS_HELP)]
struct Cli {
    /// verifyd's gRPC address; `host:port` means plain-text http.
    #[arg(
        long,
        global = true,
        env = "VERIFYD_ADDR",
        default_value = "http://127.0.0.1:50051",
        value_name = "URL",
        display_order = 100
    )]
    addr: String,
    /// API key, sent as `authorization: Bearer <key>` with every call.
    #[arg(
        long,
        global = true,
        env = "VERIFYD_API_KEY",
        hide_env_values = true,
        value_name = "KEY",
        display_order = 101
    )]
    api_key: Option<String>,
    /// Print each response as one JSON object per line, in the proto3 JSON mapping (proto field
    /// and enum names, default values printed, 64-bit integers as strings, RFC 3339 times).
    #[arg(long, global = true, display_order = 102)]
    json: bool,
    /// TLS: PEM file of the CA the server's certificate chains to (implies https; with an
    /// https:// address and no --ca, the system's CAs are trusted).
    #[arg(
        long,
        global = true,
        env = "VERIFYD_CA",
        value_name = "FILE",
        display_order = 103
    )]
    ca: Option<PathBuf>,
    /// Mutual TLS: PEM file of this client's certificate (with --key).
    #[arg(
        long,
        global = true,
        env = "VERIFYD_CERT",
        value_name = "FILE",
        requires = "key",
        display_order = 104
    )]
    cert: Option<PathBuf>,
    /// Mutual TLS: PEM file of this client's private key (with --cert).
    #[arg(
        long,
        global = true,
        env = "VERIFYD_KEY",
        value_name = "FILE",
        requires = "cert",
        display_order = 105
    )]
    key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// The calls verifyctl can make.
#[derive(Debug, Subcommand)]
enum Command {
    /// Tell what kind of number NUMBER is: validity, region, line type, carrier, channel. Sends
    /// nothing. With --input, classify a whole list (one number per line) into CSV.
    #[command(
        override_usage = "verifyctl classify [OPTIONS] <NUMBER>\n       verifyctl classify [OPTIONS] --input <FILE> [--output <FILE>] [--chunk-size <N>]",
        after_help = CLASSIFY_LIST_HELP
    )]
    Classify(ClassifyArgs),
    /// Send a code to NUMBER (or resend the code of its pending verification).
    Verify(VerifyArgs),
    /// Check a code, by verification id or, with --to, against the number's latest verification.
    #[command(
        override_usage = "verifyctl check [OPTIONS] <ID> <CODE>\n       verifyctl check [OPTIONS] --to <NUMBER> <CODE>",
        after_help = "Exit status 3 when the check ran but did not approve the code."
    )]
    Check(CheckArgs),
    /// Show a verification with all its delivery attempts (by id, or the latest of --to).
    #[command(
        override_usage = "verifyctl get [OPTIONS] <ID>\n       verifyctl get [OPTIONS] --to <NUMBER> [--service <ID>]"
    )]
    Get {
        /// The verification id.
        #[arg(required_unless_present = "to", conflicts_with = "to")]
        id: Option<String>,
        /// The number whose latest verification to show.
        #[arg(long, value_name = "NUMBER")]
        to: Option<String>,
        /// With --to: the service (the API key's own when unset).
        #[arg(long, value_name = "ID", requires = "to")]
        service: Option<String>,
    },
    /// List verifications, newest first: by service, status, country, number and time.
    List(more::ListArgs),
    /// Cancel a pending verification: its code stops working and unsent messages are dropped.
    Cancel {
        /// The verification id.
        id: String,
    },
    /// Stream events: the stored ones after --after, then new ones as they happen (Ctrl-C stops).
    Watch {
        /// Only events of this verification.
        #[arg(long, value_name = "ID", conflicts_with = "notification")]
        verification: Option<String>,
        /// Only events of this notification.
        #[arg(long, value_name = "ID", conflicts_with = "campaign")]
        notification: Option<String>,
        /// Only events of this campaign and its messages.
        #[arg(long, value_name = "ID", conflicts_with = "verification")]
        campaign: Option<String>,
        /// Only events of this service (a service's key always sees its own only).
        #[arg(long, value_name = "ID")]
        service: Option<String>,
        /// Start after this cursor; pass the last cursor seen to resume without loss.
        #[arg(long, value_name = "CURSOR", default_value_t = 0)]
        after: u64,
    },
    /// List the blocks abuse defense started (number prefixes and countries by the pumping
    /// guard, numbers cooled off for guessing), newest first, each with its rule and why.
    Blocks {
        /// Also blocks that ended or were lifted in the last week.
        #[arg(long)]
        all: bool,
        /// At most this many (the server's default is 100).
        #[arg(long, value_name = "N", default_value_t = 0)]
        limit: u32,
    },
    /// Lift a block before it ends (its id is in `verifyctl blocks` and in the refusal).
    Unblock {
        /// The block id (`blk_...`).
        id: String,
    },
    /// Send a message that is not a code (an alert, a receipt, a promotion) under the
    /// recipient country's rules: now, held until the rules allow it, or refused naming the rule.
    Notify(more::NotifyArgs),
    /// Show a notification: where its message is and the decision behind it.
    GetNotification {
        /// The notification id (`nt_...`).
        id: String,
    },
    /// Cancel a notification whose message has not gone to a carrier yet.
    CancelNotification {
        /// The notification id (`nt_...`).
        id: String,
    },
    /// List notifications, newest first: by service, status, country, number and time.
    Notifications(more::ListArgs),
    /// Conversion statistics: verifications, approvals, delivery, time to approval, fallback
    /// yield and cost, grouped by country, carrier, channel, service, day or hour (default:
    /// the last 7 days by country).
    Stats(stats::StatsArgs),
    /// Try verifyd with its sim carrier: simulated people in the countries named verify random
    /// mobile numbers, read their codes from the sim outbox file and type them in (or give
    /// up when none comes), so that `stats` has traffic to show.
    Simulate(simulate::SimulateArgs),
    /// The services: list, show, create and change them (creating and changing need an
    /// admin key).
    Services {
        #[command(subcommand)]
        command: more::ServicesCommand,
    },
    /// Campaigns: send one text (per locale) to a list, each recipient under its country's
    /// rules, and follow it: create, status, list, pause, resume, cancel, rejections, confirm.
    Campaign {
        #[command(subcommand)]
        command: campaign::CampaignCommand,
    },
}

const CLASSIFY_LIST_HELP: &str = "\
With --input, every line of FILE (or stdin for -) is one number; blank lines are skipped.
The CSV has a header row and one row per number, in input order:
  input,valid,e164,region,country_calling_code,line_type,carrier,time_zones,
  recommended_channel,invalid_reason,national_format,international_format
A summary (counts per validity, line type, region and invalid reason, and the rate) goes to
stderr at the end; with --json it is one JSON object, on stdout when --output is a file.";

/// Arguments of `classify`: one number, or a list with --input.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["number", "input"])))]
struct ClassifyArgs {
    /// The number, ideally E.164 (+14155550123); spaces, dashes and brackets are fine.
    number: Option<String>,
    /// Classify a list instead: a file with one number per line, or - for stdin. Writes CSV.
    #[arg(long, short = 'i', value_name = "FILE")]
    input: Option<String>,
    /// Write the CSV to FILE instead of stdout (with --input).
    #[arg(long, short = 'o', value_name = "FILE", conflicts_with = "number")]
    output: Option<PathBuf>,
    /// ISO 3166-1 alpha-2 region for numbers in national form, e.g. IN.
    #[arg(long, value_name = "XX")]
    region: Option<String>,
    /// Numbers sent per request chunk (with --input), 1 to 10000.
    #[arg(
        long,
        value_name = "N",
        conflicts_with = "number",
        default_value_t = batch::DEFAULT_CHUNK_SIZE,
        value_parser = clap::value_parser!(u32).range(1..=MAX_BATCH_CHUNK as i64)
    )]
    chunk_size: u32,
}

/// Arguments of `verify`.
#[derive(Debug, Args)]
struct VerifyArgs {
    /// The number, in E.164 or, with --region, in national form.
    number: String,
    /// How to send the code; verifyd chooses from the line type when left out.
    #[arg(long, value_enum)]
    channel: Option<ChannelArg>,
    /// Locale of the message, e.g. en or es-MX; the server default when left out.
    #[arg(long, value_name = "LOCALE")]
    locale: Option<String>,
    /// Digits in the code (4 to 10); the server default (6) when left out.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(4..=10))]
    code_length: Option<u32>,
    /// Makes retries safe: a repeated verify with the same key sends nothing new.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// ISO 3166-1 alpha-2 region for a number in national form, e.g. IN.
    #[arg(long, value_name = "XX")]
    region: Option<String>,
    /// A fallback workflow instead of the configured one, e.g. "sms(30s) -> voice(60s)".
    #[arg(long, value_name = "STEPS")]
    workflow: Option<String>,
    /// The configured program the code is sent for (e.g. its India DLT registrations).
    #[arg(long, value_name = "ID")]
    program: Option<String>,
    /// The end user's IP address, for rate limits per address and network.
    #[arg(long, value_name = "IP")]
    client_ip: Option<String>,
    /// The end user's device or installation id, for rate limits per device.
    #[arg(long, value_name = "ID")]
    device_id: Option<String>,
    /// Your id of the end user, for rate limits per user.
    #[arg(long, value_name = "ID")]
    user_id: Option<String>,
    /// The service the verification belongs to (its name is in the message); the API key's
    /// own when unset.
    #[arg(long, value_name = "ID")]
    service: Option<String>,
    /// Android SMS Retriever: the app's 11-character hash, carried on a line of the SMS.
    #[arg(long, value_name = "HASH")]
    app_hash: Option<String>,
    /// Domain-bound code: the web site's host; the SMS ends with `@HOST #code`.
    #[arg(long, value_name = "HOST")]
    domain: Option<String>,
}

impl VerifyArgs {
    /// The request context the arguments give; `None` when they give none.
    fn context(&self) -> Option<RequestContext> {
        if self.client_ip.is_none() && self.device_id.is_none() && self.user_id.is_none() {
            return None;
        }
        Some(RequestContext {
            client_ip: self.client_ip.clone().unwrap_or_default(),
            device_id: self.device_id.clone().unwrap_or_default(),
            user_id: self.user_id.clone().unwrap_or_default(),
            ..RequestContext::default()
        })
    }
}

/// The channels a user can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ChannelArg {
    /// A text message.
    Sms,
    /// A phone call that reads the code aloud.
    Voice,
}

impl From<ChannelArg> for Channel {
    fn from(channel: ChannelArg) -> Self {
        match channel {
            ChannelArg::Sms => Channel::Sms,
            ChannelArg::Voice => Channel::Voice,
        }
    }
}

/// Arguments of `check`, whose positionals mean different things with and without `--to`.
#[derive(Debug, Args)]
struct CheckArgs {
    /// The verification id returned by `verify` (left out with --to).
    #[arg(value_name = "ID")]
    id: Option<String>,
    /// The code the person entered.
    #[arg(value_name = "CODE")]
    code: Option<String>,
    /// Check the most recent verification of this number (E.164) instead of one by id.
    #[arg(long, value_name = "NUMBER")]
    to: Option<String>,
}

/// Which verification a `check` is about.
#[derive(Debug, PartialEq)]
enum CheckTarget {
    /// The verification with this id.
    Id(String),
    /// The most recent verification of this number.
    Number(String),
}

/// A command with its arguments checked and turned into what the call needs.
#[derive(Debug, PartialEq)]
enum Action {
    Classify {
        number: String,
        region: Option<String>,
    },
    ClassifyList(ListOptions),
    Verify(Box<VerifyOptions>),
    Check {
        target: CheckTarget,
        code: String,
    },
    Get {
        id: String,
    },
    GetLatest {
        to: String,
        service: Option<String>,
    },
    List(Box<more::ListArgs>),
    Cancel {
        id: String,
    },
    Watch {
        verification: Option<String>,
        notification: Option<String>,
        campaign: Option<String>,
        service: Option<String>,
        after: u64,
    },
    Notify(Box<more::NotifyArgs>),
    GetNotification {
        id: String,
    },
    CancelNotification {
        id: String,
    },
    Notifications(Box<more::ListArgs>),
    Services(Box<more::ServicesCommand>),
    Campaign(Box<campaign::CampaignCommand>),
    Stats(Box<stats::StatsArgs>),
    Simulate(Box<simulate::SimulateArgs>),
    Blocks {
        all: bool,
        limit: u32,
    },
    Unblock {
        id: String,
    },
}

impl Command {
    /// Checks what clap cannot express (the two forms of `check`) and builds the action.
    fn into_action(self) -> Result<Action, clap::Error> {
        Ok(match self {
            Command::Classify(args) => match (args.number, args.input) {
                (Some(number), None) => Action::Classify {
                    number,
                    region: args.region,
                },
                (None, Some(input)) => Action::ClassifyList(ListOptions {
                    input,
                    output: args.output,
                    region: args.region,
                    chunk_size: args.chunk_size as usize,
                }),
                // The `source` group lets exactly one through; this is for safety only.
                _ => {
                    return Err(usage_error(
                        "classify",
                        ErrorKind::ArgumentConflict,
                        "give either a NUMBER or --input FILE",
                    ));
                }
            },
            Command::Verify(args) => Action::Verify(Box::new(VerifyOptions {
                context: args.context(),
                to: args.number,
                channel: args.channel.map(Channel::from),
                locale: args.locale,
                code_length: args.code_length,
                idempotency_key: args.idempotency_key,
                region_hint: args.region,
                workflow: args.workflow,
                program_id: args.program,
                service_id: args.service,
                app_hash: args.app_hash,
                domain: args.domain,
            })),
            Command::Check(args) => match (args.to, args.id, args.code) {
                (None, Some(id), Some(code)) => Action::Check {
                    target: CheckTarget::Id(id),
                    code,
                },
                (Some(to), Some(code), None) => Action::Check {
                    target: CheckTarget::Number(to),
                    code,
                },
                (None, _, None) | (None, None, _) | (Some(_), None, _) => {
                    return Err(usage_error(
                        "check",
                        ErrorKind::MissingRequiredArgument,
                        "give a verification ID and the CODE, or --to NUMBER and the CODE",
                    ));
                }
                (Some(_), Some(_), Some(_)) => {
                    return Err(usage_error(
                        "check",
                        ErrorKind::ArgumentConflict,
                        "with --to, give only the CODE, not a verification ID",
                    ));
                }
            },
            Command::Get { id, to, service } => match (id, to) {
                (Some(id), _) => Action::Get { id },
                (None, Some(to)) => Action::GetLatest { to, service },
                (None, None) => {
                    return Err(usage_error(
                        "get",
                        ErrorKind::MissingRequiredArgument,
                        "give a verification ID, or --to NUMBER",
                    ));
                }
            },
            Command::List(args) => Action::List(Box::new(args)),
            Command::Cancel { id } => Action::Cancel { id },
            Command::Watch {
                verification,
                notification,
                campaign,
                service,
                after,
            } => Action::Watch {
                verification,
                notification,
                campaign,
                service,
                after,
            },
            Command::Blocks { all, limit } => Action::Blocks { all, limit },
            Command::Unblock { id } => Action::Unblock { id },
            Command::Notify(args) => Action::Notify(Box::new(args)),
            Command::GetNotification { id } => Action::GetNotification { id },
            Command::CancelNotification { id } => Action::CancelNotification { id },
            Command::Notifications(args) => Action::Notifications(Box::new(args)),
            Command::Services { command } => Action::Services(Box::new(command)),
            Command::Campaign { command } => Action::Campaign(Box::new(command)),
            Command::Stats(args) => Action::Stats(Box::new(args)),
            Command::Simulate(args) => Action::Simulate(Box::new(args)),
        })
    }
}

/// A usage error of `subcommand`, formatted by clap with its usage (exit status 2).
fn usage_error(subcommand: &str, kind: ErrorKind, message: &str) -> clap::Error {
    let mut command = Cli::command();
    command.build();
    match command.find_subcommand_mut(subcommand) {
        Some(check) => check.error(kind, message),
        None => command.error(kind, message),
    }
}

/// Why a run stopped early.
enum Failure {
    /// verifyd or the connection failed.
    Client(ClientError),
    /// stdout could not be written (e.g. the reader of a pipe went away).
    Output(io::Error),
    /// Anything else, said in full (e.g. `cannot read list.txt: No such file or directory`).
    Message(String),
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Self {
        Failure::Client(error)
    }
}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Self {
        Failure::Output(error)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let action = cli
        .command
        .into_action()
        .unwrap_or_else(|error| error.exit());
    // Not locked for the whole run: `classify --input` writes stdout from another thread.
    let mut out = io::stdout();
    let tls = Tls {
        ca: cli.ca,
        cert: cli.cert,
        key: cli.key,
    };
    let result = run(
        &cli.addr,
        cli.api_key.as_deref(),
        &tls,
        cli.json,
        action,
        &mut out,
    )
    .await;
    match result {
        Ok(code) => code,
        Err(Failure::Output(error)) if error.kind() == io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(Failure::Output(error)) => {
            eprintln!("error: cannot write output: {error}");
            ExitCode::FAILURE
        }
        Err(Failure::Client(error)) => {
            eprintln!("error: {}", ErrorReport(&error));
            ExitCode::FAILURE
        }
        Err(Failure::Message(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The TLS files given on the command line.
#[derive(Debug, Default)]
struct Tls {
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

impl Tls {
    /// Whether to speak TLS to `addr`: an https:// address, or any TLS file given.
    fn wanted(&self, addr: &str) -> bool {
        addr.starts_with("https://") || self.ca.is_some() || self.cert.is_some()
    }

    /// The files read, for the client.
    fn options(&self) -> Result<verify_client::TlsOptions, Failure> {
        let read = |flag: &str, path: &Option<PathBuf>| {
            path.as_ref()
                .map(|path| {
                    std::fs::read(path).map_err(|e| {
                        Failure::Message(format!("cannot read {flag} {}: {e}", path.display()))
                    })
                })
                .transpose()
        };
        Ok(verify_client::TlsOptions {
            ca_pem: read("--ca", &self.ca)?,
            cert_pem: read("--cert", &self.cert)?,
            key_pem: read("--key", &self.key)?,
            domain: None,
        })
    }
}

/// Connects, makes the call and prints the result; returns the exit status for success paths.
async fn run(
    addr: &str,
    api_key: Option<&str>,
    tls: &Tls,
    json: bool,
    action: Action,
    out: &mut impl Write,
) -> Result<ExitCode, Failure> {
    // An unreadable list is reported before any connection is tried.
    let list_input = match &action {
        Action::ClassifyList(options) => Some(batch::Input::open(&options.input)?),
        _ => None,
    };
    let mut client = if tls.wanted(addr) {
        VerifyClient::connect_tls(addr, tls.options()?).await?
    } else {
        VerifyClient::connect(addr).await?
    };
    if let Some(key) = api_key {
        client = client.with_api_key(key)?;
    }
    let now = Utc::now();
    match action {
        Action::Classify { number, region } => {
            let classification = client.classify(&number, region.as_deref()).await?;
            if json {
                let response = ClassifyResponse {
                    classification: Some(classification),
                };
                write_json_line(out, &response)?;
            } else {
                write!(out, "{}", classification_text(&classification))?;
            }
        }
        Action::ClassifyList(options) => {
            let input = match list_input {
                Some(input) => input,
                None => batch::Input::open(&options.input)?,
            };
            batch::classify_list(&client, json, options, input, out).await?;
        }
        Action::Verify(options) => {
            let response = client.verify(*options).await?;
            if json {
                write_json_line(out, &response)?;
            } else {
                writeln!(out, "{}", verify_text(&response, now))?;
            }
        }
        Action::Check { target, code } => {
            let response = match target {
                CheckTarget::Id(id) => client.check_by_id(&id, &code).await?,
                CheckTarget::Number(to) => client.check_by_number(&to, &code).await?,
            };
            if json {
                write_json_line(out, &response)?;
            } else {
                writeln!(out, "{}", check_text(&response))?;
            }
            if response.result() != CheckResult::Approved {
                return Ok(ExitCode::from(EXIT_NOT_APPROVED));
            }
        }
        Action::Get { id } => {
            let verification = client.get(&id).await?;
            if json {
                let response = GetVerificationResponse {
                    verification: Some(verification),
                };
                write_json_line(out, &response)?;
            } else {
                write!(out, "{}", verification_text(&verification, now))?;
            }
        }
        Action::Cancel { id } => {
            let verification = client.cancel(&id).await?;
            if json {
                let response = CancelVerificationResponse {
                    verification: Some(verification),
                };
                write_json_line(out, &response)?;
            } else {
                writeln!(out, "{}", verification_summary(&verification, now))?;
            }
        }
        Action::GetLatest { to, service } => {
            let verification = client.get_latest(&to, service.as_deref()).await?;
            if json {
                let response = GetVerificationResponse {
                    verification: Some(verification),
                };
                write_json_line(out, &response)?;
            } else {
                write!(out, "{}", verification_text(&verification, now))?;
            }
        }
        Action::List(args) => more::list_verifications(&client, *args, json, now, out).await?,
        Action::Notifications(args) => more::list_notifications(&client, *args, json, out).await?,
        Action::Notify(args) => more::notify(&client, *args, json, out).await?,
        Action::GetNotification { id } => more::get_notification(&client, &id, json, out).await?,
        Action::CancelNotification { id } => {
            more::cancel_notification(&client, &id, json, out).await?;
        }
        Action::Services(command) => more::services(&client, *command, json, out).await?,
        Action::Campaign(command) => {
            campaign::campaign(&client, *command, json, now, out).await?;
        }
        Action::Stats(args) => stats::stats(&client, *args, json, now, out).await?,
        Action::Simulate(args) => simulate::simulate(&client, *args, out).await?,
        Action::Watch {
            verification,
            notification,
            campaign,
            service,
            after,
        } => {
            let request = WatchEventsRequest {
                verification_id: verification.unwrap_or_default(),
                notification_id: notification.unwrap_or_default(),
                campaign_id: campaign.unwrap_or_default(),
                service_id: service.unwrap_or_default(),
                after_cursor: after,
            };
            let mut events = client.watch_events(request).await?;
            while let Some(event) = events.next().await {
                let event = event.map_err(ClientError::from)?;
                if json {
                    let response = WatchEventsResponse { event: Some(event) };
                    write_json_line(out, &response)?;
                } else {
                    writeln!(out, "{}", event_line(&event))?;
                }
                out.flush()?;
            }
        }
        Action::Blocks { all, limit } => {
            let blocks = client.list_blocks(all, limit).await?;
            if json {
                write_json_line(out, &ListBlocksResponse { blocks })?;
            } else if blocks.is_empty() {
                writeln!(out, "no blocks{}", if all { "" } else { " in force" })?;
            } else {
                for block in &blocks {
                    writeln!(out, "{}", block_text(block, now))?;
                }
            }
        }
        Action::Unblock { id } => {
            let block = client.unblock(&id).await?;
            if json {
                write_json_line(out, &UnblockResponse { block: Some(block) })?;
            } else {
                writeln!(out, "{}", block_text(&block, now))?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Two lines about a block: what, by which rule, its state; then why.
/// `blk_1 number_prefix +447400123 (sequential-numbers) blocked, ends in 14m 59s, repeat 1`.
fn block_text(block: &verify_client::proto::v1::Block, now: DateTime<Utc>) -> String {
    let state = if block.lifted.is_some() {
        format!("lifted by {}", block.lifted_by)
    } else {
        match to_datetime(block.ends.as_ref()) {
            Some(ends) if ends > now => {
                let left = ((ends - now).num_milliseconds() + 500).div_euclid(1000);
                let mode = if block.enforced {
                    "blocked"
                } else {
                    "monitored (nothing refused)"
                };
                format!("{mode}, ends in {}", duration_text(left))
            }
            _ => "ended".to_owned(),
        }
    };
    format!(
        "{} {} {} ({}) {state}, repeat {}\n  {}",
        block.id, block.target_kind, block.target, block.rule, block.strike, block.reason
    )
}

/// Writes `message` as one line of JSON in the proto3 mapping the generated types implement.
fn write_json_line(out: &mut impl Write, message: &impl serde::Serialize) -> Result<(), Failure> {
    serde_json::to_writer(&mut *out, message).map_err(|error| {
        if error.is_io() {
            Failure::Output(error.into())
        } else {
            Failure::Message(format!("cannot print verifyd's answer as JSON: {error}"))
        }
    })?;
    writeln!(out)?;
    Ok(())
}

/// A client error with its causes, e.g. `cannot connect to ...: transport error: ...: Connection refused`.
/// Errors from a call print as `<gRPC code>: <message>`.
struct ErrorReport<'a>(&'a ClientError);

impl Display for ErrorReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        if self.0.status().is_some() {
            return Ok(());
        }
        // Layers often repeat their inner error's text ("tcp connect error: tcp connect error");
        // print each distinct text once.
        let mut previous = String::new();
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if text != previous {
                write!(f, ": {text}")?;
            }
            previous = text;
            source = cause.source();
        }
        Ok(())
    }
}

/// An enum value in words: `LINE_TYPE_FIXED_LINE` becomes `fixed line`; unknown values show
/// their number.
fn words<E: TryFrom<i32>>(value: i32, name: fn(&E) -> &'static str, prefix: &str) -> String {
    match E::try_from(value) {
        Ok(known) => {
            let name = name(&known);
            name.strip_prefix(prefix)
                .unwrap_or(name)
                .to_lowercase()
                .replace('_', " ")
        }
        Err(_) => format!("unknown ({value})"),
    }
}

fn channel_words(value: i32) -> String {
    words(value, Channel::as_str_name, "CHANNEL_")
}

fn status_words(value: i32) -> String {
    words(
        value,
        VerificationStatus::as_str_name,
        "VERIFICATION_STATUS_",
    )
}

fn delivery_words(value: i32) -> String {
    words(value, DeliveryStatus::as_str_name, "DELIVERY_STATUS_")
}

/// `-` for an empty field, so aligned output keeps its columns.
fn or_dash(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}

/// A timestamp for people: RFC 3339 in UTC to the second, `-` when unset.
fn time_text(time: Option<&Timestamp>) -> String {
    to_datetime(time).map_or_else(
        || "-".to_owned(),
        |time| time.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

fn to_datetime(time: Option<&Timestamp>) -> Option<DateTime<Utc>> {
    let time = time?;
    DateTime::from_timestamp(time.seconds, 0)?
        .checked_add_signed(TimeDelta::nanoseconds(time.nanos.into()))
}

/// A span for people, rounded to the second: `45s`, `9m30s`, `10m`, `1h5m`, `2d3h`.
fn duration_text(seconds: i64) -> String {
    let seconds = seconds.max(0);
    let (days, hours, minutes, secs) = (
        seconds / 86_400,
        seconds % 86_400 / 3_600,
        seconds % 3_600 / 60,
        seconds % 60,
    );
    let (large, small) = match (days, hours, minutes) {
        (0, 0, 0) => return format!("{secs}s"),
        (0, 0, _) => ((minutes, 'm'), (secs, 's')),
        (0, _, _) => ((hours, 'h'), (minutes, 'm')),
        _ => ((days, 'd'), (hours, 'h')),
    };
    if small.0 == 0 {
        format!("{}{}", large.0, large.1)
    } else {
        format!("{}{}{}{}", large.0, large.1, small.0, small.1)
    }
}

/// `expires in 10m` or `expired`, from the expiry time and now.
fn expiry_text(expires_at: Option<&Timestamp>, now: DateTime<Utc>) -> Option<String> {
    let expires_at = to_datetime(expires_at)?;
    let left_ms = (expires_at - now).num_milliseconds();
    let left = (left_ms + 500).div_euclid(1000);
    Some(if left <= 0 {
        "expired".to_owned()
    } else {
        format!("expires in {}", duration_text(left))
    })
}

fn checks_left_text(checks_left: u32) -> String {
    match checks_left {
        1 => "1 check left".to_owned(),
        n => format!("{n} checks left"),
    }
}

/// One line about a verification: `verification vf_1 pending, sms to +44..., expires in 10m, 5 checks left`.
fn verification_summary(verification: &Verification, now: DateTime<Utc>) -> String {
    let mut line = format!(
        "verification {} {}, {} to {}",
        verification.id,
        status_words(verification.status),
        channel_words(verification.channel),
        verification.to
    );
    if verification.status() == VerificationStatus::Pending {
        if let Some(expiry) = expiry_text(verification.expires_at.as_ref(), now) {
            line.push_str(", ");
            line.push_str(&expiry);
        }
        line.push_str(", ");
        line.push_str(&checks_left_text(verification.checks_left));
    }
    line
}

fn verify_text(response: &VerifyResponse, now: DateTime<Utc>) -> String {
    let mut line = response
        .verification
        .as_ref()
        .map_or_else(String::new, |v| verification_summary(v, now));
    if response.replayed {
        line.push_str(" (same idempotency key: nothing sent)");
    } else if response.resent {
        line.push_str(" (code resent)");
    }
    line
}

fn check_text(response: &CheckResponse) -> String {
    match CheckResult::try_from(response.result) {
        Ok(CheckResult::Approved) => "approved".to_owned(),
        Ok(CheckResult::WrongCode) => {
            format!("wrong code, {}", checks_left_text(response.checks_left))
        }
        Ok(CheckResult::Expired) => "expired".to_owned(),
        Ok(CheckResult::TooManyAttempts) => "too many attempts".to_owned(),
        Ok(CheckResult::Canceled) => "canceled".to_owned(),
        Ok(CheckResult::Unspecified) | Err(_) => format!("unknown result ({})", response.result),
    }
}

/// `key: value` lines with the values in one column.
fn aligned(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(key, _)| key.len() + 1).max().unwrap_or(0);
    rows.iter()
        .map(|(key, value)| format!("{:<width$} {value}\n", format!("{key}:")))
        .collect()
}

fn classification_rows(classification: &Classification) -> Vec<(&'static str, String)> {
    let recommended = if classification.recommended_channel == Channel::Unspecified as i32 {
        "none (do not verify this number)".to_owned()
    } else {
        channel_words(classification.recommended_channel)
    };
    let invalid_reason = if classification.invalid_reason == InvalidReason::Unspecified as i32 {
        "-".to_owned()
    } else {
        words(
            classification.invalid_reason,
            InvalidReason::as_str_name,
            "INVALID_REASON_",
        )
    };
    let line_type = if classification.line_type == LineType::Unspecified as i32 {
        "-".to_owned()
    } else {
        words(
            classification.line_type,
            LineType::as_str_name,
            "LINE_TYPE_",
        )
    };
    let country_code = match classification.country_calling_code {
        0 => "-".to_owned(),
        code => format!("+{code}"),
    };
    vec![
        ("input", classification.input.clone()),
        (
            "valid",
            if classification.valid { "yes" } else { "no" }.to_owned(),
        ),
        ("e164", or_dash(&classification.e164).to_owned()),
        ("region", or_dash(&classification.region_code).to_owned()),
        ("country code", country_code),
        ("line type", line_type),
        ("carrier", or_dash(&classification.carrier).to_owned()),
        (
            "time zones",
            or_dash(&classification.time_zones.join(", ")).to_owned(),
        ),
        ("channel", recommended),
        ("invalid reason", invalid_reason),
        (
            "national",
            or_dash(&classification.national_format).to_owned(),
        ),
        (
            "international",
            or_dash(&classification.international_format).to_owned(),
        ),
        ("detail", or_dash(&classification.detail).to_owned()),
    ]
}

fn classification_text(classification: &Classification) -> String {
    aligned(&classification_rows(classification))
}

/// One line per delivery attempt: `msg_1  sms via sim: delivered, carrier id c-9, answered (updated ...)`.
fn attempt_line(attempt: &Attempt) -> String {
    let mut line = format!(
        "{}  {} via {}: {}",
        attempt.message_id,
        channel_words(attempt.channel),
        or_dash(&attempt.carrier),
        delivery_words(attempt.delivery_status)
    );
    if !attempt.carrier_message_id.is_empty() {
        line.push_str(", carrier id ");
        line.push_str(&attempt.carrier_message_id);
    }
    if !attempt.detail.is_empty() {
        line.push_str(", ");
        line.push_str(&attempt.detail);
    }
    line.push_str(&format!(
        " (updated {})",
        time_text(attempt.updated_at.as_ref())
    ));
    line
}

fn verification_text(verification: &Verification, now: DateTime<Utc>) -> String {
    let mut expires = time_text(verification.expires_at.as_ref());
    if verification.status() == VerificationStatus::Pending
        && let Some(expiry) = expiry_text(verification.expires_at.as_ref(), now)
    {
        expires.push_str(&format!(" ({expiry})"));
    }
    let mut rows = vec![
        ("id", verification.id.clone()),
        ("to", verification.to.clone()),
        ("status", status_words(verification.status)),
        ("channel", channel_words(verification.channel)),
        ("created", time_text(verification.created_at.as_ref())),
        ("expires", expires),
        ("checks left", verification.checks_left.to_string()),
        ("sends left", verification.sends_left.to_string()),
        ("code length", verification.code_length.to_string()),
        ("locale", or_dash(&verification.locale).to_owned()),
    ];
    if let Some(classification) = &verification.classification {
        rows.push((
            "line type",
            words(
                classification.line_type,
                LineType::as_str_name,
                "LINE_TYPE_",
            ),
        ));
        rows.push(("region", or_dash(&classification.region_code).to_owned()));
    }
    let attempts = if verification.attempts.is_empty() {
        "none".to_owned()
    } else {
        verification.attempts.len().to_string()
    };
    rows.push(("attempts", attempts));
    let mut text = aligned(&rows);
    for attempt in &verification.attempts {
        text.push_str("  ");
        text.push_str(&attempt_line(attempt));
        text.push('\n');
    }
    text
}

/// One line per event: cursor, time, type, verification, status, carrier, detail. The status is
/// the message's for message events and the verification's otherwise.
fn event_line(event: &Event) -> String {
    let status = if !event.campaign_id.is_empty()
        && event.delivery_status == DeliveryStatus::Unspecified as i32
    {
        words(
            event.campaign_status,
            CampaignStatus::as_str_name,
            "CAMPAIGN_STATUS_",
        )
    } else if !event.block_id.is_empty() {
        match event.r#type() {
            EventType::BlockLifted => "lifted".to_owned(),
            _ => "blocked".to_owned(),
        }
    } else if event.delivery_status == DeliveryStatus::Unspecified as i32 {
        status_words(event.verification_status)
    } else {
        delivery_words(event.delivery_status)
    };
    let line = format!(
        "{:>6}  {}  {:<22}  {}  {:<10}  {:<8}  {}",
        event.cursor,
        time_text(event.time.as_ref()),
        words(event.r#type, EventType::as_str_name, "EVENT_TYPE_"),
        or_dash(
            [
                &event.verification_id,
                &event.notification_id,
                &event.block_id,
                &event.campaign_id
            ]
            .into_iter()
            .find(|id| !id.is_empty())
            .map_or("", String::as_str)
        ),
        status,
        or_dash(&event.carrier),
        event.detail
    );
    line.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Action, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("verifyctl").chain(args.iter().copied()))?;
        cli.command.into_action()
    }

    fn at(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos: 0 })
    }

    fn moment(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_have_documented_defaults_and_env() {
        let command = Cli::command();
        let addr = command
            .get_arguments()
            .find(|arg| arg.get_id() == "addr")
            .unwrap();
        assert_eq!(addr.get_default_values(), ["http://127.0.0.1:50051"]);
        assert_eq!(addr.get_env().unwrap(), "VERIFYD_ADDR");
        let key = command
            .get_arguments()
            .find(|arg| arg.get_id() == "api_key")
            .unwrap();
        assert_eq!(key.get_env().unwrap(), "VERIFYD_API_KEY");
        assert!(
            key.is_hide_env_values_set(),
            "the key must not show in --help"
        );
    }

    #[test]
    fn global_options_are_accepted_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "verifyctl",
            "get",
            "vf_1",
            "--json",
            "--addr",
            "10.0.0.2:50051",
            "--api-key",
            "k",
        ])
        .unwrap();
        assert!(cli.json);
        assert_eq!(cli.addr, "10.0.0.2:50051");
        assert_eq!(cli.api_key.as_deref(), Some("k"));
    }

    #[test]
    fn classify_takes_a_number_and_region() {
        assert_eq!(
            parse(&["classify", "098123 45678", "--region", "IN"]).unwrap(),
            Action::Classify {
                number: "098123 45678".into(),
                region: Some("IN".into())
            }
        );
    }

    #[test]
    fn classify_takes_a_list_with_output_region_and_chunk_size() {
        assert_eq!(
            parse(&[
                "classify",
                "--input",
                "list.txt",
                "--output",
                "out.csv",
                "--region",
                "GB",
                "--chunk-size",
                "5000",
            ])
            .unwrap(),
            Action::ClassifyList(ListOptions {
                input: "list.txt".into(),
                output: Some(PathBuf::from("out.csv")),
                region: Some("GB".into()),
                chunk_size: 5000,
            })
        );
        assert_eq!(
            parse(&["classify", "-i", "-"]).unwrap(),
            Action::ClassifyList(ListOptions {
                input: "-".into(),
                output: None,
                region: None,
                chunk_size: batch::DEFAULT_CHUNK_SIZE as usize,
            })
        );
    }

    #[test]
    fn classify_wants_exactly_one_of_number_and_input() {
        let both = parse(&["classify", "+447700900123", "--input", "list.txt"]).unwrap_err();
        assert_eq!(both.kind(), ErrorKind::ArgumentConflict);
        let neither = parse(&["classify"]).unwrap_err();
        assert_eq!(neither.kind(), ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn list_options_need_input_and_a_chunk_size_in_range() {
        let output_alone = parse(&["classify", "+447700900123", "--output", "x.csv"]).unwrap_err();
        assert_eq!(output_alone.kind(), ErrorKind::ArgumentConflict);
        let chunk_alone = parse(&["classify", "+447700900123", "--chunk-size", "10"]).unwrap_err();
        assert_eq!(chunk_alone.kind(), ErrorKind::ArgumentConflict);
        let output_only = parse(&["classify", "--output", "x.csv"]).unwrap_err();
        assert_eq!(output_only.kind(), ErrorKind::MissingRequiredArgument);
        for bad in ["0", "10001"] {
            let error = parse(&["classify", "-i", "x", "--chunk-size", bad]).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::ValueValidation, "{bad}");
        }
        assert!(parse(&["classify", "-i", "x", "--chunk-size", "10000"]).is_ok());
    }

    #[test]
    fn verify_maps_every_option() {
        let action = parse(&[
            "verify",
            "+447700900123",
            "--channel",
            "voice",
            "--locale",
            "es-MX",
            "--code-length",
            "8",
            "--idempotency-key",
            "k-1",
            "--region",
            "GB",
        ])
        .unwrap();
        assert_eq!(
            action,
            Action::Verify(Box::new(VerifyOptions {
                to: "+447700900123".into(),
                channel: Some(Channel::Voice),
                locale: Some("es-MX".into()),
                code_length: Some(8),
                idempotency_key: Some("k-1".into()),
                region_hint: Some("GB".into()),
                workflow: None,
                program_id: None,
                context: None,
                service_id: None,
                app_hash: None,
                domain: None,
            }))
        );
    }

    #[test]
    fn verify_without_options_leaves_choices_to_the_server() {
        assert_eq!(
            parse(&["verify", "+447700900123"]).unwrap(),
            Action::Verify(Box::new(VerifyOptions::new("+447700900123")))
        );
    }

    #[test]
    fn verify_rejects_unknown_channels_and_bad_code_lengths() {
        for args in [
            &["verify", "+1", "--channel", "fax"][..],
            &["verify", "+1", "--code-length", "3"],
            &["verify", "+1", "--code-length", "11"],
        ] {
            let error = parse(args).unwrap_err();
            assert!(
                matches!(
                    error.kind(),
                    ErrorKind::InvalidValue | ErrorKind::ValueValidation
                ),
                "{args:?}: {:?}",
                error.kind()
            );
            assert_eq!(error.exit_code(), 2);
        }
    }

    #[test]
    fn check_by_id_takes_id_then_code() {
        assert_eq!(
            parse(&["check", "vf_1", "123456"]).unwrap(),
            Action::Check {
                target: CheckTarget::Id("vf_1".into()),
                code: "123456".into()
            }
        );
    }

    #[test]
    fn check_by_number_takes_only_the_code() {
        assert_eq!(
            parse(&["check", "--to", "+447700900123", "123456"]).unwrap(),
            Action::Check {
                target: CheckTarget::Number("+447700900123".into()),
                code: "123456".into()
            }
        );
    }

    #[test]
    fn check_without_a_code_is_a_usage_error() {
        for args in [&["check", "vf_1"][..], &["check", "--to", "+1"], &["check"]] {
            let error = parse(args).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::MissingRequiredArgument, "{args:?}");
            assert_eq!(error.exit_code(), 2);
        }
    }

    #[test]
    fn check_with_both_id_and_number_is_a_usage_error() {
        let error = parse(&["check", "--to", "+1", "vf_1", "123456"]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ArgumentConflict);
        assert_eq!(error.exit_code(), 2);
    }

    #[test]
    fn watch_defaults_to_everything_from_the_start() {
        assert_eq!(
            parse(&["watch"]).unwrap(),
            Action::Watch {
                verification: None,
                notification: None,
                campaign: None,
                service: None,
                after: 0
            }
        );
        assert_eq!(
            parse(&["watch", "--verification", "vf_1", "--after", "42"]).unwrap(),
            Action::Watch {
                verification: Some("vf_1".into()),
                notification: None,
                campaign: None,
                service: None,
                after: 42
            }
        );
        assert_eq!(
            parse(&["watch", "--after", "soon"]).unwrap_err().kind(),
            ErrorKind::ValueValidation
        );
    }

    #[test]
    fn notification_and_service_commands_parse() {
        let Action::Notify(args) = parse(&[
            "notify",
            "+919812345678",
            "--category",
            "marketing",
            "--body",
            "Sale",
            "--service",
            "acme",
        ])
        .unwrap() else {
            panic!("not notify");
        };
        assert_eq!(args.category, more::CategoryArg::Marketing);
        assert_eq!(args.service.as_deref(), Some("acme"));
        assert_eq!(
            parse(&["get", "--to", "+447700900123", "--service", "acme"]).unwrap(),
            Action::GetLatest {
                to: "+447700900123".into(),
                service: Some("acme".into())
            }
        );
        assert_eq!(
            parse(&["get", "vf_1", "--to", "+447700900123"])
                .unwrap_err()
                .kind(),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            parse(&["watch", "--notification", "nt_1", "--verification", "vf_1"])
                .unwrap_err()
                .kind(),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            parse(&["cancel-notification", "nt_1"]).unwrap(),
            Action::CancelNotification { id: "nt_1".into() }
        );
        let Action::Services(command) = parse(&[
            "services",
            "create",
            "acme",
            "--name",
            "Acme",
            "--channels",
            "sms,voice",
        ])
        .unwrap() else {
            panic!("not services");
        };
        let more::ServicesCommand::Create(args) = *command else {
            panic!("not services create");
        };
        assert_eq!(args.channels, Some(vec!["sms".into(), "voice".into()]));
        let Action::List(args) = parse(&[
            "list",
            "--status",
            "pending",
            "--since",
            "2026-12-01T00:00:00Z",
            "--limit",
            "10",
        ])
        .unwrap() else {
            panic!("not list");
        };
        assert_eq!(args.statuses, ["pending"]);
        assert_eq!(args.limit, 10);
        assert!(parse(&["list", "--since", "yesterday"]).is_err());
    }

    #[test]
    fn help_documents_the_exit_status() {
        let help = Cli::command().render_long_help().to_string();
        assert!(
            help.contains("3  `check` ran but did not approve"),
            "{help}"
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_text(45), "45s");
        assert_eq!(duration_text(600), "10m");
        assert_eq!(duration_text(570), "9m30s");
        assert_eq!(duration_text(3_900), "1h5m");
        assert_eq!(duration_text(3_600), "1h");
        assert_eq!(duration_text(183_600), "2d3h");
        assert_eq!(duration_text(-5), "0s");
    }

    fn pending_verification() -> Verification {
        Verification {
            id: "vf_1".into(),
            to: "+447700900123".into(),
            status: VerificationStatus::Pending as i32,
            channel: Channel::Sms as i32,
            created_at: at(1_000),
            expires_at: at(1_600),
            checks_left: 5,
            sends_left: 2,
            code_length: 6,
            locale: "en".into(),
            ..Verification::default()
        }
    }

    #[test]
    fn verify_prints_one_summary_line() {
        let response = VerifyResponse {
            verification: Some(pending_verification()),
            resent: false,
            replayed: false,
            decision: String::new(),
        };
        // 200 ms of latency still reads as the full ten minutes.
        let now = moment(1_000) + chrono::Duration::milliseconds(200);
        assert_eq!(
            verify_text(&response, now),
            "verification vf_1 pending, sms to +447700900123, expires in 10m, 5 checks left"
        );
        let resent = VerifyResponse {
            resent: true,
            ..response
        };
        assert!(verify_text(&resent, now).ends_with("5 checks left (code resent)"));
    }

    #[test]
    fn ended_verifications_omit_expiry_and_checks() {
        let verification = Verification {
            status: VerificationStatus::Canceled as i32,
            ..pending_verification()
        };
        assert_eq!(
            verification_summary(&verification, moment(1_000)),
            "verification vf_1 canceled, sms to +447700900123"
        );
        let late = pending_verification();
        assert!(verification_summary(&late, moment(2_000)).contains(", expired, "));
    }

    #[test]
    fn check_results_read_as_words() {
        let text = |result: CheckResult, checks_left| {
            check_text(&CheckResponse {
                result: result as i32,
                checks_left,
                verification: None,
            })
        };
        assert_eq!(text(CheckResult::Approved, 4), "approved");
        assert_eq!(text(CheckResult::WrongCode, 4), "wrong code, 4 checks left");
        assert_eq!(text(CheckResult::WrongCode, 1), "wrong code, 1 check left");
        assert_eq!(text(CheckResult::Expired, 0), "expired");
        assert_eq!(text(CheckResult::TooManyAttempts, 0), "too many attempts");
        assert_eq!(text(CheckResult::Canceled, 3), "canceled");
    }

    #[test]
    fn classification_lines_are_aligned() {
        let classification = Classification {
            input: "+44 7700 900123".into(),
            valid: true,
            e164: "+447700900123".into(),
            region_code: "GB".into(),
            country_calling_code: 44,
            line_type: LineType::FixedLineOrMobile as i32,
            time_zones: vec!["Europe/London".into(), "Europe/Guernsey".into()],
            recommended_channel: Channel::Sms as i32,
            ..Classification::default()
        };
        let text = classification_text(&classification);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "input:          +44 7700 900123");
        assert!(
            lines.contains(&"line type:      fixed line or mobile"),
            "{text}"
        );
        assert!(
            lines.contains(&"time zones:     Europe/London, Europe/Guernsey"),
            "{text}"
        );
        assert!(lines.contains(&"carrier:        -"), "{text}");
        assert!(lines.contains(&"country code:   +44"), "{text}");
        // The longest key is `invalid reason:` (15 characters); every value starts at column 16.
        for line in &lines {
            let (key, value) = line.split_at(16);
            assert!(key.trim_end().ends_with(':'), "{line:?}");
            assert!(!value.starts_with(' '), "{line:?}");
        }
    }

    #[test]
    fn unusable_numbers_say_so() {
        let classification = Classification {
            input: "+44 909 8790000".into(),
            valid: true,
            line_type: LineType::PremiumRate as i32,
            recommended_channel: Channel::Unspecified as i32,
            ..Classification::default()
        };
        let text = classification_text(&classification);
        assert!(
            text.contains("channel:        none (do not verify this number)"),
            "{text}"
        );
        assert!(text.contains("line type:      premium rate"), "{text}");
    }

    #[test]
    fn verification_details_list_attempts() {
        let mut verification = pending_verification();
        verification.attempts.push(Attempt {
            message_id: "msg_1".into(),
            channel: Channel::Sms as i32,
            carrier: "sim".into(),
            delivery_status: DeliveryStatus::Delivered as i32,
            carrier_message_id: "c-9".into(),
            detail: String::new(),
            created_at: at(1_000),
            updated_at: at(1_005),
        });
        let text = verification_text(&verification, moment(1_060));
        assert!(
            text.contains("expires:     1970-01-01T00:26:40Z (expires in 9m)\n"),
            "{text}"
        );
        assert!(text.contains("attempts:    1\n"), "{text}");
        assert!(
            text.ends_with(
                "  msg_1  sms via sim: delivered, carrier id c-9 (updated 1970-01-01T00:16:45Z)\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn events_print_on_one_line() {
        let event = Event {
            cursor: 42,
            r#type: EventType::MessageFailed as i32,
            verification_id: "vf_1".into(),
            message_id: "msg_1".into(),
            channel: Channel::Sms as i32,
            carrier: "smpp-a".into(),
            delivery_status: DeliveryStatus::Failed as i32,
            verification_status: VerificationStatus::Pending as i32,
            detail: "absent subscriber".into(),
            time: at(1_764_033_600),
            notification_id: String::new(),
            notification_status: 0,
            block_id: String::new(),
            service_id: "default".into(),
            campaign_id: String::new(),
            campaign_status: 0,
        };
        assert_eq!(
            event_line(&event),
            "    42  2025-11-25T01:20:00Z  message failed          vf_1  failed      smpp-a    absent subscriber"
        );
        let approved = Event {
            cursor: 43,
            r#type: EventType::VerificationApproved as i32,
            verification_id: "vf_1".into(),
            verification_status: VerificationStatus::Approved as i32,
            time: at(1_764_033_660),
            ..Event::default()
        };
        assert_eq!(
            event_line(&approved),
            "    43  2025-11-25T01:21:00Z  verification approved   vf_1  approved    -"
        );
    }

    #[test]
    fn call_errors_show_grpc_code_and_message_only() {
        let error = ClientError::from(tonic::Status::not_found("no verification vf_9"));
        assert_eq!(
            ErrorReport(&error).to_string(),
            "NOT_FOUND: no verification vf_9"
        );
    }

    #[tokio::test]
    async fn connection_errors_show_their_causes() {
        // Bind then drop a listener so the port is very likely closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("http://127.0.0.1:{port}");
        let error = VerifyClient::connect(address.clone()).await.unwrap_err();
        let report = ErrorReport(&error).to_string();
        let prefix = format!("cannot connect to {address}: ");
        assert!(report.starts_with(&prefix), "{report}");
        assert!(
            report.len() > prefix.len() + "transport error".len(),
            "{report}"
        );
        let parts: Vec<&str> = report.split(": ").collect();
        assert!(parts.windows(2).all(|pair| pair[0] != pair[1]), "{report}");
    }
}
