//! `verifyctl campaign ...`: create a campaign from a CSV list (streamed, with a progress
//! bar), show its counts by country, carrier and channel, follow it to its end, pause, resume
//! and cancel it, list its rejected lines and report confirmations.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use tokio_stream::wrappers::ReceiverStream;
use verify_client::VerifyClient;
use verify_client::proto::v1::{
    Campaign, CampaignCounts, CampaignDimension, CampaignGroup, CampaignRecipient,
    CampaignRecipients, CampaignSpec, CampaignStatus, Channel, CreateCampaignResponse,
    GetCampaignResponse, LandlineAction, ListCampaignsRequest, ListCampaignsResponse,
    MessageCategory,
};

use crate::batch::{Input, Progress, grouped};
use crate::more::{CategoryArg, parse_time};
use crate::{Failure, aligned, or_dash, time_text, words, write_json_line};

/// Recipients per chunk sent to verifyd.
const CHUNK_RECIPIENTS: usize = 2_000;
/// Chunks read ahead of the stream.
const CHUNKS_AHEAD: usize = 8;
/// Rejected lines shown after `create` (all of them with --rejections FILE).
const REJECTIONS_SHOWN: usize = 10;

/// The campaign commands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum CampaignCommand {
    /// Create a campaign from a CSV list: a header row naming a `to` column (the number),
    /// optionally `locale`, and any other columns as variables the text uses as `{name}`.
    Create(Box<CreateArgs>),
    /// Show a campaign and its counts (by country unless --by says otherwise).
    Status(StatusArgs),
    /// List campaigns, newest first.
    List {
        /// Only this service's.
        #[arg(long, value_name = "ID")]
        service: Option<String>,
    },
    /// Pause a campaign: nothing more goes to a carrier until it is resumed.
    Pause {
        /// The campaign id.
        id: String,
    },
    /// Resume a paused campaign.
    Resume {
        /// The campaign id.
        id: String,
    },
    /// Cancel a campaign: recipients not yet sent never are.
    Cancel {
        /// The campaign id.
        id: String,
    },
    /// List the lines a campaign did not accept, with why (CSV: line,field,reason).
    Rejections {
        /// The campaign id.
        id: String,
    },
    /// Report that a recipient did what the campaign asked (followed the link, replied).
    Confirm {
        /// The campaign id.
        id: String,
        /// The recipient's number.
        #[arg(long, value_name = "NUMBER", required_unless_present = "line")]
        to: Option<String>,
        /// The recipient's line in the list.
        #[arg(long, value_name = "LINE")]
        line: Option<u64>,
    },
}

/// What fixed-line numbers get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LandlinesArg {
    /// A voice call that reads the text.
    Voice,
    /// Nothing: counted as refused.
    Report,
}

/// Arguments of `campaign create`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct CreateArgs {
    /// The CSV list, `-` for stdin.
    #[arg(long, value_name = "FILE")]
    pub input: String,
    /// A name for people.
    #[arg(long)]
    pub name: String,
    /// What it is for; country rules differ by category.
    #[arg(long, value_enum)]
    pub category: CategoryArg,
    /// The text: `TEXT` for the default locale, or `LOCALE=TEXT` (repeat for each locale).
    #[arg(long = "body", value_name = "[LOCALE=]TEXT", required = true)]
    pub bodies: Vec<String>,
    /// The locale whose text goes to recipients whose locale has none.
    #[arg(long, value_name = "LOCALE", default_value = "en")]
    pub default_locale: String,
    /// The configured program sending it (its registrations are checked and sent).
    #[arg(long, value_name = "ID")]
    pub program: Option<String>,
    /// The registered template the texts follow, by the program's name for it.
    #[arg(long, value_name = "NAME")]
    pub template: Option<String>,
    /// The sender to show; the carrier's own when unset.
    #[arg(long, value_name = "SENDER")]
    pub sender: Option<String>,
    /// The sender for one country that needs its own, as `XX=SENDER` (India's registered
    /// header, a US long code); repeat for each.
    #[arg(long = "sender-for", value_name = "XX=SENDER")]
    pub senders_by_region: Vec<String>,
    /// Send nothing before this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub start: Option<String>,
    /// Send nothing after this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub deadline: Option<String>,
    /// What fixed-line numbers get (default: a call for alerts, reported otherwise).
    #[arg(long, value_enum)]
    pub landlines: Option<LandlinesArg>,
    /// Count confirmations (`verifyctl campaign confirm`).
    #[arg(long)]
    pub track_confirmation: bool,
    /// Region of numbers in national form (ISO 3166-1 alpha-2).
    #[arg(long, value_name = "XX")]
    pub region: Option<String>,
    /// Makes retries safe: a repeated create with the same key stores nothing new.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// The service sending it; the API key's own when unset.
    #[arg(long, value_name = "ID")]
    pub service: Option<String>,
    /// Write every rejected line to this CSV file (line,field,reason).
    #[arg(long, value_name = "FILE")]
    pub rejections: Option<String>,
}

