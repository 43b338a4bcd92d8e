//! The relay's settings, in one place ([`Settings`]: the TURN core's own
//! [`Config`](crate::server::Config) and what the std relay adds), and the builder
//! that fills them in and starts the relay.

use crate::adapters::std::prelude::*;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::server::policy::{Cidr, LOCAL_MAX, LocalPeer, RANGES_MAX};
use crate::server::{Config, REALM_MAX, SECRET_MAX, SECRETS_MAX, Secret};

use super::credentials::{Credentials, Users};
use super::error::StartError;
#[cfg(feature = "tls")]
use super::front::http::{Accepted, HttpHook};
use super::handle::Relay;
use super::upgrade::Resumed;

/// Limits for stream clients (TURN over TCP and TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    /// Most TCP and TLS clients per worker at once.
    pub max_connections: usize,
    /// Most TCP and TLS clients from one source address at once, over all
    /// workers (an office NAT puts many browsers behind one address).
    pub max_per_source: usize,
    /// A connection must finish its TLS handshake and send its first whole
    /// message within this long of being accepted; trickling bytes do not move it.
    pub handshake_timeout: Duration,
    /// A connection without an allocation, idle this long, is closed.
    pub idle_timeout: Duration,
    /// The prefix length an IPv6 source is counted by for `max_per_source`
    /// (64: a subscriber's network, not one of its many addresses).
    pub ipv6_source_prefix: u8,
    /// Threads that run TLS handshakes (0: one per core).
    pub tls_threads: usize,
    /// TLS handshakes answered per second from one source (its IPv6 network
    /// counted as one); past it, and past the burst, a ClientHello is closed
    /// unanswered. An office NAT's browsers open several connections each.
    pub tls_handshakes_per_sec: u32,
    /// Handshakes from one source at once before the rate applies.
    pub tls_handshake_burst: u32,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            max_connections: 4096,
            max_per_source: 1024,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            ipv6_source_prefix: proxy_core::source::DEFAULT_V6_PREFIX,
            tls_threads: 0,
            tls_handshakes_per_sec: 200,
            tls_handshake_burst: 1000,
        }
    }
}

/// Everything the relay is started with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// UDP and TCP STUN/TURN listeners.
    pub listen: Vec<SocketAddr>,
    /// TURN over TLS listeners (and HTTPS on the same port, to the
    /// hook given to [`RelayBuilder::on_http`]).
    pub tls_listen: Vec<SocketAddr>,
    /// The TURN server's settings: realm, shared secrets, relay and advertised
    /// addresses, relay ports, peer policy, lifetimes, budgets. A relay address
    /// left unset is the first specific listen address of its family.
    pub turn: Config,
    /// Allocations per user (486 past it); none by default, since a meeting
    /// server hands one TURN user to every browser. The user part of a
    /// time-limited credential is what counts.
    pub per_user: Option<usize>,
    /// Allocations in all (508, or 300 to the alternate server, past it); by
    /// default what the machine allows (see [`Capacity`](super::Capacity)).
    pub total: Option<usize>,
    /// Stream client limits.
    pub tcp: TcpLimits,
    /// Worker threads; 0 for one per core.
    pub threads: usize,
    /// Addresses of this host that peers may never be, besides the listeners,
    /// the relay addresses and [`Settings::own_listeners`] (which the relay
    /// adds).
    pub own_addresses: Vec<IpAddr>,
    /// This program's other listening sockets (an admin interface, a redirect
    /// listener): their addresses are own addresses too, and no
    /// `turn.policy.local` entry may cover them.
    pub own_listeners: Vec<SocketAddr>,
    /// TCP load balancers in front (HAProxy's PROXY protocol, v1 or v2): a TCP
    /// or TLS connection from one of these ranges must start with a PROXY
    /// header, and the client it names is the connection's client in logs,
    /// nonces, quotas, per-source limits and the web proxy's forwarding headers.
    /// A header from any other address is refused. Empty (off) by default.
    pub proxy_protocol: Vec<Cidr>,
    /// The kernel fast path (XDP): off unless interfaces are named.
    #[cfg(feature = "xdp")]
    pub xdp: super::XdpSettings,
}

impl Default for Settings {
    fn default() -> Self {
        let mut turn = Config::new("causeway");
        // Relay sockets set DF (IP_PMTUDISC_PROBE, by quinn-udp), so DONT-FRAGMENT holds.
        turn.dont_fragment = true;
        // Users answers USERHASH lookups.
        turn.userhash = true;
        // coturn's clients and pjnath still pick RFC 5766 channel numbers.
        turn.legacy_channels = true;
        Settings {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 3478))],
            tls_listen: Vec::new(),
            turn,
            per_user: None,
            total: None,
            tcp: TcpLimits::default(),
            threads: 0,
            own_addresses: Vec::new(),
            own_listeners: Vec::new(),
            proxy_protocol: Vec::new(),
            #[cfg(feature = "xdp")]
            xdp: super::XdpSettings::default(),
        }
    }
}

