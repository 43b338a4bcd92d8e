//! A stand-in web bridge for tests: HTTPS and WSS with a throwaway CA and
//! certificates made at test time with rcgen. It echoes what it receives, so tests
//! see exactly what the proxy forwarded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A throwaway CA, and leaf certificates it signs.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
}

/// A leaf certificate and its key.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key_der: PrivateKeyDer<'static>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "causeway test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `names` signed by this CA.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }

    /// A rustls client config trusting only this CA.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert_der.clone()).unwrap();
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
        )
    }
}

/// A temporary directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new directory of its own: named by the process, a counter and the
    /// time, and created fresh (two tests of one process never share one,
    /// whatever the clock says).
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        loop {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!(
                "causeway-{tag}-{}-{n}-{}",
                std::process::id(),
                rand_suffix()
            ));
            match std::fs::create_dir(&p) {
                Ok(()) => return TempDir(p),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("create {}: {e}", p.display()),
            }
        }
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> u64 {
    use std::time::SystemTime;
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// The page the browser test loads: it opens a WSS to the same host, sends a
/// message, and reports the echo in the title.
pub const PAGE: &str = r#"<!doctype html>
<html><head><title>loading</title></head><body><p id="s">loading</p><script>
const ws = new WebSocket("wss://" + location.host + "/ws");
ws.onopen = () => ws.send("hello through causeway");
ws.onmessage = (e) => { document.title = "echo: " + e.data; document.getElementById("s").textContent = document.title; };
ws.onerror = () => { document.title = "ws error"; };
</script></body></html>"#;

/// Runs the stand-in web bridge on loopback with `leaf`; returns its address.
pub fn start_bridge(leaf: &Leaf) -> SocketAddr {
    start_bridge_with(leaf, None)
}

/// As [`start_bridge`], each connection's socket send buffer set to `sndbuf`
/// bytes when given (a benchmark on one machine whose thousand stalled
/// responses would otherwise fill the kernel's TCP memory on the bridge's side,
/// which on a real deployment is another host's).
pub fn start_bridge_with(leaf: &Leaf, sndbuf: Option<usize>) -> SocketAddr {
    let cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.cert_der.clone()], leaf.key_der.clone_key())
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for (id, s) in listener.incoming().enumerate() {
            let Ok(s) = s else { continue };
            let _ = s.set_nodelay(true);
            if let Some(n) = sndbuf {
                let _ = socket2::SockRef::from(&s).set_send_buffer_size(n);
            }
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(cfg).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, s);
                let _ = serve_bridge(&mut tls, id);
            });
        }
    });
    addr
}

