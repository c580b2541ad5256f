//! `verifyctl classify --input FILE`: cleans a list of numbers through `ClassifyBatch`.
//!
//! Three stages overlap: a reader thread cuts the input into chunks and sends them, the async
//! task receives verifyd's answers, and a writer thread turns them into CSV rows and counts the
//! summary. A window of [`CHUNKS_IN_FLIGHT`] chunks (sent and not yet written) bounds memory,
//! whatever the size of the input.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use prost::bytes::Bytes;
use serde_json::{Value, json};
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use verify_client::proto::v1::{Channel, ClassifyBatchRequest, InvalidReason, LineType};
use verify_client::{ClientError, VerifyClient};

use crate::Failure;
use crate::answer::{AnswerView, ClassificationView, WireError};

/// Numbers per chunk unless `--chunk-size` says otherwise.
pub const DEFAULT_CHUNK_SIZE: u32 = 2_000;
/// Chunks sent and not yet written out, at most.
pub const CHUNKS_IN_FLIGHT: usize = 16;
/// Longest line sent, in bytes (verifyd's limit for one number).
pub const MAX_LINE_BYTES: usize = 250;
/// The CSV header row.
pub const CSV_HEADER: [&str; 12] = [
    "input",
    "valid",
    "e164",
    "region",
    "country_calling_code",
    "line_type",
    "carrier",
    "time_zones",
    "recommended_channel",
    "invalid_reason",
    "national_format",
    "international_format",
];
/// Countries listed in the summary.
const TOP_REGIONS: usize = 15;
const READ_BUFFER_BYTES: usize = 1 << 20;
const WRITE_BUFFER_BYTES: usize = 1 << 20;
/// The byte order mark some programs put at the start of a UTF-8 file.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
/// Chunks queued between the reader thread and the call.
const SEND_QUEUE: usize = 2;

/// What `classify --input` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOptions {
    /// The input file, `-` for stdin.
    pub input: String,
    /// The CSV file to write; stdout when `None`.
    pub output: Option<PathBuf>,
    /// Region hint for numbers in national form.
    pub region: Option<String>,
    /// Numbers per chunk, 1 to 10,000.
    pub chunk_size: usize,
}

/// The opened input: its reader and, for a regular file, its size in bytes (for progress).
pub struct Input {
    pub(crate) reader: Box<dyn Read + Send>,
    pub(crate) size: Option<u64>,
}

impl Input {
    /// Opens `path`, or stdin for `-`.
    pub fn open(path: &str) -> Result<Self, Failure> {
        if path == "-" {
            return Ok(Self {
                reader: Box::new(io::stdin()),
                size: None,
            });
        }
        let cannot_read =
            |error: io::Error| Failure::Message(format!("cannot read {path}: {error}"));
        let file = File::open(path).map_err(cannot_read)?;
        let metadata = file.metadata().map_err(cannot_read)?;
        if metadata.is_dir() {
            return Err(Failure::Message(format!(
                "cannot read {path}: it is a directory"
            )));
        }
        let size = metadata.is_file().then_some(metadata.len());
        Ok(Self {
            reader: Box::new(file),
            size,
        })
    }
}

/// Classifies the list `options` names (opened as `input`): CSV rows to the output, the
/// summary to stderr (or, with `json`, as one JSON object to `stdout` when the CSV goes to a
/// file, to stderr otherwise).
pub async fn classify_list(
    client: &VerifyClient,
    json: bool,
    options: ListOptions,
    input: Input,
    stdout: &mut impl Write,
) -> Result<(), Failure> {
    let output: Box<dyn Write + Send> = match &options.output {
        Some(path) => Box::new(File::create(path).map_err(|error| {
            Failure::Message(format!("cannot create {}: {error}", path.display()))
        })?),
        None => Box::new(io::stdout()),
    };
    let started = Instant::now();
    let progress = Progress::new(input.size);
    let result = stream_list(client, &options, input, output, progress.clone(), started).await;
    progress.finish();
    let summary = match result {
        Ok(summary) => summary,
        Err(Failure::Output(error)) if error.kind() != io::ErrorKind::BrokenPipe => {
            let destination = options
                .output
                .as_ref()
                .map_or_else(|| "stdout".to_owned(), |path| path.display().to_string());
            return Err(Failure::Message(format!(
                "cannot write {destination}: {error}"
            )));
        }
        Err(failure) => return Err(failure),
    };
    let elapsed = started.elapsed();
    if json {
        let line = summary.to_json(elapsed).to_string();
        if options.output.is_some() {
            writeln!(stdout, "{line}")?;
            stdout.flush()?;
        } else {
            eprintln!("{line}");
        }
    } else {
        eprint!("{}", summary.text(elapsed));
    }
    Ok(())
}

