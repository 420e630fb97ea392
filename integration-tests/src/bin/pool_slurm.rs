//! A pool whose workers it submits to Slurm, in the scenario named by the
//! first argument; tests/pool_slurm.rs runs it against a real Slurm. Its
//! workers are copies of this program that Slurm starts with
//! `POOL_CONNECT` set, so they become workers before `main`.
//!
//! The second argument is the directory for the jobs' output files. Lines
//! on stdout are `label: value`, read by the test.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use integration_tests::slurm_pool;
use pool::{AsyncResult, ErrorKind, Pool, SlurmWorkers};

pool::task! {
    /// Sleeps `millis`, then says which worker process ran it.
    fn napping_pid((input, millis): (u64, u64)) -> (u64, u32) {
        std::thread::sleep(Duration::from_millis(millis));
        (input, std::process::id())
    }
}

/// How long any scenario waits for Slurm before it gives up.
const SLURM_WAIT: Duration = Duration::from_secs(120);

fn main() {
    let mut args = std::env::args().skip(1);
    let scenario = args.next().expect("a scenario");
    let output_dir = PathBuf::from(args.next().expect("an output directory"));
    match scenario.as_str() {
        "map" => map_on_six(&output_dir),
        "scancel" => scancel_mid_map(&output_dir, 1),
        "scancel-no-resubmit" => scancel_mid_map(&output_dir, 0),
        "drop" => drop_mid_map(&output_dir),
        "kill-one" => kill_one_mid_map(&output_dir),
        "requeue" => requeue_mid_map(&output_dir),
        "time-limit" => outlive_time_limit(&output_dir),
        "close-then-scancel" => close_then_scancel(&output_dir),
        "wait-for-kill" => wait_for_kill(&output_dir),
        "program" => named_program(&output_dir, &args.next().expect("a worker program")),
        "wrong-key" => build_fails(
            workers(2, &output_dir).sbatch_arg("--export=ALL,POOL_AUTHKEY=not-the-pools-key"),
        ),
        "export-none" => build_fails(workers(2, &output_dir).sbatch_arg("--export=NONE")),
        "wrong-partition" => build_fails(workers(2, &output_dir).partition("no-such-partition")),
        "never-starts" => build_fails(
            workers(2, &output_dir)
                .sbatch_arg("--hold")
                .start_timeout(Duration::from_secs(3)),
        ),
        // Run with a PATH holding only stand-ins for sbatch and scancel.
        "no-squeue" => build_fails(workers(2, &output_dir).start_timeout(Duration::from_secs(2))),
        // Run with a PATH whose sbatch, or squeue, never answers.
        "hung-command" => build_fails(
            workers(2, &output_dir)
                .command_timeout(Duration::from_secs(1))
                .start_timeout(Duration::from_secs(3)),
        ),
        // Run with a PATH whose squeue says the job pends: each report is
        // printed as it comes.
        "reports" => build_fails(
            workers(2, &output_dir)
                .report_every(Duration::from_millis(500))
                .start_timeout(Duration::from_secs(3))
                .on_waiting(|wait| {
                    println!(
                        "waiting: job {} {} {} after {:.1} s",
                        wait.job,
                        wait.state,
                        wait.reason,
                        wait.waited.as_secs_f64()
                    )
                }),
        ),
        other => panic!("unknown scenario {other}"),
    }
}

/// `tasks` workers on the test's one-node cluster: `--overcommit` lets more
/// tasks than cores share the node, as a real cluster would not need.
fn workers(tasks: usize, output_dir: &Path) -> SlurmWorkers {
    SlurmWorkers::new(tasks)
        .sbatch_arg("--overcommit")
        .output(output_dir.join("job-%j.out"))
        .start_timeout(SLURM_WAIT)
        .job_name("pool-slurm-test")
}

fn wait_for_workers(pool: &Pool, count: usize) {
    let deadline = Instant::now() + SLURM_WAIT;
    while pool.remote_workers_joined() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} workers joined",
            pool.remote_workers_joined()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Six workers on the two cores: every input's result, from every worker.
fn map_on_six(output_dir: &Path) {
    let submitted = Instant::now();
    let pool = slurm_pool(workers(6, output_dir));
    let first = pool.apply(napping_pid, (0, 0)).expect("first result");
    assert_eq!(first.0, 0);
    println!(
        "submit_to_first_result_s: {:.3}",
        submitted.elapsed().as_secs_f64()
    );
    wait_for_workers(&pool, 6);
    println!("all_joined_s: {:.3}", submitted.elapsed().as_secs_f64());
    let results = pool
        .map(napping_pid, (0..64).map(|i| (i, 50)))
        .expect("map");
    let inputs: Vec<u64> = results.iter().map(|(input, _)| *input).collect();
    println!("in_order: {}", inputs == (0..64).collect::<Vec<_>>());
    let pids: BTreeSet<u32> = results.iter().map(|(_, pid)| *pid).collect();
    println!("workers_used: {}", pids.len());
    // The same work in chunks of two: which workers the launcher brought,
    // apart from how `map` chooses its chunks.
    let chunked = pool
        .map_with(napping_pid, (0..64).map(|i| (i, 50)))
        .chunksize(2)
        .run()
        .expect("chunked map");
    let pids: BTreeSet<u32> = chunked.iter().map(|(_, pid)| *pid).collect();
    println!("workers_used_in_chunks_of_2: {}", pids.len());
    println!("joined: {}", pool.remote_workers_joined());
}

