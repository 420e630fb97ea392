//! A program that runs a pool with many remote workers (this program run
//! again as `connect ADDRESS`, joining over loopback) and prints what
//! happened, one `key: value` line at a time, for `tests/pool_head_threads.rs`.
//!
//! Modes:
//! - `join_leave N`: two local workers; 2 remote workers join, then N in
//!   all, then half of them and one local worker are killed. After each
//!   step every worker answers a map, and the pool's thread count
//!   (`/proc/self/status`) is printed.
//! - `stalled_many N`: two local workers and N remote ones, one of them
//!   stopped (SIGSTOP) while inputs larger than a socket buffer go to
//!   every worker, with a task timeout: the others' results arrive, the
//!   stopped one's input times out, and the pool can be dropped.
//! - `stalled_terminate N`: the same without a timeout: the stopped
//!   worker holds its input for good, the others answer theirs, and
//!   `terminate` returns.
//! - `stalled_ctrl_c N`: the same pool, one remote worker stopped holding
//!   an input of a long map; Ctrl-C (SIGINT to this process) interrupts it.
//! - `descriptors N`: two local workers, then N remote ones join; the
//!   pool's open descriptors (`/proc/self/fd`) are printed before and
//!   after.
//! - `connect ADDRESS`: be a remote worker for the pool at ADDRESS.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use integration_tests::signal;
use integration_tests::stalled::{tally, weigh, BIG};
use pool::{ErrorKind, Pool};

const KEY: &str = "head threads test key";

pool::task! {
    /// Returns the process that ran it.
    fn whose(_x: u32) -> u32 {
        std::process::id()
    }
}

/// The number of threads of this process.
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|count| count.trim().parse().ok())
        .expect("a Threads: line")
}

