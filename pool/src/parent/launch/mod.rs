//! Workers a pool launches through a cluster engine (Slurm, in `slurm`):
//! submitting them, waiting for the first to join, keeping the pool at
//! the workers it asked for while it is open (`capacity`), and cancelling
//! them with the pool.
//!
//! The workers join through the pool's remote listener like hand-launched
//! ones; what is here only submits and follows their job.

mod capacity;
mod reach;
mod reports;
mod signals;
pub(crate) mod slurm;
mod timed;

use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use connection::Address;
use crossbeam_channel::Sender;

use self::reports::WaitReports;
use self::signals::WaitSignals;
use self::slurm::{JobId, JobState, SlurmWorkers, Submission};
use super::command::Command;
use super::config::Config;
use super::roster::SharedRoster;
use crate::error::{Error, ErrorKind, Result};
use crate::worker::AUTHKEY_ENV;

/// How often the job's state is asked of Slurm.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// How often a waiting thread looks at its stop flag or the joined count.
const TICK: Duration = Duration::from_millis(50);
/// How much of a failed job's output an error quotes.
const OUTPUT_TAIL_LINES: usize = 5;

/// The Slurm jobs of one pool, and the thread following them.
pub(crate) struct Launcher {
    shared: Arc<Shared>,
    monitor: Option<JoinHandle<()>>,
}

/// What the pool and the monitor thread share.
struct Shared {
    slurm: SlurmWorkers,
    submission: Submission,
    /// Every job submitted, the current one last; all are cancelled at the end.
    jobs: Mutex<Vec<JobId>>,
    /// Set when the pool closes: a job that ends then is not replaced.
    closing: AtomicBool,
    /// Set when the pool ends: the monitor leaves.
    stop: AtomicBool,
}

