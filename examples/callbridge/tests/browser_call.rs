//! The call-bridge role end to end: `causeway serve` as the TURN server of both
//! sides; the example (str0m + turn-core's client) allocates on it; headless
//! Chromium, relay candidates only, calls the example's page: the data channel
//! echoes, the browser's audio arrives as RTP, and the selected pair is relay
//! to relay.

use causeway_testkit::wait::{self, PATIENCE};
use causeway_testkit::{Output, chromium, delay, tools};

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chromium::Chromium;

/// One call at a time: each runs Chromium, the bridge and TURN servers, and
/// three at once starve each other on a two-core machine.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long the bridge waits for its probes' answers: many times what the
/// slowest link here needs.
const PROBE_TIMEOUT: &str = "10";

/// A join URL the TLS port's web proxy serves beside TURN.
const JOIN: &str = "join.example.test";

/// A child process, killed when dropped; its output (stdout and log) kept and
/// printed when the test fails.
struct Running(Child, Output, String);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.2, self.1.tail(60));
        }
    }
}

/// Starts `cmd` and waits for the stdout line starting with `ready`; the lines
/// so far.
fn start(cmd: &mut Command, ready: &str) -> (Running, Vec<String>) {
    let name = format!("{cmd:?}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let out = Output::of(&mut child);
    if out.wait_line(PATIENCE, |l| l.starts_with(ready)).is_none() {
        panic!("{name} printed no `{ready}`:\n{}", out.tail(40));
    }
    let lines = out.lines();
    (Running(child, out, name), lines)
}

/// The address after `prefix` in one of `lines`.
fn addr_after(lines: &[String], prefix: &str) -> SocketAddr {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|r| r.split(['/', ' ']).next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no `{prefix}` in {lines:?}"))
}

/// Allocations a `causeway serve` holds, from its metrics (open to all).
fn allocations(admin: &SocketAddr) -> u64 {
    get(admin, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix("causeway_allocations ")?.parse().ok())
        .unwrap_or(u64::MAX)
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

fn get(addr: &SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out)
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// How the browser reaches its TURN server.
#[derive(Clone, Copy, PartialEq)]
enum BrowserTurn {
    /// UDP 3478.
    Udp,
    /// TURN over TLS on the shared TLS port (443-style: the web proxy's too).
    Tls,
}

/// A CA and a leaf for 127.0.0.1, the CA trusted in an NSS database under
/// `home` (where Chromium looks); the leaf's PEM files.
fn trusted_leaf(home: &std::path::Path) -> (PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    tools::ensure_package("/usr/bin/certutil", "libnss3-tools");
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), JOIN.to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let (cert_file, key_file, ca_file) = (
        home.join("turn.pem"),
        home.join("turn.key"),
        home.join("ca.pem"),
    );
    std::fs::write(&cert_file, leaf.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    chromium::trust_ca(home, &ca_file);
    (cert_file, key_file)
}

/// `causeway serve` on `ip` with the two users; its startup lines.
fn turn_server(ip: &str, extra: &[String]) -> (Running, Vec<String>) {
    let mut args: Vec<String> = [
        "serve".to_string(),
        "--listen".into(),
        format!("{ip}:0"),
        "--admin".into(),
        format!("{ip}:0"),
        "--user".into(),
        "cmsturn:bridge-pw".into(),
        "--user".into(),
        "browser:browser-pw".into(),
        // The other server's relayed addresses are on loopback too.
        "--allow-peer".into(),
        "127.0.0.0/8".into(),
    ]
    .to_vec();
    args.extend_from_slice(extra);
    start(Command::new(causeway()).args(&args), "causeway: ready")
}

/// The example with `servers` as its turnServers list (address, type); its
/// HTTP address.
fn bridge(dir: &std::path::Path, servers: &[SocketAddr]) -> (Running, SocketAddr) {
    let mut list = String::new();
    for s in servers {
        list.push_str(&format!(
            "[[turnServers]]\nserverAddress = \"{s}\"\nusername = \"cmsturn\"\npassword = \"bridge-pw\"\ntype = \"udp\"\n\n"
        ));
    }
    let file = dir.join("turn-servers.toml");
    std::fs::write(&file, list).unwrap();
    let (running, lines) = start(
        Command::new(env!("CARGO_BIN_EXE_callbridge")).args([
            "--servers",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--probe-timeout",
            PROBE_TIMEOUT,
        ]),
        "callbridge: listening on http://",
    );
    (
        running,
        addr_after(&lines, "callbridge: listening on http://"),
    )
}

/// One call from Chromium (its profile under `home`) to the example at `http`,
/// the browser on TURN server `browser_url`; what the page, the bridge and its
/// turnServers status reported.
///
/// Then the page hangs up: the bridge's call ends and releases its allocation,
/// and Chromium its own, so no server in `admins` holds any.
fn browser_call(
    home: &std::path::Path,
    http: SocketAddr,
    browser_url: &str,
    shot: &str,
    admins: &[SocketAddr],
) -> (serde_json::Value, serde_json::Value, serde_json::Value) {
    tools::ensure_package("/usr/bin/chromium", "chromium");
    let browser = Chromium::start(
        home,
        &[
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            "--allow-loopback-in-peer-connection",
        ],
    );
    let mut page = browser.open(&format!(
        "http://{http}/?turn={browser_url}&user=browser&pass=browser-pw"
    ));
    let title = page.poll("document.title", 3 * PATIENCE, |t| {
        t == "done" || t == "failed"
    });
    let result = page.eval("document.getElementById('result').textContent");
    let log = page.eval("document.getElementById('log').textContent");
    page.screenshot(shot);
    assert_eq!(
        title,
        "done",
        "{result}\n{log}\nbridge: {}\n--- chromium ---\n{}",
        get(&http, "/status"),
        browser.output.tail(40)
    );
    // The audio the browser sent reaches the bridge (counted as it arrives).
    let mut status = String::new();
    let arrived = wait::holds(PATIENCE, || {
        status = get(&http, "/status");
        serde_json::from_str::<serde_json::Value>(&status)
            .is_ok_and(|s| s["audio_packets"].as_u64() > Some(20))
    });
    eprintln!("browser: {result}\nbridge: {status}");
    assert!(
        arrived,
        "no audio at the bridge: {status}\nbrowser: {result}"
    );
    let json = |what: &str, text: &str| -> serde_json::Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"))
    };
    let servers = get(&http, "/api/v1/turnServers");
    assert_eq!(page.eval("hangup()"), "ok");
    let mut ended = String::new();
    let over = wait::holds(PATIENCE, || {
        ended = get(&http, "/status");
        json("the bridge's status", &ended)["ended"].is_string()
    });
    assert!(over, "the call did not end at the hang-up: {ended}");
    assert!(
        ended.contains("allocation released"),
        "the bridge kept its allocation: {ended}"
    );
    let mut held = Vec::new();
    assert!(
        wait::holds(PATIENCE, || {
            held = admins.iter().map(allocations).collect();
            held.iter().all(|&n| n == 0)
        }),
        "allocations left after the hang-up: {held:?}"
    );
    (
        json("the page's result", &result),
        json("the bridge's status", &status),
        json("turnServers", &servers),
    )
}

/// A scratch directory with a HOME for Chromium.
fn scratch(tag: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("callbridge-{}-{tag}", std::process::id()));
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    (dir, home)
}

