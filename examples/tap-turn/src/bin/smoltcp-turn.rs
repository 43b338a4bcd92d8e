//! The TURN server of `turn-core` running on smoltcp over a Linux TAP interface,
//! through the `smoltcp` adapter: the same state machine `causeway serve` runs, on
//! the network stack an appliance's firmware would use.
//!
//! `smoltcp-turn TAP IP/PREFIX USER:PASS [ALLOWED-PEER-CIDR]`, for example
//! `smoltcp-turn tap0 192.168.69.1/24 alice:pw 192.168.69.0/24`.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::io::AsRawFd;
use std::time::SystemTime;

use smoltcp::iface::{Config, Interface, SocketSet, SocketStorage};
use smoltcp::phy::{Medium, TunTapInterface, wait as phy_wait};
use smoltcp::socket::udp;
use smoltcp::wire::{EthernetAddress, IpCidr};
use stun_core::credentials::long_term_key;
use turn_core::Instant;
use turn_core::adapters::Local;
use turn_core::adapters::smoltcp::SmoltcpTurn;
use turn_core::server::{self, Server, Slot};

/// Relay sockets (allocations at once).
const RELAYS: usize = 16;

fn now() -> Instant {
    let ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Instant::from_millis(ms)
}

fn udp_socket() -> udp::Socket<'static> {
    udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0; 64 * 1024]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0; 64 * 1024]),
    )
}

fn random(buf: &mut [u8]) {
    if let Err(e) = getrandom::fill(buf) {
        panic!("the OS random source failed: {e}");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(tap), Some(cidr), Some(user)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: smoltcp-turn TAP IP/PREFIX USER:PASS [ALLOWED-PEER-CIDR]");
        std::process::exit(2);
    };
    let (ip, prefix) = cidr.split_once('/').expect("IP/PREFIX");
    let ip: IpAddr = ip.parse().expect("an IP address");
    let IpAddr::V4(ip4) = ip else {
        panic!("IPv4 only")
    };
    let prefix: u8 = prefix.parse().expect("a prefix length");
    let (name, pass) = user.split_once(':').expect("USER:PASS");

    let mut device = TunTapInterface::new(tap, Medium::Ethernet).expect("open the TAP interface");
    let fd = device.as_raw_fd();
    let mut mac = [0u8; 6];
    random(&mut mac);
    mac[0] = (mac[0] & 0xfe) | 0x02; // unicast, locally administered
    let mut seed = [0u8; 8];
    random(&mut seed);
    let mut config = Config::new(EthernetAddress(mac).into());
    config.random_seed = u64::from_le_bytes(seed);
    let mut iface = Interface::new(config, &mut device, smoltcp::time::Instant::now());
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::new(ip.into(), prefix)).expect("one address");
    });

    let mut storage: Vec<SocketStorage> = (0..RELAYS + 1).map(|_| SocketStorage::EMPTY).collect();
    let mut sockets = SocketSet::new(&mut storage[..]);
    let mut listener = udp_socket();
    listener.bind(3478).expect("bind 3478");
    let listener = sockets.add(listener);
    let relays: [_; RELAYS] = std::array::from_fn(|_| sockets.add(udp_socket()));

    let mut cfg = server::Config::new("causeway");
    cfg.relay_v4 = Some(ip4);
    cfg.legacy_channels = true;
    if let Some(allowed) = args.get(4) {
        let _ = cfg
            .policy
            .allow
            .push(server::policy::Cidr::parse(allowed).expect("a CIDR"));
    }
    let mut secret = [0u8; 32];
    random(&mut secret);
    let server: Server<Vec<Slot<8, 8>>, Vec<u32>, 8, 8> =
        Server::new(cfg, vec![Slot::EMPTY; RELAYS], vec![0; RELAYS * 2], secret)
            .expect("valid configuration");
    let users: &'static [(&'static str, _)] = Box::leak(Box::new([(
        &*Box::leak(name.to_string().into_boxed_str()),
        long_term_key(name, "causeway", pass),
    )]));
    let mut turn = SmoltcpTurn::new(
        server,
        listener,
        SocketAddr::new(ip, 3478),
        relays,
        Local {
            users,
            per_user: 16,
            total: RELAYS as u16,
            rng: random,
        },
    );
    println!("smoltcp-turn: serving TURN on {ip}:3478 over {tap}");

    loop {
        let t = smoltcp::time::Instant::now();
        iface.poll(t, &mut device, &mut sockets);
        let busy = turn.process(now(), &mut sockets) > 0;
        iface.poll(t, &mut device, &mut sockets);
        let mut delay = iface.poll_delay(t, &sockets);
        if let Some(at) = turn.poll_at() {
            let ms = at.millis_since(now());
            let d = smoltcp::time::Duration::from_millis(ms);
            delay = Some(delay.map_or(d, |x| x.min(d)));
        }
        if !busy {
            let _ = phy_wait(
                fd,
                delay.or(Some(smoltcp::time::Duration::from_millis(100))),
            );
        }
    }
}
