//! Following a pool's Slurm jobs while the pool is open, to keep it at
//! the number of workers it asked for.
//!
//! Each worker says which job it runs in (`SLURM_JOB_ID`, in its ready
//! message), so the monitor counts the live workers of each job from the
//! dispatcher's roster. A job Slurm no longer runs (ended, cancelled,
//! preempted, or requeued: pending again after it ran) has its workers cut
//! off by the dispatcher (`Command::RetireJob`), since a worker Slurm can
//! no longer stop (its node's slurmd is gone) would otherwise keep working
//! for the pool outside Slurm's control; a requeued job is cancelled and
//! replaced rather than waited for. Workers lost inside a job that still
//! runs (killed, cut off, or leaving before the time limit) are replaced
//! by a job of as many tasks as are missing. Every job submitted after the
//! first counts against `resubmits`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::slurm::{self, JobId, JobState};
use super::{Shared, POLL_EVERY};
use crate::error::{Error, ErrorKind};
use crate::parent::command::Command;
use crate::parent::roster::{self, SharedRoster};

/// How long a running job's workers may take to join before the ones
/// missing count as lost: time for `srun` to start them and for them to
/// connect and set up.
const SETTLE: Duration = Duration::from_secs(30);

/// How many looks in a row must find the pool short before a job is
/// submitted: a worker cut off a moment ago may be on its way out of a
/// job whose end the next look shows.
const SHORT_LOOKS: u32 = 2;

/// A job the monitor follows.
struct Tracked {
    id: JobId,
    tasks: usize,
    submitted: Instant,
    /// Submitted in place of lost workers (the first job is not: `build`
    /// waited for it, or the pool has local workers to go on with).
    replacement: bool,
    /// When Slurm was first seen running it.
    running_since: Option<Instant>,
    /// All its workers were seen live at once, or it ran for [`SETTLE`]:
    /// the workers it lacks from now on are lost, not on their way.
    settled: bool,
}

impl Tracked {
    fn new(id: JobId, tasks: usize, replacement: bool) -> Tracked {
        Tracked {
            id,
            tasks,
            submitted: Instant::now(),
            replacement,
            running_since: None,
            settled: false,
        }
    }
}

/// What became of a job at one look.
enum Outcome {
    Goes,
    /// Slurm no longer runs it; its state.
    Gone(String),
}

