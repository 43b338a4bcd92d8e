//! The deployment files under `deploy/` against the program: the configuration
//! they carry passes `causeway serve --check-config`; the Dockerfile, the
//! Kubernetes manifest and the systemd unit start `serve` with it, expose the
//! ports it listens on, probe the admin endpoints it serves (and the probes
//! answer as the manifest expects, a drain included), stop it with the signal
//! that drains and wait longer than its drain; the manifest parses, and the
//! unit passes `systemd-analyze verify` where systemd is installed; where it
//! runs on glibc, its allocator is set as the soak measured it.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::bridge::{TempDir, TestCa};
use common::wait::{self, PATIENCE};
use common::{Output, Server};
use serde_yaml::Value;

const CONFIG_PATH: &str = "/etc/causeway/causeway.toml";

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(deploy(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The password the tests put where the example says REPLACE.
const TEST_PASSWORD: &str = "generated-for-the-test-3f9a1c";

/// `toml` as an operator would finish it: the TLS files pointed at throwaway
/// ones for the join URL, an admin token file written, the placeholders
/// replaced.
fn with_test_files(toml: &str, dir: &TempDir) -> PathBuf {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["join.example.com"]);
    let cert = dir.write("tls.crt", &leaf.cert_pem);
    let key = dir.write("tls.key", &leaf.key_pem);
    let ca_file = dir.write("ca.crt", &ca.cert_pem);
    let token = dir.write("admin.token", "0123456789abcdef0123456789abcdef\n");
    let text = toml
        .replace("/etc/causeway/tls/tls.crt", &cert.display().to_string())
        .replace("/etc/causeway/tls/tls.key", &key.display().to_string())
        .replace("/etc/causeway/tls/ca.crt", &ca_file.display().to_string())
        .replace("/etc/causeway/admin.token", &token.display().to_string())
        .replace("REPLACE-WITH-A-GENERATED-PASSWORD", TEST_PASSWORD);
    dir.write("causeway.toml", &text)
}

/// `toml` with the TLS and token files as [`with_test_files`], but the
/// placeholders left: the example as shipped.
fn unedited(toml: &str, dir: &TempDir) -> PathBuf {
    let finished = std::fs::read_to_string(with_test_files(toml, dir)).unwrap();
    dir.write(
        "unedited.toml",
        &finished.replace(TEST_PASSWORD, "REPLACE-WITH-A-GENERATED-PASSWORD"),
    )
}

fn check_config(path: &Path, extra: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args([
            "serve",
            "--config",
            path.to_str().unwrap(),
            "--check-config",
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a configuration listens on: (port, protocol), and its admin port and
/// drain timeout.
struct Served {
    ports: BTreeSet<(u16, &'static str)>,
    admin: u16,
    drain: u64,
}

fn served(toml: &str) -> Served {
    let v: toml::Value = toml::from_str(toml).unwrap();
    let port = |a: &toml::Value| -> u16 {
        a.as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let mut ports = BTreeSet::new();
    for a in v["listen"].as_array().unwrap() {
        ports.insert((port(a), "UDP"));
        ports.insert((port(a), "TCP"));
    }
    for a in v["tls_listen"].as_array().unwrap() {
        ports.insert((port(a), "TCP"));
    }
    let admin = port(&v["admin"]);
    ports.insert((admin, "TCP"));
    Served {
        ports,
        admin,
        drain: v["drain_timeout"].as_integer().unwrap() as u64,
    }
}

#[test]
fn the_example_configuration_and_the_dockerfile_agree() {
    let toml = read("causeway.toml");
    let dir = TempDir::new("deploy-config");
    check_config(&with_test_files(&toml, &dir), &[]);
    // As shipped, its placeholders refuse it, naming the key (not the text).
    let out = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args(["serve", "--check-config", "--config"])
        .arg(unedited(&toml, &dir))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("`user`") && err.contains("placeholder"),
        "{err}"
    );
    assert!(!err.contains("REPLACE-WITH"), "{err}");
    let s = served(&toml);

    let docker = read("Dockerfile");
    let lines: Vec<&str> = docker
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let last = |key: &str| {
        lines
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key}"))
            .trim()
    };
    assert!(
        lines.iter().filter(|l| l.starts_with("FROM ")).count() >= 2,
        "multi-stage"
    );
    let user = last("USER ");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("numeric USER");
    assert_ne!(uid, 0, "not root");
    assert_eq!(last("STOPSIGNAL "), "SIGTERM", "the signal that drains");
    let exposed: BTreeSet<(u16, &str)> = last("EXPOSE ")
        .split_whitespace()
        .map(|p| {
            let (n, proto) = p.split_once('/').unwrap();
            (
                n.parse().unwrap(),
                if proto == "udp" { "UDP" } else { "TCP" },
            )
        })
        .collect();
    assert_eq!(
        exposed, s.ports,
        "EXPOSE is what the configuration listens on"
    );
    assert_eq!(last("ENTRYPOINT "), "[\"/usr/local/bin/causeway\"]");
    assert_eq!(
        last("CMD "),
        format!("[\"serve\", \"--config\", \"{CONFIG_PATH}\"]")
    );
    assert!(docker.contains(&format!("COPY deploy/causeway.toml {CONFIG_PATH}")));
    assert!(docker.contains("cargo build --release --locked -p causeway"));
}

fn docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .collect()
}

use serde::Deserialize;

fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn the_kubernetes_manifest_matches_what_the_program_serves() {
    let docs = docs(&read("kubernetes/causeway.yaml"));
    let secret = kind(&docs, "Secret");
    let toml = secret["stringData"]["causeway.toml"].as_str().unwrap();
    let dir = TempDir::new("deploy-k8s");
    let cfg = with_test_files(toml, &dir);
    // The node's address stands in for $(NODE_IP).
    check_config(&cfg, &["--relay-ip", "127.0.0.1"]);
    let s = served(toml);

    let ds = kind(&docs, "DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(
        pod["hostNetwork"], true,
        "TURN media reaches the node directly"
    );
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        grace > s.drain,
        "grace {grace} s must cover drain_timeout {} s",
        s.drain
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let docker = read("Dockerfile");
    let uid = pod["securityContext"]["runAsUser"].as_u64().unwrap();
    assert!(docker.contains(&format!("USER {uid}:")), "the image's user");

    let c = &pod["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(&args[..3], &["serve", "--config", CONFIG_PATH]);
    // The admin port on the pod's (the node's) address, never the wildcard.
    let admin_arg = args
        .iter()
        .position(|a| *a == "--admin")
        .and_then(|i| args.get(i + 1))
        .expect("--admin in the args");
    assert_eq!(*admin_arg, format!("$(POD_IP):{}", s.admin));
    assert!(
        secret["stringData"]["admin.token"].as_str().is_some(),
        "the admin token beside the configuration"
    );
    for a in &args {
        if let Some(var) = a.strip_prefix("$(").and_then(|r| r.strip_suffix(')')) {
            assert!(
                c["env"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|e| e["name"] == var),
                "{var} is defined"
            );
        }
    }
    let mounts = c["volumeMounts"].as_sequence().unwrap();
    let config_mount = mounts
        .iter()
        .find(|m| m["mountPath"] == "/etc/causeway")
        .unwrap();
    let volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == config_mount["name"])
        .unwrap();
    assert_eq!(volume["secret"]["secretName"], secret["metadata"]["name"]);

    let ports: BTreeSet<(u16, &str)> = c["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| {
            let proto = if p["protocol"] == "UDP" { "UDP" } else { "TCP" };
            (p["containerPort"].as_u64().unwrap() as u16, proto)
        })
        .collect();
    assert_eq!(
        ports, s.ports,
        "container ports are what the configuration listens on"
    );
    assert!(
        ports.iter().all(|(p, _)| *p >= 1024),
        "no capability needed"
    );
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    let port_named = |name: &Value| -> u16 {
        c["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|p| &p["name"] == name)
            .unwrap()["containerPort"]
            .as_u64()
            .unwrap() as u16
    };
    let live = &c["livenessProbe"]["httpGet"];
    let ready = &c["readinessProbe"]["httpGet"];
    assert_eq!(port_named(&live["port"]), s.admin);
    assert_eq!(port_named(&ready["port"]), s.admin);
    let service = kind(&docs, "Service");
    port_named(&service["spec"]["ports"][0]["targetPort"]);

    // The probes as the kubelet would ask them, against the program itself.
    let mut server = Server::start(&[
        "--config",
        cfg.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--tls-listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--relay-ip",
        "127.0.0.1",
    ]);
    let admin = server.admin_addr();
    let code = |path: &str| common::status_code(&admin, path);
    let (live, ready) = (
        live["path"].as_str().unwrap(),
        ready["path"].as_str().unwrap(),
    );
    // (A worker that has not gone round its loop for 3 s is not alive: poll.)
    assert!(
        wait::holds(PATIENCE, || code(live) == "200"),
        "{}",
        server.log_tail()
    );
    assert_eq!(code(ready), "200");
    // An allocation over TCP holds the drain open until its connection closes.
    let user = std::fs::read_to_string(&cfg)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("user = [\""))
        .and_then(|r| r.split('"').next())
        .expect("a user in causeway.toml")
        .to_string();
    let mut held = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args([
            "allocate",
            "--server",
            &server.addr().to_string(),
            "--transport",
            "tcp",
        ])
        .args(["--user", &user, "--hold", "600"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let held_out = Output::of(&mut held);
    assert!(
        held_out.wait_for("relayed", PATIENCE),
        "{}",
        held_out.tail(20)
    );
    server.wait_status("the held allocation", |s| s["allocations_in_use"] == 1);
    // The signal the kubelet sends: ready no more at once, alive while draining.
    let _ = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status();
    server.wait_log("SIGTERM: draining");
    assert_eq!(code(ready), "503", "not ready once draining");
    assert!(
        wait::holds(PATIENCE, || code(live) == "200"),
        "alive while draining"
    );
    // Its last allocation gone, the drain ends and the process exits 0.
    let _ = held.kill();
    let _ = held.wait();
    let status = wait::until("the drained node to exit", PATIENCE, || {
        match server.child.try_wait() {
            Ok(Some(status)) => Ok(status),
            Ok(None) => Err("still running".to_string()),
            Err(e) => Err(e.to_string()),
        }
    });
    assert!(status.success(), "{status}\n{}", server.log_tail());
    assert!(
        server
            .log
            .contains("drained: no allocation or connection left"),
        "{}",
        server.log_tail()
    );
}

#[test]
fn the_systemd_unit_starts_reloads_and_drains_as_the_program_expects() {
    let unit = read("systemd/causeway.service");
    let key = |k: &str| -> Vec<&str> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
            .collect()
    };
    assert_eq!(
        key("ExecStart"),
        [format!("/usr/local/bin/causeway serve --config {CONFIG_PATH}").as_str()]
    );
    assert_eq!(
        key("ExecReload"),
        ["/bin/kill -HUP $MAINPID"],
        "SIGHUP reloads"
    );
    assert_eq!(key("KillSignal"), ["SIGTERM"], "SIGTERM drains");
    assert_eq!(
        (key("Type"), key("NotifyAccess")),
        (vec!["notify"], vec!["main"]),
        "ready when it says so; an upgrade names the new main process"
    );
    assert_eq!(
        key("Restart"),
        ["always"],
        "a drain from the admin port ends with exit 0: the node must come back"
    );
    assert_eq!(
        key("RuntimeDirectory"),
        ["causeway"],
        "where a drawn token goes"
    );
    let drain = served(&read("causeway.toml")).drain;
    let stop: u64 = key("TimeoutStopSec")[0].parse().unwrap();
    assert!(
        stop > drain,
        "TimeoutStopSec {stop} must cover drain_timeout {drain}"
    );
    assert_eq!(key("User"), ["causeway"]);
    assert_eq!(key("NoNewPrivileges"), ["yes"]);
    assert_eq!(key("CapabilityBoundingSet"), ["CAP_NET_BIND_SERVICE"]);
    for pre in key("ExecStartPre") {
        assert!(pre.ends_with("--check-config"), "{pre}");
    }
    if Path::new("/usr/bin/systemd-analyze").exists() {
        let dir = TempDir::new("deploy-systemd");
        let local = unit.replace("/usr/local/bin/causeway", env!("CARGO_BIN_EXE_causeway"));
        let file = dir.write("causeway.service", &local);
        let out = Command::new("/usr/bin/systemd-analyze")
            .args(["verify", file.to_str().unwrap()])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && said.trim().is_empty(),
            "systemd-analyze: {said}"
        );
    }
}

/// What glibc's dynamic loader says a tunable is under `GLIBC_TUNABLES=tunables`
/// (`ld.so --list-tunables`, glibc 2.33 on), or None where that loader is absent.
fn glibc_tunable(tunables: &str, name: &str) -> Option<String> {
    let ld = Path::new("/lib64/ld-linux-x86-64.so.2");
    if !ld.exists() {
        return None;
    }
    let out = Command::new(ld)
        .arg("--list-tunables")
        .env("GLIBC_TUNABLES", tunables)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("{name} not listed: {text}"));
    Some(value.split_whitespace().next().unwrap_or("").to_string())
}

#[test]
fn glibc_runs_the_relay_with_one_arena_and_a_fixed_mmap_threshold() {
    // Where the binary runs on glibc (the unit, the Debian image), its
    // allocator keeps one arena and a fixed mmap threshold: with glibc's
    // defaults (an arena per thread, a threshold that rises to the largest
    // block freed) RSS grows under churn and a large /status copy is kept
    // (README, "Soak"). The static image runs on musl's allocator instead.
    let unit = read("systemd/causeway.service");
    let in_unit: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("Environment=GLIBC_TUNABLES="))
        .collect();
    assert_eq!(in_unit.len(), 1, "one GLIBC_TUNABLES in the unit");
    let tunables = in_unit[0];
    let docker = read("Dockerfile");
    assert!(
        docker
            .lines()
            .any(|l| l.trim() == format!("ENV GLIBC_TUNABLES={tunables}")),
        "the Debian image sets what the unit sets"
    );
    // Spelled as glibc reads it: its loader reports the values taken.
    if let Some(arenas) = glibc_tunable(tunables, "glibc.malloc.arena_max") {
        assert_eq!(arenas, "0x1", "{tunables}");
        let threshold = glibc_tunable(tunables, "glibc.malloc.mmap_threshold").unwrap();
        assert_eq!(threshold, "0x20000", "{tunables}");
    }
}
