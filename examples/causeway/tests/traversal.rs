//! The traversal with the real binary: `causeway serve` as the edge serves a
//! join URL through connectors (`proxy = ["JOIN=connector"]`, `[traversal]`),
//! knowing nothing of the web bridge; `causeway connect` inside dials out to
//! it, each end pinning the other's certificate (pins printed by
//! `causeway connect --fingerprint`), and dials the HTTPS web bridge. A
//! browser's request reaches the bridge with its address in
//! `X-Forwarded-For`, and `/metrics` counts each join URL's ready and used
//! connections. A join URL served by connectors without a traversal port is
//! refused at start, naming the key. A WSS tunnel outlives a reload of either
//! side, and the connector comes back on its own to an edge that restarted.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};

use common::bridge::{TempDir, TestCa, start_bridge};
use common::http::{read_response, ws_echoes, ws_upgrade};
use common::wait::{self, PATIENCE};
use common::{Output, Server, front_toml};
use rustls::pki_types::ServerName;

const JOIN: &str = "join.example.test";

fn causeway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_causeway"))
}

/// The pin `causeway connect --fingerprint` prints for `cert`.
fn fingerprint(cert: &std::path::Path) -> String {
    let out = causeway()
        .args(["connect", "--fingerprint", cert.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let pin = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(pin.len(), 64, "{pin}");
    pin
}

fn metric(server: &Server, name: &str) -> Option<u64> {
    let text = server.admin("GET", "/metrics");
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn a_browser_reaches_the_inside_web_bridge_through_the_connector_that_dialled_out() {
    let ca = TestCa::new();
    let dir = TempDir::new("traversal");
    let bridge = start_bridge(&ca.leaf(&["localhost"]));
    let connector_leaf = ca.leaf(&["connector.example.test"]);
    let connector_cert = dir.write("connector.pem", &connector_leaf.cert_pem);
    let connector_key = dir.write("connector.key", &connector_leaf.key_pem);
    // The edge: the front's certificate also shown on the traversal port.
    let edge = format!(
        "{}proxy = [\"{JOIN}=connector\"]\n\n[traversal]\nlisten = \"127.0.0.1:0\"\n\n\
         [[traversal.connector]]\nname = \"inside\"\npin = \"{pin}\"\njoin = [\"{JOIN}\"]\n",
        front_toml(&ca, &[JOIN], &dir),
        pin = fingerprint(&connector_cert),
    );
    let edge_file = dir.write("edge.toml", &edge);
    let server = Server::start(&["--config", edge_file.to_str().unwrap()]);
    let traversal = server.startup_addr("causeway: listening on traversal ");
    let tls = server.startup_addr("causeway: listening on tls ");
    // The inside: nothing listens; it dials the edge and the web bridge.
    let inside = format!(
        "edge = [\"{traversal}\"]\nedge_name = \"{JOIN}\"\nedge_pin = \"{edge_pin}\"\n\
         cert = \"{cert}\"\nkey = \"{key}\"\npool = 2\n\
         proxy = [\"{JOIN}=https://localhost:{port}\"]\nupstream_ca = \"{ca}\"\n",
        edge_pin = fingerprint(&dir.path().join("front.pem")),
        cert = connector_cert.display(),
        key = connector_key.display(),
        port = bridge.port(),
        ca = dir.path().join("ca.pem").display(),
    );
    let inside_file = dir.write("inside.toml", &inside);
    let mut connector = causeway()
        .args(["connect", "--config", inside_file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Output::of(&mut connector);
    let ready = format!("causeway_traversal_ready{{join=\"{JOIN}\",connector=\"inside\"}}");
    wait::until(
        "two connections ready at the edge",
        PATIENCE,
        || match metric(&server, &ready) {
            Some(2) => Ok(()),
            n => Err(format!("{n:?}; connector: {}", log.tail(5))),
        },
    );
    // A browser, through the edge's port 443 stand-in.
    for i in 0..3 {
        let tcp = TcpStream::connect(tls).unwrap();
        tcp.set_read_timeout(Some(PATIENCE)).unwrap();
        let conn = rustls::ClientConnection::new(
            ca.client_config(),
            ServerName::try_from(JOIN.to_string()).unwrap(),
        )
        .unwrap();
        let mut t = rustls::StreamOwned::new(conn, tcp);
        write!(t, "GET /api/echo/{i} HTTP/1.1\r\nHost: {JOIN}\r\n\r\n").unwrap();
        t.flush().unwrap();
        let (status, _, body) = read_response(&mut t);
        assert_eq!(status, 200, "{body}\n{}", server.log_tail());
        assert!(body.starts_with(&format!("GET /api/echo/{i}")), "{body}");
        assert!(
            body.contains("xff=127.0.0.1"),
            "the browser's address: {body}"
        );
    }
    let used = format!("causeway_traversal_used_total{{join=\"{JOIN}\",connector=\"inside\"}}");
    assert!(
        metric(&server, &used) >= Some(1),
        "{}",
        server.admin("GET", "/metrics")
    );
    // Bytes per join URL and connector, both ways.
    let bytes = |direction: &str| {
        metric(
            &server,
            &format!(
                "causeway_traversal_bytes_total{{join=\"{JOIN}\",connector=\"inside\",direction=\"{direction}\"}}"
            ),
        )
    };
    assert!(
        bytes("to_bridge") > Some(0) && bytes("from_bridge") > Some(0),
        "{}",
        server.admin("GET", "/metrics")
    );
    // /status shows the tunnel as the reference's verification 1c does.
    let status = server.status();
    let t = &status["traversal"][0];
    assert!(t["bytes_from_bridge"].as_u64() > Some(0), "{status}");
    assert_eq!(
        (
            t["join"].as_str(),
            t["connector"].as_str(),
            t["state"].as_str()
        ),
        (Some(JOIN), Some("inside"), Some("active")),
        "{status}"
    );
    // The usage page shows it in its traversal table (headless Chromium).
    common::tools::ensure_package("/usr/bin/chromium", "chromium");
    let chromium = common::chromium::Chromium::start(dir.path(), &[]);
    let mut page = chromium.open(&format!(
        "http://{}/#token={}",
        server.admin_addr(),
        server.admin_token()
    ));
    let shown = page.poll(
        "(() => { const r = document.querySelector('#traversal tbody tr'); \
           return r ? [...r.cells].map((c) => c.textContent).slice(0, 3).join('|') : ''; })()",
        PATIENCE,
        |v| !v.is_empty(),
    );
    assert_eq!(shown, format!("{JOIN}|inside|active"));
    let headers = page.eval(
        "[...document.querySelectorAll('#traversal thead th')].map((c) => c.textContent).join('|')",
    );
    assert!(
        headers.contains("to web bridge|from web bridge"),
        "{headers}"
    );
    let _ = connector.kill();
    let _ = connector.wait();
    // The check from the inside: every step passes; then each misconfiguration
    // is named at its step.
    let check = |toml: &str| {
        let file = dir.write("check.toml", toml);
        let out = causeway()
            .args(["check", "--traversal", file.to_str().unwrap()])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (ok, said) = check(&inside);
    assert!(ok, "{said}");
    for step in ["edge", "trust", "registration", "web bridge"] {
        assert!(
            said.contains(&format!("[PASS] {JOIN} {step}")),
            "{step}: {said}"
        );
    }
    let wrong_pin = inside.replace(
        &fingerprint(&dir.path().join("front.pem")),
        &fingerprint(&connector_cert),
    );
    let (ok, said) = check(&wrong_pin);
    assert!(
        !ok && said.contains(&format!("[FAIL] {JOIN} trust")),
        "{said}"
    );
    let other = inside.replace(
        &format!("proxy = [\"{JOIN}="),
        "proxy = [\"other.example.test=",
    );
    let (ok, said) = check(&other);
    assert!(
        !ok && said.contains("[FAIL] other.example.test registration")
            && said.contains("not allowed"),
        "{said}"
    );
    // Every edge address is walked: a second one that is down fails the
    // check while the first passes.
    let second = inside.replacen("\"]\n", "\", \"127.0.0.1:1\"]\n", 1);
    let (ok, said) = check(&second);
    assert!(
        !ok && said.contains(&format!("[PASS] {JOIN} edge"))
            && said.contains(&format!("[FAIL] {JOIN} edge: 127.0.0.1:1")),
        "{said}"
    );
    let gone = inside.replace(&format!(":{}\"]", bridge.port()), ":1\"]");
    let (ok, said) = check(&gone);
    assert!(
        !ok && said.contains(&format!("[FAIL] {JOIN} web bridge")),
        "{said}"
    );
}

#[test]
fn a_join_url_served_by_connectors_needs_the_traversal_port() {
    let ca = TestCa::new();
    let dir = TempDir::new("traversal-config");
    let edge = format!(
        "{}proxy = [\"{JOIN}=connector\"]\n",
        front_toml(&ca, &[JOIN], &dir)
    );
    let file = dir.write("edge.toml", &edge);
    let out = causeway()
        .args([
            "serve",
            "--check-config",
            "--config",
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("`traversal.listen`"), "{err}");
}

/// A browser's TLS connection to the edge's port for the join URL.
fn browser(
    ca: &TestCa,
    tls: SocketAddr,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let tcp = TcpStream::connect(tls).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let conn = rustls::ClientConnection::new(
        ca.client_config(),
        ServerName::try_from(JOIN.to_string()).unwrap(),
    )
    .unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// A GET through the edge: its status.
fn get_status(ca: &TestCa, tls: SocketAddr) -> u16 {
    let mut b = browser(ca, tls);
    write!(b, "GET / HTTP/1.1\r\nHost: {JOIN}\r\n\r\n").unwrap();
    b.flush().unwrap();
    read_response(&mut b).0
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}

#[test]
fn tunnels_outlive_reloads_of_either_side_and_the_connector_returns_after_an_edge_restart() {
    let ca = TestCa::new();
    let dir = TempDir::new("traversal-lifecycle");
    let bridge = start_bridge(&ca.leaf(&["localhost"]));
    let connector_leaf = ca.leaf(&["connector.example.test"]);
    let connector_cert = dir.write("connector.pem", &connector_leaf.cert_pem);
    let connector_key = dir.write("connector.key", &connector_leaf.key_pem);
    // The same certificate after the restart (the connector pins it).
    let front = front_toml(&ca, &[JOIN], &dir);
    let edge_toml = |traversal: &str| {
        format!(
            "{front}proxy = [\"{JOIN}=connector\"]\n\n[traversal]\nlisten = \"{traversal}\"\n\n\
             [[traversal.connector]]\nname = \"inside\"\npin = \"{pin}\"\njoin = [\"{JOIN}\"]\n",
            pin = fingerprint(&connector_cert),
        )
    };
    let edge_file = dir.write("edge.toml", &edge_toml("127.0.0.1:0"));
    let server = Server::start(&["--config", edge_file.to_str().unwrap()]);
    let traversal = server.startup_addr("causeway: listening on traversal ");
    let tls = server.startup_addr("causeway: listening on tls ");
    let inside = format!(
        "edge = [\"{traversal}\"]\nedge_name = \"{JOIN}\"\nedge_pin = \"{edge_pin}\"\n\
         cert = \"{cert}\"\nkey = \"{key}\"\npool = 2\n\
         proxy = [\"{JOIN}=https://localhost:{port}\"]\nupstream_ca = \"{ca}\"\n",
        edge_pin = fingerprint(&dir.path().join("front.pem")),
        cert = connector_cert.display(),
        key = connector_key.display(),
        port = bridge.port(),
        ca = dir.path().join("ca.pem").display(),
    );
    let inside_file = dir.write("inside.toml", &inside);
    let mut connector = causeway()
        .args(["connect", "--config", inside_file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Output::of(&mut connector);
    let ready = format!("causeway_traversal_ready{{join=\"{JOIN}\",connector=\"inside\"}}");
    let ready_at = |server: &Server| {
        wait::until("connections ready at the edge", PATIENCE, || {
            match metric(server, &ready) {
                Some(n) if n >= 1 => Ok(()),
                n => Err(format!("{n:?}; connector: {}", log.tail(5))),
            }
        });
    };
    ready_at(&server);
    let mut ws = browser(&ca, tls);
    ws_upgrade(&mut ws, JOIN);
    assert!(ws_echoes(&mut ws));

    // The connector reloads: its tunnel in use goes on, new browsers pass.
    signal(connector.id(), "-HUP");
    assert!(
        log.wait_for("SIGHUP: configuration reloaded", PATIENCE),
        "{}",
        log.tail(10)
    );
    assert!(
        ws_echoes(&mut ws),
        "the tunnel through the reloaded connector"
    );
    assert_eq!(get_status(&ca, tls), 200, "{}", log.tail(10));

    // The edge reloads: the same.
    signal(server.child.id(), "-HUP");
    server.wait_log("SIGHUP: configuration reloaded");
    assert!(ws_echoes(&mut ws), "the tunnel through the reloaded edge");
    assert_eq!(get_status(&ca, tls), 200, "{}", server.log_tail());
    drop(ws);

    // The edge dies and starts again on the same traversal port: the
    // connector comes back on its own.
    let mut server = server;
    let _ = server.child.kill();
    let _ = server.child.wait();
    drop(server);
    let edge_file = dir.write("edge.toml", &edge_toml(&traversal.to_string()));
    let server = Server::start(&["--config", edge_file.to_str().unwrap()]);
    let tls = server.startup_addr("causeway: listening on tls ");
    ready_at(&server);
    assert_eq!(get_status(&ca, tls), 200, "{}", server.log_tail());
    let _ = connector.kill();
    let _ = connector.wait();
}
