//! The traversal where it matters (root: network namespaces and nftables):
//! the edge, `causeway serve`, runs in a `dmz` namespace whose firewall drops
//! every new connection it would open inward (nftables, output, on its link
//! to this side); the connector, the web bridge stand-in and the call-bridge
//! example are on this side (the inside), headless Chromium in an `inet`
//! namespace whose one link goes to the DMZ. Chromium loads the join page through the edge and echoes over WSS:
//! every connection crossing the firewall was opened from this side. Then the
//! call-bridge example (on this side, its page served through the traversal
//! too) and Chromium make a relay-only call through the edge's TURN: the
//! bridge's UDP to the edge is opened from this side as well, and the media
//! goes relay to relay inside the edge. A second join URL served directly by a
//! bridge on this side fails (the edge cannot reach it, and the bridge sees no
//! connection attempt), and once the connector stops, the join page answers
//! 502 naming the missing connector.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};

use common::bridge::{TempDir, TestCa, start_bridge};
use common::chromium::{Chromium, trust_ca};
use common::http::read_response;
use common::tools::sh;
use common::wait::{self, PATIENCE};
use common::{Output, ensure_package, front_toml};
use rustls::pki_types::ServerName;

const JOIN: &str = "join.example.test";
/// A join URL the edge would serve by dialling inward.
const DIRECT: &str = "direct.example.test";
/// The call-bridge example's page, served through the traversal.
const CALL: &str = "call.example.test";

/// The `dmz` namespace, linked to this side (the inside) and to an `inet`
/// namespace where the browser is (deleted when dropped, their links too).
struct Dmz {
    ns: String,
    inet: String,
    subnet: u32,
}

impl Drop for Dmz {
    fn drop(&mut self) {
        for ns in [&self.ns, &self.inet] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

impl Dmz {
    fn new() -> Dmz {
        let subnet = 150 + std::process::id() % 50;
        let ns = format!("cwtv{subnet}dmz");
        let (here, there) = (format!("cwtv{subnet}h"), format!("cwtv{subnet}e"));
        let inet = format!("cwtv{subnet}inet");
        for n in [&ns, &inet] {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
        let _ = Command::new("ip").args(["link", "del", &here]).output();
        sh(&["ip", "netns", "add", &ns]);
        sh(&["ip", "netns", "add", &inet]);
        let dmz = Dmz { ns, inet, subnet };
        sh(&["ip", "-n", &dmz.ns, "link", "set", "lo", "up"]);
        sh(&["ip", "-n", &dmz.inet, "link", "set", "lo", "up"]);
        // The browser's side: its own link to the DMZ, and its only route.
        let (browser, front) = (format!("cwtv{subnet}b"), format!("cwtv{subnet}f"));
        sh(&[
            "ip", "link", "add", &browser, "netns", &dmz.inet, "type", "veth", "peer", "name",
            &front, "netns", &dmz.ns,
        ]);
        let inet_addr = format!("10.{subnet}.2.1/24");
        let front_addr = format!("10.{subnet}.2.2/24");
        sh(&[
            "ip", "-n", &dmz.inet, "addr", "add", &inet_addr, "dev", &browser,
        ]);
        sh(&[
            "ip",
            "-n",
            &dmz.ns,
            "addr",
            "add",
            &front_addr,
            "dev",
            &front,
        ]);
        sh(&["ip", "-n", &dmz.inet, "link", "set", &browser, "up"]);
        sh(&["ip", "-n", &dmz.ns, "link", "set", &front, "up"]);
        let gateway = format!("10.{subnet}.2.2");
        sh(&[
            "ip", "-n", &dmz.inet, "route", "add", "default", "via", &gateway,
        ]);
        sh(&[
            "ip", "link", "add", &here, "type", "veth", "peer", "name", &there, "netns", &dmz.ns,
        ]);
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", dmz.inside()),
            "dev",
            &here,
        ]);
        sh(&[
            "ip",
            "-n",
            &dmz.ns,
            "addr",
            "add",
            &format!("{}/24", dmz.edge()),
            "dev",
            &there,
        ]);
        sh(&["ip", "link", "set", &here, "up"]);
        sh(&["ip", "-n", &dmz.ns, "link", "set", &there, "up"]);
        // The DMZ rule: nothing in the DMZ opens a connection inward.
        let nft = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &dmz.ns, "nft"];
            all.extend_from_slice(args);
            sh(&[&["ip"][..], &all].concat());
        };
        nft(&["add", "table", "inet", "dmz"]);
        nft(&[
            "add",
            "chain",
            "inet",
            "dmz",
            "out",
            "{ type filter hook output priority 0 ; }",
        ]);
        nft(&[
            "add", "rule", "inet", "dmz", "out", "oifname", &there, "ct", "state", "new", "drop",
        ]);
        dmz
    }

    /// This side's address on the link (the inside).
    fn inside(&self) -> String {
        format!("10.{}.1.1", self.subnet)
    }

    /// The edge's address.
    fn edge(&self) -> String {
        format!("10.{}.1.2", self.subnet)
    }
}

