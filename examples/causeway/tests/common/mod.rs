//! Starting the real `causeway` binary for end-to-end tests, and finding the
//! third-party tools (coturn's) they run against it.

#![allow(dead_code, unreachable_pub)]

pub mod turn;

#[allow(unused_imports)]
pub use causeway_testkit::{Output, coturn_tool, ensure_package, run_with_timeout};
#[allow(unused_imports)]
pub use causeway_testkit::{bridge, chromium, delay, http, prometheus, tools, wait};

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wait::PATIENCE;

/// A running `causeway serve`, stopped (SIGTERM, then kill) when dropped. When
/// the test fails, dropping it prints the end of its log.
pub struct Server {
    pub child: Child,
    /// The addresses it printed that it listens on.
    pub addrs: Vec<SocketAddr>,
    /// Its log (stderr), kept as it comes.
    pub log: Output,
    /// What it printed on stdout at start.
    pub startup: Vec<String>,
}

impl Server {
    /// The admin interface's address it printed.
    pub fn admin_addr(&self) -> String {
        self.startup
            .iter()
            .find_map(|l| l.strip_prefix("causeway: admin on http://"))
            .and_then(|r| r.split('/').next())
            .expect("admin address printed")
            .to_string()
    }

    /// Where it drew its admin token, if it drew one (no `admin_token_file`).
    fn token_path(&self) -> Option<&str> {
        self.startup
            .iter()
            .find_map(|l| l.strip_prefix("causeway: admin token in "))
            .and_then(|r| r.split(" (").next())
    }

    /// The admin token it printed the place of.
    pub fn admin_token(&self) -> String {
        let path = self.token_path().expect("the admin token's file printed");
        std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .trim()
            .to_string()
    }

    /// A request to the admin port with the admin token; the whole response.
    pub fn admin(&self, method: &str, path: &str) -> String {
        let auth = format!("Authorization: Bearer {}\r\n", self.admin_token());
        try_http_with(&self.admin_addr(), method, path, &auth)
            .unwrap_or_else(|e| panic!("{method} {path} on the admin port: {e}"))
    }

    /// The status page, parsed.
    pub fn status(&self) -> serde_json::Value {
        let text = self.admin("GET", "/status");
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str(body).unwrap_or_else(|e| panic!("status JSON: {e}: {text}"))
    }

    /// Waits until the status page satisfies `pred`; the page. Status snapshots
    /// are published about once a second.
    pub fn wait_status(
        &self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        if wait::holds(PATIENCE, || {
            last = self.status();
            pred(&last)
        }) {
            return last;
        }
        panic!("waited {PATIENCE:?} for the status to show {what}; last: {last:#}");
    }

    /// Starts `causeway serve` with `args` and waits until it says it is ready.
    pub fn start(args: &[&str]) -> Server {
        Server::start_env(args, &[])
    }

    /// As [`Server::start`], with environment variables set.
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        // Tests run in parallel: never the default admin port.
        let admin: &[&str] = if args.contains(&"--admin") {
            &[]
        } else {
            &["--admin", "127.0.0.1:0"]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_causeway"))
            .arg("serve")
            .args(args)
            .args(admin)
            .env("RUST_LOG", "debug")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start causeway");
        let log = Output::new();
        log.collect(child.stderr.take().unwrap());
        let stdout = Output::new();
        stdout.collect(child.stdout.take().unwrap());
        let ready = stdout.wait_line(PATIENCE, |l| l.starts_with("causeway: ready"));
        let startup: Vec<String> = stdout.lines();
        let addrs: Vec<SocketAddr> = startup
            .iter()
            .filter_map(|l| l.strip_prefix("causeway: listening on udp "))
            .filter_map(|r| r.split_whitespace().next()?.parse().ok())
            .collect();
        if ready.is_none() {
            let _ = child.kill();
            let status = child.wait();
            log.wait_closed(Duration::from_secs(10));
            panic!(
                "causeway did not say it was ready within {PATIENCE:?} ({status:?}); stdout: \
                 {startup:?}\n--- its log ---\n{}",
                log.tail(80)
            );
        }
        Server {
            child,
            addrs,
            log,
            startup,
        }
    }

    /// The first listener.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The address a startup line beginning with `prefix` names, e.g.
    /// `"causeway: listening on tls "`.
    pub fn startup_addr(&self, prefix: &str) -> SocketAddr {
        self.startup
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no `{prefix}` in {:?}", self.startup))
    }