/// Where a chunk ends: how many numbers it holds and the input bytes read up to its end.
#[derive(Debug, Clone, Copy)]
struct ChunkMeta {
    numbers: usize,
    end_offset: u64,
}

/// Runs the three stages and returns the summary once every answer is written.
async fn stream_list(
    client: &VerifyClient,
    options: &ListOptions,
    input: Input,
    output: Box<dyn Write + Send>,
    progress: Progress,
    started: Instant,
) -> Result<Summary, Failure> {
    let window = Arc::new(Semaphore::new(CHUNKS_IN_FLIGHT));
    let (request_tx, request_rx) = mpsc::channel(SEND_QUEUE);
    let (meta_tx, meta_rx) = std_mpsc::channel();
    let (answer_tx, answer_rx) = std_mpsc::channel();

    let reader = {
        let chunker = Chunker {
            path: options.input.clone(),
            chunk_size: options.chunk_size,
            region_hint: options.region.clone().unwrap_or_default(),
            window: Arc::clone(&window),
            runtime: Handle::current(),
            requests: request_tx,
            meta: meta_tx,
        };
        let reader = input.reader;
        thread::Builder::new()
            .name("verifyctl-read".into())
            .spawn(move || chunker.run(reader))?
    };
    let writer = {
        let window = Arc::clone(&window);
        thread::Builder::new()
            .name("verifyctl-write".into())
            .spawn(move || {
                let result =
                    write_answers(output, &answer_rx, &meta_rx, &window, &progress, started);
                if result.is_err() {
                    // Unblock the reader; the call is abandoned.
                    window.close();
                }
                result
            })?
    };

    let chunks = ReceiverStream::new(request_rx);
    let mut answers = match client.classify_batch_encoded(chunks).await {
        Ok(answers) => answers,
        Err(error) => {
            window.close();
            return Err(error.into());
        }
    };
    while let Some(answer) = answers.next().await {
        match answer {
            Ok(answer) => {
                if answer_tx.send(answer).is_err() {
                    // The writer stopped on an error; it says which below.
                    break;
                }
            }
            Err(status) => {
                window.close();
                return Err(ClientError::from(status).into());
            }
        }
    }
    drop(answers);
    drop(answer_tx);
    window.close();
    let written = tokio::task::spawn_blocking(move || writer.join())
        .await
        .map_err(|_| Failure::Message("the writer thread was lost".into()))?
        .map_err(|_| Failure::Message("the writer thread panicked".into()))??;
    let sent = tokio::task::spawn_blocking(move || reader.join())
        .await
        .map_err(|_| Failure::Message("the reader thread was lost".into()))?
        .map_err(|_| Failure::Message("the reader thread panicked".into()))??;
    if written.chunks != sent {
        return Err(Failure::Message(format!(
            "verifyd ended the batch after answering {} of {sent} chunks",
            written.chunks
        )));
    }
    Ok(written.summary)
}

/// The reader stage: cuts lines into chunks and sends them, within the window.
struct Chunker {
    path: String,
    chunk_size: usize,
    region_hint: String,
    window: Arc<Semaphore>,
    runtime: Handle,
    requests: mpsc::Sender<ClassifyBatchRequest>,
    meta: std_mpsc::Sender<ChunkMeta>,
}

