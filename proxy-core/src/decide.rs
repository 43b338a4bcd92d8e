//! The proxy's decision for one request head: which web bridge, which (normalised)
//! path to forward, whether it is a WebSocket upgrade; or which refusal.

use crate::allow::{self, Method, Rule, Scheme};
use crate::http::RequestHead;
use crate::path::{self, PathError};
use crate::refusal::{Reason, Refusal};
use crate::route::{self, Site};

/// What the proxy knows beyond the request.
#[derive(Debug, Clone, Copy)]
pub struct Config<'a> {
    /// Join URLs and their web bridges.
    pub sites: &'a [Site<'a>],
    /// The allow list.
    pub rules: &'a [Rule],
    /// The port the request arrived on (443).
    pub port: u16,
}

/// Forward the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward<'p> {
    /// The web bridge (the caller's index from [`Site::upstream`]).
    pub upstream: usize,
    /// The normalised path: what the allow list judged, and what is forwarded.
    pub path: &'p str,
    /// Whether it is a WebSocket upgrade (scheme wss).
    pub websocket: bool,
}

/// Decides on `head`, which arrived over TLS with `sni`. The normalised path is
/// written into `path_buf`.
pub fn decide<'p>(
    cfg: &Config<'_>,
    head: &RequestHead<'_>,
    sni: Option<&str>,
    path_buf: &'p mut [u8],
) -> Result<Forward<'p>, Refusal> {
    let upstream = route::route(cfg.sites, head.host, sni, cfg.port)?;
    let normalized = path::normalize(head.path, path_buf).map_err(|e| {
        Refusal::new(match e {
            PathError::NotOriginForm => Reason::NotOriginForm,
            PathError::Ambiguous => Reason::AmbiguousPath,
            PathError::TooLong => Reason::UriTooLong,
        })
    })?;
    let websocket = head.websocket_key.is_some();
    let scheme = if websocket {
        Scheme::Wss
    } else {
        Scheme::Https
    };
    allow::check(
        cfg.rules,
        scheme,
        cfg.port,
        Method::parse(head.method),
        normalized,
    )?;
    Ok(Forward {
        upstream,
        path: normalized,
        websocket,
    })
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::allow::{HTTPS_ONLY, Match, WSS_ONLY};
    use crate::http::{Limits, Parsed, parse_request};

    fn rule(schemes: &'static [Scheme], m: Match, p: &str, methods: &[Method]) -> Rule {
        Rule::new(schemes, 443, m, p, methods).unwrap()
    }

    fn run(raw: &[u8], sni: Option<&str>) -> Result<(usize, heapless::String<64>, bool), Refusal> {
        let sites = [Site {
            host: "join.example.com",
            upstream: 7,
        }];
        let rules = [
            rule(
                HTTPS_ONLY,
                Match::Prefix,
                "/api",
                &[Method::Get, Method::Post],
            ),
            rule(HTTPS_ONLY, Match::Exact, "/", &[Method::Get]),
            rule(WSS_ONLY, Match::Exact, "/ws", &[Method::Get]),
        ];
        let cfg = Config {
            sites: &sites,
            rules: &rules,
            port: 443,
        };
        let mut h = [httparse::EMPTY_HEADER; 32];
        let Parsed::Complete(head) = parse_request(raw, &mut h, Limits::default())? else {
            panic!("partial")
        };
        let mut buf = [0u8; 256];
        let f = decide(&cfg, &head, sni, &mut buf)?;
        let mut p = heapless::String::new();
        p.push_str(f.path).unwrap();
        Ok((f.upstream, p, f.websocket))
    }

    #[test]
    fn forwards_the_normalised_path() {
        let r = run(
            b"GET /api/../api/./x//y HTTP/1.1\r\nHost: join.example.com\r\n\r\n",
            Some("join.example.com"),
        )
        .unwrap();
        assert_eq!((r.0, r.1.as_str(), r.2), (7, "/api/x/y", false));
    }

    #[test]
    fn bypass_attempts_are_refused() {
        // Paths that reach outside /api once normalised.
        assert_eq!(
            run(
                b"GET /api/../secret HTTP/1.1\r\nHost: join.example.com\r\n\r\n",
                None
            )
            .unwrap_err()
            .status,
            403
        );
        assert_eq!(
            run(
                b"GET /api/%2e%2e/secret HTTP/1.1\r\nHost: join.example.com\r\n\r\n",
                None
            )
            .unwrap_err()
            .status,
            403
        );
        assert_eq!(
            run(
                b"GET /api%2f..%2fsecret HTTP/1.1\r\nHost: join.example.com\r\n\r\n",
                None
            )
            .unwrap_err()
            .status,
            400
        );
        assert_eq!(
            run(
                b"GET /api\\..\\secret HTTP/1.1\r\nHost: join.example.com\r\n\r\n",
                None
            )
            .unwrap_err()
            .status,
            400
        );
        assert_eq!(
            run(
                b"GET /../api HTTP/1.1\r\nHost: join.example.com\r\n\r\n",
                None
            )
            .unwrap_err()
            .status,
            400
        );
        // Path parameters hiding a dot segment (read as `..` by Tomcat and kin).
        assert_eq!(
            run(
                b"GET /api/..;/secret HTTP/1.1\r\nHost: join.example.com\r\n\r\n",
                None
            )
            .unwrap_err()
            .reason,
            Reason::AmbiguousPath
        );
        // Other parameters are part of the segment's name: no rule covers it.
        assert_eq!(
            run(
                b"GET /api;x/y HTTP/1.1\r\nHost: join.example.com\r\n\r\n",
                None
            )
            .unwrap_err()
            .status,
            403
        );
        // Methods and schemes.
        assert_eq!(
            run(
                b"DELETE /api/x HTTP/1.1\r\nHost: join.example.com\r\n\r\n",
                None
            )
            .unwrap_err()
            .status,
            405
        );
        assert_eq!(
            run(b"GET /ws HTTP/1.1\r\nHost: join.example.com\r\n\r\n", None)
                .unwrap_err()
                .status,
            403
        );
        // Hosts.
        assert_eq!(
            run(b"GET / HTTP/1.1\r\nHost: evil.example.com\r\n\r\n", None)
                .unwrap_err()
                .status,
            421
        );
        assert_eq!(
            run(
                b"GET / HTTP/1.1\r\nHost: join.example.com\r\n\r\n",
                Some("evil.example.com")
            )
            .unwrap_err()
            .status,
            421
        );
    }

    #[test]
    fn websocket_upgrade_uses_the_wss_rules() {
        let raw = b"GET /ws HTTP/1.1\r\nHost: join.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let r = run(raw, None).unwrap();
        assert!(r.2);
        let with_body = b"GET /ws HTTP/1.1\r\nHost: join.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 4\r\n\r\nabcd";
        assert_eq!(run(with_body, None).unwrap_err().reason, Reason::BadUpgrade);
    }
}
