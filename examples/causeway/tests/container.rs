//! The container image, built and run: `deploy/image/build.sh` makes an image
//! FROM scratch around a static build (no registry needed; the dev profile
//! here, to keep CI short); run with host
//! networking and a mounted configuration, it answers `/readyz`, relays
//! coturn's `turnutils_uclient` over UDP and TCP without loss, and on SIGTERM
//! drains and exits 0. Skipped, saying why, where podman cannot run.

mod common;

use std::net::UdpSocket;
use std::process::Command;

use common::tools::{PEER_IP, Peer, totals};
use common::wait::{self, PATIENCE};
use common::{coturn_tool, ensure_package, run_with_timeout};

const IMAGE: &str = "localhost/causeway:test";

/// Runs podman with `args`; (success, output).
fn podman(args: &[&str]) -> (bool, String) {
    run_with_timeout(Command::new("podman").args(args), 4 * PATIENCE)
}

/// This process's hard limit on open files.
fn files_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

/// How containers run here: the runtime's flags and limits. A machine without
/// CAP_SYS_RESOURCE cannot give a container podman's default file limit, and
/// crun refuses a host whose cgroups are mixed v1 and v2 (runc takes it);
/// `None` when no runtime can start one.
fn how_to_run() -> Option<Vec<String>> {
    let nofile = files_limit().min(65_536);
    let limits = [
        "--ulimit".to_string(),
        format!("nofile={nofile}:{nofile}"),
        "--ulimit".to_string(),
        "nproc=4096:4096".to_string(),
    ];
    for runtime in [None, Some("runc")] {
        let mut args: Vec<String> = runtime
            .map(|r| vec!["--runtime".to_string(), r.to_string()])
            .unwrap_or_default();
        args.extend(["run".to_string(), "--rm".to_string()]);
        args.extend(limits.iter().cloned());
        args.extend([IMAGE.to_string(), "--version".to_string()]);
        let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
        if podman(&args_ref).0 {
            let mut how: Vec<String> = runtime
                .map(|r| vec!["--runtime".to_string(), r.to_string()])
                .unwrap_or_default();
            how.extend(limits.iter().cloned());
            return Some(how);
        }
    }
    None
}

/// The container, removed when dropped.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- the container's log ---\n{}",
                podman(&["logs", &self.0]).1
            );
        }
        let _ = podman(&["rm", "-f", &self.0]);
    }
}

/// A UDP port free on 127.0.0.1 now, outside the relay range the container
/// is given (61000-61999).
fn free_port() -> u16 {
    loop {
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !(61000..=61999).contains(&port) {
            return port;
        }
    }
}

#[test]
fn the_scratch_image_serves_relays_and_drains() {
    if !std::path::Path::new("/usr/bin/podman").exists()
        || !Command::new("podman")
            .arg("info")
            .output()
            .is_ok_and(|o| o.status.success())
    {
        eprintln!(
            "SKIPPED: podman is missing or cannot run here (`podman info` failed); \
             install Debian's podman to build and run the image"
        );
        return;
    }
    ensure_package("/usr/bin/musl-gcc", "musl-tools");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    // The dev profile: what is tested is the script, the image and how it
    // runs; the release profile's whole-program optimisation would add two
    // minutes of build to every CI run for the same image.
    let (built, out) = run_with_timeout(
        Command::new("sh")
            .arg(format!("{root}/deploy/image/build.sh"))
            .env("IMAGE", IMAGE)
            .env("PROFILE", "dev"),
        20 * PATIENCE,
    );
    assert!(built, "deploy/image/build.sh failed:\n{out}");

    let dir = causeway_testkit::bridge::TempDir::new("image");
    let (port, admin) = (free_port(), free_port());
    let config = dir.write(
        "causeway.toml",
        &format!(
            "listen = [\"127.0.0.1:{port}\"]\nadmin = \"127.0.0.1:{admin}\"\nrealm = \
             \"example\"\nuser = [\"alice:wonderland\"]\nallow_peer = [\"127.0.0.2/32\"]\n\
             drain_timeout = 5\nrelay_range = \"61000-61999\"\n"
        ),
    );
    let name = format!("causeway-test-{}", std::process::id());
    let mount = format!("{}:/etc/causeway/causeway.toml:ro", config.display());
    ensure_package("/usr/sbin/runc", "runc");
    let Some(how) = how_to_run() else {
        eprintln!(
            "SKIPPED: the image is built, but no container runtime can start it here \
             (podman run with crun and with runc failed)"
        );
        return;
    };
    let (runtime, limits) = how.split_at(if how[0] == "--runtime" { 2 } else { 0 });
    let mut args: Vec<&str> = runtime.iter().map(String::as_str).collect();
    args.extend(["run", "-d", "--name", &name, "--network", "host"]);
    args.extend(limits.iter().map(String::as_str));
    args.extend(["-v", &mount, IMAGE]);
    let (ok, out) = podman(&args);
    // Removed however the run went (a failed run may leave it created).
    let container = Container(name.clone());
    assert!(ok, "podman run: {out}");
    let admin_addr = format!("127.0.0.1:{admin}");
    wait::until(
        "/readyz 200 from the container",
        PATIENCE,
        || match common::try_http(&admin_addr, "GET", "/readyz") {
            Ok(r) if r.starts_with("HTTP/1.1 200") => Ok(()),
            Ok(r) => Err(r),
            Err(e) => Err(e.to_string()),
        },
    );

    let peer = Peer::start();
    let uclient = coturn_tool("turnutils_uclient");
    for transport in [&[][..], &["-t"][..]] {
        let (_, out) = run_with_timeout(
            Command::new(&uclient).args(transport).args([
                "-u",
                "alice",
                "-w",
                "wonderland",
                "-e",
                PEER_IP,
                "-r",
                &peer.1.to_string(),
                "-p",
                &port.to_string(),
                "-n",
                "30",
                "-m",
                "2",
                "-l",
                "160",
                "127.0.0.1",
            ]),
            2 * PATIENCE,
        );
        match totals(&out) {
            Some((sent, received, 0)) if sent > 0 && sent == received => {}
            t => panic!("{transport:?} through the container: {t:?}\n{out}"),
        }
    }

    let (ok, out) = podman(&["kill", "--signal", "TERM", &container.0]);
    assert!(ok, "podman kill: {out}");
    let (ok, code) = podman(&["wait", &container.0]);
    assert!(ok, "podman wait: {code}");
    assert_eq!(code.trim(), "0", "exit code after SIGTERM");
    let (_, log) = podman(&["logs", &container.0]);
    assert!(log.contains("SIGTERM: draining"), "{log}");
    assert!(
        log.contains("drained: no allocation") || log.contains("drain deadline reached"),
        "{log}"
    );
}
