//! Workers never run another form of a task than their pool: not after the
//! pool's program file was rebuilt mid-job, and not from a worker program
//! or a remote worker built from other code (`pool_stale` and the
//! stale-task fixtures, whose README lists the forms of the task).

use std::path::PathBuf;
use std::time::Duration;

use integration_tests::{line, scenario_output_with};

const LIMIT: Duration = Duration::from_secs(90);
const PARENT: &str = env!("CARGO_BIN_EXE_pool_stale");

/// Runs `pool_stale` (from `program`) in `scenario` with `arg`; returns
/// its stdout (shown on stderr too), having checked that it succeeded.
fn run(program: &str, scenario: &str, arg: &str) -> String {
    let stdout = scenario_output_with(program, &[scenario, arg], LIMIT);
    eprintln!("{stdout}");
    stdout
}

/// A fresh directory of this test's own.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pool-stale-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// Runs `scenario` with a copy of `pool_stale` in a scratch directory (so
/// that the build's own files are left alone) that it replaces mid-map with
/// a copy of a program whose same-named task returns x + 2, not x + 1. The
/// copy is the parent itself for `rebuilt`, else its worker program.
fn replacing_mid_map(scenario: &str) -> String {
    let dir = scratch(scenario);
    let copy = dir.join("pool_stale");
    let new = dir.join("new");
    std::fs::copy(PARENT, &copy).expect("copy pool_stale");
    std::fs::copy(env!("CARGO_BIN_EXE_pool_stale_new_body"), &new).expect("copy the new program");
    let (copy, new) = (copy.to_str().unwrap(), new.to_str().unwrap());
    let output = match scenario {
        "rebuilt" => scenario_output_with(copy, &[scenario, new], LIMIT),
        _ => scenario_output_with(PARENT, &[scenario, copy, new], LIMIT),
    };
    eprintln!("{output}");
    let _ = std::fs::remove_dir_all(&dir);
    output
}

#[test]
fn workers_replaced_after_the_program_file_was_rebuilt_run_the_old_code() {
    let output = replacing_mid_map("rebuilt");
    assert_eq!(line(&output, "replaced"), "true", "{output}");
    assert_eq!(line(&output, "new code"), "0", "{output}");
    assert_eq!(line(&output, "old code"), "150", "{output}");
}

#[test]
fn a_worker_program_rebuilt_mid_map_is_refused_and_the_map_ends_with_that_error() {
    // The worker program is at first a copy of the parent (so it has the
    // parent's form of the task). Its killed workers' replacements start
    // from the new file and are refused; after three refusals in a row
    // the inputs left fail with TaskMismatch rather than run the new code.
    let output = replacing_mid_map("worker-program-rebuilt");
    assert_eq!(line(&output, "new code"), "0", "{output}");
    assert_ne!(line(&output, "refused"), "0", "{output}");
    let last = line(&output, "last failure");
    assert!(
        last.starts_with("TaskMismatch") && last.contains("stale_task::bump"),
        "{last}"
    );
}

/// Builds a pool of `worker`'s program and checks it is refused, naming the
/// task and `difference`.
fn refused_worker_program(worker: &str, difference: &str) {
    let output = run(PARENT, "worker-program", worker);
    assert_eq!(line(&output, "build"), "TaskMismatch", "{output}");
    let error = line(&output, "error");
    assert!(error.contains("stale_task::bump"), "{error}");
    assert!(error.contains(difference), "{difference:?} not in {error}");
}

#[test]
fn a_worker_program_whose_task_changed_its_input_type_is_refused() {
    refused_worker_program(
        env!("CARGO_BIN_EXE_pool_stale_new_input"),
        "input type `u32` in the worker, `u64` here",
    );
}

#[test]
fn a_worker_program_whose_task_declared_a_new_version_is_refused() {
    refused_worker_program(
        env!("CARGO_BIN_EXE_pool_stale_new_version"),
        "version 2 in the worker, 0 here",
    );
}

#[test]
fn a_worker_program_whose_task_body_changed_is_refused() {
    refused_worker_program(
        env!("CARGO_BIN_EXE_pool_stale_new_body"),
        "its function's code as written in task! differs",
    );
}

#[test]
fn a_call_whose_only_remote_worker_was_refused_fails_rather_than_waits() {
    let output = run(PARENT, "remote", env!("CARGO_BIN_EXE_pool_stale_new_input"));
    assert_eq!(line(&output, "apply"), "TaskMismatch", "{output}");
    let error = line(&output, "error");
    assert!(
        error.contains("stale_task::bump") && error.contains("input type `u32` in the worker"),
        "{error}"
    );
    // The worker is told why, and says so as it leaves.
    assert_ne!(line(&output, "worker exit"), "exit status: 0", "{output}");
    let said = line(&output, "worker said");
    assert!(said.contains("input type `u32` in the worker"), "{said}");
}
