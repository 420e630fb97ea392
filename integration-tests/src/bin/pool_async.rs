//! A program that runs one of the pool's async scenarios, named by its
//! first argument, and prints what happened, one `key: value` line at a
//! time, for `tests/pool_async.rs`: many awaited handles under tokio and
//! a plain `block_on`, workers killed while futures wait, futures
//! dropped before their inputs ran, and futures given up on (a tokio
//! `timeout`) while their inputs run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pool::{ErrorKind, Pool, Result};

pool::task! {
    /// Squares a number.
    fn square(x: u64) -> u64 { x * x }
}

pool::task! {
    /// Sleeps, then creates the file `path` (to show that it ran).
    fn nap_then_touch((millis, path): (u64, PathBuf)) -> Result<u64, String> {
        std::thread::sleep(Duration::from_millis(millis));
        std::fs::write(&path, b"ran").map_err(|e| e.to_string())?;
        Ok(millis)
    }
}

pool::task! {
    /// Creates `started`, sleeps, then creates `finished`: the files say
    /// whether it began and whether it ran to its end.
    fn mark_nap_mark((started, millis, finished): (PathBuf, u64, PathBuf)) -> Result<u64, String> {
        std::fs::write(&started, b"started").map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_millis(millis));
        std::fs::write(&finished, b"finished").map_err(|e| e.to_string())?;
        Ok(millis)
    }
}

/// Waits until `path` exists (a minute at most: only a hang fails here).
async fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// On a one-worker `pool`: an input of `millis` starts, with another
/// call's input held by the worker behind it; its awaited handle (set to
/// `stop` on drop, or the pool's default) is given up on by a 100 ms
/// `timeout`; then a next request is awaited. Prints, under `label`, what
/// became of each, and whether the long input had finished by the time
/// the next result arrived (it cannot have, unless it ran for `millis`).
fn give_up(pool: &Pool, dir: &Path, label: &str, millis: u64, stop: Option<bool>) -> Result<()> {
    // A measure of how long inputs take, so that the worker is given the
    // next input while it runs the long one.
    for x in 0..20 {
        pool.apply(square, x)?;
    }
    let pids = pool.worker_pids();
    let started = dir.join(format!("{label} started"));
    let finished = dir.join(format!("{label} finished"));
    current_thread().block_on(async {
        let long = pool.apply_async(mark_nap_mark, (started.clone(), millis, finished.clone()));
        let long = match stop {
            Some(stop) => long.stop_on_drop(stop),
            None => long,
        };
        let held = pool.apply_async(square, 5);
        wait_for(&started).await;
        let began = Instant::now();
        let waited = tokio::time::timeout(Duration::from_millis(100), long).await;
        let next = pool.apply_async(square, 9).await;
        let next_after = began.elapsed();
        // Read as soon as the next result is in.
        println!("{label} long finished: {}", finished.exists());
        println!("{label} timed out: {}", waited.is_err());
        println!("{label} next: {next:?}");
        println!("{label} held: {:?}", held.await);
        println!("{label} replaced: {}", pool.worker_pids() != pids);
        println!("{label} next after: {next_after:.2?} (long input: {millis} ms)");
    });
    Ok(())
}

