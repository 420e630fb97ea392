//! A task's panic names where it happened, and with backtraces enabled in
//! the workers carries the worker's backtrace, like Python's
//! `RemoteTraceback`: run in a real pool by the `pool_traceback` program.

use std::time::Duration;

use integration_tests::{line, scenario_output};

/// Where `parse_number`'s `unwrap` is in `src/bin/pool_traceback.rs`.
const PANIC_AT: &str = "integration-tests/src/bin/pool_traceback.rs:12:29";

/// Runs the program with backtraces `on` or `off` in its workers; returns
/// its stdout.
fn run(backtraces: &str) -> String {
    scenario_output(
        env!("CARGO_BIN_EXE_pool_traceback"),
        backtraces,
        Duration::from_secs(60),
    )
}

fn assert_has(stdout: &str, label_and_value: &str) {
    let (label, value) = label_and_value.split_once(": ").unwrap();
    assert_eq!(line(stdout, label), value, "{stdout}");
}

/// What both runs print alike: the location, in the one-line forms too,
/// and a task's `Err` untouched.
fn assert_location_and_plain_errors(stdout: &str) {
    assert_has(
        stdout,
        "panic location: file=integration-tests/src/bin/pool_traceback.rs line=12 column=29",
    );
    assert_has(stdout, "panic kind: Panicked index: Some(1)");
    for form in ["display", "alternate"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("panic {form}: ")))
            .unwrap_or_else(|| panic!("no {form} in:\n{stdout}"));
        let expected_start = format!(
            "panic {form}: task panicked at {PANIC_AT}: pool_traceback::parse_number, input 1, worker "
        );
        assert!(line.starts_with(&expected_start), "{line}");
        assert!(
            line.ends_with(
                ": called `Result::unwrap()` on an `Err` value: ParseIntError { kind: InvalidDigit }"
            ),
            "{line}"
        );
    }
    let imap: Vec<&str> = stdout.lines().filter(|l| l.starts_with("imap ")).collect();
    assert_eq!(imap.len(), 3, "{stdout}");
    assert_eq!((imap[0], imap[2]), ("imap ok: 1", "imap ok: 3"));
    assert!(
        imap[1].starts_with(&format!("imap error: task panicked at {PANIC_AT}: ")),
        "{}",
        imap[1]
    );
    // A task's own error is as it was: no location, no backtrace.
    let display = stdout
        .lines()
        .find(|l| l.starts_with("error display: "))
        .unwrap();
    assert!(
        display.starts_with(
            "error display: task failed: pool_traceback::try_parse_number, input 1, worker "
        ) && display.ends_with(": invalid digit found in string"),
        "{display}"
    );
    assert_has(stdout, "error location: None backtrace: None");
    let debug = stdout
        .lines()
        .find(|l| l.starts_with("error debug: "))
        .unwrap();
    assert!(!debug.contains("panic_location"), "{debug}");
}

#[test]
fn a_panic_names_its_file_and_line_and_has_no_backtrace_when_they_are_off() {
    let stdout = run("off");
    assert_location_and_plain_errors(&stdout);
    assert_has(&stdout, "panic backtrace: none");
}

#[test]
fn with_rust_backtrace_in_the_workers_a_panic_carries_their_backtrace() {
    let stdout = run("on");
    assert_location_and_plain_errors(&stdout);
    assert_has(&stdout, "panic backtrace names the task: true");
    assert_has(&stdout, "panic debug shows the backtrace: true");
    let lines = stdout
        .lines()
        .find_map(|l| l.strip_prefix("panic backtrace: "))
        .unwrap();
    eprintln!("remote backtrace: {lines}");
}
