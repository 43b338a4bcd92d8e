//! Meeting-scale load for the web proxy benchmark: TUNNELS browsers in one large
//! meeting, each holding a WebSocket over TLS (`wss://join.example.test/ws`, TLS
//! verified against the test CA) through any reverse proxy in front of the
//! stand-in web bridge (ours or nginx).
//!
//! The tunnels open at a bounded rate (at most 500 handshakes in flight), without
//! TLS session resumption (every browser is a new client). Each open tunnel sends
//! one masked 100-byte text frame a second, the tunnels' phases spread evenly over
//! the second, carrying a sequence number and the send time; the bridge echoes each
//! frame back and the latency is send to echo receipt. Once every tunnel has opened
//! or failed (the ramp), the run lasts SECONDS more: the frames sent in that window
//! are the ones counted (`sent`, `echoes`, `lost`, the latencies); those sent during
//! the ramp are counted apart (`ramp_sent`, `ramp_lost`). After the window, echoes
//! still in flight get 2 s; what has not come back by then is lost. `open_s` is the
//! length of the ramp, `failed` counts tunnels that never opened (refused, TLS
//! error, HTTP status, closed, or not open within 15 s), `closed` those that closed
//! once open, `bad` echoes malformed or out of order.
//!
//! Event-driven: two threads, each with its own mio poll, no thread per
//! connection. It raises its soft limit of open files to the hard limit. One line
//! of results goes to stdout (with this tool's own CPU seconds, `client_cpu_s`);
//! failure counts and the first reasons to stderr.
//!
//! With `MEASURE_PIDS` ("PID PID..."), it also reads those processes' VmRSS
//! halfway through the window and reports their sum (`mid_rss_kib`).
//!
//! `meeting_load ADDR CA.pem TUNNELS SECONDS`

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

const JOIN: &str = "join.example.test";
const THREADS: usize = 2;
/// Tunnels opening at once, over all threads.
const IN_FLIGHT: usize = 500;
/// A tunnel not open this long after its connect has failed.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);
const PAYLOAD: usize = 100;
const PERIOD: Duration = Duration::from_secs(1);
/// How long echoes in flight at the end of the window may still arrive.
const DRAIN: Duration = Duration::from_secs(2);
/// Failure reasons printed on stderr.
const REASONS: usize = 10;
/// Longest 101 response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// What all threads share.
struct Shared {
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    tunnels: usize,
    window: Duration,
    start: Instant,
    /// Tunnels opened or failed to open.
    settled: AtomicUsize,
    /// When the last tunnel settled, in µs since `start`; `u64::MAX` until then.
    ramp_end_us: AtomicU64,
    /// The first failure reasons.
    reasons: Mutex<Vec<String>>,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Counts a tunnel opened or failed to open; the last one ends the ramp.
    fn settle(&self) {
        if self.settled.fetch_add(1, Ordering::AcqRel) + 1 == self.tunnels {
            self.ramp_end_us.store(self.now_us(), Ordering::Release);
        }
    }

    /// The end of the measured window, once the ramp has ended.
    fn window_end(&self) -> Option<Instant> {
        match self.ramp_end_us.load(Ordering::Acquire) {
            u64::MAX => None,
            us => Some(self.start + Duration::from_micros(us) + self.window),
        }
    }
}

/// One thread's counts.
#[derive(Default)]
struct Tally {
    opened: u64,
    failed: u64,
    /// Tunnels that closed after they had opened.
    closed: u64,
    sent: u64,
    echoes: u64,
    ramp_sent: u64,
    ramp_echoes: u64,
    /// Echoes that were malformed, duplicated or out of order.
    bad: u64,
    /// Echo latencies of the window, in µs.
    latencies_us: Vec<u32>,
    /// Failures (to open, or of open tunnels) by kind.
    kinds: BTreeMap<&'static str, u64>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.opened += o.opened;
        self.failed += o.failed;
        self.closed += o.closed;
        self.sent += o.sent;
        self.echoes += o.echoes;
        self.ramp_sent += o.ramp_sent;
        self.ramp_echoes += o.ramp_echoes;
        self.bad += o.bad;
        self.latencies_us.extend(o.latencies_us);
        for (k, n) in o.kinds {
            *self.kinds.entry(k).or_default() += n;
        }
    }
}