impl Launcher {
    /// Submits the first job of workers for a pool listening at `listening`
    /// with `authkey`. With no local processes, waits until a worker has
    /// joined (`joined` counts them), failing as [`SlurmWorkers`] says.
    /// Then follows the jobs from a thread, which counts their live
    /// workers in `roster`, tells the dispatcher which jobs' workers to
    /// cut off, and may send it `Command::Break` when it gives up.
    pub(crate) fn start(
        slurm: &SlurmWorkers,
        config: &Config,
        listening: &Address,
        authkey: &[u8],
        joined: Arc<AtomicUsize>,
        roster: SharedRoster,
        commands: Sender<Command>,
    ) -> Result<Launcher> {
        let address = worker_address(listening, slurm.head_host.as_deref(), || {
            reach::head_address(slurm.command_timeout)
        })?;
        let program = match slurm.program.clone().or_else(|| config.program.clone()) {
            Some(program) => program,
            None => std::env::current_exe().map_err(|err| {
                Error::new(
                    ErrorKind::Startup,
                    "find this program for the Slurm workers",
                )
                .with_source(err)
            })?,
        };
        let mut env = config.env.clone();
        env.push((AUTHKEY_ENV.into(), env_value(authkey)?));
        let submission = slurm.submission(&program, &config.args, &address, env)?;
        let shared = Arc::new(Shared {
            slurm: slurm.clone(),
            submission,
            jobs: Mutex::new(Vec::new()),
            closing: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let first = shared.submit()?;
        tracing::info!(job = first, %address, tasks = slurm.tasks, "submitted Slurm workers");
        let mut launcher = Launcher {
            shared: Arc::clone(&shared),
            monitor: None,
        };
        if config.processes == 0 {
            // On failure, dropping the launcher cancels the job.
            shared.wait_for_first_worker(first, &joined)?;
        }
        let local_workers = config.processes > 0;
        launcher.monitor = Some(
            std::thread::Builder::new()
                .name("pool-slurm".into())
                .spawn(move || shared.follow(first, &roster, local_workers, &commands))
                .map_err(|err| {
                    Error::new(ErrorKind::Startup, "start the Slurm monitor thread")
                        .with_source(err)
                })?,
        );
        Ok(launcher)
    }

    /// The pool is closing: a job that ends from now on is not replaced.
    pub(crate) fn closing(&self) {
        self.shared.closing.store(true, Ordering::Relaxed);
    }

    /// The Slurm job ids submitted so far, the current one last.
    pub(crate) fn jobs(&self) -> Vec<JobId> {
        self.shared
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for Launcher {
    /// Stops following the jobs and cancels them all.
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Relaxed);
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(monitor) = self.monitor.take() {
            let _ = monitor.join();
        }
        for job in self.jobs() {
            slurm::cancel(job, self.shared.slurm.command_timeout);
        }
    }
}

impl Shared {
    fn submit(&self) -> Result<JobId> {
        Ok(self.record(slurm::submit(&self.submission)?))
    }

    /// Submits a job of `tasks` workers in place of lost ones (see
    /// [`Submission::replacement`]).
    fn submit_replacement(&self, tasks: usize) -> Result<JobId> {
        Ok(self.record(slurm::submit(&self.submission.replacement(tasks))?))
    }

    /// Keeps `job` to cancel at the end.
    fn record(&self, job: JobId) -> JobId {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(job);
        job
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Waits until a worker joined, the job ended, or the start timeout
    /// passed, reporting the job's state meanwhile; SIGINT or SIGTERM
    /// cancels the job and ends the process.
    fn wait_for_first_worker(&self, job: JobId, joined: &AtomicUsize) -> Result<()> {
        let signals = WaitSignals::catch();
        let mut reports = WaitReports::default();
        let started = Instant::now();
        let deadline = started + self.slurm.start_timeout;
        let mut last = JobState::Pending {
            reason: "not yet queued".into(),
        };
        // Why the last look at the job failed, if it did: then `last` is
        // stale (or never came), and the error must not quote it.
        let mut squeue_failed: Option<Error> = None;
        let mut next_poll = started;
        while joined.load(Ordering::Relaxed) == 0 {
            if let Some(signal) = signals.arrived() {
                tracing::warn!(
                    job,
                    signal = crate::sys::signal_name(signal),
                    "signalled while waiting for Slurm; cancelling the job"
                );
                for job in self.jobs.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                    slurm::cancel(*job, self.slurm.command_timeout);
                }
                signals.end_process(signal);
            }
            let now = Instant::now();
            if now >= next_poll {
                next_poll = now + POLL_EVERY;
                let polled = slurm::state(job, self.slurm.command_timeout);
                reports.report(&self.slurm, job, &polled, started.elapsed());
                match polled {
                    Ok(JobState::Ended { state }) if joined.load(Ordering::Relaxed) == 0 => {
                        return Err(self.ended_before_joining(job, &state));
                    }
                    Ok(state) => {
                        last = state;
                        squeue_failed = None;
                    }
                    Err(err) => {
                        tracing::debug!(%err, "cannot ask Slurm about the job");
                        squeue_failed = Some(err);
                    }
                }
            }
            if now >= deadline {
                let how = match &squeue_failed {
                    Some(err) => match std::error::Error::source(err) {
                        Some(cause) => format!(
                            "is in a state squeue could not tell ({}: {cause})",
                            err.message()
                        ),
                        None => format!("is in a state squeue could not tell ({})", err.message()),
                    },
                    None => describe(&last),
                };
                return Err(Error::new(
                    ErrorKind::Startup,
                    format!(
                        "no Slurm worker joined the pool within {:.0?}: job {job} {how} \
                         (it was cancelled)",
                        self.slurm.start_timeout,
                    ),
                ));
            }
            std::thread::sleep(TICK);
        }
        tracing::info!(job, after = ?started.elapsed(), "the first Slurm worker joined");
        Ok(())
    }

    fn ended_before_joining(&self, job: JobId, state: &str) -> Error {
        let mut message =
            format!("Slurm job {job} ended ({state}) before any worker joined the pool");
        match self.output_tail(job) {
            Some(tail) => message.push_str(&format!("; its output ends: {tail}")),
            None => message.push_str("; see its output file for why"),
        }
        Error::new(ErrorKind::Startup, message)
    }

    /// The last lines of the job's output, if it went to a file this host
    /// can read.
    fn output_tail(&self, job: JobId) -> Option<String> {
        let pattern = match &self.slurm.output {
            Some(path) => path.to_string_lossy().into_owned(),
            None => "slurm-%j.out".into(),
        };
        let text = std::fs::read_to_string(pattern.replace("%j", &job.to_string())).ok()?;
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(OUTPUT_TAIL_LINES)..].join(" | ");
        (!tail.is_empty()).then_some(tail)
    }

    /// The job ended after the pool was told to close. That is how a clean
    /// close ends (its workers were told to quit, and the queue is empty),
    /// but a job cancelled or out of time while queued work waits takes the
    /// pool's last workers: a closing pool turns new workers away, so
    /// another job could not help, and without local workers that work
    /// fails instead of waiting for ever (`join` would never return).
    fn ended_while_closing(
        &self,
        job: JobId,
        state: &str,
        local_workers: bool,
        commands: &Sender<Command>,
    ) {
        tracing::debug!(job, %state, "the Slurm job ended while the pool was closing");
        if !local_workers {
            let _ = commands.send(Command::Break(Error::new(
                ErrorKind::Startup,
                format!(
                    "the pool's Slurm job {job} ended ({state}) while the pool was closing, \
                     and a closing pool submits no other job: this input cannot run"
                ),
            )));
        }
    }

    /// Sleeps `duration`, or less if the pool ends.
    fn sleep(&self, duration: Duration) {
        let until = Instant::now() + duration;
        while !self.stopped() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(TICK));
        }
    }
}

