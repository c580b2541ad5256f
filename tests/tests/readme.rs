//! The README's sample sessions are real: `scripts/readme-samples` runs each console block marked
//! `<!-- sample: NAME -->` with the built binaries and fails on any sample that no longer
//! matches what they print (exactly, or by shape for samples with random figures). Run
//! `scripts/readme-samples --write` to bring them up to date.

use std::process::Command;

use verify_e2e::{binary, tool, workspace_root};

#[test]
fn readme_samples_match_what_the_binaries_print() {
    // The binaries the samples run (built by `scripts/test` before the tests).
    let binaries = binary("verifyd").parent().unwrap().to_path_buf();
    assert_eq!(binary("verifyctl").parent(), Some(binaries.as_path()));
    let output = Command::new(tool("python", ".tools/venv/bin/python"))
        .arg(workspace_root().join("scripts/readme-samples"))
        .arg("--check")
        .env("VERIFYD_SAMPLES_BIN_DIR", &binaries)
        .output()
        .expect("run scripts/readme-samples");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{printed}");
    assert!(
        output.status.success(),
        "stale README samples (scripts/readme-samples --write updates them):\n{printed}"
    );
}
