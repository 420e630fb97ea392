//! Large inputs through a real pool (src/bin/pool_large_inputs.rs): mixed
//! with small ones, they come back right and in order through `map`,
//! `imap` and plain `Vec<u8>` alike, call after call (later calls encode
//! into buffers reused from earlier inputs, and send each large input as
//! a message of its own straight from its buffer); and a worker killed
//! while it holds a large input fails that input alone, with the others
//! right and the worker replaced.

use std::time::Duration;

use integration_tests::{line, scenario_output};

const LIMIT: Duration = Duration::from_secs(180);

fn scenario(name: &str) -> String {
    scenario_output(env!("CARGO_BIN_EXE_pool_large_inputs"), name, LIMIT)
}

#[test]
fn mixed_small_and_large_inputs_come_back_right_and_in_order() {
    let out = scenario("mixed");
    for round in 0..2 {
        assert_eq!(line(&out, &format!("map {round}")), "true", "{out}");
        assert_eq!(line(&out, &format!("imap {round}")), "true", "{out}");
        assert_eq!(line(&out, &format!("map vec {round}")), "true", "{out}");
    }
}

#[test]
fn a_worker_killed_holding_a_large_input_fails_that_input_alone() {
    let out = scenario("killed");
    for round in 0..3 {
        assert_eq!(
            line(&out, &format!("round {round} failed")),
            "index=5 kind=WorkerDied",
            "{out}"
        );
        assert_eq!(
            line(&out, &format!("round {round} others right")),
            "true",
            "{out}"
        );
    }
    assert_eq!(out.matches("failed:").count(), 3, "{out}");
    assert_eq!(line(&out, "worker replaced"), "true", "{out}");
}
