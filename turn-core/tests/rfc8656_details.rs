//! RFC 8656 details: RESERVATION-TOKEN with ADDITIONAL-ADDRESS-FAMILY, a
//! reservation of an IPv6 port, Refresh of one family of a dual allocation (§7.3),
//! and quotas that count the user of time-limited credentials.

mod common;

use common::*;
use stun_core::attributes::*;
use stun_core::{Class, Method};
use turn_core::Instant;
use turn_core::server::{BadRequest, Refusal, RelayFamily};

const T0: Instant = Instant::from_secs(1_764_000_000);

fn dual_config() -> turn_core::server::Config {
    let mut cfg = config();
    cfg.relay_v6 = Some("fd00::5".parse().unwrap());
    cfg
}

fn run_until(s: &mut TestServer, h: &mut FakeHost, until: Instant) {
    while let Some(t) = s.poll_timeout() {
        if t > until {
            break;
        }
        s.handle_timeout(t, h);
    }
}

#[test]
fn reservation_token_with_additional_address_family_is_400() {
    let mut s = server_with(dual_config(), 4);
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:1", "alice", "wonderland");
    let r = c.request(&mut s, &mut h, T0, Method::ALLOCATE, &|b| {
        b.add(&RequestedTransport::UDP).unwrap();
        b.add(&ReservationToken([1; 8])).unwrap();
        b.add(&AdditionalAddressFamily(AddressFamily::Ipv6))
            .unwrap();
    });
    assert_eq!(r.code(), Some(400));
    assert_eq!(
        r.refusal,
        Some(Refusal::BadRequest(BadRequest::TokenWithAdditionalFamily))
    );
    assert_eq!(s.allocation_count(), 0);
    assert!(h.bound.is_empty());
}

#[test]
fn an_ipv6_reservation_is_claimed_on_the_ipv6_relay() {
    let mut s = server_with(dual_config(), 4);
    let mut h = FakeHost::new();
    let mut a = Client::new("198.51.100.7:1", "alice", "wonderland");
    let r = a.request(&mut s, &mut h, T0, Method::ALLOCATE, &|b| {
        b.add(&RequestedTransport::UDP).unwrap();
        b.add(&RequestedAddressFamily(AddressFamily::Ipv6)).unwrap();
        b.add(&EvenPort { reserve_next: true }).unwrap();
    });
    assert_success(&r, &a);
    let rtp = relayed(&r);
    assert!(rtp.is_ipv6());
    let token = r.msg().attribute::<ReservationToken>().unwrap().unwrap();
    let mut b = Client::new("198.51.100.7:2", "alice", "wonderland");
    let r = b.request(&mut s, &mut h, T0, Method::ALLOCATE, &move |bb| {
        bb.add(&RequestedTransport::UDP).unwrap();
        bb.add(&token).unwrap();
    });
    assert_success(&r, &b);
    let rtcp = relayed(&r);
    assert!(rtcp.is_ipv6(), "{rtcp}");
    assert_eq!(rtcp.port(), rtp.port() + 1);
    // The relay socket is the allocation's IPv6 one: IPv6 peers work...
    assert_success(&b.permit(&mut s, &mut h, T0, "[2001:4860::8888]:5000"), &b);
    let handle = h.bound[&rtcp];
    assert_eq!(handle.family, RelayFamily::Ipv6);
    let ind = b.send_indication("[2001:4860::8888]:5000", b"rtcp");
    assert!(matches!(
        b.send_raw(&mut s, &mut h, T0, &ind).0,
        Answer::ToPeer { from, .. } if from == rtcp
    ));
    // ...and the reply comes back to the client.
    assert!(from_peer(&mut s, &mut h, T0, rtcp, "[2001:4860::8888]:5000", b"x").is_some());
    // A token whose family bit was flipped names no reservation.
    let mut flipped = token.0;
    flipped[0] ^= 1;
    let mut c = Client::new("198.51.100.7:3", "alice", "wonderland");
    let r = c.request(&mut s, &mut h, T0, Method::ALLOCATE, &move |bb| {
        bb.add(&RequestedTransport::UDP).unwrap();
        bb.add(&ReservationToken(flipped)).unwrap();
    });
    assert_eq!(r.code(), Some(508));
    assert_eq!(r.refusal, Some(Refusal::NoReservation));
}

/// A dual allocation for `c`.
fn dual(s: &mut TestServer, h: &mut FakeHost, c: &mut Client) {
    let r = c.request(s, h, T0, Method::ALLOCATE, &|b| {
        b.add(&RequestedTransport::UDP).unwrap();
        b.add(&AdditionalAddressFamily(AddressFamily::Ipv6))
            .unwrap();
    });
    assert_success(&r, c);
    assert_eq!(h.bound.len(), 2);
}

fn refresh_family(
    s: &mut TestServer,
    h: &mut FakeHost,
    c: &mut Client,
    now: Instant,
    family: AddressFamily,
    lifetime: u32,
) -> Reply {
    c.request(s, h, now, Method::REFRESH, &move |b| {
        b.add(&RequestedAddressFamily(family)).unwrap();
        b.add(&Lifetime(lifetime)).unwrap();
    })
}

