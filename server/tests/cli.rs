//! The `verifyd` command line: configuration checks and key hashing, without starting a server.

use std::io::Write;
use std::process::{Command, Stdio};

fn verifyd() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_verifyd"));
    command
        .env_remove("DATABASE_URL")
        .env_remove("VERIFYD_LISTEN");
    command
}

/// `verifyd --config PATH --check-config`, to add environment to and run.
fn check_config(path: &std::path::Path) -> Command {
    let mut command = verifyd();
    command.arg("--config").arg(path).arg("--check-config");
    command
}

#[test]
fn check_config_prints_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let output = verifyd()
        .arg("--check-config")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("listen: 127.0.0.1:50051"), "{text}");
    assert!(text.contains("database: sqlite://verifyd.db"), "{text}");
    assert!(text.contains("carrier: sim (kind sim)"), "{text}");
    assert!(
        !dir.path().join("verifyd.db").exists(),
        "checking starts nothing"
    );
}

#[test]
fn bad_config_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verifyd.toml");
    std::fs::write(&path, "[codes]\nlength = 12\n").unwrap();
    let output = check_config(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let text = String::from_utf8(output.stderr).unwrap();
    assert!(text.contains("codes.length"), "{text}");

    std::fs::write(
        &path,
        "[[carriers]]\nname = \"x\"\nkind = \"sim\"\n[routes]\ndefault = [\"y\"]\n",
    )
    .unwrap();
    let output = check_config(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("`y`"));
}

#[test]
fn a_public_address_without_api_keys_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = verifyd()
        .args(["--listen", "0.0.0.0:0"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let text = String::from_utf8(output.stderr).unwrap();
    assert!(text.contains("not a loopback address"), "{text}");
    assert!(!dir.path().join("verifyd.db").exists());
}

#[test]
fn environment_overrides_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let output = verifyd()
        .arg("--check-config")
        .env("VERIFYD_LISTEN", "127.0.0.1:6001")
        .env("DATABASE_URL", "postgres://app:hunter2@db.internal/verify")
        .env("VERIFYD_ADDR", "ignored-by-the-server")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("listen: 127.0.0.1:6001"), "{text}");
    assert!(
        text.contains("postgres://app:***@db.internal/verify"),
        "{text}"
    );
    assert!(!text.contains("hunter2"));
}

#[test]
fn hash_api_key_prints_sha256_of_stdin() {
    let mut child = verifyd()
        .arg("hash-api-key")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"abc\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn nested_environment_keys_are_applied_and_validated() {
    let dir = tempfile::tempdir().unwrap();
    let refusal = |variable: &str, value: &str| {
        let output = verifyd()
            .arg("--check-config")
            .env(variable, value)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{variable}={value}");
        String::from_utf8_lossy(&output.stderr)
            .trim_end()
            .to_string()
    };
    assert_eq!(
        refusal("VERIFYD_CODES__LENGTH", "11"),
        "error: configuration: environment variable VERIFYD_CODES__LENGTH: codes.length must be \
         between 4 and 10, got 11"
    );
    // A table set to a value: say how to set one of its settings.
    assert_eq!(
        refusal("VERIFYD_CODES", "5"),
        "error: configuration: environment variable VERIFYD_CODES: expected a table of settings, \
         found unsigned int `5`; set one of its settings instead, as VERIFYD_CODES__<SETTING>"
    );
    assert!(
        refusal("VERIFYD_DISPATCHER__LEASE_SECONDS", "1")
            .contains("dispatcher.lease_seconds must be between 2 and 3600, got 1")
    );
}

#[test]
fn check_config_checks_carrier_settings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verifyd.toml");
    for (table, expected) in [
        ("delivery_probability = 1.5", "delivery_probability"),
        ("colour = \"blue\"", "colour"),
    ] {
        std::fs::write(
            &path,
            format!("[[carriers]]\nname = \"sim\"\nkind = \"sim\"\n{table}\n"),
        )
        .unwrap();
        let output = check_config(&path).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{table}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(expected),
            "{table}"
        );
    }
    std::fs::write(
        &path,
        "[[carriers]]\nname = \"op\"\nkind = \"carrier-pigeon\"\n",
    )
    .unwrap();
    let output = check_config(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim_end(),
        format!(
            "error: configuration: {}:3: carriers[0].kind: carrier `op`: `carrier-pigeon` is not \
             a carrier kind; the kinds are: sim, smpp, twilio, vonage, webhook",
            path.display()
        )
    );
}

