//! A UDP forwarder that holds every datagram a fixed time each way: a link of a
//! known delay, in user space (no `tc netem` needed). One upstream socket per
//! client, as a NAT would. Its threads block on their sockets and on the next
//! datagram's due time: they cost nothing while the link is idle.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A datagram held until it is due: (due, socket to send from, destination, bytes).
type Held = (Instant, UdpSocket, SocketAddr, Vec<u8>);

/// Forwards datagrams arriving at a new port of `ip` to `target`, and the
/// answers back, each `delay` late; returns the forwarder's address.
pub fn delayed(ip: IpAddr, target: SocketAddr, delay: Duration) -> SocketAddr {
    let front = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
    let addr = front.local_addr().unwrap();
    let (tx, rx) = mpsc::channel::<Held>();
    std::thread::spawn(move || sender(rx));
    std::thread::spawn(move || {
        let mut by_client: HashMap<SocketAddr, UdpSocket> = HashMap::new();
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = front.recv_from(&mut buf) {
            let now = Instant::now();
            let up = by_client.entry(from).or_insert_with(|| {
                let up = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
                // The answers to this client: back through the front, as late.
                let (back, answers, tx) = (
                    front.try_clone().unwrap(),
                    up.try_clone().unwrap(),
                    tx.clone(),
                );
                std::thread::spawn(move || {
                    let mut buf = [0u8; 2048];
                    while let Ok((n, _)) = answers.recv_from(&mut buf) {
                        let held = (
                            Instant::now() + delay,
                            back.try_clone().unwrap(),
                            from,
                            buf[..n].to_vec(),
                        );
                        if tx.send(held).is_err() {
                            break;
                        }
                    }
                });
                up
            });
            let held = (
                now + delay,
                up.try_clone().unwrap(),
                target,
                buf[..n].to_vec(),
            );
            if tx.send(held).is_err() {
                break;
            }
        }
    });
    addr
}

/// Sends each held datagram when it is due (they arrive in due order, as the
/// delay is the same for all).
fn sender(rx: mpsc::Receiver<Held>) {
    let mut queue: VecDeque<Held> = VecDeque::new();
    let mut open = true;
    loop {
        let now = Instant::now();
        while queue.front().is_some_and(|(due, ..)| *due <= now) {
            if let Some((_, sock, to, bytes)) = queue.pop_front() {
                let _ = sock.send_to(&bytes, to);
            }
        }
        let wait = queue
            .front()
            .map(|(due, ..)| due.saturating_duration_since(now));
        match (wait, open) {
            (None, false) => return,
            (None, true) => match rx.recv() {
                Ok(h) => queue.push_back(h),
                Err(_) => open = false,
            },
            (Some(wait), true) => match rx.recv_timeout(wait) {
                Ok(h) => queue.push_back(h),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => open = false,
            },
            // The link's delay itself: what is held goes out when due.
            (Some(wait), false) => std::thread::sleep(wait),
        }
    }
}
