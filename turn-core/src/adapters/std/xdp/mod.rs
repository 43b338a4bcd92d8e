//! The kernel fast path (feature `xdp`): `relay.bpf.c`, built from source by the
//! build script, loaded with aya and attached to the interfaces the settings name.
//! The TURN server decides; this module writes its decisions into the program's
//! maps: a route per bound channel of a UDP client (from [`Host::route`]), until
//! the earliest end of the channel, its permission and its relayed address (the
//! program stops at that moment by itself), removed with its relay socket. It
//! reads back what the kernel relayed.
//!
//! [`Host::route`]: crate::server::Host::route

use crate::adapters::std::prelude::*;

use std::collections::HashMap as StdHashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use aya::maps::{HashMap, MapData, PerCpuArray};
use aya::programs::xdp::XdpLinkId;
use aya::programs::{Xdp, XdpFlags};
use aya::{Ebpf, EbpfLoader};

use crate::server::{ChannelRoute, RelayHandle};

use super::clock::Clock;

mod maps;
mod view;

/// The program, built by `build.rs`.
/// (Aligned: the ELF parser reads it in place.)
static PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/relay.bpf.o"));

use maps::{Key, Route, counters, from_peer_key, route, socket_addr, to_peer_key};
pub(crate) use view::KernelView;

/// How to attach the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpMode {
    /// The driver's native XDP, else the generic one.
    #[default]
    Auto,
    /// The driver's native XDP only.
    Native,
    /// Generic XDP (in the kernel's receive path, after the driver): works on
    /// every interface, slower.
    Generic,
}

/// The kernel fast path's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpSettings {
    /// Interfaces to attach to: those clients and peers reach the relay on.
    /// Empty: no fast path.
    pub interfaces: Vec<String>,
    /// How to attach.
    pub mode: XdpMode,
    /// Most routes (bound channels) in each direction.
    pub max_routes: u32,
}

impl Default for XdpSettings {
    fn default() -> Self {
        XdpSettings {
            interfaces: Vec::new(),
            mode: XdpMode::Auto,
            max_routes: 65536,
        }
    }
}

/// What the kernel fast path did, summed over CPUs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Why the fast path is off, when it was asked for and could not start (the
    /// relay then relays everything in userspace).
    pub error: Option<String>,
    /// Interfaces the program is attached to, and how ("native" or "generic").
    pub attached: Vec<(String, &'static str)>,
    /// Routes installed (bound channels of UDP clients).
    pub routes: usize,
    /// ChannelData relayed to peers in the kernel.
    pub to_peer_packets: u64,
    /// Their payload bytes.
    pub to_peer_bytes: u64,
    /// Peer datagrams relayed to clients in the kernel.
    pub from_peer_packets: u64,
    /// Their payload bytes.
    pub from_peer_bytes: u64,
    /// Packets on a route past its end, left to userspace.
    pub expired: u64,
    /// ChannelData on a route whose length field is not its payload (padded or
    /// lying), left to userspace.
    pub bad_length: u64,
    /// Packets with no FIB route, neighbour or MTU for them yet, left to userspace.
    pub no_fib: u64,
    /// IPv4 datagrams without checksum bound for IPv6, left to userspace.
    pub no_checksum: u64,
    /// Frames whose way back was not learned: the host's routing toward their
    /// sender disagrees with the interface or the MAC they came from (spoofed,
    /// or a route that changed).
    pub not_learned: u64,
}

/// Why the fast path is off.
#[derive(Debug)]
pub(crate) struct XdpError(String);

impl fmt::Display for XdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(what: &str, e: impl fmt::Display) -> XdpError {
    XdpError(format!("{what}: {e}"))
}

/// The loaded, attached program and its maps.
pub(crate) struct FastPath {
    /// Holds the program (and its attachments) alive.
    ebpf: Ebpf,
    links: Vec<XdpLinkId>,
    to_peer: HashMap<MapData, Key, Route>,
    from_peer: HashMap<MapData, Key, Route>,
    /// Installed keys by worker and relay socket, to remove with the socket.
    by_relay: StdHashMap<(usize, RelayHandle), Vec<(Key, Key)>>,
    /// CLOCK_MONOTONIC, in ns, at the relay clock's origin.
    origin_ns: u64,
    /// What the stats read, kept up to date here.
    view: Arc<KernelView>,
}

