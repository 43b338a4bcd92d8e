//! Debian's Prometheus server for end-to-end tests: started on a scrape
//! configuration of its own, stopped when dropped, asked instant queries over
//! its HTTP API.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tools::ensure_package;

/// A running `prometheus`, killed when dropped.
pub struct Prometheus {
    child: Child,
    /// Where its HTTP API listens.
    pub web: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus in `dir`, scraping `targets` every second.
    pub fn start(dir: &Path, targets: &[String]) -> Prometheus {
        ensure_package("/usr/bin/prometheus", "prometheus");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let web = format!("127.0.0.1:{port}");
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let cfg = dir.join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: causeway\n    \
                 static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ),
        )
        .unwrap();
        let child = Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        Prometheus { child, web }
    }

    /// The first sample's value of instant query `q`, once it has one within
    /// `within`.
    pub fn query(&self, q: &str, within: Duration) -> Option<f64> {
        let until = Instant::now() + within;
        let q: String = q
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        while Instant::now() < until {
            let text = try_get(&self.web, &format!("/api/v1/query?query={q}")).unwrap_or_default();
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

    /// Waits until `q` evaluates to `want`.
    pub fn wait_for(&self, q: &str, want: f64, within: Duration) -> Result<(), Option<f64>> {
        let until = Instant::now() + within;
        let mut last = None;
        while Instant::now() < until {
            last = self.query(q, Duration::from_secs(2));
            if last == Some(want) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        Err(last)
    }
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
