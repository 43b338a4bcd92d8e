//! A UDP forwarder that holds every datagram a fixed time each way: a link of a
//! known delay where `tc netem` is missing (this machine's kernel has no
//! `sch_netem`). One upstream socket per client, as a NAT would. Shared with the
//! call-bridge example's tests (`#[path]`).

#![allow(dead_code, unreachable_pub)]

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Forwards datagrams arriving at a new port of `ip` to `target`, and the
/// answers back, each `delay` late; returns the forwarder's address.
pub fn delayed(ip: IpAddr, target: SocketAddr, delay: Duration) -> SocketAddr {
    let front = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
    let addr = front.local_addr().unwrap();
    front.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let mut ups: Vec<(SocketAddr, UdpSocket)> = Vec::new();
        let mut by_client: HashMap<SocketAddr, usize> = HashMap::new();
        // (due, upstream index or None for the front, destination, bytes)
        let mut queue: VecDeque<(Instant, Option<usize>, SocketAddr, Vec<u8>)> = VecDeque::new();
        let mut buf = [0u8; 2048];
        loop {
            let now = Instant::now();
            while let Ok((n, from)) = front.recv_from(&mut buf) {
                let i = *by_client.entry(from).or_insert_with(|| {
                    let u = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
                    u.set_nonblocking(true).unwrap();
                    ups.push((from, u));
                    ups.len() - 1
                });
                queue.push_back((now + delay, Some(i), target, buf[..n].to_vec()));
            }
            for (client, u) in &ups {
                while let Ok((n, _)) = u.recv_from(&mut buf) {
                    queue.push_back((now + delay, None, *client, buf[..n].to_vec()));
                }
            }
            while queue.front().is_some_and(|(due, ..)| *due <= now) {
                let (_, via, to, bytes) = queue.pop_front().unwrap();
                let _ = match via {
                    Some(i) => ups[i].1.send_to(&bytes, to),
                    None => front.send_to(&bytes, to),
                };
            }
            std::thread::sleep(Duration::from_micros(300));
        }
    });
    addr
}
