//! The web proxy's part of the configuration: the TLS listener and the TCP
//! ports each listener claims (once), the join URLs and their web bridges, and
//! the allow-list rules.

use std::net::SocketAddr;

use proxy_core::allow::Rule;
use proxy_core::runtime::Upstream;

use super::{Config, ConfigError, field};

/// Join URLs with their web bridges, and the extra rules.
pub(super) type Web = (Vec<(String, Upstream)>, Vec<Rule>);

/// The TLS listener, the web proxy and the TCP ports they claim.
pub(super) fn web(c: &Config) -> Result<Web, ConfigError> {
    use proxy_core::allow::{HTTPS_AND_WSS, HTTPS_ONLY, Match, Method, WSS_ONLY};
    if !c.tls_listen.is_empty() && (c.cert.is_none() || c.key.is_none()) {
        return Err(field("cert", "tls_listen needs both cert and key"));
    }
    if c.tls_listen.is_empty() && (c.cert.is_some() || c.key.is_some()) {
        return Err(field(
            "tls_listen",
            "cert and key are given but no tls_listen address",
        ));
    }
    if !c.proxy.is_empty() && c.tls_listen.is_empty() {
        return Err(field(
            "proxy",
            "the web proxy needs tls_listen (and cert, key)",
        ));
    }
    // Every TCP port claimed once: TURN on TCP 443 cannot also be the proxy's
    // 443 (with tls_listen, TURN over TCP and TLS are demultiplexed on it).
    let mut claims: Vec<(SocketAddr, &'static str)> = Vec::new();
    let overlaps = |a: &SocketAddr, b: &SocketAddr| {
        a.port() == b.port()
            && a.port() != 0
            && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
    };
    let all = c
        .listen
        .iter()
        .map(|a| (*a, "listen"))
        .chain(c.tls_listen.iter().map(|a| (*a, "tls_listen")))
        .chain(std::iter::once((c.admin, "admin")))
        .chain(c.http_redirect.iter().map(|a| (*a, "http_redirect")))
        .chain(c.traversal.listen.iter().map(|a| (*a, "traversal.listen")));
    for (addr, name) in all {
        if let Some((other, other_name)) = claims.iter().find(|(o, _)| overlaps(o, &addr)) {
            return Err(field(
                name,
                format!(
                    "{addr} claims TCP port {} already claimed by `{other_name}` {other}; \
                     with tls_listen on 443, TURN over TCP and TLS are served there too, \
                     so drop 443 from listen",
                    addr.port()
                ),
            ));
        }
        claims.push((addr, name));
    }
    let mut sites = Vec::new();
    for p in &c.proxy {
        let (host, up) = p
            .split_once('=')
            .ok_or_else(|| field("proxy", format!("`{p}` is not JOIN_HOST=UPSTREAM")))?;
        let host = host.trim().to_ascii_lowercase();
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
        {
            return Err(field("proxy", format!("`{host}` is not a host name")));
        }
        if sites.iter().any(|(h, _)| *h == host) {
            return Err(field("proxy", format!("`{host}` is listed twice")));
        }
        if up.trim() == super::CONNECTOR {
            sites.push((host, Upstream::traversal(crate::traversal::pool())));
            continue;
        }
        let up = Upstream::parse(up.trim()).map_err(|e| field("proxy", e.to_string()))?;
        if up.tls && c.upstream_ca.is_none() {
            return Err(field(
                "upstream_ca",
                format!(
                    "web bridge {up} speaks TLS: give the CA bundle its certificate is verified against"
                ),
            ));
        }
        sites.push((host, up));
    }
    let mut rules = Vec::new();
    for r in &c.rule {
        let https = r.scheme.iter().any(|s| s == "https");
        let wss = r.scheme.iter().any(|s| s == "wss");
        if r.scheme.iter().any(|s| s != "https" && s != "wss") || !(https || wss) {
            return Err(field("rule.scheme", "each scheme must be https or wss"));
        }
        let matching = match r.matching.as_str() {
            "prefix" => Match::Prefix,
            "exact" => Match::Exact,
            other => {
                return Err(field(
                    "rule.match",
                    format!("`{other}` is not prefix or exact"),
                ));
            }
        };
        let mut buf = [0u8; 512];
        let path = proxy_core::path::normalize(&r.path, &mut buf).map_err(|_| {
            field(
                "rule.path",
                format!("`{}` is not a plain absolute path", r.path),
            )
        })?;
        let mut methods = Vec::new();
        for m in &r.methods {
            methods.push(Method::parse(m).ok_or_else(|| {
                field(
                    "rule.methods",
                    format!("`{m}` is not one of GET, POST, PUT, HEAD, DELETE"),
                )
            })?);
        }
        let schemes = match (https, wss) {
            (true, true) => HTTPS_AND_WSS,
            (true, false) => HTTPS_ONLY,
            _ => WSS_ONLY,
        };
        // Port 0 stands for the TLS listener's port, filled in at start.
        let rule = Rule::new(schemes, r.port.unwrap_or(0), matching, path, &methods)
            .ok_or_else(|| field("rule.path", "longer than 128 bytes"))?;
        rules.push(rule);
    }
    Ok((sites, rules))
}
