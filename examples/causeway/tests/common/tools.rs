//! Third-party tools for end-to-end tests: Debian's packages installed when
//! missing (coturn's `turnserver`, `turnutils_uclient`, `turnutils_peer`), and
//! running a tool with a time limit. Shared with the embedding examples' tests.

#![allow(dead_code, unreachable_pub)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Installs Debian's `package` with apt-get when `bin` is missing (as `.ci/run`
/// does), so `cargo test` works on a fresh machine; fails the test with the fix
/// when that is not possible.
pub fn ensure_package(bin: &str, package: &str) {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if !std::path::Path::new(bin).exists() {
        let install = || {
            Command::new("apt-get")
                .args(["install", "-y", "-q", package])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success())
        };
        if !install() {
            let _ = Command::new("apt-get").args(["update", "-q"]).status();
            install();
        }
    }
    assert!(
        std::path::Path::new(bin).exists(),
        "{bin} is missing and could not be installed: install Debian's `{package}` package"
    );
}

/// The path of a coturn tool (Debian's `coturn` package, installed if missing).
pub fn coturn_tool(name: &str) -> String {
    let path = format!("/usr/bin/{name}");
    ensure_package(&path, "coturn");
    path
}

/// Runs a command with a time limit; returns (success, stdout + stderr). The
/// output is read while the command runs, so a chatty tool never blocks on a full
/// pipe.
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> (bool, String) {
    use std::io::Read;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tool");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = std::time::Instant::now();
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut text = out_reader.join().unwrap_or_default();
    text.push_str(&err_reader.join().unwrap_or_default());
    (status.is_some_and(|s| s.success()), text)
}

/// Where the echo peer runs: another loopback address than the server's own
/// (127.0.0.1), which the peer policy never relays to.
pub const PEER_IP: &str = "127.0.0.2";

/// A `turnutils_peer` UDP echo server on loopback, stopped when dropped.
pub struct Peer(pub Child, pub u16);

impl Peer {
    pub fn start() -> Peer {
        let tool = coturn_tool("turnutils_peer");
        let port = free_udp_port();
        let child = Command::new(tool)
            .args(["-L", PEER_IP, "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start turnutils_peer");
        std::thread::sleep(Duration::from_millis(300));
        Peer(child, port)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind((PEER_IP, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Parses "tot_send_msgs=N, tot_recv_msgs=M" and "Total lost packets L" from
/// uclient's output.
pub fn totals(out: &str) -> Option<(u64, u64, u64)> {
    let num_after = |key: &str| -> Option<u64> {
        let i = out.rfind(key)? + key.len();
        out[i..]
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    Some((
        num_after("tot_send_msgs=")?,
        num_after("tot_recv_msgs=")?,
        num_after("Total lost packets")?,
    ))
}
