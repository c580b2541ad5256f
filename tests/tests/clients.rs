//! Real clients against a real verifyd: the Python grpcio client, grpcurl with reflection only
//! (no proto files), and verifyctl, on SQLite and PostgreSQL.

use std::process::Command;

use verify_e2e::{
    Backend, TestServer, binary, on_both_backends, tool, unique_mobile, workspace_root,
};

on_both_backends!(python_grpcio_client, grpcurl_walkthrough, verifyctl_flow);

/// `verifyctl classify --input` cleans a list: one CSV row per line, in order, and a summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifyctl_cleans_a_list() {
    let server = TestServer::start(Backend::Sqlite).await;
    let directory = tempfile::tempdir().unwrap();
    let input = directory.path().join("numbers.txt");
    let output = directory.path().join("classified.csv");
    let mut lines = Vec::new();
    for i in 0..12_000 {
        lines.push(match i % 4 {
            0 => format!("+447400{:06}", i),
            1 => format!("+44 20 7946 {:04}", i % 10_000),
            2 => "not a number".to_string(),
            _ => format!("+91 98{:03} {:05}", i % 1000, i),
        });
    }
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let result = Command::new(binary("verifyctl"))
        .args([
            "--addr",
            &server.url(),
            "--json",
            "classify",
            "--chunk-size",
            "1000",
            "--input",
        ])
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&result.stdout).expect("summary JSON on stdout");
    assert_eq!(summary["total"], 12_000, "{summary}");
    assert_eq!(summary["valid"], 9_000, "{summary}");

    let csv = std::fs::read_to_string(&output).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 12_001, "header plus one row per line");
    assert!(
        rows[0].starts_with("input,valid,e164,region"),
        "{}",
        rows[0]
    );
    assert!(
        rows[1].starts_with("+447400000000,true,+447400000000,GB"),
        "{}",
        rows[1]
    );
    assert!(rows[2].contains(",fixed_line,"), "{}", rows[2]);
    assert!(rows[3].starts_with("not a number,false,"), "{}", rows[3]);
    assert!(rows[3].contains("not_a_number"), "{}", rows[3]);
    assert!(rows[12_000].contains(",IN,"), "{}", rows[12_000]);
}

/// The first line a still-running command prints (within 10 s); then the command is stopped.
fn first_line_then_kill(mut child: std::process::Child) -> String {
    use std::io::BufRead;
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let line = receiver.recv_timeout(std::time::Duration::from_secs(10));
    child.kill().unwrap();
    child.wait().unwrap();
    line.expect("a line within 10 s")
}

fn run(command: &mut Command) -> (bool, String) {
    let output = command.output().expect("run client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

async fn python_grpcio_client(backend: Backend) {
    let server = TestServer::start(backend).await;
    let python = tool("python", ".tools/venv/bin/python");
    let (ok, text) = run(Command::new(python)
        .arg(workspace_root().join("tests/python/verify_flow.py"))
        .arg("--addr")
        .arg(server.address.to_string())
        .arg("--outbox")
        .arg(&server.outbox));
    assert!(ok, "Python client failed:\n{text}");
    assert!(text.contains(" passed, 0 failed"), "{text}");
}

async fn grpcurl_walkthrough(backend: Backend) {
    let server = TestServer::start(backend).await;
    let grpcurl = tool("grpcurl", ".tools/bin/grpcurl");
    let (ok, text) = run(Command::new("bash")
        .arg(workspace_root().join("scripts/grpcurl-walkthrough.sh"))
        .arg(server.address.to_string())
        .arg(&server.outbox)
        .env("GRPCURL", &grpcurl));
    assert!(ok, "grpcurl walkthrough failed:\n{text}");
    assert!(text.contains("walkthrough ok"), "{text}");
    // Reflection serves both the service and its message types.
    let (ok, text) = run(Command::new(&grpcurl).args([
        "-plaintext",
        &server.address.to_string(),
        "describe",
        "verify.v1.Verification",
    ]));
    assert!(ok && text.contains("expires_at"), "{text}");
    let (ok, text) = run(Command::new(&grpcurl).args([
        "-plaintext",
        &server.address.to_string(),
        "grpc.health.v1.Health/Check",
    ]));
    assert!(ok && text.contains("SERVING"), "{text}");
    // Bad input over grpcurl: the status names the field.
    let (ok, text) = run(Command::new(&grpcurl).args([
        "-plaintext",
        "-d",
        r#"{"to":"not a number"}"#,
        &server.address.to_string(),
        "verify.v1.VerifyService/Verify",
    ]));
    assert!(!ok, "{text}");
    assert!(
        text.contains("InvalidArgument") && text.contains("to: invalid phone number"),
        "{text}"
    );
}

async fn verifyctl_flow(backend: Backend) {
    let server = TestServer::start(backend).await;
    let verifyctl = binary("verifyctl");
    let ctl = || {
        let mut command = Command::new(&verifyctl);
        command.arg("--addr").arg(server.url());
        command
    };
    let number = unique_mobile();
    let (ok, text) = run(ctl().args(["--json", "verify", &number]));
    assert!(ok, "{text}");
    let response: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON line");
    let id = response["verification"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        response["verification"]["status"],
        "VERIFICATION_STATUS_PENDING"
    );
    // The proto3 JSON mapping with proto field names and every field: unset ones at their
    // default, times RFC 3339 in UTC.
    assert_eq!(response["replayed"], false, "{response}");
    assert_eq!(response["verification"]["checks_left"], 5, "{response}");
    let expires_at = response["verification"]["expires_at"].as_str().unwrap();
    assert!(expires_at.ends_with('Z'), "{expires_at}");
    let code = server.code_for(&id).await;

    let wrong = if code == "000000" { "111111" } else { "000000" };
    let output = ctl().args(["check", &id, wrong]).output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(3),
        "a wrong code is exit status 3"
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("wrong code, 4 checks left"));

    let (ok, text) = run(ctl().args(["check", &id, &code]));
    assert!(ok, "{text}");
    assert!(text.contains("approved"), "{text}");

    let (ok, text) = run(ctl().args(["get", &id]));
    assert!(ok && text.contains("approved"), "{text}");
    // Events stream as one JSON object per line, the 64-bit cursor as a string.
    let output = ctl()
        .args(["--json", "watch", "--verification", &id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let first = first_line_then_kill(output);
    let event: serde_json::Value = serde_json::from_str(&first).expect("one JSON line");
    let cursor = event["event"]["cursor"]
        .as_str()
        .and_then(|c| c.parse::<u64>().ok());
    assert!(cursor.is_some_and(|cursor| cursor > 0), "{event}");
    assert_eq!(
        event["event"]["type"], "EVENT_TYPE_VERIFICATION_CREATED",
        "{event}"
    );
    assert_eq!(event["event"]["verification_id"], id.as_str(), "{event}");
    let (ok, text) = run(ctl().args(["classify", "+44 20 7946 0123"]));
    assert!(ok && text.contains("voice"), "{text}");

    let output = ctl().args(["get", "vf_unknown"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("NOT_FOUND"));
}
