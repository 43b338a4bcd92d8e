//! The admin interface, on its own port (never 443): `GET /` (the "Relay
//! usage" page: allocations, per-user usage and a live plot of the relayed bit
//! rate and allocations, self-contained, drawing from `GET /history`), `GET
//! /status` (JSON),
//! `GET /metrics` (Prometheus), `GET /healthz` (the workers answer), `GET
//! /readyz` (new allocations are taken), and `POST /reload`, `POST /drain` and
//! `POST /upgrade`, which the main thread carries out as it does for SIGHUP,
//! SIGTERM and SIGUSR2.
//!
//! Who may ask what is [`access`]'s to say. Each connection is served on a
//! thread of its own, at most [`MAX_CONNECTIONS`] at once and
//! [`MAX_PER_SOURCE`] from one address, and its whole request must arrive
//! within [`REQUEST_TIME`]: a client that trickles bytes delays nobody else, so
//! probes are answered while it is slow.

pub(crate) mod access;
mod history;
mod listing;
mod metrics;
mod status;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use log::{debug, warn};
use turn_core::adapters::std::StatsHandle;

pub(crate) use access::Access;
pub(crate) use history::History;
pub(crate) use metrics::metrics_text;
pub(crate) use status::status_json;

/// What the admin interface asks of the main thread, with where the answer goes.
pub(crate) enum Command {
    /// Read the configuration again and apply it.
    Reload(mpsc::Sender<Result<(), String>>),
    /// Drain, then stop.
    Drain(mpsc::Sender<Result<(), String>>),
    /// Hand over to the binary at the same path (what happened, or why not).
    Upgrade(mpsc::Sender<Result<String, String>>),
}

/// Most admin connections served at once.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// Most admin connections at once from one address.
pub(crate) const MAX_PER_SOURCE: usize = 8;
/// How long a whole request (head) may take to arrive.
pub(crate) const REQUEST_TIME: Duration = Duration::from_secs(5);
/// How long an answer may take to leave.
const ANSWER_TIME: Duration = Duration::from_secs(10);

/// What the admin threads serve from.
pub(crate) struct Admin {
    pub(crate) stats: StatsHandle,
    /// The realm and the metrics' form, as the configuration says now.
    pub(crate) view: Arc<Mutex<crate::serve::AdminView>>,
    pub(crate) commands: mpsc::Sender<Command>,
    /// The web proxy now (a reload replaces it).
    pub(crate) web: Arc<Mutex<Option<Arc<proxy_core::runtime::Proxy>>>>,
    /// Who may ask what.
    pub(crate) access: Access,
    /// Usage records and the heaviest accounts.
    pub(crate) accounting: Arc<crate::accounting::Accounting>,
}

/// The current web proxy's figures, if there is one.
fn web_stats(admin: &Admin) -> Option<proxy_core::runtime::ProxyStats> {
    let web = admin.web.lock().unwrap_or_else(|e| e.into_inner());
    web.as_ref().map(|p| p.stats())
}

/// The usage page: markup, style and script in one file, nothing fetched from
/// elsewhere.
const USAGE_PAGE: &str = include_str!("usage.html");

/// Only this page's own inline style and script, and requests back to the
/// admin port.
const USAGE_CSP: &str = "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; \
     script-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'\r\n";

