//! Slurm: what a pool asks of it ([`SlurmWorkers`]) and the three commands
//! it is asked through: `sbatch` to submit a job of workers, `squeue` to
//! follow it, `scancel` to end it; each runs with a time limit.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use super::timed;
use crate::error::{Error, ErrorKind, Result};
use crate::worker::CONNECT_ENV;

/// How long a pool of Slurm workers only waits for its first worker by
/// default, before [`build`](crate::PoolBuilder::build) fails.
pub const DEFAULT_SLURM_START_TIMEOUT: Duration = Duration::from_secs(600);

/// How many more jobs a pool submits by default when a job of its workers
/// ends while the pool is open.
pub const DEFAULT_SLURM_RESUBMITS: u32 = 2;

/// How long a pool lets one Slurm command (`sbatch`, `squeue`, `scancel`,
/// `scontrol`) run by default before it kills it and takes it as failed.
pub const DEFAULT_SLURM_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How often, by default, a pool waiting for its first Slurm worker reports
/// the job's state ([`SlurmWorkers::on_waiting`], and a tracing event).
pub const DEFAULT_SLURM_WAIT_REPORT_EVERY: Duration = Duration::from_secs(5);

/// What a pool waiting in [`build`](crate::PoolBuilder::build) for its
/// first Slurm worker knows of its job; given to
/// [`SlurmWorkers::on_waiting`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlurmWaiting {
    /// The job's id.
    pub job: u64,
    /// Its state as `squeue` says it (`PENDING`, `RUNNING` while its
    /// workers start, `CONFIGURING`...), or why `squeue` could not say.
    pub state: String,
    /// Slurm's reason for a pending job (`Resources`, `Priority`,
    /// `PartitionConfig`...); empty otherwise.
    pub reason: String,
    /// How long the pool has waited since it submitted the job.
    pub waited: Duration,
}

/// A function told of a job that is waiting (see [`SlurmWorkers::on_waiting`]).
#[derive(Clone)]
pub(crate) struct WaitReport(pub(crate) Arc<dyn Fn(&SlurmWaiting) + Send + Sync>);

impl std::fmt::Debug for WaitReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WaitReport(..)")
    }
}

