//! Scheduling across real worker processes: long uneven tasks go to
//! whichever worker is free (none waits behind another while a worker
//! idles), and inputs whose caller gave up are taken back from the workers
//! that hold them, so the next call does not wait for them.

use std::process::Command;
use std::time::Duration;

use integration_tests::output_with_deadline;

const LIMIT: Duration = Duration::from_secs(120);

fn scenario(name: &str) -> String {
    let out = output_with_deadline(
        Command::new(env!("CARGO_BIN_EXE_pool_schedule")).arg(name),
        LIMIT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{name}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    stdout
}

fn line<'a>(stdout: &'a str, label: &str) -> &'a str {
    let prefix = format!("{label}: ");
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{stdout}"))
}

/// (worker pid, start, end) of the nap of `millis`.
fn nap(out: &str, millis: u64) -> (u32, f64, f64) {
    let fields: Vec<&str> = line(out, &format!("nap {millis}")).split(' ').collect();
    (
        fields[0].parse().unwrap(),
        fields[1].parse().unwrap(),
        fields[2].parse().unwrap(),
    )
}

#[test]
fn uneven_long_tasks_never_wait_behind_each_other_while_a_worker_idles() {
    let out = scenario("uneven");
    let (w400, s400, e400) = nap(&out, 400);
    let (w100, _, e100) = nap(&out, 100);
    let (w300, s300, _) = nap(&out, 300);
    let (_, s50, _) = nap(&out, 50);
    // The 300 ms nap goes to the worker that finished the 100 ms one, after
    // it did, rather than queueing behind the 400 ms nap.
    assert_eq!(w300, w100, "{out}");
    assert_ne!(w300, w400, "{out}");
    assert!(s300 >= e100 && s300 < e400, "{out}");
    // The 50 ms nap starts only once a worker is free, not before.
    assert!(s50 >= e400.min(s300), "{out}");
    let _ = s400;
}

#[test]
fn a_failed_map_takes_back_the_inputs_queued_at_workers() {
    let out = scenario("failed_map");
    assert_eq!(line(&out, "map"), "the first input fails");
    assert_eq!(line(&out, "next"), "Ok(7)");
    // Of 99 naps queued ahead at the two workers, only those already
    // running, or started before the recall reached the worker, ran.
    let started: usize = line(&out, "started").parse().unwrap();
    assert!(started <= 6, "{out}");
}

#[test]
fn a_dropped_imap_takes_back_the_inputs_queued_at_workers() {
    let out = scenario("dropped_imap");
    assert_eq!(line(&out, "first"), "Some(Ok(1))");
    assert_eq!(line(&out, "next"), "Ok(8)");
    let started: usize = line(&out, "started").parse().unwrap();
    assert!(started <= 8, "{out}");
}

#[test]
fn cancelled_handles_are_taken_back_or_stopped() {
    let out = scenario("cancel");
    assert_eq!(line(&out, "cancelled first"), "4");
    assert_eq!(line(&out, "long"), "Ok(1)");
    assert_eq!(line(&out, "next"), "Ok(9)");
    assert_eq!(line(&out, "cancelled ran"), "0");
    assert_eq!(line(&out, "stopped"), "Err(Cancelled)");
    assert_eq!(line(&out, "next after stop"), "Ok(10)");
    assert_eq!(line(&out, "workers"), "2");
    assert_eq!(line(&out, "replaced"), "1");
}
