//! The admin interface, on its own port (never 443): `GET /` (the "Relay
//! usage" page: allocations, per-user usage and a live plot of the relayed bit
//! rate and allocations, self-contained, drawing from `GET /history`), `GET
//! /status` (JSON),
//! `GET /metrics` (Prometheus), `GET /healthz` (the workers answer), `GET
//! /readyz` (new allocations are taken), and `POST /reload` and `POST /drain`,
//! which the main thread carries out as it does for SIGHUP and SIGTERM.

mod history;
mod metrics;
mod status;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use turn_core::adapters::std::StatsHandle;

pub(crate) use history::History;
pub(crate) use metrics::metrics_text;
pub(crate) use status::status_json;

/// What the admin interface asks of the main thread, with where the answer goes.
pub(crate) enum Command {
    /// Read the configuration again and apply it.
    Reload(mpsc::Sender<Result<(), String>>),
    /// Drain, then stop.
    Drain(mpsc::Sender<Result<(), String>>),
}

/// What the admin thread serves from.
pub(crate) struct Admin {
    pub(crate) stats: StatsHandle,
    pub(crate) realm: String,
    pub(crate) per_user_metrics: bool,
    pub(crate) commands: mpsc::Sender<Command>,
    /// The web proxy now (a reload replaces it).
    pub(crate) web: Arc<Mutex<Option<Arc<proxy_core::runtime::Proxy>>>>,
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

/// Serves the admin interface until the process ends.
pub(crate) fn serve_admin(listener: TcpListener, admin: Admin) {
    let history = History::default();
    history.spawn_sampler(admin.stats.clone());
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        answer(&mut stream, &admin, &history);
    }
}

/// Reads one request head: its method and path.
fn read_request(stream: &mut TcpStream) -> Option<Result<(String, String), &'static str>> {
    let mut buf = [0u8; 4096];
    let mut len = 0;
    loop {
        match stream.read(buf.get_mut(len..)?) {
            Ok(0) | Err(_) => return None,
            Ok(n) => len += n,
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf.get(..len)?) {
            Ok(httparse::Status::Complete(_)) => {
                let method = req.method.unwrap_or("GET").to_string();
                let path = req.path.unwrap_or("/").to_string();
                return Some(Ok((method, path)));
            }
            Ok(httparse::Status::Partial) if len < buf.len() => continue,
            _ => return Some(Err("bad request")),
        }
    }
}

/// Asks the main thread and waits for its answer.
fn ask(admin: &Admin, make: fn(mpsc::Sender<Result<(), String>>) -> Command) -> Result<(), String> {
    let (tx, rx) = mpsc::channel();
    admin
        .commands
        .send(make(tx))
        .map_err(|_| "the server is stopping".to_string())?;
    rx.recv_timeout(Duration::from_secs(30))
        .map_err(|_| "no answer from the server".to_string())?
}

fn answer(stream: &mut TcpStream, admin: &Admin, history: &History) {
    let (method, path) = match read_request(stream) {
        None => return,
        Some(Err(why)) => {
            let _ = respond(stream, "400 Bad Request", "text/plain", "", why);
            return;
        }
        Some(Ok(r)) => r,
    };
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
        ("GET", "/status" | "/status.json") => (
            "200 OK",
            "application/json",
            status_json(&admin.stats.stats(), &admin.realm, web_stats(admin)),
        ),
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", {
            let mut text = metrics_text(
                &admin.stats.stats(),
                admin.stats.is_ready(),
                admin.per_user_metrics,
            );
            let web = admin.web.lock().map(|w| w.as_ref().map(|p| p.stats()));
            if let Ok(Some(w)) = web {
                text.push_str(&metrics::web_metrics_text(&w));
            }
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
        (
            _,
            "/" | "/usage" | "/history" | "/status" | "/status.json" | "/metrics" | "/healthz"
            | "/readyz",
        ) => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
        (_, "/reload" | "/drain") => ("405 Method Not Allowed", "text/plain", "POST only\n".into()),
        _ => (
            "404 Not Found",
            "text/plain",
            "try /, /history, /status, /metrics, /healthz, /readyz, POST /reload, POST /drain\n"
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
