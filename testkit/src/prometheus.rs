//! Debian's Prometheus server for end-to-end tests: started on a scrape
//! configuration of its own and waited for (`/-/ready`), stopped when dropped,
//! asked instant queries over its HTTP API; its log and its targets' state
//! explain a failed wait.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::output::Output;
use crate::tools::ensure_package;
use crate::wait;

/// A running `prometheus`, killed when dropped.
pub struct Prometheus {
    child: Child,
    /// Where its HTTP API listens.
    pub web: String,
    /// Its log.
    pub output: Output,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus in `dir`, scraping `targets` every second. Its web
    /// port is drawn free and may be taken before it binds it: then it exits,
    /// and it is started again on another.
    pub fn start(dir: &Path, targets: &[String]) -> Prometheus {
        ensure_package("/usr/bin/prometheus", "prometheus");
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
        let mut last = String::new();
        for attempt in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let web = format!("127.0.0.1:{port}");
            let mut child = Command::new("/usr/bin/prometheus")
                .arg(format!("--config.file={}", cfg.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join(format!("data-{attempt}")).display()
                ))
                .arg(format!("--web.listen-address={web}"))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start prometheus");
            let output = Output::of(&mut child);
            let mut prometheus = Prometheus { child, web, output };
            let ready = wait::poll(Duration::from_secs(120), || {
                if let Ok(Some(status)) = prometheus.child.try_wait() {
                    return Ok(Err(format!("exited: {status}")));
                }
                match try_get(&prometheus.web, "/-/ready") {
                    Some(r) if r.starts_with("HTTP/1.1 200") => Ok(Ok(())),
                    other => Err(format!(
                        "/-/ready: {:?}",
                        other.map(|r| r.lines().next().map(str::to_string))
                    )),
                }
            });
            match ready {
                Ok(Ok(())) => return prometheus,
                Ok(Err(why)) => last = format!("{why}\n{}", prometheus.explain()),
                Err(e) => panic!(
                    "prometheus never became ready: {e}\n{}",
                    prometheus.explain()
                ),
            }
        }
        panic!("prometheus did not start: {last}");
    }

    /// Its scrape targets' state and the end of its log, for a failure message.
    pub fn explain(&self) -> String {
        let targets = try_get(&self.web, "/api/v1/targets").unwrap_or_default();
        let body = targets.split("\r\n\r\n").nth(1).unwrap_or_default();
        format!(
            "--- prometheus targets ---\n{body}\n--- prometheus log ---\n{}",
            self.output.tail(30)
        )
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
            // A poll step: the query's answer is what is awaited.
            std::thread::sleep(Duration::from_millis(250));
        }
        None
    }

    /// Waits until `q` evaluates to `want`; on failure, the last value, the
    /// targets and the log.
    pub fn wait_for(&self, q: &str, want: f64, within: Duration) -> Result<(), String> {
        let mut last = None;
        let held = wait::holds(within, || {
            last = self.query(q, Duration::from_secs(2));
            last == Some(want)
        });
        if held {
            Ok(())
        } else {
            Err(format!(
                "{q}: {last:?} after {within:?}, not {want}\n{}",
                self.explain()
            ))
        }
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
