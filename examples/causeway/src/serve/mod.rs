//! `causeway serve`: binds the listeners, runs one worker per core, and stops them
//! all on SIGINT or SIGTERM.
//!
//! Each worker owns its own UDP and TCP listening sockets, bound with SO_REUSEPORT
//! to the same addresses, so the kernel spreads clients across cores by their
//! address and port and the workers share nothing on the packet path.

mod limiter;
mod net;
mod tcp;
mod worker;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use log::info;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config::Config;

/// Why the server could not start or keep running.
#[derive(Debug)]
pub(crate) enum ServeError {
    /// A listener could not be bound.
    Bind {
        /// "udp" or "tcp".
        transport: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// Anything else at start (event loop, signals, threads).
    Setup(&'static str, io::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Bind {
                transport,
                addr,
                source,
            } => write!(
                f,
                "cannot listen on {transport} {addr}: {source} (is another server, such as \
                 coturn, already on this port?)"
            ),
            ServeError::Setup(what, e) => write!(f, "cannot {what}: {e}"),
        }
    }
}

impl std::error::Error for ServeError {}

/// Runs the server until SIGINT or SIGTERM.
pub(crate) fn run(cfg: Config) -> Result<(), ServeError> {
    let cfg = Arc::new(cfg);
    let threads = cfg.worker_threads();

    // Bind everything before spawning anything, so a bad address stops the start.
    // The first socket of each address fixes its port (which matters for port 0);
    // the others join it with SO_REUSEPORT.
    let mut listeners: Vec<worker::Listeners> = (0..threads).map(|_| Default::default()).collect();
    let mut bound = Vec::new();
    for &addr in &cfg.listen {
        let mut actual = addr;
        for l in listeners.iter_mut() {
            let udp = net::bind_udp(actual).map_err(|source| ServeError::Bind {
                transport: "udp",
                addr: actual,
                source,
            })?;
            actual = udp
                .local_addr()
                .map_err(|e| ServeError::Setup("read a local address", e))?;
            l.udp.push(udp);
        }
        for l in listeners.iter_mut() {
            let tcp = net::bind_tcp(actual).map_err(|source| ServeError::Bind {
                transport: "tcp",
                addr: actual,
                source,
            })?;
            l.tcp.push(tcp);
        }
        bound.push(actual);
    }

    let shutdown = Arc::new(AtomicBool::new(false));
    let mut wakers = Vec::new();
    let mut handles = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let w = worker::Worker::new(i, l, cfg.clone(), shutdown.clone())
            .map_err(|e| ServeError::Setup("create an event loop", e))?;
        wakers.push(w.waker());
        let handle = std::thread::Builder::new()
            .name(format!("causeway-{i}"))
            .spawn(move || w.run())
            .map_err(|e| ServeError::Setup("spawn a worker thread", e))?;
        handles.push(handle);
    }

    for a in &bound {
        // On stdout, for scripts and tests that start the server on port 0.
        println!("causeway: listening on udp {a} and tcp {a}");
    }
    println!("causeway: ready");
    info!(
        "serving STUN on {} address(es) with {threads} worker(s); stop with Ctrl-C",
        bound.len()
    );

    let mut signals = Signals::new([SIGINT, SIGTERM])
        .map_err(|e| ServeError::Setup("install signal handlers", e))?;
    if let Some(sig) = signals.forever().next() {
        info!("signal {sig} received: stopping");
    }
    shutdown.store(true, Ordering::SeqCst);
    for w in &wakers {
        let _ = w.wake();
    }
    for h in handles {
        let _ = h.join();
    }
    info!("stopped");
    Ok(())
}
