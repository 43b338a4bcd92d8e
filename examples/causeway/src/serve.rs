//! `causeway serve`: the plan goes to the library's builders (the relay of
//! `turn-core`, the web proxy of `proxy-core`), then the admin interface and
//! the redirect listener start beside them. SIGHUP (or `POST /reload`) reads
//! the configuration again and applies it; SIGTERM (or `POST /drain`) drains
//! and stops when the last allocation and connection end or at the drain
//! deadline; SIGINT, or a second SIGTERM, stops at once.
//!
//! A reload is all or nothing: the whole new configuration is read, checked
//! and built (a new web proxy changes nothing until it takes over) before any
//! of it applies, and what cannot change without a restart (listeners, the
//! admin and redirect addresses, the event loops) refuses the reload, naming
//! the key. A drain survives a reload: the new web proxy drains too.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use log::{info, warn};
use proxy_core::runtime::{Accepting, Link, Proxy};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR2};
use signal_hook::iterator::Signals;
use turn_core::adapters::std::{Accepted, Relay, RelayBuilder, StartError};

use crate::accounting::Accounting;
use crate::admin::access::{self, Rules};
use crate::admin::{Access, Admin, Command};
use crate::cli::ServeArgs;
use crate::config::{Config, Plan, UserSecret};
use crate::upgrade::{self, Launch};

/// Why the server could not start.
#[derive(Debug)]
pub(crate) enum ServeError {
    /// The relay did not start.
    Relay(StartError),
    /// A listener of the program's own could not be bound.
    Bind {
        /// "admin" or "http".
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// Anything else at start (signals, threads, randomness, the web proxy).
    Setup(&'static str, String),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Relay(e) => f.write_str(&relay_error(e)),
            ServeError::Bind { what, addr, source } => write!(
                f,
                "cannot listen on {what} {addr}: {source} (is another server already on this port?)"
            ),
            ServeError::Setup(what, e) => write!(f, "cannot {what}: {e}"),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServeError::Relay(e) => Some(e),
            ServeError::Bind { source, .. } => Some(source),
            ServeError::Setup(..) => None,
        }
    }
}

/// What the relay refused, naming the configuration key the operator wrote.
fn relay_error(e: &StartError) -> String {
    match e {
        StartError::Settings { field, problem } => {
            format!("`{}`: {problem}", crate::config::config_key(field))
        }
        other => other.to_string(),
    }
}

/// Draws a password for the demo user.
fn demo_password() -> Result<String, ServeError> {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b)
        .map_err(|e| ServeError::Setup("read the OS random source", e.to_string()))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr).map_err(|source| ServeError::Bind { what, addr, source })
}

/// The listener `what` handed over by the process being upgraded, if it is
/// still on the address configured (port 0: any port), or a new one.
fn adopt(
    sockets: &mut Vec<(String, OwnedFd)>,
    what: &'static str,
    addr: SocketAddr,
) -> Result<TcpListener, ServeError> {
    if let Some(i) = sockets.iter().position(|(name, _)| name == what) {
        let listener = TcpListener::from(sockets.swap_remove(i).1);
        if let Ok(have) = listener.local_addr()
            && (have == addr || (addr.port() == 0 && addr.ip() == have.ip()))
        {
            return Ok(listener);
        }
        info!("upgrade: the {what} listener moved to {addr}");
    }
    bind(what, addr)
}

/// Accepts on `listener` until the program's listeners move to a new process.
fn accepting(listener: TcpListener, moved: &Arc<AtomicBool>) -> Result<Accepting, ServeError> {
    Accepting::new(listener, moved.clone())
        .map_err(|e| ServeError::Setup("watch a listener", e.to_string()))
}

