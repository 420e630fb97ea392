//! Pools inside tasks: a pool built in a worker runs its calls in that
//! worker, serially, in order, starting no process (joblib's nested
//! calls), unless it asks to fail. Run in real workers by `pool_nested`.

use std::time::Duration;

use integration_tests::{line, scenario_output};

fn run() -> String {
    scenario_output(
        env!("CARGO_BIN_EXE_pool_nested"),
        "all",
        Duration::from_secs(60),
    )
}

fn assert_has(stdout: &str, label_and_value: &str) {
    let (label, value) = label_and_value.split_once(": ").unwrap();
    assert_eq!(line(stdout, label), value, "{stdout}");
}

#[test]
fn a_task_that_maps_over_its_own_pool_gets_its_results_in_order_from_its_own_process() {
    let stdout = run();
    assert_has(&stdout, "outer inline: false");
    assert_has(
        &stdout,
        "squares below 3: [0, 1, 4] in the worker: true \
         inline=true processes=1 pids=[] progress_last=Some(3)",
    );
    assert_has(
        &stdout,
        "squares below 5: [0, 1, 4, 9, 16] in the worker: true \
         inline=true processes=1 pids=[] progress_last=Some(5)",
    );
}

#[test]
fn nested_apply_async_apply_and_imaps_give_their_results() {
    let stdout = run();
    assert_has(
        &stdout,
        "other calls: async=16 apply=25 imap=[16, 36] unordered=[(0, 9), (1, 1)]",
    );
}

#[test]
fn a_panic_in_a_nested_map_fails_that_input_alone_with_its_location() {
    let stdout = run();
    let inner: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("inner: "))
        .collect();
    assert_eq!(
        inner,
        [
            "ok 0",
            "ok 1",
            "err Panicked index=Some(2): task panicked at \
             integration-tests/src/bin/pool_nested.rs:18:13: \
             pool_nested::panic_on_two, input 2: two is right out",
            "ok 3",
            "map Panicked index=Some(2)",
        ],
        "{stdout}"
    );
}

#[test]
fn a_pool_that_asks_to_fail_inside_a_worker_fails_saying_so() {
    let stdout = run();
    assert_has(
        &stdout,
        "refused: TaskFailed: workers could not be started: a pool cannot be started \
         inside a pool worker: it was built with PoolBuilder::nested(Nested::Fail) \
         (Nested::Inline runs its calls in the worker)",
    );
}
