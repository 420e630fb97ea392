//! The `primes` example on the three-node Slurm of
//! `integration-tests/slurm/multi-node-slurm.sh` (one network namespace per
//! host; the nodes resolve no host name): a map spread over the nodes with
//! the head's address found by default, the head SIGKILLed mid-map, a
//! node cut off mid-map (its worker must say its pool fell silent), and
//! Ctrl-C and SIGTERM while the job pends.
//!
//! Each test prints what it measured; none asserts a time (the bounds only
//! turn a hang into a failure). They need the cluster, which `.ci/run`
//! starts as root; without it each says why it skips, and with
//! `POOL_MULTINODE_TESTS=require` (set by `.ci/run` once it is up) fails.

mod examples_support;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use examples_support::example_bin;
use integration_tests::{default_sigint, eventually, multinode_cluster, wait_with_deadline};

/// Generous: Slurm starts jobs slowly on a machine shared by many builds.
const LIMIT: Duration = Duration::from_secs(240);
/// How long a job or worker may take to go before a test fails (the issue
/// asks for well under a second; the tests print what it took).
const END_BOUND: Duration = Duration::from_secs(30);
/// The head's address on the cluster's bridge (see the script's layout).
const HEAD_ADDRESS: &str = "10.213.0.1";
const NODES: [&str; 3] = ["node1", "node2", "node3"];

/// One test at a time: their jobs share the cluster.
static CLUSTER: Mutex<()> = Mutex::new(());

struct Cluster {
    script: PathBuf,
    _serial: std::sync::MutexGuard<'static, ()>,
}

fn cluster(test: &str) -> Option<Cluster> {
    let serial = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    let script = multinode_cluster(test)?;
    Some(Cluster {
        script,
        _serial: serial,
    })
}

impl Cluster {
    /// `CMD` run on the head, as the child itself (the script execs it), so
    /// that signals sent to the child reach the program.
    fn on_head(&self, program: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(&self.script);
        command.args(["on", "head"]).arg(program).args(args);
        command
    }

    /// Runs a Slurm client command on the head; its stdout.
    fn slurm(&self, args: &[&str]) -> String {
        let out = Command::new(&self.script)
            .args(["on", "head"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run a Slurm command on the head");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn queued(&self, job: &str) -> bool {
        self.slurm(&["squeue", "--noheader", "--format=%i"])
            .split_whitespace()
            .any(|id| id == job)
    }

    fn queue_empty(&self) -> bool {
        self.slurm(&["squeue", "--noheader", "--format=%i"])
            .trim()
            .is_empty()
    }

    /// Pids of `program`'s copies living on `host` (its network namespace).
    fn processes_on(&self, host: &str, program: &Path) -> Vec<u32> {
        let out = Command::new(&self.script)
            .args(["pids", host])
            .output()
            .expect("list a host's processes");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|pid| pid.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == program)
                    && integration_tests::process_alive(*pid)
            })
            .collect()
    }

    /// The workers on each node.
    fn workers(&self, program: &Path) -> Vec<(&'static str, Vec<u32>)> {
        NODES
            .iter()
            .map(|node| (*node, self.processes_on(node, program)))
            .collect()
    }
}

/// Where the jobs' output files (`slurm-JOB.out`) land: primes runs there.
fn output_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pool-multinode-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("output dir");
    dir
}

/// Removes a job's output once its test passed (a failure keeps it).
fn remove_output(job: &str) {
    let _ = std::fs::remove_file(output_dir().join(format!("slurm-{job}.out")));
}

/// Starts `primes ARGS` on the head with its stderr read line by line.
fn start_primes(cluster: &Cluster, args: &[&str]) -> (Child, Receiver<String>) {
    start_primes_in(cluster, args, &output_dir())
}

/// The same, in directory `dir` (where the job's output file lands).
fn start_primes_in(cluster: &Cluster, args: &[&str], dir: &Path) -> (Child, Receiver<String>) {
    let mut command = cluster.on_head(&example_bin("primes"), args);
    command
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    default_sigint(&mut command);
    let mut child = command.spawn().expect("start primes on the head");
    let (lines_tx, lines) = mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            eprintln!("primes: {line}");
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, lines)
}

