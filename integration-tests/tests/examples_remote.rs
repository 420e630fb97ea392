//! An example program spread over "hosts": `primes --listen` takes its
//! workers from `pool-worker --connect` processes (on loopback here), which
//! serve the examples' tasks because pool-worker links them.

mod examples_support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use examples_support::example_bin;
use integration_tests::{output_with_deadline, slurm_ready, wait_with_deadline};

const KEY: &str = "examples-remote-test-key";
const LIMIT: Duration = Duration::from_secs(60);

/// Starts `primes` with no local workers, listening on a free loopback
/// port, and returns it with the address it announced on stderr.
fn start_listening_primes(args: &[&str]) -> (Child, String, mpsc::Receiver<String>) {
    let mut primes = Command::new(example_bin("primes"))
        .args(args)
        .args([
            "--workers",
            "0",
            "--listen",
            "tcp:127.0.0.1:0",
            "--no-serial",
        ])
        .env("POOL_AUTHKEY", KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start primes");
    let (lines_tx, lines_rx) = mpsc::channel();
    let stderr = BufReader::new(primes.stderr.take().expect("piped stderr"));
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = lines_rx.recv_timeout(LIMIT).unwrap_or_else(|_| {
        let _ = primes.kill();
        panic!("primes announced no listening address")
    });
    let address = first
        .split_whitespace()
        .find_map(|word| word.strip_prefix("tcp:"))
        .map(|a| a.trim_end_matches(':').to_string())
        .unwrap_or_else(|| panic!("no tcp address in {first:?}"));
    (primes, address, lines_rx)
}

fn pool_worker(address: &str, key: &str) -> Command {
    let mut worker = Command::new(example_bin("pool-worker"));
    worker
        .args(["--connect", address])
        .env("POOL_AUTHKEY", key)
        .stdin(Stdio::null());
    worker
}

#[test]
fn primes_runs_on_remote_pool_workers_only() {
    let (mut primes, address, _stderr) = start_listening_primes(&["1e6"]);

    // A worker with the wrong key is refused and says so; the pool waits on.
    let refused = pool_worker(&address, "not the key")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pool-worker");
    let refused = refused.wait_with_output().expect("wait for refused worker");
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("authentication"), "{why}");

    let mut worker = pool_worker(&address, KEY)
        .spawn()
        .expect("start pool-worker");
    let status = wait_with_deadline(&mut primes, LIMIT);
    let mut out = String::new();
    std::io::Read::read_to_string(&mut primes.stdout.take().unwrap(), &mut out).unwrap();
    assert!(status.success(), "primes failed: {out}");
    // pi(10^6) = 78498.
    assert_eq!(
        out.lines().next(),
        Some("78498 primes below 1000000"),
        "{out}"
    );
    // The report counts the worker that did the work (it said "0 workers").
    assert!(out.contains("with 1 remote worker\n"), "{out}");
    // The remote worker leaves when the pool closes.
    assert!(wait_with_deadline(&mut worker, LIMIT).success());
}

#[test]
fn listen_without_an_authkey_is_a_clear_error() {
    let out = Command::new(example_bin("primes"))
        .args(["1e3", "--workers", "0", "--listen", "tcp:127.0.0.1:0"])
        .env_remove("POOL_AUTHKEY")
        .output()
        .expect("run primes");
    assert!(!out.status.success());
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(why.contains("POOL_AUTHKEY"), "{why}");
}

#[test]
fn primes_runs_on_workers_it_submits_to_slurm() {
    if !slurm_ready("primes_runs_on_workers_it_submits_to_slurm") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("examples-slurm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("job output directory");
    // --overcommit: three workers on however few cores the test node has.
    let out = output_with_deadline(
        Command::new(example_bin("primes"))
            .args([
                "1e6",
                "--slurm",
                "3",
                "--slurm-arg=--overcommit",
                "--no-serial",
            ])
            .current_dir(&dir),
        LIMIT,
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.lines().next(), Some("78498 primes below 1000000"));
    assert!(stderr.contains("Slurm job "), "{stderr}");
    // Slurm starts the workers one by one: at least the first did work.
    let report = stdout
        .lines()
        .find(|l| l.starts_with("parallel:"))
        .expect("report");
    assert!(report.contains("remote worker"), "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}
