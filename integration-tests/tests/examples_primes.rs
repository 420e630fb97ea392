//! `primes` counts the primes below N with the pool's `map`; check its
//! count against a plain sieve run here, and its handling of bad input.

mod examples_support;

use examples_support::{assert_clean_failure, field, run_example, run_ok};

/// The number of primes below `n`, by the textbook sieve: an independent
/// check on the segmented sieve the program hands to its workers.
fn primes_below(n: usize) -> usize {
    let mut composite = vec![false; n];
    let mut count = 0;
    for i in 2..n {
        if !composite[i] {
            count += 1;
            for multiple in (i * i..n).step_by(i) {
                composite[multiple] = true;
            }
        }
    }
    count
}

#[test]
fn count_matches_a_serial_sieve() {
    // An odd limit and a prime number of ranges, so ranges end at odd
    // places; more workers than cores.
    let n = 1_000_003;
    let out = run_ok("primes", &["1_000_003", "--workers", "3", "--ranges", "7"]);
    let expected = format!("{} primes below {n}", primes_below(n));
    assert_eq!(out.lines().next(), Some(expected.as_str()), "{out}");
    // The program also counted serially and compared (it fails if the two
    // differ), and says what it measured.
    assert!(
        field(&out, "parallel:").is_some_and(|v| v.ends_with("with 3 workers")),
        "{out}"
    );
    assert!(field(&out, "serial:").is_some(), "{out}");
    assert!(
        field(&out, "speed-up:").is_some_and(|v| v.ends_with('x')),
        "{out}"
    );
}

#[test]
fn scientific_notation_and_no_serial_run() {
    let out = run_ok("primes", &["2e5", "-w", "2", "--no-serial", "--quiet"]);
    let expected = format!("{} primes below 200000", primes_below(200_000));
    assert_eq!(out.lines().next(), Some(expected.as_str()), "{out}");
    assert!(field(&out, "serial:").is_none(), "{out}");
}

#[test]
fn tiny_limits_have_no_primes_or_one() {
    for (n, expected) in [("0", 0), ("2", 0), ("3", 1)] {
        let out = run_ok("primes", &[n, "-w", "1", "--no-serial"]);
        assert!(
            out.starts_with(&format!("{expected} primes below {n}\n")),
            "{out}"
        );
    }
}

#[test]
fn bad_arguments_are_clap_errors_not_panics() {
    for args in [
        &["lots"][..],
        &["-5"],
        &["2e13"],
        &["100", "--workers", "513"],
        &["100", "--ranges", "0"],
        &["100", "--no-such-flag"],
    ] {
        let run = run_example("primes", args, &[]);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert_clean_failure(&run, "error:");
    }
    // Zero local workers parses (remote ones may come with --listen), but
    // alone it leaves nobody to do the work: a clear run-time error.
    let run = run_example("primes", &["100", "--workers", "0"], &[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_clean_failure(&run, "--listen");
}