/// A call from Chromium to the example, both on one `causeway serve`.
fn call(browser_turn: BrowserTurn) -> (serde_json::Value, serde_json::Value, serde_json::Value) {
    let _one = one_at_a_time();
    let tag = if browser_turn == BrowserTurn::Udp {
        "udp"
    } else {
        "tls"
    };
    let (dir, home) = scratch(tag);
    let mut extra = Vec::new();
    if browser_turn == BrowserTurn::Tls {
        let (cert, key) = trusted_leaf(&home);
        extra.extend(["--tls-listen".into(), "127.0.0.1:0".into()]);
        extra.extend(["--cert".into(), cert.display().to_string()]);
        extra.extend(["--key".into(), key.display().to_string()]);
        // The port is shared with the web proxy, as the reference's 443 is.
        extra.extend(["--proxy".into(), format!("{JOIN}=https://127.0.0.1:9")]);
        let ca = home.join("ca.pem");
        extra.extend(["--upstream-ca".into(), ca.display().to_string()]);
    }
    let (_turn, lines) = turn_server("127.0.0.1", &extra);
    let turn = addr_after(&lines, "causeway: listening on udp ");
    let (_bridge, http) = bridge(&dir, &[turn]);
    // Before any call, an entry's status is probed on demand (not a 404).
    let before = get(&http, "/api/v1/turnServers/0/status");
    let v: serde_json::Value =
        serde_json::from_str(&before).unwrap_or_else(|e| panic!("{e}: {before}"));
    assert!(
        v["rtt_ms"].as_u64().is_some() && v["chosen"] == false,
        "{before}"
    );
    let browser_url = match browser_turn {
        BrowserTurn::Udp => format!("turn:{turn}?transport=udp"),
        BrowserTurn::Tls => format!(
            "turns:{}?transport=tcp",
            addr_after(&lines, "causeway: listening on tls ")
        ),
    };
    let admin = addr_after(&lines, "causeway: admin on http://");
    let (r, s, list) = browser_call(
        &home,
        http,
        &browser_url,
        &format!("callbridge-call-{tag}.png"),
        &[admin],
    );
    let _ = std::fs::remove_dir_all(&dir);
    (r, s, list[0].clone())
}

