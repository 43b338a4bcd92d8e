//! The TOML configuration, the embedded default, flag overrides, and validation
//! that names the faulty field.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use turn_core::server::policy::Cidr;

use crate::cli::ServeArgs;

/// The embedded default configuration (loopback only).
pub(crate) const DEFAULT_TOML: &str = include_str!("default.toml");

/// The whole configuration of `causeway serve`. Every key is optional, section by
/// section (a missing key takes its default, [`Config::default`]); flags of the
/// same name (with `-` for `_`) override the file, and only the result is
/// validated, so a file may hold some settings and the flags the rest.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    /// UDP and TCP STUN/TURN listeners.
    pub(crate) listen: Vec<SocketAddr>,
    /// Authentication realm.
    pub(crate) realm: String,
    /// SOFTWARE attribute; empty to omit.
    pub(crate) software: String,
    /// Long-term credentials, `name:password`.
    pub(crate) user: Vec<String>,
    /// Create user `demo` with a random password at start and print it.
    pub(crate) demo_user: bool,
    /// Secret of time-limited credentials (TURN REST scheme); empty disables them.
    pub(crate) shared_secret: String,
    /// Relay port range, `LOW-HIGH`.
    pub(crate) relay_range: String,
    /// Addresses relay sockets bind to (one IPv4, one IPv6); default: the first
    /// listen address of each family.
    pub(crate) relay_ip: Vec<IpAddr>,
    /// Addresses advertised in XOR-RELAYED-ADDRESS (static NAT), one per family.
    pub(crate) external_ip: Vec<IpAddr>,
    /// Peers that may be relayed to despite the built-in deny list.
    pub(crate) allow_peer: Vec<String>,
    /// Extra peers never relayed to (wins over `allow_peer`).
    pub(crate) deny_peer: Vec<String>,
    /// TURN over TLS and the web proxy, demultiplexed on one TCP port (443).
    pub(crate) tls_listen: Vec<SocketAddr>,
    /// Certificate chain (PEM) for `tls_listen`; it must cover every join URL.
    pub(crate) cert: Option<PathBuf>,
    /// Private key (PEM) for `cert`.
    pub(crate) key: Option<PathBuf>,
    /// Web proxy: `JOIN_HOST=UPSTREAM` (UPSTREAM: `https://bridge:443`, `http://bridge:8080`).
    pub(crate) proxy: Vec<String>,
    /// CA bundle (PEM) that web bridge certificates are verified against.
    pub(crate) upstream_ca: Option<PathBuf>,
    /// Plain HTTP listener that redirects to https.
    pub(crate) http_redirect: Option<SocketAddr>,
    /// Allow-list rules beyond the ones added for each web bridge.
    pub(crate) rule: Vec<RuleConfig>,
    /// Add the rule of the reference for each web bridge (prefix `/`, the five
    /// methods, https and wss on the TLS port); `false` leaves only `rule`.
    pub(crate) web_bridge_rules: bool,
    /// Status JSON and Prometheus metrics (never port 443).
    pub(crate) admin: SocketAddr,
    /// Sent with 300 Try Alternate when this node is full.
    pub(crate) alternate_server: Option<SocketAddr>,
    /// Accept channels 0x5000-0x7FFF as RFC 5766 did (coturn's tools, pjnath).
    pub(crate) legacy_channels: bool,
    /// Longest allocation lifetime granted, seconds.
    pub(crate) max_lifetime: u64,
    /// Seconds before a nonce is stale.
    pub(crate) nonce_lifetime: u64,
    /// Worker threads; 0 for one per core.
    pub(crate) threads: usize,
    /// Log level.
    pub(crate) log_level: String,
    /// Allocation quotas.
    pub(crate) quota: QuotaConfig,
    /// TCP listener settings.
    pub(crate) tcp: TcpConfig,
    /// Budgets of unauthenticated UDP answers (401, 438): the server is no reflector.
    pub(crate) limits: LimitsConfig,
    /// The web proxy's timers against slow clients.
    pub(crate) http: HttpConfig,
}

