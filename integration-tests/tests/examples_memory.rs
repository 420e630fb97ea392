//! `rarewords` lends each worker's dictionary (per-worker state) to its
//! tasks; `memory_budget` maps a leaky task under a memory budget. Both
//! check themselves and fail if their claim does not hold; these tests run
//! them small.

mod examples_support;

use examples_support::run_ok;

#[test]
fn rarewords_loads_the_dictionary_once_per_worker() {
    let out = run_ok(
        "rarewords",
        &["--workers", "2", "--files", "8", "--words-per-file", "5000"],
    );
    assert!(
        out.contains("2 workers loaded the dictionary once each"),
        "{out}"
    );
    assert!(out.contains("rare words, "), "{out}");
}

#[test]
fn memory_budget_keeps_a_leaky_map_within_the_budget() {
    let out = run_ok(
        "memory_budget",
        &[
            "--inputs",
            "120",
            "--leak-mib",
            "4",
            "--budget-mib",
            "48",
            "--workers",
            "2",
        ],
    );
    eprintln!("{out}");
    let workers: usize = out
        .lines()
        .find_map(|line| line.strip_prefix("leaky, budgeted:"))
        .and_then(|rest| rest.split(", ").nth(1))
        .and_then(|w| w.trim_end_matches(" workers").parse().ok())
        .unwrap_or_else(|| panic!("no worker count in:\n{out}"));
    // 480 MiB leaked over budgets of 48 MiB: several replacements.
    assert!(workers > 4, "{out}");
}
