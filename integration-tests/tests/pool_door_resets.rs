//! A flood of peers that connect and reset at once, about 1,000 a second,
//! at a pool's door (its listener for remote workers): a good remote
//! worker must still join while the flood goes on, and the pool must log
//! a summary now and then rather than a line for each peer.
//!
//! No assertion is on time: the flood runs until the worker joined and
//! ran its map (and for 25 s at least, for the log to be judged), or until
//! a minute ran out; the join time is printed, not compared.

use std::process::Command;
use std::time::Duration;

use integration_tests::{line, output_with_deadline};

const PROGRAM: &str = env!("CARGO_BIN_EXE_pool_door");
const WORKER: &str = env!("CARGO_BIN_EXE_pool_remote_worker");
/// How often the pool may log about failed peers, at most.
const REPORT_EVERY_SECS: f64 = 10.0;

#[test]
fn a_remote_worker_joins_during_a_flood_of_resets() {
    let out = output_with_deadline(
        Command::new(PROGRAM).args(["reset_flood", WORKER]),
        Duration::from_secs(240),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);
    assert_eq!(line(&stdout, "joined during the flood"), "true", "{stdout}");
    assert_eq!(line(&stdout, "map"), "correct", "{stdout}");
    assert_eq!(line(&stdout, "map during the flood"), "true", "{stdout}");
    // One line when the first peer fails, then at most one per period:
    // not one for each of the thousand resets a second.
    let warnings: f64 = line(&stdout, "warnings").parse().unwrap();
    let seconds: f64 = line(&stdout, "flood seconds").parse().unwrap();
    assert!(
        warnings <= 2.0 + seconds / REPORT_EVERY_SECS,
        "{warnings} warnings in {seconds} s:\n{stdout}"
    );
    assert!(
        stdout.contains("peers failed to join the pool"),
        "no summary of the failed peers:\n{stdout}"
    );
}
