//! The TURN server on the embedded stacks, smoltcp and embassy-net, each on a TAP
//! interface inside a network namespace this test creates: coturn's
//! `turnutils_uclient` allocates, binds channels (or sends indications) and relays
//! packets through it to `turnutils_peer`, on the other side of the TAP; every
//! packet must come back.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Netns(String);

impl Netns {
    fn run(&self, args: &[&str]) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn coturn_tool(name: &str) -> String {
    let path = format!("/usr/bin/{name}");
    if !std::path::Path::new(&path).exists() {
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-q", "coturn"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
    }
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} missing: install Debian's coturn"
    );
    path
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

    let mut server = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            bin,
            "cwtap0",
            "192.168.69.1/24",
            "alice:pw",
            "192.168.69.0/24",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    use std::io::Read;
    let _ = server.stdout.as_mut().unwrap().read(&mut first);
    let _server = Kill(server);
    let _peer = Kill(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.0,
                &peer,
                "-L",
                "192.168.69.100",
                "-p",
                "3480",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));
    for flags in [&[][..], &["-s"][..]] {
        let start = Instant::now();
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.0, &uclient])
            .args(flags)
            .args([
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
            ])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(start.elapsed() < Duration::from_secs(60));
        assert!(
            text.contains("Total lost packets 0 (0.000000%)"),
            "{flags:?}: {text}"
        );
        assert!(
            text.contains("tot_send_msgs=60, tot_recv_msgs=60"),
            "{flags:?}: {text}"
        );
    }
}
