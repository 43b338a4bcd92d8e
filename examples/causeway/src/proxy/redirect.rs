//! Plain HTTP on port 80: every request is answered with a 301 to the same host and
//! target on https (the reference redirects 80 to 443). Malformed requests get 400.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use log::debug;
use proxy_core::http::{Limits, Parsed, parse_request};
use proxy_core::response::{write_redirect, write_refusal};

/// Serves redirects on `listener` until the process ends.
pub(crate) fn serve_redirect(listener: TcpListener) {
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let _ = std::thread::Builder::new()
            .name("causeway-redirect".into())
            .spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
                let mut buf = vec![0u8; 16 * 1024];
                let mut len = 0;
                let mut out = [0u8; 8192];
                loop {
                    match s.read(&mut buf[len..]) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => len += n,
                    }
                    let mut headers = [httparse::EMPTY_HEADER; 64];
                    match parse_request(&buf[..len], &mut headers, Limits::default()) {
                        Ok(Parsed::Partial) => continue,
                        Ok(Parsed::Complete(head)) => {
                            let host = head.host.rsplit_once(':').map_or(head.host, |(h, _)| h);
                            let target = match head.query {
                                Some(q) => format!("{}?{q}", head.path),
                                None => head.path.to_string(),
                            };
                            if let Some(n) = write_redirect(&mut out, host, &target) {
                                let _ = s.write_all(&out[..n]);
                            }
                            return;
                        }
                        Err(r) => {
                            debug!("http redirect: refused: {r}");
                            if let Some(n) = write_refusal(&mut out, &r) {
                                let _ = s.write_all(&out[..n]);
                            }
                            return;
                        }
                    }
                }
            });
    }
}