/// A pending or running job, for an error message.
fn describe(state: &JobState) -> String {
    match state {
        JobState::Pending { reason } => format!("was still pending (Slurm's reason: {reason})"),
        JobState::Active { state } => format!("was {state}, but no worker reached the pool"),
        JobState::Ended { state } => format!("ended ({state})"),
    }
}

/// The address workers connect to: the listener's, with `head_host`, or
/// else the address `find` gives, or else this host's name, in place of
/// an address that means every interface.
fn worker_address(
    listening: &Address,
    head_host: Option<&str>,
    find: impl FnOnce() -> Option<std::net::IpAddr>,
) -> Result<String> {
    let Address::Tcp(bound) = listening else {
        // A Unix socket: only workers on this host can reach it.
        return Ok(listening.to_string());
    };
    let host = match head_host {
        Some(host) => host.to_string(),
        None if bound.ip().is_unspecified() => match find() {
            Some(address) => address.to_string(),
            None => crate::sys::host_name().map_err(|err| {
                Error::new(
                    ErrorKind::Startup,
                    "find this host's name for the Slurm workers (or give SlurmWorkers::head_host)",
                )
                .with_source(err)
            })?,
        },
        None => bound.ip().to_string(),
    };
    let host = match host.parse::<std::net::Ipv6Addr>() {
        Ok(_) => format!("[{host}]"),
        Err(_) => host,
    };
    Ok(format!("tcp:{host}:{}", bound.port()))
}

/// The authkey as an environment variable's value, which cannot hold a
/// NUL byte.
fn env_value(authkey: &[u8]) -> Result<OsString> {
    use std::os::unix::ffi::OsStringExt;
    if authkey.contains(&0) {
        return Err(Error::new(
            ErrorKind::Startup,
            "the authkey holds a NUL byte, so it cannot reach Slurm workers in their environment",
        ));
    }
    Ok(OsString::from_vec(authkey.to_vec()))
}

/// A random authkey for a pool that listens only for its own launched
/// workers.
pub(crate) fn random_authkey() -> Result<Vec<u8>> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|err| {
        Error::new(
            ErrorKind::Startup,
            format!("draw a random authkey for the Slurm workers: {err}"),
        )
    })?;
    // As text: it travels in an environment variable.
    Ok(key
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_reach_a_wildcard_listener_at_the_address_facing_slurm() {
        let any: Address = "tcp:0.0.0.0:7000".parse().unwrap();
        let facing = || Some("10.213.0.1".parse().unwrap());
        let unknown = || None;
        assert_eq!(
            worker_address(&any, None, facing).unwrap(),
            "tcp:10.213.0.1:7000"
        );
        let v6 = || Some("fd00::1".parse().unwrap());
        assert_eq!(
            worker_address(&any, None, v6).unwrap(),
            "tcp:[fd00::1]:7000"
        );
        // Only when Slurm cannot say: this host's name.
        let name = crate::sys::host_name().unwrap();
        assert_eq!(
            worker_address(&any, None, unknown).unwrap(),
            format!("tcp:{name}:7000")
        );
        assert_eq!(
            worker_address(&any, Some("head"), facing).unwrap(),
            "tcp:head:7000"
        );
        let one: Address = "tcp:10.1.2.3:7001".parse().unwrap();
        assert_eq!(
            worker_address(&one, None, facing).unwrap(),
            "tcp:10.1.2.3:7001"
        );
        assert_eq!(
            worker_address(&any, Some("::1"), unknown).unwrap(),
            "tcp:[::1]:7000"
        );
    }

    #[test]
    fn random_keys_are_long_text_and_differ() {
        let (a, b) = (random_authkey().unwrap(), random_authkey().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.iter().all(u8::is_ascii_hexdigit));
        assert_ne!(a, b);
    }
}