/// A failure: its kind (for the counts) and its reason.
type Fail = (&'static str, String);

#[derive(Clone, Copy, PartialEq)]
enum State {
    /// TCP connect in progress.
    Connecting,
    /// TLS handshake, then the upgrade request and the 101.
    Upgrading,
    Open,
}

/// One tunnel.
struct Conn {
    sock: TcpStream,
    tls: rustls::ClientConnection,
    state: State,
    key: String,
    launched: Instant,
    /// The tunnel's number over all threads, which sets its send phase.
    index: usize,
    /// Plaintext received and not yet parsed.
    inbuf: Vec<u8>,
    /// A fragmented message being put together.
    msg: Vec<u8>,
    next_seq: u64,
    next_echo: u64,
}

impl Conn {
    /// Where the tunnel is, for failure reasons.
    fn stage(&self) -> &'static str {
        match self.state {
            State::Connecting => "TCP connect",
            State::Upgrading if self.tls.is_handshaking() => "TLS handshake",
            State::Upgrading => "waiting for the 101",
            State::Open => "open",
        }
    }

    /// Writes what TLS has to send, as far as the socket takes it.
    fn flush(&mut self) -> Result<(), Fail> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(("reset", format!("write ({}): {e}", self.stage()))),
            }
        }
        Ok(())
    }

    /// Reads all the socket has into `inbuf`; true at the end of the stream.
    fn read_all(&mut self) -> Result<bool, Fail> {
        let mut eof = false;
        loop {
            match self.tls.read_tls(&mut self.sock) {
                Ok(0) => eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(("reset", format!("read ({}): {e}", self.stage()))),
            }
            let st = match self.tls.process_new_packets() {
                Ok(st) => st,
                Err(e) => {
                    let _ = self.flush();
                    return Err(("tls", format!("TLS ({}): {e}", self.stage())));
                }
            };
            let n = st.plaintext_bytes_to_read();
            if n > 0 {
                let old = self.inbuf.len();
                self.inbuf.resize(old + n, 0);
                if let Err(e) = self.tls.reader().read_exact(&mut self.inbuf[old..]) {
                    return Err(("tls", format!("TLS read: {e}")));
                }
            }
            if st.peer_has_closed() {
                eof = true;
            }
            if eof {
                break;
            }
        }
        Ok(eof)
    }

    /// Parses the upgrade response once it is all there: true when the tunnel is
    /// open.
    fn upgrade_response(&mut self) -> Result<bool, Fail> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(&self.inbuf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if self.inbuf.len() > MAX_HEAD => {
                return Err(("http", "response head too long".into()));
            }
            Ok(httparse::Status::Partial) => return Ok(false),
            Err(e) => return Err(("http", format!("bad response head: {e}"))),
        };
        let code = resp.code.unwrap_or(0);
        if code != 101 {
            let reason = resp.reason.unwrap_or("");
            return Err(("http", format!("HTTP status {code} {reason}")));
        }
        let accept = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
            .map(|h| h.value.trim_ascii());
        if accept != Some(&proxy_core::websocket::accept_key(&self.key)[..]) {
            return Err(("http", "101 without the right Sec-WebSocket-Accept".into()));
        }
        self.inbuf.drain(..len);
        Ok(true)
    }

    /// Queues one masked frame.
    fn queue_frame(&mut self, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Result<(), Fail> {
        let mut frame = Vec::with_capacity(payload.len() + 14);
        frame.push(0x80 | opcode);
        match payload.len() {
            n @ 0..=125 => frame.push(0x80 | n as u8),
            n @ 126..=0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.tls
            .writer()
            .write_all(&frame)
            .map_err(|e| ("tls", format!("TLS write: {e}")))
    }
}

/// A parsed frame: (FIN, opcode, payload, frame length).
type Frame = (bool, u8, Vec<u8>, usize);

/// A frame at the front of `buf`.
fn parse_frame(buf: &[u8]) -> Result<Option<Frame>, Fail> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (fin, opcode) = (buf[0] & 0x80 != 0, buf[0] & 0x0f);
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        126 | 127 => return Ok(None),
        n => (u64::from(n), 2),
    };
    if len > 1 << 20 {
        return Err(("ws", format!("frame of {len} bytes")));
    }
    let mut mask = [0u8; 4];
    if masked {
        if buf.len() < at + 4 {
            return Ok(None);
        }
        mask.copy_from_slice(&buf[at..at + 4]);
        at += 4;
    }
    let end = at + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    let payload = buf[at..end]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    Ok(Some((fin, opcode, payload, end)))
}

