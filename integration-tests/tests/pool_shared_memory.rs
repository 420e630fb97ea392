//! The pool's local workers take the shared-memory path: 8 MiB inputs and
//! outputs of a real pool (src/bin/pool_shared_memory.rs) come back whole,
//! and the counters of `connection::shared_memory_stats` show that each
//! went as a memfd, both ways, once the threshold is set for the program
//! (`CONNECTION_SHARED_MEMORY_THRESHOLD`): the pool's `pipe()` ends and
//! its workers' `from_env` ends agree.

use std::time::Duration;

use std::process::Command;

use integration_tests::{line, output_with_deadline, report_skip};

#[test]
fn large_inputs_and_outputs_travel_as_shared_memory() {
    if let Err(err) = connection::SharedBuf::new(1) {
        report_skip(&format!(
            "memfd_create fails here ({err}): no shared memory to test"
        ));
        return;
    }
    // The pool's connections take the threshold from the environment, in
    // the parent and in the workers it starts.
    let mut command = Command::new(env!("CARGO_BIN_EXE_pool_shared_memory"));
    command.env(connection::shared::SHARED_MEMORY_THRESHOLD_ENV, "1048576");
    let output = output_with_deadline(&mut command, Duration::from_secs(120));
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}\n{out}\n{err}", output.status);
    assert_eq!(line(&out, "round trip"), "true");
    // Four inputs out, four outputs in, each as a memfd.
    let count = |label| line(&out, label).parse::<u64>().unwrap();
    assert!(count("parent sent") >= 4, "{out}");
    assert!(count("parent received") >= 4, "{out}");
    assert!(count("worker received at least") >= 1, "{out}");
}