/// `[http]`: the web proxy's timers against slow (or stalled) clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct HttpConfig {
    /// From a request's first byte to the end of its head.
    pub(crate) head_timeout_secs: u64,
    /// Longest pause inside a request body.
    pub(crate) body_timeout_secs: u64,
    /// How long a request body may take before `body_min_rate` applies.
    pub(crate) body_grace_secs: u64,
    /// Least average request body rate after the grace time, bytes/s (0: none).
    pub(crate) body_min_rate: u64,
    /// Longest wait for the next request on a kept-alive connection.
    pub(crate) keepalive_timeout_secs: u64,
    /// Longest stall of a write to a browser (a slow download that moves is fine).
    pub(crate) send_timeout_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        let d = proxy_core::timer::Deadlines::default();
        HttpConfig {
            head_timeout_secs: d.head_ms / 1000,
            body_timeout_secs: d.body_idle_ms / 1000,
            body_grace_secs: d.body_grace_ms / 1000,
            body_min_rate: d.body_min_rate,
            keepalive_timeout_secs: d.idle_ms / 1000,
            send_timeout_secs: 60,
        }
    }
}

impl HttpConfig {
    /// The proxy-core timers.
    pub(crate) fn deadlines(&self) -> proxy_core::timer::Deadlines {
        proxy_core::timer::Deadlines {
            head_ms: self.head_timeout_secs * 1000,
            body_idle_ms: self.body_timeout_secs * 1000,
            body_grace_ms: self.body_grace_secs * 1000,
            body_min_rate: self.body_min_rate,
            idle_ms: self.keepalive_timeout_secs * 1000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 3478))],
            realm: "causeway".into(),
            software: "causeway".into(),
            user: Vec::new(),
            demo_user: false,
            shared_secret: String::new(),
            relay_range: "49152-65535".into(),
            relay_ip: Vec::new(),
            external_ip: Vec::new(),
            allow_peer: Vec::new(),
            deny_peer: Vec::new(),
            tls_listen: Vec::new(),
            cert: None,
            key: None,
            proxy: Vec::new(),
            upstream_ca: None,
            http_redirect: None,
            rule: Vec::new(),
            web_bridge_rules: true,
            admin: SocketAddr::from(([127, 0, 0, 1], 4455)),
            alternate_server: None,
            legacy_channels: true,
            max_lifetime: 3600,
            nonce_lifetime: 600,
            threads: 0,
            log_level: "info".into(),
            quota: QuotaConfig::default(),
            tcp: TcpConfig::default(),
            limits: LimitsConfig::default(),
            http: HttpConfig::default(),
        }
    }
}

/// `[limits]`: unauthenticated answers over UDP, past which the server is silent.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct LimitsConfig {
    /// Per source IP, at once.
    pub(crate) unauth_burst: u32,
    /// Per source IP, per second after the burst.
    pub(crate) unauth_per_sec: u32,
    /// Over all sources, per second (per worker).
    pub(crate) unauth_total_per_sec: u32,
    /// Per source that has authenticated within a nonce's lifetime, per second
    /// and at once (per worker); not counted in the total.
    pub(crate) unauth_verified_per_sec: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            unauth_burst: 100,
            unauth_per_sec: 50,
            unauth_total_per_sec: 2000,
            unauth_verified_per_sec: 10_000,
        }
    }
}

/// `[[rule]]`: one allow-list rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleConfig {
    /// `https`, `wss`, or both.
    pub(crate) scheme: Vec<String>,
    /// Listener port; default: the TLS listener's port (443).
    pub(crate) port: Option<u16>,
    /// `prefix` or `exact`.
    #[serde(rename = "match")]
    pub(crate) matching: String,
    /// Path, starting with `/`.
    pub(crate) path: String,
    /// Among GET, POST, PUT, HEAD, DELETE.
    pub(crate) methods: Vec<String>,
}

/// `[quota]`: how many allocations.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct QuotaConfig {
    /// Per user (486 past it); none by default, since a meeting server hands one
    /// TURN user to every browser. The user part of a time-limited credential
    /// (`expiry:user`) is what counts.
    pub(crate) per_user: Option<usize>,
    /// In total (508, or 300 to `alternate_server`, past it); by default what the
    /// machine allows (relay ports, file descriptors, memory; logged at start).
    pub(crate) total: Option<usize>,
}