/// Connections open, in all and per source.
#[derive(Default)]
struct Open {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// A place among the open connections, given back when dropped.
struct Place {
    open: Arc<Mutex<Open>>,
    source: IpAddr,
}

impl Place {
    fn take(open: &Arc<Mutex<Open>>, source: IpAddr) -> Option<Place> {
        let mut o = open.lock().unwrap_or_else(|e| e.into_inner());
        let n = o.by_source.get(&source).copied().unwrap_or(0);
        if o.total >= MAX_CONNECTIONS || n >= MAX_PER_SOURCE {
            return None;
        }
        o.total += 1;
        o.by_source.insert(source, n + 1);
        Some(Place {
            open: open.clone(),
            source,
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut o = self.open.lock().unwrap_or_else(|e| e.into_inner());
        o.total = o.total.saturating_sub(1);
        if let Some(n) = o.by_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                o.by_source.remove(&self.source);
            }
        }
    }
}

/// Serves the admin interface until the process ends.
pub(crate) fn serve_admin(connections: proxy_core::runtime::Accepting, admin: Admin) {
    let history = History::default();
    history.spawn_sampler(admin.stats.clone());
    let shared = Arc::new((admin, history));
    let open = Arc::new(Mutex::new(Open::default()));
    // One line a second at most about refused connections, with the count held.
    let started = Instant::now();
    let mut refusals = stun_core::escape::LineBudget::new(1);
    for stream in connections {
        let Ok(stream) = stream else { continue };
        let Some(source) = stream.peer_addr().ok().map(|a| a.ip()) else {
            continue;
        };
        let Some(place) = Place::take(&open, source) else {
            let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            if let Some(held) = refusals.allow(ms) {
                warn!(
                    "admin: refused a connection from {source}: {MAX_CONNECTIONS} open in all or \
                     {MAX_PER_SOURCE} from one address{}",
                    stun_core::escape::Held(held)
                );
            }
            continue;
        };
        let shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("causeway-admin-conn".into())
            .spawn(move || {
                let _place = place;
                serve_one(stream, &shared.0, &shared.1);
            });
        if let Err(e) = spawned {
            warn!("admin: cannot start a thread for a connection: {e}");
        }
    }
}

/// Serves one connection: one request, one answer.
fn serve_one(mut stream: TcpStream, admin: &Admin, history: &History) {
    let _ = stream.set_write_timeout(Some(ANSWER_TIME));
    let req = match read_request(&mut stream, Instant::now() + REQUEST_TIME) {
        None => return,
        Some(Err(why)) => {
            let _ = respond(&mut stream, "400 Bad Request", "text/plain", "", why);
            return;
        }
        Some(Ok(r)) => r,
    };
    if let Err(denied) = admin.access.check(&req) {
        let from = stream
            .peer_addr()
            .map_or_else(|_| "?".into(), |a| a.ip().to_string());
        debug!(
            "admin: {} {} from {from} refused: {denied}",
            req.method,
            stun_core::escape::Escaped::new(&req.path)
        );
        let (status, text) = denied.answer();
        let _ = respond(&mut stream, status, "text/plain", "", text);
        return;
    }
    answer(&mut stream, &req, admin, history);
}

/// Reads one request head by `deadline` (however its bytes trickle in).
fn read_request(
    stream: &mut TcpStream,
    deadline: Instant,
) -> Option<Result<access::Request, &'static str>> {
    let mut buf = [0u8; 4096];
    let mut len = 0;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        match stream.read(buf.get_mut(len..)?) {
            Ok(0) | Err(_) => return None,
            Ok(n) => len += n,
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf.get(..len)?) {
            Ok(httparse::Status::Complete(_)) => {
                let (path, query) = req
                    .path
                    .unwrap_or("/")
                    .split_once('?')
                    .unwrap_or((req.path.unwrap_or("/"), ""));
                let field = |name: &str| {
                    req.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .and_then(|h| std::str::from_utf8(h.value).ok())
                        .map(str::to_string)
                };
                return Some(Ok(access::Request {
                    method: req.method.unwrap_or("GET").to_string(),
                    path: path.to_string(),
                    query: query.to_string(),
                    host: field("host"),
                    origin: field("origin"),
                    fetch_site: field("sec-fetch-site"),
                    authorization: field("authorization"),
                }));
            }
            Ok(httparse::Status::Partial) if len < buf.len() => continue,
            _ => return Some(Err("bad request")),
        }
    }
}

/// Asks the main thread and waits for its answer.
fn ask<T>(
    admin: &Admin,
    make: fn(mpsc::Sender<Result<T, String>>) -> Command,
) -> Result<T, String> {
    let (tx, rx) = mpsc::channel();
    admin
        .commands
        .send(make(tx))
        .map_err(|_| "the server is stopping".to_string())?;
    // An upgrade waits up to a minute for the new process to connect.
    rx.recv_timeout(Duration::from_secs(90))
        .map_err(|_| "no answer from the server".to_string())?
}

