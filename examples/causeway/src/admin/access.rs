//! Who may use the admin port. Probes and metrics are open (by default
//! `/healthz`, `/readyz`, `/metrics`: a kubelet and Prometheus carry no secret);
//! everything else, the status with its usernames and client addresses, reload
//! and drain, needs the admin token as `Authorization: Bearer TOKEN`. Whatever
//! the path, a request must name the admin port by an IP address, `localhost`
//! or a configured name in `Host` (a DNS-rebinding page names its own domain),
//! and a browser's cross-site request is refused (`Origin` of another site,
//! `Sec-Fetch-Site: cross-site`), so a web page open on the operator's machine
//! can neither read nor change anything.
//!
//! The token is read from the file `admin_token_file` names; without one, a
//! token is drawn at start, written to a file only the server's user can read,
//! and its place printed.

use std::fmt;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Shortest token accepted from a file.
pub(crate) const TOKEN_MIN: usize = 16;

/// What a request to the admin port says about itself.
#[derive(Debug, Default)]
pub(crate) struct Request {
    pub(crate) method: String,
    /// The path, without the query.
    pub(crate) path: String,
    /// What follows `?` (empty without one).
    pub(crate) query: String,
    pub(crate) host: Option<String>,
    pub(crate) origin: Option<String>,
    pub(crate) fetch_site: Option<String>,
    pub(crate) authorization: Option<String>,
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denied {
    /// `Host` names something else than the admin port (DNS rebinding).
    Host,
    /// A browser's request from another site.
    CrossSite,
    /// The path needs the token and none (or a wrong one) came.
    Token,
}

impl Denied {
    /// The status line and the answer's text.
    pub(crate) fn answer(self) -> (&'static str, &'static str) {
        match self {
            Denied::Host => (
                "421 Misdirected Request",
                "Host must name this admin port by its address, localhost or a name in admin_names\n",
            ),
            Denied::CrossSite => ("403 Forbidden", "cross-site requests are refused\n"),
            Denied::Token => (
                "401 Unauthorized",
                "this path needs the admin token: Authorization: Bearer TOKEN (see admin_token_file)\n",
            ),
        }
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Denied::Host => "Host names another site",
            Denied::CrossSite => "cross-site request",
            Denied::Token => "no or wrong admin token",
        })
    }
}

/// The rules, shared with the main thread (a reload replaces them).
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    /// The token, as the file holds it (trimmed).
    pub(crate) token: String,
    /// Names besides IP literals and `localhost` that `Host` may carry.
    pub(crate) names: Vec<String>,
    /// Paths open without the token.
    pub(crate) open: Vec<String>,
}

/// The rules behind a lock, for the admin threads.
#[derive(Clone)]
pub(crate) struct Access(Arc<RwLock<Rules>>);

impl Access {
    pub(crate) fn new(rules: Rules) -> Access {
        Access(Arc::new(RwLock::new(rules)))
    }

    /// Replaces the rules (a reload).
    pub(crate) fn set(&self, rules: Rules) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = rules;
    }

    /// Judges a request.
    pub(crate) fn check(&self, req: &Request) -> Result<(), Denied> {
        let rules = self.0.read().unwrap_or_else(|e| e.into_inner());
        let host = req.host.as_deref().ok_or(Denied::Host)?;
        if !host_allowed(host, &rules.names) {
            return Err(Denied::Host);
        }
        if req.fetch_site.as_deref() == Some("cross-site")
            || req.origin.as_deref().is_some_and(|o| !same_origin(o, host))
        {
            return Err(Denied::CrossSite);
        }
        // The usage page itself holds no data: it asks for the token to read any.
        let open = matches!(req.path.as_str(), "/" | "/usage") || rules.open.contains(&req.path);
        if open && req.method == "GET" {
            return Ok(());
        }
        let given = req
            .authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or_default();
        if !rules.token.is_empty() && equal(given.as_bytes(), rules.token.as_bytes()) {
            Ok(())
        } else {
            Err(Denied::Token)
        }
    }
}

/// Compares in time that depends on the lengths only.
fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// `Host` without its port.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Whether `host` is an IP literal, `localhost`, or one of `names`.
fn host_allowed(host: &str, names: &[String]) -> bool {
    let name = host_name(host.trim());
    name.parse::<IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || names.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Whether `origin` (`scheme://host[:port]`) is the admin port `host` itself.
fn same_origin(origin: &str, host: &str) -> bool {
    origin
        .strip_prefix("http://")
        .is_some_and(|o| o.eq_ignore_ascii_case(host.trim()))
}

/// Reads the token from `path`: trimmed, at least [`TOKEN_MIN`] bytes.
pub(crate) fn read_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let token = text.trim().to_string();
    if token.contains("REPLACE") {
        return Err(format!(
            "{} still holds the example's placeholder: put a generated token there (openssl rand -hex 24)",
            path.display()
        ));
    }
    if token.len() < TOKEN_MIN || token.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(format!(
            "{} must hold a token of at least {TOKEN_MIN} printable characters (e.g. openssl rand -hex 24)",
            path.display()
        ));
    }
    Ok(token)
}

