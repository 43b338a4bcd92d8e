//! The configuration of `causeway serve` as the operator writes it: the TOML
//! file (or the embedded default) with the command line's flags applied.
//! [`Plan`] is what it converts to (`TryFrom`, naming the faulty field): the
//! library's settings and what the program adds around them.

mod bandwidth;
mod bounds;
mod plan;
mod secrets;
#[cfg(test)]
mod tests;
mod traversal;
mod web;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use crate::cli::ServeArgs;

pub(crate) use plan::{Plan, UserSecret, config_key};
pub(crate) use secrets::redact;
pub(crate) use traversal::{CONNECTOR, TraversalPlan};

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
    /// Secrets of time-limited credentials (TURN REST scheme): one, or a list
    /// during a rotation (any verifies); empty disables them.
    #[serde(deserialize_with = "one_or_many")]
    pub(crate) shared_secret: Vec<String>,
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
    /// Exact transport addresses of this host clients may relay to (`IP:PORT`
    /// or `IP:FIRST-LAST`): a media server beside the relay, on its address,
    /// which the own-address rule denies otherwise. Never a TURN listener, the
    /// admin port, the redirect port or the relay range.
    pub(crate) allow_local_peer: Vec<String>,
    /// The prefix length an IPv6 client is counted by in per-source limits
    /// (`tcp.max_per_source`, `http.max_per_source`): 64, a subscriber's network.
    pub(crate) ipv6_source_prefix: u8,
    /// TCP load balancers (CIDR ranges) whose TCP and TLS connections start with
    /// a PROXY protocol header (v1 or v2) naming the real client; off by default.
    pub(crate) proxy_protocol_from: Vec<String>,
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
    /// File holding the admin token (`Authorization: Bearer TOKEN` for
    /// `/status`, `/history`, `POST /reload`, `POST /drain`); without it a token
    /// is drawn at start and written to a file only this user reads.
    pub(crate) admin_token_file: Option<PathBuf>,
    /// Names `Host` may carry on the admin port besides IP addresses and
    /// `localhost` (a name of your own for it).
    pub(crate) admin_names: Vec<String>,
    /// Paths open without the token (GET only).
    pub(crate) admin_open: Vec<String>,
    /// Sent with 300 Try Alternate when this node is full.
    pub(crate) alternate_server: Option<SocketAddr>,
    /// Accept channels 0x5000-0x7FFF as RFC 5766 did (coturn's tools, pjnath).
    pub(crate) legacy_channels: bool,
    /// Answer RFC 3489 Binding requests (no magic cookie) with MAPPED-ADDRESS;
    /// `false` drops them (counted as `classic_off`).
    pub(crate) classic_stun: bool,
    /// Take TCP allocations (RFC 6062: TURN clients relaying to TCP peers);
    /// `false` answers them with 442.
    pub(crate) tcp_allocations: bool,
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
    /// Bandwidth limits.
    pub(crate) bandwidth: bandwidth::BandwidthConfig,
    /// TCP listener settings.
    pub(crate) tcp: TcpConfig,
    /// Budgets of unauthenticated UDP answers (401, 438): the server is no reflector.
    pub(crate) limits: LimitsConfig,
    /// The web proxy's timers against slow clients.
    pub(crate) http: HttpConfig,
    /// The traversal: connectors inside that dial out to this edge.
    pub(crate) traversal: traversal::TraversalConfig,
    /// Interfaces to attach the kernel fast path (XDP) to: those clients and
    /// peers reach the relay on. Needs a build with feature `xdp`.
    pub(crate) xdp_interface: Vec<String>,
    /// `auto` (native, else generic), `native` or `generic`.
    pub(crate) xdp_mode: String,
    /// How long a drain (SIGTERM, `POST /drain`) waits for allocations and
    /// connections to end before stopping, seconds.
    pub(crate) drain_timeout: u64,
    /// Metrics per username (`causeway_user_allocations`); off by default, as a
    /// time-limited credential is a new username every hour.
    pub(crate) metrics_per_user: bool,
    /// The heaviest accounts by traffic on `/metrics`
    /// (`causeway_account_relayed_bytes_total`); 0 for none.
    pub(crate) metrics_top_accounts: usize,
    /// Usage records (one JSON line per allocation when it ends) appended to
    /// this file; reopened on SIGHUP (logrotate's `postrotate`).
    pub(crate) usage_log: Option<PathBuf>,
    /// The file it was read from (not a key).
    #[serde(skip)]
    pub(crate) source: Option<PathBuf>,
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
    /// Most browser connections served at once (0: half the open-file limit).
    pub(crate) max_connections: usize,
    /// Most browser connections at once from one address (0: no such limit).
    pub(crate) max_per_source: usize,
    /// Event loops serving the connections (0: one per core).
    pub(crate) event_loops: usize,
    /// Idle connections kept per web bridge and event loop (0: none).
    pub(crate) bridge_keepalive: usize,
    /// How long an idle web bridge connection is kept.
    pub(crate) bridge_keepalive_secs: u64,
    /// What the web proxy's queues may hold in all, MiB (0: a sixteenth of the
    /// memory the process may use, at least 64 MiB).
    pub(crate) memory_budget_mb: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        // The library's defaults, in the file's units.
        let p = proxy_core::runtime::ProxySettings::default();
        let d = p.deadlines;
        HttpConfig {
            head_timeout_secs: d.head_ms / 1000,
            body_timeout_secs: d.body_idle_ms / 1000,
            body_grace_secs: d.body_grace_ms / 1000,
            body_min_rate: d.body_min_rate,
            keepalive_timeout_secs: d.idle_ms / 1000,
            send_timeout_secs: p.send_stall.as_secs(),
            max_connections: p.max_connections.unwrap_or(0),
            max_per_source: p.max_per_source,
            event_loops: p.event_loops.unwrap_or(0),
            bridge_keepalive: p.bridge_keepalive,
            bridge_keepalive_secs: p.bridge_keepalive_idle.as_secs(),
            memory_budget_mb: 0,
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
    /// The library's defaults (turn-core's `Settings`, proxy-core's
    /// `ProxySettings`), in the file's words; what only the program has (the
    /// admin port, logs, usage records) is set here.
    fn default() -> Self {
        let lib = turn_core::adapters::std::Settings::default();
        let t = &lib.turn;
        Config {
            listen: lib.listen.clone(),
            realm: t.realm.to_string(),
            software: t.software.to_string(),
            user: Vec::new(),
            demo_user: false,
            shared_secret: Vec::new(),
            relay_range: format!("{}-{}", t.port_min, t.port_max),
            relay_ip: Vec::new(),
            external_ip: Vec::new(),
            allow_peer: Vec::new(),
            proxy_protocol_from: Vec::new(),
            ipv6_source_prefix: lib.tcp.ipv6_source_prefix,
            deny_peer: Vec::new(),
            allow_local_peer: Vec::new(),
            tls_listen: Vec::new(),
            cert: None,
            key: None,
            proxy: Vec::new(),
            upstream_ca: None,
            http_redirect: None,
            rule: Vec::new(),
            web_bridge_rules: true,
            admin: SocketAddr::from(([127, 0, 0, 1], 4455)),
            admin_token_file: None,
            admin_names: Vec::new(),
            admin_open: ["/healthz", "/readyz", "/metrics"]
                .map(String::from)
                .to_vec(),
            alternate_server: None,
            legacy_channels: t.legacy_channels,
            classic_stun: t.classic_stun,
            tcp_allocations: t.tcp_allocations,
            max_lifetime: t.max_lifetime_secs,
            nonce_lifetime: t.nonce_lifetime_secs,
            threads: lib.threads,
            log_level: "info".into(),
            quota: QuotaConfig::default(),
            bandwidth: Default::default(),
            tcp: TcpConfig::default(),
            limits: LimitsConfig::default(),
            http: HttpConfig::default(),
            traversal: Default::default(),
            xdp_interface: Vec::new(),
            xdp_mode: "auto".into(),
            drain_timeout: 600,
            metrics_per_user: false,
            metrics_top_accounts: 10,
            usage_log: None,
            source: None,
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
        let t = turn_core::server::Config::new("causeway");
        LimitsConfig {
            unauth_burst: t.unauth_burst,
            unauth_per_sec: t.unauth_per_sec,
            unauth_total_per_sec: t.unauth_global_per_sec,
            unauth_verified_per_sec: t.unauth_verified_per_sec,
        }
    }
}

/// `[[rule]]`: one allow-list rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleConfig {
    /// `https`, `wss`, or both.
    pub(crate) scheme: Vec<String>,
    /// Listener port; default: whichever TLS listener the request arrived on.
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
    /// Threads running TLS handshakes (0: one per core).
    pub(crate) tls_threads: usize,
    /// TLS handshakes answered per second from one source (an IPv6 network
    /// counts as one); past it, and past the burst, a ClientHello is closed
    /// unanswered.
    pub(crate) tls_handshakes_per_sec: u32,
    /// Handshakes from one source at once before the rate applies.
    pub(crate) tls_handshake_burst: u32,
}

