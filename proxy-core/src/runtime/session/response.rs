//! The response half of a session: the web bridge's head read (interim 1xx
//! relayed), then a WebSocket tunnel after a valid 101, or the head and the
//! body streamed to the browser with its framing.

use crate::runtime::prelude::*;

use super::*;

impl Session<'_> {
    /// Reads the web bridge's response head (relaying interim 1xx ones), then the
    /// response: a tunnel after a valid 101, else the head and body.
    pub(super) fn relay_response(&mut self, plan: Plan) -> io::Result<Next> {
        let read_for = self.proxy.upstream_timeout;
        let mut rbuf = Vec::with_capacity(4096);
        let mut chunk = [0u8; COPY];
        let deadline = std::time::Instant::now() + read_for;
        loop {
            let Some((_, up)) = self.upstream.as_mut() else {
                return Ok(Next::Close);
            };
            let mut rh = [httparse::EMPTY_HEADER; 64];
            match parse_response(&rbuf, &mut rh, &plan.method) {
                Ok(Some(h)) => {
                    let interim = (100..200).contains(&h.status) && h.status != 101;
                    let accepted = plan
                        .websocket_key
                        .as_deref()
                        .is_some_and(|k| websocket::accepts(h.status, &rh, k));
                    let close =
                        !plan.keep_alive || (!interim && h.body == ResponseBody::UntilClose);
                    let close = close || (h.status == 101 && !accepted);
                    let reason = response_reason(&rbuf).unwrap_or("");
                    let res = Response {
                        status: h.status,
                        reason,
                        upgrade: accepted,
                        close: close && !interim,
                    };
                    let mut out = vec![0u8; h.head_len + 256];
                    let Ok(n) = forward::write_response(&mut out, &res, &rh) else {
                        return self.bad_gateway(&plan.what, "response head too large");
                    };
                    self.io.write_all(
                        &mut self.client,
                        out.get(..n).unwrap_or_default(),
                        self.proxy.send_stall,
                    )?;
                    rbuf.drain(..h.head_len);
                    if interim {
                        // 100 Continue, 103 Early Hints: the final head follows.
                        continue;
                    }
                    debug!("https {} {}: {}", self.peer, plan.what, h.status);
                    return self.response_body(&plan, h, rbuf, close, accepted);
                }
                Ok(None) if rbuf.len() < 64 * 1024 => {}
                _ => return self.bad_gateway(&plan.what, "invalid response head"),
            }
            match self.io.read(up, &mut chunk, deadline) {
                Ok(0) => return self.bad_gateway(&plan.what, "closed before answering"),
                Ok(n) => rbuf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e) => return self.bad_gateway(&plan.what, &format!("no answer: {e}")),
            }
        }
    }

    /// After the final response head: the tunnel, or the body; `rest` holds what
    /// the web bridge sent after its head.
    fn response_body(
        &mut self,
        plan: &Plan,
        h: ResponseHead,
        rest: Vec<u8>,
        close: bool,
        accepted: bool,
    ) -> io::Result<Next> {
        let read_for = self.proxy.upstream_timeout;
        if accepted {
            let Some((_, up)) = self.upstream.take() else {
                return Ok(Next::Close);
            };
            if !rest.is_empty() {
                self.io
                    .write_all(&mut self.client, &rest, self.proxy.send_stall)?;
            }
            let to_up = std::mem::take(&mut self.buf);
            let what = format!("https {} {}", self.peer, plan.what);
            stream::tunnel(
                &mut self.io,
                &mut self.client,
                up,
                to_up,
                TUNNEL_IDLE,
                &what,
            );
            return Ok(Next::Close);
        }
        if h.status == 101 {
            // Switched protocols without a valid accept: neither side is HTTP now.
            self.upstream = None;
            return Ok(Next::Close);
        }
        let Some((_, up)) = self.upstream.as_mut() else {
            return Ok(Next::Close);
        };
        let framing = match h.body {
            ResponseBody::Length(n) => Some(Framing::Length(Length::new(n))),
            ResponseBody::Chunked => Some(Framing::Chunked(Chunked::new())),
            ResponseBody::None | ResponseBody::UntilClose => None,
        };
        let extra = match framing {
            Some(framing) => {
                let mut after = Vec::new();
                let pace = Pace {
                    reads: Reads::Bridge(read_for),
                    stall: self.proxy.send_stall,
                };
                let streamed = stream::framed(
                    &mut self.io,
                    up,
                    &mut self.client,
                    framing,
                    &rest,
                    pace,
                    &mut after,
                )?;
                if !matches!(streamed, Streamed::Done) {
                    self.upstream = None;
                    return Ok(Next::Close);
                }
                after.len()
            }
            None if h.body == ResponseBody::UntilClose => {
                self.io
                    .write_all(&mut self.client, &rest, self.proxy.send_stall)?;
                let mut chunk = [0u8; COPY];
                loop {
                    let n = self
                        .io
                        .read(up, &mut chunk, std::time::Instant::now() + read_for)?;
                    if n == 0 {
                        break;
                    }
                    self.io.write_all(
                        &mut self.client,
                        chunk.get(..n).unwrap_or_default(),
                        self.proxy.send_stall,
                    )?;
                }
                0
            }
            // No body (HEAD, 204, 304): whatever came after the head is extra.
            None => rest.len(),
        };
        if !reusable(&h, extra) {
            if extra > 0 {
                debug!(
                    "https {} {}: web bridge sent {extra} bytes past its response; not reused",
                    self.peer, plan.what
                );
            }
            self.upstream = None;
        }
        Ok(if close { Next::Close } else { Next::KeepAlive })
    }
}