/// A new token: 24 random bytes, hex.
pub(crate) fn new_token() -> Result<String, String> {
    let mut b = [0u8; 24];
    getrandom::fill(&mut b).map_err(|e| format!("the OS random source failed: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Where a drawn token is written: the service's runtime directory (systemd's
/// `RuntimeDirectory=`), else the user's, else the temporary directory; named
/// by the admin port and the process (two servers never share one).
pub(crate) fn token_path(port: u16) -> PathBuf {
    let dir = ["RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR"]
        .iter()
        .filter_map(std::env::var_os)
        .map(PathBuf::from)
        .find(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    dir.join(format!(
        "causeway-admin-{port}-{}.token",
        std::process::id()
    ))
}

/// Writes `token` to `path`, readable by this user only.
pub(crate) fn write_token(path: &Path, token: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write the admin token to {}: {e}", path.display()))?;
    writeln!(f, "{token}").map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> Access {
        Access::new(Rules {
            token: "0123456789abcdef0123".into(),
            names: vec!["turn-admin.example.com".into()],
            open: vec!["/healthz".into(), "/readyz".into(), "/metrics".into()],
        })
    }

    fn req(method: &str, path: &str, host: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            host: Some(host.into()),
            ..Request::default()
        }
    }

    #[test]
    fn probes_are_open_the_rest_needs_the_token() {
        let a = access();
        assert_eq!(a.check(&req("GET", "/healthz", "10.0.0.36:4455")), Ok(()));
        assert_eq!(a.check(&req("GET", "/metrics", "127.0.0.1:4455")), Ok(()));
        assert_eq!(
            a.check(&req("POST", "/healthz", "127.0.0.1:4455")),
            Err(Denied::Token),
            "only GET is open"
        );
        for path in ["/status", "/history", "/reload", "/drain", "/upgrade"] {
            assert_eq!(
                a.check(&req("GET", path, "127.0.0.1:4455")),
                Err(Denied::Token)
            );
            let mut r = req("POST", path, "[::1]:4455");
            r.authorization = Some("Bearer 0123456789abcdef0123".into());
            assert_eq!(a.check(&r), Ok(()), "{path}");
            r.authorization = Some("Bearer 0123456789abcdef0124".into());
            assert_eq!(a.check(&r), Err(Denied::Token), "{path}");
        }
    }

    #[test]
    fn a_rebinding_host_and_a_cross_site_request_are_refused() {
        let a = access();
        for host in ["attacker.example:4455", "attacker.example", ""] {
            assert_eq!(
                a.check(&req("GET", "/healthz", host)),
                Err(Denied::Host),
                "{host}"
            );
        }
        let mut no_host = req("GET", "/healthz", "x");
        no_host.host = None;
        assert_eq!(a.check(&no_host), Err(Denied::Host));
        assert_eq!(
            a.check(&req("GET", "/healthz", "TURN-ADMIN.example.com:4455")),
            Ok(())
        );
        assert_eq!(a.check(&req("GET", "/healthz", "localhost:4455")), Ok(()));
        // A text/plain POST from a page on another site, token or not.
        let mut r = req("POST", "/reload", "127.0.0.1:4455");
        r.origin = Some("https://attacker.example".into());
        r.authorization = Some("Bearer 0123456789abcdef0123".into());
        assert_eq!(a.check(&r), Err(Denied::CrossSite));
        r.origin = Some("http://127.0.0.1:4455".into());
        assert_eq!(a.check(&r), Ok(()), "the usage page's own requests");
        r.origin = None;
        r.fetch_site = Some("cross-site".into());
        assert_eq!(a.check(&r), Err(Denied::CrossSite));
    }

    #[test]
    fn a_token_file_is_read_trimmed_and_a_short_one_refused() {
        let dir = std::env::temp_dir().join(format!("cw-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t");
        write_token(&path, "0123456789abcdef0123").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "owner only: {mode:o}");
        assert_eq!(read_token(&path).unwrap(), "0123456789abcdef0123");
        std::fs::write(&path, "short\n").unwrap();
        assert!(read_token(&path).unwrap_err().contains("at least 16"));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(new_token().unwrap().len(), 48);
    }
}
