//! [`ProxySettings`]: everything a proxy is built with, as plain data with the
//! defaults of the reference deployment, in one place: what a deployment's
//! configuration file deserializes into, and what [`ProxyBuilder`]'s setters
//! change one at a time.
//!
//! [`ProxyBuilder`]: super::ProxyBuilder

use crate::runtime::prelude::*;

use std::sync::Arc;
use std::time::Duration;

use crate::allow::Rule;
use crate::timer::Deadlines;

use super::Upstream;

/// A web proxy's settings. `Default` is the reference deployment: the web bridge
/// rule for every site, proxy-core's timers, one event loop per core,
/// connections up to what the open-file limit allows and 8192 from one address
/// (an office NAT), 64 idle connections per web bridge and loop kept 30 s.
///
/// ```
/// use proxy_core::runtime::{Proxy, ProxySettings, Upstream};
/// let mut settings = ProxySettings::default();
/// settings.sites.push(("join.example.com".into(), Upstream::parse("http://10.0.0.9")?));
/// settings.max_per_source = 1024;
/// let builder = Proxy::with_settings(settings);
/// # drop(builder);
/// # Ok::<(), proxy_core::runtime::UpstreamError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProxySettings {
    /// Join URL hosts (lower case) and their web bridges.
    pub sites: Vec<(String, Upstream)>,
    /// Allow-list rules beyond the web bridge rule (port 0: the proxy's port).
    pub rules: Vec<Rule>,
    /// Whether each web bridge gets the reference's rule (prefix `/`, the five
    /// methods, https and wss).
    pub web_bridge_rules: bool,
    /// The TLS port browsers reach, when a NAT or a load balancer maps it to
    /// another on this host; `None`: each connection's own.
    pub port: Option<u16>,
    /// TLS toward the web bridges; `None`: https web bridges cannot be reached.
    pub upstream_tls: Option<Arc<rustls::ClientConfig>>,
    /// Read deadlines for browsers.
    pub deadlines: Deadlines,
    /// Longest stall of a write to a browser.
    pub send_stall: Duration,
    /// How long a web bridge may take to answer, and to send each piece.
    pub upstream_timeout: Duration,
    /// Most connections at once; `None`: half the open-file limit.
    pub max_connections: Option<usize>,
    /// Most connections at once from one address (0: no such limit).
    pub max_per_source: usize,
    /// The prefix length an IPv6 source is counted by.
    pub ipv6_source_prefix: u8,
    /// What the queues and TLS buffers may hold together, bytes; `None`: a
    /// sixteenth of the memory the process may use, at least 64 MiB.
    pub memory_budget: Option<usize>,
    /// Event loops; `None`: one per core.
    pub event_loops: Option<usize>,
    /// Idle web bridge connections kept per web bridge and loop (0: none).
    pub bridge_keepalive: usize,
    /// How long each is kept.
    pub bridge_keepalive_idle: Duration,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            sites: Vec::new(),
            rules: Vec::new(),
            web_bridge_rules: true,
            port: None,
            upstream_tls: None,
            deadlines: Deadlines::default(),
            send_stall: Duration::from_secs(60),
            upstream_timeout: Duration::from_secs(60),
            max_connections: None,
            max_per_source: 8192,
            ipv6_source_prefix: crate::source::DEFAULT_V6_PREFIX,
            memory_budget: None,
            event_loops: None,
            bridge_keepalive: 64,
            bridge_keepalive_idle: Duration::from_secs(30),
        }
    }
}
