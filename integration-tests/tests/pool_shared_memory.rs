//! The pool's local workers take the shared-memory path: 8 MiB inputs and
//! outputs of a real pool (src/bin/pool_shared_memory.rs) come back whole,
//! and the counters of `connection::shared_memory_stats` show that each
//! went as a memfd, both ways.

use std::time::Duration;

use integration_tests::{line, report_skip, scenario_output};

#[test]
fn large_inputs_and_outputs_travel_as_shared_memory() {
    if let Err(err) = connection::SharedBuf::new(1) {
        report_skip(&format!(
            "memfd_create fails here ({err}): no shared memory to test"
        ));
        return;
    }
    let out = scenario_output(
        env!("CARGO_BIN_EXE_pool_shared_memory"),
        "",
        Duration::from_secs(120),
    );
    assert_eq!(line(&out, "round trip"), "true");
    // Four inputs out, four outputs in, each as a memfd.
    let count = |label| line(&out, label).parse::<u64>().unwrap();
    assert!(count("parent sent") >= 4, "{out}");
    assert!(count("parent received") >= 4, "{out}");
    assert!(count("worker received at least") >= 1, "{out}");
}