/// Workers that a pool submits to Slurm itself, as one batch job of
/// `tasks` tasks (`sbatch` running `srun`); given to
/// [`PoolBuilder::slurm`](crate::PoolBuilder::slurm).
///
/// Each task runs the worker program (by default the pool's own program,
/// as local workers are re-executed, or the pool's
/// [`worker_program`](crate::PoolBuilder::worker_program)), which joins the
/// pool over TCP. The pool:
///
/// - tells the workers to connect to [`head_host`](SlurmWorkers::head_host)
///   if given, else the address it listens on, or, when that is every
///   interface, this host's address on the interface that routes to the
///   Slurm controller (`SlurmctldHost` in `scontrol show config`; to a
///   node of the cluster if the controller is this host on loopback);
///   this host's name only when Slurm cannot say;
/// - passes the authkey in the job's environment (`POOL_AUTHKEY`), never
///   on a command line (so an `sbatch_arg("--export=NONE")` leaves the
///   workers without it, and `build` fails saying so); with no [`listen`](crate::PoolBuilder::listen) it
///   listens on every interface, on a port of the system's choice, with a
///   fresh random key;
/// - when it has no local processes, waits in `build` for the first worker
///   to join, failing with [`ErrorKind::Startup`] and Slurm's reason (from
///   `squeue`) if none joins within the [start
///   timeout](SlurmWorkers::start_timeout), or with the job's last lines of
///   output if the job ends first (a worker that cannot authenticate, a
///   program that is not a worker); meanwhile it reports the job's state
///   and Slurm's reason every few seconds ([`on_waiting`](SlurmWorkers::on_waiting),
///   and an INFO event of target `pool::slurm`). SIGINT or SIGTERM during
///   that wait cancels the job, then ends the process as the signal would
///   have (a signal the program ignores or handles itself is left to it);
/// - runs each Slurm command for at most the [command
///   timeout](SlurmWorkers::command_timeout): a hung controller fails
///   `build` with [`ErrorKind::Startup`] saying which command did not
///   answer;
/// - cancels the job (`scancel`) when it is dropped, terminated or joined;
/// - keeps itself at `tasks` workers while it is open: workers lost from
///   a job that goes on (killed, cut off, or leaving before the job's
///   time limit: see [`connect_worker`](crate::connect_worker)) are
///   replaced by a job of as many tasks, and a job that ends (cancelled,
///   out of time, its node failed) by one of `tasks` (a replacement drops
///   `--nodes` and `--ntasks-per-node`: it takes the nodes it can get,
///   with one perhaps down); each job after the
///   first counts against [`resubmits`](SlurmWorkers::resubmits). With
///   none left and no Slurm worker left, a pool with no local processes
///   fails its calls with [`ErrorKind::Startup`], as it does when a
///   replacement stays pending past the start timeout with no worker
///   joining (cancelling it). A job that ends once the pool is closing
///   (after [`close`](crate::Pool::close)) is not replaced: without local
///   processes, the work still queued then fails with
///   [`ErrorKind::Startup`] rather than wait for workers that cannot come.
/// - cuts off the workers of a job Slurm no longer runs (each worker says
///   which job it runs in): one ended, or requeued or preempted, which
///   Slurm may fail to stop on a node it lost; a requeued job is
///   cancelled and replaced rather than waited for.
///
/// The input a lost worker was running runs again elsewhere, up to
/// [`allowed_failures`](crate::PoolBuilder::allowed_failures) times, then
/// fails with [`ErrorKind::WorkerLost`]; the others it held run on the
/// remaining workers.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
///
/// pool::task! { fn square(x: u64) -> u64 { x * x } }
///
/// fn main() -> Result<(), pool::Error> {
///     let pool = pool::Pool::builder()
///         .processes(0)
///         .slurm(
///             pool::SlurmWorkers::new(64)
///                 .partition("compute")
///                 .time_limit(Duration::from_secs(3600)),
///         )
///         .build()?;
///     assert_eq!(pool.map(square, 0..1000)?.len(), 1000);
///     Ok(())
/// }
/// ```
#[derive(Clone, Debug)]
pub struct SlurmWorkers {
    pub(crate) tasks: usize,
    pub(crate) partition: Option<String>,
    pub(crate) time_limit: Option<Duration>,
    pub(crate) extra_args: Vec<OsString>,
    pub(crate) program: Option<PathBuf>,
    pub(crate) job_name: String,
    pub(crate) output: Option<PathBuf>,
    pub(crate) head_host: Option<String>,
    pub(crate) start_timeout: Duration,
    pub(crate) resubmits: u32,
    pub(crate) nodes: Option<usize>,
    pub(crate) tasks_per_node: Option<usize>,
    pub(crate) command_timeout: Duration,
    pub(crate) on_waiting: Option<WaitReport>,
    pub(crate) report_every: Duration,
}

impl SlurmWorkers {
    /// A job of `tasks` workers (at least 1), one per Slurm task, in the
    /// default partition, with the partition's time limit.
    pub fn new(tasks: usize) -> SlurmWorkers {
        SlurmWorkers {
            tasks: tasks.max(1),
            partition: None,
            time_limit: None,
            extra_args: Vec::new(),
            program: None,
            job_name: "pool-workers".into(),
            output: None,
            head_host: None,
            start_timeout: DEFAULT_SLURM_START_TIMEOUT,
            resubmits: DEFAULT_SLURM_RESUBMITS,
            nodes: None,
            tasks_per_node: None,
            command_timeout: DEFAULT_SLURM_COMMAND_TIMEOUT,
            on_waiting: None,
            report_every: DEFAULT_SLURM_WAIT_REPORT_EVERY,
        }
    }

    /// Spreads the job over exactly `nodes` nodes (`sbatch --nodes`; at
    /// least 1): with as many tasks as nodes, one worker runs on each.
    /// Slurm otherwise packs tasks onto as few nodes as have free CPUs.
    pub fn nodes(mut self, nodes: usize) -> SlurmWorkers {
        self.nodes = Some(nodes.max(1));
        self
    }

    /// At most `tasks` workers on each node (`sbatch --ntasks-per-node`;
    /// at least 1).
    pub fn tasks_per_node(mut self, tasks: usize) -> SlurmWorkers {
        self.tasks_per_node = Some(tasks.max(1));
        self
    }