impl Shared {
    /// The monitor thread: keeps the pool at the workers it asked for
    /// while it is open (see the module's doc). When it gives up (no
    /// resubmits left, or a replacement pending past the start timeout,
    /// with no Slurm worker left), a pool with no local workers fails its
    /// calls, as it does when its jobs end while the pool is closing.
    pub(super) fn follow(
        &self,
        first: JobId,
        roster: &SharedRoster,
        local_workers: bool,
        commands: &Sender<Command>,
    ) {
        let give_up = |err: Error| {
            tracing::error!(%err, "giving up on Slurm workers");
            if !local_workers {
                let _ = commands.send(Command::Break(err));
            }
        };
        let wanted = self.slurm.tasks;
        let mut jobs = vec![Tracked::new(first, wanted, false)];
        let mut resubmits_left = self.slurm.resubmits;
        let mut short_looks = 0;
        let mut warned_short = false;
        // The last job that ended, and how: what a give-up quotes.
        let mut last_end: Option<(JobId, String)> = None;
        while !self.stopped() {
            self.sleep(POLL_EVERY);
            if self.stopped() {
                continue;
            }
            let live = live_by_job(roster);
            let mut pending_too_long = None;
            jobs.retain_mut(|job| {
                let live = live.get(&job.id).copied().unwrap_or(0);
                match self.look_at(job, live, commands) {
                    Outcome::Goes => {
                        if job.replacement
                            && job.running_since.is_none()
                            && live == 0
                            && job.submitted.elapsed() >= self.slurm.start_timeout
                        {
                            slurm::cancel(job.id, self.slurm.command_timeout);
                            pending_too_long = Some(job.id);
                            return false;
                        }
                        true
                    }
                    Outcome::Gone(state) => {
                        last_end = Some((job.id, state));
                        false
                    }
                }
            });
            if self.closing.load(Ordering::Relaxed) {
                if jobs.is_empty() {
                    let (job, state) = last_end.unwrap_or((first, "left the queue".into()));
                    return self.ended_while_closing(job, &state, local_workers, commands);
                }
                continue;
            }
            let present: usize = jobs
                .iter()
                .map(|job| live.get(&job.id).copied().unwrap_or(0))
                .sum();
            let coming: usize = jobs
                .iter()
                .filter(|job| !job.settled)
                .map(|job| {
                    job.tasks
                        .saturating_sub(live.get(&job.id).copied().unwrap_or(0))
                })
                .sum();
            if let Some(job) = pending_too_long {
                let err = Error::new(
                    ErrorKind::Startup,
                    format!(
                        "no worker of the replacement Slurm job {job} joined within {:.0?}: \
                         it was still pending (it was cancelled)",
                        self.slurm.start_timeout
                    ),
                );
                if present + coming == 0 {
                    return give_up(err);
                }
                tracing::warn!(%err, "going on with the Slurm workers left");
            }
            let missing = wanted.saturating_sub(present + coming);
            if missing == 0 {
                short_looks = 0;
                warned_short = false;
                continue;
            }
            short_looks += 1;
            if short_looks < SHORT_LOOKS {
                continue;
            }
            if resubmits_left == 0 {
                let why = match &last_end {
                    Some((job, state)) => format!("the pool's Slurm job {job} ended ({state})"),
                    None => format!("{missing} of the pool's {wanted} Slurm workers were lost"),
                };
                let err = Error::new(
                    ErrorKind::Startup,
                    format!(
                        "{why} and the pool may submit no more (resubmits: {})",
                        self.slurm.resubmits
                    ),
                );
                if present + coming == 0 {
                    return give_up(err);
                }
                if !warned_short {
                    warned_short = true;
                    tracing::warn!(%err, present, "going on with fewer Slurm workers");
                }
                continue;
            }
            resubmits_left -= 1;
            short_looks = 0;
            match self.submit_replacement(missing) {
                Ok(next) => {
                    tracing::warn!(
                        next,
                        missing,
                        present,
                        "Slurm workers were lost; submitted a job to replace them"
                    );
                    jobs.push(Tracked::new(next, missing, true));
                }
                Err(err) if present + coming == 0 => return give_up(err),
                Err(err) => tracing::warn!(%err, "cannot replace lost Slurm workers"),
            }
        }
    }

    /// Looks at one job: notes when it runs and when its workers are all
    /// in; a job Slurm no longer runs has its workers cut off, and a
    /// requeued one (pending after it ran) is cancelled too.
    fn look_at(&self, job: &mut Tracked, live: usize, commands: &Sender<Command>) -> Outcome {
        let state = match slurm::state(job.id, self.slurm.command_timeout) {
            Ok(state) => state,
            Err(err) => {
                tracing::debug!(%err, job = job.id, "cannot ask Slurm about the job");
                return Outcome::Goes;
            }
        };
        match state {
            JobState::Active { .. } => {
                let since = *job.running_since.get_or_insert_with(Instant::now);
                job.settled |= live >= job.tasks || since.elapsed() >= SETTLE;
                Outcome::Goes
            }
            JobState::Pending { .. } if job.running_since.is_none() => Outcome::Goes,
            JobState::Pending { reason } => {
                let _ = commands.send(Command::RetireJob(job.id));
                slurm::cancel(job.id, self.slurm.command_timeout);
                tracing::warn!(job = job.id, %reason, "Slurm requeued a job of workers; its workers were cut off and it was cancelled");
                Outcome::Gone(format!("requeued: {reason}"))
            }
            JobState::Ended { state } => {
                let _ = commands.send(Command::RetireJob(job.id));
                // A requeued job passes through COMPLETING on its way back
                // to the queue, where it is no longer followed.
                if state == "COMPLETING" {
                    slurm::cancel(job.id, self.slurm.command_timeout);
                }
                tracing::warn!(job = job.id, %state, "a Slurm job of workers ended");
                Outcome::Gone(state)
            }
        }
    }
}

/// The live workers of each Slurm job, by the job each says it runs in.
fn live_by_job(roster: &SharedRoster) -> HashMap<JobId, usize> {
    roster::read(roster, |roster| {
        let mut live = HashMap::new();
        for worker in &roster.remote {
            if let Some(job) = worker.slurm_job {
                *live.entry(job).or_default() += 1;
            }
        }
        live
    })
}
