//! What the front of a TLS listener hands over when a connection turns out to be
//! HTTP: the embedder wires in whoever serves it (causeway wires its web proxy),
//! so sharing port 443 is a composition and TURN over TLS needs nothing but
//! rustls.

use crate::adapters::std::prelude::*;

use core::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// An HTTP connection on a TLS listener (HTTPS, or plain HTTP sent to the TLS
/// port), handed to the hook given to
/// [`RelayBuilder::on_http`](crate::adapters::std::RelayBuilder::on_http).
///
/// The stream is non-blocking; with TLS, the handshake has run as far as the
/// client's first bytes of plaintext (which are in `buffered`): the session may
/// still hold records to write, so the new owner flushes it first.
///
/// TURN over TLS and HTTPS on one port, with nothing but rustls: the relay
/// serves TURN clients itself and hands each HTTPS connection to the hook
/// (here a channel; causeway hands it to its web proxy).
///
/// ```
/// use std::io::Write;
/// use std::sync::{Arc, mpsc};
/// use std::time::Duration;
/// use turn_core::adapters::std::client::{TlsTarget, TurnClient};
/// use turn_core::adapters::std::{Accepted, Relay};
/// use turn_core::client::ClientConfig;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let ca = causeway_testkit::bridge::TestCa::new();
/// # let leaf = ca.leaf(&["turn.example.com"]);
/// # let provider = Arc::new(rustls::crypto::ring::default_provider());
/// // The certificate and key of turn.example.com (here made for the test).
/// let tls = rustls::ServerConfig::builder_with_provider(provider.clone())
///     .with_safe_default_protocol_versions()?
///     .with_no_client_auth()
///     .with_single_cert(vec![leaf.cert_der.clone()], leaf.key_der.clone_key())?;
/// let (https, handed) = mpsc::channel::<Accepted>();
/// let https = std::sync::Mutex::new(https);
/// let relay = Relay::builder()
///     .tls_listen("127.0.0.1:0".parse()?)
///     .tls(Arc::new(tls))
///     .on_http(move |a| drop(https.lock().map(|tx| tx.send(a))))
///     .user("alice", "s3cret")
///     .threads(1)
///     .start()?;
/// assert!(relay.local_addrs().is_empty(), "only the TLS listener");
/// let port443 = relay.tls_addrs()[0];
///
/// // A TURN client allocates over TLS.
/// # let client_tls = ca.client_config();
/// let target = TlsTarget { config: client_tls.clone(), name: "turn.example.com".into() };
/// let cfg = ClientConfig::new(port443, "alice", "s3cret")?;
/// let mut turn = TurnClient::connect_tls(cfg, target)?;
/// turn.allocate(Duration::from_secs(5))?;
///
/// // A browser's HTTPS request on the same port reaches the hook.
/// let name = "turn.example.com".try_into()?;
/// let session = rustls::ClientConnection::new(client_tls, name)?;
/// let mut browser = rustls::StreamOwned::new(session, std::net::TcpStream::connect(port443)?);
/// browser.write_all(b"GET / HTTP/1.1\r\nHost: turn.example.com\r\n\r\n")?;
/// let a = handed.recv_timeout(Duration::from_secs(30))?;
/// assert_eq!(a.sni.as_deref(), Some("turn.example.com"));
/// assert!(a.tls.is_some() && a.buffered.starts_with(b"GET / HTTP/1.1"));
/// relay.shutdown();
/// relay.join();
/// # Ok(())
/// # }
/// ```
#[non_exhaustive]
pub struct Accepted {
    /// The TCP stream, non-blocking.
    pub stream: std::net::TcpStream,
    /// The TLS session over it; `None` for plain HTTP on the TLS port.
    pub tls: Option<rustls::ServerConnection>,
    /// Plaintext already read: the start of the first request.
    pub buffered: Vec<u8>,
    /// The server name the client asked for in its ClientHello.
    pub sni: Option<String>,
    /// The client: the source a load balancer's PROXY header named, if it sent
    /// one, else the peer of the TCP connection.
    pub client: SocketAddr,
    /// The listener's address the connection arrived on.
    pub local: SocketAddr,
}

impl fmt::Debug for Accepted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accepted")
            .field("client", &self.client)
            .field("local", &self.local)
            .field("sni", &self.sni)
            .field("tls", &self.tls.is_some())
            .field("buffered", &self.buffered.len())
            .finish_non_exhaustive()
    }
}

/// Whoever serves the HTTP connections of the TLS listeners. Called on a front
/// thread: it should hand the connection to its own threads and return.
pub(crate) type HttpHook = Arc<dyn Fn(Accepted) + Send + Sync>;