/// The number of descriptors this process has open.
fn descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Waits (boundedly) until the pool lists `local` local workers and
/// `remote` remote ones that said they are ready.
fn wait_for_workers(pool: &Pool, local: usize, remote: usize) {
    let deadline = Instant::now() + Duration::from_secs(50);
    loop {
        let ready_remote = pool.remote_workers();
        let ready_remote = ready_remote.iter().filter(|w| w.claimed_pid.is_some());
        let remote_now = ready_remote.count();
        let live_remote = pool.remote_workers().len();
        if pool.worker_pids().len() == local && remote_now == remote && live_remote == remote {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "workers did not become ready: {} local, {remote_now} remote",
            pool.worker_pids().len()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn start_remote_workers(address: &str, count: usize) -> Vec<Child> {
    (0..count)
        .map(|_| {
            Command::new(std::env::current_exe().expect("current_exe"))
                .args(["connect", address])
                .env("POOL_AUTHKEY", KEY)
                .spawn()
                .expect("spawn a remote worker")
        })
        .collect()
}

fn listening_pool(timeout: Option<Duration>) -> Result<Pool, pool::Error> {
    let mut builder = Pool::builder().processes(2).listen("tcp:127.0.0.1:0", KEY);
    if let Some(timeout) = timeout {
        builder = builder.task_timeout(timeout);
    }
    builder.build()
}

/// A listening pool with two local workers and `count` remote ones, all
/// ready, the first remote one stopped (SIGSTOP).
fn one_stopped_among(
    count: usize,
    timeout: Option<Duration>,
) -> Result<(Pool, Vec<Child>), pool::Error> {
    let pool = listening_pool(timeout)?;
    let address = pool.listen_address().unwrap_or_default().to_string();
    let remote = start_remote_workers(&address, count);
    wait_for_workers(&pool, 2, count);
    signal(remote[0].id(), libc::SIGSTOP);
    Ok((pool, remote))
}

/// Runs a map of many small inputs, chunk size 1, so that every worker
/// gets some; returns how many processes answered.
fn answering(pool: &Pool, workers: usize) -> Result<usize, pool::Error> {
    let inputs = (0..(workers * 20) as u32).collect::<Vec<_>>();
    let pids = pool.map_with(whose, inputs).chunksize(1).run()?;
    let mut pids: Vec<u32> = pids.into_iter().collect();
    pids.sort_unstable();
    pids.dedup();
    Ok(pids.len())
}

fn join_leave(count: usize) -> Result<(), pool::Error> {
    let pool = listening_pool(None)?;
    let address = pool.listen_address().unwrap_or_default().to_string();
    wait_for_workers(&pool, 2, 0);
    let mut remote = start_remote_workers(&address, 2);
    wait_for_workers(&pool, 2, 2);
    println!("answering 2: {}", answering(&pool, 4)?);
    let few = threads();
    println!("threads with 2 remote: {few}");
    remote.extend(start_remote_workers(&address, count - 2));
    wait_for_workers(&pool, 2, count);
    println!("answering {count}: {}", answering(&pool, count + 2)?);
    let many = threads();
    println!("threads with {count} remote: {many}");
    let killed = count / 2;
    for worker in &mut remote[..killed] {
        signal(worker.id(), libc::SIGKILL);
        let _ = worker.wait();
    }
    signal(pool.worker_pids()[0], libc::SIGKILL);
    let local_before = pool.worker_pids();
    let deadline = Instant::now() + Duration::from_secs(50);
    while pool.worker_pids() == local_before || pool.remote_workers().len() != count - killed {
        assert!(
            Instant::now() < deadline,
            "the killed workers were not replaced"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    wait_for_workers(&pool, 2, count - killed);
    let left = count - killed;
    println!("answering {left}: {}", answering(&pool, left + 2)?);
    let after = threads();
    println!("threads after kills: {after}");
    drop(pool);
    for mut worker in remote {
        let _ = worker.wait();
    }
    println!("dropped");
    Ok(())
}

fn descriptors_per_worker(count: usize) -> Result<(), pool::Error> {
    let pool = listening_pool(None)?;
    let address = pool.listen_address().unwrap_or_default().to_string();
    wait_for_workers(&pool, 2, 0);
    println!("descriptors with 0 remote: {}", descriptors());
    let remote = start_remote_workers(&address, count);
    wait_for_workers(&pool, 2, count);
    // Every one answered, so every one was adopted and served.
    println!("answering {count}: {}", answering(&pool, count + 2)?);
    println!("descriptors with {count} remote: {}", descriptors());
    drop(pool);
    kill_all(remote);
    println!("dropped");
    Ok(())
}

/// Sends one large input to each worker (chunk size 1) and collects the
/// results that come, printing `ok`/`failed` counts once `wanted` came.
fn large_inputs(pool: &Pool, inputs: usize, wanted: usize) {
    let data = "x".repeat(BIG);
    let results = pool.imap_unordered(weigh, (0..inputs).map(|_| (50, data.clone())));
    tally(results.chunksize(1), wanted);
}

fn stalled_many(count: usize) -> Result<(), pool::Error> {
    let (pool, remote) = one_stopped_among(count, Some(Duration::from_secs(3)))?;
    // One input per worker: the stopped one's times out, the rest answer.
    let workers = count + 2;
    large_inputs(&pool, workers, workers);
    drop(pool);
    println!("dropped");
    kill_all(remote);
    Ok(())
}

fn stalled_terminate(count: usize) -> Result<(), pool::Error> {
    let (pool, remote) = one_stopped_among(count, None)?;
    // As many calls as workers: the stopped one holds one for good, the
    // others answer the rest.
    let workers = count + 2;
    let calls = (0..workers).map(|_| pool.apply_async(weigh, (0, "y".repeat(BIG))));
    let mut answered = 0;
    for (_, call) in pool::as_completed(calls.collect::<Vec<_>>()) {
        if call.successful() == Some(true) {
            answered += 1;
        }
        if answered == workers - 1 {
            break;
        }
    }
    println!("answered: {answered}");
    let terminating = Instant::now();
    pool.terminate();
    eprintln!("terminate took {:?}", terminating.elapsed());
    println!("terminated");
    kill_all(remote);
    Ok(())
}

fn kill_all(remote: Vec<Child>) {
    for mut worker in remote {
        signal(worker.id(), libc::SIGKILL);
        let _ = worker.wait();
    }
}

fn stalled_ctrl_c(count: usize) -> Result<(), pool::Error> {
    let (pool, remote) = one_stopped_among(count, None)?;
    let data = "z".repeat(BIG);
    let interrupt = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(1500));
        signal(std::process::id(), libc::SIGINT);
    });
    let run = pool
        .map_with(weigh, (0..200).map(|_| (100, data.clone())))
        .chunksize(1)
        .run();
    match run {
        Err(err) if err.kind() == ErrorKind::Interrupted => println!("interrupted"),
        Err(err) => println!("error: {err}"),
        Ok(_) => println!("finished without interruption"),
    }
    let _ = interrupt.join();
    drop(pool);
    println!("dropped");
    kill_all(remote);
    Ok(())
}

fn main() -> Result<(), pool::Error> {
    pool::init();
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or_default();
    let count = || args.get(2).and_then(|n| n.parse().ok()).unwrap_or(20);
    match mode {
        "connect" => {
            // A stopped process still receives SIGKILL: if this program's
            // pool side dies (the test's deadline), this worker goes too.
            // SAFETY: prctl with integer arguments.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            }
            pool::connect_worker(&args[2], KEY.as_bytes())?;
        }
        "join_leave" => join_leave(count())?,
        "stalled_many" => stalled_many(count())?,
        "stalled_terminate" => stalled_terminate(count())?,
        "stalled_ctrl_c" => stalled_ctrl_c(count())?,
        "descriptors" => descriptors_per_worker(count())?,
        other => {
            eprintln!("unknown mode {other:?}");
            std::process::exit(2);
        }
    }
    Ok(())
}
