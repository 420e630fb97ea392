//! A pool's life in real processes: initializer, worker replacement after
//! max_tasks_per_child, worker stderr, close and join.

use std::process::Command;
use std::time::Duration;

use integration_tests::{output_with_deadline, process_alive};

fn scenario(mode: &str) -> (String, String) {
    let out = output_with_deadline(
        Command::new(env!("CARGO_BIN_EXE_pool_program")).arg(mode),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{mode}: {}\n{stdout}\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

#[test]
fn the_initializer_runs_in_every_worker_first() {
    let (stdout, _) = scenario("initializer");
    assert!(
        stdout.contains(r#"settings: ["configured", "configured", "configured", "configured"]"#),
        "{stdout}"
    );
}

#[test]
fn workers_are_replaced_after_max_tasks_per_child() {
    let (stdout, _) = scenario("max_tasks");
    // 12 inputs, 3 per worker: at least 4 different processes ran them.
    let count: usize = stdout
        .lines()
        .find_map(|line| line.strip_prefix("distinct workers: "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(count >= 4, "{stdout}");
}

#[test]
fn worker_stderr_reaches_ours_tagged_with_the_worker_id() {
    let (_, stderr) = scenario("stderr");
    assert!(
        stderr
            .lines()
            .any(|line| line.starts_with("[worker ") && line.ends_with("] a line from a task")),
        "{stderr}"
    );
}

#[test]
fn close_and_join_finish_submitted_work_and_reap_workers() {
    let (stdout, _) = scenario("close_join");
    assert!(stdout.contains("finished after close: 4"), "{stdout}");
    assert!(stdout.contains("after close: kind=Closed"), "{stdout}");
    let pids: Vec<u32> = stdout
        .lines()
        .find_map(|line| line.strip_prefix("old pids: "))
        .map(|pids| {
            pids.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(pids.len(), 2, "{stdout}");
    for pid in pids {
        assert!(!process_alive(pid), "worker {pid} outlived join");
    }
}
