//! From the file to what runs: [`Plan`] holds the relay's [`Settings`] (the one
//! representation of them, shared with the library), the users, the TLS
//! configuration and the web proxy's, and what only the program has (the admin
//! port, the redirect listener, the log level). `TryFrom<&Config>` validates
//! and converts, naming the faulty field; limits are the library's own.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use proxy_core::runtime::ProxySettings;
use turn_core::adapters::std::{Settings, StartError, TcpLimits};
use turn_core::server::policy::{Cidr, LOCAL_MAX, LocalPeer, RANGES_MAX};
use turn_core::server::{REALM_MAX, SECRET_MAX, SECRETS_MAX, SOFTWARE_MAX, Secret, USERNAME_MAX};

use super::{Config, ConfigError, field};

/// What `causeway serve` runs.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The relay's settings.
    pub(crate) relay: Settings,
    /// Long-term credentials: a name and its password or key.
    pub(crate) users: Vec<(String, UserSecret)>,
    /// What the operator should hear about at start (and from `--check-config`),
    /// once logging is set up: secrets others may read, short secrets.
    pub(crate) warnings: Vec<String>,
    /// Add the user `demo` with a password drawn at start.
    pub(crate) demo_user: bool,
    /// TLS for the TLS listeners, loaded and checked.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// The web proxy, with the TLS listeners.
    pub(crate) web: Option<ProxySettings>,
    /// The traversal port, when connectors serve join URLs.
    pub(crate) traversal: Option<super::TraversalPlan>,
    /// Status JSON and metrics.
    pub(crate) admin: SocketAddr,
    /// Who may use the admin port (the token read from its file, if one is
    /// named; else drawn at start).
    pub(crate) admin_access: AdminPlan,
    /// Plain HTTP redirected to https.
    pub(crate) http_redirect: Option<SocketAddr>,
    /// Log level.
    pub(crate) log_level: String,
    /// How long a drain waits, seconds.
    pub(crate) drain_timeout_secs: u64,
    /// Metrics per username.
    pub(crate) metrics_per_user: bool,
    /// The heaviest accounts on `/metrics`.
    pub(crate) metrics_top_accounts: usize,
    /// Where usage records go.
    pub(crate) usage_log: Option<PathBuf>,
}

/// How a user's long-term credential is given.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum UserSecret {
    /// A password (its keys are derived at start).
    Password(String),
    /// The key itself, `0x` and hex: MD5 (32 digits) or SHA-256 (64).
    Key(turn_core::credentials::Key),
}

impl std::fmt::Debug for UserSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserSecret::Password(_) => f.write_str("Password(..)"),
            UserSecret::Key(k) => write!(f, "{k:?}"),
        }
    }
}

/// The admin port's access rules.
#[derive(Clone)]
pub(crate) struct AdminPlan {
    /// The token and the file it came from; `None`: draw one at start.
    pub(crate) token: Option<(String, PathBuf)>,
    /// Names `Host` may carry besides IP literals and `localhost`.
    pub(crate) names: Vec<String>,
    /// Paths open without the token.
    pub(crate) open: Vec<String>,
}

impl std::fmt::Debug for AdminPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminPlan")
            .field("token_file", &self.token.as_ref().map(|(_, p)| p))
            .field("names", &self.names)
            .field("open", &self.open)
            .finish()
    }
}

impl TryFrom<&Config> for Plan {
    type Error = ConfigError;

