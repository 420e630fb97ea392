//! Node failures on a multi-node Slurm, treated as the cluster's, not the
//! task's: a pool of one worker per node (`pool_slurm_faults`, run on the
//! cluster's head) maps while the test kills a worker, cuts a node off,
//! kills a node's slurmd so that Slurm requeues the job, or lets the jobs
//! run into their time limit. Each map must complete with every result
//! right and no input run more than twice; each test prints its figures.
//!
//! They need the three-node cluster of
//! `integration-tests/slurm/multi-node-slurm.sh` (head at 10.213.0.1),
//! which `.ci/run` starts as root; without it each says why it skips, and
//! with `POOL_MULTINODE_TESTS=require` fails. The slurmd test restarts the
//! cluster with a short `SlurmdTimeout` (30 s, so that Slurm requeues the
//! job while the map runs) and puts Slurm's default back when it ends.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use integration_tests::{line, wait_with_deadline};

const PROGRAM: &str = env!("CARGO_BIN_EXE_pool_slurm_faults");
const HEAD: &str = "10.213.0.1";
/// Bounds that only turn a hang into a failure.
const LIMIT: Duration = Duration::from_secs(600);

/// One test at a time: they share the cluster.
static CLUSTER: Mutex<()> = Mutex::new(());

/// The cluster's control script, if it is up.
fn cluster(test: &str) -> Option<(PathBuf, std::sync::MutexGuard<'static, ()>)> {
    let serial = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    integration_tests::multinode_cluster(test).map(|script| (script, serial))
}

