//! `verifyctl simulate`: traffic for trying verifyd with its `sim` carrier. Simulated people in
//! the countries asked for each start a verification for a random mobile number of their
//! country, wait for the code in the sim carrier's outbox file and type it in after a moment;
//! one whose code does not come gives up (the verification is canceled), and a few never type
//! theirs. The conversion statistics and the dashboard then show the countries side by side.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::Rng;
use tokio::sync::{Notify, Semaphore};
use verify_client::proto::v1::{Channel, CheckResult};
use verify_client::{VerifyClient, VerifyOptions};

use crate::Failure;

/// Arguments of `simulate`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct SimulateArgs {
    /// How many people verify their numbers.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub count: u32,
    /// Their countries, taken in turn (repeat, or comma-separate): GB, US, DE, FR, ES, IN,
    /// MX, BR, HN, SV, NG, KE, ID, PH.
    #[arg(long = "country", value_name = "XX", value_delimiter = ',', default_values = ["GB", "HN"])]
    pub countries: Vec<String>,
    /// The sim carrier's outbox file, where codes arrive (its `outbox` setting, relative to
    /// verifyd's working directory).
    #[arg(long, value_name = "FILE", default_value = "verifyd-sim-outbox.jsonl")]
    pub outbox: PathBuf,
    /// People verifying at the same time.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub concurrency: usize,
    /// Seconds a person waits for the code before giving up.
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    pub give_up_after: u64,
    /// Percent of people who get the code and never type it.
    #[arg(long, value_name = "PERCENT", default_value_t = 3)]
    pub abandon_percent: u32,
    /// The service the verifications belong to (the API key's own when unset).
    #[arg(long, value_name = "ID")]
    pub service: Option<String>,
}

/// Mobile number shapes per country: the E.164 start and how many random digits follow
/// (each candidate is classified, and only valid mobiles are used).
const MOBILE_SHAPES: [(&str, &str, usize); 14] = [
    ("GB", "+4474", 8),
    ("US", "+1415", 7),
    ("DE", "+49151", 8),
    ("FR", "+336", 8),
    ("ES", "+346", 8),
    ("IN", "+9198", 8),
    ("MX", "+5255", 8),
    ("BR", "+55119", 8),
    ("HN", "+5049", 7),
    ("SV", "+5037", 7),
    ("NG", "+234803", 7),
    ("KE", "+2547", 8),
    ("ID", "+62812", 8),
    ("PH", "+63917", 7),
];

/// What happened to one person's verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Approved,
    GaveUp,
    Abandoned,
    Refused,
}

/// Codes seen in the outbox, by verification id.
#[derive(Default)]
struct Codes {
    seen: Mutex<HashMap<String, String>>,
    arrived: Notify,
}

impl Codes {
    fn code_of(&self, id: &str) -> Option<String> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Waits up to `patience` for the code of `id`.
    async fn wait_for(&self, id: &str, patience: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let arrived = self.arrived.notified();
            if let Some(code) = self.code_of(id) {
                return Some(code);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.code_of(id);
            }
        }
    }
}

/// Follows the outbox file from its current end, recording each line's code.
fn follow_outbox(path: PathBuf, codes: Arc<Codes>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let mut partial = String::new();
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let Ok(mut file) = std::fs::File::open(&path) else {
                continue;
            };
            let length = file.metadata().map(|m| m.len()).unwrap_or(0);
            if length < offset {
                offset = 0; // replaced
            }
            if length == offset || file.seek(SeekFrom::Start(offset)).is_err() {
                continue;
            }
            let mut added = String::new();
            if file.read_to_string(&mut added).is_err() {
                continue;
            }
            offset += added.len() as u64;
            partial.push_str(&added);
            let mut found = false;
            while let Some(end) = partial.find('\n') {
                let line: String = partial.drain(..=end).collect();
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
                    && let (Some(id), Some(code)) =
                        (value["verification_id"].as_str(), value["code"].as_str())
                {
                    codes
                        .seen
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(id.to_string(), code.to_string());
                    found = true;
                }
            }
            if found {
                codes.arrived.notify_waiters();
            }
        }
    })
}

/// A random valid mobile number of `country`, checked with Classify.
async fn mobile_number(client: &VerifyClient, country: &str) -> Result<String, Failure> {
    let Some(&(_, start, digits)) = MOBILE_SHAPES
        .iter()
        .find(|(known, _, _)| known.eq_ignore_ascii_case(country))
    else {
        let known: Vec<&str> = MOBILE_SHAPES.iter().map(|(c, _, _)| *c).collect();
        return Err(Failure::Message(format!(
            "--country {country}: no mobile numbers known for it; use one of {}",
            known.join(", ")
        )));
    };
    for _ in 0..50 {
        let rest: String = {
            let mut rng = rand::rng();
            (0..digits)
                .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
                .collect()
        };
        let number = format!("{start}{rest}");
        let classification = client.classify(&number, None).await?;
        if classification.valid && classification.recommended_channel == Channel::Sms as i32 {
            return Ok(number);
        }
    }
    Err(Failure::Message(format!(
        "--country {country}: no valid mobile number found in 50 tries"
    )))
}

