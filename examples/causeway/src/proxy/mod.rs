//! The web proxy on std: HTTPS and WSS from browsers to the web bridges behind it,
//! deciding with `proxy-core` and doing the I/O and TLS here.
//!
//! Connections arrive from the TURN workers, which own the TLS listener and hand
//! over every connection whose opening (inside TLS) is HTTP. Each such connection
//! gets a thread that reads requests, refuses or forwards them (streaming bodies
//! both ways without buffering them whole), and, after a valid 101, relays the
//! WebSocket until either side closes.

mod conn;
mod io;
mod redirect;
pub(crate) mod tls;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use log::{debug, warn};
use proxy_core::allow::Rule;
use proxy_core::timer::Deadlines;

pub(crate) use redirect::serve_redirect;
pub(crate) use upstream::Upstream;

use crate::link::Link;

/// What every proxy connection shares.
pub(crate) struct Proxy {
    /// Join URL hosts, each with its web bridge's index in `upstreams`.
    pub(crate) sites: Vec<(String, usize)>,
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
    /// How long to wait for a web bridge's response head.
    pub(crate) upstream_timeout_ms: u64,
    /// Connections being served, and the most allowed at once.
    pub(crate) active: AtomicUsize,
    pub(crate) max_active: usize,
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
        if self.active.fetch_add(1, Ordering::SeqCst) >= self.max_active {
            self.active.fetch_sub(1, Ordering::SeqCst);
            warn!(
                "https {peer}: refused: {} proxy connections already open",
                self.max_active
            );
            return;
        }
        let proxy = self.clone();
        let spawned = std::thread::Builder::new()
            .name("causeway-proxy".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                conn::serve(&proxy, link, buffered, sni, peer);
                proxy.active.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            self.active.fetch_sub(1, Ordering::SeqCst);
            debug!("https {peer}: cannot start a proxy thread: {e}");
        }
    }
}
