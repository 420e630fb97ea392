//! The Python-to-Rust example pair: `examples/python/pickle_client.py`
//! (CPython's `multiprocessing.connection.Client`, standard library only)
//! against the `pickle_service` program. The client checks every result
//! against its own computation; here both sides' output is checked too,
//! and a client with the wrong key is turned away without stopping the
//! service.

mod examples_support;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use examples_support::example_bin;
use integration_tests::{output_with_deadline, python3, wait_with_deadline};

const LIMIT: Duration = Duration::from_secs(120);

fn client(py: &str, address: &str, key: &str) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python/pickle_client.py");
    output_with_deadline(
        Command::new(py)
            .arg(script)
            .arg(address)
            .env("PICKLE_AUTHKEY", key),
        LIMIT,
    )
}

#[test]
fn python_client_gets_dict_results_from_the_rust_service() {
    let Some(py) = python3() else { return };
    let mut service = Command::new(example_bin("pickle_service"))
        .args(["--clients", "1"])
        .env("PICKLE_AUTHKEY", "example key")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pickle_service");
    let mut stdout = BufReader::new(service.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let address = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_string();

    let wrong = client(py, &address, "wrong key");
    assert!(!wrong.status.success());
    let wrong_err = String::from_utf8_lossy(&wrong.stderr);
    assert!(wrong_err.contains("AuthenticationError"), "{wrong_err}");

    let right = client(py, &address, "example key");
    let out = String::from_utf8_lossy(&right.stdout);
    let err = String::from_utf8_lossy(&right.stderr);
    assert!(right.status.success(), "client: {out}\n{err}");
    assert!(
        out.contains("job 2 primes_below -> {'id': 2, 'count': 9592}"),
        "{out}"
    );
    assert!(out.contains("job 4 divide -> {'error': "), "{out}");
    assert!(out.contains("unknown variant `divide`"), "{out}");
    assert!(out.contains("all results checked"), "{out}");

    let status = wait_with_deadline(&mut service, LIMIT);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let mut service_err = String::new();
    service
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut service_err)
        .unwrap();
    assert!(status.success(), "service: {status}\n{rest}\n{service_err}");
    assert!(rest.contains("client 1: 5 requests served"), "{rest}");
    assert!(
        service_err.contains("authentication failed"),
        "{service_err}"
    );
}