/// A 100-byte payload: the window flag (`S` in the window, `R` in the ramp), the
/// sequence number and the send time, padded.
fn payload(steady: bool, seq: u64, t_us: u64) -> [u8; PAYLOAD] {
    let mut p = [b'.'; PAYLOAD];
    let head = format!("{} seq={seq} t_us={t_us} ", if steady { 'S' } else { 'R' });
    p[..head.len()].copy_from_slice(head.as_bytes());
    p
}

/// The window flag, sequence number and send time of an echoed payload.
fn parse_payload(p: &[u8]) -> Option<(bool, u64, u64)> {
    if p.len() != PAYLOAD {
        return None;
    }
    let text = std::str::from_utf8(p).ok()?;
    let mut words = text.split(' ');
    let steady = match words.next()? {
        "S" => true,
        "R" => false,
        _ => return None,
    };
    let seq = words.next()?.strip_prefix("seq=")?.parse().ok()?;
    let t_us = words.next()?.strip_prefix("t_us=")?.parse().ok()?;
    Some((steady, seq, t_us))
}

/// xorshift64*: mask keys and WebSocket keys (nothing here needs to be secret).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// One thread: its share of the tunnels on its own poll.
struct Worker {
    shared: Arc<Shared>,
    poll: Poll,
    conns: Vec<Option<Conn>>,
    /// Next send of each open tunnel.
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Global numbers of this thread's tunnels still to launch.
    to_launch: std::vec::IntoIter<usize>,
    /// Tunnels launched and not yet open or failed.
    opening: usize,
    /// Frames sent on live tunnels and not yet echoed.
    outstanding: u64,
    tally: Tally,
    rng: Rng,
    /// The end of the measured window, once known.
    end: Option<Instant>,
}

impl Worker {
    fn run(mut self) -> Tally {
        let mut events = Events::with_capacity(1024);
        let cap = IN_FLIGHT / THREADS;
        let mut last_scan = Instant::now();
        loop {
            while self.opening < cap {
                let Some(index) = self.to_launch.next() else {
                    break;
                };
                self.launch(index);
            }
            let now = Instant::now();
            if self.end.is_none() {
                self.end = self.shared.window_end();
            }
            if let Some(end) = self.end
                && now >= end
                && (self.outstanding == 0 || now >= end + DRAIN)
            {
                break;
            }
            while let Some(&Reverse((due, id))) = self.timers.peek() {
                if due > now {
                    break;
                }
                self.timers.pop();
                if self.end.is_none_or(|end| now < end) && self.conns[id].is_some() {
                    self.send(id);
                    self.timers.push(Reverse((due + PERIOD, id)));
                }
            }
            if now.duration_since(last_scan) >= Duration::from_millis(250) {
                last_scan = now;
                for id in 0..self.conns.len() {
                    if let Some(c) = &self.conns[id]
                        && c.state != State::Open
                        && now.duration_since(c.launched) >= OPEN_TIMEOUT
                    {
                        let why = format!("not open after {OPEN_TIMEOUT:?} ({})", c.stage());
                        self.kill(id, "timeout", why);
                    }
                }
            }
            let mut timeout = Duration::from_millis(50);
            if let Some(&Reverse((due, _))) = self.timers.peek() {
                timeout = timeout.min(due.saturating_duration_since(Instant::now()));
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                eprintln!("meeting_load: poll: {e}");
                std::process::exit(1);
            }
            for ev in events.iter() {
                let id = ev.token().0;
                if let Err((kind, why)) = self.drive(id) {
                    self.kill(id, kind, why);
                }
            }
        }
        self.tally
    }

