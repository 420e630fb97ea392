//! A worker that stops reading its connection while the pool sends it an
//! input larger than a socket buffer must not stall the pool: the other
//! workers' results still arrive, task timeouts still fire, and dropping
//! the pool still returns. Each scenario runs `pool_stalled_worker` under
//! a deadline past which it is killed and the test fails, so that a stall
//! fails the test instead of hanging it.

use std::time::Duration;

use integration_tests::scenario_output;

const LIMIT: Duration = Duration::from_secs(60);

fn scenario(mode: &str) -> String {
    scenario_output(env!("CARGO_BIN_EXE_pool_stalled_worker"), mode, LIMIT)
}

#[test]
fn a_stopped_local_worker_does_not_stall_the_others_or_the_drop() {
    let out = scenario("local");
    assert!(out.contains("ok: 5\nfailed: 0\ndropped"), "{out}");
}

#[test]
fn a_stopped_remote_worker_times_out_and_the_others_finish() {
    let out = scenario("remote");
    assert!(out.contains("error: kind=Timeout"), "{out}");
    assert!(out.contains("ok: 5\nfailed: 1\ndropped"), "{out}");
}

#[test]
fn a_pool_with_a_stopped_remote_worker_can_be_dropped() {
    let out = scenario("remote_drop");
    assert!(out.contains("ok: 5\nfailed: 0\ndropped"), "{out}");
}

#[test]
fn a_long_task_with_large_inputs_queued_times_out_alone() {
    let out = scenario("long_task");
    assert!(out.contains("error: kind=Timeout index=Some(0)"), "{out}");
    assert!(out.contains("ok: 5\nfailed: 1\ndropped"), "{out}");
}
