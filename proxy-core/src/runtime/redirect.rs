//! Plain HTTP on port 80: every request is answered with a 301 to https (the
//! reference redirects 80 to 443) at the configured join URL its Host names (or
//! the first one), never at the Host it sent. Malformed requests get 400, and
//! without any join URL configured, 421.

use crate::runtime::prelude::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use log::debug;

use super::ThreadLimit;
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