/// The web proxy of the plan, for the TLS listeners (taking over from `old`'s
/// event loops and connection count on a reload, once it is told to).
fn web_proxy(plan: &Plan, old: Option<&Proxy>) -> Result<Option<Arc<Proxy>>, String> {
    let Some(web) = &plan.web else {
        return Ok(None);
    };
    // The port each browser reached is the one its connection arrived on.
    let mut b = Proxy::with_settings(web.clone());
    if let Some(old) = old {
        b = b.replacing(old);
    }
    b.build()
        .map(Some)
        .map_err(|e| format!("cannot set up the web proxy: {e}"))
}

/// Where the TLS listeners' HTTP connections go: port 443 is the relay's front,
/// and the web proxy serves what it hands over.
fn to_web_proxy(proxy: &Proxy, a: Accepted) {
    proxy.hand_off(Link::accepted(a.stream, a.tls), a.buffered, a.sni, a.client);
}

/// The relay's builder for `plan` (with the demo user, if there is one), and
/// the web proxy it hands HTTPS to.
fn builder(
    plan: &Plan,
    demo: Option<&str>,
    old: Option<&Proxy>,
) -> Result<(RelayBuilder, Option<Arc<Proxy>>), String> {
    let proxy = web_proxy(plan, old)?;
    let mut b = Relay::with_settings(plan.relay.clone());
    for (name, secret) in &plan.users {
        b = match secret {
            UserSecret::Password(p) => b.user(name, p),
            UserSecret::Key(k) => b.user_key(name, *k),
        };
    }
    if let Some(pass) = demo {
        b = b.user("demo", pass);
    }
    if let Some(tls) = &plan.tls {
        b = b.tls(tls.clone());
    }
    if let Some(p) = &proxy {
        let p = p.clone();
        b = b.on_http(move |a| to_web_proxy(&p, a));
    }
    // Events feed the usage records and the heaviest accounts; nobody reads
    // them otherwise (the log says the same).
    Ok((
        b.event_queue(if accounts(plan) { USAGE_QUEUE } else { 0 }),
        proxy,
    ))
}

/// The admin port's rules of `plan`, with `token` when the plan names no file.
fn admin_rules(plan: &Plan, token: &str) -> Rules {
    Rules {
        token: plan
            .admin_access
            .token
            .as_ref()
            .map_or_else(|| token.to_string(), |(t, _)| t.clone()),
        names: plan.admin_access.names.clone(),
        open: plan.admin_access.open.clone(),
    }
}

/// Events queued for the usage thread (a stop ends every allocation at once:
/// the workers then wait for room). Its slots are a fixed ~0.5 MB once used.
const USAGE_QUEUE: usize = 1024;

/// Whether `plan` keeps usage records (a file, or the heaviest accounts).
fn accounts(plan: &Plan) -> bool {
    plan.usage_log.is_some() || plan.metrics_top_accounts > 0
}

