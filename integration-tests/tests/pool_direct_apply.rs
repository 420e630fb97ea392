//! `pool.apply` and `apply_async(..).get()` straight to an idle worker
//! (the pool's lease): they wake neither the dispatcher nor the I/O
//! thread, and a worker killed, a task timeout, Ctrl-C and `terminate`
//! end a direct call as they end a queued one (each checked to have gone
//! direct), whether its caller waits on it or left its handle unread. Each scenario runs
//! `pool_direct_apply` under a deadline past which it is killed and the
//! test fails.

use std::time::Duration;

use integration_tests::{line, scenario_output_with};

const LIMIT: Duration = Duration::from_secs(60);
const PROGRAM: &str = env!("CARGO_BIN_EXE_pool_direct_apply");

/// Runs `pool_direct_apply` with `args` and returns what it printed
/// (shown too, for a failing test's log).
fn run(args: &[&str]) -> String {
    let out = scenario_output_with(PROGRAM, args, LIMIT);
    eprintln!("{out}");
    out
}

/// Runs `mode`; checks that its long call went straight to the worker
/// (the dispatcher slept throughout: the usual way wakes it to send the
/// input, and with a task timeout, to watch the clock) and ended with an
/// error of `kind`.
fn direct_call(mode: &str, kind: &str) -> String {
    let out = run(&[mode]);
    assert_eq!(
        line(&out, "dispatcher switches during the call"),
        "0",
        "{out}"
    );
    assert_eq!(line(&out, "long call"), kind, "{out}");
    out
}

/// [`direct_call`], after which the next call is answered by another
/// worker; returns what the scenario printed.
fn fails_and_is_replaced(mode: &str, kind: &str) -> String {
    let out = direct_call(mode, kind);
    assert_eq!(line(&out, "next call"), "ok", "{out}");
    assert_eq!(line(&out, "replaced"), "true", "{out}");
    out
}

/// Runs 300 calls of the kind `how` names (`apply`, `async`) and checks
/// that they woke neither the dispatcher nor the I/O thread: the usual
/// way wakes each at least once a call; a few wake-ups of their own (a
/// clock, a preemption) are allowed for.
fn wakes_neither(how: &str) {
    let calls = 300;
    let out = run(&["wakeups", &calls.to_string(), how]);
    let dispatcher: u64 = line(&out, "dispatcher switches").parse().unwrap();
    let io: u64 = line(&out, "io switches").parse().unwrap();
    assert!(dispatcher < calls / 10, "{out}");
    assert!(io < calls / 10, "{out}");
}

#[test]
fn apply_to_an_idle_worker_wakes_neither_the_dispatcher_nor_the_io_thread() {
    wakes_neither("apply");
}

#[test]
fn apply_async_then_get_wakes_neither_the_dispatcher_nor_the_io_thread() {
    wakes_neither("async");
}

#[test]
fn faults_end_a_direct_call_whose_handle_was_left_unread() {
    fails_and_is_replaced("parked_killed", "WorkerDied");
    fails_and_is_replaced("parked_timeout", "Timeout");
    let out = direct_call("parked_ctrl_c", "Interrupted");
    assert_eq!(line(&out, "next call"), "ok", "{out}");
    let out = direct_call("parked_terminate", "Closed");
    assert!(out.contains("terminated"), "{out}");
}

#[test]
fn a_map_takes_the_worker_back_from_a_call_left_unread() {
    let out = run(&["parked_then_map"]);
    assert_eq!(line(&out, "short wait"), "false", "{out}");
    assert_eq!(line(&out, "map ran on the worker"), "true", "{out}");
    assert_eq!(line(&out, "parked call"), "ok", "{out}");
}

#[test]
fn a_worker_killed_during_a_direct_apply_fails_it_and_is_replaced() {
    fails_and_is_replaced("killed", "WorkerDied");
}

#[test]
fn a_call_made_as_an_idle_worker_dies_runs_on_its_replacement() {
    let out = run(&["killed_idle", "5"]);
    assert_eq!(line(&out, "answered"), "5", "{out}");
}

