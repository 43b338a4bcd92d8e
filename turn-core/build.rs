//! With feature `xdp`, builds the XDP relay program from its C source with
//! clang (`-target bpf`, headers from Debian's libbpf-dev and linux-libc-dev)
//! into `OUT_DIR`, where the std adapter embeds it. Without it, nothing.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_XDP").is_none() {
        return;
    }
    let src = "src/adapters/std/xdp/relay.bpf.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=BPF_CLANG");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    if std::env::var_os("DOCS_RS").is_some() {
        // docs.rs documents the feature; it has no clang for BPF. (Loading this
        // empty object fails, and the relay runs without the fast path.)
        std::fs::write(out.join("relay.bpf.o"), b"").expect("write to OUT_DIR");
        return;
    }
    let clang = std::env::var("BPF_CLANG").unwrap_or_else(|_| "clang".into());
    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "aarch64-linux-gnu",
        _ => "x86_64-linux-gnu",
    };
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-I/usr/include/{arch}"))
        .args(["-c", src, "-o"])
        .arg(out.join("relay.bpf.o"))
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{clang} could not build {src} ({s})"),
        Err(e) => panic!(
            "feature `xdp` builds its XDP program with clang, which did not run ({e}): \
             install clang and libbpf-dev (Debian: apt-get install clang libbpf-dev), or set \
             BPF_CLANG"
        ),
    }
}