impl Chunker {
    /// Reads every line and returns how many chunks were sent. Stops early, without error,
    /// when the call was abandoned (the window closed).
    fn run(self, reader: Box<dyn Read + Send>) -> Result<u64, Failure> {
        let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, reader);
        let mut line = Vec::with_capacity(MAX_LINE_BYTES + 2);
        let mut numbers = Vec::with_capacity(self.chunk_size);
        let mut line_number = 0u64;
        let mut offset = 0u64;
        let mut sent = 0u64;
        loop {
            line.clear();
            // A line longer than any number is an error, so never buffer more than that.
            let limit = (MAX_LINE_BYTES + 2) as u64;
            let read = (&mut reader)
                .take(limit)
                .read_until(b'\n', &mut line)
                .map_err(|error| self.read_error(line_number + 1, &error))?;
            if read == 0 {
                break;
            }
            line_number += 1;
            offset += read as u64;
            let content = match line.strip_prefix(UTF8_BOM) {
                Some(rest) if line_number == 1 => rest,
                _ => &line[..],
            };
            let Some(number) = parse_line(content).map_err(|problem| {
                Failure::Message(format!("{} line {line_number}: {problem}", self.name()))
            })?
            else {
                continue;
            };
            numbers.push(number.to_owned());
            if numbers.len() == self.chunk_size {
                let chunk = std::mem::replace(&mut numbers, Vec::with_capacity(self.chunk_size));
                if !self.send(chunk, offset) {
                    return Ok(sent);
                }
                sent += 1;
            }
        }
        if !numbers.is_empty() {
            if !self.send(numbers, offset) {
                return Ok(sent);
            }
            sent += 1;
        }
        Ok(sent)
    }

    /// Sends one chunk once the window has room; false when the call was abandoned.
    fn send(&self, numbers: Vec<String>, end_offset: u64) -> bool {
        match self.runtime.block_on(self.window.acquire()) {
            Ok(permit) => permit.forget(),
            Err(_) => return false,
        }
        let meta = ChunkMeta {
            numbers: numbers.len(),
            end_offset,
        };
        if self.meta.send(meta).is_err() {
            return false;
        }
        let request = ClassifyBatchRequest {
            numbers,
            region_hint: self.region_hint.clone(),
        };
        self.requests.blocking_send(request).is_ok()
    }

    fn name(&self) -> &str {
        if self.path == "-" {
            "stdin"
        } else {
            &self.path
        }
    }

    fn read_error(&self, line_number: u64, error: &io::Error) -> Failure {
        Failure::Message(format!(
            "cannot read {} at line {line_number}: {error}",
            self.name()
        ))
    }
}

/// The number on one input line (its `\n` and `\r` stripped), `None` for a blank line.
fn parse_line(line: &[u8]) -> Result<Option<&str>, String> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > MAX_LINE_BYTES {
        return Err(format!(
            "longer than {MAX_LINE_BYTES} bytes, which no phone number is (is this a list of numbers, one per line?)"
        ));
    }
    let text = std::str::from_utf8(line).map_err(|_| "not valid UTF-8".to_owned())?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(text))
}

/// What the writer stage did.
struct Written {
    summary: Summary,
    chunks: u64,
}

/// The writer stage: reads each answer in place, checks it matches its chunk, writes its rows
/// and reopens the window for the next chunk.
fn write_answers(
    output: Box<dyn Write + Send>,
    answers: &std_mpsc::Receiver<Bytes>,
    meta: &std_mpsc::Receiver<ChunkMeta>,
    window: &Semaphore,
    progress: &Progress,
    started: Instant,
) -> Result<Written, Failure> {
    let mut csv = csv_writer(output, WRITE_BUFFER_BYTES);
    csv.write_record(CSV_HEADER)?;
    let mut scratch = RowScratch::default();
    let mut summary = Summary::default();
    let mut chunks = 0u64;
    for encoded in answers {
        let answer = AnswerView::parse(&encoded).map_err(wire_error)?;
        let Ok(chunk) = meta.recv() else {
            return Err(Failure::Message(format!(
                "verifyd answered chunk {} that was never sent",
                answer.chunk_index
            )));
        };
        if answer.chunk_index != chunks {
            return Err(Failure::Message(format!(
                "verifyd answered chunk {} where chunk {chunks} was due",
                answer.chunk_index
            )));
        }
        if answer.len != chunk.numbers {
            return Err(Failure::Message(format!(
                "verifyd answered chunk {chunks} with {} classifications for {} numbers",
                answer.len, chunk.numbers
            )));
        }
        answer.for_each(|classification| {
            write_row(&mut csv, classification, &mut scratch)?;
            summary.add(classification);
            Ok::<(), Failure>(())
        })?;
        drop(encoded);
        window.add_permits(1);
        chunks += 1;
        progress.update(chunk.end_offset, summary.total, started.elapsed());
    }
    csv.flush()?;
    Ok(Written { summary, chunks })
}

impl From<WireError> for Failure {
    fn from(error: WireError) -> Self {
        wire_error(error)
    }
}

fn wire_error(error: WireError) -> Failure {
    Failure::Message(format!("verifyd sent a {error}"))
}

impl From<csv::Error> for Failure {
    fn from(error: csv::Error) -> Self {
        Failure::Output(error.into())
    }
}

/// A CSV writer (RFC 4180: fields separated by commas, records ended by `\n`, a field quoted
/// when it holds a comma, a quote, CR or LF, its quotes doubled) that writes to `out` about
/// `capacity` bytes at a time.
pub fn csv_writer<W: Write>(out: W, capacity: usize) -> csv::Writer<W> {
    csv::WriterBuilder::new()
        .buffer_capacity(capacity)
        .from_writer(out)
}