impl Settings {
    /// The relay addresses the relay will bind to: the ones set, or when neither
    /// family is set, the first specific listener address of each family.
    pub fn relay_addresses(&self) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
        let t = &self.turn;
        if t.relay_v4.is_some() || t.relay_v6.is_some() {
            return (t.relay_v4, t.relay_v6);
        }
        let (mut v4, mut v6) = (None, None);
        let listeners = self.listen.iter().chain(&self.tls_listen);
        for ip in listeners
            .map(SocketAddr::ip)
            .filter(|ip| !ip.is_unspecified())
        {
            match ip {
                IpAddr::V4(a) if v4.is_none() => v4 = Some(a),
                IpAddr::V6(a) if v6.is_none() => v6 = Some(a),
                _ => {}
            }
        }
        (v4, v6)
    }

    /// Worker threads to run.
    pub fn worker_threads(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// Builds and starts a [`Relay`] (see the [module docs](super)).
pub struct RelayBuilder {
    pub(crate) settings: Settings,
    listen_given: bool,
    users: Vec<(String, String)>,
    user_keys: Vec<(String, crate::credentials::Key)>,
    pub(crate) credentials: Option<Arc<dyn Credentials>>,
    pub(crate) front: FrontParts,
    pub(crate) events: usize,
    /// The first setting that did not fit, reported by `start`.
    problem: Option<(&'static str, String)>,
}

impl std::fmt::Debug for RelayBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayBuilder")
            .field("settings", &self.settings)
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// A builder with the [`Settings`] defaults: listening on 127.0.0.1:3478,
    /// realm `causeway`, no users yet.
    pub fn builder() -> RelayBuilder {
        Relay::builder_with(Settings::default(), false)
    }

    /// A builder starting from `settings` (a deployment's, read from its
    /// configuration), which the builder's setters then change: all the
    /// settings at once come first, so nothing set one by one is lost.
    ///
    /// ```
    /// use turn_core::adapters::std::{Relay, Settings};
    /// let mut settings = Settings::default();
    /// settings.listen = vec!["127.0.0.1:0".parse().unwrap()];
    /// let builder = Relay::with_settings(settings).realm("example").user("alice", "s3cret");
    /// # drop(builder);
    /// ```
    pub fn with_settings(settings: Settings) -> RelayBuilder {
        Relay::builder_with(settings, true)
    }

    fn builder_with(settings: Settings, listen_given: bool) -> RelayBuilder {
        RelayBuilder {
            settings,
            listen_given,
            users: Vec::new(),
            user_keys: Vec::new(),
            credentials: None,
            front: FrontParts::default(),
            events: 1024,
            problem: None,
        }
    }
}

impl RelayBuilder {
    /// Notes the first setting that does not fit; `start` refuses with it.
    fn refuse(mut self, field: &'static str, problem: String) -> Self {
        self.problem.get_or_insert((field, problem));
        self
    }

    /// The first listener of any kind replaces the default one.
    fn own_listeners(&mut self) {
        if !self.listen_given {
            self.settings.listen.clear();
            self.listen_given = true;
        }
    }

    /// A UDP and TCP listener (repeatable; the first listener given, of any
    /// kind, replaces the default).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.own_listeners();
        self.settings.listen.push(addr);
        self
    }

    /// A TURN over TLS listener (repeatable), with the server's TLS configuration
    /// given by [`RelayBuilder::tls`]. Like [`RelayBuilder::listen`], the first
    /// replaces the default UDP and TCP listener: a relay given only TLS
    /// listeners opens nothing else.
    #[cfg(feature = "tls")]
    pub fn tls_listen(mut self, addr: SocketAddr) -> Self {
        self.own_listeners();
        self.settings.tls_listen.push(addr);
        self
    }

    /// The TLS configuration of the TLS listeners.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, cfg: Arc<rustls::ServerConfig>) -> Self {
        self.front.tls = Some(cfg);
        self
    }

    /// Who serves the HTTP connections of the TLS listeners (TURN and HTTPS
    /// share the port): `hook` gets each one once its opening says HTTP, on a
    /// front thread, and should hand it to its own threads. Without one, they
    /// are closed. causeway wires its web proxy here:
    ///
    /// ```
    /// use turn_core::adapters::std::{Accepted, Relay};
    /// let builder = Relay::builder().on_http(|a: Accepted| {
    ///     // Hand `a.stream`, `a.tls` and `a.buffered` to an HTTP server.
    ///     log::info!("HTTPS for {:?} from {}", a.sni, a.client);
    /// });
    /// # drop(builder);
    /// ```
    #[cfg(feature = "tls")]
    pub fn on_http(mut self, hook: impl Fn(Accepted) + Send + Sync + 'static) -> Self {
        self.front.on_http = Some(Arc::new(hook));
        self
    }

    /// The realm (the reference deployment uses `TANDBERG`).
    pub fn realm(mut self, realm: &str) -> Self {
        match heapless::String::try_from(realm) {
            Ok(r) if !realm.is_empty() => self.settings.turn.realm = r,
            _ => return self.refuse("turn.realm", format!("must be 1 to {REALM_MAX} bytes")),
        }
        self
    }

    /// A long-term credential, kept in the relay's [`Users`] (keys are derived at
    /// start, for the realm then set).
    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.to_string(), password.to_string()));
        self
    }

    /// A long-term credential given by its key instead of its password (see
    /// [`Users::insert_key`]); for the realm set by the time the relay starts.
    pub fn user_key(mut self, name: &str, key: crate::credentials::Key) -> Self {
        self.user_keys.push((name.to_string(), key));
        self
    }

    /// A store of credentials of your own, instead of [`RelayBuilder::user`].
    pub fn credentials(mut self, store: impl Credentials) -> Self {
        self.credentials = Some(Arc::new(store));
        self
    }

    /// A shared secret of time-limited credentials (TURN REST: username
    /// `expiry:user`, password base64(HMAC-SHA1(secret, username))). Repeatable,
    /// up to the core's limit: any verifies.
    pub fn shared_secret(mut self, secret: &str) -> Self {
        let field = "turn.shared_secrets";
        let Ok(s) = Secret::from_slice(secret.as_bytes()) else {
            return self.refuse(field, format!("a secret is longer than {SECRET_MAX} bytes"));
        };
        if s.is_empty() {
            return self.refuse(field, "a secret is empty".into());
        }
        if self.settings.turn.shared_secrets.push(s).is_err() {
            return self.refuse(field, format!("more than {SECRETS_MAX} secrets"));
        }
        self
    }

    /// Several shared secrets at once (during a rotation: any verifies).
    pub fn shared_secrets<'s>(mut self, secrets: impl IntoIterator<Item = &'s str>) -> Self {
        for s in secrets {
            self = self.shared_secret(s);
        }
        self
    }

    /// Relay ports from `low` to `high`.
    pub fn relay_range(mut self, low: u16, high: u16) -> Self {
        self.settings.turn.port_min = low;
        self.settings.turn.port_max = high;
        self
    }

    /// The address relay sockets of its family bind to.
    pub fn relay_ip(mut self, ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => self.settings.turn.relay_v4 = Some(a),
            IpAddr::V6(a) => self.settings.turn.relay_v6 = Some(a),
        }
        self
    }

    /// The address advertised for relay sockets of its family (static NAT).
    pub fn external_ip(mut self, ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => self.settings.turn.external_v4 = Some(a),
            IpAddr::V6(a) => self.settings.turn.external_v6 = Some(a),
        }
        self
    }

    /// Peers that may be relayed to despite the built-in deny list.
    pub fn allow_peer(mut self, range: Cidr) -> Self {
        if self.settings.turn.policy.allow.push(range).is_err() {
            return self.refuse(
                "turn.policy.allow",
                format!("more than {RANGES_MAX} ranges"),
            );
        }
        self
    }

    /// A transport address of this host clients may relay to: a media server
    /// beside the relay, on its address, which the own-address rule denies
    /// otherwise (see [`policy`](crate::server::policy)). Exact: the IP's other
    /// ports stay closed. Refused at start if it covers a TURN listener or the
    /// relay port range on a relay address.
    ///
    /// ```no_run
    /// use turn_core::adapters::std::Relay;
    /// use turn_core::server::policy::LocalPeer;
    /// let relay = Relay::builder()
    ///     .listen("127.0.0.1:3478".parse().unwrap())
    ///     .user("alice", "s3cret")
    ///     .allow_local_peer(LocalPeer::parse("127.0.0.1:7882").unwrap())
    ///     .start()
    ///     .unwrap();
    /// ```
    pub fn allow_local_peer(mut self, peer: LocalPeer) -> Self {
        if self.settings.turn.policy.local.push(peer).is_err() {
            return self.refuse(
                "turn.policy.local",
                format!("more than {LOCAL_MAX} local peers"),
            );
        }
        self
    }

    /// Peers never relayed to (wins over [`RelayBuilder::allow_peer`]).
    pub fn deny_peer(mut self, range: Cidr) -> Self {
        if self.settings.turn.policy.deny.push(range).is_err() {
            return self.refuse("turn.policy.deny", format!("more than {RANGES_MAX} ranges"));
        }
        self
    }

    /// Trusts TCP load balancers in `range` to send a PROXY protocol header
    /// first (see [`Settings::proxy_protocol`]).
    pub fn proxy_protocol_from(mut self, range: Cidr) -> Self {
        self.settings.proxy_protocol.push(range);
        self
    }

    /// Relays bound channels of UDP clients in the kernel, with an XDP program
    /// attached to `interface` (repeatable: those clients and peers reach the relay
    /// on). If the program cannot load or attach, the relay logs why and relays in
    /// userspace.
    #[cfg(feature = "xdp")]
    pub fn xdp(mut self, interface: &str) -> Self {
        self.settings.xdp.interfaces.push(interface.to_string());
        self
    }

    /// Worker threads (0: one per core).
    pub fn threads(mut self, n: usize) -> Self {
        self.settings.threads = n;
        self
    }

    /// At most `n` allocations per user.
    pub fn per_user(mut self, n: usize) -> Self {
        self.settings.per_user = Some(n);
        self
    }

    /// At most `n` allocations in all.
    pub fn total(mut self, n: usize) -> Self {
        self.settings.total = Some(n);
        self
    }

    /// Where a full relay sends clients (300 Try Alternate).
    pub fn alternate_server(mut self, addr: SocketAddr) -> Self {
        self.settings.turn.alternate_server = Some(addr);
        self
    }

    /// Accept RFC 5766 channel numbers 0x5000-0x7FFF (coturn's tools, pjnath);
    /// on by default.
    pub fn legacy_channels(mut self, on: bool) -> Self {
        self.settings.turn.legacy_channels = on;
        self
    }

    /// Take TCP allocations (RFC 6062: Connect to TCP peers, peers' connections
    /// to the relayed address), under the same peer policy as UDP; on by
    /// default, off answers them with 442.
    pub fn tcp_allocations(mut self, on: bool) -> Self {
        self.settings.turn.tcp_allocations = on;
        self
    }

    /// Answer RFC 3489 Binding requests (no magic cookie) with MAPPED-ADDRESS
    /// (see [`stun_core::classic`]); on by default, off drops them.
    pub fn classic_stun(mut self, on: bool) -> Self {
        self.settings.turn.classic_stun = on;
        self
    }

    /// Events queued for [`Relay::take_events`] before new ones are dropped
    /// (default 1024).
    pub fn event_queue(mut self, n: usize) -> Self {
        self.events = n;
        self
    }

    /// Starts the relay: binds every listener first (so a bad address stops the
    /// start), then runs the workers. Refuses a setting the builder could not
    /// take (naming it), and users given beside a credential store.
    pub fn start(self) -> Result<Relay, StartError> {
        super::relay::start(self.into_parts()?)
    }

    /// Starts the relay on what another process handed over through `from`
    /// (its [`Relay::hand_over`]): the same listeners, the same number of
    /// workers, and its UDP allocations, in place of binding anew (see
    /// [`upgrade`](super::upgrade)). The settings are checked first, as by
    /// [`start`](Self::start); listeners configured must be those handed (port
    /// 0 matches any port). On any failure nothing is started and the other
    /// process is told why, and serves on.
    pub fn resume(self, from: &std::os::unix::net::UnixStream) -> Result<Resumed, StartError> {
        super::relay::resume(self.into_parts()?, from)
    }

    /// What it holds, checked.
    pub(crate) fn into_parts(self) -> Result<Parts, StartError> {
        if let Some((field, problem)) = self.problem {
            return Err(StartError::Settings { field, problem });
        }
        let credentials: Arc<dyn Credentials> = match self.credentials {
            Some(_) if !self.users.is_empty() || !self.user_keys.is_empty() => {
                return Err(StartError::Settings {
                    field: "user",
                    problem: "users given beside a credential store: add them to the store".into(),
                });
            }
            Some(c) => c,
            None => {
                let mut users = Users::new(&self.settings.turn.realm);
                for (name, password) in &self.users {
                    users.insert(name, password);
                }
                for (name, key) in &self.user_keys {
                    users.insert_key(name, *key);
                }
                Arc::new(users)
            }
        };
        Ok(Parts {
            settings: self.settings,
            credentials,
            events: self.events,
            front: self.front,
        })
    }
}

/// A builder's content, checked: what a relay starts (or reloads) with.
pub(crate) struct Parts {
    pub(crate) settings: Settings,
    pub(crate) credentials: Arc<dyn Credentials>,
    pub(crate) events: usize,
    pub(crate) front: FrontParts,
}

/// What the front of the TLS port starts with: the server's TLS configuration
/// and the hook HTTP connections go to (nothing without feature `tls`).
#[derive(Default)]
pub(crate) struct FrontParts {
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    #[cfg(feature = "tls")]
    pub(crate) on_http: Option<HttpHook>,
}