/// The job cancelled while a map runs: its workers, told to leave
/// (SIGTERM), finish the inputs they run and give back the rest, which run
/// on the workers of the job submitted instead, or, with no resubmits
/// left, fail with `Startup`.
fn scancel_mid_map(output_dir: &Path, resubmits: u32) {
    let pool = slurm_pool(workers(2, output_dir).resubmits(resubmits));
    wait_for_workers(&pool, 2);
    let mut cancelled = false;
    let results = pool
        .map_with(napping_pid, (0..16).map(|i| (i, 300)))
        .progress(|progress| {
            if progress.done >= 2 && !cancelled {
                cancelled = true;
                let job = pool.slurm_jobs()[0];
                scancel(job);
                println!("cancelled: {job}");
            }
        })
        .keep_failures()
        .run();
    println!("jobs: {}", pool.slurm_jobs().len());
    // A pool that can get no more workers fails the call itself.
    print_map_outcomes(results);
}

fn scancel(job: u64) {
    let status = std::process::Command::new("scancel")
        .arg(job.to_string())
        .status()
        .expect("run scancel");
    assert!(status.success());
}

/// Prints how many inputs had each outcome, as `outcome KEY: COUNT`.
fn print_outcomes(outcomes: impl Iterator<Item = String>) {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for outcome in outcomes {
        *counts.entry(outcome).or_default() += 1;
    }
    for (outcome, count) in counts {
        println!("outcome {outcome}: {count}");
    }
}

/// A pool of two Slurm workers, each in the middle of one of `inputs`
/// inputs that take `millis` each.
fn two_busy_workers(
    output_dir: &Path,
    inputs: u64,
    millis: u64,
) -> (Pool, Vec<AsyncResult<(u64, u32)>>) {
    let pool = slurm_pool(workers(2, output_dir));
    wait_for_workers(&pool, 2);
    let pending = (0..inputs)
        .map(|i| pool.apply_async(napping_pid, (i, millis)))
        .collect();
    // Give both workers time to take their input.
    std::thread::sleep(Duration::from_millis(500));
    (pool, pending)
}

/// The pool closed with work queued, then its job cancelled: the work
/// left fails (closing, the pool submits no other job) and `join`
/// returns, where it used to wait for ever.
fn close_then_scancel(output_dir: &Path) {
    let (pool, pending) = two_busy_workers(output_dir, 6, 2_000);
    pool.close();
    scancel(pool.slurm_jobs()[0]);
    // Bounded, so that a pool that would wait for ever says so.
    print_outcomes(pending.into_iter().map(
        |result| match result.get(Some(Duration::from_secs(60))) {
            Ok(_) => "ok".to_string(),
            Err(err) => {
                if err.kind() == ErrorKind::Startup {
                    println!("startup_error: {err}");
                }
                format!("{:?}", err.kind())
            }
        },
    ));
    pool.join();
    println!("joined: true");
    println!("jobs: {}", pool.slurm_jobs().len());
}

/// What a map of `napping_pid` kept with its failures returns.
type KeptResults = Result<Vec<Result<(u64, u32), pool::Error>>, pool::Error>;

/// Prints each outcome of a map kept with its failures, or the call's
/// error.
fn print_map_outcomes(results: KeptResults) {
    match results {
        Ok(results) => print_outcomes(results.iter().enumerate().map(
            |(index, result)| match result {
                Ok((input, _)) if *input == index as u64 => "ok".to_string(),
                Ok(_) => "wrong".to_string(),
                Err(err) => format!("{:?}", err.kind()),
            },
        )),
        Err(err) => println!("call_error: {:?}: {err}", err.kind()),
    }
}

/// The ready Slurm workers: their claimed pids (on this one-node cluster,
/// processes of this host).
fn ready_workers(pool: &Pool) -> Vec<u32> {
    pool.remote_workers()
        .iter()
        .filter_map(|w| w.claimed_pid)
        .collect()
}

/// Waits until `count` Slurm workers are ready; returns how long that took.
fn wait_until_ready(pool: &Pool, count: usize, since: Instant) -> f64 {
    while ready_workers(pool).len() < count {
        assert!(since.elapsed() < SLURM_WAIT, "not back to {count} workers");
        std::thread::sleep(Duration::from_millis(20));
    }
    since.elapsed().as_secs_f64()
}

