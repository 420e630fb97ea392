//! What a journal costs a map: the same map with and without
//! `.journal(path)`, interleaved in the same run (so that a burst of load
//! hits both alike), best of several rounds, as a ratio of speeds.
//!
//! `cargo bench -p pool --bench journal`; the targets are >= 0.7x for a
//! 1,000,000-input trivial map and >= 0.98x for 1 ms tasks. Also prints
//! the load average, since the figures move with it.
//!
//! For a profiler (instruction counts of the parent, which a noisy shared
//! machine does not blur: `valgrind --tool=callgrind` follows the parent
//! only), `POOL_JOURNAL_BENCH_ONE=plain` or `=journal` runs one trivial
//! map of `POOL_JOURNAL_BENCH_INPUTS` inputs (default 1,000,000) and
//! nothing else. Its workers run the program named by its first argument
//! (under valgrind, `/proc/self/exe` is valgrind's own), so give it as a
//! full path.

use std::path::Path;
use std::time::{Duration, Instant};

use pool::Pool;

pool::task! { fn bump(x: u64) -> u64 { x + 1 } }
pool::task! { fn nap(x: u64) -> u64 { std::thread::sleep(Duration::from_millis(1)); x } }

const ROUNDS: usize = 3;

/// CPU seconds this process (the parent, not its workers) has used.
fn parent_cpu() -> f64 {
    let (user, system) = parent_cpu_split();
    user + system
}

/// [`parent_cpu`] as user and system seconds.
fn parent_cpu_split() -> (f64, f64) {
    // SAFETY: getrusage writes one plain struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (seconds(usage.ru_utime), seconds(usage.ru_stime))
}

/// Best-of-`ROUNDS` seconds of `map` without and with a journal.
fn measure(label: &str, run: impl Fn(Option<&Path>) -> usize) -> (f64, f64) {
    let dir = std::env::temp_dir().join(format!("pool-journal-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let (mut plain, mut journaled) = (f64::MAX, f64::MAX);
    for round in 0..ROUNDS {
        let (began, cpu) = (Instant::now(), parent_cpu());
        let n = run(None);
        plain = plain.min(began.elapsed().as_secs_f64());
        let plain_cpu = parent_cpu() - cpu;
        // A fresh journal each round: every input runs and is written.
        let path = dir.join(format!("{label}-{round}.journal"));
        let (began, cpu) = (Instant::now(), parent_cpu());
        let m = run(Some(&path));
        journaled = journaled.min(began.elapsed().as_secs_f64());
        let journal_cpu = parent_cpu() - cpu;
        assert_eq!(n, m);
        let size = std::fs::metadata(&path).map_or(0, |meta| meta.len());
        eprintln!(
            "{label} round {round}: the parent's CPU {plain_cpu:.3} s plain, {journal_cpu:.3} s \
             journaled; a journal of {size} bytes"
        );
        std::fs::remove_file(&path).expect("remove journal");
    }
    let _ = std::fs::remove_dir(&dir);
    (plain, journaled)
}

/// The map of `task` over `0..count`, with `journal` if given: its length.
fn map<T: pool::Task<Input = u64>>(
    pool: &Pool,
    task: T,
    count: u64,
    journal: Option<&Path>,
) -> usize {
    let call = pool.map_with(task, 0..count);
    match journal {
        Some(path) => call.journal(path).run(),
        None => call.run(),
    }
    .expect("the map")
    .len()
}

/// The load average over 1, 5 and 15 minutes.
fn load() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    pool::init();
    if let Some(one) = std::env::var_os("POOL_JOURNAL_BENCH_ONE") {
        let program = std::env::args_os().next().expect("the program's path");
        let pool = Pool::builder()
            .processes(2)
            .worker_program(program)
            .build()
            .expect("a pool");
        let inputs = std::env::var("POOL_JOURNAL_BENCH_INPUTS").map_or(1_000_000, |n| {
            n.parse().expect("POOL_JOURNAL_BENCH_INPUTS: a count")
        });
        let path = std::env::temp_dir().join(format!("pool-journal-one-{}", std::process::id()));
        let journal = (one == "journal").then_some(path.as_path());
        let (began, (user, system)) = (Instant::now(), parent_cpu_split());
        let n = map(&pool, bump, inputs, journal);
        let (user_after, system_after) = parent_cpu_split();
        println!(
            "{n} inputs in {:.3} s; the parent's CPU {:.3} s user, {:.3} s system",
            began.elapsed().as_secs_f64(),
            user_after - user,
            system_after - system
        );
        let _ = std::fs::remove_file(&path);
        return;
    }
    let pool = Pool::new(2).expect("a pool");
    println!("load average (1, 5, 15 min): {}", load());
    let trivial = measure("trivial", |journal| map(&pool, bump, 1_000_000, journal));
    let napping = measure("nap", |journal| map(&pool, nap, 4000, journal));
    println!(
        "{:<40} {:>9} {:>9} {:>7}  target",
        format!("workload (best of {ROUNDS})"),
        "plain s",
        "journal s",
        "speed"
    );
    for (label, (plain, journaled), target) in [
        ("1,000,000 trivial inputs, 2 workers", trivial, 0.7),
        ("4,000 inputs of 1 ms, 2 workers", napping, 0.98),
    ] {
        let speed = plain / journaled;
        println!(
            "{label:<40} {plain:>9.3} {journaled:>9.3} {speed:>6.2}x  >= {target}x: {}",
            if speed >= target { "PASS" } else { "MISS" }
        );
    }
    println!("load average after: {}", load());
}