/// What a running server is, besides its relay: what a reload changes.
struct Running {
    /// The plan it started with: what only a restart changes is compared to it.
    started: Plan,
    /// The web proxy now (a reload's takes over the event loops and the count of
    /// connections, those opened before the reload included).
    proxy: Option<Arc<Proxy>>,
    /// The web proxy, as the admin interface reads it.
    web_now: Arc<Mutex<Option<Arc<Proxy>>>>,
    /// The admin port's rules.
    access: Access,
    /// The admin token drawn at start (kept over reloads that name no file).
    drawn_token: String,
    /// What the admin pages show that a reload may change.
    view: Arc<Mutex<AdminView>>,
    /// The demo user's password, if there is one.
    demo: Option<String>,
    /// How long a drain lasts.
    drain_for: Duration,
    /// When the drain ends, once draining.
    drained_by: Option<Instant>,
    /// Usage records and the heaviest accounts.
    accounting: Arc<Accounting>,
    /// The traversal port, when connectors serve join URLs.
    traversal: Option<proxy_core::runtime::traversal::TraversalListener>,
    /// What an upgrade starts again.
    launch: Launch,
    /// The program's own listeners (duplicates), which an upgrade hands over.
    own_listeners: Vec<(&'static str, TcpListener)>,
    /// Set once they have moved: their accepting threads stop.
    moved: Arc<AtomicBool>,
    /// Once upgraded: when the clients left here are cut.
    upgraded_by: Option<Instant>,
}

impl Running {
    /// Reads the configuration again and applies all of it, or none of it (the
    /// refusal names the key).
    fn reload(&mut self, args: &ServeArgs, relay: &Relay) -> Result<(), String> {
        let plan = Config::load(args)
            .and_then(|c| Plan::try_from(&c))
            .map_err(|e| format!("configuration refused: {e}"))?;
        let fixed = [
            ("admin", self.started.admin != plan.admin),
            (
                "http_redirect",
                self.started.http_redirect != plan.http_redirect,
            ),
            ("demo_user", self.started.demo_user != plan.demo_user),
            ("usage_log", !accounts(&self.started) && accounts(&plan)),
            (
                "traversal.listen",
                self.started.traversal.as_ref().map(|t| t.listen)
                    != plan.traversal.as_ref().map(|t| t.listen),
            ),
        ];
        if let Some((key, _)) = fixed.iter().find(|(_, changed)| *changed) {
            return Err(format!(
                "reload refused: `{key}` cannot change without a restart"
            ));
        }
        if let (Some(old), Some(web)) = (&self.proxy, &plan.web)
            && let Some(n) = web.event_loops.filter(|n| *n != old.loops())
        {
            return Err(format!(
                "reload refused: `http.event_loops` is {} and cannot become {n} without a restart",
                old.loops()
            ));
        }
        // Built, changing nothing yet; draining if this node drains.
        let (b, proxy) = builder(&plan, self.demo.as_deref(), self.proxy.as_deref())
            .map_err(|e| format!("reload refused: {e}"))?;
        if let Some(p) = &proxy
            && self.drained_by.is_some()
        {
            p.drain();
        }
        // The relay checks all it takes before it changes anything.
        relay
            .reload(b)
            .map_err(|e| format!("reload refused: {}", relay_error(&e)))?;
        // From here on, nothing can fail: everything switches.
        if let Some(p) = &proxy {
            p.take_over();
            self.proxy = Some(p.clone());
        }
        *self.web_now.lock().unwrap_or_else(|e| e.into_inner()) = self.proxy.clone();
        self.access.set(admin_rules(&plan, &self.drawn_token));
        *self.view.lock().unwrap_or_else(|e| e.into_inner()) = AdminView::of(&plan);
        self.drain_for = Duration::from_secs(plan.drain_timeout_secs);
        self.accounting.set_path(plan.usage_log.clone());
        if let (Some(l), Some(t)) = (&self.traversal, &plan.traversal)
            && let Err(e) = l.reconfigure(&t.cert, &t.key, t.connectors.clone())
        {
            warn!("traversal: the reload's certificate is unusable, the old one stays: {e}");
        }
        crate::set_log_level(&plan.log_level);
        for w in &plan.warnings {
            warn!("{w}");
        }
        Ok(())
    }

    /// Starts the new binary and hands the relay over (see [`upgrade`]); what
    /// happened, for the log and the admin port.
    fn upgrade(&mut self, relay: &Relay) -> Result<String, String> {
        if self.upgraded_by.is_some() {
            return Err("upgrade refused: this process has handed over already".into());
        }
        if self.drained_by.is_some() {
            return Err("upgrade refused: this node is draining".into());
        }
        if self.traversal.is_some() {
            return Err(
                "upgrade refused: an edge with a traversal port upgrades by a restart \
                        (its connectors' connections cannot move; they reconnect)"
                    .into(),
            );
        }
        let named: Vec<_> = self
            .own_listeners
            .iter()
            .map(|(name, l)| (*name, l.as_fd()))
            .collect();
        let done = upgrade::upgrade(&self.launch, relay, &named)
            .map_err(|e| format!("upgrade refused: {e}; this process serves on"))?;
        self.moved.store(true, Ordering::Release);
        upgrade::notify(&format!(
            "MAINPID={}\nSTATUS=upgraded: pid {} serves",
            done.pid, done.pid
        ));
        if let Some(p) = &self.proxy {
            p.drain();
        }
        self.upgraded_by = Some(Instant::now() + self.drain_for);
        Ok(format!(
            "upgraded: pid {} serves on ({} UDP allocation(s) moved, UDP paused {} ms); this \
             process serves its TCP/TLS clients and web tunnels to their end (at the latest in \
             {} s)",
            done.pid,
            done.allocations,
            done.paused.as_millis(),
            self.drain_for.as_secs()
        ))
    }

