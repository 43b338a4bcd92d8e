//! A TURN client in a program of its own: `client SERVER USER PASSWORD PEER`:
//! allocates, binds a channel to an echo peer, and prints what comes back.
use std::time::Duration;
use turn_core::adapters::std::client::TurnClient;
use turn_core::client::ClientConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let mut turn = TurnClient::connect(ClientConfig::new(args[1].parse()?, &args[2], &args[3])?)?;
    let (t, peer) = (Duration::from_secs(5), args[4].parse()?);
    println!("relayed {}", turn.allocate(t)?.relayed);
    turn.bind_channel(peer, t)?;
    turn.send_to(peer, b"hello through the relay")?;
    let mut buf = [0u8; 1500];
    let (n, from) = turn.recv_from(&mut buf, t)?.ok_or("no echo")?;
    println!("{from} echoed {:?}", String::from_utf8_lossy(&buf[..n]));
    Ok(turn.deallocate(t)?)
}
