//! A meeting's browsers behind one office NAT, all allocating at once with the one
//! TURN user the meeting server hands out: the reflection budget of their shared
//! address must not turn them away once one of them has authenticated, while a
//! spoofer still cannot turn the server against a victim.

mod common;

use common::*;
use stun_core::{Method, TransactionId};
use turn_core::Instant;
use turn_core::server::Refusal;

const T0: Instant = Instant::from_secs(1_764_000_000);

/// The first (unauthenticated) Allocate of a browser.
fn first_allocate(c: &Client, attempt: u8) -> Vec<u8> {
    let mut id = [attempt; 12];
    id[..2].copy_from_slice(&c.tuple.client.port().to_be_bytes());
    c.build(
        Method::ALLOCATE,
        TransactionId::new(id),
        &|b| {
            b.add(&stun_core::attributes::RequestedTransport::UDP)
                .unwrap()
        },
        false,
    )
}

#[test]
fn a_thousand_browsers_behind_one_address_all_allocate_on_their_first_retransmission() {
    // The default budgets: 100 at once per source, 50 a second, 2000 a second in all.
    let mut cfg = config();
    let defaults = turn_core::server::Config::new("x");
    cfg.unauth_burst = defaults.unauth_burst;
    cfg.unauth_per_sec = defaults.unauth_per_sec;
    cfg.unauth_global_per_sec = defaults.unauth_global_per_sec;
    let mut s = server_with(cfg, 1100);
    let mut h = FakeHost::new();
    h.user_quota = usize::MAX;
    h.total_quota = usize::MAX;
    let mut browsers: Vec<Client> = (0..1000u32)
        .map(|i| {
            Client::new(
                &format!("198.51.100.77:{}", 10000 + i),
                "alice",
                "wonderland",
            )
        })
        .collect();
    // All send their first Allocate in the same instant: the per-source burst is
    // answered, the rest dropped.
    let mut challenged = Vec::new();
    for (i, b) in browsers.iter().enumerate() {
        if let (Answer::ToClient { .. }, out) =
            b.send_raw(&mut s, &mut h, T0, &first_allocate(b, 1))
        {
            challenged.push((i, out));
        }
    }
    assert_eq!(challenged.len(), defaults.unauth_burst as usize);
    // The first answered browser authenticates: its address has proved it
    // receives what is sent to it.
    let (first, reply) = &challenged[0];
    let nonce = Reply {
        bytes: reply.clone(),
        refusal: None,
    }
    .nonce();
    let b = &mut browsers[*first];
    b.nonce = nonce;
    assert_success(&b.allocate(&mut s, &mut h, T0), b);
    // Every other browser's first retransmission (RFC 8489: 500 ms later) is
    // answered, and each allocates.
    let t1 = T0.plus_millis(500);
    let mut allocated = 1;
    for (i, b) in browsers.iter_mut().enumerate() {
        if i == *first {
            continue;
        }
        let r = b.allocate(&mut s, &mut h, t1);
        assert_success(&r, b);
        allocated += 1;
    }
    assert_eq!(allocated, 1000);
    assert_eq!(s.allocation_count(), 1000);
}

#[test]
fn a_spoofer_cycling_addresses_never_refills_a_victims_budget() {
    let mut s = server();
    let mut h = FakeHost::new();
    let victim = Client::new("198.51.100.9:3478", "alice", "wonderland");
    let answered = (0..50u8)
        .filter(|&i| {
            matches!(
                victim
                    .send_raw(&mut s, &mut h, T0, &first_allocate(&victim, i))
                    .0,
                Answer::ToClient { .. }
            )
        })
        .count();
    assert_eq!(answered, 10, "the burst, then silence");
    // Requests from a great many other (spoofed) sources, enough to have evicted
    // the victim's bucket from any table of bounded size.
    for i in 0..20_000u32 {
        let [a, b, c, d] = (0x0b00_0000u32 + i).to_be_bytes();
        let other = Client::new(&format!("{a}.{b}.{c}.{d}:1"), "alice", "wonderland");
        let _ = other.send_raw(&mut s, &mut h, T0, &first_allocate(&other, 1));
    }
    let (o, _) = victim.send_raw(&mut s, &mut h, T0, &first_allocate(&victim, 99));
    assert_eq!(o, Answer::Nothing(Some(Refusal::RateLimited)));
}