/// A map of 24 inputs of 300 ms on two workers, one input per chunk, with
/// `fault` done to the pool once four are done; prints the outcomes, how
/// long the pool then took to be back to two workers, and its jobs.
fn fault_mid_map(output_dir: &Path, fault: impl Fn(&Pool)) {
    let pool = slurm_pool(workers(2, output_dir));
    wait_until_ready(&pool, 2, Instant::now());
    let mut done_at = None;
    let results = pool
        .map_with(napping_pid, (0..24).map(|i| (i, 300)))
        .chunksize(1)
        .progress(|progress| {
            if progress.done >= 4 && done_at.is_none() {
                fault(&pool);
                done_at = Some(Instant::now());
            }
        })
        .keep_failures()
        .run();
    print_map_outcomes(results);
    let done_at = done_at.expect("the fault was done");
    println!("back_to_n_s: {:.3}", wait_until_ready(&pool, 2, done_at));
    println!("jobs: {}", pool.slurm_jobs().len());
}

/// One of two workers SIGKILLed mid-map, with default settings: its input
/// runs elsewhere, and the pool submits a job in its place.
fn kill_one_mid_map(output_dir: &Path) {
    fault_mid_map(output_dir, |pool| {
        let victim = ready_workers(pool)[0];
        signal(victim, "KILL");
        println!("killed: {victim}");
    });
}

/// The job requeued by Slurm mid-map: its workers are cut off, it is
/// cancelled and replaced, and the map completes.
fn requeue_mid_map(output_dir: &Path) {
    fault_mid_map(output_dir, |pool| {
        let job = pool.slurm_jobs()[0];
        let status = std::process::Command::new("scontrol")
            .args(["requeue", &job.to_string()])
            .status()
            .expect("run scontrol requeue");
        assert!(status.success(), "scontrol requeue {job}");
        println!("requeued: {job}");
    });
}

pool::task! {
    /// Sleeps `millis`, after noting the input in `dir/runs` (one line per
    /// run, appended), then says which worker ran it.
    fn logged_nap((input, millis, dir): (u64, u64, PathBuf)) -> (u64, u32) {
        use std::io::Write;
        let mut runs = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("runs"))
            .expect("open the runs file");
        // One write per line: `writeln!` on a file may write the number
        // and the newline apart, and another worker's line can come between.
        runs.write_all(format!("{input}\n").as_bytes())
            .expect("note a run");
        std::thread::sleep(Duration::from_millis(millis));
        (input, std::process::id())
    }
}

/// A map of about three minutes on two workers whose jobs have a time
/// limit of one minute: workers told to leave at their limit hand their
/// work back, replacements carry on.
fn outlive_time_limit(output_dir: &Path) {
    let pool = slurm_pool(
        workers(2, output_dir)
            .time_limit(Duration::from_secs(60))
            .resubmits(8),
    );
    let began = Instant::now();
    let dir = output_dir.to_path_buf();
    let results = pool
        .map_with(logged_nap, (0..180).map(|i| (i, 2_000, dir.clone())))
        .chunksize(1)
        .keep_failures()
        .run();
    println!("map_s: {:.3}", began.elapsed().as_secs_f64());
    print_map_outcomes(results);
    let runs = std::fs::read_to_string(output_dir.join("runs")).unwrap_or_default();
    let mut counts = std::collections::BTreeMap::<u64, usize>::new();
    for line in runs.lines() {
        *counts.entry(line.parse().expect("an input")).or_default() += 1;
    }
    println!("inputs_run: {}", counts.len());
    println!("most_runs: {}", counts.values().max().copied().unwrap_or(0));
    println!(
        "run_twice: {}",
        counts.values().filter(|c| **c == 2).count()
    );
    println!("jobs: {}", pool.slurm_jobs().len());
}

fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// The pool dropped while its workers run a map's inputs.
fn drop_mid_map(output_dir: &Path) {
    let pool = slurm_pool(workers(2, output_dir));
    wait_for_workers(&pool, 2);
    let mut results = pool.imap(napping_pid, (0..100).map(|i| (i, 200)));
    let first = results.next().expect("a first result").expect("first");
    assert_eq!(first.0, 0);
    drop(results);
    drop(pool);
    println!("dropped: true");
}

/// Workers that run a worker program of the user's (worker-bin's), not
/// this one.
fn named_program(output_dir: &Path, program: &str) {
    let pool = slurm_pool(workers(1, output_dir).program(program));
    println!(
        "echo: {}",
        pool.apply(pool::builtin::echo, 7).expect("echo")
    );
    let pid = pool
        .apply(pool::builtin::worker_pid, ())
        .expect("worker_pid");
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("the worker's program");
    println!("worker_program: {}", exe.display());
}

/// Waits, with a worker in the middle of a long input, to be SIGKILLed.
fn wait_for_kill(output_dir: &Path) {
    let (_pool, pending) = two_busy_workers(output_dir, 2, 600_000);
    println!("running: true");
    for result in pending {
        let _ = result.get(Some(SLURM_WAIT));
    }
    panic!("not killed");
}

/// A pool whose build must fail: prints the error, and how long it took.
fn build_fails(workers: SlurmWorkers) {
    let started = Instant::now();
    match Pool::builder().processes(0).slurm(workers).build() {
        Ok(pool) => panic!("built a pool with jobs {:?}", pool.slurm_jobs()),
        Err(err) => {
            assert_eq!(err.kind(), ErrorKind::Startup, "{err:#}");
            println!("failed_after_s: {:.3}", started.elapsed().as_secs_f64());
            println!("error: {err:#}");
        }
    }
}
