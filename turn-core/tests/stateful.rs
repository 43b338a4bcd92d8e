//! The stateful fuzz harness of the TURN server (`turn_harness::stateful`)
//! on stable Rust: random operation sequences, and the inputs kept under
//! `fuzz/regressions/turn_stateful`, with the harness's invariants checked after
//! every operation (quotas, relay sockets, policy, no state from unauthenticated
//! packets).

use turn_harness::stateful as harness;

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_operation_sequences_keep_the_invariants(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        harness::run(&data);
    }
}

#[test]
fn kept_inputs_keep_the_invariants() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/turn_stateful");
    let mut n = 0;
    for f in std::fs::read_dir(&dir).expect("fuzz/regressions/turn_stateful exists") {
        let path = f.unwrap().path();
        // Shown with the panic, should this input break an invariant again.
        eprintln!("{}", path.display());
        harness::run(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n > 0, "no inputs under {}", dir.display());
}
