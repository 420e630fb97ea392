//! Start-up of a 2-worker pool alone: `Pool::new(2)` until every worker is
//! ready, median of many runs, beside a baseline measured in the same run
//! (spawning this program as a plain child that exits at once), so that the
//! pool's own share can be told from the machine's process start-up cost.
//!
//! `cargo bench -p pool --bench startup`; the target is <= 10 ms.

use std::process::Command;
use std::time::Instant;

const RUNS: usize = 41;
/// Set in the baseline's child: it exits before doing anything.
const BASELINE_ENV: &str = "POOL_STARTUP_BENCH_BASELINE";

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    if std::env::var_os(BASELINE_ENV).is_some() {
        return;
    }
    // Optional since workers start before `main`; kept so that the same
    // file measures the pool from before that change too.
    pool::init();
    let exe = std::env::current_exe().expect("current_exe");
    let mut pools = Vec::with_capacity(RUNS);
    let mut spawns = Vec::with_capacity(RUNS);
    // Interleaved, so that a burst of load on the machine hits both alike.
    for _ in 0..RUNS {
        let began = Instant::now();
        let pool = pool::Pool::new(2).expect("start a pool");
        pools.push(began.elapsed().as_secs_f64() * 1e3);
        drop(pool);

        let began = Instant::now();
        let mut children: Vec<_> = (0..2)
            .map(|_| {
                Command::new(&exe)
                    .env(BASELINE_ENV, "1")
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        for child in &mut children {
            child.wait().expect("wait");
        }
        spawns.push(began.elapsed().as_secs_f64() * 1e3);
    }
    let (pool_ms, spawn_ms) = (median(pools), median(spawns));
    println!(
        "{:<44} {:>8}  target",
        format!("workload (median of {RUNS} runs)"),
        "ms"
    );
    println!(
        "{:<44} {pool_ms:>8.2}  <= 10 ms: {}",
        "start-up, 2 workers",
        if pool_ms <= 10.0 { "PASS" } else { "MISS" }
    );
    println!(
        "{:<44} {spawn_ms:>8.2}",
        "baseline: spawn 2 copies that exit at once"
    );
    println!("{:<44} {:>8.2}x", "ratio", pool_ms / spawn_ms);
}