    /// Log lines written so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lines()
    }

    /// Waits for a log line containing `needle`; panics with the log's end if
    /// none comes.
    pub fn wait_log(&self, needle: &str) -> String {
        self.log
            .wait_line(PATIENCE, |l| l.contains(needle))
            .unwrap_or_else(|| {
                panic!(
                    "no log line with `{needle}` within {PATIENCE:?}\n--- its log ---\n{}",
                    self.log.tail(80)
                )
            })
    }

    /// The end of its log, for a failure message.
    pub fn log_tail(&self) -> String {
        format!("--- causeway log ---\n{}", self.log.tail(80))
    }

    /// Sends SIGTERM and waits (up to the test limit) for the process to exit;
    /// how long that took, and whether it exited successfully.
    pub fn terminate(&mut self) -> (Duration, bool) {
        let start = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = wait::until("causeway to exit after SIGTERM", PATIENCE, || {
            match self.child.try_wait() {
                Ok(Some(status)) => Ok(status),
                Ok(None) => Err("still running".to_string()),
                Err(e) => Err(e.to_string()),
            }
        });
        (start.elapsed(), status.success())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            // Killed, it could not remove the token file it drew (a stop does).
            if let Some(path) = self.token_path()
                && path.starts_with(&std::env::temp_dir().display().to_string())
            {
                let _ = std::fs::remove_file(path);
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "causeway serve (startup {:?}) ended; {}",
                self.startup,
                self.log_tail()
            );
        }
    }
}

/// `causeway serve` terminating TLS for `join` with a leaf of `ca`, proxying per
/// `proxy` (`HOST=UPSTREAM`) and trusting `ca` upstream; TURN on loopback beside it.
/// Returns the server, the directory holding its files (`front.pem`, `front.key`,
/// `ca.pem`), and the TLS listener.
pub fn start_front(
    ca: &bridge::TestCa,
    join: &str,
    proxy: &str,
) -> (Server, bridge::TempDir, SocketAddr) {
    let front = ca.leaf(&[join]);
    let dir = bridge::TempDir::new("front");
    let cert = dir.write("front.pem", &front.cert_pem);
    let key = dir.write("front.key", &front.key_pem);
    let ca_file = dir.write("ca.pem", &ca.cert_pem);
    let server = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        "--tls-listen",
        "127.0.0.1:0",
        "--user",
        "a:b",
        "--cert",
        &cert.display().to_string(),
        "--key",
        &key.display().to_string(),
        "--upstream-ca",
        &ca_file.display().to_string(),
        "--proxy",
        proxy,
    ]);
    let tls = server.startup_addr("causeway: listening on tls ");
    (server, dir, tls)
}

/// The front's files in `dir` (a certificate for `joins` from `ca`, its key, the
/// CA to verify web bridges with) and the configuration lines that name them,
/// with every listener (TURN, TLS, port 80, admin) on a loopback port of its own
/// and the user `alice:pw`. Callers add their `proxy` and other lines.
pub fn front_toml(ca: &bridge::TestCa, joins: &[&str], dir: &bridge::TempDir) -> String {
    let front = ca.leaf(joins);
    let cert = dir.write("front.pem", &front.cert_pem);
    let key = dir.write("front.key", &front.key_pem);
    let ca_file = dir.write("ca.pem", &ca.cert_pem);
    format!(
        r#"listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:0"]
http_redirect = "127.0.0.1:0"
admin = "127.0.0.1:0"
cert = "{cert}"
key = "{key}"
upstream_ca = "{ca}"
user = ["alice:pw"]
"#,
        cert = cert.display(),
        key = key.display(),
        ca = ca_file.display(),
    )
}

/// A GET on plain HTTP; the whole response.
pub fn http_get(addr: &str, path: &str) -> String {
    try_http(addr, "GET", path).unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

/// A request on plain HTTP with a `Host` of the address itself; the whole
/// response, or why there is none.
pub fn try_http(addr: &str, method: &str, path: &str) -> std::io::Result<String> {
    try_http_with(addr, method, path, "")
}

/// As [`try_http`], with more header lines (each ending in CRLF).
pub fn try_http_with(addr: &str, method: &str, path: &str, extra: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// The status code of a GET of `path` on the admin port.
pub fn status_code(admin: &str, path: &str) -> String {
    http_get(admin, path)
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}