/// A child process, killed when dropped; its output printed if the test fails.
struct Proc(Child, Output);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if std::thread::panicking() {
            eprintln!("--- output ---\n{}", self.1.tail(40));
        }
    }
}

fn spawn(program: &str, args: &[&str]) -> Proc {
    let mut child = Command::new(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Output::of(&mut child);
    Proc(child, out)
}

/// The workspace's call-bridge example (built by `cargo test --workspace`;
/// built here when this package is tested alone).
fn callbridge() -> std::path::PathBuf {
    let bin =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/callbridge");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = Command::new(cargo)
            .args(["build", "-p", "callbridge"])
            .status()
            .unwrap();
        assert!(built.success(), "cargo build -p callbridge");
    }
    bin
}

fn pin(cert: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args(["connect", "--fingerprint", cert.to_str().unwrap()])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A GET through the edge's TLS port with `sni`: status and body.
fn get(ca: &TestCa, tls: SocketAddr, host: &str) -> (u16, String) {
    let tcp = TcpStream::connect(tls).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let conn = rustls::ClientConnection::new(
        ca.client_config(),
        ServerName::try_from(host.to_string()).unwrap(),
    )
    .unwrap();
    let mut t = rustls::StreamOwned::new(conn, tcp);
    write!(t, "GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    t.flush().unwrap();
    let (status, _, body) = read_response(&mut t);
    (status, body)
}

#[test]
fn chromium_reaches_the_inside_through_a_dmz_that_opens_no_connection_inward() {
    let root = Command::new("id").arg("-u").output();
    if !root.is_ok_and(|o| o.stdout == b"0\n") {
        eprintln!("skipped: needs root (a network namespace, nftables)");
        return;
    }
    ensure_package("/usr/sbin/nft", "nftables");
    ensure_package("/usr/bin/chromium", "chromium");
    ensure_package("/usr/bin/certutil", "libnss3-tools");
    let dmz = Dmz::new();
    let ca = TestCa::new();
    let dir = TempDir::new("traversal-dmz");
    let bridge = start_bridge(&ca.leaf(&["localhost"]));
    // A bridge on this side the edge would have to dial: it must see nothing.
    let direct = TcpListener::bind(format!("{}:0", dmz.inside())).unwrap();
    direct.set_nonblocking(true).unwrap();
    let direct_port = direct.local_addr().unwrap().port();
    let connector_leaf = ca.leaf(&["connector.example.test"]);
    let connector_cert = dir.write("connector.pem", &connector_leaf.cert_pem);
    let connector_key = dir.write("connector.key", &connector_leaf.key_pem);
    let edge_ip = dmz.edge();
    // Every listener of the edge on its address in the DMZ.
    let config = front_toml(&ca, &[JOIN, DIRECT, CALL], &dir).replace("127.0.0.1", &edge_ip);
    let config = format!(
        "{config}proxy = [\"{JOIN}=connector\", \"{CALL}=connector\", \
         \"{DIRECT}=http://{inside}:{direct_port}\"]\n\n\
         [traversal]\nlisten = \"{edge_ip}:7443\"\n\n[[traversal.connector]]\nname = \"inside\"\n\
         pin = \"{pin}\"\njoin = [\"{JOIN}\", \"{CALL}\"]\n",
        inside = dmz.inside(),
        pin = pin(&connector_cert),
    );
    let edge_file = dir.write("edge.toml", &config);
    let edge = spawn(
        "ip",
        &[
            "netns",
            "exec",
            &dmz.ns,
            env!("CARGO_BIN_EXE_causeway"),
            "serve",
            "--config",
            edge_file.to_str().unwrap(),
        ],
    );
    assert!(
        edge.1.wait_for("causeway: ready", PATIENCE),
        "{}",
        edge.1.tail(30)
    );
    let listening = |what: &str| -> SocketAddr {
        edge.1
            .lines()
            .iter()
            .find_map(|l| l.strip_prefix(&format!("causeway: listening on {what} ")))
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {what} listener: {}", edge.1.tail(20)))
    };
    let tls = listening("tls");
    let turn = listening("udp");
    // The call bridge on this side, allocating on the edge's TURN (its one
    // user, as every browser of a meeting shares).
    let servers = dir.write(
        "turn-servers.toml",
        &format!(
            "[[turnServers]]\nserverAddress = \"{turn}\"\nusername = \"alice\"\n\
             password = \"pw\"\ntype = \"udp\"\n"
        ),
    );
    let call_bridge = spawn(
        callbridge().to_str().unwrap(),
        &[
            "--servers",
            servers.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--probe-timeout",
            "10",
        ],
    );
    let call_http: SocketAddr = call_bridge
        .1
        .wait_line(PATIENCE, |l| {
            l.starts_with("callbridge: listening on http://")
        })
        .and_then(|l| {
            l.strip_prefix("callbridge: listening on http://")?
                .split(['/', ' '])
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("the call bridge: {}", call_bridge.1.tail(20)));
    let inside = format!(
        "edge = [\"{edge_ip}:7443\"]\nedge_name = \"{JOIN}\"\nedge_pin = \"{edge_pin}\"\n\
         cert = \"{cert}\"\nkey = \"{key}\"\npool = 4\n\
         proxy = [\"{JOIN}=https://localhost:{port}\", \"{CALL}=http://{call_http}\"]\n\
         upstream_ca = \"{ca}\"\n",
        edge_pin = pin(&dir.path().join("front.pem")),
        cert = connector_cert.display(),
        key = connector_key.display(),
        port = bridge.port(),
        ca = dir.path().join("ca.pem").display(),
    );
    let inside_file = dir.write("inside.toml", &inside);
    let connector = spawn(
        env!("CARGO_BIN_EXE_causeway"),
        &["connect", "--config", inside_file.to_str().unwrap()],
    );
    wait::until("the connector ready at the edge", PATIENCE, || {
        match get(&ca, tls, JOIN) {
            (200, _) => Ok(()),
            (s, body) => Err(format!("{s} {body}; connector: {}", connector.1.tail(5))),
        }
    });
    // Chromium, from this side, loads the join page and echoes over WSS.
    let home = dir.path().join("home");
    trust_ca(&home, &dir.path().join("ca.pem"));
    let chromium = Chromium::start_in(
        Some(&dmz.inet),
        &home,
        &[
            &format!("--host-resolver-rules=MAP {JOIN} {tls},MAP {CALL} {tls}"),
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
        ],
    );
    let mut page = chromium.open(&format!("https://{JOIN}/"));
    let title = page.poll("document.title", 2 * PATIENCE, |t| {
        t.starts_with("echo:") || t == "ws error"
    });
    assert_eq!(
        title,
        "echo: hello through causeway",
        "{}\n--- chromium ---\n{}",
        edge.1.tail(30),
        chromium.output.tail(20)
    );
    // A relay-only call: the page through the traversal, the media through
    // the edge's TURN, relay to relay.
    let mut call = chromium.open(&format!(
        "https://{CALL}/?turn=turn:{turn}?transport=udp&user=alice&pass=pw"
    ));
    let title = call.poll("document.title", 3 * PATIENCE, |t| {
        t == "done" || t == "failed"
    });
    let result = call.eval("document.getElementById('result').textContent");
    let bridge_status = || -> serde_json::Value {
        let body = common::http_get(&call_http.to_string(), "/status");
        let body = body.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
    };
    assert_eq!(
        title,
        "done",
        "{result}\nbridge: {}\n{}",
        bridge_status(),
        edge.1.tail(20)
    );
    let r: serde_json::Value = serde_json::from_str(&result).unwrap();
    assert_eq!(r["echoes"].as_array().map(Vec::len), Some(5), "{r}");
    assert_eq!(
        (r["local"].as_str(), r["remote"].as_str()),
        (Some("relay"), Some("relay")),
        "{r}"
    );
    let mut status = bridge_status();
    assert!(
        wait::holds(PATIENCE, || {
            status = bridge_status();
            status["audio_packets"].as_u64() > Some(20)
        }),
        "no audio at the bridge: {status}"
    );
    // The bridge's relayed address is the edge's, in the DMZ.
    assert_eq!(r["remoteAddress"], status["relayed"], "{r} {status}");
    assert!(
        status["relayed"]
            .as_str()
            .is_some_and(|a| a.starts_with(&format!("{edge_ip}:"))),
        "{status}"
    );
    assert_eq!(call.eval("hangup()"), "ok");
    // The join URL the edge would serve by dialling inward fails, and nothing
    // reached the bridge on this side.
    let (status, body) = get(&ca, tls, DIRECT);
    assert_eq!(status, 502, "{body}");
    assert!(
        direct.accept().is_err(),
        "the DMZ opened a connection inward"
    );
    // The connector stops: the join page says which part is missing.
    drop(connector);
    let (status, body) = get(&ca, tls, JOIN);
    assert_eq!(
        (status, body.trim()),
        (502, "no connector ready for this join URL")
    );
}