/// Arguments of `campaign status`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct StatusArgs {
    /// The campaign id.
    pub id: String,
    /// Group the counts by these, comma-separated: country, carrier, channel.
    #[arg(long, value_name = "DIMENSIONS", default_value = "country")]
    pub by: String,
    /// Show the counts again every N seconds until the campaign ends.
    #[arg(long, value_name = "SECONDS")]
    pub follow: Option<u64>,
}

/// Runs a campaign command.
pub async fn campaign(
    client: &VerifyClient,
    command: CampaignCommand,
    json: bool,
    now: chrono::DateTime<chrono::Utc>,
    out: &mut impl Write,
) -> Result<(), Failure> {
    match command {
        CampaignCommand::Create(args) => create(client, *args, json, out).await,
        CampaignCommand::Status(args) => status(client, args, json, now, out).await,
        CampaignCommand::List { service } => list(client, service, json, out).await,
        CampaignCommand::Pause { id } => {
            let campaign = client.pause_campaign(&id).await?;
            changed(&campaign, json, out)
        }
        CampaignCommand::Resume { id } => {
            let campaign = client.resume_campaign(&id).await?;
            changed(&campaign, json, out)
        }
        CampaignCommand::Cancel { id } => {
            let campaign = client.cancel_campaign(&id).await?;
            changed(&campaign, json, out)
        }
        CampaignCommand::Rejections { id } => {
            writeln!(out, "line,field,reason")?;
            write_rejections(client, &id, out).await
        }
        CampaignCommand::Confirm { id, to, line } => {
            let counted = client
                .report_campaign_confirmation(&id, to.as_deref().unwrap_or(""), line.unwrap_or(0))
                .await?;
            if json {
                writeln!(out, "{{\"counted\":{counted}}}")?;
            } else if counted {
                writeln!(out, "confirmation counted")?;
            } else {
                writeln!(out, "already confirmed: counted once")?;
            }
            Ok(())
        }
    }
}

/// The list's header: where the number, the locale and each variable are.
struct Columns {
    width: usize,
    to: usize,
    locale: Option<usize>,
    variables: Vec<(String, usize)>,
}

impl Columns {
    fn of(header: &csv::StringRecord) -> Result<Columns, String> {
        let names: Vec<String> = header.iter().map(|h| h.trim().to_owned()).collect();
        let to = names
            .iter()
            .position(|n| ["to", "number", "phone"].contains(&n.to_ascii_lowercase().as_str()))
            .ok_or_else(|| {
                format!(
                    "the header row names no `to` column (it has: {})",
                    names.join(", ")
                )
            })?;
        let locale = names.iter().position(|n| n.eq_ignore_ascii_case("locale"));
        let variables = names
            .iter()
            .enumerate()
            .filter(|(index, _)| *index != to && Some(*index) != locale)
            .map(|(index, name)| (name.clone(), index))
            .collect();
        Ok(Columns {
            width: names.len(),
            to,
            locale,
            variables,
        })
    }
}

