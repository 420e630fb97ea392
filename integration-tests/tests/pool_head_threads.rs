//! The pool's head at scale: its thread count does not grow with its
//! workers, and a stopped worker among many holds up nobody else. Each
//! scenario runs `pool_head_threads` under a deadline past which it is
//! killed and the test fails, so that a stall fails the test instead of
//! hanging it.

use std::time::Duration;

use integration_tests::{line, scenario_output_with};

const LIMIT: Duration = Duration::from_secs(120);
const PROGRAM: &str = env!("CARGO_BIN_EXE_pool_head_threads");

/// How many remote workers join (`POOL_HEAD_REMOTE` to measure more).
fn remote_count() -> String {
    std::env::var("POOL_HEAD_REMOTE").unwrap_or_else(|_| "40".to_string())
}

#[test]
fn the_heads_thread_count_stays_the_same_as_workers_join_and_leave() {
    let count = remote_count();
    let n: usize = count.parse().expect("POOL_HEAD_REMOTE");
    let out = scenario_output_with(PROGRAM, &["join_leave", &count], LIMIT);
    eprintln!("{out}");
    // Every worker answered at each step, so each was served.
    assert_eq!(line(&out, "answering 2"), "4", "{out}");
    assert_eq!(
        line(&out, &format!("answering {n}")),
        (n + 2).to_string(),
        "{out}"
    );
    let left = n - n / 2;
    assert_eq!(
        line(&out, &format!("answering {left}")),
        (left + 2).to_string(),
        "{out}"
    );
    let few = line(&out, "threads with 2 remote");
    assert_eq!(
        line(&out, &format!("threads with {n} remote")),
        few,
        "{out}"
    );
    assert_eq!(line(&out, "threads after kills"), few, "{out}");
    assert!(out.contains("dropped"), "{out}");
}

#[test]
fn the_head_holds_one_descriptor_per_remote_worker() {
    let n = 40;
    let out = scenario_output_with(PROGRAM, &["descriptors", &n.to_string()], LIMIT);
    eprintln!("{out}");
    assert_eq!(line(&out, &format!("answering {n}")), (n + 2).to_string());
    let before: usize = line(&out, "descriptors with 0 remote").parse().unwrap();
    let after: usize = line(&out, &format!("descriptors with {n} remote"))
        .parse()
        .unwrap();
    // Each worker's connection, and a little slack for the pool's own
    // (never two per worker: at 10,000 workers that is the usual hard
    // limit on descriptors).
    let grown = after.saturating_sub(before);
    assert!(grown >= n && grown <= n + n / 4, "grew by {grown}: {out}");
    assert!(out.contains("dropped"), "{out}");
}

#[test]
fn a_stopped_worker_among_many_does_not_delay_the_others_or_the_timeout() {
    let out = scenario_output_with(PROGRAM, &["stalled_many", "12"], LIMIT);
    assert!(out.contains("error: kind=Timeout"), "{out}");
    assert_eq!(line(&out, "ok"), "13", "{out}");
    assert_eq!(line(&out, "failed"), "1", "{out}");
    assert!(out.contains("dropped"), "{out}");
}

#[test]
fn a_stopped_worker_among_many_does_not_delay_the_others_or_terminate() {
    let out = scenario_output_with(PROGRAM, &["stalled_terminate", "12"], LIMIT);
    assert_eq!(line(&out, "answered"), "13", "{out}");
    assert!(out.contains("terminated"), "{out}");
}

#[test]
fn a_stopped_worker_among_many_does_not_delay_ctrl_c() {
    let out = scenario_output_with(PROGRAM, &["stalled_ctrl_c", "12"], LIMIT);
    assert!(out.contains("interrupted\ndropped"), "{out}");
}
