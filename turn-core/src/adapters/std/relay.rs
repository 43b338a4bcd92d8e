//! Starting the relay: the settings the listeners complete (relay addresses,
//! own addresses), every listener bound once per worker, the shards, the
//! workers and the TLS thread started, and the [`Relay`] handle made.
//!
//! Starting binds every listener before it spawns anything, so a bad address
//! stops the start with the address in the error; then each worker gets its
//! shard of the TURN server (one secret keys every shard's nonces, so a nonce
//! verifies on whichever worker the kernel steers the next packet to).

use crate::adapters::std::prelude::*;

use std::io;
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};

use log::{info, warn};

use crate::server::Slot;

/// Slots each shard's table starts with (about 440 KB with the std server's
/// sizes); it grows by a quarter when they are all taken, up to its share.
const FIRST_SLOTS: usize = 256;

use super::error::StartError;

use super::builder::{Parts, Settings};
use super::capacity::Capacity;
use super::check::check;
use super::handle::{Relay, Stopper};
use super::net;
use super::shared::{Quota, Shared};
use super::upgrade::{self, HandOverError, Handed, Resumed};
use super::worker::{self, Turn, UdpListener, Worker};

fn setup(what: &'static str) -> impl FnOnce(io::Error) -> StartError {
    move |source| StartError::Setup { what, source }
}

fn random<const N: usize>() -> Result<[u8; N], StartError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| StartError::Setup {
        what: "read the OS random source",
        source: io::Error::other(e.to_string()),
    })?;
    Ok(b)
}

/// Every worker's listeners, and the addresses bound (UDP and TCP, TLS).
pub(crate) struct Bound {
    listeners: Vec<worker::Listeners>,
    local: Vec<SocketAddr>,
    tls_local: Vec<SocketAddr>,
}

/// Binds every listener once per worker: the first socket of each address fixes
/// its port (which matters for port 0), the others join it with SO_REUSEPORT.
fn bind_all(settings: &Settings, threads: usize) -> Result<Bound, StartError> {
    let mut listeners: Vec<worker::Listeners> = (0..threads).map(|_| Default::default()).collect();
    let mut bound = Vec::new();
    let bind = |transport, addr| {
        move |source| StartError::Bind {
            transport,
            addr,
            source,
        }
    };
    for &addr in &settings.listen {
        // Port 0 is any port free for both UDP and TCP: the one UDP got may be
        // held on TCP (an outgoing connection's port, or one in TIME_WAIT).
        let mut tries = if addr.port() == 0 { 16 } else { 1 };
        let (udp, tcp, actual) = loop {
            tries -= 1;
            let mut actual = addr;
            let mut udp = Vec::new();
            for _ in 0..threads {
                let sock = net::bind_udp(actual).map_err(bind("udp", actual))?;
                actual = sock.local_addr().map_err(setup("read a local address"))?;
                let state = net::batched(&sock, net::Reads::Destination)
                    .map_err(setup("set up batched UDP receive"))?;
                udp.push(UdpListener {
                    sock,
                    state,
                    local: actual,
                });
            }
            let tcp: Result<Vec<_>, _> = (0..threads).map(|_| net::bind_tcp(actual)).collect();
            match tcp {
                Ok(tcp) => break (udp, tcp, actual),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries > 0 => {}
                Err(e) => return Err(bind("tcp", actual)(e)),
            }
        };
        for ((l, u), t) in listeners.iter_mut().zip(udp).zip(tcp) {
            l.udp.push(u);
            l.tcp.push(t);
        }
        bound.push(actual);
    }
    #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
    let mut tls_bound = Vec::new();
    #[cfg(feature = "tls")]
    for &addr in &settings.tls_listen {
        let mut actual = addr;
        for l in listeners.iter_mut() {
            let tcp = net::bind_tcp(actual).map_err(bind("tls", actual))?;
            actual = tcp.local_addr().map_err(setup("read a local address"))?;
            l.tls.push(tcp);
        }
        tls_bound.push(actual);
    }
    Ok(Bound {
        listeners,
        local: bound,
        tls_local: tls_bound,
    })
}

