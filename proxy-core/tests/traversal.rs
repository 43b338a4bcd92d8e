//! The traversal in-process: an edge (a web proxy whose join URL is served by
//! connectors, and its traversal listener) and a connector that dials out to
//! it and in to a plain-HTTP web bridge. The edge is never given the bridge's
//! address. Requests reach the bridge through the connector's pre-opened
//! connections with the browser's address in `X-Forwarded-For`; the pool is
//! refilled as it is used; a connector that is not pinned, or asks for a join
//! URL it may not serve, is refused and says why; with no connector ready the
//! browser gets 502 naming the cause.
#![cfg(feature = "tls")]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use causeway_testkit::bridge::{TempDir, TestCa};
use causeway_testkit::http::{read_response, ws_echoes, ws_upgrade};
use causeway_testkit::wait::{self, PATIENCE};
use proxy_core::runtime::traversal::{
    Connector, ConnectorIdentity, ConnectorSettings, EdgeTrust, Fingerprint, TraversalListener,
    TunnelPool,
};
use proxy_core::runtime::{Link, Proxy, Upstream};

const JOIN: &str = "join.example.test";

/// The plain-HTTP web bridge of the test kit: its URL and the heads it reads.
fn bridge() -> (String, mpsc::Receiver<String>) {
    let b = causeway_testkit::plain_bridge::bridge();
    (format!("http://{}", b.addr), b.heads)
}

/// A browser's TLS connection handed to the proxy as a front would; its end.
fn browser(e: &Ends) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, peer) = listener.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let session = rustls::ServerConnection::new(e.front.clone()).unwrap();
    e.proxy.hand_off(
        Link::accepted(server, Some(session)),
        Vec::new(),
        Some(JOIN.into()),
        peer,
    );
    let name = rustls::pki_types::ServerName::try_from(JOIN).unwrap();
    let conn = rustls::ClientConnection::new(e.ca.client_config(), name).unwrap();
    rustls::StreamOwned::new(conn, client)
}

fn get(e: &Ends, path: &str) -> (u16, String) {
    let mut b = browser(e);
    write!(b, "GET {path} HTTP/1.1\r\nHost: {JOIN}\r\n\r\n").unwrap();
    let (status, _, body) = read_response(&mut b);
    (status, body)
}

struct Ends {
    _dir: TempDir,
    ca: TestCa,
    /// The TLS of the proxy's front (browsers).
    front: Arc<rustls::ServerConfig>,
    pool: Arc<TunnelPool>,
    edge: TraversalListener,
    proxy: Arc<Proxy>,
    edge_pin: Fingerprint,
    connector_pin: Fingerprint,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    cert2: std::path::PathBuf,
    key2: std::path::PathBuf,
    /// A certificate the edge does not pin.
    stranger: (std::path::PathBuf, std::path::PathBuf),
}

/// The edge: its certificate, the traversal listener trusting `trusted` for
/// the join URL, and the web proxy serving the join URL through the pool.
fn edge(trusted: &[&str]) -> Ends {
    let dir = TempDir::new("traversal");
    let ca = TestCa::new();
    let edge_leaf = ca.leaf(&["edge.example.test", JOIN]);
    let connector_leaf = ca.leaf(&["connector.example.test"]);
    let second_leaf = ca.leaf(&["second.example.test"]);
    let cert2 = dir.write("second.pem", &second_leaf.cert_pem);
    let key2 = dir.write("second.key", &second_leaf.key_pem);
    let edge_cert = dir.write("edge.pem", &edge_leaf.cert_pem);
    let edge_key = dir.write("edge.key", &edge_leaf.key_pem);
    let cert = dir.write("connector.pem", &connector_leaf.cert_pem);
    let key = dir.write("connector.key", &connector_leaf.key_pem);
    let connector_pin = Fingerprint::of(&connector_leaf.cert_der);
    let pool = Arc::new(TunnelPool::default());
    let edge = TraversalListener::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        &edge_cert,
        &edge_key,
        vec![
            ConnectorIdentity {
                name: "inside".into(),
                pin: connector_pin,
                join: trusted.iter().map(|s| s.to_string()).collect(),
            },
            ConnectorIdentity {
                name: "second".into(),
                pin: Fingerprint::of(&second_leaf.cert_der),
                join: trusted.iter().map(|s| s.to_string()).collect(),
            },
        ],
        pool.clone(),
    )
    .unwrap();
    let proxy = Proxy::builder()
        .site(JOIN, Upstream::traversal(pool.clone()))
        // A new connector connection for each request (none kept alive), so
        // the pool is seen to refill.
        .bridge_pool(0, Duration::from_secs(1))
        .loops(1)
        .build()
        .unwrap();
    let stranger_leaf = ca.leaf(&["stranger.example.test"]);
    let stranger = (
        dir.write("stranger.pem", &stranger_leaf.cert_pem),
        dir.write("stranger.key", &stranger_leaf.key_pem),
    );
    let front = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![edge_leaf.cert_der.clone()],
            edge_leaf.key_der.clone_key(),
        )
        .unwrap(),
    );
    Ends {
        _dir: dir,
        ca,
        front,
        pool,
        edge,
        proxy,
        edge_pin: Fingerprint::of(&edge_leaf.cert_der),
        connector_pin,
        cert,
        key,
        cert2,
        key2,
        stranger,
    }
}

