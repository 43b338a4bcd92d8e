//! The "Relay usage" page on the admin port, in headless Chromium (Debian's
//! `chromium`) while two clients relay through coturn's echo peer: the script
//! fills the cards, the per-user and allocation tables and the plot from the
//! admin port alone (with the admin token given in the address's fragment),
//! shows client text (a username with markup) as text, and a screenshot is
//! kept at `target/artifacts/relay-usage.png`.

mod common;

use std::process::{Command, Stdio};

use common::bridge::TempDir;
use common::chromium::Chromium;
use common::tools::{PEER_IP, Peer, ensure_package};
use common::wait::PATIENCE;
use common::{Output, Server};

const USER: &str = "<b>bold</b>";

/// The text of the element with `id` in a DOM dump.
fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {dom}"));
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
    // Two clients relaying until the test has seen the page (then stopped).
    let mut load = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args([
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
            "600",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let load_out = Output::of(&mut load);
    server.wait_status("two allocations relaying", |s| {
        s["allocations_in_use"] == 2 && s["totals"]["to_peer_packets"].as_u64() > Some(0)
    });
    // The token in the address's fragment, as an operator would paste it.
    let url = format!(
        "http://{}/#token={}",
        server.admin_addr(),
        server.admin_token()
    );
    let dir = TempDir::new("usage-page");
    let chromium = Chromium::start(dir.path(), &[]);
    let mut page = chromium.open(&url);
    // The page draws from /status and /history: until it shows both relaying,
    // a bit rate, and three points of the plot.
    let drawn = page.poll(
        "(() => { const l = document.getElementById('rate-line'); \
           const pts = l ? (l.getAttribute('points') || '').trim().split(' ').filter(p => p).length : 0; \
           return document.getElementById('in-use').textContent + '|' + \
             document.getElementById('rate').textContent + '|' + pts; })()",
        PATIENCE,
        |v| {
            let mut f = v.split('|');
            let (in_use, rate, points) = (f.next(), f.next(), f.next());
            in_use == Some("2")
                && rate.is_some_and(|r| r.ends_with("bit/s") && r != "0 bit/s")
                && points.and_then(|p| p.parse::<usize>().ok()) >= Some(3)
        },
    );
    let dom = page.eval("document.documentElement.outerHTML");
    page.screenshot("relay-usage.png");
    assert!(
        drawn.starts_with("2|") && !drawn.contains("|0 bit/s|"),
        "the page shows {drawn}\nload: {}\n{dom}",
        load_out.tail(10)
    );
    assert_eq!(text_of(&dom, "realm"), "TANDBERG");
    assert_eq!(text_of(&dom, "state"), "accepting allocations");
    // The username is shown as text, its markup escaped, in both tables.
    assert_eq!(dom.matches("&lt;b&gt;bold&lt;/b&gt;").count(), 3, "{dom}");
    assert!(!dom.contains("<b>bold</b>"));
    // Each allocation names the address its client reached and its peer.
    assert_eq!(dom.matches(&format!("<td>{addr}</td>")).count(), 2, "{dom}");
    assert!(dom.contains(&format!("<td>{peer_addr}</td>")), "{dom}");
    // Grouped by peer (a meeting's browsers relay with the call bridge): one
    // row, both allocations.
    page.eval(
        "document.getElementById('group-by').value = 'peer'; \
         document.getElementById('group-by').onchange()",
    );
    let grouped = page.poll(
        "(() => { const r = document.querySelector('#groups tbody tr'); \
           return r ? [...r.cells].map((c) => c.textContent).slice(0, 2).join('|') : ''; })()",
        PATIENCE,
        |v| !v.contains("bold"),
    );
    assert_eq!(grouped, format!("{peer_addr}|2"));
    // The axis labels fit the plot, the widest rate one included.
    let fits = page.eval(
        "(() => { const svg = document.getElementById('plot'); \
         document.getElementById('rate-max').textContent = bits(999.9e6); \
         document.getElementById('allocs-max').textContent = '99999'; \
         const w = svg.viewBox.baseVal.width; \
         return [...svg.querySelectorAll('text')].map((t) => { const b = t.getBBox(); \
           return b.x >= 0 && b.x + b.width <= w ? 'ok' : t.textContent; }).join(' '); })()",
    );
    assert!(
        fits.split(' ').all(|f| f == "ok"),
        "labels cut at the plot's edge: {fits}"
    );
    // /status lists a page, heaviest first, and counts what matched; the
    // summaries cover every allocation whatever the page holds.
    let page_of = |query: &str| {
        let text = server.admin("GET", &format!("/status?{query}"));
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str::<serde_json::Value>(body).unwrap_or_else(|e| panic!("{e}: {text}"))
    };
    let one = page_of("limit=1");
    assert_eq!(
        one["allocations"].as_array().map(Vec::len),
        Some(1),
        "{one}"
    );
    assert_eq!(one["allocations_matching"], 2, "{one}");
    assert_eq!(one["groups"]["peer"]["top"][0]["allocations"], 2, "{one}");
    let both = page_of("limit=2");
    let weight = |a: &serde_json::Value| {
        a["to_peer_bytes"].as_u64().unwrap_or(0) + a["from_peer_bytes"].as_u64().unwrap_or(0)
    };
    assert!(
        weight(&both["allocations"][0]) >= weight(&both["allocations"][1]),
        "{both}"
    );
    let past = page_of("limit=1&offset=2");
    assert_eq!(
        past["allocations"].as_array().map(Vec::len),
        Some(0),
        "{past}"
    );
    assert_eq!(past["allocations_matching"], 2, "{past}");
    let none = page_of("user=nobody");
    assert_eq!(none["allocations_matching"], 0, "{none}");
    let refused = server.admin("GET", "/status?limit=many");
    assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
    let _ = load.kill();
    let _ = load.wait();
}
