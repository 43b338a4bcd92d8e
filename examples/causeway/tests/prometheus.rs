//! Metrics as Prometheus sees them: Debian's `promtool` finds nothing against
//! its conventions in `/metrics`, and a real Prometheus server scrapes the admin
//! port and answers queries about an allocation made through the relay.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;
use common::bridge::TempDir;
use common::tools::{ensure_package, run_with_timeout};

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A GET that may find nothing listening yet.
fn try_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// The first sample's value of an instant query, once it has one.
fn query(web: &str, q: &str, within: Duration) -> Option<f64> {
    let until = Instant::now() + within;
    while Instant::now() < until {
        let q: String = q
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let text = try_get(web, &format!("/api/v1/query?query={q}")).unwrap_or_default();
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(body)
            && let Some(s) = v["data"]["result"][0]["value"][1].as_str()
        {
            return s.parse().ok();
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    None
}

#[test]
fn prometheus_scrapes_the_admin_port_and_promtool_finds_nothing_to_fix() {
    ensure_package("/usr/bin/prometheus", "prometheus");
    let server = Server::start(&["--listen", "127.0.0.1:0", "--user", "alice:pw"]);
    let admin = server.admin_addr();

    let metrics = common::http_get(&admin, "/metrics");
    let body = metrics.split("\r\n\r\n").nth(1).unwrap().to_string();
    let dir = TempDir::new("prometheus");
    let file = dir.write("metrics.txt", &body);
    let (ok, out) = run_with_timeout(
        Command::new("sh").args([
            "-c",
            &format!("promtool check metrics < {}", file.display()),
        ]),
        Duration::from_secs(20),
    );
    assert!(ok && out.trim().is_empty(), "promtool: {out}");

    let port = free_tcp_port();
    let web = format!("127.0.0.1:{port}");
    let cfg = dir.write(
        "prometheus.yml",
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: causeway\n    \
             static_configs:\n      - targets: ['{admin}']\n"
        ),
    );
    let _prometheus = Prometheus(
        Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    assert_eq!(
        query(&web, "up{job=\"causeway\"}", Duration::from_secs(30)),
        Some(1.0),
        "the target is up"
    );
    let (ok, out) = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_causeway")).args([
            "allocate",
            "--server",
            &server.addr().to_string(),
            "--user",
            "alice:pw",
        ]),
        Duration::from_secs(20),
    );
    assert!(ok, "{out}");
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let created = query(
            &web,
            "causeway_allocations_created_total",
            Duration::from_secs(5),
        );
        if created == Some(1.0) {
            break;
        }
        assert!(
            Instant::now() < until,
            "Prometheus never saw the allocation: {created:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        query(&web, "causeway_ready", Duration::from_secs(5)),
        Some(1.0)
    );
    // Bounded labels: no series carries a username.
    assert_eq!(
        query(
            &web,
            "count({job=\"causeway\", user!=\"\"}) or vector(0)",
            Duration::from_secs(5)
        ),
        Some(0.0)
    );
}