/// `[tcp]`: limits for stream clients (TURN over TCP and TLS).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct TcpConfig {
    /// Most simultaneous TCP and TLS clients per worker.
    pub(crate) max_connections: usize,
    /// Most simultaneous TCP and TLS clients from one source address, over all
    /// workers (an office NAT puts many browsers behind one address).
    pub(crate) max_per_source: usize,
    /// A connection must finish its TLS handshake and send its first whole
    /// message within this many seconds of being accepted (not refreshed by
    /// bytes that trickle in).
    pub(crate) handshake_timeout_secs: u64,
    /// A connection without an allocation, idle this long, is closed.
    pub(crate) idle_timeout_secs: u64,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            max_connections: 4096,
            max_per_source: 1024,
            handshake_timeout_secs: 10,
            idle_timeout_secs: 60,
        }
    }
}

/// A configuration the server refuses to start with.
#[derive(Debug)]
pub(crate) enum ConfigError {
    /// The file could not be read.
    Read(std::path::PathBuf, std::io::Error),
    /// The TOML is malformed or has unknown or mistyped keys.
    Parse(String, toml::de::Error),
    /// A field's value is not acceptable.
    Field(&'static str, String),
    /// The certificate, key or CA cannot be used (the message names the field).
    Tls(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            ConfigError::Parse(src, e) => write!(f, "{src}: {e}"),
            ConfigError::Field(field, why) => write!(f, "`{field}`: {why}"),
            ConfigError::Tls(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ConfigError {}

fn field(name: &'static str, why: impl Into<String>) -> ConfigError {
    ConfigError::Field(name, why.into())
}

/// The parts of the configuration that need parsing beyond TOML.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) port_min: u16,
    pub(crate) port_max: u16,
    pub(crate) users: Vec<(String, String)>,
    pub(crate) allow: Vec<Cidr>,
    pub(crate) deny: Vec<Cidr>,
    /// Join URL hosts and their web bridges.
    pub(crate) sites: Vec<(String, crate::proxy::Upstream)>,
    /// Extra allow-list rules.
    pub(crate) rules: Vec<proxy_core::allow::Rule>,
    /// TLS for `tls_listen`, loaded and checked.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// TLS toward web bridges.
    pub(crate) client_tls: Option<Arc<rustls::ClientConfig>>,
}

impl Config {
    /// The embedded default, or `--config FILE`, with the flags applied, validated.
    pub(crate) fn load(args: &ServeArgs) -> Result<(Config, Resolved), ConfigError> {
        let mut cfg = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::Read(path.clone(), e))?;
                Config::parse(&text, &path.display().to_string())?
            }
            None => Config::parse(DEFAULT_TOML, "embedded default config")?,
        };
        cfg.apply(args);
        let mut resolved = cfg.validate()?;
        cfg.load_tls(&mut resolved)?;
        Ok((cfg, resolved))
    }

