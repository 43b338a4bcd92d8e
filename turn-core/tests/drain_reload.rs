//! Operating a running server: a drain refuses new allocations (300 to the
//! alternate server, else 508) while existing ones relay, and caps refreshes at
//! its end; a reconfiguration rotates secrets and changes the policy without
//! dropping an allocation, and a bad one is refused with the running one kept.

mod common;

use common::*;
use stun_core::attributes::Lifetime;
use turn_core::Instant;
use turn_core::server::{Refusal, Secret};

const T0: Instant = Instant::from_secs(5000);

#[test]
fn a_drain_refuses_new_allocations_and_ends_the_old_at_its_deadline() {
    let mut s = server();
    let mut h = FakeHost::new();
    let mut a = Client::new("198.51.100.7:5000", "alice", "wonderland");
    assert_success(&a.allocate(&mut s, &mut h, T0), &a);
    assert_success(&a.permit(&mut s, &mut h, T0, "8.8.8.8:1"), &a);
    let local = relay_local(&h);

    s.drain(T0.plus_secs(30));
    assert_eq!(s.draining_until(), Some(T0.plus_secs(30)));
    let mut b = Client::new("198.51.100.8:5000", "bob", "builder");
    let r = b.allocate(&mut s, &mut h, T0);
    assert_eq!(r.code(), Some(508));
    assert_eq!(r.refusal, Some(Refusal::Draining));
    // Its reason phrase says so, and the client tells it from a full server.
    let msg = r.msg();
    let e = msg
        .attribute::<stun_core::attributes::ErrorCode>()
        .unwrap()
        .unwrap();
    assert_eq!(e.reason, turn_core::server::DRAINING_PHRASE);

    // The existing one relays, and a refresh cannot outlive the drain.
    assert!(from_peer(&mut s, &mut h, T0, local, "8.8.8.8:9", b"media").is_some());
    let r = a.refresh(&mut s, &mut h, T0.plus_secs(10), 600);
    assert_success(&r, &a);
    assert_eq!(r.msg().attribute::<Lifetime>().unwrap().unwrap().0, 20);

    // With an alternate server, new clients are sent there.
    let mut cfg = config();
    cfg.alternate_server = Some("203.0.113.6:3478".parse().unwrap());
    let mut s = server_with(cfg, 4);
    s.drain(T0.plus_secs(30));
    let mut c = Client::new("198.51.100.9:5000", "alice", "wonderland");
    let r = c.allocate(&mut s, &mut h, T0);
    assert_eq!(r.code(), Some(300));
    assert_eq!(
        r.refusal,
        Some(Refusal::Redirected {
            to: "203.0.113.6:3478".parse().unwrap(),
            draining: true
        })
    );
    assert_eq!(
        r.refusal.unwrap().to_string(),
        "300 sent to the alternate server 203.0.113.6:3478: this node is draining"
    );
}

#[test]
fn a_reconfiguration_rotates_secrets_and_policy_and_keeps_allocations() {
    let mut cfg = config();
    cfg.shared_secrets
        .push(Secret::from_slice(b"old").unwrap())
        .unwrap();
    let mut s = server_with(cfg.clone(), 4);
    let mut h = FakeHost::new();
    let old = stun_core::credentials::SharedSecret::new(b"old");
    let new = stun_core::credentials::SharedSecret::new(b"new");
    let user = format!("{}:guest", T0.as_secs() + 3600);
    let mut a = Client::new("198.51.100.7:5000", &user, old.password(&user).as_str());
    a.wall = Some(turn_core::UnixTime(T0.as_secs()));
    assert_success(&a.allocate(&mut s, &mut h, T0), &a);
    assert_success(&a.permit(&mut s, &mut h, T0, "8.8.8.8:1"), &a);
    let local = relay_local(&h);

    // Rotate: the new secret only, and 9.9.9.0/24 denied from now on.
    let mut next = cfg.clone();
    next.shared_secrets.clear();
    next.shared_secrets
        .push(Secret::from_slice(b"new").unwrap())
        .unwrap();
    next.policy
        .deny
        .push(turn_core::server::policy::Cidr::parse("9.9.9.0/24").unwrap())
        .unwrap();
    s.reconfigure(next).unwrap();
    assert_eq!(s.allocation_count(), 1, "nothing dropped");
    assert!(
        from_peer(&mut s, &mut h, T0, local, "8.8.8.8:9", b"media").is_some(),
        "its permission relays on"
    );
    let r = a.permit(&mut s, &mut h, T0, "8.8.4.4:1");
    assert_eq!(
        r.refusal,
        Some(Refusal::IntegrityFailure),
        "the old secret is gone"
    );
    let mut b = Client::new("198.51.100.8:5000", &user, new.password(&user).as_str());
    b.wall = Some(turn_core::UnixTime(T0.as_secs()));
    assert_success(&b.allocate(&mut s, &mut h, T0), &b);
    assert_eq!(b.permit(&mut s, &mut h, T0, "9.9.9.9:1").code(), Some(403));

    // A configuration the server would not start with is refused; the running
    // one stays.
    let mut bad = config();
    bad.port_min = 30000;
    bad.port_max = 20000;
    assert!(s.reconfigure(bad).is_err());
    assert_eq!(s.config().shared_secrets.len(), 1);
    assert_eq!(s.config().shared_secrets[0].as_slice(), b"new");
}