/// A primes running a long map (1e11) in `dir` on one worker per node:
/// primes, its stderr lines, its job, and whether the three workers came.
fn start_long_map(cluster: &Cluster, dir: &Path) -> (Child, Receiver<String>, String, bool) {
    let (mut child, lines) = start_primes_in(
        cluster,
        &["1e11", "--slurm", "3", "--nodes", "3", "--no-serial", "-q"],
        dir,
    );
    let job = job_of(&line_with(&mut child, &lines, "runs the workers"));
    let program = example_bin("primes");
    let spread = eventually(LIMIT, || {
        cluster
            .workers(&program)
            .iter()
            .all(|(_, pids)| pids.len() == 1)
    });
    (child, lines, job, spread)
}

/// Reads stderr lines until one holds `marker`; returns it (and panics,
/// killing `child`, if none comes).
fn line_with(child: &mut Child, lines: &Receiver<String>, marker: &str) -> String {
    let deadline = Instant::now() + LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(marker) => return line,
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                panic!("primes printed no line with {marker:?} ({status:?})");
            }
        }
    }
}

/// The job id in "Slurm job N ..." lines.
fn job_of(line: &str) -> String {
    line.split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("no job id in {line:?}"))
        .to_string()
}

#[test]
fn a_map_spreads_over_three_nodes_and_reaches_the_head_by_default() {
    let Some(cluster) = cluster("a_map_spreads_over_three_nodes") else {
        return;
    };
    example_bin("primes"); // built before the clock starts
    let launched = Instant::now();
    // No --listen, no --head-host: the nodes cannot resolve "head".
    let (mut child, lines) = start_primes(
        &cluster,
        &["1e8", "--slurm", "3", "--nodes", "3", "--no-serial", "-q"],
    );
    let job = job_of(&line_with(&mut child, &lines, "runs the workers"));
    let joined = launched.elapsed();
    // While the job runs: where, and the address its workers were told.
    let nodes = cluster.slurm(&["squeue", "--noheader", "--format=%N", "--jobs", &job]);
    let script = cluster.slurm(&["scontrol", "write", "batch_script", &job, "-"]);
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("piped stdout")
        .read_to_string(&mut stdout)
        .expect("read stdout");
    let status = wait_with_deadline(&mut child, LIMIT);
    let connect = script
        .lines()
        .find(|line| line.starts_with("POOL_CONNECT="))
        .unwrap_or_else(|| panic!("no POOL_CONNECT in the job's script:\n{script}"));
    println!(
        "map over 3 nodes: first worker joined after {:.2} s, done after {:.2} s; nodes {}; \
         workers told {connect}",
        joined.as_secs_f64(),
        launched.elapsed().as_secs_f64(),
        nodes.trim()
    );
    print!("{stdout}");
    assert!(status.success(), "{status}\n{stdout}");
    assert!(
        stdout.contains("5761455 primes below 100000000"),
        "{stdout}"
    );
    assert!(stdout.contains("with 3 remote workers"), "{stdout}");
    assert_eq!(nodes.trim(), "node[1-3]", "one worker per node");
    assert!(connect.contains(HEAD_ADDRESS), "{connect}");
    assert!(
        eventually(END_BOUND, || !cluster.queued(&job)),
        "job {job} left queued"
    );
    remove_output(&job);
}

#[test]
fn a_sigkilled_head_takes_every_worker_on_every_node_with_it() {
    let Some(cluster) = cluster("a_sigkilled_head_takes_every_worker") else {
        return;
    };
    let program = example_bin("primes");
    // Long enough to be mid-map at the kill.
    let (mut child, _lines, job, spread) = start_long_map(&cluster, &output_dir());
    let before = cluster.workers(&program);
    if !spread {
        let _ = child.kill();
        let _ = child.wait();
        panic!("not one worker per node: {before:?}");
    }
    // Let the map get going on all three.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "primes ended early"
    );
    child.kill().expect("SIGKILL the head");
    let killed = Instant::now();
    let _ = child.wait();
    let workers_gone = eventually(END_BOUND, || {
        cluster
            .workers(&program)
            .iter()
            .all(|(_, pids)| pids.is_empty())
    });
    let workers_took = killed.elapsed();
    let queue_empty = eventually(END_BOUND, || cluster.queue_empty());
    let queue_took = killed.elapsed();
    println!(
        "head SIGKILLed mid-map (workers {before:?}): every worker gone after {:.2} s, \
         the queue empty after {:.2} s",
        workers_took.as_secs_f64(),
        queue_took.as_secs_f64()
    );
    assert!(
        workers_gone,
        "workers left: {:?}",
        cluster.workers(&program)
    );
    assert!(queue_empty, "job {job} still queued");
    remove_output(&job);
}

