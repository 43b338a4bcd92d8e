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
use std::net::{IpAddr, SocketAddr};

use aya::maps::{HashMap, MapData, PerCpuArray};
use aya::programs::xdp::XdpLinkId;
use aya::programs::{Xdp, XdpFlags};
use aya::{Ebpf, EbpfLoader};

use crate::server::{ChannelRoute, RelayHandle};

use super::clock::Clock;

/// The program, built by `build.rs`.
/// (Aligned: the ELF parser reads it in place.)
static PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/relay.bpf.o"));

const KEY: usize = 40;
const ROUTE: usize = 64;
type Key = [u8; KEY];
type Route = [u8; ROUTE];

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
    stats: PerCpuArray<MapData, u64>,
    /// Installed keys by worker and relay socket, to remove with the socket.
    by_relay: StdHashMap<(usize, RelayHandle), Vec<(Key, Key)>>,
    /// CLOCK_MONOTONIC, in ns, at the relay clock's origin.
    origin_ns: u64,
    attached: Vec<(String, &'static str)>,
}

impl fmt::Debug for FastPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FastPath")
            .field("attached", &self.attached)
            .finish_non_exhaustive()
    }
}

/// CLOCK_MONOTONIC now, in ns (the clock of `bpf_ktime_get_ns`).
fn monotonic_ns() -> Result<u64, XdpError> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_err(|e| err("read CLOCK_MONOTONIC", e))?;
    let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
    let nanos = u64::try_from(t.tv_nsec()).unwrap_or(0);
    Ok(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

/// An address in the program's form: 16 bytes (IPv4 in the first 4) and its family.
fn addr(ip: IpAddr) -> ([u8; 16], u8) {
    match ip {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (b, 4)
        }
        IpAddr::V6(a) => (a.octets(), 6),
    }
}

/// The program's `to_peer_key`: a client's ChannelData at a listener.
fn to_peer_key(client: SocketAddr, server: SocketAddr, channel: u16) -> Key {
    let (c, family) = addr(client.ip());
    let (s, _) = addr(server.ip());
    let mut k = [0u8; KEY];
    k[..16].copy_from_slice(&c);
    k[16..32].copy_from_slice(&s);
    k[32..34].copy_from_slice(&client.port().to_be_bytes());
    k[34..36].copy_from_slice(&server.port().to_be_bytes());
    k[36..38].copy_from_slice(&channel.to_be_bytes());
    k[38] = family;
    k
}

/// The program's `from_peer_key`: a peer's datagram at a relay address.
fn from_peer_key(peer: SocketAddr, relay: SocketAddr) -> Key {
    let (p, family) = addr(peer.ip());
    let (r, _) = addr(relay.ip());
    let mut k = [0u8; KEY];
    k[..16].copy_from_slice(&p);
    k[16..32].copy_from_slice(&r);
    k[32..34].copy_from_slice(&peer.port().to_be_bytes());
    k[34..36].copy_from_slice(&relay.port().to_be_bytes());
    k[36] = family;
    k
}

/// The program's `route`, with the counters of `old` kept.
fn route(
    src: SocketAddr,
    dst: SocketAddr,
    channel: u16,
    until_ns: u64,
    old: Option<Route>,
) -> Route {
    let (s, family) = addr(src.ip());
    let (d, _) = addr(dst.ip());
    let mut r = old.unwrap_or([0u8; ROUTE]);
    r[..16].copy_from_slice(&s);
    r[16..32].copy_from_slice(&d);
    r[32..34].copy_from_slice(&src.port().to_be_bytes());
    r[34..36].copy_from_slice(&dst.port().to_be_bytes());
    r[36..38].copy_from_slice(&channel.to_be_bytes());
    r[38] = family;
    r[39] = 0;
    r[40..48].copy_from_slice(&until_ns.to_ne_bytes());
    r
}

/// `N` bytes of `b` at `at` (zeros past its end).
fn bytes<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut o = [0u8; N];
    if let Some(src) = b.get(at..at + N) {
        o.copy_from_slice(src);
    }
    o
}

fn counters(r: &Route) -> (u64, u64) {
    (
        u64::from_ne_bytes(bytes(r, 48)),
        u64::from_ne_bytes(bytes(r, 56)),
    )
}

/// The address (and port) at `at` of a key or route, in `family`.
fn socket_addr(b: &[u8], at: usize, port_at: usize, family: u8) -> SocketAddr {
    let ip = if family == 4 {
        IpAddr::from(bytes::<4>(b, at))
    } else {
        IpAddr::from(bytes::<16>(b, at))
    };
    SocketAddr::new(ip, u16::from_be_bytes(bytes(b, port_at)))
}

