//! Upgrading `causeway serve` in place (SIGUSR2 or `POST /upgrade`): the
//! binary at the path this process started from runs again with the same
//! arguments; it reads and checks its configuration, then connects back over
//! a Unix socket and takes the relay over (the library's
//! `Relay::hand_over` / `RelayBuilder::resume`), with the admin and redirect
//! listeners. UDP allocations move with their relayed addresses; this
//! process serves its TURN-over-TCP/TLS clients and web proxy tunnels to
//! their end and exits. If the new process refuses (its configuration, a
//! listener changed) or dies first, this one serves on and says why.
//!
//! Under systemd (`Type=notify`) this process tells the manager the new one
//! is the unit's main process (`MAINPID=`), so `systemctl reload` and `stop`
//! reach it.

use std::ffi::OsString;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram, UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use log::{info, warn};
use turn_core::adapters::std::Relay;

/// The variable that tells a new process where to connect to take over.
pub(crate) const FROM: &str = "CAUSEWAY_UPGRADE_FROM";

/// How long the new process has to read its configuration and connect back
/// (loading certificates and keys is the slow part).
const CONNECT_WITHIN: Duration = Duration::from_secs(60);

/// What this process was started as: what an upgrade starts again.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    exe: PathBuf,
    args: Vec<OsString>,
}

impl Launch {
    /// This process's binary (its path as started, so that a binary replaced
    /// at that path is the one that runs) and arguments.
    pub(crate) fn of_this_process() -> io::Result<Launch> {
        let exe = std::env::current_exe()?;
        Ok(Launch {
            exe,
            args: std::env::args_os().skip(1).collect(),
        })
    }
}

/// An upgrade done: the new process's pid, and what was handed to it.
#[derive(Debug)]
pub(crate) struct Upgraded {
    pub(crate) pid: u32,
    pub(crate) allocations: usize,
    pub(crate) paused: Duration,
}

fn random_name() -> Result<String, String> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| format!("cannot read the OS random source: {e}"))?;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!("causeway-upgrade-{}-{hex}", std::process::id()))
}

/// Starts the new process and hands `relay` (and `named`, the program's own
/// listeners) to it. On an error this process serves on.
pub(crate) fn upgrade(
    launch: &Launch,
    relay: &Relay,
    named: &[(&str, BorrowedFd<'_>)],
) -> Result<Upgraded, String> {
    // An abstract socket: nothing on disk; only the child started here is
    // answered (its pid is checked on the connection).
    let name = random_name()?;
    let addr = UnixAddr::from_abstract_name(name.as_bytes())
        .map_err(|e| format!("cannot name the upgrade socket: {e}"))?;
    let listener = UnixListener::bind_addr(&addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| format!("cannot open the upgrade socket: {e}"))?;
    info!(
        "upgrade: starting {} with the same arguments",
        launch.exe.display()
    );
    let mut child = Command::new(&launch.exe)
        .args(&launch.args)
        .env(FROM, &name)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", launch.exe.display()))?;
    let result = connected(&listener, &mut child).and_then(|stream| {
        relay
            .hand_over(&stream, named)
            .map_err(|e| format!("the hand-over failed: {e}"))
    });
    let pid = child.id();
    match result {
        Ok(handed) => {
            reap(child);
            Ok(Upgraded {
                pid,
                allocations: handed.allocations,
                paused: handed.paused,
            })
        }
        Err(e) => {
            // It may wait still (for a go that will not come): end it.
            let _ = child.kill();
            reap(child);
            Err(e)
        }
    }
}

/// Waits for the child to connect (or exit); the connection.
fn connected(listener: &UnixListener, child: &mut Child) -> Result<UnixStream, String> {
    let deadline = Instant::now() + CONNECT_WITHIN;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let peer = rustix::net::sockopt::socket_peercred(&stream)
                    .map(|c| c.pid.as_raw_nonzero().get())
                    .ok();
                if peer.and_then(|p| u32::try_from(p).ok()) == Some(child.id()) {
                    stream
                        .set_nonblocking(false)
                        .map_err(|e| format!("cannot use the upgrade socket: {e}"))?;
                    return Ok(stream);
                }
                warn!("upgrade: a connection from pid {peer:?}, not the new process: closed");
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("cannot accept on the upgrade socket: {e}")),
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "the new process exited ({status}) before taking over; its log says why \
                 (status 2: it refused the configuration)"
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the new process did not connect within {} s",
                CONNECT_WITHIN.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for `child` on a thread, so that it never lingers as a zombie.
fn reap(mut child: Child) {
    let _ = std::thread::Builder::new()
        .name("causeway-reap".into())
        .spawn(move || {
            let _ = child.wait();
        });
}

/// In a process started by an upgrade: the connection to the old one.
pub(crate) fn inherited() -> Option<Result<UnixStream, String>> {
    let name = std::env::var_os(FROM)?;
    Some(
        UnixAddr::from_abstract_name(name.as_encoded_bytes())
            .and_then(|a| UnixStream::connect_addr(&a))
            .map_err(|e| format!("cannot reach the process being upgraded: {e}")),
    )
}

/// Tells the service manager `state` (`sd_notify`), if it listens
/// (`NOTIFY_SOCKET`); what went wrong otherwise.
pub(crate) fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(abstract_name) => UnixAddr::from_abstract_name(abstract_name),
        None => UnixAddr::from_pathname(PathBuf::from(&path)),
    };
    let sent = addr.and_then(|a| UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &a));
    if let Err(e) = sent {
        warn!("cannot notify the service manager at {path:?}: {e}");
    }
}
