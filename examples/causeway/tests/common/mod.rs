//! Starting the real `causeway` binary for end-to-end tests, and finding the
//! third-party tools (coturn's) they run against it.

#![allow(dead_code, unreachable_pub)]

pub mod bridge;
pub mod chromium;
pub mod delay;
pub mod prometheus;
pub mod tools;
pub mod turn;

#[allow(unused_imports)]
pub use tools::{coturn_tool, ensure_package, run_with_timeout};

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `causeway serve`, stopped (SIGTERM, then kill) when dropped.
pub struct Server {
    pub child: Child,
    /// The addresses it printed that it listens on.
    pub addrs: Vec<SocketAddr>,
    /// Lines of its stderr (its log), collected in the background.
    pub log: mpsc::Receiver<String>,
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

    /// The status page, parsed.
    pub fn status(&self) -> serde_json::Value {
        let text = http_get(&self.admin_addr(), "/status");
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str(body).expect("status JSON")
    }

    /// Starts `causeway serve` with `args` and waits until it reports its listeners.
    pub fn start(args: &[&str]) -> Server {
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
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start causeway");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (log_tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if log_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (addr_tx, addr_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = addr_tx.send(line);
            }
        });
        let mut addrs = Vec::new();
        let mut startup = Vec::new();
        while let Ok(line) = addr_rx.recv_timeout(Duration::from_secs(10)) {
            if let Some(rest) = line.strip_prefix("causeway: listening on udp ") {
                let addr = rest.split_whitespace().next().unwrap();
                addrs.push(addr.parse().unwrap());
            } else if line.starts_with("causeway: ready") {
                break;
            }
            startup.push(line);
        }
        if addrs.is_empty() {
            let _ = child.kill();
            std::thread::sleep(Duration::from_millis(100));
            let errors: Vec<String> = log.try_iter().collect();
            panic!("causeway did not start; stdout: {startup:?}; stderr: {errors:?}");
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
        self.log.try_iter().collect()
    }

    /// Sends SIGTERM and returns whether it exited successfully within 5 s.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..50 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
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
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