    /// How long one Slurm command may run before the pool kills it and
    /// takes it as failed (default [`DEFAULT_SLURM_COMMAND_TIMEOUT`]).
    pub fn command_timeout(mut self, timeout: Duration) -> SlurmWorkers {
        self.command_timeout = timeout;
        self
    }

    /// Calls `report` while `build` waits for the first worker: at the first
    /// look at the job, then every [`report_every`](SlurmWorkers::report_every)
    /// and whenever its state or Slurm's reason changes, with what `squeue`
    /// said. It runs on the thread that called `build`.
    ///
    /// ```no_run
    /// let slurm = pool::SlurmWorkers::new(8).on_waiting(|wait| {
    ///     eprintln!(
    ///         "Slurm job {} is {} ({}) after {:.0?}",
    ///         wait.job, wait.state, wait.reason, wait.waited
    ///     )
    /// });
    /// let pool = pool::Pool::builder().processes(0).slurm(slurm).build();
    /// ```
    pub fn on_waiting(
        mut self,
        report: impl Fn(&SlurmWaiting) + Send + Sync + 'static,
    ) -> SlurmWorkers {
        self.on_waiting = Some(WaitReport(Arc::new(report)));
        self
    }

    /// How often a waiting job is reported (default
    /// [`DEFAULT_SLURM_WAIT_REPORT_EVERY`]).
    pub fn report_every(mut self, every: Duration) -> SlurmWorkers {
        self.report_every = every;
        self
    }

    /// The partition to submit to (`sbatch --partition`).
    pub fn partition(mut self, partition: impl Into<String>) -> SlurmWorkers {
        self.partition = Some(partition.into());
        self
    }

    /// The job's time limit (`sbatch --time`, in whole minutes, rounded up).
    pub fn time_limit(mut self, limit: Duration) -> SlurmWorkers {
        self.time_limit = Some(limit);
        self
    }

    /// Adds an `sbatch` option, such as `--account=proj` or
    /// `--cpus-per-task=4`, before the job's script.
    pub fn sbatch_arg(mut self, arg: impl Into<OsString>) -> SlurmWorkers {
        self.extra_args.push(arg.into());
        self
    }

    /// The worker program each task runs: it must link the tasks and call
    /// [`pool::init()`](crate::init) or `worker_bin::main()` (as
    /// `pool-worker` does). Default: the pool's
    /// [`worker_program`](crate::PoolBuilder::worker_program) if it has one,
    /// else this program. It must be at this path on the nodes.
    pub fn program(mut self, program: impl Into<PathBuf>) -> SlurmWorkers {
        self.program = Some(program.into());
        self
    }

    /// The job's name in `squeue` (default `pool-workers`).
    pub fn job_name(mut self, name: impl Into<String>) -> SlurmWorkers {
        self.job_name = name.into();
        self
    }

    /// Where the job's output goes (`sbatch --output`, where `%j` is the
    /// job id); the workers' stderr lands there. Default: Slurm's,
    /// `slurm-%j.out` in this process's directory.
    pub fn output(mut self, path: impl Into<PathBuf>) -> SlurmWorkers {
        self.output = Some(path.into());
        self
    }

    /// The host name or address the nodes reach this process at. Default:
    /// the host the pool listens on, or this host's name when it listens on
    /// every interface.
    pub fn head_host(mut self, host: impl Into<String>) -> SlurmWorkers {
        self.head_host = Some(host.into());
        self
    }

    /// How long `build` waits for the first worker of a pool without local
    /// processes (default [`DEFAULT_SLURM_START_TIMEOUT`]); past it, the job
    /// is cancelled and `build` fails with Slurm's reason.
    pub fn start_timeout(mut self, timeout: Duration) -> SlurmWorkers {
        self.start_timeout = timeout;
        self
    }

    /// How many more jobs the pool may submit when its job ends while the
    /// pool is open (default [`DEFAULT_SLURM_RESUBMITS`]).
    pub fn resubmits(mut self, resubmits: u32) -> SlurmWorkers {
        self.resubmits = resubmits;
        self
    }
}

/// A Slurm job id, as `sbatch --parsable` prints it.
pub(crate) type JobId = u64;

