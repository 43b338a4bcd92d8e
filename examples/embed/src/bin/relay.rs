//! A TURN relay in a program of its own: `relay LISTEN USER PASSWORD PEERS`.
use turn_core::adapters::std::Relay;
use turn_core::server::policy::Cidr;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let relay = Relay::builder()
        .listen(args[1].parse()?)
        .realm("example")
        .user(&args[2], &args[3])
        .allow_peer(Cidr::parse(&args[4])?)
        .start()?;
    println!("relaying on {:?}", relay.local_addrs());
    relay.join(); // until the process is stopped
    Ok(())
}
