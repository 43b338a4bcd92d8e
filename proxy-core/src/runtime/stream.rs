//! Moving bytes once a head is judged: framed bodies (Content-Length, chunked)
//! streamed from one side to the other without buffering them whole, and the
//! WebSocket tunnel relayed both ways with bounded queues.

use crate::runtime::prelude::*;
use std::io;
use std::time::{Duration, Instant};

use crate::Refusal;
use crate::body::Framing;
use crate::timer::{Expired, RequestTimer};
use log::debug;

use super::io::Io;
use super::link::Link;

/// Chunk of body copied at a time.
pub(super) const COPY: usize = 16 * 1024;
/// Most bytes queued toward a side of a tunnel that does not read.
const TUNNEL_QUEUE: usize = 256 * 1024;

/// Milliseconds of the wall clock, the proxy timers' time.
pub(super) fn millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The std instant of a timer's millisecond deadline.
pub(super) fn deadline_of(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms.saturating_sub(millis()))
}

/// How the reads of a body are timed.
pub(super) enum Reads<'t> {
    /// A client's request body: under its timer (pauses, minimum rate).
    Client(&'t mut RequestTimer),
    /// A web bridge's response body: each read within this long.
    Bridge(Duration),
}

/// How a body's reads and writes are timed.
pub(super) struct Pace<'t> {
    /// The reads.
    pub(super) reads: Reads<'t>,
    /// The longest stall of a write.
    pub(super) stall: Duration,
}

/// How a framed body ended.
pub(super) enum Streamed {
    /// Whole; the bytes that came after it are in `after`.
    Done,
    /// The sender closed first.
    Closed,
    /// A client sent its body too slowly: answer with this refusal.
    TooSlow(Refusal),
}

/// Streams one framed body from `from` to `to`: first what `pending` holds, then
/// what is read, until the framing says the body ended. Bytes past the end go to
/// `after`. A framing error is an error.
pub(super) fn framed(
    io: &mut Io,
    from: &mut Link,
    to: &mut Link,
    mut framing: Framing,
    pending: &[u8],
    pace: Pace<'_>,
    after: &mut Vec<u8>,
) -> io::Result<Streamed> {
    let Pace { mut reads, stall } = pace;
    let bad = |r: Refusal| io::Error::other(r.to_string());
    let take = framing.feed(pending).map_err(bad)?;
    let (body, rest) = pending.split_at(take.min(pending.len()));
    io.write_all(to, body, stall)?;
    after.extend_from_slice(rest);
    let mut chunk = [0u8; COPY];
    while !framing.is_done() {
        let deadline = match &reads {
            Reads::Client(t) => deadline_of(t.poll_timeout().unwrap_or(0)),
            Reads::Bridge(d) => Instant::now() + *d,
        };
        let got = match io.read(from, &mut chunk, deadline) {
            Ok(0) => return Ok(Streamed::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                if let Reads::Client(t) = &reads
                    && let Err(Expired::Refuse(r)) = t.check(millis())
                {
                    return Ok(Streamed::TooSlow(r));
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        if let Reads::Client(t) = &mut reads {
            t.body_progress(millis(), got as u64);
        }
        let got = chunk.get(..got).unwrap_or_default();
        let take = framing.feed(got).map_err(bad)?;
        let (body, rest) = got.split_at(take.min(got.len()));
        io.write_all(to, body, stall)?;
        after.extend_from_slice(rest);
    }
    Ok(Streamed::Done)
}

/// Relays a WebSocket both ways until either side closes or it idles out for
/// `idle`. `to_up` holds what the client sent after its upgrade request.
pub(super) fn tunnel(
    io: &mut Io,
    client: &mut Link,
    mut up: Link,
    to_up: Vec<u8>,
    idle: Duration,
    what: &str,
) {
    let mut to_up = to_up;
    let mut to_client: Vec<u8> = Vec::new();
    let mut chunk = [0u8; COPY];
    let (mut client_open, mut up_open) = (true, true);
    debug!("{what}: WebSocket open");
    while client_open && up_open {
        let mut progress = false;
        pump(
            client,
            &mut up,
            &mut to_up,
            &mut client_open,
            &mut chunk,
            &mut progress,
        );
        pump(
            &mut up,
            client,
            &mut to_client,
            &mut up_open,
            &mut chunk,
            &mut progress,
        );
        if !progress && io.wait(Instant::now() + idle).is_err() {
            break;
        }
    }
    up.close();
    let _ = client.flush();
    debug!("{what}: WebSocket closed");
}

/// Moves what `from` has to `to` (queueing what `to` cannot take yet, and
/// reading no more while the queue is full: backpressure).
fn pump(
    from: &mut Link,
    to: &mut Link,
    queue: &mut Vec<u8>,
    open: &mut bool,
    chunk: &mut [u8],
    progress: &mut bool,
) {
    while !queue.is_empty() {
        match to.write_plain(queue) {
            Ok(0) => {
                *open = false;
                return;
            }
            Ok(n) => {
                queue.drain(..n);
                *progress = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => {
                *open = false;
                return;
            }
        }
    }
    let _ = to.flush();
    while queue.len() < TUNNEL_QUEUE {
        match from.read_plain(chunk) {
            Ok(0) => {
                *open = false;
                return;
            }
            Ok(n) => {
                *progress = true;
                let read = chunk.get(..n).unwrap_or_default();
                match to.write_plain(read) {
                    Ok(m) if m < n => queue.extend_from_slice(read.get(m..).unwrap_or_default()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        queue.extend_from_slice(read)
                    }
                    Err(_) => {
                        *open = false;
                        return;
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => {
                *open = false;
                return;
            }
        }
    }
    let _ = to.flush();
}