#[test]
fn check_config_reads_carrier_secrets_from_the_environment_and_lists_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verifyd.toml");
    std::fs::write(
        &path,
        "[[carriers]]\nname = \"sim\"\nkind = \"sim\"\noutbox_env = \"CLI_TEST_OUTBOX\"\n\
         [callbacks]\nlisten = \"127.0.0.1:8443\"\npublic_url = \"https://verify.example.com/\"\n",
    )
    .unwrap();
    let unset = check_config(&path)
        .env_remove("CLI_TEST_OUTBOX")
        .output()
        .unwrap();
    assert_eq!(unset.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&unset.stderr);
    assert!(
        stderr.contains(
            "outbox_env names the environment variable CLI_TEST_OUTBOX, which is not set"
        ),
        "{stderr}"
    );

    let set = check_config(&path)
        .env("CLI_TEST_OUTBOX", dir.path().join("out.jsonl"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&set.stdout);
    assert!(
        set.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&set.stderr)
    );
    assert!(
        stdout.contains("callbacks: https://verify.example.com/callbacks/{carrier}"),
        "{stdout}"
    );

    std::fs::write(
        &path,
        "[[carriers]]\nname = \"a\"\nkind = \"sim\"\ndelivery_probability = 2.0\n\
         [[carriers]]\nname = \"b\"\nkind = \"carrier-pigeon\"\n",
    )
    .unwrap();
    let both = check_config(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert_eq!(both.status.code(), Some(2));
    assert!(
        stderr.contains("carrier `a`") && stderr.contains("carrier `b`"),
        "both carriers named: {stderr}"
    );
}

#[test]
fn configuration_errors_say_where_and_what_to_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verifyd.toml");
    let refusal = |text: &str| {
        std::fs::write(&path, text).unwrap();
        let output = check_config(&path).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{text}");
        String::from_utf8(output.stderr).unwrap()
    };
    let file = path.display().to_string();
    let text = refusal("listen = \"127.0.0.1:50051\"\nlistn = \"127.0.0.1:1\"\n");
    assert!(
        text.contains(&format!(
            "{file}:2: listn: not a setting here; did you mean `listen`? the settings are: listen,"
        )),
        "{text}"
    );
    let text = refusal("[codes]\nlength = \"six\"\n");
    assert!(
        text.contains(&format!(
            "{file}:2: codes.length: expected a whole number, 0 or more (u32), found string \"six\""
        )),
        "{text}"
    );
    let text = refusal("[fallback]\nstrategy = \"fastest\"\n");
    assert!(
        text.contains(&format!(
            "{file}:2: fallback.strategy: `fastest` is not one of: ordered, adaptive"
        )),
        "{text}"
    );
    let text = refusal("[codes]\nlength = 3\n");
    assert!(
        text.contains(&format!(
            "{file}:2: codes.length must be between 4 and 10, got 3"
        )),
        "{text}"
    );
    let text = refusal("listen = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:2\"\n");
    assert!(
        text.contains(&format!("{file}:2:1: duplicate key `listen`")),
        "{text}"
    );
    // Every missing secret at once.
    let text = refusal(
        "[[carriers]]\nname = \"t\"\nkind = \"twilio\"\naccount_sid = \"AC0123456789abcdef0123456789abcdef\"\n\
         auth_token_env = \"CLI_TEST_NO_TOKEN\"\nfrom = \"+15017122661\"\n\
         [[carriers]]\nname = \"w\"\nkind = \"webhook\"\nurl = \"https://gw.example/m\"\nsecret_env = \"CLI_TEST_NO_SECRET\"\n",
    );
    assert!(text.contains("2 problems:"), "{text}");
    assert!(
        text.contains("CLI_TEST_NO_TOKEN") && text.contains("CLI_TEST_NO_SECRET"),
        "{text}"
    );
}

#[test]
fn misspelled_environment_variables_are_refused_with_a_guess() {
    let dir = tempfile::tempdir().unwrap();
    for (name, guess) in [
        ("VERIFYD_LISTN", "did you mean VERIFYD_LISTEN?"),
        ("VERIFYD_CODES__LENGHT", "did you mean `length`?"),
    ] {
        let output = verifyd()
            .arg("--check-config")
            .current_dir(dir.path())
            .env(name, "1")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{name}");
        let text = String::from_utf8_lossy(&output.stderr);
        assert!(text.contains(name) && text.contains(guess), "{text}");
    }
}

#[test]
fn a_database_that_cannot_be_used_is_named_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let start = |database_url: &str| {
        let path = dir.path().join("verifyd.toml");
        std::fs::write(
            &path,
            format!(
                "listen = \"127.0.0.1:0\"\ndatabase_url = \"{database_url}\"\ndata_dir = \"{}\"\n",
                data.display()
            ),
        )
        .unwrap();
        let output = verifyd().arg("--config").arg(&path).output().unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).to_string()
    };
    let text = start("postgres://postgres@127.0.0.1:1/test");
    assert!(
        text.contains("cannot reach 127.0.0.1:1: connection refused"),
        "{text}"
    );
    let text = start("sqlite:///nonexistent-verifyd-dir/verifyd.db");
    assert!(
        text.contains("the directory /nonexistent-verifyd-dir does not exist"),
        "{text}"
    );
    assert!(
        !data.join("verifyd-secret.key").exists(),
        "a refused start leaves no secret behind"
    );
    let admin = std::env::var("VERIFYD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    let text = start(&format!("{base}/verifyd_no_such_database"));
    assert!(
        text.contains("database \"verifyd_no_such_database\" does not exist")
            && text.contains("createdb"),
        "{text}"
    );
}
