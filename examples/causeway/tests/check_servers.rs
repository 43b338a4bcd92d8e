//! `causeway check --servers FILE`: the reference's `turnServers/<id>/status`
//! from the command line: each entry's RTT or failure (with its likely cause)
//! and the one a call bridge would choose; exit status 1 when none answers. The
//! call bridge's own `[[turnServers]]` file is read (and the older `[[server]]`
//! one), each CMS `type` as the call bridge tries it.

mod common;

use std::net::UdpSocket;
use std::process::Command;

use common::Server;
use common::bridge::TempDir;
use common::tools::run_with_timeout;
use common::wait::PATIENCE;

fn check(list: &std::path::Path) -> (bool, String) {
    run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_causeway")).args([
            "check",
            "--servers",
            list.to_str().unwrap(),
            // The dead entry takes all of it; the live one answers at once.
            "--timeout",
            "5",
        ]),
        2 * PATIENCE,
    )
}

#[test]
fn every_entry_is_probed_and_the_reachable_one_chosen() {
    let server = Server::start(&["--listen", "127.0.0.1:0", "--user", "cmsturn:pw"]);
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dir = TempDir::new("check-servers");
    let entry = |addr: String| {
        format!(
            "[[server]]\nserver_address = \"{addr}\"\nusername = \"cmsturn\"\npassword = \"pw\"\n\n"
        )
    };
    let dead = silent.local_addr().unwrap().to_string();
    let list = dir.write(
        "servers.toml",
        &(entry(dead.clone()) + &entry(server.addr().to_string())),
    );
    let (ok, out) = check(&list);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("server 1 {dead} udp: failed: no answer")),
        "{out}"
    );
    assert!(
        out.contains(&format!("server 2 {} udp: rtt ", server.addr())),
        "{out}"
    );
    assert!(
        out.contains(&format!("chosen   server 2 {}", server.addr())),
        "{out}"
    );

    let list = dir.write("dead.toml", &entry(dead));
    let (ok, out) = check(&list);
    assert!(!ok, "{out}");
    assert!(out.contains("no TURN server of the list answered"), "{out}");
}

#[test]
fn the_call_bridges_file_is_read_and_an_expressway_entry_falls_back_to_tcp() {
    let server = Server::start(&["--listen", "127.0.0.1:0", "--user", "cmsturn:pw"]);
    // UDP to the entry's address gets no answer; TCP on its override reaches
    // the server (as when a firewall lets TCP 3478 or 443 through, not UDP).
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = silent.local_addr().unwrap();
    let port = server.addr().port();
    let dir = TempDir::new("check-turnservers");
    let list = dir.write(
        "turn-servers.toml",
        &format!(
            "[[turnServers]]\nserverAddress = \"{dead}\"\nclientAddress = \"203.0.113.5\"\n\
             username = \"cmsturn\"\npassword = \"pw\"\ntype = \"expressway\"\n\
             tcpPortNumberOverride = {port}\n"
        ),
    );
    let (ok, out) = check(&list);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "server 1 {dead} udp (clientAddress 203.0.113.5): failed: no answer"
        )),
        "{out}"
    );
    let tcp = format!("server 1 127.0.0.1:{port} tcp, if the first fails");
    assert!(
        out.contains(&format!("{tcp} (clientAddress 203.0.113.5): rtt ")),
        "{out}"
    );
    assert!(out.contains(&format!("chosen   {tcp}")), "{out}");

    // A type the call bridge cannot use is refused when the file is read.
    let list = dir.write(
        "lync.toml",
        &format!(
            "[[turnServers]]\nserverAddress = \"{}\"\nusername = \"cmsturn\"\npassword = \"pw\"\ntype = \"lyncEdge\"\n",
            server.addr()
        ),
    );
    let (ok, out) = check(&list);
    assert!(!ok, "{out}");
    assert!(
        out.contains("entry 1") && out.contains("`lyncEdge`"),
        "{out}"
    );
}