/// Starts the relay (see [`RelayBuilder::start`](super::RelayBuilder::start)).
pub(crate) fn start(mut parts: Parts) -> Result<Relay, StartError> {
    let own = check(&mut parts)?;
    let threads = parts.settings.worker_threads();
    let bound = bind_all(&parts.settings, threads)?;
    launch(prepare(parts, own, threads, Attach::Now)?, bound, None)
}

/// Starts the relay on what another process handed over (see
/// [`RelayBuilder::resume`](super::RelayBuilder::resume)).
pub(crate) fn resume(mut parts: Parts, from: &UnixStream) -> Result<Resumed, StartError> {
    let own = check(&mut parts)?;
    // What takes time is made before the old relay pauses: it says how many
    // workers it has, and waits until this side is prepared.
    let workers = upgrade::hello(from).map_err(StartError::HandOver)?;
    let mut named = Vec::new();
    let result = prepare(parts, own, workers, Attach::AfterTheGo).and_then(|prepared| {
        upgrade::prepared(from).map_err(StartError::HandOver)?;
        let mut handed = upgrade::receive(from).map_err(StartError::HandOver)?;
        named = std::mem::take(&mut handed.named);
        take(prepared, &mut handed, from)
    });
    if let Err(e) = &result {
        upgrade::refuse(from, &e.to_string());
    }
    let (relay, allocations) = result?;
    Ok(Resumed {
        relay,
        allocations,
        sockets: named,
    })
}

/// The relay on the listeners handed, its workers holding the images.
fn take(
    prepared: Prepared,
    handed: &mut Handed,
    from: &UnixStream,
) -> Result<(Relay, usize), StartError> {
    let settings = &prepared.settings;
    let listeners_of = |field: &'static str, want: &[SocketAddr], have: &[SocketAddr]| {
        if upgrade::same_listeners(want, have) {
            Ok(())
        } else {
            Err(StartError::Settings {
                field,
                problem: format!(
                    "{want:?} configured, {have:?} handed over: listeners change with a \
                     restart, not an upgrade"
                ),
            })
        }
    };
    listeners_of("listen", &settings.listen, &handed.local)?;
    #[cfg(feature = "tls")]
    listeners_of("tls_listen", &settings.tls_listen, &handed.tls_local)?;
    if handed.workers != prepared.threads {
        return Err(StartError::HandOver(HandOverError::Protocol(
            "the workers handed over are not as many as announced",
        )));
    }
    let bound = Bound {
        listeners: std::mem::take(&mut handed.listeners),
        local: handed.local.clone(),
        tls_local: handed.tls_local.clone(),
    };
    let images = std::mem::take(&mut handed.images);
    let mut relays = std::mem::take(&mut handed.relays);
    let mut taken = 0;
    #[cfg(feature = "xdp")]
    let (shared, xdp) = (prepared.shared.clone(), prepared.settings.xdp.clone());
    let mut hook = |workers: &mut [Worker]| -> Result<(), StartError> {
        for (i, (w, (image, relays))) in workers
            .iter_mut()
            .zip(images.iter().zip(relays.iter_mut()))
            .enumerate()
        {
            taken += w
                .take_image(image, relays)
                .map_err(|error| StartError::HandOver(HandOverError::Image { worker: i, error }))?;
        }
        upgrade::confirm(from).map_err(StartError::HandOver)?;
        // The old process detached its program before the go: this one's
        // takes over, with the routes of the channels taken already in.
        #[cfg(feature = "xdp")]
        if let Some(fast) = &shared.fast {
            let mut fast = fast.lock().unwrap_or_else(|e| e.into_inner());
            match fast.attach(&xdp) {
                Ok(()) => info!("kernel fast path on after the hand-over: {fast:?}"),
                Err(e) => {
                    warn!("kernel fast path off after the hand-over, relaying in userspace: {e}")
                }
            }
        }
        Ok(())
    };
    let relay = launch(prepared, bound, Some(&mut hook))?;
    let left: usize = relays.iter().map(|r| r.len()).sum();
    if left > 0 {
        warn!("{left} relay socket(s) handed over belong to no allocation: closed");
    }
    info!("resumed {taken} UDP allocation(s) handed over");
    Ok((relay, taken))
}

