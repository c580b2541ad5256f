//! verifyctl as a program: usage and connection errors, without a server.

use std::process::Command;

#[test]
fn help_lists_the_commands_and_exit_codes() {
    let output = Command::new(env!("CARGO_BIN_EXE_verifyctl"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    for command in ["classify", "verify", "check", "get", "cancel", "watch"] {
        assert!(text.contains(command), "{command} missing from:\n{text}");
    }
    assert!(text.contains("Exit status"), "{text}");
}

#[test]
fn an_unreachable_server_is_exit_status_one() {
    let output = Command::new(env!("CARGO_BIN_EXE_verifyctl"))
        .args(["--addr", "http://127.0.0.1:9", "get", "vf_x"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("error:"));
}