    /// Starts draining (once).
    fn drain(&mut self, relay: &Relay, why: &str) {
        if self.drained_by.is_some() {
            return;
        }
        relay.drain(self.drain_for);
        if let Some(p) = &self.proxy {
            p.drain();
        }
        self.drained_by = Some(Instant::now() + self.drain_for);
        // Logged once in effect: /readyz already answers 503.
        info!(
            "{why}: draining (no new allocations; stopping when the last one ends, at the \
             latest in {} s)",
            self.drain_for.as_secs()
        );
    }
}

/// Runs the server until it is stopped (see the module docs).
pub(crate) fn run(args: &ServeArgs, plan: Plan) -> Result<(), ServeError> {
    let demo = if plan.demo_user {
        Some(demo_password()?)
    } else {
        None
    };
    let launch = Launch::of_this_process()
        .map_err(|e| ServeError::Setup("find this program's binary", e.to_string()))?;
    let inherited = upgrade::inherited()
        .transpose()
        .map_err(|e| ServeError::Setup("take over", e))?;
    let (b, proxy) = builder(&plan, demo.as_deref(), None)
        .map_err(|e| ServeError::Setup("set up the web proxy", e))?;
    let (relay, admin, redirect) = match &inherited {
        None => {
            // Bind the program's own listeners first, so a taken port stops
            // the start before the relay binds anything.
            let admin = bind("admin", plan.admin)?;
            let redirect = plan.http_redirect.map(|a| bind("http", a)).transpose()?;
            (b.start().map_err(ServeError::Relay)?, admin, redirect)
        }
        Some(from) => {
            let resumed = b.resume(from).map_err(ServeError::Relay)?;
            let mut sockets = resumed.sockets;
            let admin = adopt(&mut sockets, "admin", plan.admin)?;
            let redirect = plan
                .http_redirect
                .map(|a| adopt(&mut sockets, "http", a))
                .transpose()?;
            info!(
                "upgrade: took over {} UDP allocation(s) and the listeners",
                resumed.allocations
            );
            (resumed.relay, admin, redirect)
        }
    };
    let moved = Arc::new(AtomicBool::new(false));
    let dup = |l: &TcpListener| {
        l.try_clone()
            .map_err(|e| ServeError::Setup("keep a listener for an upgrade", e.to_string()))
    };
    let mut own_listeners = vec![("admin", dup(&admin)?)];
    if let Some(r) = &redirect {
        own_listeners.push(("http", dup(r)?));
    }
    let admin_addr = admin
        .local_addr()
        .map_err(|e| ServeError::Setup("read a local address", e.to_string()))?;
    // The admin token: the configured file's, or one drawn now and written
    // where only this user reads it.
    let drawn_token =
        access::new_token().map_err(|e| ServeError::Setup("draw an admin token", e))?;
    let token_file = match &plan.admin_access.token {
        Some((_, path)) => path.clone(),
        None => {
            let path = access::token_path(admin_addr.port());
            access::write_token(&path, &drawn_token)
                .map_err(|e| ServeError::Setup("keep the admin token", e))?;
            path
        }
    };
    let access = Access::new(admin_rules(&plan, &drawn_token));
    let realm = plan.relay.turn.realm.to_string();
    let accounting = Arc::new(Accounting::default());
    accounting.set_path(plan.usage_log.clone());
    let accounting_thread = match relay.take_events() {
        Some(events) => Some(
            accounting
                .spawn(events)
                .map_err(|e| ServeError::Setup("spawn the usage thread", e.to_string()))?,
        ),
        None => None,
    };

    let redirect_addr = redirect.as_ref().and_then(|l| l.local_addr().ok());
    if let Some(listener) = redirect {
        let proxy = match &proxy {
            Some(p) => p.clone(),
            None => Proxy::builder()
                .build()
                .map_err(|e| ServeError::Setup("set up the redirect", e.to_string()))?,
        };
        let connections = accepting(listener, &moved)?;
        std::thread::Builder::new()
            .name("causeway-http".into())
            .spawn(move || proxy.serve_redirect_from(connections))
            .map_err(|e| ServeError::Setup("spawn the redirect thread", e.to_string()))?;
    }
    let traversal = plan
        .traversal
        .as_ref()
        .map(crate::traversal::start)
        .transpose()
        .map_err(|e| ServeError::Setup("start the traversal port", e))?;
    let (commands, inbox) = mpsc::channel();
    let web_now = Arc::new(Mutex::new(proxy.clone()));
    let view = Arc::new(Mutex::new(AdminView::of(&plan)));
    {
        let admin_state = Admin {
            stats: relay.stats_handle(),
            view: view.clone(),
            commands,
            web: web_now.clone(),
            access: access.clone(),
            accounting: accounting.clone(),
        };
        let connections = accepting(admin, &moved)?;
        std::thread::Builder::new()
            .name("causeway-admin".into())
            .spawn(move || crate::admin::serve_admin(connections, admin_state))
            .map_err(|e| ServeError::Setup("spawn the admin thread", e.to_string()))?;
    }

    // Handlers go in before "ready", so a signal sent on seeing it is caught.
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR2])
        .map_err(|e| ServeError::Setup("install signal handlers", e.to_string()))?;
    for a in relay.local_addrs() {
        // On stdout, for scripts and tests that start the server on port 0.
        println!("causeway: listening on udp {a} and tcp {a}");
    }
    for a in relay.tls_addrs() {
        println!("causeway: listening on tls {a} (TURN over TLS/TCP and the web proxy)");
    }
    if let Some(a) = redirect_addr {
        println!("causeway: redirecting http {a} to https");
    }
    if let Some(t) = &traversal {
        println!(
            "causeway: listening on traversal {} (connectors dial in)",
            t.local_addr()
        );
    }
    println!("causeway: admin on http://{admin_addr}/status and /metrics");
    println!(
        "causeway: admin token in {} ({})",
        token_file.display(),
        if plan.admin_access.token.is_none() {
            "drawn at start; set admin_token_file to keep one"
        } else {
            "admin_token_file"
        }
    );
    if let Some(pass) = &demo {
        println!("causeway: demo user `demo`, password `{pass}`, realm `{realm}`");
    }
    match &inherited {
        None => {
            println!("causeway: ready");
            upgrade::notify("READY=1\nSTATUS=serving");
        }
        Some(_) => println!("causeway: ready (took over from the process upgraded)"),
    }
    drop(inherited);
    info!(
        "serving with {} worker(s), {} allocations in all; reload with SIGHUP, drain with \
         SIGTERM, upgrade with SIGUSR2, stop with Ctrl-C",
        relay.threads(),
        relay.quota_total()
    );

    let mut running = Running {
        drain_for: Duration::from_secs(plan.drain_timeout_secs),
        accounting: accounting.clone(),
        traversal,
        started: plan,
        proxy,
        web_now,
        access,
        drawn_token,
        view,
        demo,
        drained_by: None,
        launch,
        own_listeners,
        moved,
        upgraded_by: None,
    };
    'run: loop {
        for sig in signals.pending() {
            match sig {
                SIGHUP => {
                    // After a rotation (logrotate's postrotate), even if the
                    // new configuration is refused.
                    running.accounting.reopen();
                    match running.reload(args, &relay) {
                        Ok(()) => info!("SIGHUP: configuration reloaded"),
                        Err(e) => warn!("SIGHUP: {e}; the running configuration is kept"),
                    }
                }
                SIGUSR2 => match running.upgrade(&relay) {
                    Ok(done) => info!("SIGUSR2: {done}"),
                    Err(e) => warn!("SIGUSR2: {e}"),
                },
                SIGTERM if running.upgraded_by.is_some() => {
                    info!("SIGTERM after an upgrade: stopping now");
                    break 'run;
                }
                SIGTERM if running.drained_by.is_none() => running.drain(&relay, "SIGTERM"),
                _ => {
                    info!("signal {sig} received: stopping now");
                    break 'run;
                }
            }
        }
        while let Ok(cmd) = inbox.try_recv() {
            match cmd {
                Command::Reload(reply) => {
                    let result = running.reload(args, &relay);
                    match &result {
                        Ok(()) => info!("admin: configuration reloaded"),
                        Err(e) => warn!("admin: {e}; the running configuration is kept"),
                    }
                    let _ = reply.send(result);
                }
                Command::Drain(reply) => {
                    running.drain(&relay, "admin");
                    let _ = reply.send(Ok(()));
                }
                Command::Upgrade(reply) => {
                    let result = running.upgrade(&relay);
                    match &result {
                        Ok(done) => info!("admin: {done}"),
                        Err(e) => warn!("admin: {e}"),
                    }
                    let _ = reply.send(result);
                }
            }
        }
        if let Some(deadline) = running.drained_by {
            let tunnels = running.proxy.as_ref().map_or(0, |p| p.connections());
            let allocations = relay.summary().in_use();
            if Instant::now() >= deadline {
                info!(
                    "drain deadline reached: stopping; {allocations} allocation(s) and {tunnels} \
                     web proxy connection(s) cut"
                );
                break;
            }
            if relay.drained() && allocations == 0 && tunnels == 0 {
                info!("drained: no allocation or connection left");
                break;
            }
        }
        if let Some(deadline) = running.upgraded_by {
            let tunnels = running.proxy.as_ref().map_or(0, |p| p.connections());
            let stats = relay.summary();
            let clients: usize = stats.workers.iter().map(|w| w.connections).sum();
            if clients == 0 && tunnels == 0 {
                info!("upgrade: the last TCP/TLS client and web tunnel here ended; exiting");
                break;
            }
            if Instant::now() >= deadline {
                info!(
                    "upgrade: deadline reached; {clients} TCP/TLS client(s) and {tunnels} web \
                     tunnel(s) cut"
                );
                break;
            }
        }
        // The main loop's tick: signals and admin commands are looked at again.
        std::thread::sleep(Duration::from_millis(100));
    }
    relay.shutdown();
    relay.join();
    if let Some(t) = accounting_thread {
        accounting.finish(t);
    }
    // After an upgrade the file is the new process's.
    if running.started.admin_access.token.is_none() && running.upgraded_by.is_none() {
        let _ = std::fs::remove_file(&token_file);
    }
    info!("stopped");
    Ok(())
}

/// What the admin pages show that a reload may change.
#[derive(Debug, Clone)]
pub(crate) struct AdminView {
    /// The realm.
    pub(crate) realm: String,
    /// Metrics per username.
    pub(crate) per_user_metrics: bool,
    /// The heaviest accounts on `/metrics`.
    pub(crate) top_accounts: usize,
}

impl AdminView {
    fn of(plan: &Plan) -> AdminView {
        AdminView {
            realm: plan.relay.turn.realm.to_string(),
            per_user_metrics: plan.metrics_per_user,
            top_accounts: plan.metrics_top_accounts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_refusals_name_the_configuration_key() {
        for (field, key) in [
            ("turn.policy.deny", "deny_peer"),
            ("turn.policy.local", "allow_local_peer"),
            ("turn.relay_v6", "relay_ip"),
            ("tls_listen", "tls_listen"),
        ] {
            let e = StartError::Settings {
                field,
                problem: "wrong".into(),
            };
            assert_eq!(relay_error(&e), format!("`{key}`: wrong"));
        }
    }
}
