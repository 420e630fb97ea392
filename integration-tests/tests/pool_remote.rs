//! Remote workers on loopback: a pool that listens, workers that join with
//! `--connect` and the authkey from the environment or a file, and one
//! with a wrong key that is turned away.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use integration_tests::{output_with_deadline, wait_with_deadline, Watchdog};

const LIMIT: Duration = Duration::from_secs(60);
const KEY: &str = "loopback test key";

#[test]
fn remote_workers_join_a_listening_pool_and_run_its_map() {
    let mut pool = Command::new(env!("CARGO_BIN_EXE_pool_program"))
        .arg("remote")
        .env("POOL_AUTHKEY", KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn pool_program");
    let mut stdout = BufReader::new(pool.stdout.take().expect("stdout"));
    let watchdog = Watchdog::start("remote pool", LIMIT);
    let mut line = String::new();
    stdout.read_line(&mut line).expect("address line");
    let address = line
        .trim()
        .strip_prefix("address: ")
        .expect("address")
        .to_string();
    assert!(
        address.starts_with("tcp:127.0.0.1:") && !address.ends_with(":0"),
        "{address}"
    );

    let worker = env!("CARGO_BIN_EXE_pool_remote_worker");
    let wrong = output_with_deadline(
        Command::new(worker)
            .args(["--connect", &address])
            .env("POOL_AUTHKEY", "not the key"),
        LIMIT,
    );
    assert!(!wrong.status.success());
    let complaint = String::from_utf8_lossy(&wrong.stderr);
    assert!(complaint.contains("authentication"), "{complaint}");

    let key_file = std::env::temp_dir().join(format!("pool-remote-key-{}", std::process::id()));
    std::fs::write(&key_file, format!("{KEY}\n")).expect("write key file");
    let mut from_env = Command::new(worker)
        .args(["--connect", &address])
        .env("POOL_AUTHKEY", KEY)
        .spawn()
        .expect("spawn worker");
    let mut from_file = Command::new(worker)
        .args(["--connect", &address, "--authkey-file"])
        .arg(&key_file)
        .env_remove("POOL_AUTHKEY")
        .spawn()
        .expect("spawn worker");

    let mut rest = String::new();
    while stdout.read_line(&mut rest).expect("read") > 0 {}
    drop(watchdog);
    let status = wait_with_deadline(&mut pool, LIMIT);
    assert!(status.success(), "{status}\n{rest}");
    assert!(rest.contains("primes below 10000: 1229"), "{rest}");
    // The pool is gone: its workers see end of file and exit cleanly.
    assert!(wait_with_deadline(&mut from_env, LIMIT).success());
    assert!(wait_with_deadline(&mut from_file, LIMIT).success());
    let _ = std::fs::remove_file(&key_file);
}
