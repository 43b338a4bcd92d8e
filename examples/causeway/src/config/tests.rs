//! The configuration's tests: the embedded default, unknown keys, every field
//! named when refused, partial files and flags.

use std::net::SocketAddr;

use super::*;

fn default() -> Config {
    Config::parse(DEFAULT_TOML, "d").unwrap()
}

fn plan(args: &ServeArgs) -> Result<Plan, ConfigError> {
    Plan::try_from(&Config::load(args)?)
}

#[test]
fn embedded_default_is_valid_and_loopback() {
    let p = plan(&ServeArgs::default()).unwrap();
    assert_eq!(
        p.relay.listen,
        vec!["127.0.0.1:3478".parse::<SocketAddr>().unwrap()]
    );
    assert!(p.relay.listen.iter().all(|a| a.ip().is_loopback()));
    assert!(p.admin.ip().is_loopback());
    assert!(p.demo_user);
    assert_eq!(
        (p.relay.turn.port_min, p.relay.turn.port_max),
        (49152, 65535)
    );
    assert_eq!(
        p.relay.relay_addresses().0,
        Some("127.0.0.1".parse().unwrap())
    );
    assert_eq!(p.relay.own_listeners, vec![p.admin]);
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let e = Config::parse("listen = []\nlisten_typo = 1\n", "test.toml").unwrap_err();
    assert!(e.to_string().contains("listen_typo"), "{e}");
}

#[test]
fn bad_values_name_the_field() {
    let check = |f: &dyn Fn(&mut Config), name: &str| {
        let mut cfg = default();
        f(&mut cfg);
        let e = Plan::try_from(&cfg).unwrap_err().to_string();
        assert!(e.starts_with(&format!("`{name}`")), "{name}: {e}");
    };
    check(&|c| c.log_level = "loud".into(), "log_level");
    check(&|c| c.listen.push(c.listen[0]), "listen");
    check(&|c| c.listen.clear(), "listen");
    check(&|c| c.relay_range = "30000-20000".into(), "relay_range");
    check(&|c| c.relay_range = "0-10".into(), "relay_range");
    check(&|c| c.relay_range = "a-b".into(), "relay_range");
    check(&|c| c.user = vec!["nopassword".into()], "user");
    check(&|c| c.user = vec!["a:1".into(), "a:2".into()], "user");
    check(&|c| c.admin = "127.0.0.1:443".parse().unwrap(), "admin");
    check(&|c| c.allow_peer = vec!["10.0.0.0/33".into()], "allow_peer");
    check(&|c| c.deny_peer = vec!["nonsense".into()], "deny_peer");
    check(
        &|c| c.allow_local_peer = vec!["127.0.0.1".into()],
        "allow_local_peer",
    );
    check(
        &|c| c.allow_local_peer = vec!["127.0.0.1:4400-4500".into()],
        "allow_local_peer",
    );
    check(
        &|c| c.allow_local_peer = vec![format!("{}", c.listen[0])],
        "allow_local_peer",
    );
    check(
        &|c| c.external_ip = vec!["2001:db8::1".parse().unwrap()],
        "external_ip",
    );
    check(
        &|c| c.listen = vec!["0.0.0.0:3478".parse().unwrap()],
        "relay_ip",
    );
    check(
        &|c| {
            c.demo_user = false;
        },
        "user",
    );
    check(&|c| c.max_lifetime = 10, "max_lifetime");
    check(&|c| c.nonce_lifetime = 0, "nonce_lifetime");
    check(&|c| c.realm = String::new(), "realm");
    check(
        &|c| c.relay_ip = vec!["0.0.0.0".parse().unwrap()],
        "relay_ip",
    );
    check(
        &|c| c.external_ip = vec!["224.0.0.1".parse().unwrap()],
        "external_ip",
    );
    // The relay range holding the listener's port on the relay address.
    check(&|c| c.relay_range = "3000-4000".into(), "listen");
    // An entry over the admin port (a listener of the program's, not TURN's).
    check(
        &|c| c.allow_local_peer = vec![format!("{}", c.admin)],
        "allow_local_peer",
    );
}

#[test]
fn every_key_is_optional_section_by_section() {
    let cfg = Config::parse("[quota]\nper_user = 3\n[tcp]\nmax_per_source = 10\n", "t").unwrap();
    assert_eq!(cfg.quota.per_user, Some(3));
    assert_eq!(cfg.quota.total, None, "machine-derived");
    assert_eq!(cfg.tcp.max_per_source, 10);
    assert_eq!(
        cfg.tcp.max_connections,
        TcpConfig::default().max_connections
    );
    assert_eq!(
        cfg.limits.unauth_burst,
        LimitsConfig::default().unauth_burst
    );
    assert_eq!(cfg.listen, Config::default().listen);
    // Valid once credentials come from anywhere.
    let mut with_user = cfg.clone();
    with_user.user = vec!["a:b".into()];
    Plan::try_from(&with_user).unwrap();
    let e = Config::parse("user = [\"a:b\"]\n[quota]\nper_user = 0\n", "t")
        .map(|c| Plan::try_from(&c))
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().starts_with("`quota.per_user`"), "{e}");
}