    /// Starts opening tunnel `index`.
    fn launch(&mut self, index: usize) {
        let mut sock = match TcpStream::connect(self.shared.addr) {
            Ok(s) => s,
            Err(e) => {
                self.tally.failed += 1;
                self.record("connect", format!("connect: {e}"));
                self.shared.settle();
                return;
            }
        };
        let _ = sock.set_nodelay(true);
        let id = self.conns.len();
        if let Err(e) = self.poll.registry().register(
            &mut sock,
            Token(id),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.tally.failed += 1;
            self.record("connect", format!("register: {e}"));
            self.shared.settle();
            return;
        }
        let name = ServerName::try_from(JOIN).expect("a valid name");
        let mut tls = match rustls::ClientConnection::new(self.shared.cfg.clone(), name) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("meeting_load: TLS client: {e}");
                std::process::exit(1);
            }
        };
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&self.rng.next().to_le_bytes());
        key[8..].copy_from_slice(&self.rng.next().to_le_bytes());
        let key = base64::engine::general_purpose::STANDARD.encode(key);
        // Sent once the handshake is done.
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: {JOIN}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
             Origin: https://{JOIN}\r\nUser-Agent: meeting_load\r\n\r\n"
        );
        let _ = tls.writer().write_all(req.as_bytes());
        self.conns.push(Some(Conn {
            sock,
            tls,
            state: State::Connecting,
            key,
            launched: Instant::now(),
            index,
            inbuf: Vec::new(),
            msg: Vec::new(),
            next_seq: 0,
            next_echo: 0,
        }));
        self.opening += 1;
    }

    /// Handles readiness of tunnel `id`.
    fn drive(&mut self, id: usize) -> Result<(), Fail> {
        let Some(c) = self.conns.get_mut(id).and_then(Option::as_mut) else {
            return Ok(());
        };
        if c.state == State::Connecting {
            match c.sock.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return Err(("connect", format!("connect: {e}"))),
            }
            match c.sock.peer_addr() {
                Ok(_) => c.state = State::Upgrading,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => return Err(("connect", format!("connect: {e}"))),
            }
        }
        let eof = c.read_all()?;
        if c.state == State::Upgrading && !c.tls.is_handshaking() && c.upgrade_response()? {
            c.state = State::Open;
            self.opening -= 1;
            self.tally.opened += 1;
            self.shared.settle();
            // The first send at this tunnel's phase of the second.
            let offset = PERIOD.as_nanos() * c.index as u128 / self.shared.tunnels as u128;
            let rel = self.shared.start.elapsed().as_nanos();
            let period = PERIOD.as_nanos();
            let k = rel.saturating_sub(offset).div_ceil(period);
            let due = self.shared.start + Duration::from_nanos((offset + k * period) as u64);
            self.timers.push(Reverse((due, id)));
        }
        if c.state == State::Open {
            while let Some((fin, opcode, payload, len)) = parse_frame(&c.inbuf)? {
                c.inbuf.drain(..len);
                match opcode {
                    0x1 | 0x2 => c.msg = payload,
                    0x0 => c.msg.extend_from_slice(&payload),
                    0x8 => {
                        let _ = c.queue_frame(0x8, &[], [0; 4]);
                        let _ = c.flush();
                        return Err(("closed", "WebSocket close from the server".into()));
                    }
                    0x9 => {
                        let mask = (self.rng.next() as u32).to_le_bytes();
                        c.queue_frame(0xa, &payload, mask)?;
                        continue;
                    }
                    0xa => continue,
                    op => return Err(("ws", format!("frame with opcode {op}"))),
                }
                if !fin {
                    continue;
                }
                let now_us = self.shared.now_us();
                match parse_payload(&c.msg) {
                    Some((steady, seq, t_us)) if seq >= c.next_echo && seq < c.next_seq => {
                        if seq != c.next_echo {
                            self.tally.bad += 1;
                        }
                        self.outstanding -= seq + 1 - c.next_echo;
                        c.next_echo = seq + 1;
                        if steady {
                            self.tally.echoes += 1;
                            let lat = now_us.saturating_sub(t_us).min(u64::from(u32::MAX));
                            self.tally.latencies_us.push(lat as u32);
                        } else {
                            self.tally.ramp_echoes += 1;
                        }
                    }
                    _ => self.tally.bad += 1,
                }
            }
        }
        c.flush()?;
        if eof {
            let why = format!("closed by the server ({})", c.stage());
            return Err(("closed", why));
        }
        Ok(())
    }

    /// Sends the next frame on tunnel `id`.
    fn send(&mut self, id: usize) {
        let Some(c) = self.conns[id].as_mut() else {
            return;
        };
        let steady = self.end.is_some();
        let p = payload(steady, c.next_seq, self.shared.now_us());
        let mask = (self.rng.next() as u32).to_le_bytes();
        let res = c.queue_frame(0x1, &p, mask).and_then(|()| c.flush());
        c.next_seq += 1;
        self.outstanding += 1;
        if steady {
            self.tally.sent += 1;
        } else {
            self.tally.ramp_sent += 1;
        }
        if let Err((kind, why)) = res {
            self.kill(id, kind, why);
        }
    }

    /// Drops tunnel `id` after a failure.
    fn kill(&mut self, id: usize, kind: &'static str, why: String) {
        let Some(mut c) = self.conns.get_mut(id).and_then(Option::take) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut c.sock);
        if c.state == State::Open {
            self.tally.closed += 1;
            self.outstanding -= c.next_seq - c.next_echo;
        } else {
            self.tally.failed += 1;
            self.opening -= 1;
            self.shared.settle();
        }
        self.record(kind, why);
    }

    fn record(&mut self, kind: &'static str, why: String) {
        *self.tally.kinds.entry(kind).or_default() += 1;
        let mut reasons = self
            .shared
            .reasons
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if reasons.len() < REASONS {
            reasons.push(why);
        }
    }
}