/// Buffers reused from row to row, so formatting a row allocates nothing.
#[derive(Debug, Default)]
pub struct RowScratch {
    code: String,
    zones: Vec<u8>,
    line_type: String,
    channel: String,
    reason: String,
}

/// Writes `classification` as one CSV row in the order of [`CSV_HEADER`]: enum values as short
/// lowercase names (empty when unspecified, the number when unknown to this client), time zones
/// joined with `|`, a zero country calling code as empty.
pub fn write_row<W: Write>(
    csv: &mut csv::Writer<W>,
    classification: &ClassificationView<'_>,
    scratch: &mut RowScratch,
) -> csv::Result<()> {
    scratch.code.clear();
    if classification.country_calling_code != 0 {
        let _ = write!(scratch.code, "{}", classification.country_calling_code);
    }
    scratch.zones.clear();
    for (index, zone) in classification.time_zones().enumerate() {
        if index > 0 {
            scratch.zones.push(b'|');
        }
        scratch.zones.extend_from_slice(zone);
    }
    let line_type = enum_text(
        classification.line_type,
        line_type_name,
        &mut scratch.line_type,
    );
    let channel = enum_text(
        classification.recommended_channel,
        channel_name,
        &mut scratch.channel,
    );
    let reason = enum_text(
        classification.invalid_reason,
        invalid_reason_name,
        &mut scratch.reason,
    );
    let valid: &[u8] = if classification.valid {
        b"true"
    } else {
        b"false"
    };
    csv.write_record([
        classification.input,
        valid,
        classification.e164,
        classification.region_code,
        scratch.code.as_bytes(),
        line_type.as_bytes(),
        classification.carrier,
        &scratch.zones,
        channel.as_bytes(),
        reason.as_bytes(),
        classification.national_format,
        classification.international_format,
    ])
}

/// The short name of an enum value, or its number in `buffer` when this client does not know it.
fn enum_text(value: i32, name: fn(i32) -> Option<&'static str>, buffer: &mut String) -> &str {
    match name(value) {
        Some(name) => name,
        None => {
            buffer.clear();
            let _ = write!(buffer, "{value}");
            buffer
        }
    }
}

/// A line type's short name (`fixed_line`); empty for unspecified, `None` when unknown.
pub fn line_type_name(value: i32) -> Option<&'static str> {
    Some(match LineType::try_from(value).ok()? {
        LineType::Unspecified => "",
        LineType::FixedLine => "fixed_line",
        LineType::Mobile => "mobile",
        LineType::FixedLineOrMobile => "fixed_line_or_mobile",
        LineType::TollFree => "toll_free",
        LineType::PremiumRate => "premium_rate",
        LineType::SharedCost => "shared_cost",
        LineType::Voip => "voip",
        LineType::PersonalNumber => "personal_number",
        LineType::Pager => "pager",
        LineType::Uan => "uan",
        LineType::Voicemail => "voicemail",
        LineType::Unknown => "unknown",
    })
}

/// A channel's short name (`sms`); empty for unspecified, `None` when unknown.
pub fn channel_name(value: i32) -> Option<&'static str> {
    Some(match Channel::try_from(value).ok()? {
        Channel::Unspecified => "",
        Channel::Sms => "sms",
        Channel::Voice => "voice",
    })
}

/// An invalid reason's short name (`too_short`); empty for unspecified, `None` when unknown.
pub fn invalid_reason_name(value: i32) -> Option<&'static str> {
    Some(match InvalidReason::try_from(value).ok()? {
        InvalidReason::Unspecified => "",
        InvalidReason::NotANumber => "not_a_number",
        InvalidReason::InvalidCountryCode => "invalid_country_code",
        InvalidReason::TooShort => "too_short",
        InvalidReason::TooLong => "too_long",
        InvalidReason::InvalidLength => "invalid_length",
        InvalidReason::NoSuchRange => "no_such_range",
    })
}

/// Counts over a classified list. Line types and regions count valid numbers; invalid
/// reasons count invalid ones.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Numbers classified.
    pub total: u64,
    /// Valid numbers among them.
    pub valid: u64,
    /// Valid numbers per line type (proto value).
    pub line_types: BTreeMap<i32, u64>,
    /// Valid numbers per region code (as sent, bytes).
    pub regions: HashMap<Vec<u8>, u64>,
    /// Invalid numbers per invalid reason (proto value).
    pub invalid_reasons: BTreeMap<i32, u64>,
}

