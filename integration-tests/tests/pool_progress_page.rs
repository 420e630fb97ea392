//! A task that turns on its worker's progress page (the page the pool
//! shares with each local worker, where the worker counts the inputs it
//! started): the page is sealed at its size before the worker gets it, so
//! the task can neither shrink nor grow nor seal it, and what it can still
//! do (write nonsense there, punch the page out) leaves the pool reading
//! the page safely. Unsealed, a page shrunk by its worker made the pool's
//! process die of SIGBUS when it next read it.

use std::time::Duration;

use integration_tests::{line, scenario_output};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn a_task_cannot_resize_its_progress_page_and_the_pool_goes_on() {
    // Fails, showing what it printed, unless the pool's process succeeds
    // (without the seals it dies of SIGBUS).
    let stdout = scenario_output(env!("CARGO_BIN_EXE_pool_progress_page"), "attack", LIMIT);
    for refused in ["grow", "shrink", "seal"] {
        assert_eq!(line(&stdout, refused), "EPERM", "{refused}");
    }
    // Still possible, and harmless to the pool.
    assert_eq!(line(&stdout, "write"), "Ok");
    assert_eq!(line(&stdout, "punch"), "Ok");
    // The pool read the page to blame the input that killed its worker.
    assert_eq!(
        line(&stdout, "abort"),
        "kind=WorkerDied message=killed by signal 6 (SIGABRT) while running this task"
    );
    assert_eq!(line(&stdout, "after"), "[1, 4, 9]");
}