impl FastPath {
    /// Loads the program and attaches it to every interface of `settings`; an
    /// interface that refuses stops the start (the relay then runs without).
    pub(crate) fn start(settings: &XdpSettings, clock: &Clock) -> Result<FastPath, XdpError> {
        let origin_ns = monotonic_ns()?.saturating_sub(clock.elapsed_ns());
        let mut ebpf = EbpfLoader::new()
            .set_max_entries("to_peer", settings.max_routes)
            .set_max_entries("from_peer", settings.max_routes)
            .load(PROGRAM)
            .map_err(|e| err("load the XDP program", e))?;
        let mut attached = Vec::new();
        let mut links = Vec::new();
        {
            let program: &mut Xdp = ebpf
                .program_mut("turn_relay")
                .ok_or_else(|| XdpError("the object has no turn_relay program".into()))?
                .try_into()
                .map_err(|e| err("the XDP program", e))?;
            program
                .load()
                .map_err(|e| err("verify the XDP program (the kernel refused it)", e))?;
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
        }
        let map = |ebpf: &mut Ebpf, name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| XdpError(format!("the object has no {name} map")))
        };
        let to_peer =
            HashMap::try_from(map(&mut ebpf, "to_peer")?).map_err(|e| err("the to_peer map", e))?;
        let from_peer = HashMap::try_from(map(&mut ebpf, "from_peer")?)
            .map_err(|e| err("the from_peer map", e))?;
        let stats =
            PerCpuArray::try_from(map(&mut ebpf, "stats")?).map_err(|e| err("the stats map", e))?;
        Ok(FastPath {
            ebpf,
            links,
            to_peer,
            from_peer,
            stats,
            by_relay: StdHashMap::new(),
            origin_ns,
            attached,
        })
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
        self.attached.clear();
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
        }
    }

    /// Removes every route of relay socket `handle` of worker `worker`.
    pub(crate) fn remove_relay(&mut self, worker: usize, handle: RelayHandle) {
        if let Some(keys) = self.by_relay.remove(&(worker, handle)) {
            for (up, down) in keys {
                let _ = self.to_peer.remove(&up);
                let _ = self.from_peer.remove(&down);
            }
        }
    }

    /// The counters, summed over CPUs.
    pub(crate) fn stats(&self) -> KernelStats {
        let total = |i: u32| {
            self.stats
                .get(&i, 0)
                .map_or(0, |v| v.iter().copied().fold(0u64, u64::wrapping_add))
        };
        KernelStats {
            error: None,
            attached: self.attached.clone(),
            routes: self.by_relay.values().map(Vec::len).sum(),
            to_peer_packets: total(0),
            to_peer_bytes: total(1),
            from_peer_packets: total(2),
            from_peer_bytes: total(3),
            expired: total(4),
            bad_length: total(5),
            no_fib: total(6),
            no_checksum: total(7),
        }
    }

    /// What each client relayed in the kernel: (client, listener) and its
    /// packets and bytes to peers and from peers.
    pub(crate) fn per_client(&self) -> StdHashMap<(SocketAddr, SocketAddr), [u64; 4]> {
        let mut out: StdHashMap<(SocketAddr, SocketAddr), [u64; 4]> = StdHashMap::new();
        for (k, v) in self.to_peer.iter().flatten() {
            let family = k[38];
            let client = socket_addr(&k, 0, 32, family);
            let server = socket_addr(&k, 16, 34, family);
            let (p, b) = counters(&v);
            let e = out.entry((client, server)).or_default();
            e[0] += p;
            e[1] += b;
        }
        for (_, v) in self.from_peer.iter().flatten() {
            let family = v[38];
            let server = socket_addr(&v, 0, 32, family);
            let client = socket_addr(&v, 16, 34, family);
            let (p, b) = counters(&v);
            let e = out.entry((client, server)).or_default();
            e[2] += p;
            e[3] += b;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_routes_have_the_programs_layout() {
        let client: SocketAddr = "198.51.100.7:50000".parse().unwrap();
        let server: SocketAddr = "192.0.2.1:3478".parse().unwrap();
        let k = to_peer_key(client, server, 0x4001);
        assert_eq!(&k[..4], &[198, 51, 100, 7]);
        assert_eq!(&k[16..20], &[192, 0, 2, 1]);
        assert_eq!(&k[32..34], &50000u16.to_be_bytes());
        assert_eq!(&k[34..36], &3478u16.to_be_bytes());
        assert_eq!(&k[36..38], &[0x40, 0x01]);
        assert_eq!(k[38], 4);
        let peer: SocketAddr = "[2001:db8::9]:40000".parse().unwrap();
        let relay: SocketAddr = "[2001:db8::1]:50001".parse().unwrap();
        let k = from_peer_key(peer, relay);
        assert_eq!(k[36], 6);
        assert_eq!(socket_addr(&k, 0, 32, 6), peer);
        assert_eq!(socket_addr(&k, 16, 34, 6), relay);

        let mut old = [0u8; ROUTE];
        old[48..56].copy_from_slice(&7u64.to_ne_bytes());
        let r = route(server, client, 0x4001, 99, Some(old));
        assert_eq!(counters(&r), (7, 0), "counters survive an update");
        assert_eq!(&r[40..48], &99u64.to_ne_bytes());
        assert_eq!(socket_addr(&r, 16, 34, 4), client);
    }
}
