//! Upgrading without dropping a call: a running relay hands its UDP
//! allocations and its listening sockets to another process (a new binary),
//! which goes on relaying them with the same relayed addresses.
//!
//! The old process calls [`Relay::hand_over`] with a connected Unix socket;
//! the new one builds its relay as usual and calls
//! [`RelayBuilder::resume`](super::RelayBuilder::resume) with the other end,
//! in place of `start`. What happens:
//!
//! 1. The old relay says how many workers it has; the new one makes as many
//!    (their tables are the slow part of a start) and says it is prepared,
//!    while the old one still serves.
//! 2. The old relay's workers stop at a consistent point: each stops reading
//!    its UDP listeners and the relay sockets of its UDP allocations and
//!    stops accepting connections, and writes its shard's state image
//!    ([`Server::write_image`](crate::server::Server::write_image)).
//!    Datagrams that arrive meanwhile wait in the same kernel sockets, and
//!    connections in the same listen queues.
//! 3. The images and every UDP, TCP and TLS listener and relay socket (plus
//!    sockets of the embedder's, by name: an admin port, a redirect port) go
//!    to the new process: a manifest, then the descriptors in batches of
//!    `SCM_RIGHTS`.
//! 4. The new process takes them: the same number of workers on the same
//!    listeners (a client's SO_REUSEPORT steering does not change), each
//!    reading its image with the relay sockets it inherited. Its listeners
//!    must be the ones it was handed (they change with a restart, not an
//!    upgrade). It answers ready, or why not.
//! 5. On ready, the old relay lets go of the UDP allocations (no usage record
//!    ends them: they live on) and of the listeners, tells the new one to run,
//!    and goes on serving its TURN-over-TCP/TLS connections and whatever its
//!    embedder holds (web proxy tunnels) until they end, as a drain: their
//!    TLS state lives in this process. Every new connection goes to the new
//!    process, on the same listening sockets: none is refused.
//! 6. On a refusal, a timeout, or a new process that dies, the old relay's
//!    workers take their sockets back and serve on as if nothing happened.
//!
//! The kernel fast path (feature `xdp`) goes on too: the new process loads
//! its program and makes its maps before the pause, installs the routes of
//! the channels it takes while reading the images, and attaches right after
//! the go; the old process detaches its own program just before the go
//! (between the two, userspace relays on the sockets both share, so nothing
//! is lost).
//!
//! What does not move: TCP and TLS allocations and connections (they end in
//! the old process), ports held by an EVEN-PORT reservation (a later Allocate
//! naming the token gets 508 and allocates anew), and what the old process's
//! kernel program counted for the allocations that moved (their usage
//! records count from the hand-over on for the kernel's share).
//!
//! ```
//! use std::net::SocketAddr;
//! use std::os::unix::net::UnixStream;
//! use turn_core::adapters::std::Relay;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // In one program, for the example; in life, two processes and a socket
//! // the old one listens on (or passes to the new one it starts).
//! let (old_end, new_end) = UnixStream::pair()?;
//! let listen: SocketAddr = "127.0.0.1:0".parse()?;
//! let old = Relay::builder().listen(listen).user("a", "b").start()?;
//! let new = std::thread::spawn(move || {
//!     // Port 0 takes the port handed over.
//!     Relay::builder().listen(listen).user("a", "b").resume(&new_end)
//! });
//! let handed = old.hand_over(&old_end, &[])?;
//! let resumed = new.join().expect("resumed")?;
//! assert_eq!(resumed.allocations, handed.allocations);
//! assert_eq!(resumed.relay.local_addrs(), old.local_addrs());
//! // The old relay now serves its stream clients to their end.
//! old.shutdown();
//! old.join();
//! # Ok(())
//! # }
//! ```

pub(crate) mod control;
mod wire;

use crate::adapters::std::prelude::*;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use log::{info, warn};

use super::handle::Relay;
use super::worker::{Listeners, UdpListener};
use control::{Parcel, Step};
use wire::{Entry, Kind, Manifest, Place};