fn check_call(r: &serde_json::Value, s: &serde_json::Value, v: &serde_json::Value, protocol: &str) {
    let echoes: Vec<&str> = r["echoes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(
        echoes,
        ["ping 0", "ping 1", "ping 2", "ping 3", "ping 4"],
        "{r}"
    );
    assert_eq!(r["local"], "relay", "the browser's side: {r}");
    assert_eq!(
        r["localProtocol"], protocol,
        "the browser's way to its TURN server: {r}"
    );
    assert_eq!(r["remote"], "relay", "the bridge's side: {r}");
    assert_eq!(s["connected"], true, "{s}");
    assert_eq!(s["echoed"], 5, "{s}");
    assert!(
        s["audio_packets"].as_u64().unwrap() > 20,
        "audio arrived: {s}"
    );
    assert_eq!(
        r["remoteAddress"], s["relayed"],
        "the browser reached the bridge's relayed address"
    );
    assert_eq!(v["chosen"], true, "{v}");
    assert!(v["rtt_ms"].as_u64().is_some(), "{v}");
}

#[test]
fn chromium_on_udp_calls_the_bridge_relay_to_relay_through_causeway() {
    let (r, s, v) = call(BrowserTurn::Udp);
    check_call(&r, &s, &v, "udp");
}

#[test]
fn chromium_on_turn_over_tls_calls_the_bridge_through_the_shared_port() {
    let (r, s, v) = call(BrowserTurn::Tls);
    check_call(&r, &s, &v, "tls");
}

