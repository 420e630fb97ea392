//! Pools whose workers they submit to a real Slurm (the `pool_slurm`
//! program): a map on six workers, the job cancelled mid-map, the pool
//! dropped mid-map, the head SIGKILLed, a wrong authkey, a wrong partition,
//! a job that never starts, and workers running a program of the user's;
//! and, with stand-ins for Slurm's commands (no Slurm needed), a hung
//! `sbatch` or `squeue`, a pending job's reports, and SIGINT or SIGTERM
//! while `build` waits.
//!
//! They need a running Slurm whose node is up, such as the one-node cluster
//! `integration-tests/slurm/local-slurm.sh` starts (`.ci/run` does, as
//! root). Without one each test says why it skipped; with
//! `POOL_SLURM_TESTS=require` (set by `.ci/run` once the cluster is up)
//! a missing Slurm fails them instead.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use integration_tests::{eventually, line, output_with_deadline, slurm_ready, wait_with_deadline};

const PROGRAM: &str = env!("CARGO_BIN_EXE_pool_slurm");
/// The job name `pool_slurm` gives its workers.
const JOB_NAME: &str = "pool-slurm-test";
/// Generous bounds: the jobs share two cores with other builds.
const LIMIT: Duration = Duration::from_secs(180);
/// The issue asks for jobs to end within 5 s; the tests poll this long
/// and print the time it took (timed assertions are not allowed).
const END_BOUND: Duration = Duration::from_secs(30);

/// One test at a time: their jobs share the node.
static SLURM: Mutex<()> = Mutex::new(());

/// The node, for one test at a time, if Slurm is up (else the test says
/// why it skips, through `slurm_ready`).
fn use_slurm(test: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
    let serial = SLURM.lock().unwrap_or_else(|p| p.into_inner());
    slurm_ready(test).then_some(serial)
}

/// A directory for the jobs' output files of one scenario.
fn output_dir(scenario: &str) -> PathBuf {
    let dir = output_path(scenario);
    std::fs::create_dir_all(&dir).expect("output dir");
    dir
}

fn output_path(scenario: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pool-slurm-{scenario}-{}", std::process::id()))
}

/// Removes a scenario's job output once it passed (a failure keeps it).
fn remove_output(scenario: &str) {
    let _ = std::fs::remove_dir_all(output_path(scenario));
}

/// Runs `pool_slurm SCENARIO` to completion; returns its stdout, after
/// checking that it succeeded.
fn run(scenario: &str) -> String {
    run_with(scenario, &[])
}

fn run_with(scenario: &str, more: &[&str]) -> String {
    let out = output_with_deadline(
        Command::new(PROGRAM)
            .args([scenario, output_dir(scenario).to_str().unwrap()])
            .args(more),
        LIMIT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);
    print!("{stdout}");
    remove_output(scenario);
    stdout
}