/// The texts of `--body` by locale.
fn bodies(args: &CreateArgs) -> Result<HashMap<String, String>, Failure> {
    let mut bodies = HashMap::new();
    for body in &args.bodies {
        let (locale, text) = match body.split_once('=') {
            Some((locale, text))
                if !locale.is_empty()
                    && locale.len() <= 35
                    && locale
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
            {
                (locale.to_owned(), text.to_owned())
            }
            _ => (args.default_locale.clone(), body.clone()),
        };
        if bodies.insert(locale.clone(), text).is_some() {
            return Err(Failure::Message(format!(
                "--body: the text for `{locale}` is given twice"
            )));
        }
    }
    Ok(bodies)
}

/// The senders of `--sender-for` by region.
fn senders_by_region(args: &CreateArgs) -> Result<HashMap<String, String>, Failure> {
    args.senders_by_region
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(region, sender)| (region.trim().to_uppercase(), sender.trim().to_owned()))
                .ok_or_else(|| Failure::Message(format!("--sender-for: `{pair}` is not XX=SENDER")))
        })
        .collect()
}

async fn create(
    client: &VerifyClient,
    args: CreateArgs,
    json: bool,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let input = Input::open(&args.input)?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input.reader);
    let header = reader
        .headers()
        .map_err(|e| Failure::Message(format!("cannot read {}: {e}", args.input)))?
        .clone();
    let columns = Columns::of(&header)
        .map_err(|e| Failure::Message(format!("{}: line 1: {e}", args.input)))?;
    let time = |text: &Option<String>, flag: &str| -> Result<_, Failure> {
        text.as_deref()
            .map(|t| {
                parse_time(t)
                    .map(|t| verify_client::proto::Timestamp {
                        seconds: t.timestamp(),
                        nanos: 0,
                    })
                    .map_err(|e| Failure::Message(format!("--{flag}: {e}")))
            })
            .transpose()
    };
    let spec = CampaignSpec {
        name: args.name.clone(),
        category: MessageCategory::from(args.category) as i32,
        program_id: args.program.clone().unwrap_or_default(),
        template: args.template.clone().unwrap_or_default(),
        bodies: bodies(&args)?,
        default_locale: args.default_locale.clone(),
        variable_names: columns.variables.iter().map(|(n, _)| n.clone()).collect(),
        sender: args.sender.clone().unwrap_or_default(),
        senders_by_region: senders_by_region(&args)?,
        start_time: time(&args.start, "start")?,
        deadline: time(&args.deadline, "deadline")?,
        landline_action: match args.landlines {
            Some(LandlinesArg::Voice) => LandlineAction::Voice,
            Some(LandlinesArg::Report) => LandlineAction::Report,
            None => LandlineAction::Unspecified,
        } as i32,
        tracks_confirmation: args.track_confirmation,
        service_id: args.service.clone().unwrap_or_default(),
        idempotency_key: args.idempotency_key.clone().unwrap_or_default(),
    };
    let started = Instant::now();
    let progress = Progress::new(input.size);
    let (chunks, receiver) = tokio::sync::mpsc::channel(CHUNKS_AHEAD);
    let region_hint = args.region.clone().unwrap_or_default();
    let shown = progress.clone();
    let reading = tokio::task::spawn_blocking(move || {
        read_recipients(reader, columns, region_hint, chunks, shown, started)
    });
    let created = client
        .create_campaign(spec, ReceiverStream::new(receiver))
        .await;
    progress.finish();
    let read = reading
        .await
        .map_err(|e| Failure::Message(format!("reading the list failed: {e}")))?;
    let created = match (created, read) {
        (_, Err(message)) => {
            return Err(Failure::Message(format!("{}: {message}", args.input)));
        }
        (created, Ok(_)) => created?,
    };
    if let Some(path) = &args.rejections
        && let Some(campaign) = &created.campaign
    {
        let mut file = io::BufWriter::new(
            File::create(path)
                .map_err(|e| Failure::Message(format!("cannot create {path}: {e}")))?,
        );
        writeln!(file, "line,field,reason")?;
        write_rejections(client, &campaign.id, &mut file).await?;
        file.flush()?;
    }
    if json {
        return write_json_line(out, &created);
    }
    write!(out, "{}", created_text(&created, started.elapsed()))?;
    Ok(())
}