    /// Parses TOML text; `source` names it in errors.
    pub(crate) fn parse(text: &str, source: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse(source.to_string(), e))
    }

    /// Applies the flags given on the command line.
    fn apply(&mut self, a: &ServeArgs) {
        fn set<T: Clone>(dst: &mut T, src: &Option<T>) {
            if let Some(v) = src {
                *dst = v.clone();
            }
        }
        fn extend<T: Clone>(dst: &mut Vec<T>, src: &[T]) {
            if !src.is_empty() {
                *dst = src.to_vec();
            }
        }
        extend(&mut self.listen, &a.listen);
        extend(&mut self.user, &a.user);
        extend(&mut self.relay_ip, &a.relay_ip);
        extend(&mut self.external_ip, &a.external_ip);
        extend(&mut self.allow_peer, &a.allow_peer);
        extend(&mut self.deny_peer, &a.deny_peer);
        set(&mut self.realm, &a.realm);
        set(&mut self.software, &a.software);
        set(&mut self.shared_secret, &a.shared_secret);
        set(&mut self.relay_range, &a.relay_range);
        set(&mut self.admin, &a.admin);
        set(&mut self.threads, &a.threads);
        extend(&mut self.tls_listen, &a.tls_listen);
        extend(&mut self.proxy, &a.proxy);
        if a.cert.is_some() {
            self.cert = a.cert.clone();
        }
        if a.key.is_some() {
            self.key = a.key.clone();
        }
        if a.upstream_ca.is_some() {
            self.upstream_ca = a.upstream_ca.clone();
        }
        if a.http_redirect.is_some() {
            self.http_redirect = a.http_redirect;
        }
        set(&mut self.log_level, &a.log_level);
        if a.alternate_server.is_some() {
            self.alternate_server = a.alternate_server;
        }
        if !a.user.is_empty() || a.shared_secret.is_some() {
            // Real credentials given on the command line replace the demo user.
            self.demo_user = false;
        }
    }

    /// Refuses values the server cannot run with, naming the field.
    pub(crate) fn validate(&self) -> Result<Resolved, ConfigError> {
        if self.listen.is_empty() {
            return Err(field("listen", "at least one address is needed"));
        }
        let mut seen = HashSet::new();
        for a in &self.listen {
            if !seen.insert(a) {
                return Err(field("listen", format!("{a} is listed twice")));
            }
        }
        if self.realm.is_empty() || self.realm.len() > 64 {
            return Err(field("realm", "must be 1 to 64 bytes"));
        }
        if self.software.len() > 64 {
            return Err(field("software", "longer than 64 bytes"));
        }
        let (port_min, port_max) = parse_range(&self.relay_range)?;
        let (relay_v4, relay_v6) = self.relay_ips();
        for a in &self.listen {
            let relay = if a.is_ipv4() {
                relay_v4.map(IpAddr::V4)
            } else {
                relay_v6.map(IpAddr::V6)
            };
            let shares_ip = a.ip().is_unspecified() || relay == Some(a.ip());
            if a.port() != 0 && (port_min..=port_max).contains(&a.port()) && shares_ip {
                return Err(field(
                    "listen",
                    format!(
                        "{a} is inside relay_range {port_min}-{port_max} on the relay address: \
                         relay sockets would compete with the listener for it; move one of them"
                    ),
                ));
            }
        }
        let mut users = Vec::new();
        let mut names = HashSet::new();
        for u in &self.user {
            let Some((name, pass)) = u.split_once(':') else {
                return Err(field("user", format!("`{u}` is not NAME:PASSWORD")));
            };
            if name.is_empty() || pass.is_empty() || name.len() > turn_core::server::USERNAME_MAX {
                return Err(field(
                    "user",
                    format!("`{name}`: empty name or password, or name too long"),
                ));
            }
            if !names.insert(name.to_string()) {
                return Err(field("user", format!("`{name}` is listed twice")));
            }
            users.push((name.to_string(), pass.to_string()));
        }
        if users.is_empty() && self.shared_secret.is_empty() && !self.demo_user {
            return Err(field(
                "user",
                "no credentials: give --user NAME:PASS, --shared-secret, or demo_user = true",
            ));
        }
        if self.shared_secret.len() > 128 {
            return Err(field("shared_secret", "longer than 128 bytes"));
        }
        for (name, list) in [
            ("relay_ip", &self.relay_ip),
            ("external_ip", &self.external_ip),
        ] {
            if list.iter().filter(|a| a.is_ipv4()).count() > 1
                || list.iter().filter(|a| a.is_ipv6()).count() > 1
            {
                return Err(field(name, "at most one IPv4 and one IPv6 address"));
            }
            if list.iter().any(|a| a.is_unspecified() || a.is_multicast()) {
                return Err(field(name, "must be unicast addresses of this host"));
            }
        }
        let relay_families = self.relay_ips();
        if relay_families.0.is_none() && relay_families.1.is_none() {
            return Err(field(
                "relay_ip",
                "no relay address: listen on a specific address or set relay_ip",
            ));
        }
        for e in &self.external_ip {
            let has = if e.is_ipv4() {
                relay_families.0.is_some()
            } else {
                relay_families.1.is_some()
            };
            if !has {
                return Err(field(
                    "external_ip",
                    format!("{e} has no relay address of its family"),
                ));
            }
        }
        let cidrs = |name: &'static str, list: &[String]| -> Result<Vec<Cidr>, ConfigError> {
            list.iter()
                .map(|s| Cidr::parse(s).map_err(|e| field(name, format!("`{s}`: {e}"))))
                .collect()
        };
        let allow = cidrs("allow_peer", &self.allow_peer)?;
        let deny = cidrs("deny_peer", &self.deny_peer)?;
        if allow.len() > 32 || deny.len() > 32 {
            return Err(field(
                "allow_peer",
                "at most 32 entries in each of allow_peer and deny_peer",
            ));
        }
        if self.admin.port() == 443 {
            return Err(field("admin", "the admin interface never shares port 443"));
        }
        if self.admin.port() != 0 && self.listen.contains(&self.admin) {
            return Err(field("admin", "must differ from every listen address"));
        }
        if !["off", "error", "warn", "info", "debug", "trace"].contains(&self.log_level.as_str()) {
            return Err(field(
                "log_level",
                format!(
                    "`{}` is not one of off, error, warn, info, debug, trace",
                    self.log_level
                ),
            ));
        }
        if self.max_lifetime < 600 {
            return Err(field(
                "max_lifetime",
                "must be at least 600 s (the default lifetime)",
            ));
        }
        if self.nonce_lifetime == 0 {
            return Err(field("nonce_lifetime", "must be at least 1 s"));
        }
        if self.quota.per_user == Some(0) {
            return Err(field(
                "quota.per_user",
                "must be at least 1 (leave it out for no limit)",
            ));
        }
        if self.quota.total == Some(0) {
            return Err(field("quota.total", "must be at least 1"));
        }
        if self.quota.total.is_some_and(|t| t > 1_000_000) {
            return Err(field("quota.total", "at most 1000000"));
        }
        if self.limits.unauth_burst == 0
            || self.limits.unauth_per_sec == 0
            || self.limits.unauth_total_per_sec == 0
            || self.limits.unauth_verified_per_sec == 0
        {
            return Err(field(
                "limits",
                "unauthenticated budgets must be at least 1",
            ));
        }
        if self.tcp.max_connections == 0 {
            return Err(field("tcp.max_connections", "must be at least 1"));
        }
        if self.tcp.max_per_source == 0 {
            return Err(field("tcp.max_per_source", "must be at least 1"));
        }
        if self.tcp.handshake_timeout_secs == 0 {
            return Err(field("tcp.handshake_timeout_secs", "must be at least 1"));
        }
        for (name, v) in [
            ("http.head_timeout_secs", self.http.head_timeout_secs),
            ("http.body_timeout_secs", self.http.body_timeout_secs),
            (
                "http.keepalive_timeout_secs",
                self.http.keepalive_timeout_secs,
            ),
            ("http.send_timeout_secs", self.http.send_timeout_secs),
        ] {
            if v == 0 || v > 86_400 {
                return Err(field(name, "must be 1 to 86400 seconds"));
            }
        }
        if self.tcp.idle_timeout_secs == 0 {
            return Err(field("tcp.idle_timeout_secs", "must be at least 1"));
        }
        let (sites, rules) = self.validate_web()?;
        Ok(Resolved {
            port_min,
            port_max,
            users,
            allow,
            deny,
            sites,
            rules,
            tls: None,
            client_tls: None,
        })
    }

    /// The TLS listener, the web proxy and the TCP ports they claim.
    #[allow(clippy::type_complexity)]
    fn validate_web(
        &self,
    ) -> Result<
        (
            Vec<(String, crate::proxy::Upstream)>,
            Vec<proxy_core::allow::Rule>,
        ),
        ConfigError,
    > {
        use proxy_core::allow::{HTTPS_AND_WSS, HTTPS_ONLY, Match, Method, Rule, WSS_ONLY};
        if !self.tls_listen.is_empty() && (self.cert.is_none() || self.key.is_none()) {
            return Err(field("cert", "tls_listen needs both cert and key"));
        }
        if self.tls_listen.is_empty() && (self.cert.is_some() || self.key.is_some()) {
            return Err(field(
                "tls_listen",
                "cert and key are given but no tls_listen address",
            ));
        }
        if !self.proxy.is_empty() && self.tls_listen.is_empty() {
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
        let all = self
            .listen
            .iter()
            .map(|a| (*a, "listen"))
            .chain(self.tls_listen.iter().map(|a| (*a, "tls_listen")))
            .chain(std::iter::once((self.admin, "admin")))
            .chain(self.http_redirect.iter().map(|a| (*a, "http_redirect")));
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
        for p in &self.proxy {
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
            let up = crate::proxy::Upstream::parse(up.trim()).map_err(|e| field("proxy", e))?;
            if up.tls && self.upstream_ca.is_none() {
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
        for r in &self.rule {
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

    /// Loads the certificate and key (checking they cover every join URL) and the
    /// web bridges' CA.
    fn load_tls(&self, r: &mut Resolved) -> Result<(), ConfigError> {
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            let hosts: Vec<&str> = r.sites.iter().map(|(h, _)| h.as_str()).collect();
            let tls =
                crate::proxy::tls::server_config(cert, key, &hosts).map_err(ConfigError::Tls)?;
            r.tls = Some(tls);
        }
        if !r.sites.is_empty() {
            r.client_tls = Some(
                crate::proxy::tls::client_config(self.upstream_ca.as_deref())
                    .map_err(ConfigError::Tls)?,
            );
        }
        Ok(())
    }

    /// The relay addresses: configured, or the first specific listen address of
    /// each family.
    pub(crate) fn relay_ips(&self) -> (Option<std::net::Ipv4Addr>, Option<std::net::Ipv6Addr>) {
        let pick = |list: &mut dyn Iterator<Item = IpAddr>| {
            let mut v4 = None;
            let mut v6 = None;
            for ip in list {
                match ip {
                    IpAddr::V4(a) if v4.is_none() && !a.is_unspecified() => v4 = Some(a),
                    IpAddr::V6(a) if v6.is_none() && !a.is_unspecified() => v6 = Some(a),
                    _ => {}
                }
            }
            (v4, v6)
        };
        if self.relay_ip.is_empty() {
            pick(&mut self.listen.iter().map(SocketAddr::ip))
        } else {
            pick(&mut self.relay_ip.iter().copied())
        }
    }

    /// Worker threads to run.
    pub(crate) fn worker_threads(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// Parses `LOW-HIGH`.
fn parse_range(s: &str) -> Result<(u16, u16), ConfigError> {
    let bad = || {
        field(
            "relay_range",
            format!("`{s}` is not LOW-HIGH with 1 <= LOW <= HIGH <= 65535"),
        )
    };
    let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default() -> Config {
        Config::parse(DEFAULT_TOML, "d").unwrap()
    }

    #[test]
    fn embedded_default_is_valid_and_loopback() {
        let (cfg, r) = Config::load(&ServeArgs::default()).unwrap();
        assert_eq!(
            cfg.listen,
            vec!["127.0.0.1:3478".parse::<SocketAddr>().unwrap()]
        );
        assert!(cfg.listen.iter().all(|a| a.ip().is_loopback()));
        assert!(cfg.admin.ip().is_loopback());
        assert!(cfg.demo_user);
        assert_eq!((r.port_min, r.port_max), (49152, 65535));
        assert_eq!(cfg.relay_ips().0, Some("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let e = Config::parse("listen = []\nlisten_typo = 1\n", "test.toml").unwrap_err();
        assert!(e.to_string().contains("listen_typo"), "{e}");
    }

    #[test]
    fn bad_values_name_the_field() {
        let check = |f: &dyn Fn(&mut Config), name: &str| {
            let mut cfg = default();
            f(&mut cfg);
            let e = cfg.validate().unwrap_err().to_string();
            assert!(e.starts_with(&format!("`{name}`")), "{name}: {e}");
        };
        check(&|c| c.log_level = "loud".into(), "log_level");
        check(&|c| c.listen.push(c.listen[0]), "listen");
        check(&|c| c.listen.clear(), "listen");
        check(&|c| c.relay_range = "30000-20000".into(), "relay_range");
        check(&|c| c.relay_range = "0-10".into(), "relay_range");
        check(&|c| c.relay_range = "a-b".into(), "relay_range");
        check(&|c| c.user = vec!["nopassword".into()], "user");
        check(&|c| c.user = vec!["a:1".into(), "a:2".into()], "user");
        check(&|c| c.admin = "127.0.0.1:443".parse().unwrap(), "admin");
        check(&|c| c.allow_peer = vec!["10.0.0.0/33".into()], "allow_peer");
        check(&|c| c.deny_peer = vec!["nonsense".into()], "deny_peer");
        check(
            &|c| c.external_ip = vec!["2001:db8::1".parse().unwrap()],
            "external_ip",
        );
        check(
            &|c| c.listen = vec!["0.0.0.0:3478".parse().unwrap()],
            "relay_ip",
        );
        check(
            &|c| {
                c.demo_user = false;
            },
            "user",
        );
        check(&|c| c.max_lifetime = 10, "max_lifetime");
    }

    #[test]
    fn every_key_is_optional_section_by_section() {
        let cfg =
            Config::parse("[quota]\nper_user = 3\n[tcp]\nmax_per_source = 10\n", "t").unwrap();
        assert_eq!(cfg.quota.per_user, Some(3));
        assert_eq!(cfg.quota.total, None, "machine-derived");
        assert_eq!(cfg.tcp.max_per_source, 10);
        assert_eq!(
            cfg.tcp.max_connections,
            TcpConfig::default().max_connections
        );
        assert_eq!(
            cfg.limits.unauth_burst,
            LimitsConfig::default().unauth_burst
        );
        assert_eq!(cfg.listen, Config::default().listen);
        // Valid once credentials come from anywhere.
        let mut with_user = cfg.clone();
        with_user.user = vec!["a:b".into()];
        with_user.validate().unwrap();
        let e = Config::parse("user = [\"a:b\"]\n[quota]\nper_user = 0\n", "t")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(e.to_string().starts_with("`quota.per_user`"), "{e}");
    }

    #[test]
    fn a_file_holds_some_settings_and_flags_give_the_rest() {
        let dir = std::env::temp_dir().join(format!("causeway-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("partial.toml");
        // Neither `listen` nor `user`: the flags give them.
        std::fs::write(
            &file,
            "realm = \"TANDBERG\"\nrelay_range = \"24000-29999\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file.clone()),
            listen: vec!["127.0.0.1:5000".parse().unwrap()],
            user: vec!["callbridge:s3cret".into()],
            ..ServeArgs::default()
        };
        let (cfg, r) = Config::load(&args).unwrap();
        assert_eq!(cfg.realm, "TANDBERG");
        assert_eq!(cfg.listen, args.listen);
        assert_eq!((r.port_min, r.port_max), (24000, 29999));
        // Without any credentials the result is refused, naming the field.
        let args = ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        };
        let e = Config::load(&args).unwrap_err().to_string();
        assert!(e.starts_with("`user`"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn listen_ports_inside_the_relay_range_are_refused() {
        let mut cfg = default();
        cfg.listen = vec!["127.0.0.1:50000".parse().unwrap()];
        let e = cfg.validate().unwrap_err().to_string();
        assert!(
            e.starts_with("`listen`") && e.contains("relay_range"),
            "{e}"
        );
        // On another address than the relay's, or outside the range: fine.
        cfg.relay_ip = vec!["127.0.0.2".parse().unwrap()];
        cfg.validate().unwrap();
        cfg.relay_ip.clear();
        cfg.listen = vec!["127.0.0.1:3478".parse().unwrap()];
        cfg.validate().unwrap();
        // Port 0 takes what the system gives; a relay socket skips a taken port.
        cfg.listen = vec!["127.0.0.1:0".parse().unwrap()];
        cfg.validate().unwrap();
    }

    #[test]
    fn flags_override_the_file() {
        let args = ServeArgs {
            listen: vec!["127.0.0.1:5000".parse().unwrap()],
            software: Some(String::new()),
            realm: Some("TANDBERG".into()),
            user: vec!["alice:pw".into()],
            relay_range: Some("24000-29999".into()),
            ..ServeArgs::default()
        };
        let (cfg, r) = Config::load(&args).unwrap();
        assert_eq!(cfg.listen, args.listen);
        assert_eq!(cfg.software, "");
        assert_eq!(cfg.realm, "TANDBERG");
        assert!(!cfg.demo_user, "real users replace the demo user");
        assert_eq!(r.users, vec![("alice".to_string(), "pw".to_string())]);
        assert_eq!((r.port_min, r.port_max), (24000, 29999));
    }
}
