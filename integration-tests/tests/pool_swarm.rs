//! Simulated workers that misbehave (`integration_tests::swarm`, hosted by
//! `src/bin/pool_swarm.rs` in a process of their own) are handled as real
//! remote ones: a worker that dies mid-chunk or sends garbage is lost,
//! failing the input it was running with `WorkerLost` (the program allows
//! no reruns) while its other inputs run elsewhere; one that stalls fails
//! its input with `Timeout`; the other workers serve on, and nothing hangs.

use std::time::Duration;

use integration_tests::{line, scenario_output};

const PROGRAM: &str = env!("CARGO_BIN_EXE_pool_swarm");
const LIMIT: Duration = Duration::from_secs(120);

/// Runs `mode` and checks what every mode shares: all 64 inputs answered,
/// `failed` of them with an error of `kind`, the rest right; the `ended`
/// misbehaving workers gone, the others serving a second map and leaving
/// when told.
fn check(mode: &str, kind: &str, failed: usize, ended: usize) {
    let out = scenario_output(PROGRAM, mode, LIMIT);
    assert_eq!(line(&out, "results"), "64", "{out}");
    assert_eq!(line(&out, "ok"), (64 - failed).to_string(), "{out}");
    assert_eq!(
        line(&out, "errors"),
        format!("{{\"{kind}\": {failed}}}"),
        "{out}"
    );
    assert_eq!(line(&out, "workers left"), (8 - ended).to_string(), "{out}");
    assert_eq!(line(&out, "second map ok"), "true", "{out}");
    assert_eq!(line(&out, "swarm exit clean"), "true", "{out}");
    let swarm = line(&out, "swarm");
    let expected = format!(
        "8 workers, {} quit when told, {ended} ended with an error, 0 failed to join, \
         0 threads not started, {ended} faults acted",
        8 - ended
    );
    assert_eq!(swarm, expected, "{out}");
}

#[test]
fn a_simulated_worker_that_dies_mid_chunk_fails_only_the_input_it_ran() {
    check("die", "WorkerLost", 2, 2);
}

#[test]
fn a_simulated_worker_that_stalls_times_out_and_holds_up_no_one() {
    check("stall", "Timeout", 1, 1);
}

#[test]
fn a_simulated_worker_that_sends_garbage_is_ended_like_a_hostile_one() {
    check("garbage", "WorkerLost", 2, 2);
}