fn answer(stream: &mut TcpStream, req: &access::Request, admin: &Admin, history: &History) {
    let (method, path) = (&req.method, &req.path);
    let view = admin.view.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let ok_or = |ok: bool, what: &str| {
        if ok {
            ("200 OK", format!("{what}\n"))
        } else {
            ("503 Service Unavailable", format!("not {what}\n"))
        }
    };
    if method == "GET" && matches!(path.as_str(), "/" | "/usage") {
        let _ = respond(
            stream,
            "200 OK",
            "text/html; charset=utf-8",
            USAGE_CSP,
            USAGE_PAGE,
        );
        return;
    }
    let (status, ctype, body) = match (method.as_str(), path.as_str()) {
        ("GET", "/history") => ("200 OK", "application/json", history.json()),
        ("GET", "/status" | "/status.json") => match listing::Listing::parse(&req.query) {
            Ok(listing) => (
                "200 OK",
                "application/json",
                status_json(
                    &admin.stats.stats(),
                    &view.realm,
                    web_stats(admin),
                    &listing,
                ),
            ),
            Err(e) => ("400 Bad Request", "text/plain", format!("{e}\n")),
        },
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", {
            // Per-user series need the allocations; the rest, the counters.
            let stats = if view.per_user_metrics {
                admin.stats.stats()
            } else {
                admin.stats.summary()
            };
            let mut text = metrics_text(&stats, admin.stats.is_ready(), view.per_user_metrics);
            text.push_str(&metrics::accounts_text(
                &admin.accounting.top(view.top_accounts),
            ));
            let web = admin.web.lock().map(|w| w.as_ref().map(|p| p.stats()));
            if let Ok(Some(w)) = web {
                text.push_str(&metrics::web_metrics_text(&w));
            }
            text.push_str(&crate::traversal::metrics_text());
            text
        }),
        ("GET", "/healthz") => {
            let (s, b) = ok_or(admin.stats.is_healthy(), "healthy");
            (s, "text/plain", b)
        }
        ("GET", "/readyz") => {
            let (s, b) = ok_or(admin.stats.is_ready(), "ready");
            (s, "text/plain", b)
        }
        ("POST", "/reload") => match ask(admin, Command::Reload) {
            Ok(()) => ("200 OK", "text/plain", "reloaded\n".into()),
            Err(e) => ("422 Unprocessable Content", "text/plain", format!("{e}\n")),
        },
        ("POST", "/drain") => match ask(admin, Command::Drain) {
            Ok(()) => ("202 Accepted", "text/plain", "draining\n".into()),
            Err(e) => ("503 Service Unavailable", "text/plain", format!("{e}\n")),
        },
        ("POST", "/upgrade") => match ask(admin, Command::Upgrade) {
            Ok(done) => ("200 OK", "text/plain", format!("{done}\n")),
            Err(e) => ("422 Unprocessable Content", "text/plain", format!("{e}\n")),
        },
        (
            _,
            "/" | "/usage" | "/history" | "/status" | "/status.json" | "/metrics" | "/healthz"
            | "/readyz",
        ) => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
        (_, "/reload" | "/drain" | "/upgrade") => {
            ("405 Method Not Allowed", "text/plain", "POST only\n".into())
        }
        _ => (
            "404 Not Found",
            "text/plain",
            "try /, /history, /status, /metrics, /healthz, /readyz, POST /reload, POST /drain, \
             POST /upgrade\n"
                .into(),
        ),
    };
    let _ = respond(stream, status, ctype, "", &body);
}

/// Writes a whole response; `extra` is more header lines, each ending in CRLF.
fn respond(
    stream: &mut TcpStream,
    status: &str,
    ctype: &str,
    extra: &str,
    body: &str,
) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
         X-Content-Type-Options: nosniff\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    )
}