fn connector(e: &Ends, bridge: &str, pin: Fingerprint, pool: usize) -> Connector {
    connector_as(e, (&e.cert, &e.key), bridge, pin, pool)
}

fn connector_as(
    e: &Ends,
    (cert, key): (&std::path::Path, &std::path::Path),
    bridge: &str,
    pin: Fingerprint,
    pool: usize,
) -> Connector {
    Connector::start(ConnectorSettings {
        edges: vec![e.edge.local_addr().to_string()],
        edge_name: "edge.example.test".into(),
        edge_trust: EdgeTrust::Pin(pin),
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        sites: vec![(JOIN.into(), Upstream::parse(bridge).unwrap())],
        // The HTTPS bridge of the test kit is signed by the edge's test CA.
        upstream_tls: e.ca.client_config(),
        pool,
    })
    .unwrap()
}

#[test]
fn requests_reach_the_bridge_through_connections_the_inside_opened() {
    let e = edge(&[JOIN]);
    let (bridge, heads) = bridge();
    // No connector yet: the browser is told why, after the dial's time.
    let (status, body) = get(&e, "/early");
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("no connector ready"), "{body}");
    let c = connector(&e, &bridge, e.edge_pin, 2);
    wait::until("two connections ready at the edge", PATIENCE, || {
        match e.pool.ready(JOIN) {
            2 => Ok(()),
            n => Err(format!("{n} ready; {:?}", c.status())),
        }
    });
    for i in 0..5 {
        let (status, body) = get(&e, &format!("/meeting/{i}"));
        assert_eq!(
            (status, body.as_str()),
            (200, &*format!("hello /meeting/{i}"))
        );
        let head = heads.recv_timeout(PATIENCE).unwrap();
        assert!(
            head.contains("X-Forwarded-For: 127.0.0.1"),
            "the browser's address: {head}"
        );
    }
    // Used connections were replaced.
    wait::until("the pool refilled", PATIENCE, || match e.pool.ready(JOIN) {
        n if n >= 2 => Ok(()),
        n => Err(format!("{n} ready")),
    });
    let status = e.pool.status();
    assert_eq!(status.len(), 1, "{status:?}");
    assert_eq!(status[0].connector, "inside");
    assert!(status[0].used >= 5, "{status:?}");
    // Bytes counted per join URL and connector: the five requests and their
    // answers, at least.
    assert!(
        status[0].bytes_to_bridge >= 5 * 30 && status[0].bytes_from_bridge >= 5 * 20,
        "{status:?}"
    );
    assert!(c.status()[0].used >= 5, "{:?}", c.status());
    // The refills resumed a TLS session with the edge (no signatures).
    assert!(c.status()[0].resumed >= 1, "{:?}", c.status());
}

#[test]
fn an_unpinned_connector_or_a_join_url_it_may_not_serve_is_refused_with_the_reason() {
    // The edge trusts the connector for another join URL only.
    let e = edge(&["other.example.test"]);
    let (bridge, _heads) = bridge();
    let c = connector(&e, &bridge, e.edge_pin, 1);
    let why = wait::until("the refusal", PATIENCE, || {
        match c.status().first().and_then(|s| s.last_error.clone()) {
            Some((w, _)) => Ok(w),
            None => Err("no error yet".to_string()),
        }
    });
    assert!(why.contains("join URL not allowed"), "{why}");
    assert_eq!(e.pool.ready(JOIN), 0);
    let status = e.pool.status();
    let said = status
        .iter()
        .find(|s| s.connector == "inside")
        .and_then(|s| s.last_refusal.clone());
    assert!(said.is_some_and(|(w, _)| w.contains(JOIN)), "{status:?}");
    drop(c);
    // A connector pinning another certificate for the edge does not talk to it.
    let e = edge(&[JOIN]);
    let c = connector(&e, &bridge, e.connector_pin, 1);
    let why = wait::until("the refusal", PATIENCE, || {
        match c.status().first().and_then(|s| s.last_error.clone()) {
            Some((w, _)) => Ok(w),
            None => Err("no error yet".to_string()),
        }
    });
    assert!(why.contains("not the pinned one"), "{why}");
    assert_eq!(e.pool.ready(JOIN), 0);
}

