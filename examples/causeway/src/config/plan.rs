//! From the file to what runs: [`Plan`] holds the relay's [`Settings`] (the one
//! representation of them, shared with the library), the users, the TLS
//! configuration and the web proxy's, and what only the program has (the admin
//! port, the redirect listener, the log level). `TryFrom<&Config>` validates
//! and converts, naming the faulty field; limits are the library's own.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use proxy_core::allow::Rule;
use proxy_core::runtime::Upstream;
use proxy_core::timer::Deadlines;
use turn_core::adapters::std::{Settings, TcpLimits};
use turn_core::server::policy::{Cidr, RANGES_MAX};
use turn_core::server::{REALM_MAX, SECRET_MAX, SECRETS_MAX, SOFTWARE_MAX, Secret, USERNAME_MAX};

use super::{Config, ConfigError, field};

/// What `causeway serve` runs.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The relay's settings.
    pub(crate) relay: Settings,
    /// Long-term credentials, name and password.
    pub(crate) users: Vec<(String, String)>,
    /// Add the user `demo` with a password drawn at start.
    pub(crate) demo_user: bool,
    /// TLS for the TLS listeners, loaded and checked.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// The web proxy, with the TLS listeners.
    pub(crate) web: Option<WebPlan>,
    /// Status JSON and metrics.
    pub(crate) admin: SocketAddr,
    /// Plain HTTP redirected to https.
    pub(crate) http_redirect: Option<SocketAddr>,
    /// Log level.
    pub(crate) log_level: String,
    /// How long a drain waits, seconds.
    pub(crate) drain_timeout_secs: u64,
    /// Metrics per username.
    pub(crate) metrics_per_user: bool,
}

/// The web proxy's part.
#[derive(Debug, Clone)]
pub(crate) struct WebPlan {
    /// Join URL hosts and their web bridges.
    pub(crate) sites: Vec<(String, Upstream)>,
    /// Extra allow-list rules (port 0: the TLS listener's).
    pub(crate) rules: Vec<Rule>,
    /// Whether each web bridge gets the reference's rule.
    pub(crate) web_bridge_rules: bool,
    /// TLS toward web bridges.
    pub(crate) upstream_tls: Option<Arc<rustls::ClientConfig>>,
    /// Timers against slow clients.
    pub(crate) deadlines: Deadlines,
    /// Longest stall of a write to a browser.
    pub(crate) send_stall: Duration,
    /// Most connections at once (`None`: from the open-file limit).
    pub(crate) max_connections: Option<usize>,
    /// Most connections at once from one address (0: no such limit).
    pub(crate) max_per_source: usize,
    /// Event loops (`None`: one per core).
    pub(crate) event_loops: Option<usize>,
    /// Idle connections kept per web bridge and loop.
    pub(crate) bridge_keepalive: usize,
    /// How long each is kept.
    pub(crate) bridge_keepalive_idle: Duration,
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
            },
            // The admin and redirect listeners are this host's too.
            own_addresses: std::iter::once(c.admin)
                .chain(c.http_redirect)
                .map(|a| a.ip())
                .collect(),
            ..Settings::default()
        };
        listeners(c)?;
        turn(c, &mut relay)?;
        c.bandwidth.apply(&mut relay.turn)?;
        fast_path(c, &mut relay)?;
        let users = users(c)?;
        limits(c)?;
        let (sites, rules) = super::web::web(c)?;
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
        let web = tls.as_ref().map(|_| WebPlan {
            sites,
            rules,
            web_bridge_rules: c.web_bridge_rules,
            upstream_tls,
            deadlines: c.http.deadlines(),
            send_stall: Duration::from_secs(c.http.send_timeout_secs),
            max_connections: (c.http.max_connections > 0).then_some(c.http.max_connections),
            max_per_source: c.http.max_per_source,
            event_loops: (c.http.event_loops > 0).then_some(c.http.event_loops),
            bridge_keepalive: c.http.bridge_keepalive,
            bridge_keepalive_idle: Duration::from_secs(c.http.bridge_keepalive_secs),
        });
        Ok(Plan {
            relay,
            users,
            demo_user: c.demo_user,
            tls,
            web,
            admin: c.admin,
            http_redirect: c.http_redirect,
            log_level: c.log_level.clone(),
            drain_timeout_secs: c.drain_timeout,
            metrics_per_user: c.metrics_per_user,
        })
    }
}

fn listeners(c: &Config) -> Result<(), ConfigError> {
    if c.listen.is_empty() {
        return Err(field("listen", "at least one address is needed"));
    }
    let mut seen = HashSet::new();
    for a in &c.listen {
        if !seen.insert(a) {
            return Err(field("listen", format!("{a} is listed twice")));
        }
    }
    if c.admin.port() == 443 {
        return Err(field("admin", "the admin interface never shares port 443"));
    }
    if c.admin.port() != 0 && c.listen.contains(&c.admin) {
        return Err(field("admin", "must differ from every listen address"));
    }
    Ok(())
}