#[test]
fn a_file_holds_some_settings_and_flags_give_the_rest() {
    let dir = std::env::temp_dir().join(format!("causeway-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("partial.toml");
    // Neither `listen` nor `user`: the flags give them.
    std::fs::write(
        &file,
        "realm = \"TANDBERG\"\nrelay_range = \"24000-29999\"\n",
    )
    .unwrap();
    let args = ServeArgs {
        config: Some(file.clone()),
        listen: vec!["127.0.0.1:5000".parse().unwrap()],
        user: vec!["callbridge:s3cret".into()],
        ..ServeArgs::default()
    };
    let p = plan(&args).unwrap();
    assert_eq!(p.relay.turn.realm.as_str(), "TANDBERG");
    assert_eq!(p.relay.listen, args.listen);
    assert_eq!(
        (p.relay.turn.port_min, p.relay.turn.port_max),
        (24000, 29999)
    );
    // Without any credentials the result is refused, naming the field.
    let args = ServeArgs {
        config: Some(file),
        ..ServeArgs::default()
    };
    let e = plan(&args).unwrap_err().to_string();
    assert!(e.starts_with("`user`"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn listen_ports_inside_the_relay_range_are_refused() {
    let mut cfg = default();
    cfg.listen = vec!["127.0.0.1:50000".parse().unwrap()];
    let e = Plan::try_from(&cfg).unwrap_err().to_string();
    assert!(
        e.starts_with("`listen`") && e.contains("relay_range"),
        "{e}"
    );
    // On another address than the relay's, or outside the range: fine.
    cfg.relay_ip = vec!["127.0.0.2".parse().unwrap()];
    Plan::try_from(&cfg).unwrap();
    cfg.relay_ip.clear();
    cfg.listen = vec!["127.0.0.1:3478".parse().unwrap()];
    Plan::try_from(&cfg).unwrap();
    // Port 0 takes what the system gives; a relay socket skips a taken port.
    cfg.listen = vec!["127.0.0.1:0".parse().unwrap()];
    Plan::try_from(&cfg).unwrap();
}

#[test]
fn flags_override_the_file() {
    let args = ServeArgs {
        listen: vec!["127.0.0.1:5000".parse().unwrap()],
        software: Some(String::new()),
        realm: Some("TANDBERG".into()),
        user: vec!["alice:pw".into()],
        relay_range: Some("24000-29999".into()),
        ..ServeArgs::default()
    };
    let p = plan(&args).unwrap();
    assert_eq!(p.relay.listen, args.listen);
    assert_eq!(p.relay.turn.software.as_str(), "");
    assert_eq!(p.relay.turn.realm.as_str(), "TANDBERG");
    assert!(!p.demo_user, "real users replace the demo user");
    assert_eq!(
        p.users,
        vec![("alice".to_string(), UserSecret::Password("pw".to_string()))]
    );
    assert_eq!(
        (p.relay.turn.port_min, p.relay.turn.port_max),
        (24000, 29999)
    );
}

#[test]
fn one_shared_secret_or_a_list_during_a_rotation() {
    let one = Config::parse("shared_secret = \"s1\"\n", "t").unwrap();
    assert_eq!(one.shared_secret, vec!["s1".to_string()]);
    let p = Plan::try_from(&one).unwrap();
    assert_eq!(p.relay.turn.shared_secrets.len(), 1);
    let two = Config::parse("shared_secret = [\"old\", \"new\"]\n", "t").unwrap();
    let p = Plan::try_from(&two).unwrap();
    assert_eq!(p.relay.turn.shared_secrets[1].as_slice(), b"new");
    let five = Config::parse("shared_secret = [\"a\", \"b\", \"c\", \"d\", \"e\"]\n", "t").unwrap();
    let e = Plan::try_from(&five).unwrap_err().to_string();
    assert!(e.starts_with("`shared_secret`"), "{e}");
    let none = Config::parse("shared_secret = \"\"\nuser = [\"a:b\"]\n", "t").unwrap();
    assert!(none.shared_secret.is_empty());
}

#[test]
fn bandwidth_limits_with_default_bursts_and_named_refusals() {
    let base = "listen = [\"127.0.0.1:3478\"]\ndemo_user = true\n";
    let c = Config::parse(
        &format!("{base}[bandwidth]\nallocation_bytes_per_sec = 250000\ncapacity_bytes_per_sec = 100000000\n"),
        "t",
    )
    .unwrap();
    let p = Plan::try_from(&c).unwrap();
    let a = p.relay.turn.allocation_bandwidth.unwrap();
    assert_eq!((a.bytes_per_sec, a.burst_bytes), (250_000, 62_500));
    assert_eq!(p.relay.turn.user_bandwidth, None);
    assert_eq!(p.relay.turn.capacity_bytes_per_sec, Some(100_000_000));
    for (toml, name) in [
        ("user_burst_bytes = 9000", "bandwidth.user_burst_bytes"),
        (
            "allocation_bytes_per_sec = 0",
            "bandwidth.allocation_bytes_per_sec",
        ),
        (
            "allocation_bytes_per_sec = 9000\nallocation_burst_bytes = 100",
            "bandwidth.allocation_burst_bytes",
        ),
    ] {
        let c = Config::parse(&format!("{base}[bandwidth]\n{toml}\n"), "t").unwrap();
        let e = Plan::try_from(&c).unwrap_err().to_string();
        assert!(e.contains(name), "{toml}: {e}");
    }
}

#[test]
fn users_may_be_given_by_their_keys() {
    use turn_core::credentials::{Algorithm, Key};
    let md5 = Key::derive(Algorithm::Md5, "cmsturn", "TANDBERG", "pw");
    let sha = Key::derive(Algorithm::Sha256, "cmsturn", "TANDBERG", "pw");
    let hex = |k: &Key| -> String { k.as_bytes().iter().map(|b| format!("{b:02x}")).collect() };
    let mut c = default();
    c.user = vec![
        format!("cmsturn:0x{}", hex(&md5)),
        format!("cmsturn:0x{}", hex(&sha)),
        "plain:0x1234".into(),
    ];
    let p = Plan::try_from(&c).unwrap();
    assert_eq!(p.users[0], ("cmsturn".into(), UserSecret::Key(md5)));
    assert_eq!(p.users[1], ("cmsturn".into(), UserSecret::Key(sha)));
    assert_eq!(
        p.users[2],
        ("plain".into(), UserSecret::Password("0x1234".into())),
        "not a key's length: a password"
    );
    c.user = vec![format!("cmsturn:0x{}", hex(&md5)), "cmsturn:pw".into()];
    assert!(
        Plan::try_from(&c)
            .unwrap_err()
            .to_string()
            .contains("listed twice")
    );
    c.user = vec![format!("cmsturn:0x{}", "zz".repeat(16))];
    assert!(
        Plan::try_from(&c)
            .unwrap_err()
            .to_string()
            .contains("not hexadecimal")
    );
}

#[test]
fn placeholders_and_short_secrets() {
    let mut c = default();
    c.user = vec!["cmsturn:REPLACE-WITH-A-GENERATED-PASSWORD".into()];
    let e = Plan::try_from(&c).unwrap_err().to_string();
    assert!(
        e.starts_with("`user`") && !e.contains("REPLACE-WITH"),
        "{e}"
    );
    let mut c = default();
    c.shared_secret = vec!["REPLACE-NEW".into()];
    assert!(
        Plan::try_from(&c)
            .unwrap_err()
            .to_string()
            .starts_with("`shared_secret`")
    );
    c.shared_secret = vec!["short".into()];
    let p = Plan::try_from(&c).unwrap();
    assert!(
        p.warnings
            .iter()
            .any(|w| w.starts_with("`shared_secret`: a secret of 5 bytes")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn a_toml_error_names_the_place_and_never_the_text() {
    let text = "listen = [\"127.0.0.1:3478\"]\nrealm = \"x\"\nuser = \"alice:hunter2\"\n";
    let e = Config::parse(text, "/etc/causeway/causeway.toml")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("/etc/causeway/causeway.toml:3:"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
}

/// What the file leaves out is what the libraries default to: one default per
/// setting, kept in the type that uses it.
#[test]
fn what_the_file_leaves_out_is_the_librarys_default() {
    let c = Config {
        user: vec!["alice:a-long-enough-password".into()],
        ..Config::default()
    };
    let p = Plan::try_from(&c).unwrap();
    let lib = turn_core::adapters::std::Settings::default();
    assert_eq!(p.relay.listen, lib.listen);
    assert_eq!(p.relay.tcp, lib.tcp);
    let (a, b) = (&p.relay.turn, &lib.turn);
    assert_eq!(
        (
            a.port_min,
            a.port_max,
            a.max_lifetime_secs,
            a.nonce_lifetime_secs
        ),
        (
            b.port_min,
            b.port_max,
            b.max_lifetime_secs,
            b.nonce_lifetime_secs
        )
    );
    assert_eq!(
        (
            a.legacy_channels,
            a.classic_stun,
            a.unauth_burst,
            a.unauth_per_sec
        ),
        (
            b.legacy_channels,
            b.classic_stun,
            b.unauth_burst,
            b.unauth_per_sec
        )
    );
    assert_eq!(
        (
            a.unauth_global_per_sec,
            a.unauth_verified_per_sec,
            a.tcp_allocations
        ),
        (
            b.unauth_global_per_sec,
            b.unauth_verified_per_sec,
            b.tcp_allocations
        )
    );
    let web = proxy_core::runtime::ProxySettings::default();
    let h = HttpConfig::default();
    assert_eq!(h.max_per_source, web.max_per_source);
    assert_eq!(h.deadlines(), web.deadlines);
    assert_eq!(
        (h.bridge_keepalive, h.bridge_keepalive_secs),
        (web.bridge_keepalive, web.bridge_keepalive_idle.as_secs())
    );
}
