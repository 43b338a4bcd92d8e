//! The TURN server of `turn-core` running on smoltcp over a Linux TAP interface,
//! through the `smoltcp` adapter: the same state machine `causeway serve` runs, on
//! the network stack an appliance's firmware would use.
//!
//! `smoltcp-turn TAP IP/PREFIX USER:PASS [ALLOWED-PEER-CIDR]`, for example
//! `smoltcp-turn tap0 192.168.69.1/24 alice:pw 192.168.69.0/24`.

use std::net::IpAddr;
use std::os::unix::io::AsRawFd;
use std::time::SystemTime;

use smoltcp::iface::{Config, Interface, SocketSet, SocketStorage};
use smoltcp::phy::{Medium, TunTapInterface, wait as phy_wait};
use smoltcp::socket::udp;
use smoltcp::wire::{EthernetAddress, IpCidr};
use tap_turn::{Options, RELAYS, random};
use turn_core::adapters::smoltcp::SmoltcpTurn;
use turn_core::{Instant, UnixTime};

/// The monotonic clock (since the program started) and the wall clock.
fn now(start: std::time::Instant) -> (Instant, UnixTime) {
    let mono = Instant::from_millis(start.elapsed().as_millis() as u64);
    let unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (mono, UnixTime(unix))
}

fn udp_socket() -> udp::Socket<'static> {
    udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0; 64 * 1024]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0; 64 * 1024]),
    )
}

fn main() {
    let start = std::time::Instant::now();
    let opts = Options::from_args("smoltcp-turn");
    let mut device =
        TunTapInterface::new(&opts.tap, Medium::Ethernet).expect("open the TAP interface");
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
        a.push(IpCidr::new(IpAddr::V4(opts.ip).into(), opts.prefix))
            .expect("one address");
    });

    let mut storage: Vec<SocketStorage> = (0..RELAYS + 1).map(|_| SocketStorage::EMPTY).collect();
    let mut sockets = SocketSet::new(&mut storage[..]);
    let mut listener = udp_socket();
    listener.bind(3478).expect("bind 3478");
    let listener = sockets.add(listener);
    let relays: [_; RELAYS] = std::array::from_fn(|_| sockets.add(udp_socket()));
    let local = opts.listener();
    let mut turn = SmoltcpTurn::new(opts.server(), listener, local, relays, opts.local());
    println!("smoltcp-turn: serving TURN on {local} over {}", opts.tap);

    loop {
        let t = smoltcp::time::Instant::now();
        iface.poll(t, &mut device, &mut sockets);
        let (mono, unix) = now(start);
        let busy = turn.process(mono, unix, &mut sockets) > 0;
        iface.poll(t, &mut device, &mut sockets);
        let mut delay = iface.poll_delay(t, &sockets);
        if let Some(at) = turn.poll_at() {
            let d = smoltcp::time::Duration::from_millis(at.millis_since(now(start).0));
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
