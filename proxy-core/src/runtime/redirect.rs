//! Plain HTTP on port 80: every request is answered with a 301 to https (the
//! reference redirects 80 to 443) at the configured join URL its Host names (or
//! the first one), never at the Host it sent. Malformed requests get 400, and
//! without any join URL configured, 421.

use crate::runtime::prelude::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use log::{debug, warn};

use crate::http::{Limits, Parsed, parse_request};
use crate::response::{write_redirect, write_refusal};
use crate::route::Site;
use crate::{Reason, Refusal};

/// Most redirect connections served at once.
const MAX_AT_ONCE: usize = 256;
/// How long a client has to send its request head, all of it.
const HEAD_TIME: Duration = Duration::from_secs(10);

/// Serves redirects on `listener` until the process ends, each connection on its
/// own thread, at most [`MAX_AT_ONCE`] at a time.
pub(super) fn serve(listener: TcpListener, hosts: Vec<(String, usize)>) {
    let hosts = std::sync::Arc::new(hosts);
    let threads = ThreadLimit::new(MAX_AT_ONCE);
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let what = match s.peer_addr() {
            Ok(a) => format!("http {a}"),
            Err(_) => "http".to_string(),
        };
        let hosts = hosts.clone();
        threads.spawn("causeway-redirect", &what, move || {
            let sites: heapless::Vec<Site<'_>, { super::MAX_SITES }> = hosts
                .iter()
                .map(|(host, upstream)| Site {
                    host,
                    upstream: *upstream,
                })
                .take(super::MAX_SITES)
                .collect();
            let deadline = Instant::now() + HEAD_TIME;
            let _ = s.set_write_timeout(Some(HEAD_TIME));
            let mut buf = vec![0u8; 16 * 1024];
            let mut len = 0;
            let mut out = [0u8; 8192];
            loop {
                // A slow client cannot hold its thread past the deadline.
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
                    return;
                }
                match s.read(buf.get_mut(len..).unwrap_or_default()) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => len += n,
                }
                let mut headers = [httparse::EMPTY_HEADER; 64];
                match parse_request(
                    buf.get(..len).unwrap_or_default(),
                    &mut headers,
                    Limits::default(),
                ) {
                    Ok(Parsed::Partial) => continue,
                    Ok(Parsed::Complete(head)) => {
                        let n = write_redirect(&mut out, &head, &sites).or_else(|| {
                            let reason = if sites.is_empty() {
                                Reason::UnknownHost
                            } else {
                                Reason::Malformed
                            };
                            write_refusal(&mut out, &Refusal::new(reason), true)
                        });
                        if let Some(n) = n {
                            let _ = s.write_all(out.get(..n).unwrap_or_default());
                        }
                        return;
                    }
                    Err(r) => {
                        debug!("http redirect: refused: {r}");
                        if let Some(n) = write_refusal(&mut out, &r, true) {
                            let _ = s.write_all(out.get(..n).unwrap_or_default());
                        }
                        return;
                    }
                }
            }
        });
    }
}

/// A cap on connection threads: each connection served holds a place until it
/// ends, and one that finds no place is closed at once.
struct ThreadLimit {
    active: AtomicUsize,
    max: usize,
}

impl ThreadLimit {
    /// At most `max` at once.
    fn new(max: usize) -> Arc<ThreadLimit> {
        Arc::new(ThreadLimit {
            active: AtomicUsize::new(0),
            max,
        })
    }

    /// Runs `serve` on a new thread named `name` if a place is free. Says in the
    /// log, under `what`, why it did not.
    fn spawn(
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