/// Reads the list and sends it in chunks; returns the recipients read, or why it stopped.
fn read_recipients(
    mut reader: csv::Reader<Box<dyn io::Read + Send>>,
    columns: Columns,
    region_hint: String,
    chunks: tokio::sync::mpsc::Sender<CampaignRecipients>,
    progress: Progress,
    started: Instant,
) -> Result<u64, String> {
    let mut record = csv::StringRecord::new();
    let mut chunk = Vec::with_capacity(CHUNK_RECIPIENTS);
    let mut read = 0u64;
    let send = |chunk: Vec<CampaignRecipient>| {
        chunks
            .blocking_send(CampaignRecipients {
                recipients: chunk,
                region_hint: region_hint.clone(),
            })
            .is_ok()
    };
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(error) => return Err(format!("cannot read the list: {error}")),
        }
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(str::is_empty) {
            continue;
        }
        let field = |index: usize| record.get(index).unwrap_or_default().to_owned();
        // A row with more or fewer fields than the header sends what it has, and verifyd
        // rejects it naming the count.
        let values = if record.len() == columns.width {
            columns.variables.iter().map(|(_, i)| field(*i)).collect()
        } else {
            (0..record.len())
                .filter(|i| *i != columns.to && Some(*i) != columns.locale)
                .map(field)
                .collect()
        };
        chunk.push(CampaignRecipient {
            line,
            to: field(columns.to),
            locale: columns.locale.map(field).unwrap_or_default(),
            values,
        });
        read += 1;
        if chunk.len() == CHUNK_RECIPIENTS {
            let position = reader.position().byte();
            if !send(std::mem::replace(
                &mut chunk,
                Vec::with_capacity(CHUNK_RECIPIENTS),
            )) {
                return Ok(read);
            }
            progress.show(position, "recipients", read, started.elapsed());
        }
    }
    if !chunk.is_empty() {
        send(chunk);
    }
    Ok(read)
}

fn created_text(created: &CreateCampaignResponse, elapsed: Duration) -> String {
    let Some(campaign) = &created.campaign else {
        return String::new();
    };
    let mut text = aligned(&[
        ("campaign", campaign.id.clone()),
        ("status", status_words(campaign.status)),
        (
            "recipients",
            format!(
                "{} accepted, {} rejected{}",
                grouped(campaign.accepted),
                grouped(campaign.rejected),
                if created.replayed {
                    " (created before with this idempotency key)"
                } else {
                    ""
                }
            ),
        ),
        (
            "stored in",
            format!(
                "{:.1} s ({}/s)",
                elapsed.as_secs_f64(),
                grouped(
                    (campaign.accepted + campaign.rejected) * 1000
                        / elapsed.as_millis().max(1) as u64
                )
            ),
        ),
    ]);
    if let Some(counts) = &campaign.counts {
        text.push_str(&format!("counts: {}\n", counts_words(counts)));
    }
    for rejection in created.rejections.iter().take(REJECTIONS_SHOWN) {
        text.push_str(&format!(
            "  line {}: {}: {}\n",
            rejection.line, rejection.field, rejection.reason
        ));
    }
    if campaign.rejected as usize > REJECTIONS_SHOWN.min(created.rejections.len()) {
        text.push_str(&format!(
            "  ... `verifyctl campaign rejections {}` lists all {}\n",
            campaign.id,
            grouped(campaign.rejected)
        ));
    }
    text
}