/// A job as `squeue` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum JobState {
    /// Waiting to be scheduled, for Slurm's reason (`Priority`,
    /// `Resources`, `JobHeldUser`, `PartitionDown`...), or held after a
    /// requeue (`REQUEUE_HOLD`...).
    Pending { reason: String },
    /// Running, or starting, or in another state that may still bring
    /// workers.
    Active { state: String },
    /// Over: its workers are gone (or going), in this state
    /// (`COMPLETED`, `CANCELLED`, `FAILED`...; `left the queue` once Slurm has
    /// forgotten it).
    Ended { state: String },
}

/// A job's submission: the `sbatch` command line (without the authkey,
/// which goes in its environment) and the script it reads on stdin.
pub(crate) struct Submission {
    pub(crate) args: Vec<OsString>,
    pub(crate) script: String,
    pub(crate) env: Vec<(OsString, OsString)>,
    /// How long `sbatch` may take.
    pub(crate) limit: Duration,
}

impl SlurmWorkers {
    /// What to submit for a job running `program args` in every task,
    /// joining the pool at `connect`, with `env` added to the job's
    /// environment.
    ///
    /// The address is set in the script itself, and `srun` passes the
    /// script's environment on whatever sbatch's `--export` (which `srun`
    /// would otherwise inherit): under `--export=NONE`, a site's default
    /// at times, a task without it would run the program's own `main`
    /// (which may submit a job of its own) instead of being a worker, which
    /// then says that the key did not reach it.
    pub(crate) fn submission(
        &self,
        program: &std::path::Path,
        args: &[OsString],
        connect: &str,
        env: Vec<(OsString, OsString)>,
    ) -> Result<Submission> {
        let mut sbatch: Vec<OsString> = vec![
            "--parsable".into(),
            format!("--job-name={}", self.job_name).into(),
            format!("--ntasks={}", self.tasks).into(),
        ];
        if let Some(nodes) = self.nodes {
            sbatch.push(format!("--nodes={nodes}").into());
        }
        if let Some(tasks) = self.tasks_per_node {
            sbatch.push(format!("--ntasks-per-node={tasks}").into());
        }
        if let Some(partition) = &self.partition {
            sbatch.push(format!("--partition={partition}").into());
        }
        if let Some(limit) = self.time_limit {
            sbatch.push(format!("--time={}", limit.as_secs().div_ceil(60).max(1)).into());
        }
        if let Some(output) = &self.output {
            let mut arg = OsString::from("--output=");
            arg.push(output);
            sbatch.push(arg);
        }
        sbatch.extend(self.extra_args.iter().cloned());
        let mut line = String::from("exec srun --export=ALL");
        for word in std::iter::once(program.as_os_str()).chain(args.iter().map(|a| a.as_os_str())) {
            let word = word.to_str().ok_or_else(|| {
                Error::new(
                    ErrorKind::Startup,
                    format!("the worker command line is not UTF-8: {word:?}"),
                )
            })?;
            line.push(' ');
            line.push_str(&shell_quote(word));
        }
        Ok(Submission {
            args: sbatch,
            script: format!(
                "#!/bin/sh\n{CONNECT_ENV}={}\nexport {CONNECT_ENV}\n{line}\n",
                shell_quote(connect)
            ),
            env,
            limit: self.command_timeout,
        })
    }
}

impl Submission {
    /// The job that replaces `tasks` lost workers: the same, with `tasks`
    /// tasks and without the options that spread tasks over nodes
    /// (`--nodes`, `--ntasks-per-node`), which a smaller job could not
    /// meet, nor a full one while a node is down: a replacement takes the
    /// nodes it can get.
    pub(crate) fn replacement(&self, tasks: usize) -> Submission {
        let spreads = |arg: &OsString| {
            arg.to_str().is_some_and(|a| {
                a.starts_with("--nodes=")
                    || a.starts_with("--ntasks-per-node=")
                    || a.starts_with("-N")
            })
        };
        let args = self
            .args
            .iter()
            .filter(|arg| !spreads(arg))
            .map(
                |arg| match arg.to_str().is_some_and(|a| a.starts_with("--ntasks=")) {
                    true => format!("--ntasks={tasks}").into(),
                    false => arg.clone(),
                },
            )
            .collect();
        Submission {
            args,
            script: self.script.clone(),
            env: self.env.clone(),
            limit: self.limit,
        }
    }
}