/// The TURN core's settings: realm, secrets, relay addresses and ports, peers.
fn turn(c: &Config, relay: &mut Settings) -> Result<(), ConfigError> {
    let t = &mut relay.turn;
    if c.realm.is_empty() || c.realm.len() > REALM_MAX {
        return Err(field("realm", format!("must be 1 to {REALM_MAX} bytes")));
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
        if list.iter().any(|a| a.is_unspecified() || a.is_multicast()) {
            return Err(field(name, "must be unicast addresses of this host"));
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
    for s in &c.proxy_protocol_from {
        let cidr =
            Cidr::parse(s).map_err(|e| field("proxy_protocol_from", format!("`{s}`: {e}")))?;
        relay.proxy_protocol.push(cidr);
    }
    if c.max_lifetime < 600 {
        return Err(field(
            "max_lifetime",
            "must be at least 600 s (the default lifetime)",
        ));
    }
    if c.nonce_lifetime == 0 {
        return Err(field("nonce_lifetime", "must be at least 1 s"));
    }
    relay_addresses(c, relay)
}

/// A relay address per family, none of them a listener's port inside the range.
fn relay_addresses(c: &Config, relay: &Settings) -> Result<(), ConfigError> {
    let (v4, v6) = relay.relay_addresses();
    if v4.is_none() && v6.is_none() {
        return Err(field(
            "relay_ip",
            "no relay address: listen on a specific address or set relay_ip",
        ));
    }
    let (lo, hi) = (relay.turn.port_min, relay.turn.port_max);
    for a in &c.listen {
        let relay_ip = if a.is_ipv4() {
            v4.map(IpAddr::V4)
        } else {
            v6.map(IpAddr::V6)
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
    for e in &c.external_ip {
        let has = if e.is_ipv4() {
            v4.is_some()
        } else {
            v6.is_some()
        };
        if !has {
            return Err(field(
                "external_ip",
                format!("{e} has no relay address of its family"),
            ));
        }
    }
    Ok(())
}

fn users(c: &Config) -> Result<Vec<(String, String)>, ConfigError> {
    let mut users = Vec::new();
    let mut names = HashSet::new();
    for u in &c.user {
        let Some((name, pass)) = u.split_once(':') else {
            return Err(field("user", format!("`{u}` is not NAME:PASSWORD")));
        };
        if name.is_empty() || pass.is_empty() || name.len() > USERNAME_MAX {
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
    if users.is_empty() && c.shared_secret.is_empty() && !c.demo_user {
        return Err(field(
            "user",
            "no credentials: give --user NAME:PASS, --shared-secret, or demo_user = true",
        ));
    }
    Ok(users)
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

/// Quotas, budgets, stream and HTTP timers.
fn limits(c: &Config) -> Result<(), ConfigError> {
    if !["off", "error", "warn", "info", "debug", "trace"].contains(&c.log_level.as_str()) {
        return Err(field(
            "log_level",
            format!(
                "`{}` is not one of off, error, warn, info, debug, trace",
                c.log_level
            ),
        ));
    }
    if c.drain_timeout == 0 || c.drain_timeout > 86_400 {
        return Err(field("drain_timeout", "must be 1 to 86400 seconds"));
    }
    if c.quota.per_user == Some(0) {
        return Err(field(
            "quota.per_user",
            "must be at least 1 (leave it out for no limit)",
        ));
    }
    if c.quota.total == Some(0) {
        return Err(field("quota.total", "must be at least 1"));
    }
    if c.quota.total.is_some_and(|t| t > 1_000_000) {
        return Err(field("quota.total", "at most 1000000"));
    }
    let l = &c.limits;
    if [
        l.unauth_burst,
        l.unauth_per_sec,
        l.unauth_total_per_sec,
        l.unauth_verified_per_sec,
    ]
    .contains(&0)
    {
        return Err(field(
            "limits",
            "unauthenticated budgets must be at least 1",
        ));
    }
    for (name, v) in [
        ("tcp.max_connections", c.tcp.max_connections as u64),
        ("tcp.max_per_source", c.tcp.max_per_source as u64),
        ("tcp.handshake_timeout_secs", c.tcp.handshake_timeout_secs),
        ("tcp.idle_timeout_secs", c.tcp.idle_timeout_secs),
    ] {
        if v == 0 {
            return Err(field(name, "must be at least 1"));
        }
    }
    for (name, v) in [
        ("http.head_timeout_secs", c.http.head_timeout_secs),
        ("http.body_timeout_secs", c.http.body_timeout_secs),
        ("http.keepalive_timeout_secs", c.http.keepalive_timeout_secs),
        ("http.send_timeout_secs", c.http.send_timeout_secs),
    ] {
        if v == 0 || v > 86_400 {
            return Err(field(name, "must be 1 to 86400 seconds"));
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