#[test]
fn refresh_with_requested_family_deletes_only_that_family() {
    let mut s = server_with(dual_config(), 4);
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:1", "alice", "wonderland");
    dual(&mut s, &mut h, &mut c);
    assert_success(&c.permit(&mut s, &mut h, T0, "8.8.8.8:1"), &c);
    assert_success(&c.permit(&mut s, &mut h, T0, "[2001:4860::8888]:1"), &c);
    let r = refresh_family(&mut s, &mut h, &mut c, T0, AddressFamily::Ipv6, 0);
    assert_success(&r, &c);
    assert_eq!(h.bound.len(), 1, "the IPv6 relay socket is closed");
    assert!(h.bound.keys().all(|a| a.is_ipv4()));
    assert_eq!(s.allocation_count(), 1);
    let v4 = c.send_indication("8.8.8.8:1", b"x");
    assert!(matches!(
        c.send_raw(&mut s, &mut h, T0, &v4).0,
        Answer::ToPeer { .. }
    ));
    let v6 = c.send_indication("[2001:4860::8888]:1", b"x");
    assert!(matches!(
        c.send_raw(&mut s, &mut h, T0, &v6).0,
        Answer::Nothing(Some(Refusal::PeerFamilyMismatch))
    ));
    // Refreshing the family that is gone: 443.
    let r = refresh_family(&mut s, &mut h, &mut c, T0, AddressFamily::Ipv6, 600);
    assert_eq!(r.code(), Some(443));
    // Deleting the last family ends the allocation.
    let r = refresh_family(&mut s, &mut h, &mut c, T0, AddressFamily::Ipv4, 0);
    assert_success(&r, &c);
    assert_eq!(s.allocation_count(), 0);
    assert!(h.bound.is_empty());
}

#[test]
fn refresh_with_requested_family_extends_only_that_family() {
    let mut s = server_with(dual_config(), 4);
    let mut h = FakeHost::new();
    let mut c = Client::new("198.51.100.7:1", "alice", "wonderland");
    dual(&mut s, &mut h, &mut c);
    let t = T0.plus_secs(300);
    let r = refresh_family(&mut s, &mut h, &mut c, t, AddressFamily::Ipv6, 3600);
    assert_success(&r, &c);
    assert_eq!(
        r.msg().attribute::<Lifetime>().unwrap(),
        Some(Lifetime(3600))
    );
    // The IPv4 relay keeps its 600 s and ends on its own...
    run_until(&mut s, &mut h, T0.plus_secs(700));
    assert_eq!(s.allocation_count(), 1);
    assert_eq!(h.bound.len(), 1);
    assert!(h.bound.keys().all(|a| a.is_ipv6()));
    // ...and the allocation lives on with its IPv6 relay until that one ends.
    let r = c.refresh(&mut s, &mut h, T0.plus_secs(800), 600);
    assert_success(&r, &c);
    run_until(&mut s, &mut h, T0.plus_secs(1500));
    assert_eq!(s.allocation_count(), 0);
    assert!(h.bound.is_empty());
}

#[test]
fn per_user_quota_counts_the_user_of_time_limited_credentials() {
    let mut cfg = config();
    cfg.shared_secrets
        .push(turn_core::server::Secret::from_slice(b"cms-shared-secret").unwrap())
        .unwrap();
    let mut s = server_with(cfg, 8);
    let mut h = FakeHost::new();
    h.user_quota = 2;
    let secret = stun_core::credentials::SharedSecret::new(b"cms-shared-secret");
    // The issuer hands out a new username every hour: each is still `guest`.
    let mut results = Vec::new();
    for (i, expiry) in [3600u64, 7200, 10800].into_iter().enumerate() {
        let user = format!("{}:guest", T0.as_secs() + expiry);
        let pass = secret.password(&user).as_str().to_string();
        let mut c = Client::new(&format!("198.51.100.7:{}", i + 1), &user, &pass);
        results.push(c.allocate(&mut s, &mut h, T0));
    }
    assert_eq!(results[0].class(), Class::Success);
    assert_eq!(results[1].class(), Class::Success);
    assert_eq!(results[2].code(), Some(486));
    assert_eq!(h.per_user.get("guest"), Some(&2));
    // Another user of the same issuer has its own count.
    let user = format!("{}:host", T0.as_secs() + 3600);
    let pass = secret.password(&user).as_str().to_string();
    let mut c = Client::new("198.51.100.8:1", &user, &pass);
    assert_success(&c.allocate(&mut s, &mut h, T0), &c);
    // Deleting one releases the `guest` count it took.
    let user = format!("{}:guest", T0.as_secs() + 3600);
    let pass = secret.password(&user).as_str().to_string();
    let mut first = Client::new("198.51.100.7:1", &user, &pass);
    first.nonce = None;
    assert_success(&first.refresh(&mut s, &mut h, T0, 0), &first);
    assert_eq!(h.per_user.get("guest"), Some(&1));
}
