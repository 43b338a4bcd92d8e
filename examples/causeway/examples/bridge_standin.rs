//! The stand-in web bridge of the tests, as a program for the proxy benchmark:
//! writes a throwaway CA and certificates into a directory, serves HTTPS and WSS
//! echo on loopback, and prints its port.
//!
//! `cargo run --release -p causeway --example bridge_standin -- DIR [SNDBUF]`
//! (SNDBUF: each connection's socket send buffer, in bytes)

use causeway_testkit::bridge;

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("usage: bridge_standin DIR"));
    std::fs::create_dir_all(&dir).expect("create DIR");
    let ca = bridge::TestCa::new();
    // Also `localhost`: meeting-compare.sh's inside nginx shows it to the edge.
    let front = ca.leaf(&["join.example.test", "localhost"]);
    std::fs::write(dir.join("ca.pem"), &ca.cert_pem).expect("write");
    std::fs::write(dir.join("front.pem"), &front.cert_pem).expect("write");
    std::fs::write(dir.join("front.key"), &front.key_pem).expect("write");
    let sndbuf = std::env::args()
        .nth(2)
        .map(|n| n.parse().expect("SNDBUF: bytes"));
    let addr = bridge::start_bridge_with(&ca.leaf(&["localhost"]), sndbuf);
    println!("{}", addr.port());
    loop {
        std::thread::park();
    }
}
