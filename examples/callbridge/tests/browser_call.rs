//! The call-bridge role end to end: `causeway serve` as the TURN server of both
//! sides; the example (str0m + turn-core's client) allocates on it; headless
//! Chromium, relay candidates only, calls the example's page: the data channel
//! echoes, the browser's audio arrives as RTP, and the selected pair is relay
//! to relay.

#[path = "../../causeway/tests/common/chromium.rs"]
mod chromium;
#[path = "../../causeway/tests/common/tools.rs"]
mod tools;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chromium::Chromium;

/// A child process, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` and waits for the stdout line starting with `prefix`; the rest
/// of that line.
fn start(cmd: &mut Command, prefix: &str) -> (Running, String) {
    let mut running = Running(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}")),
    );
    let out = running.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{cmd:?} printed no `{prefix}`"));
        if let Some(rest) = line.strip_prefix(prefix) {
            return (running, rest.to_string());
        }
    }
}

/// The workspace's `causeway` binary (built by `cargo test --workspace`; built
/// here when this package is tested alone).
fn causeway() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/causeway");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        assert!(
            Command::new(cargo)
                .args(["build", "-p", "causeway"])
                .status()
                .unwrap()
                .success()
        );
    }
    bin
}

fn get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

#[test]
fn chromium_calls_the_bridge_relay_to_relay_through_causeway() {
    tools::ensure_package("/usr/bin/chromium", "chromium");
    let (_turn, line) = start(
        Command::new(causeway()).args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--user",
            "cmsturn:bridge-pw",
            "--user",
            "browser:browser-pw",
        ]),
        "causeway: listening on udp ",
    );
    let turn: SocketAddr = line.split_whitespace().next().unwrap().parse().unwrap();
    let dir = std::env::temp_dir().join(format!("callbridge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("turn-servers.toml");
    std::fs::write(
        &list,
        format!("[[turnServers]]\nserverAddress = \"{turn}\"\nusername = \"cmsturn\"\npassword = \"bridge-pw\"\ntype = \"udp\"\n"),
    )
    .unwrap();
    let (_bridge, http) = start(
        Command::new(env!("CARGO_BIN_EXE_callbridge")).args([
            "--servers",
            list.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ]),
        "callbridge: listening on http://",
    );
    let http = http.trim_end_matches('/').to_string();

    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let browser = Chromium::start(
        &home,
        &[
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            "--allow-loopback-in-peer-connection",
            "--autoplay-policy=no-user-gesture-required",
        ],
    );
    let url = format!("http://{http}/?turn=turn:{turn}?transport=udp&user=browser&pass=browser-pw");
    let mut page = browser.open(&url);
    let title = page.poll("document.title", Duration::from_secs(45), |t| {
        t == "done" || t == "failed"
    });
    let result = page.eval("document.getElementById('result').textContent");
    let log = page.eval("document.getElementById('log').textContent");
    page.screenshot("callbridge-call.png");
    let status = get(&http, "/status");
    eprintln!("browser: {result}\nbridge: {status}");
    assert_eq!(title, "done", "{result}\n{log}\nbridge: {status}");
    let r: serde_json::Value = serde_json::from_str(&result).unwrap();
    let echoes: Vec<&str> = r["echoes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(
        echoes,
        ["ping 0", "ping 1", "ping 2", "ping 3", "ping 4"],
        "{result}"
    );
    assert_eq!(r["local"], "relay", "the browser's side: {result}");
    assert_eq!(r["remote"], "relay", "the bridge's side: {result}");

    let s: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(s["connected"], true, "{status}");
    assert_eq!(s["echoed"], 5, "{status}");
    assert!(
        s["audio_packets"].as_u64().unwrap() > 20,
        "audio arrived: {status}"
    );
    assert_eq!(
        r["remoteAddress"], s["relayed"],
        "the browser reached the bridge's relayed address"
    );
    let servers = get(&http, "/api/v1/turnServers/0/status");
    let v: serde_json::Value = serde_json::from_str(&servers).unwrap();
    assert_eq!(v["chosen"], true, "{servers}");
    assert!(v["rtt_ms"].as_u64().is_some(), "{servers}");
    let _ = std::fs::remove_dir_all(&dir);
}