#[test]
fn two_connectors_share_a_join_url_and_one_carries_on_when_the_other_stops() {
    let e = edge(&[JOIN]);
    let (bridge, _heads) = bridge();
    let first = connector(&e, &bridge, e.edge_pin, 2);
    let second = connector_as(&e, (&e.cert2, &e.key2), &bridge, e.edge_pin, 2);
    wait::until("both connectors ready", PATIENCE, || {
        let s = e.pool.status();
        match s.iter().filter(|s| s.idle == 2).count() {
            2 => Ok(()),
            _ => Err(format!("{s:?}")),
        }
    });
    for i in 0..4 {
        let (status, body) = get(&e, &format!("/{i}"));
        assert_eq!(status, 200, "{body} {:?}", e.pool.status());
    }
    let status = e.pool.status();
    assert!(
        status.iter().all(|s| s.used >= 1),
        "both carried: {status:?}"
    );
    // The first stops: its connections close, and the second serves alone.
    drop(first);
    wait::until("the first's connections gone", PATIENCE, || {
        match second.status()[0].ready {
            2 => {
                // Requests go through, skipping the first's closed connections.
                let (status, body) = get(&e, "/after");
                if status == 200 {
                    Ok(())
                } else {
                    Err(format!("{status} {body}"))
                }
            }
            n => Err(format!("second has {n} ready")),
        }
    });
    for i in 0..4 {
        assert_eq!(get(&e, &format!("/later/{i}")).0, 200);
    }
}

#[test]
fn a_connector_the_edge_does_not_pin_is_refused_at_the_handshake() {
    let e = edge(&[JOIN]);
    let (bridge, _heads) = bridge();
    let (cert, key) = e.stranger.clone();
    let c = connector_as(&e, (&cert, &key), &bridge, e.edge_pin, 1);
    let why = wait::until("the refusal", PATIENCE, || {
        match c.status().first().and_then(|s| s.last_error.clone()) {
            Some((w, _)) => Ok(w),
            None => Err("no error yet".to_string()),
        }
    });
    assert!(why.contains("TLS failed"), "{why}");
    assert_eq!(e.pool.ready(JOIN), 0);
    // The edge says why too.
    let status = e.pool.status();
    let refused = status.iter().find(|s| s.connector == "(not pinned)");
    let said = refused.and_then(|s| s.last_refusal.clone()).map(|(w, _)| w);
    assert!(
        said.is_some_and(|w| w.contains("is not pinned")),
        "{status:?}"
    );
}

/// A WSS tunnel through the edge: the browser's end after the 101.
fn wss(e: &Ends) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut b = browser(e);
    ws_upgrade(&mut b, JOIN);
    b
}

#[test]
fn wss_tunnels_of_a_stopped_connector_close_and_the_others_keep_echoing() {
    let e = edge(&[JOIN]);
    let bridge = causeway_testkit::bridge::start_bridge(&e.ca.leaf(&["localhost"]));
    let up = format!("https://localhost:{}", bridge.port());
    let first = connector(&e, &up, e.edge_pin, 4);
    let second = connector_as(&e, (&e.cert2, &e.key2), &up, e.edge_pin, 4);
    wait::until("both connectors ready", PATIENCE, || {
        let s = e.pool.status();
        match s.iter().filter(|s| s.idle == 4).count() {
            2 => Ok(()),
            _ => Err(format!("{s:?}")),
        }
    });
    let mut tunnels: Vec<_> = (0..100).map(|_| wss(&e)).collect();
    for (i, t) in tunnels.iter_mut().enumerate() {
        assert!(ws_echoes(t), "tunnel {i} does not echo");
    }
    let on_first = first.status()[0].active;
    let on_second = second.status()[0].active;
    assert_eq!(on_first + on_second, 100);
    assert!(on_first > 0 && on_second > 0, "{on_first} and {on_second}");
    // The first stops (as a killed connector's connections all close).
    first.stop();
    wait::until("the first's tunnels ended", PATIENCE, || {
        match first.status()[0].active {
            0 => Ok(()),
            n => Err(format!("{n} still carried")),
        }
    });
    let echoed = tunnels.iter_mut().map(ws_echoes).filter(|e| *e).count();
    assert_eq!(
        echoed, on_second,
        "the second's keep echoing, the first's are closed"
    );
    // New tunnels go through the second.
    for i in 0..10 {
        let mut t = wss(&e);
        assert!(ws_echoes(&mut t), "new tunnel {i}");
    }
}