/// Restarts what needs it so that the cluster runs with Slurm's
/// `SlurmdTimeout` of `seconds` (the script rewrites its configuration).
fn slurmd_timeout(script: &PathBuf, seconds: u32) {
    let out = Command::new(script)
        .arg("start")
        .env("POOL_MULTINODE_SLURMD_TIMEOUT", seconds.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run the cluster script");
    assert!(
        out.status.success(),
        "start with SlurmdTimeout={seconds}: {out:?}"
    );
}

/// What the cluster's slurmd processes are called (the script's prefix).
fn slurmd_name() -> String {
    let prefix = std::env::var("POOL_MULTINODE_PREFIX").unwrap_or_else(|_| "pmn".into());
    format!("{prefix}-slurmd")
}

fn control(script: &PathBuf, args: &[&str]) -> String {
    let out = Command::new(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the cluster script");
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A run of `pool_slurm_faults` on the head, read line by line.
struct Run {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
    text: String,
    dir: PathBuf,
}

impl Run {
    fn start(script: &PathBuf, args: &[&str]) -> Run {
        let dir = std::env::temp_dir().join(format!(
            "pool-slurm-faults-{}-{}",
            args[0],
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("output dir");
        let mut child = Command::new(script)
            .args(["on", "head", PROGRAM])
            .args(args)
            .arg(&dir)
            .env("POOL_SLURM_HEAD_HOST", HEAD)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start pool_slurm_faults on the head");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Run {
            child,
            stdout,
            text: String::new(),
            dir,
        }
    }

    /// A map of about `seconds` on the head, five seconds after every
    /// node's worker was ready.
    fn well_under_way(script: &PathBuf, seconds: &str) -> Run {
        let mut run = Run::start(script, &["map", seconds]);
        run.until("ready");
        std::thread::sleep(Duration::from_secs(5));
        run
    }

    /// Reads up to the line that starts with `label`; returns its value.
    fn until(&mut self, label: &str) -> String {
        let prefix = format!("{label}: ");
        loop {
            let mut line = String::new();
            let read = self.stdout.read_line(&mut line).expect("read");
            assert!(read > 0, "no {label:?} line:\n{}", self.text);
            self.text.push_str(&line);
            if let Some(value) = line.trim_end().strip_prefix(&prefix) {
                return value.to_string();
            }
        }
    }

    /// Reads the rest, waits for the program, and checks the map: every
    /// input ok; returns the output and the runs log.
    fn finish(mut self) -> (String, Runs) {
        let mut rest = String::new();
        while self.stdout.read_line(&mut rest).expect("read") > 0 {}
        self.text.push_str(&rest);
        let status = wait_with_deadline(&mut self.child, LIMIT);
        let text = self.text;
        assert!(status.success(), "{status}\n{text}");
        assert!(!text.contains("call_error"), "{text}");
        let inputs = line(&text, "inputs");
        assert_eq!(line(&text, "outcome ok"), inputs, "{text}");
        let runs = Runs::read(&self.dir.join("runs"));
        let _ = std::fs::remove_dir_all(&self.dir);
        (text, runs)
    }
}

/// One line of the runs log.
struct RunLine {
    start: bool,
    input: u64,
    host: String,
    job: String,
    at: f64,
}

struct Runs(Vec<RunLine>);

impl Runs {
    fn read(path: &std::path::Path) -> Runs {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        Runs(
            text.lines()
                .filter_map(|l| {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    Some(RunLine {
                        start: *w.first()? == "start",
                        input: w.get(1)?.parse().ok()?,
                        host: w.get(2)?.to_string(),
                        job: w.get(3)?.to_string(),
                        at: w.get(4)?.parse().ok()?,
                    })
                })
                .collect(),
        )
    }

    /// How many times each input started.
    fn starts(&self) -> BTreeMap<u64, usize> {
        let mut counts = BTreeMap::new();
        for run in self.0.iter().filter(|r| r.start) {
            *counts.entry(run.input).or_default() += 1;
        }
        counts
    }

    fn most_runs(&self) -> usize {
        self.starts().values().copied().max().unwrap_or(0)
    }

    fn run_twice(&self) -> usize {
        self.starts().values().filter(|c| **c >= 2).count()
    }

    /// Seconds from `at` until the inputs that had started on `host` (or
    /// were sent there before `at`, and started after it) and ran again
    /// elsewhere after `at` started again (the slowest such): the time to
    /// reroute. A host cut off from the pool
    /// may still finish its input (and log it, on the shared disk); the
    /// pool never hears of it.
    fn reroute_after(&self, host: &str, at: f64) -> Option<f64> {
        self.0
            .iter()
            .filter(|r| r.start && r.host == host)
            .filter_map(|lost| {
                self.0
                    .iter()
                    .filter(|r| r.start && r.input == lost.input && r.host != host)
                    .filter(|r| r.at > at && r.at > lost.at)
                    .map(|r| r.at - at)
                    .reduce(f64::min)
            })
            .reduce(f64::max)
    }

    /// The last moment a worker of `job` did anything for the pool.
    fn last_activity(&self, job: &str) -> Option<f64> {
        self.0
            .iter()
            .filter(|r| r.job == job)
            .map(|r| r.at)
            .reduce(f64::max)
    }
}

/// When the ready workers were first back to `count` after `at`, having
/// dropped below it.
fn back_to(text: &str, count: usize, at: f64) -> Option<f64> {
    let mut dropped = false;
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("workers: ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(now), Some(when)) = (words.next(), words.next()) else {
            continue;
        };
        let (now, when): (usize, f64) = (now.parse().unwrap_or(0), when.parse().unwrap_or(0.0));
        if when < at {
            continue;
        }
        dropped |= now < count;
        if dropped && now >= count {
            return Some(when - at);
        }
    }
    None
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The pids of the processes of `host` whose program is `program` (a path
/// or a command name).
fn pids_of(script: &PathBuf, host: &str, program: &str) -> Vec<u32> {
    control(script, &["pids", host])
        .split_whitespace()
        .filter_map(|word| word.parse::<u32>().ok())
        .filter(|pid| {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            exe == std::path::Path::new(program) || comm.trim() == program
        })
        .collect()
}

fn kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

#[test]
fn a_map_survives_a_worker_sigkilled_on_a_node() {
    let Some((script, _serial)) = cluster("a_map_survives_a_worker_sigkilled_on_a_node") else {
        return;
    };
    let run = Run::well_under_way(&script, "40");
    let victims = pids_of(&script, "node2", PROGRAM);
    assert_eq!(victims.len(), 1, "node2's workers: {victims:?}");
    let at = unix_now();
    kill(victims[0], "KILL");
    let (text, runs) = run.finish();
    assert!(runs.most_runs() <= 2, "{text}");
    eprintln!(
        "figure: SIGKILL of node2's worker: rerouted after {:?} s, back to 3 workers after \
         {:?} s, {} inputs run twice, {} jobs",
        runs.reroute_after("node2", at),
        back_to(&text, 3, at),
        runs.run_twice(),
        line(&text, "jobs")
    );
}

#[test]
fn a_map_survives_a_node_cut_off() {
    let Some((script, _serial)) = cluster("a_map_survives_a_node_cut_off") else {
        return;
    };
    let run = Run::well_under_way(&script, "60");
    let at = unix_now();
    control(&script, &["partition", "node3"]);
    let began = Instant::now();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run.finish()));
    // Healed once the map is over, or after a minute, whichever is later.
    std::thread::sleep(Duration::from_secs(60).saturating_sub(began.elapsed()));
    control(&script, &["heal", "node3"]);
    let (text, runs) = result.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    assert!(runs.most_runs() <= 2, "{text}");
    eprintln!(
        "figure: node3 cut off: rerouted after {:?} s, back to 3 workers after {:?} s, \
         {} inputs run twice, {} jobs",
        runs.reroute_after("node3", at),
        back_to(&text, 3, at),
        runs.run_twice(),
        line(&text, "jobs")
    );
}

#[test]
fn a_requeued_jobs_orphaned_worker_stops_working_for_the_pool() {
    let Some((script, _serial)) = cluster("a_requeued_jobs_orphaned_worker") else {
        return;
    };
    slurmd_timeout(&script, 30);
    let mut run = Run::start(&script, &["map", "150"]);
    let job = run.until("job");
    run.until("ready");
    std::thread::sleep(Duration::from_secs(5));
    let slurmd = pids_of(&script, "node1", &slurmd_name());
    assert_eq!(slurmd.len(), 1, "node1's slurmd: {slurmd:?}");
    kill(slurmd[0], "KILL");
    let killed = Instant::now();
    // Slurm marks node1 down after SlurmdTimeout and requeues the job.
    let (requeued_at, requeue_after) = loop {
        let state = control(
            &script,
            &["on", "head", "squeue", "-h", "-o", "%T", "-j", &job],
        );
        // Requeued, it is COMPLETING, then PENDING, unless the pool
        // cancelled it first (then it may have left the queue).
        if state.trim() != "RUNNING" {
            break (unix_now(), killed.elapsed());
        }
        assert!(killed.elapsed() < LIMIT, "job {job} was never requeued");
        std::thread::sleep(Duration::from_millis(200));
    };
    let (text, runs) = run.finish();
    // slurmd back, and Slurm's default timeout, for the next test.
    slurmd_timeout(&script, 300);
    let done: f64 = line(&text, "done").parse().expect("a time");
    assert!(
        requeued_at < done,
        "Slurm did not requeue job {job} while the map ran (is SlurmdTimeout short?)"
    );
    assert!(runs.most_runs() <= 2, "{text}");
    let kept = runs.last_activity(&job).map(|last| last - requeued_at);
    eprintln!(
        "figure: slurmd of node1 killed; job {job} requeued {requeue_after:?} later; its \
         workers worked for the pool {kept:?} s after that; {} inputs run twice, {} jobs",
        runs.run_twice(),
        line(&text, "jobs")
    );
}

#[test]
fn a_map_outlives_its_workers_time_limit() {
    let Some((script, _serial)) = cluster("a_map_outlives_its_workers_time_limit") else {
        return;
    };
    let mut run = Run::start(&script, &["time-limit"]);
    run.until("ready");
    let (text, runs) = run.finish();
    assert!(runs.most_runs() <= 2, "{text}");
    eprintln!(
        "figure: 3-minute map, 1-minute jobs: {} inputs run twice, {} jobs",
        runs.run_twice(),
        line(&text, "jobs")
    );
}
