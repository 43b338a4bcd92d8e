//! The TURN server on the embedded stacks, smoltcp and embassy-net, each on a TAP
//! interface inside a network namespace this test creates: coturn's
//! `turnutils_uclient` allocates, binds channels (or sends indications) and relays
//! packets through it to `turnutils_peer`, on the other side of the TAP; every
//! packet must come back.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use causeway_testkit::Output;
use causeway_testkit::tools::{coturn_tool, run_with_timeout};
use causeway_testkit::wait::{self, PATIENCE};

struct Netns(String);

impl Netns {
    fn run(&self, args: &[&str]) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Runs `args` inside the namespace with a time limit; (success, output).
    fn output(&self, args: &[&str], limit: Duration) -> (bool, String) {
        run_with_timeout(
            Command::new("ip")
                .args(["netns", "exec", &self.0])
                .args(args),
            limit,
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

struct Kill(Child, Output);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if std::thread::panicking() {
            eprintln!("--- output ---\n{}", self.1.tail(40));
        }
    }
}

/// Starts `args` inside `ns`, its output kept.
fn spawn_in(ns: &Netns, args: &[&str]) -> Kill {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Output::of(&mut child);
    Kill(child, out)
}

#[test]
fn uclient_relays_through_smoltcp_on_a_tap() {
    relay_through(env!("CARGO_BIN_EXE_smoltcp-turn"), "smol");
}

#[test]
fn uclient_relays_through_embassy_net_on_a_tap() {
    relay_through(env!("CARGO_BIN_EXE_embassy-turn"), "emb");
}

fn relay_through(bin: &str, tag: &str) {
    let uclient = coturn_tool("turnutils_uclient");
    let peer = coturn_tool("turnutils_peer");
    let ns = Netns(format!("cw-{tag}-{}", std::process::id()));
    let _ = Command::new("ip")
        .args(["netns", "del", &ns.0])
        .stderr(Stdio::null())
        .status();
    assert!(
        Command::new("ip")
            .args(["netns", "add", &ns.0])
            .status()
            .unwrap()
            .success(),
        "needs root and iproute2"
    );
    assert!(ns.run(&["ip", "link", "set", "lo", "up"]));
    assert!(
        ns.run(&["ip", "tuntap", "add", "dev", "cwtap0", "mode", "tap"]),
        "needs /dev/net/tun"
    );
    assert!(ns.run(&["ip", "link", "set", "cwtap0", "up"]));
    assert!(ns.run(&["ip", "addr", "add", "192.168.69.100/24", "dev", "cwtap0"]));

    let server = spawn_in(
        &ns,
        &[
            bin,
            "cwtap0",
            "192.168.69.1/24",
            "alice:pw",
            "192.168.69.0/24",
        ],
    );
    let peer = spawn_in(&ns, &[&peer, "-L", "192.168.69.100", "-p", "3480"]);
    // Ready when the stack on the TAP answers a Binding, and the peer's socket
    // is bound (what reaches it waits there).
    let stunclient = coturn_tool("turnutils_stunclient");
    let answered = wait::holds(PATIENCE, || {
        ns.output(
            &[&stunclient, "-p", "3478", "192.168.69.1"],
            Duration::from_secs(10),
        )
        .1
        .contains("reflexive addr")
    });
    assert!(
        answered,
        "the TURN server on the TAP never answered:\n{}",
        server.1.tail(40)
    );
    let bound = wait::holds(PATIENCE, || {
        ns.output(&["ss", "-Hlun", "sport = :3480"], Duration::from_secs(10))
            .1
            .contains("3480")
    });
    assert!(bound, "turnutils_peer never bound:\n{}", peer.1.tail(20));
    for flags in [&[][..], &["-s"][..]] {
        let mut args = vec![uclient.as_str()];
        args.extend(flags);
        args.extend([
            "-u",
            "alice",
            "-w",
            "pw",
            "-e",
            "192.168.69.100",
            "-r",
            "3480",
            "-n",
            "30",
            "-m",
            "2",
            "-l",
            "160",
            "192.168.69.1",
        ]);
        let (_, text) = ns.output(&args, 2 * PATIENCE);
        assert!(
            text.contains("Total lost packets 0 (0.000000%)")
                && text.contains("tot_send_msgs=60, tot_recv_msgs=60"),
            "{flags:?}: {text}\n--- the server ---\n{}",
            server.1.tail(40)
        );
    }
}
