//! Metrics as Prometheus sees them: Debian's `promtool` finds nothing against
//! its conventions in `/metrics`, and a real Prometheus server scrapes the admin
//! port and answers queries about an allocation made through the relay.

mod common;

use std::process::Command;

use common::wait::PATIENCE;

use common::Server;
use common::bridge::TempDir;
use common::prometheus::Prometheus;
use common::tools::run_with_timeout;

#[test]
fn prometheus_scrapes_the_admin_port_and_promtool_finds_nothing_to_fix() {
    let server = Server::start(&["--listen", "127.0.0.1:0", "--user", "alice:pw"]);
    let admin = server.admin_addr();
    let dir = TempDir::new("prometheus");
    let prometheus = Prometheus::start(dir.path(), std::slice::from_ref(&admin));

    let metrics = common::http_get(&admin, "/metrics");
    let body = metrics.split("\r\n\r\n").nth(1).unwrap().to_string();
    let file = dir.write("metrics.txt", &body);
    let (ok, out) = run_with_timeout(
        Command::new("sh").args([
            "-c",
            &format!("promtool check metrics < {}", file.display()),
        ]),
        PATIENCE,
    );
    assert!(ok && out.trim().is_empty(), "promtool: {out}");

    if let Err(e) = prometheus.wait_for("up{job=\"causeway\"}", 1.0, PATIENCE) {
        panic!("the target is not up: {e}");
    }
    let (ok, out) = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_causeway")).args([
            "allocate",
            "--server",
            &server.addr().to_string(),
            "--user",
            "alice:pw",
        ]),
        PATIENCE,
    );
    assert!(ok, "{out}");
    if let Err(e) = prometheus.wait_for("causeway_allocations_created_total", 1.0, PATIENCE) {
        panic!("Prometheus never saw the allocation: {e}");
    }
    assert_eq!(prometheus.query("causeway_ready", PATIENCE), Some(1.0));
    // Bounded labels: no series carries a username.
    assert_eq!(
        prometheus.query(
            "count({job=\"causeway\", user!=\"\"}) or vector(0)",
            PATIENCE
        ),
        Some(0.0),
        "{}",
        prometheus.explain()
    );
}