/// Asks for more CPUs than the cluster has (3 nodes of 2), so that the
/// job pends; sends `signal` once primes has said so; the job must be gone
/// once primes has exited.
fn signal_during_a_pending_wait(test: &str, signal: rustix::process::Signal) {
    let Some(cluster) = cluster(test) else {
        return;
    };
    let (mut child, lines) = start_primes(&cluster, &["1e9", "--slurm", "7", "--no-serial", "-q"]);
    let pending = line_with(&mut child, &lines, "is pending");
    let job = job_of(&pending);
    assert!(cluster.queued(&job), "job {job} is queued while it pends");
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).expect("pid"))
        .expect("a child's pid");
    // Our own child, not yet reaped: the pid cannot be another's.
    rustix::process::kill_process(pid, signal).expect("send the signal");
    let signalled = Instant::now();
    let status = wait_with_deadline(&mut child, LIMIT);
    let exited = signalled.elapsed();
    let gone = eventually(END_BOUND, || !cluster.queued(&job));
    let after_exit = signalled.elapsed().saturating_sub(exited);
    println!(
        "{test}: {pending:?}; primes exited {:.3} s after the signal ({status}); job {job} {} \
         {:.3} s after that",
        exited.as_secs_f64(),
        if gone {
            "left the queue"
        } else {
            "was still queued"
        },
        after_exit.as_secs_f64()
    );
    if !gone {
        // Leave the cluster clean for the next test.
        cluster.slurm(&["scancel", &job]);
    }
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(signal.as_raw()),
        "ends as the signal ends it"
    );
    assert!(gone, "job {job} still queued after primes exited");
    remove_output(&job);
}

#[test]
fn ctrl_c_while_the_job_pends_cancels_it_before_the_program_exits() {
    signal_during_a_pending_wait("ctrl_c_while_the_job_pends", rustix::process::Signal::INT);
}

#[test]
fn sigterm_while_the_job_pends_cancels_it_before_the_program_exits() {
    signal_during_a_pending_wait("sigterm_while_the_job_pends", rustix::process::Signal::TERM);
}

/// Plugs a node back in when dropped, so that a failing test leaves the
/// cluster whole.
struct Cut<'a> {
    cluster: &'a Cluster,
    node: String,
}

impl<'a> Cut<'a> {
    fn new(cluster: &'a Cluster, node: &str) -> Cut<'a> {
        let status = Command::new(&cluster.script)
            .args(["partition", node])
            .status()
            .expect("partition");
        assert!(status.success(), "partition {node}");
        Cut {
            cluster,
            node: node.to_string(),
        }
    }
}

impl Drop for Cut<'_> {
    fn drop(&mut self) {
        let _ = Command::new(&self.cluster.script)
            .args(["heal", &self.node])
            .status();
    }
}

#[test]
fn a_worker_cut_off_from_its_pool_says_the_pool_fell_silent() {
    let Some(cluster) = cluster("a_worker_cut_off_from_its_pool") else {
        return;
    };
    let program = example_bin("primes");
    let dir = std::env::temp_dir().join(format!("pool-multinode-cut-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("output dir");
    let (mut child, _lines, job, spread) = start_long_map(&cluster, &dir);
    // The batch host is where srun writes every task's output: its own
    // worker's lines reach the output file while the node is cut off.
    let node = cluster.slurm(&["squeue", "--noheader", "--format=%B", "--jobs", &job]);
    let node = node.trim().to_string();
    if !spread || !NODES.contains(&node.as_str()) {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "not one worker per node ({:?}) or no batch host ({node:?})",
            cluster.workers(&program)
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    let cut = Cut::new(&cluster, &node);
    let cut_at = Instant::now();
    let output = dir.join(format!("slurm-{job}.out"));
    let said = || std::fs::read_to_string(&output).unwrap_or_default();
    let silent = eventually(Duration::from_secs(60), || said().contains("fell silent"));
    let took = cut_at.elapsed();
    // Read before the pool is killed: once it is, the other nodes'
    // workers rightly say it closed their connections, in the same file.
    let text = said();
    let _ = child.kill();
    let _ = child.wait();
    drop(cut);
    println!(
        "{node} cut off mid-map: its worker said so after {:.2} s: {:?}",
        took.as_secs_f64(),
        text.lines().find(|line| line.contains("pool worker"))
    );
    let _ = cluster.slurm(&["scancel", &job]);
    let cleared = eventually(LIMIT, || cluster.queue_empty());
    assert!(silent, "no worker said its pool fell silent:\n{text}");
    assert!(!text.contains("closed the connection"), "{text}");
    assert!(cleared, "job {job} still queued after the node was healed");
    let _ = std::fs::remove_dir_all(&dir);
}
