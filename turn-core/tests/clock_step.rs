//! Two clocks: the wall clock jumps an hour forward and an hour back, and the
//! allocation, its permission and its channel keep their monotonic lifetimes,
//! while the time-limited credential is judged by the wall clock (expired while
//! it is ahead, valid again once it is back).

mod common;

use common::*;
use stun_core::Class;
use turn_core::server::Refusal;
use turn_core::{Instant, UnixTime};

/// Ten seconds after the server's (monotonic) origin.
const M0: Instant = Instant::from_secs(10);
/// The wall clock then.
const W0: u64 = 1_764_000_000;

#[test]
fn wall_clock_steps_move_credentials_not_lifetimes() {
    let mut cfg = config();
    cfg.shared_secrets
        .push(turn_core::server::Secret::from_slice(b"cms-secret").unwrap())
        .unwrap();
    let mut s = server_with(cfg, 4);
    let mut h = FakeHost::new();
    // A credential valid for half an hour of wall-clock time.
    let user = format!("{}:guest", W0 + 1800);
    let secret = stun_core::credentials::SharedSecret::new(b"cms-secret");
    let pass = secret.password(&user).as_str().to_string();
    let mut c = Client::new("198.51.100.7:1", &user, &pass);
    c.wall = Some(UnixTime(W0));
    assert_success(&c.allocate(&mut s, &mut h, M0), &c);
    assert_success(&c.permit(&mut s, &mut h, M0, "8.8.8.8:1"), &c);
    assert_success(&c.bind(&mut s, &mut h, M0, 0x4000, "8.8.8.8:1"), &c);
    let local = relay_local(&h);

    // The wall clock jumps an hour ahead, 100 s later on the monotonic clock.
    let m1 = M0.plus_secs(100);
    c.wall = Some(UnixTime(W0 + 100 + 3600));
    let r = c.refresh(&mut s, &mut h, m1, 600);
    assert_eq!(
        r.code(),
        Some(401),
        "the credential expired by the wall clock"
    );
    assert!(matches!(r.refusal, Some(Refusal::CredentialExpired { .. })));
    // Nothing else moved: data flows both ways on the monotonic lifetimes.
    assert!(from_peer(&mut s, &mut h, m1, local, "8.8.8.8:1", b"still here").is_some());
    let a = s.allocations().next().unwrap();
    assert_eq!(a.expires(), M0.plus_secs(600));

    // It jumps back, an hour behind: the credential is valid again.
    let m2 = M0.plus_secs(200);
    c.wall = Some(UnixTime(W0 + 200 - 3600));
    let r = c.refresh(&mut s, &mut h, m2, 600);
    assert_eq!(r.class(), Class::Success, "{:?}", r.refusal);
    assert_eq!(s.allocations().next().unwrap().expires(), m2.plus_secs(600));

    // The permission (300 s) and the channel (600 s) run on the monotonic clock
    // from when they were made, whatever the wall clock said in between.
    let at = |secs| M0.plus_secs(secs);
    s.handle_timeout(at(299), &mut h);
    assert!(from_peer(&mut s, &mut h, at(299), local, "8.8.8.8:1", b"x").is_some());
    assert!(
        from_peer(&mut s, &mut h, at(301), local, "8.8.8.8:1", b"x").is_none(),
        "the permission ended 300 s after it was made"
    );
    // And the allocation ends 600 s after its last refresh.
    let mut now = m2;
    while let Some(t) = s.poll_timeout() {
        if t > m2.plus_secs(601) {
            break;
        }
        now = t;
        s.handle_timeout(now, &mut h);
    }
    assert!(now >= m2.plus_secs(600));
    assert_eq!(s.allocation_count(), 0);
}