impl Summary {
    /// Counts one classification.
    pub fn add(&mut self, classification: &ClassificationView<'_>) {
        self.total += 1;
        if classification.valid {
            self.valid += 1;
            *self.line_types.entry(classification.line_type).or_default() += 1;
            match self.regions.get_mut(classification.region_code) {
                Some(count) => *count += 1,
                None => {
                    self.regions.insert(classification.region_code.to_vec(), 1);
                }
            }
        } else {
            *self
                .invalid_reasons
                .entry(classification.invalid_reason)
                .or_default() += 1;
        }
    }

    /// Invalid numbers.
    pub fn invalid(&self) -> u64 {
        self.total - self.valid
    }

    /// Line types by count, largest first.
    pub fn line_type_counts(&self) -> Vec<(String, u64)> {
        by_count(
            self.line_types
                .iter()
                .map(|(&value, &count)| (enum_label(value, line_type_name), count)),
        )
    }

    /// Invalid reasons by count, largest first.
    pub fn invalid_reason_counts(&self) -> Vec<(String, u64)> {
        by_count(
            self.invalid_reasons
                .iter()
                .map(|(&value, &count)| (enum_label(value, invalid_reason_name), count)),
        )
    }

    /// The `n` regions with the most valid numbers, largest first (ties by region code).
    pub fn top_regions(&self, n: usize) -> Vec<(String, u64)> {
        let mut regions = by_count(
            self.regions
                .iter()
                .map(|(region, &count)| (String::from_utf8_lossy(region).into_owned(), count)),
        );
        regions.truncate(n);
        regions
    }

    /// The summary as `verifyctl --json` prints it.
    pub fn to_json(&self, elapsed: Duration) -> Value {
        let counts = |counts: Vec<(String, u64)>| -> Value {
            Value::Object(
                counts
                    .into_iter()
                    .map(|(name, count)| (name, json!(count)))
                    .collect(),
            )
        };
        let regions: Vec<Value> = self
            .top_regions(TOP_REGIONS)
            .into_iter()
            .map(|(region, count)| json!({ "region": region, "count": count }))
            .collect();
        let seconds = elapsed.as_secs_f64();
        json!({
            "total": self.total,
            "valid": self.valid,
            "invalid": self.invalid(),
            "valid_percent": round2(percent(self.valid, self.total)),
            "invalid_percent": round2(percent(self.invalid(), self.total)),
            "line_types": counts(self.line_type_counts()),
            "top_regions": regions,
            "invalid_reasons": counts(self.invalid_reason_counts()),
            "elapsed_seconds": (seconds * 1000.0).round() / 1000.0,
            "numbers_per_second": rate(self.total, elapsed).round() as u64,
        })
    }

    /// The summary for people, several lines.
    pub fn text(&self, elapsed: Duration) -> String {
        let mut text = format!(
            "{} numbers in {:.1}s ({}/s)\n",
            grouped(self.total),
            elapsed.as_secs_f64(),
            grouped(rate(self.total, elapsed).round() as u64)
        );
        let mut section = |title: &str, rows: &[(String, u64)]| {
            if rows.is_empty() {
                return;
            }
            text.push_str(title);
            text.push('\n');
            let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
            let count_width = rows
                .iter()
                .map(|(_, count)| grouped(*count).len())
                .max()
                .unwrap_or(0);
            for (name, count) in rows {
                let _ = writeln!(
                    text,
                    "  {name:<width$}  {:>count_width$}  {:>5.1}%",
                    grouped(*count),
                    percent(*count, self.total)
                );
            }
        };
        section(
            "numbers:",
            &[
                ("valid".to_owned(), self.valid),
                ("invalid".to_owned(), self.invalid()),
            ],
        );
        section("line types (valid numbers):", &self.line_type_counts());
        section(
            &format!("top {TOP_REGIONS} regions (valid numbers):"),
            &self
                .top_regions(TOP_REGIONS)
                .into_iter()
                .map(|(region, count)| (or_dash(region), count))
                .collect::<Vec<_>>(),
        );
        section("invalid reasons:", &self.invalid_reason_counts());
        text
    }
}

fn or_dash(text: String) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text
    }
}

/// The short name of an enum value; `unspecified` for the zero value, the number when unknown.
fn enum_label(value: i32, name: fn(i32) -> Option<&'static str>) -> String {
    match name(value) {
        Some("") => "unspecified".to_owned(),
        Some(name) => name.to_owned(),
        None => value.to_string(),
    }
}

