//! A worker program that depends on a crate of tasks but never names the
//! task its pool calls lacks it (the linker keeps only what a program
//! refers to): the call fails at once, taking no input, with a message
//! that says to name it with `pool::link_tasks!`; with that, it runs.
//! Run by `pool_link` with `pool_link_lacking` and `pool_link_linked`.

use std::time::Duration;

use integration_tests::{line, scenario_output};

const TASK: &str = "integration_tests::link_probe::cube";

fn run(worker: &str) -> String {
    let stdout = scenario_output(
        env!("CARGO_BIN_EXE_pool_link"),
        worker,
        Duration::from_secs(60),
    );
    eprintln!("{stdout}");
    stdout
}

#[test]
fn a_task_the_worker_program_lacks_fails_the_call_at_once_saying_how_to_link_it() {
    let stdout = run(env!("CARGO_BIN_EXE_pool_link_lacking"));
    for call in ["map", "imap", "apply_async"] {
        let result = line(&stdout, call);
        assert!(
            result.starts_with("UnknownTask index=None: ")
                && result.contains(&format!("`{TASK}` is not in worker program "))
                && result.contains("pool_link_lacking's task table")
                && result.contains(&format!("`pool::link_tasks!({TASK});`")),
            "{call}: {result}"
        );
    }
    assert_eq!(line(&stdout, "map taken"), "0");
    assert_eq!(line(&stdout, "imap taken"), "0");
    assert_eq!(line(&stdout, "builtin"), "ok 42");
}

#[test]
fn the_same_program_with_link_tasks_runs_the_task() {
    let stdout = run(env!("CARGO_BIN_EXE_pool_link_linked"));
    assert_eq!(line(&stdout, "map"), "ok [0, 1, 8]");
    assert_eq!(line(&stdout, "imap"), "ok 0");
    assert_eq!(line(&stdout, "apply_async"), "ok 8");
}