/// CPU seconds (user + system) this process has used, from /proc/self/stat.
fn own_cpu_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // After "pid (comm) ": state is field 0, utime 11 and stime 12, in 1/100 s.
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let ticks: Vec<f64> = rest
        .split(' ')
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse().ok())
        .collect();
    ticks.iter().sum::<f64>() / 100.0
}

/// The `p`-th percentile (nearest rank) of sorted latencies, in ms.
fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1]) / 1000.0
}

fn usage() -> ! {
    eprintln!("usage: meeting_load ADDR CA.pem TUNNELS SECONDS");
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, ca, tunnels, secs] = &args[..] else {
        usage();
    };
    let Some(addr) = addr.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        eprintln!("meeting_load: cannot resolve {addr}");
        std::process::exit(2);
    };
    let (Ok(tunnels), Ok(secs)) = (tunnels.parse::<usize>(), secs.parse::<u64>()) else {
        usage();
    };
    if tunnels == 0 {
        usage();
    }
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    if nofile < tunnels as u64 + 64 {
        eprintln!(
            "meeting_load: warning: {nofile} open files allowed for {tunnels} tunnels (ulimit -Hn)"
        );
    }
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca).unwrap_or_else(|e| {
        eprintln!("meeting_load: {ca}: {e}");
        std::process::exit(2);
    });
    for c in certs {
        let added = c
            .map_err(|e| e.to_string())
            .and_then(|c| roots.add(c).map_err(|e| e.to_string()));
        if let Err(e) = added {
            eprintln!("meeting_load: {ca}: {e}");
            std::process::exit(2);
        }
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    // Every browser of the meeting is a new client.
    cfg.resumption = rustls::client::Resumption::disabled();

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let shared = Arc::new(Shared {
        addr,
        cfg: Arc::new(cfg),
        tunnels,
        window: Duration::from_secs(secs),
        start: Instant::now(),
        settled: AtomicUsize::new(0),
        ramp_end_us: AtomicU64::new(u64::MAX),
        reasons: Mutex::new(Vec::new()),
    });
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let poll = Poll::new().unwrap_or_else(|e| {
                eprintln!("meeting_load: poll: {e}");
                std::process::exit(1);
            });
            let worker = Worker {
                shared: shared.clone(),
                poll,
                conns: Vec::new(),
                timers: BinaryHeap::new(),
                to_launch: (t..tunnels)
                    .step_by(THREADS)
                    .collect::<Vec<_>>()
                    .into_iter(),
                opening: 0,
                outstanding: 0,
                tally: Tally::default(),
                rng: Rng(seed.wrapping_mul(t as u64 * 2 + 1) | 1),
                end: None,
            };
            std::thread::spawn(move || worker.run())
        })
        .collect();
    // The servers' memory halfway through the window, all tunnels open: what the
    // tunnels themselves hold, handshakes over.
    let measured = std::env::var("MEASURE_PIDS").ok().map(|pids| {
        let shared = shared.clone();
        std::thread::spawn(move || {
            while shared.ramp_end_us.load(Ordering::Acquire) == u64::MAX {
                std::thread::sleep(Duration::from_millis(100));
            }
            std::thread::sleep(shared.window / 2);
            pids.split_whitespace()
                .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
                .filter_map(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                })
                .sum::<u64>()
        })
    });
    let mut total = Tally::default();
    for h in handles {
        match h.join() {
            Ok(t) => total.merge(t),
            Err(_) => {
                eprintln!("meeting_load: a thread panicked");
                std::process::exit(1);
            }
        }
    }
    let open_s = match shared.ramp_end_us.load(Ordering::Acquire) {
        u64::MAX => f64::NAN,
        us => us as f64 / 1e6,
    };
    total.latencies_us.sort_unstable();
    let lat = &total.latencies_us;
    let mid_rss = measured
        .and_then(|h| h.join().ok())
        .map_or_else(|| "n/a".to_string(), |k| k.to_string());
    println!(
        "tunnels={tunnels} opened={} failed={} closed={} sent={} echoes={} lost={} bad={} \
         ramp_sent={} ramp_lost={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} open_s={open_s:.2} \
         client_cpu_s={:.2} mid_rss_kib={mid_rss}",
        total.opened,
        total.failed,
        total.closed,
        total.sent,
        total.echoes,
        total.sent.saturating_sub(total.echoes),
        total.bad,
        total.ramp_sent,
        total.ramp_sent.saturating_sub(total.ramp_echoes),
        percentile_ms(lat, 50.0),
        percentile_ms(lat, 99.0),
        percentile_ms(lat, 100.0),
        own_cpu_s(),
    );
    if !total.kinds.is_empty() {
        let kinds: Vec<String> = total
            .kinds
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        eprintln!("meeting_load: failures: {}", kinds.join(" "));
        let reasons = shared.reasons.lock().unwrap_or_else(|e| e.into_inner());
        for r in reasons.iter() {
            eprintln!("meeting_load:   {r}");
        }
    }
}
