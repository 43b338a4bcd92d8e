//! The HTTP allow list of the reference deployment: rules of scheme (https, wss),
//! port, match type (prefix or exact), path, and methods (GET, POST, PUT, HEAD,
//! DELETE). A request passes when a rule matches all five; a path that some rule
//! covers but with other methods earns 405, a path no rule covers earns 403.
//!
//! Paths are compared after normalisation ([`crate::path`]). A prefix matches at a
//! segment boundary: `/api` covers `/api` and `/api/x`, not `/apix`; a prefix ending
//! in `/` covers everything under it.

use crate::refusal::{Reason, Refusal};

/// Request scheme as the proxy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Scheme {
    /// HTTPS.
    Https,
    /// A WebSocket upgrade over TLS.
    Wss,
}

/// How a rule's path is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Match {
    /// The path starts with the rule's path, at a segment boundary.
    Prefix,
    /// The path is exactly the rule's path.
    Exact,
}

/// HTTP methods the allow list knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// HEAD.
    Head,
    /// DELETE.
    Delete,
}

impl Method {
    /// From the request line's token; `None` for any other method.
    pub fn parse(s: &str) -> Option<Method> {
        Some(match s {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "HEAD" => Method::Head,
            "DELETE" => Method::Delete,
            _ => return None,
        })
    }

    const fn bit(self) -> u8 {
        match self {
            Method::Get => 1,
            Method::Post => 2,
            Method::Put => 4,
            Method::Head => 8,
            Method::Delete => 16,
        }
    }
}

/// A set of methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Methods(u8);

impl Methods {
    /// All five methods.
    pub const ALL: Methods = Methods(31);

    /// The set of `methods`.
    pub fn of(methods: &[Method]) -> Methods {
        Methods(methods.iter().fold(0, |a, m| a | m.bit()))
    }

    /// Whether `m` is in the set.
    pub const fn contains(self, m: Method) -> bool {
        self.0 & m.bit() != 0
    }
}

/// A rule's path.
pub type RulePath = heapless::String<128>;

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Rule {
    /// Schemes it covers.
    pub schemes: &'static [Scheme],
    /// The listener port it covers; 0: the port the proxy serves on (each
    /// connection's own, when the proxy is not told one).
    pub port: u16,
    /// Prefix or exact.
    pub matching: Match,
    /// The path (normalised, starting with `/`).
    pub path: RulePath,
    /// Methods allowed.
    pub methods: Methods,
}

/// Both schemes.
pub const HTTPS_AND_WSS: &[Scheme] = &[Scheme::Https, Scheme::Wss];
/// HTTPS only.
pub const HTTPS_ONLY: &[Scheme] = &[Scheme::Https];
/// WSS only.
pub const WSS_ONLY: &[Scheme] = &[Scheme::Wss];

impl Rule {
    /// A rule; `None` when `path` is longer than a [`RulePath`] holds.
    pub fn new(
        schemes: &'static [Scheme],
        port: u16,
        matching: Match,
        path: &str,
        methods: &[Method],
    ) -> Option<Rule> {
        let mut p = RulePath::new();
        p.push_str(path).ok()?;
        Some(Rule {
            schemes,
            port,
            matching,
            path: p,
            methods: Methods::of(methods),
        })
    }

    /// The rule added for each web bridge: prefix `/`, the five methods, https and
    /// wss on `port` (443).
    pub fn web_bridge_default(port: u16) -> Rule {
        let mut path = RulePath::new();
        let _ = path.push('/');
        Rule {
            schemes: HTTPS_AND_WSS,
            port,
            matching: Match::Prefix,
            path,
            methods: Methods::ALL,
        }
    }

    /// Whether the rule's path covers `path`.
    pub fn covers(&self, path: &str) -> bool {
        let p = self.path.as_str();
        match self.matching {
            Match::Exact => path == p,
            Match::Prefix => {
                path == p
                    || (path.starts_with(p)
                        && (p.ends_with('/') || path.as_bytes().get(p.len()) == Some(&b'/')))
            }
        }
    }
}

/// Checks a request against `rules`.
pub fn check(
    rules: &[Rule],
    scheme: Scheme,
    port: u16,
    method: Option<Method>,
    path: &str,
) -> Result<(), Refusal> {
    let mut path_covered = false;
    for r in rules {
        if (r.port != 0 && r.port != port) || !r.schemes.contains(&scheme) || !r.covers(path) {
            continue;
        }
        path_covered = true;
        if method.is_some_and(|m| r.methods.contains(m)) {
            return Ok(());
        }
    }
    Err(Refusal::new(if path_covered {
        Reason::MethodNotAllowed
    } else {
        Reason::NotAllowed
    }))
}

#[cfg(test)]
mod test {
    use super::*;

    fn rule(schemes: &'static [Scheme], m: Match, path: &str, methods: &[Method]) -> Rule {
        Rule::new(schemes, 443, m, path, methods).unwrap()
    }

    #[test]
    fn rules() {
        let rules = [
            rule(
                HTTPS_ONLY,
                Match::Prefix,
                "/api",
                &[Method::Get, Method::Post],
            ),
            rule(
                HTTPS_ONLY,
                Match::Exact,
                "/index.html",
                &[Method::Get, Method::Head],
            ),
            rule(WSS_ONLY, Match::Exact, "/ws", &[Method::Get]),
        ];
        let ok = |s, m, p| check(&rules, s, 443, Method::parse(m), p);
        assert_eq!(ok(Scheme::Https, "GET", "/api"), Ok(()));
        assert_eq!(ok(Scheme::Https, "POST", "/api/join/1"), Ok(()));
        assert_eq!(
            ok(Scheme::Https, "PUT", "/api/join/1").unwrap_err().status,
            405
        );
        assert_eq!(ok(Scheme::Https, "GET", "/apix").unwrap_err().status, 403);
        assert_eq!(ok(Scheme::Https, "GET", "/index.html"), Ok(()));
        assert_eq!(
            ok(Scheme::Https, "GET", "/index.html/x")
                .unwrap_err()
                .status,
            403
        );
        assert_eq!(ok(Scheme::Https, "GET", "/ws").unwrap_err().status, 403);
        assert_eq!(ok(Scheme::Wss, "GET", "/ws"), Ok(()));
        assert_eq!(
            ok(Scheme::Https, "OPTIONS", "/api").unwrap_err().status,
            405
        );
        assert_eq!(
            check(&rules, Scheme::Https, 8443, Method::parse("GET"), "/api")
                .unwrap_err()
                .status,
            403
        );
        let all = [Rule::web_bridge_default(443)];
        assert_eq!(
            check(
                &all,
                Scheme::Wss,
                443,
                Some(Method::Delete),
                "/anything/at/all"
            ),
            Ok(())
        );
        assert_eq!(
            check(&all, Scheme::Https, 443, None, "/")
                .unwrap_err()
                .status,
            405
        );
    }
}