async fn write_rejections(
    client: &VerifyClient,
    id: &str,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let mut token = String::new();
    loop {
        let page = client.campaign_rejections(id, 5_000, &token).await?;
        let mut writer = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        for rejection in &page.rejections {
            writer
                .write_record([
                    rejection.line.to_string().as_str(),
                    &rejection.field,
                    &rejection.reason,
                ])
                .map_err(|e| Failure::Message(e.to_string()))?;
        }
        let bytes = writer
            .into_inner()
            .map_err(|e| Failure::Message(e.to_string()))?;
        out.write_all(&bytes)?;
        if page.next_page_token.is_empty() {
            return Ok(());
        }
        token = page.next_page_token;
    }
}

fn dimensions(by: &str) -> Result<Vec<CampaignDimension>, Failure> {
    by.split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| match d {
            "country" => Ok(CampaignDimension::Country),
            "carrier" => Ok(CampaignDimension::Carrier),
            "channel" => Ok(CampaignDimension::Channel),
            other => Err(Failure::Message(format!(
                "--by: `{other}` is not one of country, carrier, channel"
            ))),
        })
        .collect()
}

async fn status(
    client: &VerifyClient,
    args: StatusArgs,
    json: bool,
    now: chrono::DateTime<chrono::Utc>,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let by = dimensions(&args.by)?;
    loop {
        let response = client.get_campaign(&args.id, &by).await?;
        if json {
            write_json_line(out, &response)?;
        } else {
            write!(out, "{}", status_text(&response, &by, now))?;
        }
        out.flush()?;
        let ended = response.campaign.as_ref().is_none_or(|c| {
            matches!(
                CampaignStatus::try_from(c.status),
                Ok(CampaignStatus::Completed | CampaignStatus::Canceled | CampaignStatus::Expired)
            )
        });
        match args.follow {
            Some(seconds) if !ended => {
                tokio::time::sleep(Duration::from_secs(seconds.max(1))).await;
                if !json {
                    writeln!(out)?;
                }
            }
            _ => return Ok(()),
        }
    }
}

/// The count columns of the status table.
const COUNT_COLUMNS: [&str; 10] = [
    "recipients",
    "queued",
    "deferred",
    "sent",
    "delivered",
    "failed",
    "refused",
    "maybe_sent",
    "canceled",
    "confirmed",
];

fn count_values(counts: &CampaignCounts) -> [u64; 10] {
    [
        counts.recipients,
        counts.queued,
        counts.deferred,
        counts.sent,
        counts.delivered,
        counts.failed,
        counts.refused,
        counts.maybe_sent,
        counts.canceled,
        counts.confirmed,
    ]
}