/// How long each side waits for the other (the workers to pause, the new
/// process to answer, the old one to say go).
pub const HAND_OVER_WITHIN: Duration = Duration::from_secs(10);

/// Why a hand-over did not happen. On the old side the relay serves on,
/// unchanged; on the new side nothing was started.
#[derive(Debug)]
#[non_exhaustive]
pub enum HandOverError {
    /// The Unix socket between the processes failed (`what` was being done).
    Io {
        /// What was being done.
        what: &'static str,
        /// The cause.
        source: io::Error,
    },
    /// The other side sent something that is not a hand-over (what, in words).
    Protocol(&'static str),
    /// A hand-over of a format version this build does not read.
    Version(u16),
    /// A worker's state image was refused (by the new process).
    Image {
        /// The worker.
        worker: usize,
        /// Why.
        error: crate::server::ImageError,
    },
    /// The new process refused, and said why.
    Refused(String),
    /// A worker could not pause (or write its parcel), and said why.
    Worker(String),
    /// The workers did not pause in time.
    TimedOut,
    /// The relay is handing over already, or has handed over.
    Busy,
}

impl fmt::Display for HandOverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandOverError::Io { what, source } => write!(f, "cannot {what}: {source}"),
            HandOverError::Protocol(what) => write!(f, "not a relay hand-over: {what}"),
            HandOverError::Version(v) => write!(
                f,
                "a hand-over of format version {v}, this build reads version {}",
                wire::VERSION
            ),
            HandOverError::Image { worker, error } => {
                write!(f, "worker {worker}'s state refused: {error}")
            }
            HandOverError::Refused(why) => write!(f, "the new process refused: {why}"),
            HandOverError::Worker(why) => write!(f, "a worker could not hand over: {why}"),
            HandOverError::TimedOut => write!(
                f,
                "the workers did not pause within {} s",
                HAND_OVER_WITHIN.as_secs()
            ),
            HandOverError::Busy => f.write_str("the relay is handing over, or has handed over"),
        }
    }
}

impl std::error::Error for HandOverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandOverError::Io { source, .. } => Some(source),
            HandOverError::Image { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// What the old relay handed over.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HandedOver {
    /// UDP allocations now served by the new process.
    pub allocations: usize,
    /// Descriptors passed (listeners, relay sockets, the embedder's).
    pub sockets: usize,
    /// How long UDP went unread: from the workers' pause to the go given to
    /// the new process (datagrams waited in the kernel meanwhile).
    pub paused: Duration,
}

/// A relay resumed from another process's hand-over.
#[derive(Debug)]
#[non_exhaustive]
pub struct Resumed {
    /// The relay, running.
    pub relay: Relay,
    /// The allocations it took over.
    pub allocations: usize,
    /// The embedder's sockets, by the names the old process gave them.
    pub sockets: Vec<(String, OwnedFd)>,
}