/// Serves one connection (the `id`-th the bridge accepted). Besides the page and
/// the echo, paths that misbehave on purpose: `/headers` answers with the head it
/// received, `/conn` with `id`, `/overlong` sends more than its Content-Length,
/// `/hop-response` sends hop-by-hop fields, `/slow` answers with a body in pieces,
/// `/drop-next` answers and then closes the connection when the next request
/// arrives, without answering it (a keep-alive timeout racing a request),
/// `/large` sends 4 MiB as fast as it is taken, `/interim-flood` sends 103
/// heads and never a final one.
fn serve_bridge(
    s: &mut rustls::StreamOwned<rustls::ServerConnection, TcpStream>,
    id: usize,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut drop_next = false;
    loop {
        // Read a head.
        let head_len = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        if drop_next {
            return Ok(());
        }
        let head = String::from_utf8_lossy(&buf[..head_len]).to_string();
        buf.drain(..head_len);
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_string();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        // Read the body, if any.
        let mut body = Vec::new();
        if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            while buf.len() < len {
                let mut chunk = [0u8; 16384];
                let n = s.read(&mut chunk)?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            body = buf.drain(..len).collect();
        } else if get("transfer-encoding").is_some() {
            loop {
                let line_end = loop {
                    if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                        break p;
                    }
                    let mut chunk = [0u8; 16384];
                    let n = s.read(&mut chunk)?;
                    buf.extend_from_slice(&chunk[..n]);
                };
                let size = usize::from_str_radix(
                    std::str::from_utf8(&buf[..line_end])
                        .unwrap()
                        .split(';')
                        .next()
                        .unwrap(),
                    16,
                )
                .unwrap();
                buf.drain(..line_end + 2);
                while buf.len() < size + 2 {
                    let mut chunk = [0u8; 16384];
                    let n = s.read(&mut chunk)?;
                    buf.extend_from_slice(&chunk[..n]);
                }
                body.extend_from_slice(&buf[..size]);
                buf.drain(..size + 2);
                if size == 0 {
                    break;
                }
            }
        }
        let path = target.split('?').next().unwrap_or_default().to_string();
        if path == "/ws" && get("upgrade").is_some() {
            let key = get("sec-websocket-key").unwrap_or_default();
            // tungstenite's derivation, not the proxy's own: the stand-in checks it.
            let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
            write!(
                s,
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            )?;
            s.flush()?;
            let mut ws = tungstenite::WebSocket::from_raw_socket(
                s,
                tungstenite::protocol::Role::Server,
                None,
            );
            loop {
                match ws.read() {
                    Ok(m) if m.is_text() || m.is_binary() => {
                        ws.send(m).map_err(std::io::Error::other)?;
                    }
                    Ok(tungstenite::Message::Close(_)) | Err(_) => return Ok(()),
                    Ok(_) => {}
                }
            }
        }
        if path == "/ws-bad-accept" {
            // Switches protocols with an accept key that does not match.
            write!(
                s,
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"
            )?;
            s.flush()?;
            continue;
        }
        if path == "/early-hints" {
            // An interim response before the final one.
            write!(
                s,
                "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal"
            )?;
            s.flush()?;
            continue;
        }
        if path == "/headers" || path == "/conn" {
            let body = if path == "/conn" {
                id.to_string()
            } else {
                head.clone()
            };
            write!(
                s,
                "HTTP/1.1 200 OK\r\nX-Conn: {id}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )?;
            s.flush()?;
            continue;
        }
        if path == "/overlong" {
            // Content-Length 2, then more (after HEAD, a body at all): the
            // connection is out of step. One write of one string, so one TLS
            // record and the proxy sees it all with the head, however busy the
            // machine (`write!` on the TLS stream would send a record per
            // piece: the extra bytes could then arrive after the proxy had
            // kept the connection for the next request).
            let extra = if method == "HEAD" { "ok" } else { "okEXTRA" };
            let answer =
                format!("HTTP/1.1 200 OK\r\nX-Conn: {id}\r\nContent-Length: 2\r\n\r\n{extra}");
            s.write_all(answer.as_bytes())?;
            s.flush()?;
            continue;
        }
        if path == "/drop-next" {
            write!(s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")?;
            s.flush()?;
            drop_next = true;
            continue;
        }
        if path == "/hop-response" {
            write!(
                s,
                "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Internal\r\nKeep-Alive: timeout=5\r\n\
                 X-Internal: secret\r\nProxy-Authenticate: Basic\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok"
            )?;
            s.flush()?;
            continue;
        }
        if path == "/large" {
            // 4 MiB as fast as the proxy takes it.
            write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                64 * 65536
            )?;
            for _ in 0..64 {
                s.write_all(&[b'l'; 65536])?;
            }
            s.flush()?;
            continue;
        }
        if path == "/interim-flood" {
            // Interim heads without end: a proxy that relays them all grows.
            for _ in 0..10_000 {
                s.write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")?;
            }
            s.flush()?;
            continue;
        }
        if path == "/slow" {
            // 64 KiB in 16 pieces over about 1.6 s.
            write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                16 * 4096
            )?;
            for _ in 0..16 {
                s.write_all(&[b's'; 4096])?;
                s.flush()?;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            continue;
        }
        if path == "/ws-refused" {
            write!(
                s,
                "HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\n\r\nrefused"
            )?;
            s.flush()?;
            continue;
        }
        let (ctype, reply): (&str, Vec<u8>) = match path.as_str() {
            "/" | "/index.html" => ("text/html", PAGE.as_bytes().to_vec()),
            "/big" => ("application/octet-stream", vec![b'z'; 1 << 20]),
            _ => {
                let xff = get("x-forwarded-for").unwrap_or_default();
                let sum: u64 = body.iter().map(|b| u64::from(*b)).sum();
                (
                    "text/plain",
                    format!("{method} {target} body={} sum={sum} xff={xff}", body.len())
                        .into_bytes(),
                )
            }
        };
        if path == "/big" {
            // Chunked, to exercise the proxy's chunked relay.
            write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nTransfer-Encoding: chunked\r\n\r\n"
            )?;
            for part in reply.chunks(10_000) {
                write!(s, "{:x}\r\n", part.len())?;
                s.write_all(part)?;
                s.write_all(b"\r\n")?;
            }
            s.write_all(b"0\r\n\r\n")?;
        } else {
            write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
                reply.len()
            )?;
            if method != "HEAD" {
                s.write_all(&reply)?;
            }
        }
        s.flush()?;
    }
}

/// A certificate verifier that accepts any certificate (it still checks the
/// handshake signatures): for a test client that connects to an IP literal,
/// sending no SNI.
#[derive(Debug)]
pub struct AcceptAny(rustls::crypto::WebPkiSupportedAlgorithms);

impl Default for AcceptAny {
    fn default() -> Self {
        AcceptAny(rustls::crypto::ring::default_provider().signature_verification_algorithms)
    }
}

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_schemes()
    }
}
