//! `pi` estimates pi with many `apply_async` calls; check that a seed fixes
//! the result whatever the number of workers, and that the estimate is
//! sound.

mod examples_support;

use examples_support::{assert_clean_failure, field, run_example, run_ok};

/// The estimate line and the count of darts inside, from the output.
fn estimate(args: &[&str]) -> (String, f64) {
    let out = run_ok("pi", args);
    let line = field(&out, "pi is about").expect("an estimate").to_string();
    let value: f64 = line
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number in {line:?}"));
    (line, value)
}

#[test]
fn same_seed_same_estimate_with_any_number_of_workers() {
    let base = ["--seed", "7", "--darts", "300000", "--batches", "24"];
    let with = |workers: &str| {
        let mut args = base.to_vec();
        args.extend(["--workers", workers]);
        estimate(&args)
    };
    // The program also runs the batches serially and fails if its count
    // differs, so each of these was checked against a serial computation.
    let (one, value) = with("1");
    let (two, _) = with("2");
    let (three, _) = with("3");
    assert_eq!(one, two);
    assert_eq!(one, three);
    // 300k darts: the standard error is about 0.003.
    assert!((value - std::f64::consts::PI).abs() < 0.02, "{one}");
    assert!(one.contains("of 300000 darts inside; seed 7"), "{one}");
}

#[test]
fn another_seed_gives_another_estimate() {
    let args = |seed| {
        [
            "--seed",
            seed,
            "--darts",
            "100000",
            "-w",
            "2",
            "--no-serial",
        ]
    };
    let (first, _) = estimate(&args("1"));
    let (second, _) = estimate(&args("2"));
    assert_ne!(first, second);
}

#[test]
fn bad_arguments_are_clap_errors_not_panics() {
    for args in [
        &["--darts", "0"][..],
        &["--darts", "many"],
        &["--batches", "0"],
        &["--seed", "-1"],
    ] {
        let run = run_example("pi", args, &[]);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert_clean_failure(&run, "error:");
    }
}