fn status_text(
    response: &GetCampaignResponse,
    by: &[CampaignDimension],
    _now: chrono::DateTime<chrono::Utc>,
) -> String {
    let Some(campaign) = &response.campaign else {
        return String::new();
    };
    let mut rows = vec![
        ("campaign", campaign.id.clone()),
        (
            "name",
            campaign
                .spec
                .as_ref()
                .map_or(String::new(), |s| s.name.clone()),
        ),
        ("status", status_words(campaign.status)),
        (
            "lines",
            format!(
                "{} accepted, {} rejected",
                grouped(campaign.accepted),
                grouped(campaign.rejected)
            ),
        ),
    ];
    if campaign.next_window_at.is_some() {
        rows.push(("next window", time_text(campaign.next_window_at.as_ref())));
    }
    if campaign.finished_at.is_some() {
        rows.push(("finished", time_text(campaign.finished_at.as_ref())));
    }
    let mut text = aligned(&rows);
    let mut header: Vec<String> = by
        .iter()
        .map(|d| match d {
            CampaignDimension::Country => "country",
            CampaignDimension::Carrier => "carrier",
            CampaignDimension::Channel => "channel",
            CampaignDimension::Unspecified => "",
        })
        .map(str::to_owned)
        .collect();
    header.extend(COUNT_COLUMNS.iter().map(|c| (*c).to_owned()));
    let mut table: Vec<Vec<String>> = vec![header];
    let key = |group: &CampaignGroup| -> Vec<String> {
        by.iter()
            .map(|d| match d {
                CampaignDimension::Country => or_dash(&group.region_code).to_owned(),
                CampaignDimension::Carrier => or_dash(&group.carrier).to_owned(),
                CampaignDimension::Channel => channel_name(group.channel),
                CampaignDimension::Unspecified => String::new(),
            })
            .collect()
    };
    for group in &response.groups {
        let mut row = key(group);
        let counts = group.counts.unwrap_or_default();
        row.extend(count_values(&counts).iter().map(|n| n.to_string()));
        table.push(row);
    }
    let mut total: Vec<String> = by.iter().map(|_| String::new()).collect();
    if let Some(first) = total.first_mut() {
        *first = "total".to_owned();
    }
    let counts = campaign.counts.unwrap_or_default();
    total.extend(count_values(&counts).iter().map(|n| n.to_string()));
    table.push(total);
    let columns = table[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| table.iter().map(|row| row[c].len()).max().unwrap_or(0))
        .collect();
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c < by.len() {
                    format!("{cell:<width$}", width = widths[c])
                } else {
                    format!("{cell:>width$}", width = widths[c])
                }
            })
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    if counts.confirmed > 0 {
        text.push_str(&format!(
            "confirmation: {:.1}% of those sent\n",
            counts.confirmation_rate * 100.0
        ));
    }
    if !response.refusals.is_empty() {
        text.push_str("refused:\n");
        for refusal in &response.refusals {
            text.push_str(&format!(
                "  {} {}: {}\n",
                refusal.region_code,
                grouped(refusal.recipients),
                refusal.reason
            ));
        }
    }
    text
}

fn channel_name(value: i32) -> String {
    words(value, Channel::as_str_name, "CHANNEL_")
}

fn status_words(value: i32) -> String {
    words(value, CampaignStatus::as_str_name, "CAMPAIGN_STATUS_")
}

fn counts_words(counts: &CampaignCounts) -> String {
    let parts: Vec<String> = COUNT_COLUMNS[1..]
        .iter()
        .zip(&count_values(counts)[1..])
        .filter(|(_, n)| **n > 0)
        .map(|(name, n)| format!("{} {}", grouped(*n), name.replace('_', " ")))
        .collect();
    if parts.is_empty() {
        "none yet".to_owned()
    } else {
        parts.join(", ")
    }
}

async fn list(
    client: &VerifyClient,
    service: Option<String>,
    json: bool,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let response = client
        .list_campaigns(ListCampaignsRequest {
            service_id: service.unwrap_or_default(),
            ..Default::default()
        })
        .await?;
    if json {
        return write_json_line(out, &response);
    }
    write!(out, "{}", list_text(&response))?;
    Ok(())
}

fn list_text(response: &ListCampaignsResponse) -> String {
    if response.campaigns.is_empty() {
        return "no campaigns\n".to_owned();
    }
    response
        .campaigns
        .iter()
        .map(|c| {
            format!(
                "{}  {}  {:<10}  {:>10} recipients  {}\n",
                c.id,
                time_text(c.created_at.as_ref()),
                status_words(c.status),
                grouped(c.accepted),
                c.spec.as_ref().map_or("", |s| s.name.as_str())
            )
        })
        .collect()
}

fn changed(campaign: &Campaign, json: bool, out: &mut impl Write) -> Result<(), Failure> {
    if json {
        return write_json_line(out, campaign);
    }
    let mut rows = vec![
        ("campaign", campaign.id.clone()),
        ("status", status_words(campaign.status)),
    ];
    if let Some(counts) = &campaign.counts {
        rows.push(("counts", counts_words(counts)));
    }
    write!(out, "{}", aligned(&rows))?;
    Ok(())
}