#[test]
fn a_worker_that_dies_idle_after_direct_calls_is_replaced_without_a_call() {
    let out = run(&["killed_resting"]);
    assert_eq!(line(&out, "replaced"), "true", "{out}");
    assert_eq!(line(&out, "next call"), "ok", "{out}");
}

#[test]
fn a_direct_apply_past_the_task_timeout_is_killed_and_reported() {
    fails_and_is_replaced("timeout", "Timeout");
}

#[test]
fn ctrl_c_interrupts_a_direct_apply_and_the_pool_goes_on() {
    let out = direct_call("ctrl_c", "Interrupted");
    assert_eq!(line(&out, "next call"), "ok", "{out}");
}

/// The caller of a direct call waits in its read of the socket; a
/// process the task forked keeps the socket open past the worker's
/// death, so only the pool's shutdown of the socket ends that read, and
/// it must not wait for the reader to let go first.
#[test]
fn ctrl_c_and_terminate_end_a_direct_apply_whose_socket_a_forked_process_holds() {
    let out = direct_call("held_ctrl_c", "Interrupted");
    assert_eq!(line(&out, "held"), "true", "{out}");
    assert_eq!(line(&out, "next call"), "ok", "{out}");
    let out = direct_call("held_terminate", "Closed");
    assert_eq!(line(&out, "held"), "true", "{out}");
}

/// `cancel_and_stop` from one thread stops a direct call whose reply
/// another thread is reading (before, the reader waited for the task's
/// end, the worker ran on, and `get` saw the cancel only then).
#[test]
fn cancel_and_stop_ends_a_direct_call_another_thread_is_reading() {
    let out = fails_and_is_replaced("shared_cancel", "Cancelled");
    assert_eq!(line(&out, "cancel came first"), "true", "{out}");
}

/// A worker killed while a process its task forked holds its socket
/// open: no end of file comes, so only its exit (a pidfd the pool
/// watches) tells the pool, which then fails the input, the usual way or
/// straight to the worker, and replaces it.
#[test]
fn a_worker_killed_while_a_forked_process_holds_its_socket_fails_its_input() {
    let out = fails_and_is_replaced("held_killed", "WorkerDied");
    assert_eq!(line(&out, "held"), "true", "{out}");
    let out = run(&["held_killed_queued"]);
    assert_eq!(line(&out, "long call"), "WorkerDied", "{out}");
    assert_eq!(line(&out, "held"), "true", "{out}");
    assert_eq!(line(&out, "next call"), "ok", "{out}");
    assert_eq!(line(&out, "replaced"), "true", "{out}");
}

#[test]
fn terminate_ends_a_direct_apply() {
    let out = direct_call("terminate", "Closed");
    assert!(out.contains("terminated"), "{out}");
}

#[test]
fn a_direct_apply_never_overtakes_work_submitted_before_it() {
    let out = run(&["order", "300"]);
    assert_eq!(line(&out, "overtaken"), "0", "{out}");
}

/// A caller waiting in its read of a long direct call holds that
/// worker's connection: the pool's other worker must be served
/// meanwhile (a `map`, a stop that kills and replaces it, another
/// `map`), without anything waiting for that connection.
#[test]
fn a_caller_reading_a_long_direct_call_holds_up_no_other_worker() {
    let out = run(&["neighbours"]);
    // The long call went straight to its worker.
    assert_eq!(
        line(&out, "dispatcher switches during the call"),
        "0",
        "{out}"
    );
    assert_eq!(line(&out, "maps right"), "true", "{out}");
    assert_eq!(line(&out, "all while the long call ran"), "true", "{out}");
    assert_eq!(line(&out, "long call"), "Closed", "{out}");
}

#[test]
fn direct_and_queued_calls_share_the_workers_and_close_waits_for_both() {
    let out = run(&["concurrent"]);
    assert_eq!(line(&out, "wrong answers"), "0", "{out}");
    assert!(out.contains("joined"), "{out}");
    assert_eq!(line(&out, "last caller"), "Closed", "{out}");
    assert_eq!(line(&out, "workers after join"), "0", "{out}");
}
