//! `causeway serve`: the plan goes to the library's builders (the relay of
//! `turn-core`, the web proxy of `proxy-core`), then the admin interface and
//! the redirect listener start beside them, and SIGINT or SIGTERM stops it all.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use log::info;
use proxy_core::runtime::Proxy;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use turn_core::adapters::std::{Relay, StartError};

use crate::config::Plan;

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

/// The web proxy of the plan, for the TLS listeners.
fn web_proxy(plan: &Plan) -> Result<Option<Arc<Proxy>>, ServeError> {
    let Some(web) = &plan.web else {
        return Ok(None);
    };
    let mut b = Proxy::builder()
        .port(plan.relay.tls_listen.first().map_or(443, |a| a.port()))
        .web_bridge_rules(web.web_bridge_rules)
        .deadlines(web.deadlines)
        .send_stall(web.send_stall);
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

/// Runs the server until SIGINT or SIGTERM.
pub(crate) fn run(mut plan: Plan) -> Result<(), ServeError> {
    let mut demo = None;
    if plan.demo_user {
        let pass = demo_password()?;
        plan.users.push(("demo".into(), pass.clone()));
        demo = Some(pass);
    }
    // Bind the program's own listeners first, so a taken port stops the start
    // before the relay binds anything.
    let admin = bind("admin", plan.admin)?;
    let admin_addr = admin
        .local_addr()
        .map_err(|e| ServeError::Setup("read a local address", e.to_string()))?;
    let redirect = plan.http_redirect.map(|a| bind("http", a)).transpose()?;
    let proxy = web_proxy(&plan)?;

    let realm = plan.relay.turn.realm.to_string();
    let mut builder = Relay::builder().settings(plan.relay);
    for (name, password) in &plan.users {
        builder = builder.user(name, password);
    }
    if let Some(tls) = plan.tls {
        builder = builder.tls(tls);
    }
    if let Some(p) = &proxy {
        builder = builder.web_proxy(p.clone());
    }
    // Nobody reads events here: the log says the same.
    let relay = builder.event_queue(0).start().map_err(ServeError::Relay)?;

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
    {
        let stats = relay.stats_handle();
        let realm = realm.clone();
        std::thread::Builder::new()
            .name("causeway-admin".into())
            .spawn(move || crate::admin::serve_admin(admin, stats, realm))
            .map_err(|e| ServeError::Setup("spawn the admin thread", e.to_string()))?;
    }

    // Handlers go in before "ready", so a signal sent on seeing it is caught.
    let mut signals = Signals::new([SIGINT, SIGTERM])
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
        "serving with {} worker(s), {} allocations in all; stop with Ctrl-C",
        relay.threads(),
        relay.quota_total()
    );

    if let Some(sig) = signals.forever().next() {
        info!("signal {sig} received: stopping");
    }
    relay.shutdown();
    relay.join();
    info!("stopped");
    Ok(())
}
