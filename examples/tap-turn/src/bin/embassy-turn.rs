//! The TURN server of `turn-core` running on embassy-net over a Linux TAP interface
//! (`embassy-net-tuntap`), through the `embassy-net` adapter: one async task on the
//! std executor, as it would run on a board.
//!
//! `embassy-turn TAP IP/PREFIX USER:PASS [ALLOWED-PEER-CIDR]`.

use std::time::SystemTime;

use embassy_executor::Spawner;
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{Ipv4Cidr, Runner, StackResources, StaticConfigV4};
use embassy_net_tuntap::TunTapDevice;
use static_cell::StaticCell;
use tap_turn::{Options, RELAYS, random};
use turn_core::adapters::embassy::EmbassyTurn;

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
    let opts = Options::from_args("embassy-turn");
    let device = TunTapDevice::new(&opts.tap).expect("open the TAP interface");
    let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(opts.ip, opts.prefix),
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
    // The board has a wall clock here: embassy's time zero is now minus its uptime.
    let unix_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let epoch = unix_ms.saturating_sub(embassy_time::Instant::now().as_millis());
    let local = opts.listener();
    let mut turn = EmbassyTurn::new(opts.server(), listener, local, relays, opts.local(), epoch);
    println!("embassy-turn: serving TURN on {local} over {}", opts.tap);
    turn.run().await
}
