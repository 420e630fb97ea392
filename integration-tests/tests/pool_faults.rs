//! Faults inside tasks and workers, each run in a real pool by the
//! `pool_program` test program: errors, panics, deaths, timeouts and
//! encoding failures reach the right input, and the pool goes on.

use std::process::Command;
use std::time::Duration;

use integration_tests::output_with_deadline;

const LIMIT: Duration = Duration::from_secs(60);

/// Runs a `pool_program` scenario, checks it succeeded, and returns stdout.
fn scenario(args: &[&str]) -> (String, String) {
    let out = output_with_deadline(
        Command::new(env!("CARGO_BIN_EXE_pool_program")).args(args),
        LIMIT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{args:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

fn assert_no_panic_noise(stderr: &str) {
    assert!(
        !stderr.contains("panicked"),
        "panic printed on stderr:\n{stderr}"
    );
    assert!(
        !stderr.contains("backtrace"),
        "backtrace hint on stderr:\n{stderr}"
    );
}

#[test]
fn a_task_error_fails_that_input_alone() {
    let (stdout, stderr) = scenario(&["task_error"]);
    assert!(
        stdout.contains(
            "map: kind=TaskFailed index=Some(7) task=Some(\"pool_program::fail_on_seven\") \
             message=seven is not allowed (got 7)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("imap error: kind=TaskFailed index=Some(7)"),
        "{stdout}"
    );
    assert!(stdout.contains("imap ok: 19"), "{stdout}");
    assert!(stdout.contains("after: [10, 20, 30]"), "{stdout}");
    assert_no_panic_noise(&stderr);
}

#[test]
fn a_panic_carries_its_message_and_prints_nothing() {
    let (stdout, stderr) = scenario(&["panic"]);
    assert!(
        stdout.contains("imap error: kind=Panicked index=Some(3) task=Some(\"pool_program::panic_on_three\") message=three is right out"),
        "{stdout}"
    );
    assert!(stdout.contains("imap ok: 9"), "{stdout}");
    assert!(stdout.contains("after: [4, 5]"), "{stdout}");
    assert_no_panic_noise(&stderr);
}

/// The worker pids printed before and after, and the dying scenario's report.
fn dying_worker(how: &str, expected: &str) {
    let (stdout, _) = scenario(&["die", how]);
    let expected_line = format!("imap error: kind=WorkerDied index=Some(5) task=Some(\"pool_program::die_on_five\") message={expected} while running this task");
    assert!(stdout.contains(&expected_line), "{stdout}");
    assert!(stdout.contains("imap ok: 19"), "{stdout}");
    assert_eq!(stdout.matches("error:").count(), 1, "{stdout}");
    assert!(stdout.contains("after: [1]"), "{stdout}");
    let pids: Vec<&str> = stdout.lines().filter(|l| l.starts_with("pids:")).collect();
    assert_eq!(pids.len(), 2, "{stdout}");
    assert_ne!(pids[0], pids[1], "a replacement worker should have started");
}

#[test]
fn a_task_that_aborts_fails_with_sigabrt_and_is_replaced() {
    dying_worker("abort", "killed by signal 6 (SIGABRT)");
}

#[test]
fn a_task_that_exits_fails_with_its_status_and_is_replaced() {
    dying_worker("exit3", "exited with status 3");
}

#[test]
fn a_task_that_sigkills_itself_fails_with_sigkill_and_is_replaced() {
    dying_worker("sigkill", "killed by signal 9 (SIGKILL)");
}

#[test]
fn a_spinning_pool_maps_and_applies_and_survives_a_worker_killed_mid_apply() {
    let (stdout, _) = scenario(&["spin"]);
    assert!(stdout.contains("map matches: true"), "{stdout}");
    assert!(stdout.contains("apply matches: true"), "{stdout}");
    assert!(stdout.contains("get: 7"), "{stdout}");
    assert!(
        stdout.contains(
            "killed apply: kind=WorkerDied index=Some(0) task=Some(\"pool_program::die_on_five\") \
             message=killed by signal 9 (SIGKILL) while running this task"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("after: 9"), "{stdout}");
    let pids: Vec<&str> = stdout.lines().filter(|l| l.starts_with("pids:")).collect();
    assert_eq!(pids.len(), 2, "{stdout}");
    assert_ne!(pids[0], pids[1], "a replacement worker should have started");
}

#[test]
fn a_task_past_its_timeout_is_killed_and_reported() {
    let (stdout, _) = scenario(&["timeout"]);
    assert!(
        stdout.contains("imap error: kind=Timeout index=Some(2) task=Some(\"pool_program::sleep_for\") message=ran longer than 300ms"),
        "{stdout}"
    );
    assert!(stdout.contains("imap ok: 5"), "{stdout}");
    assert!(stdout.contains("replaced: 1"), "{stdout}");
    assert!(stdout.contains("after: [1, 2]"), "{stdout}");
}

#[test]
fn unencodable_inputs_and_outputs_fail_their_own_inputs() {
    let (stdout, _) = scenario(&["encode"]);
    for index in [1, 3] {
        assert!(
            stdout.contains(&format!("outputs error: kind=Encode index=Some({index})")),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("inputs error: kind=Encode index=Some({index})")),
            "{stdout}"
        );
    }
    assert!(stdout.contains("refusing to encode odd 1"), "{stdout}");
    assert!(
        stdout.contains("outputs ok: 2") && stdout.contains("inputs ok: 2"),
        "{stdout}"
    );
    // An output the parent cannot decode names its task, also through apply.
    assert!(
        stdout.contains(
            "decode: kind=Decode index=Some(0) task=Some(\"pool_program::make_unlucky\")"
        ),
        "{stdout}"
    );
}

#[test]
fn a_worker_program_without_the_task_fails_the_call_with_unknown_task() {
    let worker = env!("CARGO_BIN_EXE_pool_remote_worker");
    let (stdout, _) = scenario(&["unknown_task", worker]);
    // Refused at the call, from the task table the worker sent when it
    // joined: no input was sent, so the error has no index.
    assert!(
        stdout.contains("apply: kind=UnknownTask index=None"),
        "{stdout}"
    );
    assert!(
        stdout.contains("`pool_program::fail_on_seven` is not in worker program"),
        "{stdout}"
    );
    assert!(stdout.contains("builtin: 42"), "{stdout}");
}

#[test]
fn forgetting_init_is_a_clear_startup_error_without_stray_processes() {
    let out = output_with_deadline(&mut Command::new(env!("CARGO_BIN_EXE_pool_no_init")), LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("kind: Startup"), "{stdout}");
    assert!(
        stdout.contains("call pool::init() at the top of main"),
        "{stdout}"
    );
    // The program's copies each started main once and stopped there: the
    // parent's own report plus at most one per worker, never more.
    let reports = stdout.matches("kind: Startup").count();
    assert!((1..=3).contains(&reports), "{reports} reports:\n{stdout}");
}

#[test]
fn a_worker_that_never_reads_its_large_setup_fails_the_build_at_its_deadline() {
    // The setup carries the initializer's 8 MiB input; /bin/sleep never
    // reads it. Sending it must not keep the pool from enforcing the
    // start-up timeout (it used to block build() forever).
    let (stdout, _) = scenario(&["setup_unread"]);
    assert!(
        stdout.contains("build: kind=Startup") && stdout.contains("was not ready within 500ms"),
        "{stdout}"
    );
}

#[test]
fn a_replacement_killed_while_starting_is_replaced_in_turn() {
    // It used to break the pool for good, with a Startup error blaming a
    // missing pool::init() for every later call.
    let (stdout, _) = scenario(&["replacement_killed"]);
    assert!(stdout.contains("map after: ok 8"), "{stdout}");
}

#[test]
fn retries_rerun_an_input_whose_worker_died_a_bounded_number_of_times() {
    // retries(2): an input that always kills its worker runs three times
    // and then fails; inputs that kill their worker once succeed.
    let (stdout, _) = scenario(&["retries"]);
    assert!(
        stdout.contains("always: kind=WorkerDied index=Some(0) task=Some(\"pool_program::log_and_abort\") message=killed by signal 6 (SIGABRT)"),
        "{stdout}"
    );
    assert!(stdout.contains("attempts: 3"), "{stdout}");
    assert!(stdout.contains("once: [0, 1, 2, 3, 4, 5]"), "{stdout}");
}

#[test]
fn a_remote_worker_that_fails_its_setup_is_turned_away_and_the_pool_goes_on() {
    let (out, _) = scenario(&["remote_setup_fails"]);
    // The worker was dropped; the pool was not broken for everyone.
    assert!(out.contains("remote worker: Ok(Err("), "{out}");
    assert!(out.contains("after: ok"), "{out}");
}