/// What runs between making the workers and starting their threads (a
/// resume reads the images there).
type BeforeRun<'a> = &'a mut dyn FnMut(&mut [Worker]) -> Result<(), StartError>;

/// What a start makes before it has its listeners: the shared state, the
/// kernel fast path, and the shards (their tables are the slow part).
pub(crate) struct Prepared {
    settings: Settings,
    front_parts: super::builder::FrontParts,
    shared: Arc<Shared>,
    events_rx: Option<std::sync::mpsc::Receiver<super::events::RelayEvent>>,
    capacity: Option<Capacity>,
    shards: Vec<Turn>,
    slots: usize,
    threads: usize,
}

/// When the kernel fast path attaches to its interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attach {
    /// At start.
    Now,
    /// Resuming: once the old process has detached its program (it does
    /// before its go); meanwhile the routes of the allocations taken go in.
    AfterTheGo,
}

/// Makes what `threads` workers need, before any listener.
fn prepare(
    parts: Parts,
    own: super::check::OwnAddresses,
    threads: usize,
    attach: Attach,
) -> Result<Prepared, StartError> {
    #[cfg(not(feature = "xdp"))]
    let _ = attach;
    let Parts {
        settings,
        credentials,
        events: event_queue,
        front: front_parts,
    } = parts;

    // Measured whether or not a total is set: the measure raises the soft
    // limit of open files (a total of 10,000 under a soft limit of 1,024
    // would fail from the thousandth allocation on).
    let measured = Capacity::measure(&settings, threads);
    let total = settings.total.unwrap_or(measured.total).max(1);
    match settings.total {
        None => info!("allocation total not set: {measured}"),
        Some(t) => {
            if let Some(why) = measured.short_of(t) {
                warn!("{why}");
            }
        }
    }
    let capacity = settings.total.is_none().then_some(measured);
    let (events_tx, events_rx) = if event_queue > 0 {
        let (tx, rx) = sync_channel(event_queue);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let rate_seed: [u8; 8] = random()?;
    let mut shared = Shared::new(
        settings.tcp,
        credentials,
        Quota::new(settings.per_user, total),
        threads,
        events_tx,
        u64::from_le_bytes(rate_seed),
    );
    shared.balancers = std::sync::RwLock::new(settings.proxy_protocol.clone());
    if own.len() > crate::server::policy::OWN_MAX {
        info!(
            "{} own address forms (peers may never be any of them)",
            own.len()
        );
    }
    shared.own = std::sync::RwLock::new(own);
    #[cfg(feature = "xdp")]
    if !settings.xdp.interfaces.is_empty() {
        let fast = match attach {
            Attach::Now => super::xdp::FastPath::start(&settings.xdp, &shared.clock),
            Attach::AfterTheGo => super::xdp::FastPath::load(&settings.xdp, &shared.clock),
        };
        match fast {
            Ok(fast) => {
                info!("kernel fast path on: {fast:?}");
                shared.kernel = Some(fast.view());
                shared.fast = Some(std::sync::Mutex::new(fast));
            }
            Err(e) => {
                warn!("kernel fast path off, relaying in userspace: {e}");
                shared.fast_error = Some(e.to_string());
            }
        }
    }
    let shared = Arc::new(shared);
    // Each shard may hold its share of the total with room for uneven hashing;
    // its table starts small and grows with the allocations it holds.
    let slots = (total.div_ceil(threads) * 5 / 4 + 64).min(total.max(64));
    let secret: [u8; 32] = random()?;
    let mut shards = Vec::new();
    for _ in 0..threads {
        let cfg = super::meters::for_shard(&settings.turn, threads);
        let first = vec![Slot::EMPTY; slots.min(FIRST_SLOTS)];
        let mut shard = Turn::with_tcp(cfg, first, secret).map_err(StartError::Config)?;
        // A ConnectionBind goes to the worker whose shard holds the connection.
        shard.set_shard(u8::try_from(shards.len()).unwrap_or(u8::MAX));
        shards.push(shard);
    }
    Ok(Prepared {
        settings,
        front_parts,
        shared,
        events_rx,
        capacity,
        shards,
        slots,
        threads,
    })
}

/// Starts the relay prepared on `bound` (one set of listeners per worker).
fn launch(
    prepared: Prepared,
    bound: Bound,
    before_run: Option<BeforeRun<'_>>,
) -> Result<Relay, StartError> {
    let Prepared {
        settings,
        front_parts,
        shared,
        events_rx,
        capacity,
        shards,
        slots,
        threads,
    } = prepared;
    #[cfg(not(feature = "tls"))]
    let super::builder::FrontParts {} = front_parts;
    let Bound {
        listeners,
        local,
        tls_local,
    } = bound;
    if listeners.len() != shards.len() {
        return Err(StartError::HandOver(HandOverError::Protocol(
            "listeners for another number of workers",
        )));
    }
    let flag = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for (i, (l, shard)) in listeners.into_iter().zip(shards).enumerate() {
        let w = Worker::new(
            i,
            l,
            (shard, slots),
            random()?,
            shared.clone(),
            flag.clone(),
        )
        .map_err(setup("create an event loop"))?;
        workers.push(w);
    }
    for ((w, h), t) in workers.iter().zip(&shared.handoffs).zip(&shared.transfers) {
        h.set_waker(w.waker());
        t.set_waker(w.waker());
    }
    let wakers = workers.iter().map(Worker::waker).collect();
    #[cfg(feature = "tls")]
    let mut front_handle = None;
    #[cfg(feature = "tls")]
    let tls_thread = match (front_parts.tls, tls_local.is_empty()) {
        (Some(tls), false) => {
            let inboxes = workers.iter().map(Worker::inbox).collect();
            let front = Arc::new(std::sync::RwLock::new(super::front::Front {
                tls,
                on_http: front_parts.on_http,
            }));
            let tls_threads = match settings.tcp.tls_threads {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                n => n,
            };
            let (h, handles) = super::front::spawn(
                tls_threads,
                super::front::Common {
                    front: front.clone(),
                    inboxes,
                    shutdown: flag.clone(),
                    sources: shared.sources.clone(),
                    rate: shared.tls_rate.clone(),
                    clock: shared.clock,
                    refusals: shared.tls_refusals.clone(),
                },
            )
            .map_err(setup("start the TLS threads"))?;
            front_handle = Some(front);
            for w in &mut workers {
                w.set_handshakes(h.clone());
            }
            Some((h, handles))
        }
        _ => None,
    };
    if let Some(hook) = before_run {
        hook(&mut workers)?;
    }
    let mut handles = Vec::new();
    for (i, w) in workers.into_iter().enumerate() {
        let handle = std::thread::Builder::new()
            .name(format!("turn-worker-{i}"))
            .spawn(move || w.run())
            .map_err(setup("spawn a worker thread"))?;
        handles.push(handle);
    }
    #[cfg(feature = "tls")]
    let tls_handshakes = tls_thread.map(|(h, tls_handles)| {
        handles.extend(tls_handles);
        h
    });
    info!(
        "TURN on {} address(es) with {threads} worker(s) of up to {slots} allocations each",
        local.len() + tls_local.len()
    );
    let running = Settings {
        listen: local.clone(),
        tls_listen: tls_local.clone(),
        ..settings
    };
    Ok(Relay {
        local,
        tls_local,
        shared,
        stop: Stopper {
            flag,
            wakers,
            #[cfg(feature = "tls")]
            tls: tls_handshakes,
        },
        workers: handles,
        events: Mutex::new(events_rx),
        threads,
        capacity,
        settings: Mutex::new(running),
        #[cfg(feature = "tls")]
        front: front_handle,
    })
}
