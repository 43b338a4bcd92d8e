//! `causeway serve`: the plan goes to the library's builders (the relay of
//! `turn-core`, the web proxy of `proxy-core`), then the admin interface and
//! the redirect listener start beside them. SIGHUP (or `POST /reload`) reads
//! the configuration again and applies it; SIGTERM (or `POST /drain`) drains
//! and stops when the last allocation and connection end or at the drain
//! deadline; SIGINT, or a second SIGTERM, stops at once.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use log::{info, warn};
use proxy_core::runtime::Proxy;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use turn_core::adapters::std::{Relay, RelayBuilder, StartError};

use crate::admin::{Admin, Command};
use crate::cli::ServeArgs;
use crate::config::{Config, Plan};

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
            ServeError::Relay(e) => write!(f, "{e}"),
            ServeError::Bind { what, addr, source } => write!(
                f,
                "cannot listen on {what} {addr}: {source} (is another server already on this port?)"
            ),
            ServeError::Setup(what, e) => write!(f, "cannot {what}: {e}"),
        }
    }
}

impl std::error::Error for ServeError {}

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

/// The web proxy of the plan, for the TLS listeners (taking over from `old`'s
/// event loops and connection count on a reload).
fn web_proxy(plan: &Plan, old: Option<&Proxy>) -> Result<Option<Arc<Proxy>>, ServeError> {
    let Some(web) = &plan.web else {
        return Ok(None);
    };
    let mut b = Proxy::builder()
        .port(plan.relay.tls_listen.first().map_or(443, |a| a.port()))
        .web_bridge_rules(web.web_bridge_rules)
        .deadlines(web.deadlines)
        .send_stall(web.send_stall)
        .max_per_source(web.max_per_source)
        .bridge_pool(web.bridge_keepalive, web.bridge_keepalive_idle);
    if let Some(n) = web.max_connections {
        b = b.max_connections(n);
    }
    if let Some(n) = web.event_loops {
        b = b.loops(n);
    }
    if let Some(old) = old {
        b = b.replacing(old);
    }
    for (host, up) in &web.sites {
        b = b.site(host, up.clone());
    }
    for r in &web.rules {
        b = b.rule(r.clone());
    }
    if let Some(tls) = &web.upstream_tls {
        b = b.upstream_tls(tls.clone());
    }
    b.build()
        .map(Some)
        .map_err(|e| ServeError::Setup("set up the web proxy", e.to_string()))
}

/// The relay's builder for `plan` (with the demo user, if there is one), and
/// the web proxy it hands HTTPS to.
fn builder(
    plan: &Plan,
    demo: Option<&str>,
    old: Option<&Proxy>,
) -> Result<(RelayBuilder, Option<Arc<Proxy>>), ServeError> {
    let proxy = web_proxy(plan, old)?;
    let mut b = Relay::builder().settings(plan.relay.clone());
    for (name, password) in &plan.users {
        b = b.user(name, password);
    }
    if let Some(pass) = demo {
        b = b.user("demo", pass);
    }
    if let Some(tls) = &plan.tls {
        b = b.tls(tls.clone());
    }
    if let Some(p) = &proxy {
        b = b.web_proxy(p.clone());
    }
    // Nobody reads events here: the log says the same.
    Ok((b.event_queue(0), proxy))
}

/// Reads the configuration again and gives it to the running relay; refused
/// (with the field named) without changing anything when it does not work.
fn reload(
    args: &ServeArgs,
    relay: &Relay,
    demo: Option<&str>,
    old: Option<&Proxy>,
) -> Result<Option<Arc<Proxy>>, String> {
    let plan = Config::load(args)
        .and_then(|c| Plan::try_from(&c))
        .map_err(|e| format!("configuration refused: {e}"))?;
    if let (Some(old), Some(web)) = (old, &plan.web)
        && let Some(n) = web.event_loops.filter(|n| *n != old.loops())
    {
        return Err(format!(
            "reload refused: `http.event_loops` is {} and cannot become {n} without a restart",
            old.loops()
        ));
    }
    let (b, proxy) = builder(&plan, demo, old).map_err(|e| e.to_string())?;
    relay
        .reload(b)
        .map_err(|e| format!("reload refused: {e}"))?;
    crate::set_log_level(&plan.log_level);
    Ok(proxy)
}

/// Tells the admin interface which web proxy is current.
fn set_web(shared: &Mutex<Option<Arc<Proxy>>>, current: &Option<Arc<Proxy>>) {
    *shared.lock().unwrap_or_else(|e| e.into_inner()) = current.clone();
}

