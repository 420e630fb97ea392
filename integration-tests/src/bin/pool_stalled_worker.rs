//! A program that runs a pool beside a worker that stops reading its
//! connection (SIGSTOPped, as a worker behind a network partition or
//! stopped in a debugger would be) while the pool sends it inputs larger
//! than a socket buffer. It prints what happened, one `key: value` line at
//! a time, for `tests/pool_stalled_worker.rs` to check.
//!
//! Modes:
//! - `local`: two local workers, one stopped; the pool is dropped once
//!   the other has answered everything else.
//! - `remote`: one local worker and one remote worker (this program run
//!   again as `connect ADDRESS`, joining over loopback), the remote one
//!   stopped, with a task timeout: the stopped worker's input times out.
//! - `remote_drop`: the same without a task timeout: the pool is dropped
//!   while the stopped remote worker still holds an input.
//! - `long_task`: two local workers, one input running long with 8 MiB
//!   inputs queued behind it, and a task timeout.
//! - `connect ADDRESS`: be a remote worker for the pool at ADDRESS (the
//!   authkey is in POOL_AUTHKEY).

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use integration_tests::signal;
use integration_tests::stalled::{tally, weigh, BIG};
use pool::Pool;

const INPUTS: usize = 6;
const KEY: &str = "stalled worker test key";

/// Waits (boundedly) until the pool lists `count` workers, local ones and
/// remote ones that said they are ready; returns the local ones' pids.
fn wait_for_workers(pool: &Pool, count: usize) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pids = pool.worker_pids();
        let remote = pool.remote_workers();
        let ready_remote = remote.iter().filter(|w| w.claimed_pid.is_some()).count();
        if pids.len() + ready_remote >= count {
            return pids;
        }
        assert!(Instant::now() < deadline, "workers did not become ready");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Starts this program as a remote worker for the pool at `address`.
fn start_remote_worker(address: &str) -> Child {
    Command::new(std::env::current_exe().expect("current_exe"))
        .args(["connect", address])
        .env("POOL_AUTHKEY", KEY)
        .spawn()
        .expect("spawn the remote worker")
}

fn inputs(long: Option<usize>) -> impl Iterator<Item = (u64, String)> {
    (0..INPUTS).map(move |i| {
        let ms = if Some(i) == long { 600_000 } else { 0 };
        (ms, "x".repeat(BIG))
    })
}

/// Runs the inputs with `pool`, printing each result as it comes, and
/// stops after `wanted` of them (the rest are held by a stopped worker).
fn run(pool: &Pool, long: Option<usize>, wanted: usize) {
    tally(
        pool.imap_unordered(weigh, inputs(long)).chunksize(1),
        wanted,
    );
}

fn main() -> Result<(), pool::Error> {
    pool::init();
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or_default();
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
        "local" => {
            let pool = Pool::builder().processes(2).build()?;
            // The first listed worker is the one the first input goes to.
            let pids = wait_for_workers(&pool, 2);
            signal(pids[0], libc::SIGSTOP);
            // The stopped worker holds one input; the other does the rest.
            run(&pool, None, INPUTS - 1);
            drop(pool);
            println!("dropped");
        }
        "remote" | "remote_drop" => {
            let mut builder = Pool::builder().processes(1).listen("tcp:127.0.0.1:0", KEY);
            if mode == "remote" {
                builder = builder.task_timeout(Duration::from_secs(2));
            }
            let pool = builder.build()?;
            let mut worker = start_remote_worker(pool.listen_address().unwrap_or_default());
            wait_for_workers(&pool, 2);
            signal(worker.id(), libc::SIGSTOP);
            let wanted = if mode == "remote" { INPUTS } else { INPUTS - 1 };
            run(&pool, None, wanted);
            drop(pool);
            println!("dropped");
            signal(worker.id(), libc::SIGKILL);
            let _ = worker.wait();
        }
        "long_task" => {
            let pool = Pool::builder()
                .processes(2)
                .task_timeout(Duration::from_secs(2))
                .build()?;
            wait_for_workers(&pool, 2);
            run(&pool, Some(0), INPUTS);
            drop(pool);
            println!("dropped");
        }
        other => {
            eprintln!("unknown mode {other:?}");
            std::process::exit(2);
        }
    }
    Ok(())
}