fn by_count(counts: impl Iterator<Item = (String, u64)>) -> Vec<(String, u64)> {
    let mut counts: Vec<_> = counts.collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn rate(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// `1234567` as `1,234,567`.
pub(crate) fn grouped(value: u64) -> String {
    let digits = value.to_string();
    let mut text = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

/// The progress bar on stderr: bytes of a file done (for percent and ETA) or, for stdin, a
/// spinner; numbers done and their rate in the message. Hidden when stderr is not a terminal.
#[derive(Clone)]
pub(crate) struct Progress {
    bar: ProgressBar,
    by_bytes: bool,
}

impl Progress {
    pub(crate) fn new(size: Option<u64>) -> Self {
        if !io::stderr().is_terminal() {
            return Self {
                bar: ProgressBar::hidden(),
                by_bytes: false,
            };
        }
        let (bar, template) = match size {
            Some(size) => (
                ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr()),
                "{bar:30} {percent:>3}%  {msg}  {elapsed} (ETA {eta})",
            ),
            None => (
                ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
                "{spinner} {msg}  {elapsed}",
            ),
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        Self {
            bar,
            by_bytes: size.is_some(),
        }
    }

    fn update(&self, bytes: u64, numbers: u64, elapsed: Duration) {
        self.show(bytes, "numbers", numbers, elapsed);
    }

    /// Shows `count` `things` done after `bytes` of the input, and their rate.
    pub(crate) fn show(&self, bytes: u64, things: &str, count: u64, elapsed: Duration) {
        if self.bar.is_hidden() {
            return;
        }
        if self.by_bytes {
            self.bar.set_position(bytes);
        }
        self.bar.set_message(format!(
            "{} {things}, {}/s",
            grouped(count),
            grouped(rate(count, elapsed).round() as u64)
        ));
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use verify_client::proto::v1::Classification;

    use super::*;

    /// Runs `work` on `classification` as the writer sees it: encoded, then read in place.
    fn viewed<T>(
        classification: &Classification,
        work: impl FnOnce(&ClassificationView<'_>) -> T,
    ) -> T {
        let bytes = classification.encode_to_vec();
        work(&ClassificationView::parse(&bytes).unwrap())
    }

    fn add(summary: &mut Summary, classification: &Classification) {
        viewed(classification, |view| summary.add(view));
    }

    fn valid_mobile() -> Classification {
        Classification {
            input: "+91 98123 45678".into(),
            valid: true,
            e164: "+919812345678".into(),
            region_code: "IN".into(),
            country_calling_code: 91,
            line_type: LineType::Mobile as i32,
            carrier: "Airtel".into(),
            time_zones: vec!["Asia/Kolkata".into()],
            recommended_channel: Channel::Sms as i32,
            invalid_reason: InvalidReason::Unspecified as i32,
            detail: String::new(),
            national_format: "098123 45678".into(),
            international_format: "+91 98123 45678".into(),
        }
    }

    fn invalid(input: &str, reason: InvalidReason) -> Classification {
        Classification {
            input: input.into(),
            invalid_reason: reason as i32,
            detail: "some words".into(),
            ..Classification::default()
        }
    }

    fn valid(region: &str, line_type: LineType) -> Classification {
        Classification {
            valid: true,
            region_code: region.into(),
            line_type: line_type as i32,
            ..Classification::default()
        }
    }

    fn csv_text(rows: &[Classification]) -> String {
        // A tiny capacity, so that records also go out before the final flush.
        let mut csv = csv_writer(Vec::new(), 100);
        csv.write_record(CSV_HEADER).unwrap();
        let mut scratch = RowScratch::default();
        for row in rows {
            viewed(row, |view| write_row(&mut csv, view, &mut scratch)).unwrap();
        }
        String::from_utf8(csv.into_inner().unwrap()).unwrap()
    }

    #[test]
    fn header_names_every_column() {
        assert_eq!(
            csv_text(&[]),
            "input,valid,e164,region,country_calling_code,line_type,carrier,time_zones,\
             recommended_channel,invalid_reason,national_format,international_format\n"
        );
    }

    #[test]
    fn valid_row_has_short_enum_names() {
        let text = csv_text(&[valid_mobile()]);
        let row = text.lines().nth(1).unwrap();
        assert_eq!(
            row,
            "+91 98123 45678,true,+919812345678,IN,91,mobile,Airtel,Asia/Kolkata,sms,,\
             098123 45678,+91 98123 45678"
        );
    }

    #[test]
    fn invalid_row_leaves_unknown_fields_empty() {
        let text = csv_text(&[invalid("12", InvalidReason::TooShort)]);
        assert_eq!(text.lines().nth(1).unwrap(), "12,false,,,,,,,,too_short,,");
    }

    #[test]
    fn fields_are_quoted_when_needed_and_time_zones_joined() {
        let row = Classification {
            input: "\"+1\" 212, ext".into(),
            time_zones: vec!["America/New_York".into(), "America/Chicago".into()],
            carrier: "AT&T, Inc.".into(),
            line_type: LineType::FixedLineOrMobile as i32,
            recommended_channel: Channel::Voice as i32,
            ..valid_mobile()
        };
        let text = csv_text(&[row]);
        let line = text.lines().nth(1).unwrap();
        assert!(line.starts_with("\"\"\"+1\"\" 212, ext\",true,"), "{line}");
        assert!(
            line.contains(
                ",fixed_line_or_mobile,\"AT&T, Inc.\",America/New_York|America/Chicago,voice,,"
            ),
            "{line}"
        );
        // Read back: every column survives quoting.
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let record = reader.records().next().unwrap().unwrap();
        assert_eq!(&record[0], "\"+1\" 212, ext");
        assert_eq!(&record[6], "AT&T, Inc.");
        assert_eq!(record.len(), CSV_HEADER.len());
    }

    /// The bytes verifyctl wrote for these inputs before it used the csv crate (from a real
    /// run of the earlier writer), and that csv reads back as they were.
    #[test]
    fn awkward_fields_are_written_as_before_and_read_back() {
        let inputs = [
            "\"+1\" 212, ext",
            "a,b",
            "\"\"",
            "\"",
            "x\ry",
            "a\nb",
            "#comment",
            " lead",
            "'+442079460123'",
        ];
        let rows: Vec<Classification> = inputs
            .iter()
            .map(|input| invalid(input, InvalidReason::NotANumber))
            .collect();
        let text = csv_text(&rows);
        let expected = [
            "\"\"\"+1\"\" 212, ext\",false,,,,,,,,not_a_number,,",
            "\"a,b\",false,,,,,,,,not_a_number,,",
            "\"\"\"\"\"\",false,,,,,,,,not_a_number,,",
            "\"\"\"\",false,,,,,,,,not_a_number,,",
            "\"x\ry\",false,,,,,,,,not_a_number,,",
            "\"a\nb\",false,,,,,,,,not_a_number,,",
            "#comment,false,,,,,,,,not_a_number,,",
            " lead,false,,,,,,,,not_a_number,,",
            "'+442079460123',false,,,,,,,,not_a_number,,",
        ];
        let rows_written = text.split_once('\n').unwrap().1;
        assert_eq!(rows_written, expected.join("\n") + "\n");

        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let read: Vec<String> = reader
            .records()
            .map(|record| record.unwrap()[0].to_owned())
            .collect();
        assert_eq!(read, inputs);
    }

    #[test]
    fn unknown_enum_values_are_written_as_numbers() {
        let row = Classification {
            line_type: 99,
            recommended_channel: 7,
            invalid_reason: 42,
            ..Classification::default()
        };
        let text = csv_text(&[row]);
        assert_eq!(text.lines().nth(1).unwrap(), ",false,,,,99,,,7,42,,");
    }

    #[test]
    fn short_names_are_the_proto_names_without_prefix() {
        fn check<E: TryFrom<i32>>(
            name: fn(i32) -> Option<&'static str>,
            proto: fn(&E) -> &'static str,
            prefix: &str,
        ) {
            for value in 0..64 {
                match E::try_from(value) {
                    Ok(known) => {
                        let expected = proto(&known).strip_prefix(prefix).unwrap().to_lowercase();
                        let expected = if expected == "unspecified" {
                            String::new()
                        } else {
                            expected
                        };
                        assert_eq!(name(value), Some(expected.as_str()), "{value}");
                    }
                    Err(_) => assert_eq!(name(value), None, "{value}"),
                }
            }
        }
        check(line_type_name, LineType::as_str_name, "LINE_TYPE_");
        check(channel_name, Channel::as_str_name, "CHANNEL_");
        check(
            invalid_reason_name,
            InvalidReason::as_str_name,
            "INVALID_REASON_",
        );
    }

    fn sample_summary() -> Summary {
        let mut summary = Summary::default();
        for _ in 0..3 {
            add(&mut summary, &valid("GB", LineType::Mobile));
        }
        add(&mut summary, &valid("IN", LineType::Mobile));
        add(&mut summary, &valid("IN", LineType::FixedLine));
        add(&mut summary, &valid("US", LineType::FixedLineOrMobile));
        add(&mut summary, &invalid("x", InvalidReason::NotANumber));
        add(&mut summary, &invalid("1", InvalidReason::TooShort));
        add(&mut summary, &invalid("2", InvalidReason::TooShort));
        add(&mut summary, &invalid("3", InvalidReason::TooShort));
        summary
    }

    #[test]
    fn summary_counts_validity_line_types_regions_and_reasons() {
        let summary = sample_summary();
        assert_eq!(summary.total, 10);
        assert_eq!(summary.valid, 6);
        assert_eq!(summary.invalid(), 4);
        assert_eq!(
            summary.line_type_counts(),
            [
                ("mobile".to_owned(), 4),
                ("fixed_line".to_owned(), 1),
                ("fixed_line_or_mobile".to_owned(), 1)
            ]
        );
        assert_eq!(
            summary.top_regions(2),
            [("GB".to_owned(), 3), ("IN".to_owned(), 2)]
        );
        assert_eq!(
            summary.invalid_reason_counts(),
            [("too_short".to_owned(), 3), ("not_a_number".to_owned(), 1)]
        );
    }

    #[test]
    fn top_regions_keep_the_fifteen_largest() {
        let mut summary = Summary::default();
        for (index, region) in ('A'..='T').enumerate() {
            for _ in 0..=index {
                add(
                    &mut summary,
                    &valid(&format!("{region}{region}"), LineType::Mobile),
                );
            }
        }
        let top = summary.top_regions(TOP_REGIONS);
        assert_eq!(top.len(), 15);
        assert_eq!(top[0], ("TT".to_owned(), 20));
        assert_eq!(top[14], ("FF".to_owned(), 6));
    }

    #[test]
    fn summary_json_has_counts_percentages_and_rate() {
        let value = sample_summary().to_json(Duration::from_secs(2));
        assert_eq!(
            value,
            json!({
                "total": 10,
                "valid": 6,
                "invalid": 4,
                "valid_percent": 60.0,
                "invalid_percent": 40.0,
                "line_types": {"mobile": 4, "fixed_line": 1, "fixed_line_or_mobile": 1},
                "top_regions": [
                    {"region": "GB", "count": 3},
                    {"region": "IN", "count": 2},
                    {"region": "US", "count": 1}
                ],
                "invalid_reasons": {"too_short": 3, "not_a_number": 1},
                "elapsed_seconds": 2.0,
                "numbers_per_second": 5,
            })
        );
    }

    #[test]
    fn empty_summary_has_no_division_by_zero() {
        let value = Summary::default().to_json(Duration::ZERO);
        assert_eq!(value["valid_percent"], json!(0.0));
        assert_eq!(value["numbers_per_second"], json!(0));
        assert_eq!(
            Summary::default()
                .text(Duration::ZERO)
                .lines()
                .next()
                .unwrap(),
            "0 numbers in 0.0s (0/s)"
        );
    }

    #[test]
    fn summary_text_lists_sections() {
        let text = sample_summary().text(Duration::from_secs(2));
        assert_eq!(
            text,
            "\
10 numbers in 2.0s (5/s)
numbers:
  valid    6   60.0%
  invalid  4   40.0%
line types (valid numbers):
  mobile                4   40.0%
  fixed_line            1   10.0%
  fixed_line_or_mobile  1   10.0%
top 15 regions (valid numbers):
  GB  3   30.0%
  IN  2   20.0%
  US  1   10.0%
invalid reasons:
  too_short     3   30.0%
  not_a_number  1   10.0%
"
        );
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(12_345_678), "12,345,678");
    }

    #[test]
    fn lines_lose_their_line_ending_and_blank_ones_are_skipped() {
        assert_eq!(parse_line(b"+447400123456\r\n"), Ok(Some("+447400123456")));
        assert_eq!(parse_line(b"+447400123456"), Ok(Some("+447400123456")));
        assert_eq!(parse_line(b" 0044 7400\n"), Ok(Some(" 0044 7400")));
        assert_eq!(parse_line(b"\r\n"), Ok(None));
        assert_eq!(parse_line(b"  \t\n"), Ok(None));
        assert_eq!(parse_line(b"\xff12\n"), Err("not valid UTF-8".to_owned()));
        let long = vec![b'1'; MAX_LINE_BYTES + 1];
        assert!(
            parse_line(&long)
                .unwrap_err()
                .starts_with("longer than 250 bytes")
        );
        let longest = vec![b'1'; MAX_LINE_BYTES];
        assert!(parse_line(&longest).unwrap().is_some());
    }
}
