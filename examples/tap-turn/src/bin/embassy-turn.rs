//! The TURN server of `turn-core` running on embassy-net over a Linux TAP interface
//! (`embassy-net-tuntap`), through the `embassy-net` adapter: one async task on the
//! std executor, as it would run on a board.
//!
//! `embassy-turn TAP IP/PREFIX USER:PASS [ALLOWED-PEER-CIDR]`.

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use embassy_executor::Spawner;
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{Ipv4Cidr, Runner, StackResources, StaticConfigV4};
use embassy_net_tuntap::TunTapDevice;
use static_cell::StaticCell;
use stun_core::credentials::long_term_key;
use turn_core::adapters::Local;
use turn_core::adapters::embassy::EmbassyTurn;
use turn_core::server::{self, Server, Slot};

/// Relay sockets (allocations at once).
const RELAYS: usize = 16;

fn random(buf: &mut [u8]) {
    if let Err(e) = getrandom::fill(buf) {
        panic!("the OS random source failed: {e}");
    }
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, TunTapDevice>) -> ! {
    runner.run().await
}

/// A UDP socket with buffers that live for the program.
fn socket(stack: embassy_net::Stack<'static>) -> UdpSocket<'static> {
    UdpSocket::new(
        stack,
        Box::leak(Box::new([PacketMetadata::EMPTY; 64])),
        Box::leak(vec![0u8; 64 * 1024].into_boxed_slice()),
        Box::leak(Box::new([PacketMetadata::EMPTY; 64])),
        Box::leak(vec![0u8; 64 * 1024].into_boxed_slice()),
    )
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let args: Vec<String> = std::env::args().collect();
    let (Some(tap), Some(cidr), Some(user)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: embassy-turn TAP IP/PREFIX USER:PASS [ALLOWED-PEER-CIDR]");
        std::process::exit(2);
    };
    let (ip, prefix) = cidr.split_once('/').expect("IP/PREFIX");
    let ip: std::net::Ipv4Addr = ip.parse().expect("an IPv4 address");
    let prefix: u8 = prefix.parse().expect("a prefix length");
    let (name, pass) = user.split_once(':').expect("USER:PASS");

    let device = TunTapDevice::new(tap).expect("open the TAP interface");
    let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(ip, prefix),
        gateway: None,
        dns_servers: Default::default(),
    });
    static RESOURCES: StaticCell<StackResources<{ RELAYS + 4 }>> = StaticCell::new();
    let mut seed = [0u8; 8];
    random(&mut seed);
    let (stack, runner) = embassy_net::new(
        device,
        config,
        RESOURCES.init(StackResources::new()),
        u64::from_le_bytes(seed),
    );
    spawner.spawn(net_task(runner).expect("spawn the network task"));
    stack.wait_config_up().await;

    let mut listener = socket(stack);
    listener.bind(3478).expect("bind 3478");
    let relays: [UdpSocket<'static>; RELAYS] = std::array::from_fn(|_| socket(stack));

    let mut cfg = server::Config::new("causeway");
    cfg.relay_v4 = Some(ip);
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
    let name: &'static str = Box::leak(name.to_string().into_boxed_str());
    let users: &'static [(&'static str, _)] =
        Box::leak(Box::new([(name, long_term_key(name, "causeway", pass))]));
    // The board has a wall clock here: embassy's time zero is now minus its uptime.
    let unix_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let epoch = unix_ms.saturating_sub(embassy_time::Instant::now().as_millis());
    let local = SocketAddr::new(IpAddr::V4(ip), 3478);
    let mut turn = EmbassyTurn::new(
        server,
        listener,
        local,
        relays,
        Local {
            users,
            per_user: 16,
            total: RELAYS as u16,
            rng: random,
        },
        epoch,
    );
    println!("embassy-turn: serving TURN on {local} over {tap}");
    turn.run().await
}
