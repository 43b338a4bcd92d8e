//! The TURN server of `turn-core` on a Nucleo-F767ZI: its Ethernet (RMII, LAN8742
//! PHY) through `embassy-stm32`, the network stack `embassy-net`, the hardware RNG
//! for nonces and ports, and `defmt` logs over RTT. The same state machine as
//! `causeway serve`, in firmware with no heap.
//!
//! The board answers TURN on 192.168.1.50:3478 (static address below), with one
//! user and eight relayed addresses.
#![no_std]
#![no_main]

use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use defmt::{info, unwrap};
use defmt_rtt as _;
use embassy_executor::Spawner;
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{Ipv4Cidr, Stack, StackResources, StaticConfigV4};
use embassy_stm32::eth::{Ethernet, GenericPhy, PacketQueue};
use embassy_stm32::peripherals::{ETH, ETH_SMA};
use embassy_stm32::rng::Rng;
use embassy_stm32::{bind_interrupts, eth, peripherals, rng};
use panic_probe as _;
use static_cell::StaticCell;
use turn_core::adapters::{Local, User};
use turn_core::adapters::embassy::EmbassyTurn;
use turn_core::server::{Config, Server, Slot};

bind_interrupts!(struct Irqs {
    ETH => eth::InterruptHandler;
    RNG => rng::InterruptHandler<peripherals::RNG>;
});

/// Allocations (relay sockets) at once.
const RELAYS: usize = 8;
/// This board's address.
const IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 50);

type Device = Ethernet<'static, ETH, GenericPhy<eth::Sma<'static, ETH_SMA>>>;

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, Device>) -> ! {
    runner.run().await
}

/// A UDP socket with static buffers, one set per call site.
macro_rules! udp_socket {
    ($stack:expr) => {{
        static RX_META: StaticCell<[PacketMetadata; 8]> = StaticCell::new();
        static RX: StaticCell<[u8; 4096]> = StaticCell::new();
        static TX_META: StaticCell<[PacketMetadata; 8]> = StaticCell::new();
        static TX: StaticCell<[u8; 4096]> = StaticCell::new();
        UdpSocket::new(
            $stack,
            RX_META.init([PacketMetadata::EMPTY; 8]),
            RX.init([0; 4096]),
            TX_META.init([PacketMetadata::EMPTY; 8]),
            TX.init([0; 4096]),
        )
    }};
}

#[embassy_executor::main]
async fn main(spawner: Spawner) -> ! {
    let p = embassy_stm32::init(Default::default());
    info!("causeway TURN on a Nucleo-F767ZI");

    static RNG: StaticCell<Rng<'static, peripherals::RNG>> = StaticCell::new();
    let rng = RNG.init(Rng::new(p.RNG, Irqs));
    let mut seed = [0u8; 8];
    rng.fill_bytes(&mut seed);

    let mac = [0x02, 0x00, 0x11, 0x22, 0x33, 0x44];
    static PACKETS: StaticCell<PacketQueue<4, 4>> = StaticCell::new();
    let device = Ethernet::new(
        PACKETS.init(PacketQueue::<4, 4>::new()),
        p.ETH,
        Irqs,
        p.PA1,
        p.PA7,
        p.PC4,
        p.PC5,
        p.PG13,
        p.PB13,
        p.PG11,
        mac,
        p.ETH_SMA,
        p.PA2,
        p.PC1,
    );
    let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(IP, 24),
        gateway: None,
        dns_servers: heapless::Vec::new(),
    });
    static RESOURCES: StaticCell<StackResources<{ RELAYS + 3 }>> = StaticCell::new();
    let (stack, runner): (Stack<'static>, _) = embassy_net::new(
        device,
        config,
        RESOURCES.init(StackResources::new()),
        u64::from_le_bytes(seed),
    );
    spawner.spawn(unwrap!(net_task(runner)));
    stack.wait_config_up().await;
    info!("network up at {}", IP);

    let mut listener = udp_socket!(stack);
    unwrap!(listener.bind(3478));
    let relays: [UdpSocket<'static>; RELAYS] = [
        udp_socket!(stack),
        udp_socket!(stack),
        udp_socket!(stack),
        udp_socket!(stack),
        udp_socket!(stack),
        udp_socket!(stack),
        udp_socket!(stack),
        udp_socket!(stack),
    ];

    let mut cfg = Config::new("causeway");
    cfg.relay_v4 = Some(IP);
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    static SLOTS: StaticCell<[Slot<8, 8>; RELAYS]> = StaticCell::new();
    let slots: &'static mut [Slot<8, 8>] = SLOTS.init([const { Slot::EMPTY }; RELAYS]);
    let server = unwrap!(Server::new(cfg, slots, secret).ok());
    // The long-term key of the board's one user, derived at build time would be
    // better; here it is derived at start from a demo password.
    static USERS: StaticCell<[User<'static>; 1]> = StaticCell::new();
    let users = USERS.init([User::new("board", "causeway", "change-me")]);
    let host = Local {
        users,
        per_user: RELAYS as u16,
        total: RELAYS as u16,
        rng: |b: &mut [u8]| rng.fill_bytes(b),
    };
    let local = SocketAddr::new(IpAddr::V4(IP), 3478);
    let mut turn = EmbassyTurn::new(server, listener, local, relays, host, 0);
    info!("serving TURN on port 3478");
    turn.run().await
}
