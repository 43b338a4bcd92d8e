//! A real browser through the web proxy: headless Chromium (Debian's `chromium`,
//! installed by `.ci/run`, or here if missing) trusts the test CA through an NSS
//! database made for it, loads the join page over HTTPS through `causeway`, the
//! page opens a WSS to the web bridge and exchanges a message, and the test reads
//! the result the page reports. A screenshot is kept in
//! `target/artifacts/chromium-web-proxy.png`.

mod common;

use common::bridge::{TestCa, start_bridge};
use common::chromium::{Chromium, trust_ca};
use common::wait::PATIENCE;
use common::{ensure_package, start_front};

const JOIN: &str = "join.example.test";

#[test]
fn chromium_loads_the_join_page_and_echoes_over_wss() {
    ensure_package("/usr/bin/chromium", "chromium");
    ensure_package("/usr/bin/certutil", "libnss3-tools");

    let ca = TestCa::new();
    let bridge = start_bridge(&ca.leaf(&["localhost"]));
    let (server, dir, tls) = start_front(
        &ca,
        JOIN,
        &format!("{JOIN}=https://localhost:{}", bridge.port()),
    );

    // The browser's own NSS database, trusting the test CA.
    let home = dir.path().join("home");
    trust_ca(&home, &dir.path().join("ca.pem"));
    let chromium = Chromium::start(
        &home,
        &[&format!(
            "--host-resolver-rules=MAP {JOIN} 127.0.0.1:{}",
            tls.port()
        )],
    );
    // A page at the join URL, and a DevTools session to it.
    let mut page = chromium.open(&format!("https://{JOIN}/"));
    let title = page.poll("document.title", 2 * PATIENCE, |t| {
        t.starts_with("echo:") || t == "ws error"
    });
    // Keep a screenshot as an artifact.
    page.screenshot("chromium-web-proxy.png");
    assert_eq!(
        title,
        "echo: hello through causeway",
        "{}\n--- chromium ---\n{}",
        server.log_tail(),
        chromium.output.tail(40)
    );
}