impl Relay {
    /// Hands this relay's UDP allocations and listening sockets (and the
    /// embedder's sockets in `named`) to the process at the other end of
    /// `to`, which calls [`RelayBuilder::resume`](super::RelayBuilder::resume)
    /// (see [`upgrade`](self)). On success this relay takes no new client and
    /// serves its TCP and TLS clients until they end (then stop it as usual);
    /// on failure it serves on as before and the error says why.
    pub fn hand_over(
        &self,
        to: &UnixStream,
        named: &[(&str, BorrowedFd<'_>)],
    ) -> Result<HandedOver, HandOverError> {
        let control = &self.shared.handover;
        if !control.claim() {
            return Err(HandOverError::Busy);
        }
        // The new process prepares its workers while these still serve.
        let announced = to
            .set_read_timeout(Some(HAND_OVER_WITHIN))
            .map_err(|source| HandOverError::Io {
                what: "set a timeout on the hand-over socket",
                source,
            })
            .and_then(|()| {
                let workers = u16::try_from(self.threads)
                    .map_err(|_| HandOverError::Protocol("more workers than the format holds"))?;
                wire::hello(to, workers)?;
                wire::read_answer(to, wire::PREPARED)
            });
        if let Err(e) = announced {
            control.release(false);
            return Err(e);
        }
        let started = Instant::now();
        // Timed until the go: the new process reads from then on.
        let result = self
            .hand_over_paused(to, named)
            .map(|counts| (counts, started.elapsed()));
        let step = if result.is_ok() {
            Step::Commit
        } else {
            Step::Run
        };
        if control
            .order(step, &self.stop.wakers, HAND_OVER_WITHIN)
            .is_err()
        {
            warn!("hand-over: a worker did not answer the order to {step:?}");
        }
        control.release(result.is_ok());
        let ((allocations, sockets), paused) = result?;
        let handed = HandedOver {
            allocations,
            sockets,
            paused,
        };
        info!(
            "handed over {} UDP allocation(s) and {} socket(s) to the new process; UDP paused \
             {} ms; serving TCP and TLS clients to their end",
            handed.allocations,
            handed.sockets,
            handed.paused.as_millis()
        );
        Ok(handed)
    }

    /// Pauses the workers and sends what they left; (allocations, sockets).
    fn hand_over_paused(
        &self,
        to: &UnixStream,
        named: &[(&str, BorrowedFd<'_>)],
    ) -> Result<(usize, usize), HandOverError> {
        let parcels = self
            .shared
            .handover
            .order(Step::Pause, &self.stop.wakers, HAND_OVER_WITHIN)
            .map_err(|()| HandOverError::TimedOut)?;
        let mut manifest = Manifest {
            workers: u16::try_from(parcels.len())
                .map_err(|_| HandOverError::Protocol("more workers than the format holds"))?,
            entries: Vec::new(),
            images: Vec::new(),
        };
        let mut fds: Vec<OwnedFd> = Vec::new();
        let mut allocations = 0;
        for (worker, parcel) in parcels.into_iter().enumerate() {
            let parcel = parcel
                .ok_or_else(|| HandOverError::Worker(format!("worker {worker} left nothing")))?
                .map_err(HandOverError::Worker)?;
            allocations += parcel.allocations;
            let Parcel {
                image,
                udp,
                tcp,
                tls,
                relays,
                ..
            } = parcel;
            manifest.images.push(image);
            for (kind, socks) in [
                (Kind::Udp, udp),
                (Kind::Tcp, tcp),
                (Kind::Tls, tls),
                (Kind::Relay, relays),
            ] {
                for (addr, fd) in socks {
                    manifest.entries.push(Entry {
                        kind,
                        worker: worker as u16,
                        place: Place::Addr(addr),
                    });
                    fds.push(fd);
                }
            }
        }
        let mut borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
        for (name, fd) in named {
            manifest.entries.push(Entry {
                kind: Kind::Named,
                worker: 0,
                place: Place::Name((*name).to_string()),
            });
            borrowed.push(*fd);
        }
        wire::send(to, &manifest, &borrowed)?;
        wire::read_answer(to, wire::READY)?;
        // The new process attaches its kernel fast path once it has the go:
        // this one's program leaves the interfaces first (meanwhile userspace
        // relays, on the sockets both share).
        #[cfg(feature = "xdp")]
        self.detach_fast_path();
        if let Err(source) = wire::go(to) {
            #[cfg(feature = "xdp")]
            self.reattach_fast_path();
            return Err(HandOverError::Io {
                what: "tell the new process to run",
                source,
            });
        }
        Ok((allocations, borrowed.len()))
    }

    /// Whether this relay has handed its allocations and listeners over
    /// ([`Relay::hand_over`]): it then serves only the TCP and TLS clients it
    /// had.
    pub fn handed_over(&self) -> bool {
        self.shared.handover.handed()
    }
}

/// What the new process received, sorted per worker.
pub(crate) struct Handed {
    pub(crate) workers: usize,
    pub(crate) listeners: Vec<Listeners>,
    pub(crate) local: Vec<SocketAddr>,
    pub(crate) tls_local: Vec<SocketAddr>,
    pub(crate) images: Vec<Vec<u8>>,
    pub(crate) relays: Vec<HashMap<SocketAddr, std::net::UdpSocket>>,
    pub(crate) named: Vec<(String, OwnedFd)>,
}

fn setup(what: &'static str) -> impl FnOnce(io::Error) -> HandOverError {
    move |source| HandOverError::Io { what, source }
}

/// The old process's announcement: how many workers it hands over.
pub(crate) fn hello(from: &UnixStream) -> Result<usize, HandOverError> {
    from.set_read_timeout(Some(HAND_OVER_WITHIN))
        .map_err(setup("set a timeout on the hand-over socket"))?;
    wire::read_hello(from).map(usize::from)
}

/// The new process is prepared: the old one may pause.
pub(crate) fn prepared(to: &UnixStream) -> Result<(), HandOverError> {
    wire::answer(to, wire::PREPARED).map_err(setup("answer the old process"))
}

/// Receives a hand-over from `from` (see [`upgrade`](self)).
pub(crate) fn receive(from: &UnixStream) -> Result<Handed, HandOverError> {
    let (manifest, fds) = wire::receive(from)?;
    let workers = usize::from(manifest.workers);
    let mut handed = Handed {
        workers,
        listeners: (0..workers).map(|_| Listeners::default()).collect(),
        local: Vec::new(),
        tls_local: Vec::new(),
        images: manifest.images,
        relays: (0..workers).map(|_| HashMap::new()).collect(),
        named: Vec::new(),
    };
    for (entry, fd) in manifest.entries.into_iter().zip(fds) {
        let worker = usize::from(entry.worker);
        let addr = match entry.place {
            Place::Name(name) => {
                handed.named.push((name, fd));
                continue;
            }
            Place::Addr(a) => a,
        };
        let Some(l) = handed.listeners.get_mut(worker) else {
            return Err(HandOverError::Protocol("a descriptor of no worker"));
        };
        match entry.kind {
            Kind::Udp => {
                let sock = mio::net::UdpSocket::from_std(std::net::UdpSocket::from(fd));
                let state = super::net::batched(&sock, super::net::Reads::Destination)
                    .map_err(setup("set up batched UDP receive"))?;
                if worker == 0 {
                    handed.local.push(addr);
                }
                l.udp.push(UdpListener {
                    sock,
                    state,
                    local: addr,
                });
            }
            Kind::Tcp => l.tcp.push(mio::net::TcpListener::from_std(
                std::net::TcpListener::from(fd),
            )),
            Kind::Tls => {
                if worker == 0 {
                    handed.tls_local.push(addr);
                }
                #[cfg(feature = "tls")]
                l.tls.push(mio::net::TcpListener::from_std(
                    std::net::TcpListener::from(fd),
                ));
                #[cfg(not(feature = "tls"))]
                return Err(HandOverError::Refused(
                    "TLS listeners handed to a build without feature `tls`".into(),
                ));
            }
            Kind::Relay => {
                let sock = std::net::UdpSocket::from(fd);
                if let Some(r) = handed.relays.get_mut(worker) {
                    r.insert(addr, sock);
                }
            }
            Kind::Named => {}
        }
    }
    // Every worker listens on the same addresses.
    for l in &handed.listeners {
        if l.udp.len() != handed.local.len() || l.tcp.len() != handed.local.len() {
            return Err(HandOverError::Protocol("workers with different listeners"));
        }
    }
    Ok(handed)
}

/// Whether the listeners configured (`want`) are those handed (`have`): in
/// the same order, each the same address or, where the configuration says
/// port 0, the same IP.
pub(crate) fn same_listeners(want: &[SocketAddr], have: &[SocketAddr]) -> bool {
    want.len() == have.len()
        && want
            .iter()
            .zip(have)
            .all(|(w, h)| w == h || (w.port() == 0 && w.ip() == h.ip()))
}

/// The new process's answer: ready, then the old one's go; or why not.
pub(crate) fn confirm(to: &UnixStream) -> Result<(), HandOverError> {
    wire::answer(to, wire::READY).map_err(setup("answer the old process"))?;
    wire::await_go(to)
}

/// The new process refuses (the old one serves on).
pub(crate) fn refuse(to: &UnixStream, why: &str) {
    let _ = wire::refuse(to, why);
}