/// `word` as one word for `sh`: single-quoted, with its own single quotes
/// closed, escaped and reopened.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Submits `submission` with `sbatch`; returns the job id.
pub(crate) fn submit(submission: &Submission) -> Result<JobId> {
    let failed = |what: String| Error::new(ErrorKind::Startup, what);
    let output = timed::run(
        Command::new("sbatch")
            .args(&submission.args)
            .envs(submission.env.iter().map(|(k, v)| (k, v))),
        "sbatch",
        "submitting the Slurm workers' job",
        Some(submission.script.as_bytes()),
        submission.limit,
    )?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(failed(format!(
            "sbatch refused the Slurm workers' job ({}): {}",
            output.status,
            one_line(&String::from_utf8_lossy(&output.stderr))
        )));
    }
    parse_job_id(&stdout)
        .ok_or_else(|| failed(format!("sbatch printed no job id: {:?}", one_line(&stdout))))
}

/// The job id in `sbatch --parsable`'s output: `ID` or `ID;CLUSTER`.
fn parse_job_id(stdout: &str) -> Option<JobId> {
    let line = stdout.lines().map(str::trim).find(|l| !l.is_empty())?;
    line.split(';').next()?.parse().ok()
}

/// Several lines of a command's complaint as one.
pub(crate) fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The job's state as `squeue` shows it; an error if `squeue` cannot say
/// within `limit` (the controller is unreachable, say), which is not the
/// job's end.
pub(crate) fn state(job: JobId, limit: Duration) -> Result<JobState> {
    let output = timed::run(
        Command::new("squeue")
            .args(["--noheader", "--format=%T|%r", "--jobs"])
            .arg(job.to_string()),
        "squeue",
        &format!("asking for job {job}'s state"),
        None,
        limit,
    )?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        // Slurm forgets a finished job after MinJobAge, and then refuses its id.
        if stderr.contains("Invalid job id") {
            return Ok(JobState::Ended {
                state: "left the queue".into(),
            });
        }
        return Err(Error::new(
            ErrorKind::Startup,
            format!("squeue failed ({}): {}", output.status, one_line(&stderr)),
        ));
    }
    Ok(parse_state(&String::from_utf8_lossy(&output.stdout)))
}

/// `squeue --format=%T|%r`'s line for one job; none means it has left the queue.
fn parse_state(stdout: &str) -> JobState {
    let Some(line) = stdout.lines().map(str::trim).find(|l| !l.is_empty()) else {
        return JobState::Ended {
            state: "left the queue".into(),
        };
    };
    let (state, reason) = line.split_once('|').unwrap_or((line, ""));
    match state {
        "PENDING" => JobState::Pending {
            reason: reason.to_string(),
        },
        // Held after a requeue (or its reservation's deletion): it brings
        // no worker until someone releases it, as a pending job, so the
        // same start timeout applies.
        "REQUEUE_HOLD" | "RESV_DEL_HOLD" | "REQUEUED" | "REQUEUE_FED" => JobState::Pending {
            reason: format!("{state}, {reason}"),
        },
        "COMPLETED" | "COMPLETING" | "CANCELLED" | "FAILED" | "TIMEOUT" | "NODE_FAIL"
        | "PREEMPTED" | "BOOT_FAIL" | "DEADLINE" | "OUT_OF_MEMORY" | "SPECIAL_EXIT" | "REVOKED" => {
            JobState::Ended {
                state: state.to_string(),
            }
        }
        _ => JobState::Active {
            state: state.to_string(),
        },
    }
}