#[test]
fn the_faster_server_is_chosen_and_a_new_call_fails_over_when_it_stops() {
    let _one = one_at_a_time();
    let (dir, home) = scratch("two");
    // Two TURN servers on two loopback addresses, reached through links of
    // 150 ms and 10 ms each way (far enough apart that a busy machine's jitter
    // cannot reorder them, and below the probe's first retransmission at
    // 500 ms); the browser's is the first.
    let (_slow, slow_lines) = turn_server("127.0.0.1", &[]);
    let (fast, fast_lines) = turn_server("127.0.0.2", &[]);
    let slow = addr_after(&slow_lines, "causeway: listening on udp ");
    let fast_addr = addr_after(&fast_lines, "causeway: listening on udp ");
    let ip = "127.0.0.1".parse().unwrap();
    let via_slow = delay::delayed(ip, slow, Duration::from_millis(150));
    let via_fast = delay::delayed(ip, fast_addr, Duration::from_millis(10));
    let (_bridge, http) = bridge(&dir, &[via_slow, via_fast]);
    let browser_url = format!("turn:{slow}?transport=udp");

    let admins = [
        addr_after(&slow_lines, "causeway: admin on http://"),
        addr_after(&fast_lines, "causeway: admin on http://"),
    ];
    let (r, s, list) = browser_call(
        &home,
        http,
        &browser_url,
        "callbridge-two-servers.png",
        &admins,
    );
    eprintln!("turnServers: {list}");
    check_call(&r, &s, &list[1], "udp");
    assert_eq!(s["turn_server"], 1, "the faster one: {list}");
    let (slow_rtt, fast_rtt) = (
        list[0]["rtt_ms"].as_u64().unwrap(),
        list[1]["rtt_ms"].as_u64().unwrap(),
    );
    assert!(
        fast_rtt >= 10 && slow_rtt >= 150 && fast_rtt < slow_rtt,
        "{list}"
    );
    assert!(
        s["relayed"].as_str().unwrap().starts_with("127.0.0.2:"),
        "{s}"
    );

    // The faster one stops answering: the next call goes through the other.
    drop(fast);
    let (r, s, list) = browser_call(
        &home,
        http,
        &browser_url,
        "callbridge-failover.png",
        &admins[..1],
    );
    check_call(&r, &s, &list[0], "udp");
    assert_eq!(s["turn_server"], 0, "{list}");
    assert_eq!(list[1]["chosen"], false, "{list}");
    assert!(
        list[1]["last_error"]
            .as_str()
            .unwrap()
            .starts_with("no answer"),
        "{list}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_call_keeps_its_media_through_an_upgrade_of_the_turn_server() {
    let _one = one_at_a_time();
    let (dir, home) = scratch("upgrade");
    let (mut turn_proc, lines) = turn_server("127.0.0.1", &[]);
    let turn = addr_after(&lines, "causeway: listening on udp ");
    let admin = addr_after(&lines, "causeway: admin on http://");
    let (_bridge, http) = bridge(&dir, &[turn]);
    tools::ensure_package("/usr/bin/chromium", "chromium");
    let browser = Chromium::start(
        &home,
        &[
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            "--allow-loopback-in-peer-connection",
        ],
    );
    let mut page = browser.open(&format!(
        "http://{http}/?turn=turn:{turn}?transport=udp&user=browser&pass=browser-pw"
    ));
    let title = page.poll("document.title", 3 * PATIENCE, |t| {
        t == "done" || t == "failed"
    });
    let result = page.eval("document.getElementById('result').textContent");
    assert_eq!(title, "done", "{result}\nbridge: {}", get(&http, "/status"));
    let status = || -> serde_json::Value {
        let text = get(&http, "/status");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    };
    let audio = || status()["audio_packets"].as_u64().unwrap_or(0);
    assert!(
        wait::holds(PATIENCE, || audio() > 20),
        "no audio: {}",
        get(&http, "/status")
    );
    let gap_before = status()["audio_gap_ms"].as_u64().unwrap();

    // The upgrade: the binary at the same path takes both allocations over.
    let old = turn_proc.0.id();
    assert!(
        Command::new("kill")
            .args(["-USR2", &old.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let upgraded = turn_proc
        .1
        .wait_line(PATIENCE, |l| l.contains("SIGUSR2: upgraded: pid "))
        .unwrap_or_else(|| panic!("no upgrade:\n{}", turn_proc.1.tail(30)));
    let (new, moved) = tools::upgraded(&upgraded);
    let _new = tools::Pid(new);
    // The bridge's allocation and the browser's (one or more).
    assert!(moved >= 2, "{upgraded}");
    // The old process has no TCP client to wait for: it exits.
    assert!(
        wait::holds(PATIENCE, || turn_proc.0.try_wait().ok().flatten().is_some()),
        "the old process is still running:\n{}",
        turn_proc.1.tail(30)
    );
    // Audio goes on through the new process alone: a second of it more.
    let at_exit = audio();
    assert!(
        wait::holds(PATIENCE, || audio() > at_exit + 50),
        "the audio stopped after the upgrade: {}",
        get(&http, "/status")
    );
    let s = status();
    assert!(s["ended"].is_null() && s["connected"] == true, "{s}");
    let gap = s["audio_gap_ms"].as_u64().unwrap();
    eprintln!(
        "longest gap between audio packets: {gap} ms across the upgrade, {gap_before} ms \
         before it; {}",
        upgraded.trim()
    );
    // A gap of seconds is a call that lost its path and found it again (ICE
    // consent allows 30 s), not a busy machine.
    assert!(gap < 5000, "the media stopped for {gap} ms: {s}");

    // The hang-up releases both allocations, in the new process (its admin
    // port is the one the old process had).
    assert_eq!(page.eval("hangup()"), "ok");
    let mut held = u64::MAX;
    assert!(
        wait::holds(PATIENCE, || {
            held = allocations(&admin);
            held == 0
        }),
        "allocations left after the hang-up: {held}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
