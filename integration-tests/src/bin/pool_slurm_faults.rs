//! A pool of Slurm workers spread over the nodes of a multi-node cluster,
//! for the fault tests of `tests/pool_slurm_faults.rs`, which run it on
//! the cluster's head and hurt the cluster while it maps.
//!
//! `pool_slurm_faults SCENARIO [SECONDS] OUTPUT_DIR`, with the environment:
//! `POOL_SLURM_HEAD_HOST`, the head's address as the nodes reach it;
//! `POOL_SLURM_NODES` (default 3), one worker per node.
//!
//! Scenarios: `map SECONDS`, a map of about that long on default
//! settings; `time-limit`, a map of about three minutes whose jobs have a
//! time limit of one minute.
//!
//! Every run of an input appends `start INPUT HOST JOB UNIX_TIME` and then
//! `end ...` to `OUTPUT_DIR/runs` (the directory is shared by every
//! node). Stdout lines, read by the test: `job: ID`, `ready: UNIX_TIME`
//! once every node's worker is ready, `workers: COUNT UNIX_TIME` at each
//! change of the ready workers, `outcome KIND: COUNT` and `done: UNIX_TIME`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use pool::SlurmWorkers;

/// How long one input naps.
const NAP: Duration = Duration::from_millis(500);

pool::task! {
    /// Naps, noting in `log` when it starts and ends, on which host and
    /// in which Slurm job; returns the input.
    fn logged_nap((input, millis, log): (u64, u64, PathBuf)) -> u64 {
        note(&log, "start", input);
        std::thread::sleep(Duration::from_millis(millis));
        note(&log, "end", input);
        input
    }
}

fn note(log: &Path, what: &str, input: u64) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let job = std::env::var("SLURM_JOB_ID").unwrap_or_default();
    let line = format!("{what} {input} {} {job} {:.3}\n", host.trim(), unix_now());
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the runs log");
    file.write_all(line.as_bytes()).expect("note a run");
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenario = args.first().expect("a scenario");
    let output_dir = PathBuf::from(args.last().expect("an output directory"));
    let head = std::env::var("POOL_SLURM_HEAD_HOST").expect("POOL_SLURM_HEAD_HOST");
    let nodes: usize = std::env::var("POOL_SLURM_NODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let workers = SlurmWorkers::new(nodes)
        .head_host(head)
        .sbatch_arg(format!("--nodes={nodes}"))
        .sbatch_arg("--ntasks-per-node=1")
        .output(output_dir.join("job-%j.out"))
        .job_name("pool-slurm-faults");
    let (workers, seconds) = match scenario.as_str() {
        "map" => {
            let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).expect("seconds");
            (workers, seconds)
        }
        "time-limit" => (
            workers.time_limit(Duration::from_secs(60)).resubmits(8),
            180,
        ),
        other => panic!("unknown scenario {other}"),
    };
    let pool = integration_tests::slurm_pool(workers);
    let ready = || {
        pool.remote_workers()
            .iter()
            .filter(|w| w.claimed_pid.is_some())
            .count()
    };
    let began = Instant::now();
    while ready() < nodes {
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "workers did not join"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("ready: {:.3}", unix_now());
    let stop = AtomicBool::new(false);
    let inputs = seconds * nodes as u64 * 1000 / NAP.as_millis() as u64;
    let log = output_dir.join("runs");
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut last = nodes;
            while !stop.load(Ordering::Relaxed) {
                let now = ready();
                if now != last {
                    println!("workers: {now} {:.3}", unix_now());
                    last = now;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let results = pool
            .map_with(
                logged_nap,
                (0..inputs).map(|i| (i, NAP.as_millis() as u64, log.clone())),
            )
            .chunksize(1)
            .keep_failures()
            .run();
        stop.store(true, Ordering::Relaxed);
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        match results {
            Ok(results) => {
                for (index, result) in results.iter().enumerate() {
                    let outcome = match result {
                        Ok(input) if *input == index as u64 => "ok".to_string(),
                        Ok(_) => "wrong".to_string(),
                        Err(err) => format!("{:?}", err.kind()),
                    };
                    *counts.entry(outcome).or_default() += 1;
                }
            }
            Err(err) => println!("call_error: {:?}: {err}", err.kind()),
        }
        for (outcome, count) in counts {
            println!("outcome {outcome}: {count}");
        }
    });
    println!("inputs: {inputs}");
    println!("jobs: {}", pool.slurm_jobs().len());
    println!("done: {:.3}", unix_now());
}
