//! Secrets in the configuration, end to end: keys instead of passwords
//! (`causeway key` prints what coturn's `turnadmin -k` prints, and a relay
//! holding only the key authenticates the password's owner); a malformed file
//! named by place, never by its text; a duration that would overflow refused
//! by `--check-config`; a key file others may read warned about.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use common::bridge::{TempDir, TestCa};
use common::wait::PATIENCE;
use common::{Server, coturn_tool, run_with_timeout};

/// `causeway serve --check-config --config FILE`: (exit code, stderr).
fn check(file: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args(["serve", "--check-config", "--config"])
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn a_relay_holding_only_the_key_authenticates_the_password() {
    // The key as coturn's tool prints it for the password.
    let (ok, coturn) = run_with_timeout(
        Command::new(coturn_tool("turnadmin")).args([
            "-k",
            "-u",
            "cmsturn",
            "-r",
            "TANDBERG",
            "-p",
            "s3cret-pw",
        ]),
        PATIENCE,
    );
    assert!(ok, "{coturn}");
    let md5 = coturn
        .lines()
        .find(|l| l.starts_with("0x"))
        .unwrap_or_else(|| panic!("{coturn}"))
        .trim()
        .to_string();
    // And as ours prints it, the password on standard input.
    let mut key = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args(["key", "cmsturn", "TANDBERG"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    key.stdin.take().unwrap().write_all(b"s3cret-pw\n").unwrap();
    let out = key.wait_with_output().unwrap();
    let ours = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{ours}");
    assert!(
        ours.contains(&format!("cmsturn:{md5}")),
        "{ours}\ncoturn: {md5}"
    );
    assert!(!ours.contains("s3cret-pw"), "{ours}");

    // A relay given the MD5 key alone: the password's owner allocates.
    let server = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        "--realm",
        "TANDBERG",
        "--user",
        &format!("cmsturn:{md5}"),
    ]);
    let (ok, out) = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_causeway")).args([
            "allocate",
            "--server",
            &server.addr().to_string(),
            "--user",
            "cmsturn:s3cret-pw",
        ]),
        PATIENCE,
    );
    assert!(ok && out.contains("relayed"), "{out}");
    let (ok, out) = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_causeway")).args([
            "allocate",
            "--server",
            &server.addr().to_string(),
            "--user",
            "cmsturn:another-pw",
        ]),
        PATIENCE,
    );
    assert!(!ok, "a wrong password: {out}");
}

#[test]
fn a_malformed_file_is_named_by_place_never_by_its_text() {
    let dir = TempDir::new("secret-config");
    let file = dir.write(
        "causeway.toml",
        "listen = [\"127.0.0.1:0\"]\n# a string where a list belongs\nuser = \"alice:hunter2-secret\"\n",
    );
    let (code, err) = check(&file);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("{}:3:", file.display())),
        "file, line and column: {err}"
    );
    assert!(!err.contains("hunter2"), "the text leaked: {err}");
}

#[test]
fn a_duration_that_would_abort_the_server_is_refused_at_check() {
    let dir = TempDir::new("bounds-config");
    let file = dir.write(
        "causeway.toml",
        "listen = [\"127.0.0.1:0\"]\nuser = [\"a:b\"]\n[http]\nbridge_keepalive_secs = 9223372036854775807\n",
    );
    let (code, err) = check(&file);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("`http.bridge_keepalive_secs`"), "{err}");
}

#[test]
fn a_key_file_others_may_read_is_warned_about() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["turn.example.test"]);
    let dir = TempDir::new("readable-key");
    let cert = dir.write("c.pem", &leaf.cert_pem);
    let key = dir.write("c.key", &leaf.key_pem);
    let toml = format!(
        "listen = [\"127.0.0.1:0\"]\ntls_listen = [\"127.0.0.1:0\"]\ncert = \"{}\"\nkey = \"{}\"\nuser = [\"a:b\"]\n",
        cert.display(),
        key.display()
    );
    let file = dir.write("c.toml", &toml);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, err) = check(&file);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("warning: `key`") && err.contains("can be read by every user"),
        "{err}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (_, err) = check(&file);
    assert!(!err.contains("warning"), "{err}");
}