/// Starts `pool_slurm SCENARIO` and reads its stdout up to the line
/// `marker`; returns it, running, with its job id.
fn start_until(scenario: &str, marker: &str) -> (std::process::Child, String) {
    let mut child = Command::new(PROGRAM)
        .args([scenario, output_dir(scenario).to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn pool_slurm");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let (mut job, mut text) = (None, String::new());
    while text.trim() != marker {
        text.clear();
        if stdout.read_line(&mut text).expect("read") == 0 {
            let status = wait_with_deadline(&mut child, LIMIT);
            panic!("pool_slurm {scenario} ended ({status}) before {marker:?}");
        }
        if let Some(id) = text.trim().strip_prefix("job: ") {
            job = Some(id.to_string());
        }
    }
    (child, job.expect("a job line before the marker"))
}

/// The ids of this suite's jobs still in the queue.
fn queued_jobs() -> Vec<String> {
    let out = Command::new("squeue")
        .args(["--noheader", "--format=%i", "--name", JOB_NAME])
        .output()
        .expect("squeue");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Pids of worker processes left: copies of `pool_slurm` that Slurm started.
fn worker_processes() -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let is_program = std::fs::read_link(entry.path().join("exe"))
            .is_ok_and(|exe| exe == std::path::Path::new(PROGRAM));
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let is_worker = environ
            .split(|b| *b == 0)
            .any(|var| var.starts_with(b"POOL_CONNECT="));
        if is_program && is_worker && integration_tests::process_alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// Waits (boundedly) until the job has left the queue; prints how long it took.
fn assert_job_ends(job: &str, since: Instant, what: &str) {
    let ended = eventually(END_BOUND, || !queued_jobs().iter().any(|j| j == job));
    let took = since.elapsed();
    println!(
        "{what}: job {job} left the queue after {:.2} s",
        took.as_secs_f64()
    );
    assert!(ended, "{what}: job {job} still queued after {END_BOUND:?}");
}

fn assert_no_workers_left() {
    assert!(
        eventually(END_BOUND, || worker_processes().is_empty()),
        "workers left: {:?}",
        worker_processes()
    );
}

fn assert_no_jobs_left(what: &str) {
    assert!(
        eventually(END_BOUND, || queued_jobs().is_empty()),
        "{what}: jobs left: {:?}",
        queued_jobs()
    );
}

#[test]
fn a_map_runs_on_six_slurm_workers_and_every_one_works() {
    let Some(_slurm) = use_slurm("a_map_runs_on_six_slurm_workers") else {
        return;
    };
    let stdout = run("map");
    assert_eq!(line(&stdout, "in_order"), "true");
    assert_eq!(line(&stdout, "joined"), "6");
    assert_eq!(line(&stdout, "workers_used_in_chunks_of_2"), "6");
    assert_eq!(line(&stdout, "workers_used"), "6", "every worker did work");
    assert_job_ends(line(&stdout, "job"), Instant::now(), "after the map");
    assert_no_workers_left();
}

#[test]
fn a_job_cancelled_mid_map_fails_the_inputs_in_flight_and_the_rest_run_on_its_replacement() {
    let Some(_slurm) = use_slurm("a_job_cancelled_mid_map") else {
        return;
    };
    let stdout = run("scancel");
    assert!(!stdout.contains("call_error"), "{stdout}");
    let (ok, died) = (outcomes(&stdout, "ok"), outcomes(&stdout, "WorkerDied"));
    // Each of the two workers had at most one input running when its job
    // was cancelled; everything else completed, on the new job's workers.
    assert_eq!(ok + died, 16, "only Ok and WorkerDied outcomes:\n{stdout}");
    assert!(died <= 2, "{stdout}");
    assert!(ok >= 14, "{stdout}");
    assert_eq!(
        line(&stdout, "jobs"),
        "2",
        "a job was submitted in its place"
    );
    assert_no_jobs_left("after the pool");
}

#[test]
fn a_job_cancelled_mid_map_with_no_resubmits_left_fails_the_rest_instead_of_hanging() {
    let Some(_slurm) = use_slurm("a_job_cancelled_mid_map_with_no_resubmits") else {
        return;
    };
    let stdout = run("scancel-no-resubmit");
    // The call fails as a whole, as a map that keeps failures does when workers cannot start.
    let error = line(&stdout, "call_error");
    assert!(error.starts_with("Startup: "), "{error}");
    assert!(error.contains("may submit no more"), "{error}");
    assert_eq!(
        line(&stdout, "jobs"),
        "1",
        "no job was submitted in its place"
    );
    assert_no_jobs_left("after the pool");
}

#[test]
fn a_closed_pool_whose_job_is_cancelled_fails_the_work_left_and_joins() {
    let Some(_slurm) = use_slurm("a_closed_pool_whose_job_is_cancelled") else {
        return;
    };
    let stdout = run("close-then-scancel");
    let (died, startup) = (
        outcomes(&stdout, "WorkerDied"),
        outcomes(&stdout, "Startup"),
    );
    // The two inputs running die with their job; the four queued fail,
    // since a closing pool submits no other job; none waits for ever.
    assert_eq!(died + startup, 6, "only WorkerDied and Startup:\n{stdout}");
    assert!(startup >= 4, "{stdout}");
    assert!(
        line(&stdout, "startup_error").contains("closing"),
        "{stdout}"
    );
    assert_eq!(line(&stdout, "joined"), "true");
    assert_eq!(
        line(&stdout, "jobs"),
        "0",
        "the pool ended, its jobs cancelled"
    );
    assert_no_jobs_left("after the pool");
}

/// How many inputs `pool_slurm`'s `scancel` scenarios counted with `outcome`.
fn outcomes(stdout: &str, outcome: &str) -> usize {
    let prefix = format!("outcome {outcome}: ");
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |n| n.parse().expect("a count"))
}

#[test]
fn a_pool_dropped_mid_map_takes_its_job_and_workers_with_it() {
    let Some(_slurm) = use_slurm("a_pool_dropped_mid_map") else {
        return;
    };
    let (mut child, job) = start_until("drop", "dropped: true");
    let dropped_at = Instant::now();
    assert!(wait_with_deadline(&mut child, LIMIT).success());
    assert_job_ends(&job, dropped_at, "pool dropped");
    assert_no_workers_left();
    remove_output("drop");
}

#[test]
fn a_sigkilled_head_takes_its_job_with_it() {
    signalled_head_takes_its_job_with_it("a_sigkilled_head", rustix::process::Signal::KILL);
}

/// SIGTERM is caught only while `build` waits for the job: once the pool
/// runs, it ends the head as it would any program.
#[test]
fn a_head_sigtermed_after_build_ends_and_takes_its_job_with_it() {
    signalled_head_takes_its_job_with_it("a_sigtermed_head", rustix::process::Signal::TERM);
}

fn signalled_head_takes_its_job_with_it(test: &str, signal: rustix::process::Signal) {
    use std::os::unix::process::ExitStatusExt;
    let Some(_slurm) = use_slurm(test) else {
        return;
    };
    let (mut child, job) = start_until("wait-for-kill", "running: true");
    assert!(queued_jobs().contains(&job), "the job runs before the kill");
    assert_eq!(
        worker_processes().len(),
        2,
        "both workers run before the kill"
    );
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a child's pid");
    rustix::process::kill_process(pid, signal).expect("signal the head");
    let killed_at = Instant::now();
    let status = wait_with_deadline(&mut child, LIMIT);
    assert_eq!(status.signal(), Some(signal.as_raw()), "{test}: {status}");
    assert_job_ends(&job, killed_at, test);
    assert_no_workers_left();
    remove_output("wait-for-kill");
}

#[test]
fn workers_with_a_wrong_authkey_fail_the_build_with_their_reason() {
    let Some(_slurm) = use_slurm("workers_with_a_wrong_authkey") else {
        return;
    };
    let stdout = run("wrong-key");
    let error = line(&stdout, "error");
    assert!(error.contains("before any worker joined"), "{error}");
    assert!(error.to_lowercase().contains("authenticat"), "{error}");
    assert_no_jobs_left("after a wrong key");
}

/// With `--export=NONE` (some sites' default) the job gets none of the
/// head's environment: its tasks must still be workers, which say the key
/// is missing, not copies of the program running its own `main`.
#[test]
fn a_job_without_the_heads_environment_fails_the_build_saying_the_key_is_missing() {
    let Some(_slurm) = use_slurm("a_job_without_the_heads_environment") else {
        return;
    };
    let stdout = run("export-none");
    let error = line(&stdout, "error");
    assert!(error.contains("before any worker joined"), "{error}");
    assert!(error.contains("POOL_AUTHKEY holds no authkey"), "{error}");
    assert_no_jobs_left("after --export=NONE");
}

#[test]
fn a_wrong_partition_fails_the_build_with_slurms_reason() {
    let Some(_slurm) = use_slurm("a_wrong_partition") else {
        return;
    };
    let stdout = run("wrong-partition");
    let error = line(&stdout, "error");
    assert!(error.contains("sbatch refused"), "{error}");
    assert!(error.contains("partition"), "{error}");
}

#[test]
fn a_job_that_never_starts_times_out_with_slurms_reason_and_is_cancelled() {
    let Some(_slurm) = use_slurm("a_job_that_never_starts") else {
        return;
    };
    let stdout = run("never-starts");
    let error = line(&stdout, "error");
    assert!(error.contains("no Slurm worker joined"), "{error}");
    assert!(error.contains("JobHeldUser"), "Slurm's reason: {error}");
    assert_no_jobs_left("after the timeout");
}

/// Writes stand-in Slurm commands (`name`, shell script) into a fresh
/// directory for `scenario`; returns it, for a PATH of only them.
fn stand_ins(scenario: &str, commands: &[(&str, &str)]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = output_dir(scenario).join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    for (name, script) in commands {
        let path = bin.join(name);
        std::fs::write(&path, script).expect("stand-in");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    bin
}

/// Needs no Slurm: stand-ins for `sbatch` (which prints a job id) and
/// `scancel`, and no `squeue`, as on a host where it is broken or missing.
#[test]
fn a_start_timeout_says_squeue_failed_rather_than_a_made_up_reason() {
    let bin = stand_ins(
        "no-squeue",
        &[
            ("sbatch", "#!/bin/sh\necho 4242\n"),
            ("scancel", "#!/bin/sh\nexit 0\n"),
        ],
    );
    let out = output_with_deadline(
        Command::new(PROGRAM)
            .args(["no-squeue", output_path("no-squeue").to_str().unwrap()])
            .env("PATH", &bin),
        LIMIT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", out.status);
    let error = line(&stdout, "error");
    assert!(error.contains("no Slurm worker joined"), "{error}");
    assert!(error.contains("squeue"), "{error}");
    assert!(!error.contains("pending"), "no reason was read: {error}");
    remove_output("no-squeue");
}

#[test]
fn slurm_workers_may_run_a_worker_program_of_the_users() {
    let Some(_slurm) = use_slurm("slurm_workers_may_run_a_worker_program") else {
        return;
    };
    let program = env!("CARGO_BIN_EXE_pool_remote_worker");
    let stdout = run_with("program", &[program]);
    assert_eq!(line(&stdout, "echo"), "7");
    assert_eq!(line(&stdout, "worker_program"), program);
    assert_no_jobs_left("after the pool");
}

/// Needs no Slurm: an `sbatch` that never answers (a hung controller)
/// fails the build once the command timeout passes, saying which command;
/// so does an `squeue` that never answers, at the start timeout.
#[test]
fn a_slurm_command_that_never_answers_fails_the_build_in_bounded_time() {
    // The sleep is found where PATH no longer looks.
    let hung = "#!/bin/sh\nexec /bin/sleep 600\n";
    for (scenario, commands, silent) in [
        ("hung-sbatch", vec![("sbatch", hung)], "sbatch"),
        (
            "hung-squeue",
            vec![
                ("sbatch", "#!/bin/sh\necho 4242\n"),
                ("squeue", hung),
                ("scancel", "#!/bin/sh\nexit 0\n"),
            ],
            "squeue",
        ),
    ] {
        let bin = stand_ins(scenario, &commands);
        let out = output_with_deadline(
            Command::new(PROGRAM)
                .args(["hung-command", output_path(scenario).to_str().unwrap()])
                .env("PATH", &bin),
            LIMIT,
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}\n{stdout}", out.status);
        let error = line(&stdout, "error");
        println!(
            "{scenario}: build failed after {} s: {error}",
            line(&stdout, "failed_after_s")
        );
        assert!(error.contains(silent), "{error}");
        assert!(error.contains("did not finish within"), "{error}");
        remove_output(scenario);
    }
}

/// Needs no Slurm: stand-ins whose squeue says the job pends for
/// `Resources` and whose scancel notes what it cancelled.
fn pending_stand_ins(scenario: &str) -> (PathBuf, PathBuf) {
    let cancelled = output_dir(scenario).join("cancelled");
    let scancel = format!(
        "#!/bin/sh\necho \"$@\" >> '{}'\n",
        cancelled.to_str().expect("a UTF-8 temporary directory")
    );
    let bin = stand_ins(
        scenario,
        &[
            ("sbatch", "#!/bin/sh\necho 4242\n"),
            ("squeue", "#!/bin/sh\necho 'PENDING|Resources'\n"),
            ("scancel", &scancel),
        ],
    );
    (bin, cancelled)
}

#[test]
fn a_pending_job_is_reported_while_build_waits_and_cancelled_at_the_timeout() {
    let (bin, cancelled) = pending_stand_ins("reports");
    let out = output_with_deadline(
        Command::new(PROGRAM)
            .args(["reports", output_path("reports").to_str().unwrap()])
            .env("PATH", &bin),
        LIMIT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", out.status);
    let reports: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("waiting: "))
        .collect();
    println!("{} reports in a 3 s wait: {reports:?}", reports.len());
    assert!(
        reports.len() >= 2,
        "reported again as the wait went on: {stdout}"
    );
    assert!(
        reports
            .iter()
            .all(|line| line.starts_with("waiting: job 4242 PENDING Resources after ")),
        "{reports:?}"
    );
    assert!(line(&stdout, "error").contains("Resources"), "{stdout}");
    let cancelled = std::fs::read_to_string(&cancelled).unwrap_or_default();
    assert_eq!(cancelled.trim(), "4242", "the timed-out job was cancelled");
    remove_output("reports");
}

/// Needs no Slurm: SIGINT or SIGTERM while `build` waits for a pending job
/// cancels it, then ends the program as the signal would have.
#[test]
fn a_signal_while_build_waits_cancels_the_job_then_ends_the_program() {
    use std::os::unix::process::ExitStatusExt;
    for (scenario, signal) in [
        ("signal-int", rustix::process::Signal::INT),
        ("signal-term", rustix::process::Signal::TERM),
    ] {
        let (bin, cancelled) = pending_stand_ins(scenario);
        let mut command = Command::new(PROGRAM);
        command
            .args(["reports", output_path(scenario).to_str().unwrap()])
            .env("PATH", &bin)
            .stdout(Stdio::piped());
        integration_tests::default_sigint(&mut command);
        let mut child = command.spawn().expect("spawn pool_slurm");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        stdout.read_line(&mut first).expect("read");
        assert!(first.starts_with("waiting: job 4242"), "{first:?}");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a child's pid");
        rustix::process::kill_process(pid, signal).expect("signal");
        let status = wait_with_deadline(&mut child, LIMIT);
        let cancelled = std::fs::read_to_string(&cancelled).unwrap_or_default();
        println!(
            "{scenario}: {status}; scancel was given {:?}",
            cancelled.trim()
        );
        assert_eq!(
            status.signal(),
            Some(signal.as_raw()),
            "ends as the signal ends it"
        );
        assert_eq!(cancelled.trim(), "4242", "the job was cancelled first");
        remove_output(scenario);
    }
}