/// Cancels the job (`scancel`, for at most `limit`), which ends its
/// workers; a job that has already ended is no error to Slurm. A failure
/// is logged: there is no one left to tell.
pub(crate) fn cancel(job: JobId, limit: Duration) {
    let cancelled = timed::run(
        Command::new("scancel").arg(job.to_string()),
        "scancel",
        &format!("cancelling job {job}, which may still run"),
        None,
        limit,
    );
    match cancelled {
        Ok(output) if output.status.success() => tracing::debug!(job, "cancelled the Slurm job"),
        Ok(output) => {
            let stderr = one_line(&String::from_utf8_lossy(&output.stderr));
            // A job that ended (and was perhaps forgotten) needs no cancelling.
            if stderr.contains("Invalid job id") || stderr.contains("already completing") {
                tracing::debug!(job, "the Slurm job had already ended");
            } else {
                tracing::warn!(job, %stderr, "scancel failed");
            }
        }
        Err(err) => tracing::warn!(job, %err, "scancel failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_read_with_or_without_a_cluster() {
        assert_eq!(parse_job_id("1234\n"), Some(1234));
        assert_eq!(parse_job_id("77;cluster\n"), Some(77));
        assert_eq!(parse_job_id("Submitted batch job 5\n"), None);
        assert_eq!(parse_job_id(""), None);
    }

    #[test]
    fn squeue_lines_become_states() {
        assert_eq!(
            parse_state("PENDING|JobHeldUser\n"),
            JobState::Pending {
                reason: "JobHeldUser".into()
            }
        );
        assert!(matches!(
            parse_state("RUNNING|None"),
            JobState::Active { .. }
        ));
        assert!(matches!(
            parse_state("CANCELLED|None"),
            JobState::Ended { .. }
        ));
        assert!(matches!(parse_state(""), JobState::Ended { .. }));
        // A held job brings no worker: it is pending, so its wait times out.
        assert_eq!(
            parse_state("REQUEUE_HOLD|JobHeldAdmin\n"),
            JobState::Pending {
                reason: "REQUEUE_HOLD, JobHeldAdmin".into()
            }
        );
    }

    #[test]
    fn the_script_quotes_every_word_and_the_key_stays_off_the_command_line() {
        let slurm = SlurmWorkers::new(3)
            .partition("debug")
            .time_limit(Duration::from_secs(61))
            .nodes(3)
            .tasks_per_node(1)
            .sbatch_arg("--overcommit");
        let env = vec![("POOL_AUTHKEY".into(), "secret".into())];
        let submission = slurm
            .submission(
                std::path::Path::new("/opt/my worker"),
                &["it's".into()],
                "tcp:head:7000",
                env,
            )
            .unwrap();
        let args: Vec<String> = submission
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--parsable",
                "--job-name=pool-workers",
                "--ntasks=3",
                "--nodes=3",
                "--ntasks-per-node=1",
                "--partition=debug",
                "--time=2",
                "--overcommit"
            ]
        );
        // The address is in the script, and the tasks get the script's
        // environment whatever sbatch's --export: a task without it would
        // run the program's own main (and submit a job of its own).
        assert_eq!(
            submission.script,
            "#!/bin/sh\nPOOL_CONNECT='tcp:head:7000'\nexport POOL_CONNECT\n\
             exec srun --export=ALL '/opt/my worker' 'it'\\''s'\n"
        );
        assert!(!submission.script.contains("secret"));
        // Replacing two lost workers: the same job, two tasks.
        let smaller = submission.replacement(2);
        assert!(smaller.args.contains(&"--ntasks=2".into()));
        assert!(!smaller.args.contains(&"--ntasks=3".into()));
        assert_eq!(smaller.script, submission.script);
    }

    #[test]
    fn a_replacement_job_drops_the_spread_over_nodes() {
        let spread = SlurmWorkers::new(3)
            .sbatch_arg("--nodes=3")
            .sbatch_arg("--ntasks-per-node=1")
            .sbatch_arg("--overcommit");
        let submission = spread
            .submission(std::path::Path::new("/w"), &[], "tcp:h:1", Vec::new())
            .unwrap();
        let shown = |s: &Submission| -> Vec<String> {
            s.args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        let spread = ["--nodes=3", "--ntasks-per-node=1"];
        assert!(spread
            .iter()
            .all(|arg| shown(&submission).contains(&arg.to_string())));
        assert_eq!(
            shown(&submission.replacement(3)),
            [
                "--parsable",
                "--job-name=pool-workers",
                "--ntasks=3",
                "--overcommit"
            ]
        );
        assert_eq!(
            shown(&submission.replacement(1)),
            [
                "--parsable",
                "--job-name=pool-workers",
                "--ntasks=1",
                "--overcommit"
            ]
        );
    }
}
