//! Starting the real `causeway` binary for end-to-end tests, and finding the
//! third-party tools (coturn's) they run against it.

#![allow(dead_code, unreachable_pub)]

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
}

impl Server {
    /// Starts `causeway serve` with `args` and waits until it reports its listeners.
    pub fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_causeway"))
            .arg("serve")
            .args(args)
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
        assert!(
            !addrs.is_empty(),
            "causeway did not report its listeners; stdout: {startup:?}"
        );
        Server { child, addrs, log }
    }

    /// The first listener.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
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

/// The path of a coturn tool. When Debian's `coturn` package is missing, installs
/// it with apt-get (as `.ci/run` does), so `cargo test` works on a fresh machine;
/// fails the test with the fix when that is not possible.
pub fn coturn_tool(name: &str) -> String {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    let path = format!("/usr/bin/{name}");
    if !std::path::Path::new(&path).exists() {
        INSTALL.call_once(|| {
            let install = || {
                Command::new("apt-get")
                    .args(["install", "-y", "-q", "coturn"])
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .status()
                    .is_ok_and(|s| s.success())
            };
            if !install() {
                let _ = Command::new("apt-get").args(["update", "-q"]).status();
                install();
            }
        });
    }
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is missing and could not be installed: install Debian's `coturn` package"
    );
    path
}

/// Runs a command with a time limit; returns (success, stdout + stderr).
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> (bool, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tool");
    let start = std::time::Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("collect output");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}
