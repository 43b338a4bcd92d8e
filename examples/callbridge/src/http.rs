//! The example's small HTTP endpoint: the page a browser calls from, `POST
//! /offer` (an SDP offer in, the answer out: the signalling), `GET /status`
//! (the last call), and the reference's `GET /api/v1/turnServers` and
//! `/api/v1/turnServers/<n>/status` (RTT, last error, the chosen one).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::call::{self, CallStats};
use crate::servers::{self, ServerStatus, TurnServer};

/// Largest request body (an SDP offer is a few kilobytes).
const BODY_MAX: usize = 64 * 1024;

/// The page: a call from the browser through its TURN server, reporting what it
/// saw in `#result`.
const PAGE: &str = include_str!("page.html");

/// What the endpoint serves from.
pub(crate) struct State {
    /// The `turnServers` list.
    pub(crate) servers: Vec<TurnServer>,
    /// The entries' status after the last selection.
    pub(crate) status: Mutex<Vec<ServerStatus>>,
    /// The last call.
    pub(crate) call: Arc<Mutex<CallStats>>,
    /// How long each call waits for the servers' answers to its probes.
    pub(crate) probe_for: Duration,
}

/// Serves `listener` for as long as the process runs.
pub(crate) fn serve(listener: TcpListener, state: Arc<State>) {
    for stream in listener.incoming().flatten() {
        let state = state.clone();
        std::thread::spawn(move || {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            handle(stream, &state);
        });
    }
}

fn read_request(stream: &mut TcpStream) -> Option<(String, String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(chunk.get(..n)?);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(head) = req.parse(&buf).ok()? {
            let length = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                .unwrap_or(0usize);
            if length > BODY_MAX {
                return None;
            }
            let (method, path) = (req.method?.to_string(), req.path?.to_string());
            while buf.len() < head + length {
                let n = stream.read(&mut chunk).ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(chunk.get(..n)?);
            }
            return Some((method, path, buf.get(head..head + length)?.to_vec()));
        }
        if buf.len() > 16 * 1024 {
            return None;
        }
    }
}

fn handle(mut stream: TcpStream, state: &State) {
    let Some((method, path, body)) = read_request(&mut stream) else {
        return;
    };
    let (status, ctype, body) = match (method.as_str(), path.split('?').next().unwrap_or("")) {
        ("GET", "/") => ("200 OK", "text/html; charset=utf-8", PAGE.to_string()),
        ("POST", "/offer") => match offer(state, &body) {
            Ok(sdp) => ("200 OK", "application/sdp", sdp),
            Err(e) => ("503 Service Unavailable", "text/plain", format!("{e}\n")),
        },
        ("GET", "/status") => (
            "200 OK",
            "application/json",
            json(&*state.call.lock().unwrap_or_else(|e| e.into_inner())),
        ),
        ("GET", "/api/v1/turnServers") => match server_status(state) {
            Ok(list) => ("200 OK", "application/json", json(&list)),
            Err(e) => ("503 Service Unavailable", "text/plain", format!("{e}\n")),
        },
        ("GET", p) if p.starts_with("/api/v1/turnServers/") && p.ends_with("/status") => {
            let n = p
                .trim_start_matches("/api/v1/turnServers/")
                .trim_end_matches("/status")
                .parse::<usize>()
                .ok();
            match server_status(state) {
                Err(e) => ("503 Service Unavailable", "text/plain", format!("{e}\n")),
                Ok(list) => match n.and_then(|n| list.get(n)) {
                    Some(s) => ("200 OK", "application/json", json(s)),
                    None => ("404 Not Found", "text/plain", "no such entry\n".into()),
                },
            }
        }
        _ => (
            "404 Not Found",
            "text/plain",
            "try /, POST /offer, /status, /api/v1/turnServers\n".into(),
        ),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A status value as JSON.
fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// Every entry's status as the last call left it; before the first call, as
/// probed now (as the meeting server probes on demand).
fn server_status(state: &State) -> Result<Vec<ServerStatus>, String> {
    let mut status = state.status.lock().unwrap_or_else(|e| e.into_inner());
    if status.is_empty() {
        let mut seed = [0u8; 32];
        getrandom(&mut seed)?;
        *status = servers::probe_only(&state.servers, seed, state.probe_for)?;
    }
    Ok(status.clone())
}

/// A call: choose a TURN server, allocate, answer the offer.
fn offer(state: &State, body: &[u8]) -> Result<String, String> {
    let sdp = std::str::from_utf8(body).map_err(|_| "the offer is not UTF-8")?;
    let mut seed = [0u8; 32];
    getrandom(&mut seed)?;
    let (alloc, status) = servers::allocate(&state.servers, seed, state.probe_for);
    *state.status.lock().unwrap_or_else(|e| e.into_inner()) = status;
    let alloc = alloc?;
    // The endpoint shows the newest call.
    *state.call.lock().unwrap_or_else(|e| e.into_inner()) = CallStats::default();
    call::answer(sdp, alloc, state.call.clone())
}

fn getrandom(buf: &mut [u8]) -> Result<(), String> {
    getrandom::fill(buf).map_err(|e| format!("the OS random source failed: {e}"))
}
