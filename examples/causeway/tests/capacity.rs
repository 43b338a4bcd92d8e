//! A total of allocations set by hand under a low open-file limit: the start
//! raises the soft limit to the hard one (as it does when the total is
//! derived), and says once, naming the bound, when the total is still more
//! than the machine holds. Before, a set total skipped the raise, and a
//! service under the common soft limit of 1024 refused every allocation past
//! the thousandth with a relay socket error blaming `relay_ip`.

mod common;

use std::process::{Command, Stdio};

use common::Output;
use common::wait::PATIENCE;

/// The (soft, hard) open-file limits of process `pid`.
fn nofile(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut n = line
        .split_whitespace()
        .filter_map(|w| w.parse::<u64>().ok());
    (n.next().unwrap(), n.next().unwrap())
}

#[test]
fn a_set_total_raises_the_open_file_limit_and_is_checked_against_it() {
    let (_, hard) = nofile(std::process::id());
    if hard < 4096 {
        eprintln!("skipped: the hard open-file limit here is {hard}");
        return;
    }
    let dir = common::bridge::TempDir::new("capacity");
    // More than the default relay range (16,384 ports on one address) holds.
    let config = dir.write(
        "c.toml",
        "listen = [\"127.0.0.1:0\"]\nuser = [\"alice:a-long-enough-password\"]\n\
         admin = \"127.0.0.1:0\"\n[quota]\ntotal = 40000\n",
    );
    // prlimit execs causeway in its own process: the soft limit it starts with.
    let mut child = Command::new("prlimit")
        .arg(format!("--nofile=1024:{hard}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_causeway"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prlimit (util-linux)");
    let log = Output::new();
    log.collect(child.stderr.take().unwrap());
    let out = Output::new();
    out.collect(child.stdout.take().unwrap());
    let ready = out.wait_for("causeway: ready", PATIENCE);
    let limits = nofile(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready, "not ready: {}\n{}", out.tail(10), log.tail(20));
    assert_eq!(limits, (hard, hard), "the soft limit was not raised");
    let said = log
        .lines()
        .into_iter()
        .find(|l| l.contains("the allocation total 40000 is more than this machine holds"));
    let said = said.unwrap_or_else(|| panic!("no warning: {}", log.tail(20)));
    assert!(said.contains("WARN") && said.contains("Bound:"), "{said}");
}
