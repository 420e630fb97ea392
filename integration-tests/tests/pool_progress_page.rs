//! A task that turns on its worker's progress page (the page the pool
//! shares with each local worker, where the worker counts the inputs it
//! started): the page is sealed at its size before the worker gets it, so
//! the task can neither shrink nor grow nor seal it, and what it can still
//! do (write nonsense there, punch the page out) leaves the pool reading
//! the page safely. Unsealed, a page shrunk by its worker made the pool's
//! process die of SIGBUS when it next read it.

use std::process::Command;
use std::time::Duration;

use integration_tests::output_with_deadline;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn a_task_cannot_resize_its_progress_page_and_the_pool_goes_on() {
    let out = output_with_deadline(
        &mut Command::new(env!("CARGO_BIN_EXE_pool_progress_page")),
        LIMIT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the pool's process failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    for refused in ["grow", "shrink", "seal"] {
        assert!(stdout.contains(&format!("{refused}: EPERM")), "{stdout}");
    }
    // Still possible, and harmless to the pool.
    assert!(stdout.contains("write: Ok"), "{stdout}");
    assert!(stdout.contains("punch: Ok"), "{stdout}");
    // The pool read the page to blame the input that killed its worker.
    assert!(
        stdout.contains(
            "abort: kind=WorkerDied message=killed by signal 6 (SIGABRT) while running this task"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("after: [1, 4, 9]"), "{stdout}");
}
