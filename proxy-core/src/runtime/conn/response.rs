//! The response half: the web bridge's head read (interim 1xx relayed), then a
//! WebSocket tunnel after a valid 101, or the head and the body streamed to the
//! browser with its framing; a clean bridge connection goes back to the pool.

use super::*;
use crate::body::{Chunked, Length};
use crate::forward::{self, Response};
use crate::response::{ResponseBody, parse_response, reusable};
use crate::runtime::side::Read;
use crate::websocket;

/// Most bytes of a response head buffered.
const RESPONSE_HEAD: usize = 64 * 1024;
/// Most interim (1xx) responses relayed before the final one; a web bridge
/// sending more gets the browser a 502.
const MAX_INTERIM: u8 = 8;

impl Conn {
    /// Reads at most `max` bytes from the web bridge into `uin`; `Err` at its
    /// end or on a failure.
    fn read_up(&mut self, cx: &mut Ctx<'_>, max: usize) -> Result<usize, String> {
        let n = self.read_up_scratch(cx, max)?;
        self.uin
            .extend_from_slice(cx.scratch.get(..n).unwrap_or_default());
        Ok(n)
    }

    /// Reads at most `max` bytes from the web bridge into the loop's scratch
    /// buffer (its start); `Err` at its end or on a failure.
    fn read_up_scratch(&mut self, cx: &mut Ctx<'_>, max: usize) -> Result<usize, String> {
        let Some(up) = self.up.as_mut() else {
            return Err("no connection".into());
        };
        let max = max.min(cx.scratch.len());
        if max == 0 {
            return Ok(0);
        }
        match up.side.read(cx.scratch.get_mut(..max).unwrap_or_default()) {
            Ok(Read::Data(n)) => Ok(n),
            Ok(Read::Later) => Ok(0),
            Ok(Read::End) => Err("closed".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Waits for the response head and acts on it.
    pub(super) fn response_head(
        &mut self,
        cx: &mut Ctx<'_>,
        plan: Box<Plan>,
        until: Instant,
    ) -> bool {
        let mut rh = [httparse::EMPTY_HEADER; 64];
        let parsed = parse_response(&self.uin, &mut rh, &plan.method);
        let h = match parsed {
            Ok(Some(h)) => h,
            // Interim heads the browser has not read yet: no more until it does.
            Ok(None) if !self.client.has_room() => {
                self.phase = Phase::Response { plan, until };
                return false;
            }
            Ok(None) if self.uin.len() < RESPONSE_HEAD => {
                return match self.read_up(cx, RESPONSE_HEAD - self.uin.len()) {
                    Ok(0) => {
                        self.phase = Phase::Response { plan, until };
                        false
                    }
                    Ok(_) => {
                        self.phase = Phase::Response {
                            plan,
                            until: cx.now + self.cfg.upstream_timeout,
                        };
                        true
                    }
                    Err(e) if self.uin.is_empty() && plan.retriable() => {
                        self.retry(cx, plan, &e);
                        true
                    }
                    Err(e) if e == "closed" => {
                        self.bad_gateway(cx, &plan.what, "closed before answering");
                        true
                    }
                    Err(e) => {
                        self.bad_gateway(cx, &plan.what, &format!("no answer: {e}"));
                        true
                    }
                };
            }
            _ => {
                self.bad_gateway(cx, &plan.what, "invalid response head");
                return true;
            }
        };
        let interim = (100..200).contains(&h.status) && h.status != 101;
        let mut plan = plan;
        if interim {
            plan.interims += 1;
            if plan.interims > MAX_INTERIM {
                self.bad_gateway(cx, &plan.what, "more interim (1xx) responses than relayed");
                return true;
            }
        }
        let accepted = plan
            .websocket_key
            .as_deref()
            .is_some_and(|k| websocket::accepts(h.status, &rh, k));
        let close = !plan.keep_alive || (!interim && h.body == ResponseBody::UntilClose);
        let close = close || (h.status == 101 && !accepted);
        // Draining: a kept-alive connection carries this answer and no more,
        // so the browser's next request opens a new connection (which a load
        // balancer sends to a node that is not draining). A tunnel goes on.
        let close = close || (self.cfg.is_draining() && !accepted);
        let reason = response_reason(&self.uin).unwrap_or("");
        let res = Response {
            status: h.status,
            reason,
            upgrade: accepted,
            close: close && !interim,
        };
        // Written straight into the browser's queue.
        let written = self.client.queue_written(h.head_len + 256, cx.now, |out| {
            forward::write_response(out, &res, &rh).ok()
        });
        if written.is_none() {
            self.bad_gateway(cx, &plan.what, "response head too large");
            return true;
        }
        self.uin.drain(..h.head_len.min(self.uin.len()));
        if interim {
            // 100 Continue, 103 Early Hints: the final head follows.
            self.phase = Phase::Response { plan, until };
            return true;
        }
        client_log!(
            cx,
            log::Level::Debug,
            "https {} {}: {}",
            self.peer,
            plan.what,
            h.status
        );
        if accepted {
            // What the bridge sent after its 101 goes down, what the browser
            // sent after its upgrade request goes up.
            let rest = std::mem::take(&mut self.uin);
            self.client.queue(&rest, cx.now);
            if let Some(up) = self.up.as_mut() {
                up.side.queue(&self.cin, cx.now);
                self.cin = Vec::new();
            }
            self.cfg.counters.tunnel_opened();
            self.counted_tunnel = true;
            client_log!(
                cx,
                log::Level::Debug,
                "https {} {}: WebSocket open",
                self.peer,
                plan.what
            );
            self.phase = Phase::Tunnel { last: cx.now };
            return true;
        }
        if h.status == 101 {
            // Switched protocols without a valid accept: neither side is HTTP now.
            self.up = None;
            self.close(cx);
            return true;
        }
        let framing = match h.body {
            ResponseBody::Length(n) => Some(Framing::Length(Length::new(n))),
            ResponseBody::Chunked => Some(Framing::Chunked(Chunked::new())),
            ResponseBody::None => {
                // No body (HEAD, 204, 304): whatever came after the head is extra.
                let extra = self.uin.len();
                self.finish(cx, &h, extra, close);
                return true;
            }
            ResponseBody::UntilClose => None,
        };
        // The body that came with the head goes out with it.
        let until = cx.now + self.cfg.upstream_timeout;
        self.response_body(cx, h, framing, close, until);
        true
    }

    /// Streams the response body down, bounded by the browser side's queue.
    pub(super) fn response_body(
        &mut self,
        cx: &mut Ctx<'_>,
        head: ResponseHead,
        framing: Option<Framing>,
        close: bool,
        mut until: Instant,
    ) -> bool {
        let mut progress = false;
        // What was read: bytes at the start of the scratch buffer (body bytes
        // go from there to the browser's queue, never through `uin`, which
        // only holds what came past a body's end).
        let mut fresh = 0;
        if self.uin.is_empty() && self.client.has_room() {
            match self.read_up_scratch(cx, self.client.room()) {
                Ok(0) => {}
                Ok(n) => {
                    fresh = n;
                    progress = true;
                    until = cx.now + self.cfg.upstream_timeout;
                }
                Err(_) if framing.is_none() => {
                    // The end of a body framed by the close.
                    self.close(cx);
                    return true;
                }
                Err(e) => {
                    client_log!(
                        cx,
                        log::Level::Debug,
                        "https {}: web bridge body: {e}",
                        self.peer
                    );
                    self.close(cx);
                    return true;
                }
            }
        }
        let Some(mut framing) = framing else {
            let body = std::mem::take(&mut self.uin);
            self.client.queue(&body, cx.now);
            self.client
                .queue(cx.scratch.get(..fresh).unwrap_or_default(), cx.now);
            self.phase = Phase::Body {
                head,
                framing: None,
                close,
                until,
            };
            return progress || !body.is_empty();
        };
        let now = cx.now;
        let had = fresh > 0 || !self.uin.is_empty();
        let fed = if !self.uin.is_empty() {
            framing.feed(&self.uin).map(|n| {
                let take = n.min(self.uin.len());
                self.client
                    .queue(self.uin.get(..take).unwrap_or_default(), now);
                self.uin.drain(..take);
            })
        } else if fresh > 0 {
            let data = cx.scratch.get(..fresh).unwrap_or_default();
            framing.feed(data).map(|n| {
                let take = n.min(data.len());
                self.client.queue(data.get(..take).unwrap_or_default(), now);
                self.uin
                    .extend_from_slice(data.get(take..).unwrap_or_default());
            })
        } else {
            Ok(())
        };
        match fed {
            Ok(()) => progress |= had,
            Err(r) => {
                client_log!(
                    cx,
                    log::Level::Debug,
                    "https {}: web bridge body: {r}",
                    self.peer
                );
                self.up = None;
                self.close(cx);
                return true;
            }
        }
        if framing.is_done() {
            let extra = self.uin.len();
            self.finish(cx, &head, extra, close);
            return true;
        }
        self.phase = Phase::Body {
            head,
            framing: Some(framing),
            close,
            until,
        };
        progress
    }

    /// The response is whole: the bridge connection is kept if it can carry
    /// another request, and the browser's connection closes or reads its next
    /// request.
    fn finish(&mut self, cx: &mut Ctx<'_>, head: &ResponseHead, extra: usize, close: bool) {
        if reusable(head, extra) {
            // Kept for this browser's next request; the pool gets it if none
            // comes soon.
            self.up_idle = Some(cx.now);
            self.up_stirred = false;
        } else {
            if extra > 0 {
                client_log!(
                    cx,
                    log::Level::Debug,
                    "https {}: web bridge sent {extra} bytes past its response; not reused",
                    self.peer
                );
            }
            self.up = None;
        }
        self.uin = Vec::new();
        if close {
            self.close(cx);
        } else {
            self.next_request(cx);
        }
    }

    /// Relays the WebSocket both ways; each direction reads only while the
    /// other side's queue has room.
    pub(super) fn tunnel(&mut self, cx: &mut Ctx<'_>, mut last: Instant) -> bool {
        let Some(up) = self.up.as_mut() else {
            self.close(cx);
            return true;
        };
        let (a, ended_a) = pump(&mut self.client, &mut up.side, cx);
        let (b, ended_b) = pump(&mut up.side, &mut self.client, cx);
        let (progress, ended) = (a || b, ended_a || ended_b);
        if progress {
            last = cx.now;
        }
        if ended {
            client_log!(
                cx,
                log::Level::Debug,
                "https {}: WebSocket closed",
                self.peer
            );
            if let Some(up) = self.up.as_mut() {
                let _ = up.side.flush(cx.now);
                up.side.close();
            }
            self.close(cx);
            return true;
        }
        self.phase = Phase::Tunnel { last };
        progress
    }
}

/// Moves what `from` has to `to`'s queue, if it has room: whether it moved
/// anything, and whether `from` ended.
fn pump(from: &mut Side, to: &mut Side, cx: &mut Ctx<'_>) -> (bool, bool) {
    let room = to.room().min(cx.scratch.len());
    if room == 0 {
        return (false, false);
    }
    let scratch = cx.scratch.get_mut(..room).unwrap_or_default();
    match from.read(scratch) {
        Ok(Read::Data(n)) => {
            to.queue(scratch.get(..n).unwrap_or_default(), cx.now);
            (true, false)
        }
        Ok(Read::Later) => (false, false),
        Ok(Read::End) | Err(_) => (false, true),
    }
}

/// The reason phrase of the response head at the start of `buf`.
fn response_reason(buf: &[u8]) -> Option<&str> {
    let line = buf.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    line.splitn(3, ' ').nth(2)
}
