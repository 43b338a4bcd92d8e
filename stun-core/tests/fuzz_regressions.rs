//! Every input under `fuzz/regressions/` (crashes the fuzzers once found, and
//! inputs kept because they reach deep paths) runs through all parsers here, so a
//! fixed crash stays fixed without nightly or cargo-fuzz.

mod common;

use std::path::Path;

#[test]
fn fuzz_regressions_do_not_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
    let mut count = 0;
    for dir in std::fs::read_dir(&root).expect("fuzz/regressions exists") {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&dir).unwrap() {
            let path = file.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            // Shown with the panic, should this input bring one back.
            eprintln!("{}", path.display());
            common::exercise(&bytes);
            count += 1;
        }
    }
    assert!(
        count > 0,
        "no regression inputs found under {}",
        root.display()
    );
}
