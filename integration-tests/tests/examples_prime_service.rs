//! `prime_service` answers requests from stdin, many in flight at once,
//! each by awaiting its `apply_async`: every answer is checked against a
//! count made here, and the service must have had several requests in
//! flight together.

mod examples_support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use examples_support::example_bin;
use integration_tests::wait_with_deadline;

fn primes_in(range: std::ops::Range<u64>) -> usize {
    range
        .filter(|&n| n > 1 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0))
        .count()
}

#[test]
fn every_request_is_answered_and_many_were_in_flight() {
    let mut requests: Vec<(String, usize)> = (0..200u64)
        .map(|i| {
            let (start, end) = (i * 997, i * 997 + 5000);
            (format!("{start}..{end}"), primes_in(start..end))
        })
        .collect();
    requests.push(("30000".into(), primes_in(0..30_000)));
    let mut child = Command::new(example_bin("prime_service"))
        .args(["--workers", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn prime_service");
    let mut stdin = child.stdin.take().expect("stdin");
    let input: String = requests
        .iter()
        .map(|(line, _)| format!("{line}\nnot a number\n"))
        .collect();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let mut stdout = String::new();
    let mut stderr = String::new();
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let _ = err.read_to_string(&mut stderr);
        stderr
    });
    out.read_to_string(&mut stdout).expect("read stdout");
    writer.join().unwrap().expect("write requests");
    let stderr = reader.join().unwrap();
    let status = wait_with_deadline(&mut child, Duration::from_secs(120));
    assert!(status.success(), "{status}\n{stderr}");
    for (line, count) in &requests {
        let answer = format!("{line}: {count}");
        assert!(
            stdout.lines().any(|l| l == answer),
            "no {answer:?} in:\n{stdout}"
        );
    }
    let complaints = stdout
        .lines()
        .filter(|l| l.starts_with("not a number: error: expected a whole number"))
        .count();
    assert_eq!(complaints, requests.len(), "{stdout}");
    let in_flight: usize = stderr
        .split("at most ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary in {stderr:?}"));
    assert!(in_flight > 1, "{stderr}");
    assert!(
        stderr.contains(&format!("served {} requests", 2 * requests.len())),
        "{stderr}"
    );
}