/// One person: a verification, the wait for the code, the typing.
async fn person(
    client: VerifyClient,
    codes: Arc<Codes>,
    number: String,
    args: Arc<SimulateArgs>,
) -> Result<(Outcome, String), Failure> {
    let options = VerifyOptions {
        service_id: args.service.clone(),
        ..VerifyOptions::new(&number)
    };
    let verification = match client.verify(options).await {
        Ok(response) => response.verification.unwrap_or_default(),
        Err(error) => {
            let reason = match error.status() {
                Some(status) => format!("{:?}: {}", status.code(), status.message()),
                None => error.to_string(),
            };
            return Ok((Outcome::Refused, reason));
        }
    };
    let patience = Duration::from_secs(args.give_up_after);
    let Some(code) = codes.wait_for(&verification.id, patience).await else {
        client.cancel(&verification.id).await?;
        return Ok((Outcome::GaveUp, String::new()));
    };
    let (abandons, typing) = {
        let mut rng = rand::rng();
        (
            rng.random_range(0..100) < args.abandon_percent,
            Duration::from_millis(rng.random_range(1_000..6_000)),
        )
    };
    if abandons {
        client.cancel(&verification.id).await?;
        return Ok((Outcome::Abandoned, String::new()));
    }
    tokio::time::sleep(typing).await;
    let checked = client.check_by_id(&verification.id, &code).await?;
    Ok(if checked.result() == CheckResult::Approved {
        (Outcome::Approved, String::new())
    } else {
        (Outcome::Refused, format!("check: {:?}", checked.result()))
    })
}

/// Runs `simulate`.
pub async fn simulate(
    client: &VerifyClient,
    args: SimulateArgs,
    out: &mut impl Write,
) -> Result<(), Failure> {
    if args.countries.is_empty() {
        return Err(Failure::Message("--country: name at least one".into()));
    }
    let codes = Arc::new(Codes::default());
    let follower = follow_outbox(args.outbox.clone(), Arc::clone(&codes));
    let args = Arc::new(args);
    let slots = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let bar =
        ProgressBar::with_draw_target(Some(u64::from(args.count)), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len}  {msg}  {elapsed}") {
        bar.set_style(style);
    }
    let mut people = Vec::with_capacity(args.count as usize);
    for n in 0..args.count as usize {
        let country = args.countries[n % args.countries.len()].to_ascii_uppercase();
        let number = mobile_number(client, &country).await?;
        let permit = Arc::clone(&slots)
            .acquire_owned()
            .await
            .map_err(|e| Failure::Message(e.to_string()))?;
        let task = tokio::spawn(person(
            client.clone(),
            Arc::clone(&codes),
            number,
            Arc::clone(&args),
        ));
        let bar = bar.clone();
        people.push((
            country,
            tokio::spawn(async move {
                let outcome = task.await;
                drop(permit);
                bar.inc(1);
                outcome
            }),
        ));
    }
    let mut tally: BTreeMap<String, [u32; 4]> = BTreeMap::new();
    let mut refusals: BTreeMap<String, u32> = BTreeMap::new();
    for (country, task) in people {
        let joined = task.await.map_err(|e| Failure::Message(e.to_string()))?;
        let (outcome, reason) = joined.map_err(|e| Failure::Message(e.to_string()))??;
        let counts = tally.entry(country).or_default();
        counts[outcome as usize] += 1;
        if outcome == Outcome::Refused {
            *refusals.entry(reason).or_default() += 1;
        }
    }
    bar.finish_and_clear();
    follower.abort();
    // The file appears with the sim carrier's first message: say so only if none came.
    if !args.outbox.exists() {
        eprintln!(
            "warning: {} does not exist: codes are read from the sim carrier's outbox; run \
             simulate in verifyd's working directory or pass --outbox with the file its sim \
             carrier writes",
            args.outbox.display()
        );
    }
    writeln!(
        out,
        "country  people  approved  gave up (no code)  did not type it  refused"
    )?;
    for (country, [approved, gave_up, abandoned, refused]) in &tally {
        let total = approved + gave_up + abandoned + refused;
        writeln!(
            out,
            "{country:<7}  {total:>6}  {approved:>8}  {gave_up:>17}  {abandoned:>15}  {refused:>7}"
        )?;
    }
    for (reason, count) in &refusals {
        writeln!(out, "refused {count}x: {reason}")?;
    }
    Ok(())
}