impl Default for TcpConfig {
    fn default() -> Self {
        let t = turn_core::adapters::std::TcpLimits::default();
        TcpConfig {
            max_connections: t.max_connections,
            max_per_source: t.max_per_source,
            handshake_timeout_secs: t.handshake_timeout.as_secs(),
            idle_timeout_secs: t.idle_timeout.as_secs(),
            tls_threads: t.tls_threads,
            tls_handshakes_per_sec: t.tls_handshakes_per_sec,
            tls_handshake_burst: t.tls_handshake_burst,
        }
    }
}

/// A configuration the server refuses to start with.
#[derive(Debug)]
pub(crate) enum ConfigError {
    /// The file could not be read.
    Read(std::path::PathBuf, std::io::Error),
    /// The TOML is malformed or has unknown or mistyped keys: where, and why
    /// (never the text there, which may be a password).
    Parse {
        /// The file.
        source: String,
        /// Line and column, from 1.
        at: Option<(usize, usize)>,
        /// What is wrong, quoted values left out.
        message: String,
    },
    /// A field's value is not acceptable.
    Field(&'static str, String),
    /// The certificate, key or CA cannot be used; the key is the one the
    /// failing input came from.
    Tls(proxy_core::runtime::tls::TlsError),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            ConfigError::Parse {
                source,
                at: Some((line, col)),
                message,
            } => write!(f, "{source}:{line}:{col}: {message}"),
            ConfigError::Parse {
                source, message, ..
            } => write!(f, "{source}: {message}"),
            ConfigError::Field(field, why) => write!(f, "`{field}`: {why}"),
            ConfigError::Tls(e) => {
                use proxy_core::runtime::tls::TlsInput;
                let key = match e.input() {
                    TlsInput::Certificate => "cert",
                    TlsInput::Key => "key",
                    TlsInput::CaBundle => "upstream_ca",
                    _ => "proxy",
                };
                write!(f, "`{key}`: {e}")
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read(_, e) => Some(e),
            ConfigError::Tls(e) => Some(e),
            ConfigError::Parse { .. } | ConfigError::Field(..) => None,
        }
    }
}

