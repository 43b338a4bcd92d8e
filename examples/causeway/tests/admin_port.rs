//! The admin port against the attacks a security review tried: a cross-site
//! `text/plain` POST from a page open on the operator's machine, a
//! DNS-rebinding `Host`, requests without the admin token, and one slow client
//! trying to starve the probes. Probes and metrics stay open; the rest needs
//! the token, which a reload of `admin_token_file` replaces.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::bridge::TempDir;
use common::wait::PATIENCE;
use common::{Server, try_http_with};

/// The status code of a request with the header lines `extra`.
fn code(admin: &str, method: &str, path: &str, extra: &str) -> u16 {
    let text = try_http_with(admin, method, path, extra)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: {text}"))
}

#[test]
fn only_the_token_holder_reads_status_and_reloads_and_never_cross_site() {
    let server = Server::start(&["--listen", "127.0.0.1:0", "--user", "alice:pw"]);
    let admin = server.admin_addr();
    let token = server.admin_token();
    assert!(token.len() >= 32, "a drawn token: {token}");
    let bearer = format!("Authorization: Bearer {token}\r\n");

    // Probes and metrics are open, as a kubelet and Prometheus ask them.
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(code(&admin, "GET", path, ""), 200, "{path}");
    }
    // The usage page itself holds no data.
    assert_eq!(code(&admin, "GET", "/", ""), 200);
    // Everything else needs the token.
    for path in ["/status", "/history"] {
        assert_eq!(code(&admin, "GET", path, ""), 401, "{path}");
        assert_eq!(code(&admin, "GET", path, &bearer), 200, "{path}");
    }
    let wrong = "Authorization: Bearer 0000000000000000000000000000000000000000\r\n";
    assert_eq!(code(&admin, "GET", "/status", wrong), 401);

    // A DNS-rebinding page: its own domain in Host, even with a token.
    let mut s = TcpStream::connect(&admin).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        s,
        "GET /status HTTP/1.1\r\nHost: attacker.example:4455\r\n{bearer}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 421"), "{text}");
    assert!(!text.contains("alice"), "{text}");

    // The cross-site `text/plain` POST that reloaded and drained the node before.
    let cross = "Origin: https://attacker.example\r\nContent-Type: text/plain\r\n";
    assert_eq!(code(&admin, "POST", "/reload", cross), 403);
    assert_eq!(code(&admin, "POST", "/drain", cross), 403);
    let fetch = "Sec-Fetch-Site: cross-site\r\n";
    assert_eq!(code(&admin, "POST", "/drain", fetch), 403);
    assert_eq!(code(&admin, "POST", "/drain", ""), 401, "no token");
    assert!(!server.log.contains("draining"), "{}", server.log_tail());
    assert_eq!(code(&admin, "GET", "/readyz", ""), 200, "still ready");
    // The token holder may.
    assert_eq!(code(&admin, "POST", "/reload", &bearer), 200);
    server.wait_log("admin: configuration reloaded");
}

#[test]
fn a_slow_client_delays_no_probe() {
    let server = Server::start(&["--listen", "127.0.0.1:0", "--user", "alice:pw"]);
    let admin = server.admin_addr();
    // One byte every 1.5 s: it used to hold the only admin connection.
    let mut slow = TcpStream::connect(&admin).unwrap();
    let trickle = std::thread::spawn(move || {
        let start = Instant::now();
        for b in b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n" {
            if slow.write_all(&[*b]).is_err() {
                return Some(start.elapsed());
            }
            // The attack's own pace.
            std::thread::sleep(Duration::from_millis(1500));
        }
        None
    });
    // Twelve probes while it trickles, all answered.
    for i in 0..12 {
        assert_eq!(code(&admin, "GET", "/healthz", ""), 200, "probe {i}");
    }
    // And the slow one is cut once its request's time is up (5 s), long
    // before it would have finished (a minute).
    let cut = trickle.join().unwrap();
    assert!(cut.is_some(), "the trickling client was never cut");
}

#[test]
fn a_token_file_is_read_at_start_and_again_at_reload() {
    let dir = TempDir::new("admin-token");
    let token = dir.write("admin.token", "first-token-0123456789\n");
    let cfg = dir.write(
        "causeway.toml",
        &format!(
            "listen = [\"127.0.0.1:0\"]\nuser = [\"a:b\"]\nadmin = \"127.0.0.1:0\"\nadmin_token_file = \"{}\"\n",
            token.display()
        ),
    );
    let server = Server::start(&["--config", cfg.to_str().unwrap()]);
    let admin = server.admin_addr();
    let first = "Authorization: Bearer first-token-0123456789\r\n";
    let second = "Authorization: Bearer second-token-0123456789\r\n";
    assert_eq!(server.admin_token(), "first-token-0123456789");
    assert_eq!(code(&admin, "GET", "/status", first), 200);
    dir.write("admin.token", "second-token-0123456789\n");
    assert_eq!(code(&admin, "POST", "/reload", first), 200);
    assert_eq!(code(&admin, "GET", "/status", first), 401, "the old one");
    assert_eq!(code(&admin, "GET", "/status", second), 200, "the new one");
    // A token too short to be one refuses the reload and keeps the running one.
    dir.write("admin.token", "short\n");
    let text = try_http_with(&admin, "POST", "/reload", second).unwrap();
    assert!(text.starts_with("HTTP/1.1 422"), "{text}");
    assert!(text.contains("admin_token_file"), "{text}");
    assert!(!text.contains("short"), "no secret in the answer: {text}");
    assert_eq!(code(&admin, "GET", "/status", second), 200);
}
