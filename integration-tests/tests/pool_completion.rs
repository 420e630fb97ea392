//! Completion order, progress and maps that keep failures across real worker
//! processes: `as_completed` (as an iterator and as a stream) and
//! `wait_any` follow the order results arrive in, errors and cancelled or
//! already-completed handles included; a map's progress counts every input
//! exactly once, chunked and with failures; `keep_failures()` keeps every
//! input's result at its index.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use integration_tests::{line, scenario_output, wait_with_deadline, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);

fn scenario(name: &str) -> String {
    scenario_output(env!("CARGO_BIN_EXE_pool_completion"), name, LIMIT)
}

/// `done/failed/total` words back as numbers.
fn reports(words: &str) -> Vec<(usize, usize, usize)> {
    words
        .split(' ')
        .map(|word| {
            let numbers: Vec<usize> = word.split('/').map(|n| n.parse().expect(word)).collect();
            (numbers[0], numbers[1], numbers[2])
        })
        .collect()
}

/// Checks what every progress report must satisfy: the first counts what
/// arrived before any batch (nothing here), `done` grows strictly, `failed`
/// never shrinks nor passes `done`, and `total` never changes.
fn assert_well_formed(reports: &[(usize, usize, usize)], total: usize) {
    assert_eq!(reports.first(), Some(&(0, 0, total)), "{reports:?}");
    for pair in reports.windows(2) {
        let ((done, failed, _), (next_done, next_failed, _)) = (pair[0], pair[1]);
        assert!(done < next_done, "{reports:?}");
        assert!(failed <= next_failed, "{reports:?}");
    }
    for &(done, failed, reported_total) in reports {
        assert!(failed <= done && done <= total, "{reports:?}");
        assert_eq!(reported_total, total, "{reports:?}");
    }
}

#[test]
fn as_completed_yields_ready_handles_first_then_in_completion_order() {
    let out = scenario("as_completed");
    // Given [last, fails, cancelled, blocked, done]: the cancelled and the
    // done one are ready at once (in the given order), then the blocked
    // one, the failing one and the last, as the one worker ran them.
    assert_eq!(line(&out, "order"), "2 4 3 1 0");
    assert_eq!(
        line(&out, "outcomes"),
        "Cancelled ok:4 ok:1 TaskFailed ok:7"
    );
    assert_eq!(line(&out, "remaining"), "3");
    assert_eq!(line(&out, "empty"), "Ok(true)");
}

#[test]
fn as_completed_as_a_stream_keeps_the_same_order() {
    let out = scenario("as_completed_stream");
    assert_eq!(line(&out, "order"), "2 4 3 1 0");
}

#[test]
fn wait_any_returns_a_ready_handle_and_times_out_when_none_is() {
    let out = scenario("wait_any");
    assert_eq!(line(&out, "one done"), "Some(2)");
    assert_eq!(line(&out, "none done"), "None");
    assert_eq!(line(&out, "released"), "Some(0)");
    assert_eq!(line(&out, "outcomes"), "ok:1 ok:2");
}

#[test]
fn progress_counts_every_input_once_with_failures_and_chunks() {
    let out = scenario("progress");
    // 100 inputs in chunks of 13: multiples of 7 fail (15 of them) and 50
    // panics; every input is counted, the failures among them.
    assert_eq!(line(&out, "results"), "100");
    let failing = reports(line(&out, "failing"));
    assert_well_formed(&failing, 100);
    assert_eq!(failing.last(), Some(&(100, 16, 100)), "{failing:?}");

    let succeeding = reports(line(&out, "succeeding"));
    let total: usize = line(&out, "doubled").parse().unwrap();
    assert_eq!(total, (0..3000).filter(|x| x % 7 != 0 && *x != 50).count());
    assert_well_formed(&succeeding, total);
    assert_eq!(succeeding.last(), Some(&(total, 0, total)));

    // A map that stops at its first failure reports the batch that
    // brought it (all of the results, if they came in one batch).
    let stopping = reports(line(&out, "stopping"));
    assert_well_formed(&stopping, 99);
    let &(_, failed, _) = stopping.last().unwrap();
    assert!(failed >= 1, "{stopping:?}");
    let stopped_at = line(&out, "stopped at");
    assert!(
        stopped_at.starts_with("TaskFailed Some(") || stopped_at.starts_with("Panicked Some("),
        "{stopped_at}"
    );
    let index: u64 = stopped_at
        .split_once("Some(")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .and_then(|n| n.parse().ok())
        .expect(stopped_at);
    // Indices of 1..100: input `index + 1`.
    assert!((index + 1) % 7 == 0 || index + 1 == 50, "{stopped_at}");
}

#[test]
fn progress_moves_as_inputs_finish_not_as_chunks_do() {
    let out = scenario("live_progress");
    let total = 100_000;
    assert_eq!(line(&out, "outputs"), total.to_string());
    let reports = reports(line(&out, "reports"));
    assert_well_formed(&reports, total);
    assert_eq!(reports.last(), Some(&(total, 0, total)), "{out}");
    // Automatic chunks of 12,500 inputs (4 per worker of 2): a report per
    // chunk would first count 12,500. Workers send what they finished of
    // a chunk every 50 ms, so the first count comes long before 5% of
    // the inputs are done, whatever the machine's speed.
    let (first_done, _, _) = reports[1];
    eprintln!(
        "first report: {first_done} of {total} inputs done, {} reports; first moved at {}",
        reports.len(),
        line(&out, "first moved at")
    );
    assert!(first_done > 0, "{reports:?}");
    assert!(
        first_done < total / 20,
        "first report at {first_done}: {out}"
    );
}

#[test]
fn keep_failures_keeps_every_error_at_its_index_and_every_output() {
    let out = scenario("keep_failures");
    let results: Vec<&str> = line(&out, "results").split(' ').collect();
    assert_eq!(results.len(), 40, "{out}");
    for (i, result) in results.iter().enumerate() {
        let expected = match i {
            17 => format!("{i}:WorkerDied:Some({i})"),
            _ if i % 7 == 0 => format!("{i}:TaskFailed:Some({i})"),
            _ => format!("{i}:ok:{}", 2 * i),
        };
        assert_eq!(*result, expected, "{out}");
    }
    assert_eq!(line(&out, "closed"), "Err(Closed)");
}

#[test]
fn ctrl_c_fails_a_map_keeping_failures_as_a_whole() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pool_completion"))
        .arg("ctrl_c")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn pool_completion");
    let _watchdog = Watchdog::start("ctrl_c", LIMIT);
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut pids = String::new();
    while !pids.starts_with("pids: ") {
        pids.clear();
        assert!(
            stdout.read_line(&mut pids).expect("read") > 0,
            "no pids line"
        );
    }
    // Let the map get going (it takes 10 s in all), then Ctrl-C the whole
    // process group, as a terminal does.
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill takes plain integers; the group is our child's own.
    assert_eq!(unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) }, 0);
    let mut out = String::new();
    stdout.read_to_string(&mut out).expect("read the rest");
    let status = wait_with_deadline(&mut child, LIMIT);
    assert!(status.success(), "{status}\n{out}");
    assert_eq!(line(&out, "outcome"), "Err(Interrupted)");
    assert_eq!(line(&out, "unfinished"), "true");
}
