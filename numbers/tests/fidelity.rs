//! The engine against Google's libphonenumber port (PyPI `phonenumbers`, the version the
//! metadata was generated from) on the whole generated corpus: validity, region and line type must
//! agree everywhere; E.164, formats and invalid reasons are compared too.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use verify_numbers::engine::{Engine, corpus};

fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("VERIFYD_TEST_PYTHON") {
        return PathBuf::from(path);
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin/python");
    assert!(
        path.exists(),
        "the reference needs Python with phonenumbers: run `scripts/test` (it installs .tools/venv), or set VERIFYD_TEST_PYTHON"
    );
    path
}

fn escape(text: &str) -> String {
    text.replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

fn line_type_name(line_type: verify_numbers::LineType) -> &'static str {
    use verify_numbers::LineType::*;
    match line_type {
        FixedLine => "FIXED_LINE",
        Mobile => "MOBILE",
        FixedLineOrMobile => "FIXED_LINE_OR_MOBILE",
        TollFree => "TOLL_FREE",
        PremiumRate => "PREMIUM_RATE",
        SharedCost => "SHARED_COST",
        Voip => "VOIP",
        PersonalNumber => "PERSONAL_NUMBER",
        Pager => "PAGER",
        Uan => "UAN",
        Voicemail => "VOICEMAIL",
        Unknown => "UNKNOWN",
    }
}

fn reason_name(reason: Option<verify_numbers::InvalidReason>) -> &'static str {
    use verify_numbers::InvalidReason::*;
    match reason {
        None => "",
        Some(NotANumber) => "NOT_A_NUMBER",
        Some(InvalidCountryCode) => "INVALID_COUNTRY_CODE",
        Some(TooShort) => "TOO_SHORT",
        Some(TooLong) => "TOO_LONG",
        Some(InvalidLength) => "INVALID_LENGTH",
        Some(NoSuchRange) => "NO_SUCH_RANGE",
    }
}

#[test]
fn engine_agrees_with_the_reference_on_the_generated_corpus() {
    let engine = Engine::embedded();
    let corpus = corpus::generate(engine, 20_261_125);
    assert!(corpus.len() > 20_000, "corpus too small: {}", corpus.len());

    let mut child = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/python/reference_classify.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the reference");
    let mut input = String::new();
    for entry in &corpus {
        input.push_str(&escape(&entry.input));
        input.push('\t');
        input.push_str(entry.region_hint.as_deref().unwrap_or(""));
        input.push('\n');
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().expect("reference output");
    writer.join().unwrap().unwrap();
    assert!(output.status.success(), "the reference failed");
    let reference = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = reference.lines().collect();
    assert_eq!(lines.len(), corpus.len(), "one reference line per input");

    let mut disagreements = Vec::new();
    let mut counted = [0usize; 7];
    let names = [
        "valid",
        "region",
        "type",
        "e164",
        "reason",
        "national",
        "international",
    ];
    for (entry, line) in corpus.iter().zip(&lines) {
        let columns: Vec<&str> = line.split('\t').collect();
        let expected = &columns[columns.len() - 7..];
        let hint = entry.region_hint.as_deref().and_then(|h| engine.region(h));
        let c = engine.classify(&entry.input, hint);
        let (e164, national, international) = match c.parsed {
            Ok(parsed) => (
                engine.e164(&parsed),
                if c.valid {
                    engine.format(&parsed, true)
                } else {
                    String::new()
                },
                if c.valid {
                    engine.format(&parsed, false)
                } else {
                    String::new()
                },
            ),
            Err(_) => Default::default(),
        };
        let region = c.territory.map(|t| engine.region_code(t)).unwrap_or("");
        let ours = [
            if c.valid { "1" } else { "0" }.to_string(),
            region.to_string(),
            if c.parsed.is_ok() {
                line_type_name(c.line_type)
            } else {
                ""
            }
            .to_string(),
            e164,
            reason_name(c.invalid_reason).to_string(),
            national,
            international,
        ];
        // Reference columns: valid, e164, region, type, reason, national, international.
        let theirs = [
            expected[0],
            expected[2],
            expected[3],
            expected[1],
            expected[4],
            expected[5],
            expected[6],
        ];
        for i in 0..7 {
            if ours[i] != theirs[i] {
                counted[i] += 1;
                if disagreements.len() < 40 {
                    disagreements.push(format!(
                        "{:?} hint {:?}: {} ours {:?} reference {:?}",
                        entry.input, entry.region_hint, names[i], ours[i], theirs[i]
                    ));
                }
            }
        }
    }
    eprintln!("corpus: {} entries; disagreements per field:", corpus.len());
    for (name, count) in names.iter().zip(counted) {
        eprintln!("  {name:14} {count}");
    }
    for line in &disagreements {
        eprintln!("  {line}");
    }
    assert_eq!(
        counted.iter().sum::<usize>(),
        0,
        "the engine disagrees with the reference"
    );
}
