//! Remote workers lost mid-map, on loopback: a lost worker is the
//! cluster's fault, not the input's, so with default settings its input
//! runs again elsewhere (`PoolBuilder::allowed_failures`), and only an
//! input that loses its workers more often than that fails, with
//! `ErrorKind::WorkerLost`.
//!
//! The pool runs in the test process (no local workers); the workers are
//! `pool_remote_worker --connect` processes, ended with real signals, and
//! a connection is cut with `ss -K` (the kernel aborts the pool's socket
//! and resets the worker's).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::{eventually, wait_with_deadline, Watchdog};
use pool::builtin::{sleep_ms, worker_pid_after_ms};
use pool::{ErrorKind, Pool};

const LIMIT: Duration = Duration::from_secs(60);
const KEY: &str = "lost workers test key";
const WORKER: &str = env!("CARGO_BIN_EXE_pool_remote_worker");

fn listening_pool() -> (Pool, String) {
    let pool = Pool::builder()
        .processes(0)
        .listen("tcp:127.0.0.1:0", KEY)
        .build()
        .expect("build a listening pool");
    let address = pool.listen_address().expect("address").to_string();
    (pool, address)
}

fn start_worker(address: &str) -> Child {
    Command::new(WORKER)
        .args(["--connect", address])
        .env("POOL_AUTHKEY", KEY)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pool_remote_worker")
}

/// Waits (boundedly) until `count` remote workers are ready.
fn wait_ready(pool: &Pool, count: usize) {
    let ready = || {
        let remote = pool.remote_workers();
        remote.iter().filter(|w| w.claimed_pid.is_some()).count() >= count
    };
    assert!(
        eventually(LIMIT, ready),
        "{count} remote workers did not join"
    );
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {}", child.id());
}

fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
    }
    text
}

/// A map of `inputs` inputs of `millis` each on three remote workers,
/// one per input at a time; `fault(victim)` is done to one of them once
/// the map is well under way. Returns the pids that ran each input, in
/// input order, and the three workers.
fn map_with_a_fault(
    inputs: u64,
    millis: u64,
    fault: impl FnOnce(&Child, &Instant) + Send,
) -> (Vec<u32>, Vec<Child>, Duration) {
    let (pool, address) = listening_pool();
    let mut workers: Vec<Child> = (0..3).map(|_| start_worker(&address)).collect();
    wait_ready(&pool, 3);
    let began = Instant::now();
    let pids = std::thread::scope(|scope| {
        let map = scope.spawn(|| {
            pool.map_with(worker_pid_after_ms, (0..inputs).map(|_| millis))
                .chunksize(1)
                .run()
        });
        // Well into the map: every worker is running an input.
        std::thread::sleep(Duration::from_millis(millis * 3 + millis / 2));
        fault(&workers[0], &began);
        map.join().expect("map thread")
    });
    let took = began.elapsed();
    let pids = pids.expect("the map survives a lost worker with default settings");
    drop(pool);
    for worker in &mut workers {
        wait_with_deadline(worker, LIMIT);
    }
    (pids, workers, took)
}

#[test]
fn a_map_completes_when_a_remote_worker_is_killed_mid_map() {
    let _watchdog = Watchdog::start("SIGKILL a remote worker", LIMIT * 2);
    let mut killed_at = None;
    let (pids, workers, took) = map_with_a_fault(60, 100, |victim, began| {
        signal(victim, "KILL");
        killed_at = Some(began.elapsed());
    });
    assert_eq!(pids.len(), 60);
    let victim = workers[0].id();
    let others: Vec<u32> = workers[1..].iter().map(Child::id).collect();
    // Every input has a result, from a worker that ran it; the killed one
    // ran some before it died, the others ran the rest.
    assert!(
        pids.iter()
            .all(|pid| *pid == victim || others.contains(pid)),
        "{pids:?}"
    );
    assert!(
        pids.iter().filter(|pid| others.contains(pid)).count() >= 40,
        "{pids:?}"
    );
    eprintln!(
        "figure: SIGKILL at {:?}; map of 60 x 100 ms on 3 workers done in {took:?}",
        killed_at.unwrap_or_default()
    );
}

#[test]
fn a_map_completes_when_a_stopped_remote_worker_is_cut_off() {
    let _watchdog = Watchdog::start("SIGSTOP and cut a remote worker", LIMIT * 2);
    let (pool, address) = listening_pool();
    let port = address.rsplit(':').next().expect("port").to_string();
    let mut workers: Vec<Child> = (0..3).map(|_| start_worker(&address)).collect();
    wait_ready(&pool, 3);
    let began = Instant::now();
    let mut cut_at = Duration::ZERO;
    let result = std::thread::scope(|scope| {
        let map = scope.spawn(|| {
            pool.map_with(worker_pid_after_ms, (0..30).map(|_| 200u64))
                .chunksize(1)
                .run()
        });
        std::thread::sleep(Duration::from_millis(700));
        let victim = &workers[0];
        signal(victim, "STOP");
        // The stopped worker's kernel still answers for it: only a cut
        // tells the pool. Cut every connection of the victim's to the pool
        // (found by the victim's pid), at the pool's end.
        let ports = worker_ports(victim.id(), &port);
        assert!(
            !ports.is_empty(),
            "no connection of the stopped worker found"
        );
        for local in &ports {
            let cut = Command::new("ss")
                .args(["-K", "src", "127.0.0.1", "sport", "=", &port])
                .args(["dst", "127.0.0.1", "dport", "=", local])
                .output()
                .expect("run ss -K");
            assert!(cut.status.success(), "{cut:?}");
        }
        cut_at = began.elapsed();
        map.join().expect("map thread")
    });
    let took = began.elapsed();
    let pids = result.expect("the map survives a cut-off worker with default settings");
    assert_eq!(pids.len(), 30);
    signal(&workers[0], "CONT");
    // Resumed, the worker finds its connection reset and leaves; it sends
    // nothing the pool would count.
    let status = wait_with_deadline(&mut workers[0], LIMIT);
    let said = stderr_of(&mut workers[0]);
    assert!(!status.success(), "{status}: {said}");
    drop(pool);
    for worker in &mut workers[1..] {
        wait_with_deadline(worker, LIMIT);
    }
    eprintln!(
        "figure: cut at {cut_at:?}; map of 30 x 200 ms on 3 workers done in {took:?}; \
         the resumed worker said: {}",
        said.trim()
    );
}

