//! A program whose only pool is started by a library it uses
//! (`pool-lib-demo`, whose tasks are defined there): it never calls
//! `pool::init()`, and its `main`'s side effect happens once.

use std::process::Command;
use std::time::Duration;

use integration_tests::output_with_deadline;

#[test]
fn a_library_starts_a_pool_without_the_programs_main_running_in_workers() {
    let out = output_with_deadline(
        &mut Command::new(env!("CARGO_BIN_EXE_pool_lib_user")),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(out.status.success(), "{}: {report}", out.status);
    assert!(stdout.contains("counts: [2, 1, 0]"), "{report}");
    // Workers share this stdout: a worker that ran main would print too.
    let mains = stdout.matches("main ran in").count();
    assert_eq!(mains, 1, "main ran {mains} times: {report}");
}
