//! The "Relay usage" page on the admin port, in headless Chromium (Debian's
//! `chromium`) while two clients relay through coturn's echo peer: the script
//! fills the cards, the per-user and allocation tables and the plot from the
//! admin port alone, shows client text (a username with markup) as text, and a
//! screenshot is kept at `target/artifacts/relay-usage.png`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::Server;
use common::bridge::TempDir;
use common::tools::{PEER_IP, Peer, ensure_package, run_with_timeout};

const USER: &str = "<b>bold</b>";

fn chromium(dir: &TempDir, args: &[&str], url: &str) -> (bool, String) {
    let profile = dir.path().join("profile");
    run_with_timeout(
        Command::new("/usr/bin/chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--virtual-time-budget=6000",
                &format!("--user-data-dir={}", profile.display()),
            ])
            .args(args)
            .arg(url)
            .env("HOME", dir.path()),
        Duration::from_secs(60),
    )
}

/// The text of the element with `id` in a DOM dump.
fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    let rest = &dom[start..];
    let open = rest.find('>').unwrap() + 1;
    let close = rest[open..].find('<').unwrap();
    &rest[open..open + close]
}

#[test]
fn chromium_draws_the_usage_page_from_the_admin_port() {
    ensure_package("/usr/bin/chromium", "chromium");
    let peer = Peer::start();
    let server = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        "--user",
        &format!("{USER}:pw"),
        "--allow-peer",
        "127.0.0.0/8",
        "--realm",
        "TANDBERG",
    ]);
    let addr = server.addr().to_string();
    let peer_addr = format!("{PEER_IP}:{}", peer.1);
    let load = std::thread::spawn(move || {
        run_with_timeout(
            Command::new(env!("CARGO_BIN_EXE_causeway")).args([
                "load",
                "--server",
                &addr,
                "--user",
                &format!("{USER}:pw"),
                "--peer",
                &peer_addr,
                "--clients",
                "2",
                "--rate",
                "200",
                "--size",
                "500",
                "--duration",
                "14",
            ]),
            Duration::from_secs(60),
        )
    });
    // A few seconds of samples first.
    std::thread::sleep(Duration::from_secs(5));
    let url = format!("http://{}/", server.admin_addr());
    let dir = TempDir::new("usage-page");

    let (ok, dom) = chromium(&dir, &["--dump-dom"], &url);
    assert!(ok, "{dom}");
    assert_eq!(text_of(&dom, "realm"), "TANDBERG");
    assert_eq!(text_of(&dom, "in-use"), "2", "two allocations relaying");
    assert_eq!(text_of(&dom, "state"), "accepting allocations");
    assert!(
        text_of(&dom, "rate").ends_with("bit/s"),
        "{}",
        text_of(&dom, "rate")
    );
    assert_ne!(text_of(&dom, "rate"), "0 bit/s");
    let line = dom
        .split("id=\"rate-line\"")
        .nth(1)
        .and_then(|r| r.split("points=\"").nth(1))
        .and_then(|r| r.split('"').next())
        .unwrap_or_default();
    assert!(
        line.split(' ').count() >= 3,
        "the plot has points: {line:?}"
    );
    // The username is shown as text, its markup escaped, in both tables.
    assert_eq!(dom.matches("&lt;b&gt;bold&lt;/b&gt;").count(), 3, "{dom}");
    assert!(!dom.contains("<b>bold</b>"));

    let shot = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/artifacts");
    std::fs::create_dir_all(&shot).unwrap();
    let png = shot.join("relay-usage.png");
    let _ = std::fs::remove_file(&png);
    let (ok, out) = chromium(
        &dir,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1000,1000",
        ],
        &url,
    );
    assert!(ok, "{out}");
    let bytes = std::fs::read(&png).expect("a screenshot");
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
        "{}",
        bytes.len()
    );
    let (ok, out) = load.join().unwrap();
    assert!(ok, "{out}");
}