/// Runs the server until it is stopped (see the module docs).
pub(crate) fn run(args: &ServeArgs, plan: Plan) -> Result<(), ServeError> {
    let demo = if plan.demo_user {
        Some(demo_password()?)
    } else {
        None
    };
    // Bind the program's own listeners first, so a taken port stops the start
    // before the relay binds anything.
    let admin = bind("admin", plan.admin)?;
    let admin_addr = admin
        .local_addr()
        .map_err(|e| ServeError::Setup("read a local address", e.to_string()))?;
    let redirect = plan.http_redirect.map(|a| bind("http", a)).transpose()?;
    let realm = plan.relay.turn.realm.to_string();
    let (b, proxy) = builder(&plan, demo.as_deref(), None)?;
    // The web proxy now: a reload's takes over the event loops and the count of
    // connections (those opened before the reload included).
    let mut current: Option<Arc<Proxy>> = proxy.clone();
    let relay = b.start().map_err(ServeError::Relay)?;

    let redirect_addr = redirect.as_ref().and_then(|l| l.local_addr().ok());
    if let Some(listener) = redirect {
        let proxy = match &proxy {
            Some(p) => p.clone(),
            None => Proxy::builder()
                .build()
                .map_err(|e| ServeError::Setup("set up the redirect", e.to_string()))?,
        };
        std::thread::Builder::new()
            .name("causeway-http".into())
            .spawn(move || proxy.serve_redirect(listener))
            .map_err(|e| ServeError::Setup("spawn the redirect thread", e.to_string()))?;
    }
    let (commands, inbox) = mpsc::channel();
    let web_now = Arc::new(Mutex::new(current.clone()));
    {
        let admin_state = Admin {
            stats: relay.stats_handle(),
            realm: realm.clone(),
            per_user_metrics: plan.metrics_per_user,
            commands,
            web: web_now.clone(),
        };
        std::thread::Builder::new()
            .name("causeway-admin".into())
            .spawn(move || crate::admin::serve_admin(admin, admin_state))
            .map_err(|e| ServeError::Setup("spawn the admin thread", e.to_string()))?;
    }

    // Handlers go in before "ready", so a signal sent on seeing it is caught.
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])
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
    println!("causeway: admin on http://{admin_addr}/status and /metrics");
    if let Some(pass) = &demo {
        println!("causeway: demo user `demo`, password `{pass}`, realm `{realm}`");
    }
    println!("causeway: ready");
    info!(
        "serving with {} worker(s), {} allocations in all; reload with SIGHUP, drain with \
         SIGTERM, stop with Ctrl-C",
        relay.threads(),
        relay.quota_total()
    );

    let drain_for = Duration::from_secs(plan.drain_timeout_secs);
    let mut drained_by: Option<Instant> = None;
    let start_drain = |drained_by: &mut Option<Instant>, why: &str| {
        relay.drain(drain_for);
        *drained_by = Some(Instant::now() + drain_for);
        // Logged once in effect: /readyz already answers 503.
        info!(
            "{why}: draining (no new allocations; stopping when the last one ends, at the \
             latest in {} s)",
            drain_for.as_secs()
        );
    };
    'run: loop {
        for sig in signals.pending() {
            match sig {
                SIGHUP => match reload(args, &relay, demo.as_deref(), current.as_deref()) {
                    Ok(p) => {
                        current = p.or(current);
                        set_web(&web_now, &current);
                        info!("SIGHUP: configuration reloaded");
                    }
                    Err(e) => warn!("SIGHUP: {e}; the running configuration is kept"),
                },
                SIGTERM if drained_by.is_none() => start_drain(&mut drained_by, "SIGTERM"),
                _ => {
                    info!("signal {sig} received: stopping now");
                    break 'run;
                }
            }
        }
        while let Ok(cmd) = inbox.try_recv() {
            match cmd {
                Command::Reload(reply) => {
                    let result =
                        reload(args, &relay, demo.as_deref(), current.as_deref()).map(|p| {
                            current = p.or(current.take());
                            set_web(&web_now, &current);
                        });
                    match &result {
                        Ok(()) => info!("admin: configuration reloaded"),
                        Err(e) => warn!("admin: {e}; the running configuration is kept"),
                    }
                    let _ = reply.send(result);
                }
                Command::Drain(reply) => {
                    if drained_by.is_none() {
                        start_drain(&mut drained_by, "admin");
                    }
                    let _ = reply.send(Ok(()));
                }
            }
        }
        if let Some(deadline) = drained_by {
            let tunnels = current.as_ref().map_or(0, |p| p.connections());
            let allocations = relay.stats().in_use();
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
        std::thread::sleep(Duration::from_millis(100));
    }
    relay.shutdown();
    relay.join();
    info!("stopped");
    Ok(())
}
