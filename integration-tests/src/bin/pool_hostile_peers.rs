//! Hosts a pool, with one local worker, that listens for remote workers on
//! loopback, for `tests/pool_hostile_peers.rs`, whose fake remote workers
//! have the key but speak the pool's protocol by hand, as an attacker's
//! would. It prints `address: ...` first, then what the mode measures:
//!
//! - `pids`: once three remote workers said they are ready, the pool's
//!   own pid, `worker_pids()` and `remote_workers()`.
//! - `amplify`: once a remote worker is ready, a map in which it gets a
//!   chunk (and answers it with a huge forged message), with this
//!   process's peak RSS growth over the map (`VmHWM`), and whether the map
//!   came out right.
//! - `unsolicited`: says when a remote worker is ready, then, once it is
//!   gone again (the pool ended it for what it sent next), runs a map on
//!   the local worker.
//! - `cut_off`: a pool with no local worker, in a process limited to
//!   1024 descriptors; once a remote worker is ready, uses up the
//!   descriptors and gives it a 32 MiB input (more than the sockets hold:
//!   the worker does not read it), then terminates the pool, which must
//!   not wait for the worker, and frees the descriptors.
//!
//! The pool's log (tracing, WARN and up) goes to stderr.

use std::time::{Duration, Instant};

use pool::Pool;

pool::task! {
    fn triple(x: u64) -> u64 { x * 3 }
}

pool::task! {
    fn length(x: Vec<u8>) -> usize { x.len() }
}

const PATIENCE: Duration = Duration::from_secs(60);

/// Waits (boundedly) until `done` holds for the pool.
fn wait_until(pool: &Pool, what: &str, done: impl Fn(&Pool) -> bool) {
    let began = Instant::now();
    while !done(pool) {
        if began.elapsed() > PATIENCE {
            eprintln!("gave up waiting: {what}");
            std::process::exit(3);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn ready_remote(pool: &Pool) -> usize {
    let remote = pool.remote_workers();
    remote.iter().filter(|w| w.claimed_pid.is_some()).count()
}

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Maps `triple` over 0..200, one input a chunk, so that every worker,
/// the remote one included, gets a chunk at once; prints the outcome.
fn map_and_report(pool: &Pool) {
    match pool.map_with(triple, 0..200u64).chunksize(1).run() {
        Ok(out) if out.iter().copied().eq((0..200u64).map(|x| x * 3)) => {
            println!("map: ok {}", out.len())
        }
        Ok(out) => println!("map: wrong outputs {out:?}"),
        Err(err) => println!("map: failed: {err}"),
    }
}

fn main() -> Result<(), pool::Error> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .init();
    pool::init();
    let mode = std::env::args().nth(1).unwrap_or_default();
    let key = std::env::var("POOL_AUTHKEY").unwrap_or_default();
    let cut_off = mode == "cut_off";
    if cut_off {
        // So that using them up takes a thousand opens, and the pool
        // cannot raise the limit past them.
        let (_, hard) = integration_tests::descriptor_limits();
        let limit = libc::rlimit {
            rlim_cur: hard.min(1024),
            rlim_max: hard.min(1024),
        };
        // SAFETY: setrlimit only reads the struct it is given.
        let ret = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
        assert_eq!(ret, 0, "setrlimit: {}", std::io::Error::last_os_error());
    }
    let pool = Pool::builder()
        .processes(if cut_off { 0 } else { 1 })
        .listen("tcp:127.0.0.1:0", key)
        .build()?;
    println!("address: {}", pool.listen_address().unwrap_or_default());
    match mode.as_str() {
        "pids" => {
            wait_until(&pool, "three ready remote workers", |p| {
                ready_remote(p) >= 3
            });
            println!("pool pid: {}", std::process::id());
            let pids: Vec<String> = pool.worker_pids().iter().map(u32::to_string).collect();
            println!("worker_pids: {}", pids.join(" "));
            for worker in pool.remote_workers() {
                let claimed = worker.claimed_pid.map_or("none".into(), |p| p.to_string());
                println!(
                    "remote: worker {} from {} claims {claimed}",
                    worker.id, worker.peer
                );
            }
            println!("debug: {pool:?}");
        }
        "amplify" => {
            wait_until(&pool, "a ready remote worker", |p| ready_remote(p) >= 1);
            // Resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0).
            if std::fs::write("/proc/self/clear_refs", "5").is_err() {
                println!("(could not reset the peak RSS: the growth is an upper bound)");
            }
            let before = status_kib("VmRSS:").unwrap_or(0);
            map_and_report(&pool);
            let peak = status_kib("VmHWM:").unwrap_or(0);
            println!("peak growth KiB: {}", peak.saturating_sub(before));
        }
        "unsolicited" => {
            wait_until(&pool, "a ready remote worker", |p| ready_remote(p) >= 1);
            println!("remote ready");
            wait_until(&pool, "the remote worker to be ended", |p| {
                p.remote_workers().is_empty()
            });
            println!("remote gone");
            map_and_report(&pool);
        }
        "cut_off" => {
            wait_until(&pool, "a ready remote worker", |p| ready_remote(p) >= 1);
            println!("remote ready");
            let held = integration_tests::use_up_descriptors(0);
            let input = pool.apply_async(length, vec![7u8; 32 << 20]);
            // The dispatcher still acts while the input waits to be
            // written: nothing of the pool waits for the worker.
            pool.terminate();
            drop(held);
            println!("terminated");
            println!("input failed: {:?}", input.get(None).map_err(|e| e.kind()));
        }
        other => {
            eprintln!("unknown mode {other:?}");
            std::process::exit(2);
        }
    }
    Ok(())
}