fn field(name: &'static str, why: impl Into<String>) -> ConfigError {
    ConfigError::Field(name, why.into())
}

/// A string or a list of strings.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) if s.is_empty() => Vec::new(),
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

impl Config {
    /// The embedded default, or `--config FILE`, with the flags applied.
    pub(crate) fn load(args: &ServeArgs) -> Result<Config, ConfigError> {
        let mut cfg = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::Read(path.clone(), e))?;
                let mut c = Config::parse(&text, &path.display().to_string())?;
                c.source = Some(path.clone());
                c
            }
            None => Config::parse(DEFAULT_TOML, "embedded default config")?,
        };
        cfg.apply(args);
        Ok(cfg)
    }

    /// Parses TOML text; `source` names it in errors.
    pub(crate) fn parse(text: &str, source: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            source: source.to_string(),
            at: e.span().map(|s| secrets::line_and_column(text, s.start)),
            message: secrets::redact(e.message()),
        })
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
        set(&mut self.usage_log, &a.usage_log.clone().map(Some));
        extend(&mut self.relay_ip, &a.relay_ip);
        extend(&mut self.external_ip, &a.external_ip);
        extend(&mut self.allow_peer, &a.allow_peer);
        extend(&mut self.deny_peer, &a.deny_peer);
        extend(&mut self.allow_local_peer, &a.allow_local_peer);
        extend(&mut self.proxy_protocol_from, &a.proxy_protocol_from);
        set(&mut self.realm, &a.realm);
        set(&mut self.software, &a.software);
        extend(&mut self.shared_secret, &a.shared_secret);
        set(&mut self.relay_range, &a.relay_range);
        set(&mut self.admin, &a.admin);
        set(&mut self.threads, &a.threads);
        extend(&mut self.tls_listen, &a.tls_listen);
        extend(&mut self.proxy, &a.proxy);
        extend(&mut self.xdp_interface, &a.xdp_interface);
        if a.cert.is_some() {
            self.cert = a.cert.clone();
        }
        if a.key.is_some() {
            self.key = a.key.clone();
        }
        if a.upstream_ca.is_some() {
            self.upstream_ca = a.upstream_ca.clone();
        }
        if a.admin_token_file.is_some() {
            self.admin_token_file = a.admin_token_file.clone();
        }
        if a.http_redirect.is_some() {
            self.http_redirect = a.http_redirect;
        }
        set(&mut self.log_level, &a.log_level);
        if a.alternate_server.is_some() {
            self.alternate_server = a.alternate_server;
        }
        if !a.user.is_empty() || !a.shared_secret.is_empty() {
            // Real credentials given on the command line replace the demo user.
            self.demo_user = false;
        }
    }
}