impl fmt::Debug for FastPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FastPath")
            .field("attached", &self.view.attached)
            .finish_non_exhaustive()
    }
}

/// CLOCK_MONOTONIC now, in ns (the clock the program reads, coarsely: a tick
/// late at most, with `bpf_ktime_get_coarse_ns`).
fn monotonic_ns() -> Result<u64, XdpError> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_err(|e| err("read CLOCK_MONOTONIC", e))?;
    let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
    let nanos = u64::try_from(t.tv_nsec()).unwrap_or(0);
    Ok(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

impl FastPath {
    /// Loads the program and attaches it to every interface of `settings`; an
    /// interface that refuses stops the start (the relay then runs without).
    pub(crate) fn start(settings: &XdpSettings, clock: &Clock) -> Result<FastPath, XdpError> {
        let mut fast = FastPath::load(settings, clock)?;
        fast.attach(settings)?;
        Ok(fast)
    }

    /// Loads and verifies the program and makes its maps, attached nowhere
    /// yet: a relay resuming from another process installs the routes of the
    /// allocations it takes first, and attaches once the other process has
    /// detached its own program.
    pub(crate) fn load(settings: &XdpSettings, clock: &Clock) -> Result<FastPath, XdpError> {
        let origin_ns = monotonic_ns()?.saturating_sub(clock.elapsed_ns());
        let mut ebpf = EbpfLoader::new()
            .set_max_entries("to_peer", settings.max_routes)
            .set_max_entries("from_peer", settings.max_routes)
            .load(PROGRAM)
            .map_err(|e| err("load the XDP program", e))?;
        {
            let program: &mut Xdp = ebpf
                .program_mut("turn_relay")
                .ok_or_else(|| XdpError("the object has no turn_relay program".into()))?
                .try_into()
                .map_err(|e| err("the XDP program", e))?;
            program
                .load()
                .map_err(|e| err("verify the XDP program (the kernel refused it)", e))?;
        }
        let map = |ebpf: &mut Ebpf, name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| XdpError(format!("the object has no {name} map")))
        };
        let to_peer =
            HashMap::try_from(map(&mut ebpf, "to_peer")?).map_err(|e| err("the to_peer map", e))?;
        let from_peer = HashMap::try_from(map(&mut ebpf, "from_peer")?)
            .map_err(|e| err("the from_peer map", e))?;
        let stats: PerCpuArray<MapData, u64> =
            PerCpuArray::try_from(map(&mut ebpf, "stats")?).map_err(|e| err("the stats map", e))?;
        let view = Arc::new(KernelView::open(&to_peer, &from_peer, &stats, Vec::new())?);
        Ok(FastPath {
            ebpf,
            links: Vec::new(),
            to_peer,
            from_peer,
            by_relay: StdHashMap::new(),
            origin_ns,
            view,
        })
    }

    /// Attaches the loaded program to every interface of `settings` (after a
    /// [`detach`](Self::detach), again); an interface that refuses detaches
    /// what was attached and says why.
    pub(crate) fn attach(&mut self, settings: &XdpSettings) -> Result<(), XdpError> {
        let mut attached = Vec::new();
        let mut links = Vec::new();
        let result = (|| {
            let program: &mut Xdp = self
                .ebpf
                .program_mut("turn_relay")
                .ok_or_else(|| XdpError("the object has no turn_relay program".into()))?
                .try_into()
                .map_err(|e| err("the XDP program", e))?;
            for iface in &settings.interfaces {
                let native = match settings.mode {
                    XdpMode::Generic => None,
                    _ => Some(program.attach(iface, XdpFlags::DRV_MODE)),
                };
                let (link, mode) = match (native, settings.mode) {
                    (Some(Ok(link)), _) => (link, "native"),
                    (Some(Err(e)), XdpMode::Native) => {
                        return Err(err(&format!("attach native XDP to {iface}"), e));
                    }
                    _ => (
                        program
                            .attach(iface, XdpFlags::SKB_MODE)
                            .map_err(|e| err(&format!("attach XDP to {iface}"), e))?,
                        "generic",
                    ),
                };
                links.push(link);
                attached.push((iface.clone(), mode));
            }
            Ok(())
        })();
        self.links.extend(links);
        if let Err(e) = result {
            self.detach();
            return Err(e);
        }
        *self.view.attached.lock().unwrap_or_else(|e| e.into_inner()) = attached;
        Ok(())
    }

    /// What the stats read (never this path's lock).
    pub(crate) fn view(&self) -> Arc<KernelView> {
        self.view.clone()
    }

    /// Detaches the program from every interface: from then on userspace relays
    /// everything (the routes stay, unused).
    pub(crate) fn detach(&mut self) {
        if let Some(program) = self.ebpf.program_mut("turn_relay")
            && let Ok(program) = <&mut Xdp>::try_from(program)
        {
            for link in self.links.drain(..) {
                let _ = program.detach(link);
            }
        }
        self.view
            .attached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Installs or updates the two directions of `r` (announced by worker
    /// `worker`'s shard).
    pub(crate) fn install(&mut self, worker: usize, r: &ChannelRoute) {
        let until_ns = self
            .origin_ns
            .saturating_add(r.until.as_millis().saturating_mul(1_000_000));
        let up = to_peer_key(r.tuple.client, r.tuple.server, r.channel);
        let down = from_peer_key(r.peer, r.relay);
        let old_up = self.to_peer.get(&up, 0).ok();
        let old_down = self.from_peer.get(&down, 0).ok();
        let ok_up = self
            .to_peer
            .insert(up, route(r.relay, r.peer, 0, until_ns, old_up), 0)
            .is_ok();
        let ok_down = self
            .from_peer
            .insert(
                down,
                route(
                    r.tuple.server,
                    r.tuple.client,
                    r.channel,
                    until_ns,
                    old_down,
                ),
                0,
            )
            .is_ok();
        if !(ok_up && ok_down) {
            // A full map: this channel stays in userspace.
            let _ = self.to_peer.remove(&up);
            let _ = self.from_peer.remove(&down);
            return;
        }
        let keys = self.by_relay.entry((worker, r.handle)).or_default();
        if !keys.contains(&(up, down)) {
            keys.push((up, down));
            self.view.routes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Removes every route of relay socket `handle` of worker `worker`; what
    /// they relayed in the kernel, by client (its address and listener):
    /// packets and bytes to peers, then from peers.
    pub(crate) fn remove_relay(
        &mut self,
        worker: usize,
        handle: RelayHandle,
    ) -> Vec<((SocketAddr, SocketAddr), [u64; 4])> {
        let mut relayed: Vec<((SocketAddr, SocketAddr), [u64; 4])> = Vec::new();
        if let Some(keys) = self.by_relay.remove(&(worker, handle)) {
            self.view.routes.fetch_sub(keys.len(), Ordering::Relaxed);
            for (up, down) in keys {
                let client = (
                    socket_addr(&up, 0, 32, up[38]),
                    socket_addr(&up, 16, 34, up[38]),
                );
                let (to_p, to_b) = self.to_peer.get(&up, 0).map_or((0, 0), |r| counters(&r));
                let (from_p, from_b) = self
                    .from_peer
                    .get(&down, 0)
                    .map_or((0, 0), |r| counters(&r));
                match relayed.iter_mut().find(|(c, _)| *c == client) {
                    Some((_, n)) => {
                        n[0] += to_p;
                        n[1] += to_b;
                        n[2] += from_p;
                        n[3] += from_b;
                    }
                    None => relayed.push((client, [to_p, to_b, from_p, from_b])),
                }
                let _ = self.to_peer.remove(&up);
                let _ = self.from_peer.remove(&down);
            }
        }
        relayed
    }
}
