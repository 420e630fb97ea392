//! Remote workers on loopback: a pool that listens, workers that join with
//! `--connect` and the authkey from the environment or a file, and one
//! with a wrong key that is turned away.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use integration_tests::{output_with_deadline, wait_with_deadline, Watchdog};

const LIMIT: Duration = Duration::from_secs(60);
const KEY: &str = "loopback test key";
const WORKER: &str = env!("CARGO_BIN_EXE_pool_remote_worker");

/// Starts `pool_program` in `scenario`, a pool that listens for remote
/// workers, and reads the address it prints first.
fn listening_pool(scenario: &str) -> (Child, BufReader<ChildStdout>, String) {
    let mut pool = Command::new(env!("CARGO_BIN_EXE_pool_program"))
        .arg(scenario)
        .env("POOL_AUTHKEY", KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn pool_program");
    let mut stdout = BufReader::new(pool.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("address line");
    let address = line
        .trim()
        .strip_prefix("address: ")
        .expect("address")
        .to_string();
    (pool, stdout, address)
}

/// Runs the `remote` scenario of `pool_program` (a pool with no local
/// workers, so its map completes only if a remote worker joins), starting
/// workers with `start_workers(address)`; returns the scenario's output and
/// the workers, which it checks exited cleanly once the pool was gone.
fn remote_pool(start_workers: impl FnOnce(&str) -> Vec<Child>) -> String {
    let watchdog = Watchdog::start("remote pool", LIMIT);
    let (mut pool, mut stdout, address) = listening_pool("remote");
    assert!(
        address.starts_with("tcp:127.0.0.1:") && !address.ends_with(":0"),
        "{address}"
    );
    let workers = start_workers(&address);
    let mut rest = String::new();
    while stdout.read_line(&mut rest).expect("read") > 0 {}
    drop(watchdog);
    let status = wait_with_deadline(&mut pool, LIMIT);
    assert!(status.success(), "{status}\n{rest}");
    for mut worker in workers {
        // The pool is gone: its workers see end of file and exit cleanly.
        assert!(wait_with_deadline(&mut worker, LIMIT).success());
    }
    rest
}

#[test]
fn a_remote_worker_with_the_key_in_the_environment_runs_the_map() {
    let output = remote_pool(|address| {
        let wrong = output_with_deadline(
            Command::new(WORKER)
                .args(["--connect", address])
                .env("POOL_AUTHKEY", "not the key"),
            LIMIT,
        );
        assert!(!wrong.status.success());
        let complaint = String::from_utf8_lossy(&wrong.stderr);
        assert!(complaint.contains("authentication"), "{complaint}");
        let worker = Command::new(WORKER)
            .args(["--connect", address])
            .env("POOL_AUTHKEY", KEY)
            .spawn()
            .expect("spawn worker");
        vec![worker]
    });
    assert!(output.contains("primes below 10000: 1229"), "{output}");
}

#[test]
fn a_remote_worker_with_the_key_in_a_file_runs_the_map() {
    let key_file = std::env::temp_dir().join(format!("pool-remote-key-{}", std::process::id()));
    std::fs::write(&key_file, format!("{KEY}\n")).expect("write key file");
    let output = remote_pool(|address| {
        let worker = Command::new(WORKER)
            .args(["--connect", address, "--authkey-file"])
            .arg(&key_file)
            .env_remove("POOL_AUTHKEY")
            .spawn()
            .expect("spawn worker");
        vec![worker]
    });
    let _ = std::fs::remove_file(&key_file);
    assert!(output.contains("primes below 10000: 1229"), "{output}");
}

#[test]
fn a_map_on_six_remote_workers_keeps_every_one_busy() {
    let watchdog = Watchdog::start("remote spread", LIMIT);
    let (mut pool, mut stdout, address) = listening_pool("remote_spread");
    let mut workers: Vec<Child> = (0..6)
        .map(|_| {
            Command::new(WORKER)
                .args(["--connect", &address])
                .env("POOL_AUTHKEY", KEY)
                .spawn()
                .expect("spawn worker")
        })
        .collect();
    let mut output = String::new();
    while stdout.read_line(&mut output).expect("read") > 0 {}
    drop(watchdog);
    assert!(wait_with_deadline(&mut pool, LIMIT).success(), "{output}");
    for worker in &mut workers {
        assert!(wait_with_deadline(worker, LIMIT).success());
    }
    assert!(output.contains("workers joined: 6\n"), "{output}");
    assert!(output.contains("inputs run: 64\n"), "{output}");
    // Chunked by the 6 live workers rather than by the pool's 0 local
    // ones (which made 4 chunks of 16: 2 workers idle).
    assert!(output.contains("workers used: 6\n"), "{output}");
}

#[test]
fn a_remote_worker_leaves_when_its_pool_is_killed_mid_task() {
    let (mut pool, _stdout, address) = listening_pool("remote_long");
    let mut worker = Command::new(WORKER)
        .args(["--connect", &address])
        .env("POOL_AUTHKEY", KEY)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn worker");
    // Time to join and start the two-minute task. (On a machine too slow
    // for that, the worker meets the end of its pool while waiting, which
    // must end it just the same.)
    std::thread::sleep(Duration::from_millis(1500));
    pool.kill().expect("kill the pool");
    let _ = pool.wait();
    // Ten seconds is a hang guard, not a measure: the worker notices within
    // a fraction of a second; before, it ran its task to the end.
    let status = wait_with_deadline(&mut worker, Duration::from_secs(10));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut worker.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert!(!status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains("the pool closed the connection without telling this worker to quit"),
        "{stderr}"
    );
}

/// Context switches of process `pid`'s threads so far.
fn switches(pid: u32) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the worker's threads");
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|line| line.contains("ctxt_switches:"))
                .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

#[test]
fn an_idle_remote_worker_sleeps_until_its_pool_or_a_signal_wakes_it() {
    let _watchdog = Watchdog::start("idle remote worker", LIMIT);
    let (mut pool, mut stdout, address) = listening_pool("remote_idle");
    let mut worker = Command::new(WORKER)
        .args(["--connect", &address])
        .env("POOL_AUTHKEY", KEY)
        .spawn()
        .expect("spawn the worker");
    let mut line = String::new();
    stdout.read_line(&mut line).expect("the worker line");
    let pid: u32 = line
        .trim()
        .strip_prefix("worker: ")
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no worker line: {line:?}"));
    assert_eq!(pid, worker.id());
    // Its loop waits for a message or a leave signal, and its watcher for
    // the pool's end: on timers (10 and 20 wake-ups a second) they took
    // most of a machine running 3,000 of them.
    let before = switches(pid);
    std::thread::sleep(Duration::from_secs(1));
    let idle = switches(pid) - before;
    eprintln!("figure: an idle remote worker was switched {idle} times in 1 s");
    assert!(idle < 5, "{idle} context switches in 1 s");
    // A leave signal still wakes it at once, and it leaves.
    integration_tests::signal(pid, libc::SIGTERM);
    let status = wait_with_deadline(&mut worker, LIMIT);
    assert!(status.success(), "{status}");
    let mut rest = String::new();
    while stdout.read_line(&mut rest).expect("read") > 0 {}
    assert!(wait_with_deadline(&mut pool, LIMIT).success(), "{rest}");
}
