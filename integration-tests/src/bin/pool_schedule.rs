//! A program that runs one of the pool's scheduling scenarios, named by its
//! first argument, and prints what happened, one `key: value` line at a
//! time, for `tests/pool_schedule.rs`: uneven long tasks, and inputs taken
//! back from workers when their callers give up.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pool::{Pool, Result};

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

pool::task! {
    /// Sleeps `millis` and says which worker ran it, and when (wall clock,
    /// shared by the processes of one machine).
    fn timed_nap(millis: u64) -> (u32, f64, f64) {
        let start = now_ms();
        std::thread::sleep(Duration::from_millis(millis));
        (std::process::id(), start, now_ms())
    }
}

pool::task! {
    /// Marks that input `index` started (a file in `dir`, holding the
    /// worker's pid), then sleeps; the input of index 0 fails at once
    /// instead.
    fn marked_nap((dir, index, millis): (PathBuf, u32, u64)) -> Result<u32, String> {
        if index == 0 {
            return Err("the first input fails".into());
        }
        let pid = std::process::id().to_string();
        std::fs::write(dir.join(index.to_string()), pid).map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_millis(millis));
        Ok(index)
    }
}

pool::task! {
    /// Does nothing: teaches the pool that tasks are quick, so it queues
    /// many inputs at each worker ahead of time.
    fn quick(x: u32) -> u32 { x }
}

fn started(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| entries.count())
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pool-schedule-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn inputs(dir: &Path, count: u32, millis: u64) -> Vec<(PathBuf, u32, u64)> {
    (0..count).map(|i| (dir.to_path_buf(), i, millis)).collect()
}

fn main() -> Result<()> {
    pool::init();
    let mode = std::env::args().nth(1).unwrap_or_default();
    let pool = Pool::builder()
        .processes(2)
        .handle_interrupts(false)
        .build()?;
    match mode.as_str() {
        "uneven" => {
            let lengths = [400u64, 100, 300, 50];
            let runs = pool.map_with(timed_nap, lengths).chunksize(1).run()?;
            for (millis, (pid, start, end)) in lengths.iter().zip(runs) {
                println!("nap {millis}: {pid} {start:.1} {end:.1}");
            }
        }
        "failed_map" => {
            pool.map(quick, 0..10_000)?;
            let dir = fresh_dir("failed-map");
            let err = pool
                .map_with(marked_nap, inputs(&dir, 100, 50))
                .chunksize(1)
                .run()
                .unwrap_err();
            println!("map: {}", err.message());
            println!("next: {:?}", pool.apply(quick, 7));
            println!("started: {}", started(&dir));
            let _ = std::fs::remove_dir_all(&dir);
        }
        "dropped_imap" => {
            pool.map(quick, 0..10_000)?;
            let dir = fresh_dir("dropped-imap");
            let mut results = pool.imap(marked_nap, inputs(&dir, 200, 50).into_iter().skip(1));
            println!(
                "first: {:?}",
                results.next().map(|r| r.map_err(|e| e.kind()))
            );
            drop(results);
            println!("next: {:?}", pool.apply(quick, 8));
            println!("started: {}", started(&dir));
            let _ = std::fs::remove_dir_all(&dir);
        }
        "cancel" => {
            pool.map(quick, 0..10_000)?;
            let dir = fresh_dir("cancel");
            // Two long inputs occupy the workers; quick ones queue behind
            // them at the workers, where cancel takes them back.
            let long: Vec<_> = (1..=2)
                .map(|i| pool.apply_async(marked_nap, (dir.clone(), i, 600)))
                .collect();
            let queued: Vec<_> = (3..=6)
                .map(|i| pool.apply_async(marked_nap, (dir.clone(), i, 0)))
                .collect();
            std::thread::sleep(Duration::from_millis(100));
            let cancelled = queued.iter().filter(|h| h.cancel()).count();
            println!("cancelled first: {cancelled}");
            for handle in &long {
                println!("long: {:?}", handle.get(None));
            }
            println!("next: {:?}", pool.apply(quick, 9));
            let ran = (3..=6).filter(|i| dir.join(i.to_string()).exists()).count();
            println!("cancelled ran: {ran}");
            // Stopping a running input replaces its worker.
            let before = pool.worker_pids();
            let running = pool.apply_async(marked_nap, (dir.clone(), 7, 60_000));
            let stopped_pid = loop {
                let marked = std::fs::read_to_string(dir.join("7")).unwrap_or_default();
                if let Ok(pid) = marked.parse::<u32>() {
                    break pid;
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            running.cancel_and_stop();
            println!("stopped: {:?}", running.get(None).map_err(|e| e.kind()));
            println!("next after stop: {:?}", pool.apply(quick, 10));
            // The handle's error comes at once; the worker's end and its
            // replacement follow.
            let mut after = pool.worker_pids();
            integration_tests::eventually(Duration::from_secs(50), || {
                after = pool.worker_pids();
                after.len() == before.len() && !after.contains(&stopped_pid)
            });
            println!("workers: {}", after.len());
            println!(
                "replaced: {}",
                before.iter().filter(|p| !after.contains(p)).count()
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
        other => println!("unknown scenario {other:?}"),
    }
    Ok(())
}