    fn try_from(c: &Config) -> Result<Plan, ConfigError> {
        let mut relay = Settings {
            listen: c.listen.clone(),
            tls_listen: c.tls_listen.clone(),
            threads: c.threads,
            per_user: c.quota.per_user,
            total: c.quota.total,
            tcp: TcpLimits {
                max_connections: c.tcp.max_connections,
                max_per_source: c.tcp.max_per_source,
                handshake_timeout: Duration::from_secs(c.tcp.handshake_timeout_secs),
                idle_timeout: Duration::from_secs(c.tcp.idle_timeout_secs),
                ipv6_source_prefix: c.ipv6_source_prefix,
                tls_threads: c.tcp.tls_threads,
                tls_handshakes_per_sec: c.tcp.tls_handshakes_per_sec,
                tls_handshake_burst: c.tcp.tls_handshake_burst,
            },
            // The admin and redirect listeners are this host's too.
            own_listeners: std::iter::once(c.admin).chain(c.http_redirect).collect(),
            ..Settings::default()
        };
        listeners(c)?;
        turn(c, &mut relay)?;
        c.bandwidth.apply(&mut relay.turn)?;
        fast_path(c, &mut relay)?;
        // What the library refuses, in its words mapped to the file's keys.
        relay.check().map_err(|e| match e {
            StartError::Settings { field, problem } => super::field(config_key(field), problem),
            StartError::Config(e) => super::field(e.field, e.problem.to_string()),
            other => super::field("listen", other.to_string()),
        })?;
        let users = users(c)?;
        super::bounds::check(c)?;
        let (sites, rules) = super::web::web(c)?;
        let served: Vec<String> = sites
            .iter()
            .filter(|(_, u)| u.tunnels.is_some())
            .map(|(h, _)| h.clone())
            .collect();
        let traversal = super::traversal::plan(c, &served)?;
        let tls = match (&c.cert, &c.key) {
            (Some(cert), Some(key)) => {
                let hosts: Vec<&str> = sites.iter().map(|(h, _)| h.as_str()).collect();
                Some(
                    proxy_core::runtime::tls::server_config(cert, key, &hosts)
                        .map_err(ConfigError::Tls)?,
                )
            }
            _ => None,
        };
        let upstream_tls = if sites.is_empty() {
            None
        } else {
            Some(
                proxy_core::runtime::tls::client_config(c.upstream_ca.as_deref())
                    .map_err(ConfigError::Tls)?,
            )
        };
        let web = tls.as_ref().map(|_| {
            // The library's settings, with its defaults for what the file
            // leaves out.
            let mut w = ProxySettings::default();
            w.sites = sites;
            w.rules = rules;
            w.web_bridge_rules = c.web_bridge_rules;
            w.upstream_tls = upstream_tls;
            w.deadlines = c.http.deadlines();
            w.send_stall = Duration::from_secs(c.http.send_timeout_secs);
            w.max_connections = (c.http.max_connections > 0).then_some(c.http.max_connections);
            w.max_per_source = c.http.max_per_source;
            w.ipv6_source_prefix = c.ipv6_source_prefix;
            w.event_loops = (c.http.event_loops > 0).then_some(c.http.event_loops);
            w.bridge_keepalive = c.http.bridge_keepalive;
            w.bridge_keepalive_idle = Duration::from_secs(c.http.bridge_keepalive_secs);
            w.memory_budget = (c.http.memory_budget_mb > 0)
                .then(|| usize::try_from(c.http.memory_budget_mb << 20).unwrap_or(usize::MAX));
            w
        });
        let admin_access = admin_access(c)?;
        let warnings = warnings(c);
        Ok(Plan {
            relay,
            users,
            warnings,
            demo_user: c.demo_user,
            tls,
            web,
            traversal,
            admin: c.admin,
            admin_access,
            http_redirect: c.http_redirect,
            log_level: c.log_level.clone(),
            drain_timeout_secs: c.drain_timeout,
            metrics_per_user: c.metrics_per_user,
            metrics_top_accounts: c.metrics_top_accounts,
            usage_log: c.usage_log.clone(),
        })
    }
}

