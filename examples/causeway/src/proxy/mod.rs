//! The web proxy on std: HTTPS and WSS from browsers to the web bridges behind it,
//! deciding with `proxy-core` and doing the I/O and TLS here.
//!
//! Connections arrive from the TURN workers, which own the TLS listener and hand
//! over every connection whose opening (inside TLS) is HTTP. Each such connection
//! gets a thread that reads requests, refuses or forwards them (streaming bodies
//! both ways without buffering them whole), and, after a valid 101, relays the
//! WebSocket until either side closes.

mod io;
mod redirect;
mod session;
mod stream;
pub(crate) mod tls;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use log::{debug, warn};
use proxy_core::allow::Rule;
use proxy_core::route::Site;
use proxy_core::timer::Deadlines;

pub(crate) use redirect::serve_redirect;
pub(crate) use upstream::Upstream;

use crate::link::Link;

/// What every proxy connection shares.
pub(crate) struct Proxy {
    /// Join URL hosts, each with its web bridge's index in `upstreams`.
    pub(crate) sites: Vec<Site<'static>>,
    /// The web bridges.
    pub(crate) upstreams: Vec<Upstream>,
    /// The allow list.
    pub(crate) rules: Vec<Rule>,
    /// The TLS port browsers use (443).
    pub(crate) port: u16,
    /// TLS toward web bridges.
    pub(crate) client_tls: Arc<rustls::ClientConfig>,
    /// Read deadlines for clients.
    pub(crate) deadlines: Deadlines,
    /// Longest stall of a write to a client.
    pub(crate) send_stall: std::time::Duration,
    /// How long to wait for a web bridge's response head.
    pub(crate) upstream_timeout_ms: u64,
    /// Connections being served, each on its own thread.
    pub(crate) threads: Arc<ThreadLimit>,
}

/// A cap on connection threads: each connection served holds a place until it
/// ends, and one that finds no place is closed at once.
pub(crate) struct ThreadLimit {
    active: AtomicUsize,
    max: usize,
}

impl ThreadLimit {
    /// At most `max` at once.
    pub(crate) fn new(max: usize) -> Arc<ThreadLimit> {
        Arc::new(ThreadLimit {
            active: AtomicUsize::new(0),
            max,
        })
    }

    /// Runs `serve` on a new thread named `name` if a place is free. Says in the
    /// log, under `what`, why it did not.
    pub(crate) fn spawn(
        self: &Arc<Self>,
        name: &str,
        what: &dyn std::fmt::Display,
        serve: impl FnOnce() + Send + 'static,
    ) {
        if self.active.fetch_add(1, Ordering::SeqCst) >= self.max {
            self.active.fetch_sub(1, Ordering::SeqCst);
            warn!("{what}: refused: {} connections already open", self.max);
            return;
        }
        let limit = self.clone();
        let spawned = std::thread::Builder::new()
            .name(name.into())
            .stack_size(256 * 1024)
            .spawn(move || {
                serve();
                limit.active.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            self.active.fetch_sub(1, Ordering::SeqCst);
            debug!("{what}: cannot start a thread: {e}");
        }
    }
}

impl Proxy {
    /// Takes over a connection whose opening is HTTP: `link` (with its TLS
    /// session, if any), the plaintext already read, and the SNI.
    pub(crate) fn hand_off(
        self: &Arc<Self>,
        link: Link,
        buffered: Vec<u8>,
        sni: Option<String>,
        peer: SocketAddr,
    ) {
        let proxy = self.clone();
        let what = format!("https {peer}");
        self.threads.spawn("causeway-proxy", &what, move || {
            session::serve(&proxy, link, buffered, sni, peer);
        });
    }
}

#[cfg(test)]
mod test {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::ThreadLimit;

    #[test]
    fn a_full_thread_limit_refuses_until_a_place_frees() {
        let limit = ThreadLimit::new(1);
        let (release, wait) = mpsc::channel::<()>();
        let (ran, ran_rx) = mpsc::channel::<u8>();
        let first = ran.clone();
        limit.spawn("t", &"first", move || {
            first.send(1).unwrap();
            let _ = wait.recv();
        });
        assert_eq!(ran_rx.recv_timeout(Duration::from_secs(5)), Ok(1));
        let second = ran.clone();
        limit.spawn("t", &"second", move || second.send(2).unwrap());
        assert!(
            ran_rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "refused while full"
        );
        release.send(()).unwrap();
        // The first thread's place frees once it returns.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let third = ran.clone();
            limit.spawn("t", &"third", move || third.send(3).unwrap());
            if ran_rx.recv_timeout(Duration::from_millis(50)) == Ok(3) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never freed");
        }
    }
}
