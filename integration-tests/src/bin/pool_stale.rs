//! The parent of tests/pool_stale.rs: a pool of the `old` form of
//! `stale_task::bump` (fixtures/stale-task/README.md) meeting workers that
//! run other forms of it. The scenario is the first argument; what happened
//! is printed as `key: value` lines.
//!
//! - `rebuilt NEW`: maps `bump` over 0..150 on 2 workers; after 30 results,
//!   puts the file `NEW` in place of this program's file (as a rebuild
//!   does: a new file at the same path) and kills the workers, so that
//!   their replacements start after the rebuild.
//! - `worker-program-rebuilt WORKER NEW`: the same with a pool of 2 workers
//!   of the program at `WORKER`, which is the file replaced by `NEW`.
//! - `worker-program PATH`: a pool of 2 workers of the program at `PATH`,
//!   then a map.
//! - `remote PATH`: a pool of remote workers only, joined by the program at
//!   `PATH` (through `POOL_CONNECT`), then an `apply` of `bump`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pool::{ErrorKind, Pool};
use stale_task_old::bump;

const INPUTS: u64 = 150;
const KEY: &str = "stale task key";
/// Only turns a hang into a failure.
const PATIENCE: Duration = Duration::from_secs(60);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match (args[0].as_str(), args.get(1)) {
        ("rebuilt", Some(new)) => rebuilt(new),
        ("worker-program-rebuilt", Some(worker)) => worker_program_rebuilt(worker, &args[2]),
        ("worker-program", Some(path)) => worker_program(path),
        ("remote", Some(path)) => remote(path),
        _ => panic!("unknown scenario {args:?}"),
    }
}

fn rebuilt(new: &str) {
    let pool = Pool::builder()
        .processes(2)
        .retries(3)
        .build()
        .expect("start the pool");
    let exe = std::env::current_exe().expect("current_exe");
    map_replacing(&pool, &exe, new);
}

fn worker_program_rebuilt(worker: &str, new: &str) {
    let pool = Pool::builder()
        .processes(2)
        .retries(3)
        .worker_program(worker)
        .build()
        .expect("start the pool");
    map_replacing(&pool, Path::new(worker), new);
}

/// Maps `bump` over 0..150; after 30 results, renames `new` over `file`
/// and kills the workers. Prints how many results came from which code.
fn map_replacing(pool: &Pool, file: &Path, new: &str) {
    let before = pool.worker_pids();
    let mut results = Vec::new();
    for (index, result) in pool.imap(bump, 0..INPUTS).enumerate() {
        results.push(result);
        if index == 30 {
            std::fs::rename(new, file).expect("replace the program's file");
            for pid in pool.worker_pids() {
                // SAFETY: SIGKILL to a worker of ours; nothing to uphold.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            println!("replaced and killed at: {index}");
        }
    }
    let (mut old, mut new, mut failed) = (0, 0, Vec::new());
    for (x, result) in (0..INPUTS).zip(results) {
        match result {
            Ok(y) if y == x + 1 => old += 1,
            Ok(y) if y == x + 2 => new += 1,
            Ok(y) => panic!("bump({x}) gave {y}"),
            Err(err) => failed.push(err),
        }
    }
    let after = pool.worker_pids();
    println!(
        "replaced: {}",
        after.iter().all(|pid| !before.contains(pid))
    );
    println!("old code: {old}");
    println!("new code: {new}");
    println!("failed: {}", failed.len());
    let refused = failed
        .iter()
        .filter(|err| err.kind() == ErrorKind::TaskMismatch);
    println!("refused: {}", refused.count());
    for failure in failed.iter().rev().take(1) {
        println!("last failure: {:?}: {failure}", failure.kind());
    }
}

fn worker_program(path: &str) {
    let built = Pool::builder()
        .processes(2)
        .worker_program(path)
        .startup_timeout(PATIENCE)
        .build();
    match built {
        Err(err) => {
            println!("build: {:?}", err.kind());
            println!("error: {err}");
        }
        Ok(pool) => {
            println!("build: ok");
            match pool.map(bump, 0..4) {
                Ok(out) => println!("map: {out:?}"),
                Err(err) => {
                    println!("map: {:?}", err.kind());
                    println!("error: {err}");
                }
            }
        }
    }
}

fn remote(path: &str) {
    let pool = Pool::builder()
        .processes(0)
        .listen("tcp:127.0.0.1:0", KEY)
        .build()
        .expect("start the pool");
    let address = pool.listen_address().expect("listening").to_string();
    let worker = Command::new(path)
        .env(pool::CONNECT_ENV, &address)
        .env(pool::AUTHKEY_ENV, KEY)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the remote worker");
    match pool.apply_async(bump, 1).get(Some(PATIENCE)) {
        Ok(out) => println!("apply: {out}"),
        Err(err) => {
            println!("apply: {:?}", err.kind());
            println!("error: {err}");
        }
    }
    // Closed first, so that a worker it accepted is told to quit.
    drop(pool);
    let out = worker
        .wait_with_output()
        .expect("wait for the remote worker");
    println!("worker exit: {}", out.status);
    let said = String::from_utf8_lossy(&out.stderr);
    println!("worker said: {}", said.trim().replace('\n', " | "));
}