/// What to warn the operator about: secrets in files others may read, and
/// shared secrets short enough to guess.
fn warnings(c: &Config) -> Vec<String> {
    use super::secrets::{SECRET_MIN, readable_by_others};
    let mut w = Vec::new();
    let holds_secrets = !c.user.is_empty() || !c.shared_secret.is_empty();
    if holds_secrets && let Some(path) = &c.source {
        w.extend(readable_by_others(path, "--config"));
    }
    if let Some(key) = &c.key {
        w.extend(readable_by_others(key, "key"));
    }
    if let Some(t) = &c.admin_token_file {
        w.extend(readable_by_others(t, "admin_token_file"));
    }
    if c.listen.is_empty() && c.user.is_empty() && c.shared_secret.is_empty() && !c.demo_user {
        w.push(
            "a web-proxy-only node: no TURN listener and no TURN credentials, so TURN clients \
             reaching tls_listen are refused (401)"
                .to_string(),
        );
    }
    for s in &c.shared_secret {
        if s.len() < SECRET_MIN {
            w.push(format!(
                "`shared_secret`: a secret of {} bytes is easy to guess; use {SECRET_MIN} or more \
                 (openssl rand -base64 24)",
                s.len()
            ));
        }
    }
    w
}

/// Paths of the admin port that may be opened to all (GET).
const ADMIN_PATHS: [&str; 5] = ["/healthz", "/readyz", "/metrics", "/status", "/history"];

fn admin_access(c: &Config) -> Result<AdminPlan, ConfigError> {
    for p in &c.admin_open {
        if !ADMIN_PATHS.contains(&p.as_str()) {
            return Err(field(
                "admin_open",
                format!("`{p}` is none of {}", ADMIN_PATHS.join(", ")),
            ));
        }
    }
    for n in &c.admin_names {
        if n.is_empty()
            || n.len() > 253
            || !n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
        {
            return Err(field("admin_names", format!("`{n}` is not a host name")));
        }
    }
    let token = match &c.admin_token_file {
        Some(path) => Some((
            crate::admin::access::read_token(path).map_err(|e| field("admin_token_file", e))?,
            path.clone(),
        )),
        None => None,
    };
    Ok(AdminPlan {
        token,
        names: c.admin_names.clone(),
        open: c.admin_open.clone(),
    })
}

fn listeners(c: &Config) -> Result<(), ConfigError> {
    if c.admin.port() == 443 {
        return Err(field("admin", "the admin interface never shares port 443"));
    }
    if c.admin.port() != 0 && c.listen.contains(&c.admin) {
        return Err(field("admin", "must differ from every listen address"));
    }
    Ok(())
}