/// A fresh directory for one scenario's files.
fn scratch_dir(scenario: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pool-async-{scenario}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A pool of one worker whose awaited handles, dropped unfinished, stop
/// their running inputs or not (`stop_on_drop`).
fn one_worker(stop_on_drop: bool) -> Result<Pool> {
    Pool::builder()
        .processes(1)
        .handle_interrupts(false)
        .stop_on_drop(stop_on_drop)
        .build()
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime")
}

fn main() -> Result<()> {
    pool::init();
    let mode = std::env::args().nth(1).unwrap_or_default();
    let pool = Pool::builder()
        .processes(2)
        .handle_interrupts(false)
        .build()?;
    match mode.as_str() {
        "many" => {
            let total: u64 = current_thread().block_on(async {
                let handles: Vec<_> = (0..10_000u64)
                    .map(|x| pool.apply_async(square, x))
                    .collect();
                let mut total = 0;
                for handle in handles {
                    total += handle.await?;
                }
                Ok::<_, pool::Error>(total)
            })?;
            println!("tokio sum: {total}");
            let total: u64 = futures_executor::block_on(async {
                let mut total = 0;
                for x in 0..1000u64 {
                    total += pool.apply_async(square, x).await?;
                }
                Ok::<_, pool::Error>(total)
            })?;
            println!("block_on sum: {total}");
            // smol's executor, with the imap as a Stream beside handles.
            let (total, streamed) = smol::block_on(async {
                let handles: Vec<_> = (0..1000u64).map(|x| pool.apply_async(square, x)).collect();
                let mut total = 0;
                for handle in handles {
                    total += handle.await?;
                }
                let mut stream = pool.imap(square, 0..1000u64);
                let mut streamed = 0;
                while let Some(value) = smol::stream::StreamExt::next(&mut stream).await {
                    streamed += value?;
                }
                Ok::<_, pool::Error>((total, streamed))
            })?;
            println!("smol sum: {total} {streamed}");
        }
        "killed" => {
            let dir = scratch_dir("killed");
            let outcomes = current_thread().block_on(async {
                let handles: Vec<_> = (0..6)
                    .map(|i| pool.apply_async(nap_then_touch, (1500, dir.join(format!("{i}")))))
                    .collect();
                // Both workers are inside their first task by now.
                tokio::time::sleep(Duration::from_millis(500)).await;
                for pid in pool.worker_pids() {
                    // SAFETY: kill takes plain integers; the pid is one of our workers.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                }
                let mut outcomes = Vec::new();
                for handle in handles {
                    outcomes.push(match handle.await {
                        Ok(_) => "ok".to_string(),
                        Err(err) => format!("{:?}", err.kind()),
                    });
                }
                outcomes
            });
            println!("outcomes: {}", outcomes.join(" "));
            let _ = std::fs::remove_dir_all(&dir);
        }
        "dropped" => {
            let dir = scratch_dir("dropped");
            let one = one_worker(true)?;
            current_thread().block_on(async {
                // The worker takes two inputs at a time: the third waits in
                // the pool, where a dropped future takes it back.
                let first = one.apply_async(nap_then_touch, (300, dir.join("first")));
                let second = one.apply_async(nap_then_touch, (300, dir.join("second")));
                let third = one.apply_async(nap_then_touch, (0, dir.join("third")));
                let waited = tokio::time::timeout(Duration::from_millis(20), third).await;
                println!("third timed out: {}", waited.is_err());
                println!("first: {:?}", first.await);
                println!("second: {:?}", second.await);
            });
            // Whatever else the worker had, it has done by now.
            println!("after: {:?}", one.apply(square, 7));
            println!("third ran: {}", dir.join("third").exists());
            let kept = one.apply_async(nap_then_touch, (0, dir.join("kept")));
            drop(kept);
            println!("after drop: {:?}", one.apply(square, 8));
            println!("never polled ran: {}", dir.join("kept").exists());
            let cancelled = one.apply_async(square, 9);
            let first = cancelled.cancel();
            println!(
                "cancel: {first} {:?}",
                cancelled
                    .get(None)
                    .map_err(|err| err.kind() == ErrorKind::Cancelled)
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
        "given_up" => {
            let dir = scratch_dir("given-up");
            let one = one_worker(true)?;
            give_up(&one, &dir, "default", 60_000, None)?;
            give_up(&one, &dir, "handle keeps", 1_000, Some(false))?;
            let keeping = one_worker(false)?;
            give_up(&keeping, &dir, "pool keeps", 1_000, None)?;
            give_up(&keeping, &dir, "handle stops", 60_000, Some(true))?;
            let _ = std::fs::remove_dir_all(&dir);
        }
        other => println!("unknown scenario {other:?}"),
    }
    Ok(())
}