/// The local ports of process `pid`'s TCP connections to `pool_port`.
fn worker_ports(pid: u32, pool_port: &str) -> Vec<String> {
    let listing = Command::new("ss")
        .args(["-Htnp", "dst", "127.0.0.1", "dport", "=", pool_port])
        .output()
        .expect("run ss");
    let text = String::from_utf8_lossy(&listing.stdout);
    text.lines()
        .filter(|line| line.contains(&format!("pid={pid},")))
        .filter_map(|line| {
            let local = line.split_whitespace().nth(3)?;
            Some(local.rsplit(':').next()?.to_string())
        })
        .collect()
}

#[test]
fn an_input_whose_workers_are_lost_four_times_fails_saying_so() {
    let _watchdog = Watchdog::start("lose an input's workers four times", LIMIT * 3);
    let (pool, address) = listening_pool();
    let handle = pool.apply_async(sleep_ms, 120_000);
    let mut killed = 0;
    let mut workers = Vec::new();
    // One worker at a time, each killed while it runs the input.
    while killed < 4 {
        let worker = start_worker(&address);
        wait_ready(&pool, 1);
        // Time to be sent the input and start it.
        std::thread::sleep(Duration::from_millis(300));
        signal(&worker, "KILL");
        killed += 1;
        workers.push(worker);
        assert!(
            eventually(LIMIT, || pool.remote_workers().is_empty()),
            "the killed worker was not noticed"
        );
        if killed < 4 {
            assert!(!handle.ready(), "failed after {killed} losses");
        }
    }
    let err = handle
        .get(Some(LIMIT))
        .expect_err("a fifth try is not made");
    assert_eq!(err.kind(), ErrorKind::WorkerLost, "{err}");
    assert!(err.message().contains("lost 4 times"), "{err}");
    assert!(err.message().contains("allowed_failures is 3"), "{err}");
    for mut worker in workers {
        wait_with_deadline(&mut worker, LIMIT);
    }
}

#[test]
fn a_remote_worker_told_to_leave_hands_back_its_work_and_exits_cleanly() {
    let _watchdog = Watchdog::start("SIGTERM a remote worker", LIMIT * 2);
    // No loss allowed: the map completes only if the signalled worker
    // finishes the input it runs and gives back the rest, rather than
    // dying with them.
    let pool = Pool::builder()
        .processes(0)
        .listen("tcp:127.0.0.1:0", KEY)
        .allowed_failures(0)
        .build()
        .expect("build a listening pool");
    let address = pool.listen_address().expect("address").to_string();
    let mut workers: Vec<Child> = (0..2).map(|_| start_worker(&address)).collect();
    wait_ready(&pool, 2);
    let began = Instant::now();
    let mut signalled_at = Duration::ZERO;
    let (mut status, mut left_at) = (None, Duration::ZERO);
    let pids = std::thread::scope(|scope| {
        let map = scope.spawn(|| {
            // Chunks of four: the signalled worker holds inputs it has
            // not started.
            pool.map_with(worker_pid_after_ms, (0..24).map(|_| 250u64))
                .chunksize(4)
                .run()
        });
        std::thread::sleep(Duration::from_millis(600));
        signal(&workers[0], "TERM");
        signalled_at = began.elapsed();
        status = Some(wait_with_deadline(&mut workers[0], LIMIT));
        left_at = began.elapsed();
        map.join().expect("map thread")
    });
    let took = began.elapsed();
    let pids = pids.expect("the map survives a worker told to leave, with no loss allowed");
    assert_eq!(pids.len(), 24);
    let status = status.expect("waited");
    let said = stderr_of(&mut workers[0]);
    assert!(status.success(), "the signalled worker: {status}: {said}");
    assert!(
        pool.remote_workers()
            .iter()
            .all(|w| w.claimed_pid != Some(workers[0].id())),
        "the signalled worker still counts as live"
    );
    let victim = workers[0].id();
    let by_victim = pids.iter().filter(|pid| **pid == victim).count();
    drop(pool);
    wait_with_deadline(&mut workers[1], LIMIT);
    eprintln!(
        "figure: SIGTERM at {signalled_at:?}, worker gone by {left_at:?} having run {by_victim} \
         inputs; map of 24 x 250 ms on 2 workers done in {took:?}"
    );
}
