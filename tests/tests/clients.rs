//! Real clients against a real verifyd: the Python grpcio client, grpcurl with reflection only
//! (no proto files), and verifyctl, on SQLite and PostgreSQL.

use std::process::Command;

use verify_e2e::{Backend, TestServer, binary, tool, unique_mobile, workspace_root};

macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(verify_e2e::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(verify_e2e::Backend::Postgres).await
            }
        }
    )+};
}

on_both_backends!(python_grpcio_client, grpcurl_walkthrough, verifyctl_flow);

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
    let (ok, text) = run(ctl().args(["classify", "+44 20 7946 0123"]));
    assert!(ok && text.contains("voice"), "{text}");

    let output = ctl().args(["get", "vf_unknown"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("NOT_FOUND"));
}
