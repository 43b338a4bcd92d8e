//! Third-party tools for end-to-end tests: Debian's packages installed when
//! missing (coturn's `turnserver`, `turnutils_uclient`, `turnutils_peer`), a
//! tool run with a time limit, and coturn's UDP echo peer, started and waited
//! for.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::output::Output;
use crate::wait;

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
/// pipe. A command killed at the limit fails, and its output ends with a line
/// saying so.
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> (bool, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let output = Output::of(&mut child);
    let start = Instant::now();
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        // A poll step: the child's exit is what is awaited.
        std::thread::sleep(Duration::from_millis(20));
    };
    // Whatever the child wrote before it ended (its own children may hold the
    // pipes open longer: never wait on them past the limit).
    output.wait_closed(Duration::from_secs(10));
    let mut text = output.lines().join("\n");
    text.push('\n');
    match status {
        Some(s) if !s.success() => text.push_str(&format!("[{s}]\n")),
        None => text.push_str(&format!(
            "[killed: still running after {limit:?}, the test's limit]\n"
        )),
        _ => {}
    }
    (status.is_some_and(|s| s.success()), text)
}

/// Where the echo peer runs: another loopback address than the server's own
/// (127.0.0.1), which the peer policy never relays to.
pub const PEER_IP: &str = "127.0.0.2";

/// A `turnutils_peer` UDP echo server on loopback, stopped when dropped.
pub struct Peer(pub Child, pub u16);

impl Peer {
    /// Starts the echo peer on [`PEER_IP`] and returns once it echoes.
    pub fn start() -> Peer {
        Peer::start_on(PEER_IP.parse().expect("an IP"))
    }

    /// Starts the echo peer on `ip` (a loopback address) and returns once it
    /// echoes. The port is picked free and may be taken before the peer binds
    /// it: then another is tried.
    pub fn start_on(ip: std::net::IpAddr) -> Peer {
        let tool = coturn_tool("turnutils_peer");
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_udp_port_on(ip);
            let mut child = Command::new(&tool)
                .args(["-L", &ip.to_string(), "-p", &port.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start turnutils_peer");
            let output = Output::of(&mut child);
            let addr = std::net::SocketAddr::new(ip, port);
            let from = if ip.is_ipv4() {
                std::net::IpAddr::from([127, 0, 0, 1])
            } else {
                std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
            };
            let echoes = wait::poll(wait::PATIENCE, || {
                if let Ok(Some(status)) = child.try_wait() {
                    return Ok(Err(format!("exited: {status}")));
                }
                wait::try_udp_echo(from, addr, Duration::from_secs(1)).map(Ok)
            });
            match echoes {
                Ok(Ok(())) => return Peer(child, port),
                Ok(Err(why)) | Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = format!("turnutils_peer on {addr}: {why}\n{}", output.tail(20));
                }
            }
        }
        panic!("the echo peer did not start: {last}");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A UDP port free on [`PEER_IP`] right now.
pub fn free_udp_port() -> u16 {
    free_udp_port_on(PEER_IP.parse().expect("an IP"))
}

/// A port free for both UDP and TCP on 127.0.0.1 right now, outside `avoid`
/// (a relay range of a server the test starts, which must not take it).
pub fn free_port_outside(avoid: std::ops::RangeInclusive<u16>) -> u16 {
    loop {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if !avoid.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A UDP port free on `ip` right now.
pub fn free_udp_port_on(ip: std::net::IpAddr) -> u16 {
    std::net::UdpSocket::bind((ip, 0))
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

/// A process known by its pid only (one that another process started, such
/// as the new `causeway serve` an upgrade starts), stopped with SIGINT when
/// dropped.
#[derive(Debug)]
pub struct Pid(pub u32);

impl Drop for Pid {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.to_string()])
            .status();
    }
}

/// The new process's pid and the UDP allocations moved, from the line
/// `causeway serve` logs when an upgrade is done (`upgraded: pid N serves on
/// (M UDP allocation(s) moved, ...`); panics on another line.
pub fn upgraded(line: &str) -> (u32, u64) {
    let after = |marker: &str| -> u64 {
        line.split(marker)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no `{marker}N` in {line}"))
    };
    let pid = u32::try_from(after("upgraded: pid ")).unwrap_or_else(|_| panic!("{line}"));
    (pid, after("serves on ("))
}

/// Runs a command (`args[0]` with the rest) that must succeed, such as `ip` or
/// `nft` setting up a namespace; panics with its stderr if it fails.
pub fn sh(args: &[&str]) {
    let Some((program, rest)) = args.split_first() else {
        return;
    };
    let out = Command::new(program).args(rest).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A UDP echo peer of our own on `ip` (port chosen by the system), answering
/// every datagram to its sender from a thread, for as long as the test runs.
pub fn udp_echo_peer(ip: &str) -> std::net::SocketAddr {
    let sock = std::net::UdpSocket::bind((ip, 0)).expect("bind the echo peer");
    let addr = sock.local_addr().expect("the echo peer's address");
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(&buf[..n], from);
        }
    });
    addr
}