/// The configuration key a setting of the library's (named as in turn-core's
/// `Settings`) comes from; the library's own checks already name the TURN
/// core's settings by their keys (`relay_range`, `max_lifetime`, ...).
pub(crate) fn config_key(field: &'static str) -> &'static str {
    match field {
        "turn.policy.local" => "allow_local_peer",
        "turn.policy.allow" => "allow_peer",
        "turn.policy.deny" => "deny_peer",
        "turn.relay_v4" | "turn.relay_v6" => "relay_ip",
        "turn.realm" => "realm",
        "turn.shared_secrets" => "shared_secret",
        "xdp" => "xdp_interface",
        // listen, tls_listen, threads, tcp.tls_threads, user: the same.
        other => other,
    }
}

/// The TURN core's settings: realm, secrets, relay addresses and ports, peers.
fn turn(c: &Config, relay: &mut Settings) -> Result<(), ConfigError> {
    let t = &mut relay.turn;
    if c.realm.len() > REALM_MAX {
        return Err(field("realm", format!("longer than {REALM_MAX} bytes")));
    }
    t.realm.clear();
    let _ = t.realm.push_str(&c.realm);
    if c.software.len() > SOFTWARE_MAX {
        return Err(field(
            "software",
            format!("longer than {SOFTWARE_MAX} bytes"),
        ));
    }
    t.software.clear();
    let _ = t.software.push_str(&c.software);
    if c.shared_secret.len() > SECRETS_MAX {
        return Err(field(
            "shared_secret",
            format!("at most {SECRETS_MAX} secrets at once (during a rotation)"),
        ));
    }
    for s in &c.shared_secret {
        super::secrets::not_placeholder("shared_secret", s)?;
        let secret = Secret::from_slice(s.as_bytes())
            .map_err(|_| field("shared_secret", format!("longer than {SECRET_MAX} bytes")))?;
        if secret.is_empty() {
            return Err(field("shared_secret", "empty secret"));
        }
        let _ = t.shared_secrets.push(secret);
    }
    t.nonce_lifetime_secs = c.nonce_lifetime;
    t.max_lifetime_secs = c.max_lifetime;
    t.alternate_server = c.alternate_server;
    t.legacy_channels = c.legacy_channels;
    t.classic_stun = c.classic_stun;
    t.tcp_allocations = c.tcp_allocations;
    t.unauth_burst = c.limits.unauth_burst;
    t.unauth_per_sec = c.limits.unauth_per_sec;
    t.unauth_global_per_sec = c.limits.unauth_total_per_sec;
    t.unauth_verified_per_sec = c.limits.unauth_verified_per_sec;
    (t.port_min, t.port_max) = parse_range(&c.relay_range)?;
    for (name, list) in [("relay_ip", &c.relay_ip), ("external_ip", &c.external_ip)] {
        if list.iter().filter(|a| a.is_ipv4()).count() > 1
            || list.iter().filter(|a| a.is_ipv6()).count() > 1
        {
            return Err(field(name, "at most one IPv4 and one IPv6 address"));
        }
    }
    for ip in &c.relay_ip {
        match ip {
            IpAddr::V4(a) => t.relay_v4 = Some(*a),
            IpAddr::V6(a) => t.relay_v6 = Some(*a),
        }
    }
    for ip in &c.external_ip {
        match ip {
            IpAddr::V4(a) => t.external_v4 = Some(*a),
            IpAddr::V6(a) => t.external_v6 = Some(*a),
        }
    }
    for (list, dst, name) in [
        (&c.allow_peer, &mut t.policy.allow, "allow_peer"),
        (&c.deny_peer, &mut t.policy.deny, "deny_peer"),
    ] {
        if list.len() > RANGES_MAX {
            return Err(field(name, format!("at most {RANGES_MAX} entries")));
        }
        for s in list {
            let cidr = Cidr::parse(s).map_err(|e| field(name, format!("`{s}`: {e}")))?;
            let _ = dst.push(cidr);
        }
    }
    if c.allow_local_peer.len() > LOCAL_MAX {
        return Err(field(
            "allow_local_peer",
            format!("at most {LOCAL_MAX} entries"),
        ));
    }
    for s in &c.allow_local_peer {
        let local =
            LocalPeer::parse(s).map_err(|e| field("allow_local_peer", format!("`{s}`: {e}")))?;
        let _ = t.policy.local.push(local);
    }
    for s in &c.proxy_protocol_from {
        let cidr =
            Cidr::parse(s).map_err(|e| field("proxy_protocol_from", format!("`{s}`: {e}")))?;
        relay.proxy_protocol.push(cidr);
    }
    relay_ports(c, relay)
}

/// No listener's port inside the relay range on the relay address (the
/// library allows it, as a relay socket skips a port taken; in a file it is a
/// mistake that costs relay ports).
fn relay_ports(c: &Config, relay: &Settings) -> Result<(), ConfigError> {
    let (v4, v6) = relay.relay_addresses();
    let (lo, hi) = (relay.turn.port_min, relay.turn.port_max);
    for a in &c.listen {
        let relay_ip = match a {
            SocketAddr::V4(_) => v4.map(IpAddr::V4),
            SocketAddr::V6(_) => v6.map(IpAddr::V6),
        };
        let shares_ip = a.ip().is_unspecified() || relay_ip == Some(a.ip());
        if a.port() != 0 && (lo..=hi).contains(&a.port()) && shares_ip {
            return Err(field(
                "listen",
                format!(
                    "{a} is inside relay_range {lo}-{hi} on the relay address: relay sockets \
                     would compete with the listener for it; move one of them"
                ),
            ));
        }
    }
    Ok(())
}

fn users(c: &Config) -> Result<Vec<(String, UserSecret)>, ConfigError> {
    use turn_core::credentials::Key;
    let mut users: Vec<(String, UserSecret)> = Vec::new();
    for u in &c.user {
        let Some((name, pass)) = u.split_once(':') else {
            return Err(field("user", "an entry is not NAME:PASSWORD or NAME:0xKEY"));
        };
        if name.is_empty() || pass.is_empty() || name.len() > USERNAME_MAX {
            return Err(field(
                "user",
                format!("`{name}`: empty name or password, or name too long"),
            ));
        }
        super::secrets::not_placeholder("user", pass)?;
        let secret = match pass.strip_prefix("0x") {
            Some(hex) if hex.len() == 32 || hex.len() == 64 => {
                let bytes = decode_hex(hex).ok_or_else(|| {
                    field(
                        "user",
                        format!("`{name}`: the key after 0x is not hexadecimal"),
                    )
                })?;
                UserSecret::Key(match bytes.len() {
                    16 => Key::Md5(bytes.try_into().unwrap_or([0; 16])),
                    _ => Key::Sha256(bytes.try_into().unwrap_or([0; 32])),
                })
            }
            _ => UserSecret::Password(pass.to_string()),
        };
        // A name twice: only as the two keys of one user (MD5 and SHA-256).
        let clash = users.iter().any(|(n, s)| {
            n == name
                && !matches!(
                    (s, &secret),
                    (
                        UserSecret::Key(Key::Md5(_)),
                        UserSecret::Key(Key::Sha256(_))
                    ) | (
                        UserSecret::Key(Key::Sha256(_)),
                        UserSecret::Key(Key::Md5(_))
                    )
                )
        });
        if clash {
            return Err(field("user", format!("`{name}` is listed twice")));
        }
        users.push((name.to_string(), secret));
    }
    // A web-proxy-only node (join URLs, no TURN listener) needs no TURN users.
    let web_only = c.listen.is_empty() && !c.proxy.is_empty();
    if users.is_empty() && c.shared_secret.is_empty() && !c.demo_user && !web_only {
        return Err(field(
            "user",
            "no credentials: give --user NAME:PASS, --shared-secret, or demo_user = true",
        ));
    }
    Ok(users)
}

/// Bytes of an even number of hex digits.
fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The kernel fast path's interfaces and mode.
fn fast_path(c: &Config, relay: &mut Settings) -> Result<(), ConfigError> {
    #[cfg(feature = "xdp")]
    {
        use turn_core::adapters::std::XdpMode;
        relay.xdp.mode = match c.xdp_mode.as_str() {
            "auto" => XdpMode::Auto,
            "native" => XdpMode::Native,
            "generic" => XdpMode::Generic,
            other => {
                return Err(field(
                    "xdp_mode",
                    format!("`{other}` is not auto, native or generic"),
                ));
            }
        };
        relay.xdp.interfaces = c.xdp_interface.clone();
        if !c.xdp_interface.is_empty()
            && let Some(a) = c.listen.iter().find(|a| a.ip().is_unspecified())
        {
            return Err(field(
                "xdp_interface",
                format!(
                    "the kernel fast path answers from the listener's address: listen on a \
                     specific address, not {a}"
                ),
            ));
        }
    }
    #[cfg(not(feature = "xdp"))]
    {
        let _ = relay;
        if !c.xdp_interface.is_empty() {
            return Err(field(
                "xdp_interface",
                "this causeway was built without the kernel fast path (build with --features xdp)",
            ));
        }
    }
    Ok(())
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
