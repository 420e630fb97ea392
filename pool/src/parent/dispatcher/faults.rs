//! How the dispatcher handles workers that die, time out or are
//! interrupted: who was running what, what fails, what runs again.

use std::time::{Duration, Instant};

use super::{Dispatcher, MAX_BOUNCES, MAX_START_FAILURES};
use crate::error::{Error, ErrorKind, WorkerInfo};
use crate::parent::job::Job;
use crate::parent::oom::Death;
use crate::parent::trace;
use crate::parent::worker_reader::WorkerEnd;
use crate::parent::worker_slot::{Culprit, State, TakenBack};

impl Dispatcher {
    pub(super) fn on_lost(&mut self, worker: u32, end: WorkerEnd) {
        let Some(mut slot) = self.workers.remove(worker) else {
            return;
        };
        self.leases.forget(worker);
        self.publish_roster();
        let description = end.describe();
        match slot.peer() {
            Some(peer) => tracing::debug!(worker, %peer, how = %description, "remote worker left"),
            None => tracing::debug!(worker, how = %description, "worker ended"),
        }
        match slot.state() {
            State::Starting { .. } => {
                // A program that never becomes a worker exits (or is killed
                // at the deadline); a signal here comes from outside.
                let hint = if slot.is_local() && end.status.is_some_and(|s| s.code().is_some()) {
                    format!("; {}", not_a_worker_hint(&self.program))
                } else {
                    String::new()
                };
                let err = Error::new(
                    ErrorKind::Startup,
                    format!("worker {worker} {description} before it was ready{hint}"),
                );
                if slot.is_local() {
                    self.start_failed(err.with_worker(slot.info()));
                }
            }
            // A remote worker's end says nothing of its input (its node,
            // its job or the network may have failed), and the pool cannot
            // see how its process ended.
            State::Ready | State::Retiring if !slot.is_local() => {
                let taken = slot.take_back();
                let how = how_lost(worker, slot.peer(), &description);
                self.requeue_after_loss(taken, &how, slot.info());
            }
            // A worker retiring over its memory budget may still hold
            // inputs (it gives them back before it quits, unless it dies).
            State::Ready | State::Retiring => {
                let death = self.memory.judge(worker, &end);
                let taken = slot.take_back();
                self.requeue_after_death(taken, &death, slot.info());
            }
            State::Doomed => {}
        }
        self.memory.forget(worker);
    }

    /// Requeues what a dead worker held. The input it was running fails
    /// once it has killed more workers than retries allow. If it was
    /// running none, what it held counts a bounce, and an input bounced
    /// [`MAX_BOUNCES`] times fails instead of going round again.
    pub(super) fn requeue_after_death(
        &mut self,
        mut taken: TakenBack,
        death: &Death,
        worker: WorkerInfo,
    ) {
        let description = &death.how;
        // Only the input it was running ran out of memory: the others
        // bounced.
        let died_holding =
            |what: String| Error::new(ErrorKind::WorkerDied, what).with_worker(worker);
        let died = |what: String| Error::new(death.kind, what).with_worker(worker);
        if taken.culprit.is_none() {
            for job in &mut taken.unstarted {
                let (bounced, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut job.items)
                    .into_iter()
                    .map(|mut item| {
                        item.bounces += 1;
                        item
                    })
                    .partition(|item| item.bounces >= MAX_BOUNCES);
                job.items = keep;
                for item in bounced {
                    let err = died_holding(format!(
                        "{description} before starting this input; {MAX_BOUNCES} workers \
                         in a row ended holding it unstarted, so it is not sent again"
                    ))
                    .with_task(job.task)
                    .with_index(item.index);
                    self.deliveries.push(&job.sink, item.index, Err(err));
                }
            }
        }
        let culprit = taken.culprit.and_then(|mut culprit| {
            culprit.item.deaths += 1;
            if culprit.item.deaths <= self.config.retries {
                return Some(culprit);
            }
            let err = died(format!(
                "{description} while running this task{}",
                death.note
            ));
            self.fail_culprit(culprit, err);
            None
        });
        self.requeue(taken.unstarted, culprit);
    }

    /// Requeues what a lost remote worker held. The input it was running
    /// runs again elsewhere unless remote workers were lost running it more
    /// than `allowed_failures` times; then it fails with
    /// [`ErrorKind::WorkerLost`]. `how` says how this one was lost.
    pub(super) fn requeue_after_loss(&mut self, taken: TakenBack, how: &str, worker: WorkerInfo) {
        let allowed = self.config.allowed_failures;
        let culprit = taken.culprit.and_then(|mut culprit| {
            culprit.item.losses += 1;
            let losses = culprit.item.losses;
            if losses <= allowed {
                tracing::info!(
                    worker.id,
                    index = culprit.item.index,
                    losses,
                    "a remote worker running an input was lost ({how}); running it elsewhere"
                );
                return Some(culprit);
            }
            let err = Error::new(
                ErrorKind::WorkerLost,
                format!(
                    "the remote workers running this input were lost {}, the last time {how}; \
                     allowed_failures is {allowed}, so it is not run again",
                    times(losses)
                ),
            )
            .with_worker(worker);
            self.fail_culprit(culprit, err);
            None
        });
        self.requeue(taken.unstarted, culprit);
    }

    /// Slurm no longer runs `job` (it ended, or was requeued or
    /// preempted): its remote workers are cut off (their connections shut
    /// down, which ends them, wherever they run), and what they held runs
    /// elsewhere, as after a loss. Workers already leaving (Slurm's SIGTERM
    /// reached them) are left to finish the input they run.
    pub(super) fn retire_job(&mut self, job: u64) {
        let cut: Vec<u32> = self
            .workers
            .iter()
            .filter(|w| w.slurm_job() == Some(job) && w.is_live())
            .map(|w| w.id())
            .collect();
        for worker in cut {
            let Some(mut slot) = self.worker_mut(worker) else {
                continue;
            };
            let info = slot.info();
            let why = format!("Slurm no longer runs its job {job}");
            let how = how_lost(worker, slot.peer(), &why);
            tracing::info!(
                worker,
                job,
                "cutting off a worker of a job Slurm no longer runs"
            );
            slot.kill();
            let taken = slot.take_back();
            drop(slot);
            self.requeue_after_loss(taken, &how, info);
        }
        self.publish_roster();
    }

    /// Fails the input a worker was running with `err`, which its span
    /// records.
    fn fail_culprit(&mut self, culprit: Culprit, err: Error) {
        let err = err.with_task(culprit.task).with_index(culprit.item.index);
        trace::record_error(&culprit.span, &err);
        self.deliveries
            .push(&culprit.sink, culprit.item.index, Err(err));
    }

    /// [`requeue`](Self::requeue) for everything taken back from a worker.
    pub(super) fn requeue_taken_back(&mut self, taken: TakenBack) {
        self.requeue(taken.unstarted, taken.culprit);
    }

    /// Puts work back at the front of the queue, in its original order
    /// (the input that was running first); its span ends as requeued.
    pub(super) fn requeue(&mut self, unstarted: Vec<Job>, culprit: Option<Culprit>) {
        let unstarted = unstarted.into_iter().filter(|job| !job.items.is_empty());
        for job in unstarted.rev() {
            self.queue.push_front(job);
        }
        if let Some(culprit) = culprit {
            self.queue.push_front(culprit.requeued());
        }
        if let Some(err) = self.broken.clone() {
            self.fail_queued(|| err.clone());
        }
    }

    /// When the dispatcher next needs to wake up without a message: for
    /// the nearest start-up deadline, to watch running tasks' clocks, or
    /// to try starting workers again after a shortage of descriptors, or
    /// to look again for an input to stop.
    pub(super) fn next_wakeup(&self) -> Option<Duration> {
        let now = Instant::now();
        let startup = self
            .workers
            .first_deadline()
            .map(|deadline| deadline.saturating_duration_since(now));
        let tick = self
            .config
            .task_timeout
            .filter(|_| self.workers.any_holding())
            .map(timeout_tick);
        // A broken pool starts nothing more.
        let retry = self
            .shortage
            .retry_at()
            .filter(|_| self.broken.is_none())
            .map(|at| at.saturating_duration_since(now));
        let stop = self.stops_pending.then_some(super::STOP_RECHECK);
        let roster = self.roster_due.map(|at| at.saturating_duration_since(now));
        [startup, tick, retry, stop, roster]
            .into_iter()
            .flatten()
            .min()
    }

    /// Enforces start-up deadlines and task timeouts.
    pub(super) fn check_clocks(&mut self) {
        let now = Instant::now();
        let late = self.workers.late(now);
        // Running tasks' clocks are read once a tick (what `next_wakeup`
        // wakes for), not on every turn: that walks every worker.
        let mut overdue = Vec::new();
        if let Some(timeout) = self.config.task_timeout {
            if self
                .timeouts_checked
                .map_or(true, |at| now >= at + timeout_tick(timeout))
            {
                self.timeouts_checked = Some(now);
                // A call parked with its worker runs on its clock too.
                self.reclaim_lent(false);
                self.workers.for_each_mut(|slot| {
                    if slot.state() == State::Ready && slot.overran(timeout, now) {
                        overdue.push(slot.id());
                    }
                });
            }
        }
        for worker in late {
            let err = Error::new(
                ErrorKind::Startup,
                format!(
                    "worker {worker} was not ready within {:?}; {}",
                    self.config.startup_timeout,
                    not_a_worker_hint(&self.program)
                ),
            );
            let local = self.workers.get(worker).is_some_and(|w| w.is_local());
            if local {
                self.start_failed(err);
            }
            self.kill_worker(worker);
        }
        for worker in overdue {
            self.time_out(worker);
        }
    }

    /// A local worker failed to become ready. While the pool starts, that
    /// fails `build`. Later, when a replacement fails (the OOM killer or an
    /// operator's `kill` can hit a worker that is still starting), another
    /// one is started, and the pool gives up, failing queued and later work
    /// with `err`, only after [`MAX_START_FAILURES`] failures in a row.
    pub(super) fn start_failed(&mut self, err: Error) {
        self.start_failures += 1;
        if !self.started || self.start_failures >= MAX_START_FAILURES {
            self.break_pool(err);
        } else {
            tracing::warn!(%err, failures = self.start_failures, "a replacement worker failed to start; starting another");
        }
    }

    pub(super) fn time_out(&mut self, worker: u32) {
        let Some(timeout) = self.config.task_timeout else {
            return;
        };
        let Some(mut slot) = self.worker_mut(worker) else {
            return;
        };
        let info = slot.info();
        slot.kill();
        let taken = slot.take_back();
        drop(slot);
        // A killed worker is not live: `worker_pids` stops listing it now,
        // not once its end is seen.
        self.publish_roster();
        tracing::debug!(worker, "task timed out; worker killed");
        if let Some(culprit) = taken.culprit {
            let err = Error::task_timed_out(timeout).with_worker(info);
            self.fail_culprit(culprit, err);
        }
        self.requeue(taken.unstarted, None);
    }

    pub(super) fn kill_worker(&mut self, worker: u32) {
        let Some(mut slot) = self.worker_mut(worker) else {
            return;
        };
        slot.kill();
        let taken = slot.take_back();
        drop(slot);
        self.publish_roster();
        self.requeue_taken_back(taken);
    }

    /// Fails everything unfinished with `Interrupted` and kills the local
    /// workers that were busy, so that nothing keeps running for a caller
    /// that has gone; `replenish` starts fresh ones.
    pub(super) fn interrupt(&mut self) -> bool {
        let interrupted = || Error::new(ErrorKind::Interrupted, "Ctrl-C (SIGINT)");
        let mut had_work = !self.queue.is_empty();
        self.fail_queued(interrupted);
        // A caller's direct call ends once its worker is killed.
        had_work |= self.stop_lent(interrupted);
        self.workers.for_each_mut(|slot| {
            if slot.load().chunks == 0 {
                return;
            }
            had_work = true;
            slot.fail_in_flight(interrupted);
            // A remote worker's results are discarded as they come, since
            // its chunks stay in place with their inputs answered.
            if slot.is_local() {
                slot.kill();
                let _ = slot.take_back();
            }
        });
        had_work
    }
}

/// How often running tasks' clocks are read against `timeout`.
fn timeout_tick(timeout: Duration) -> Duration {
    (timeout / 10).clamp(Duration::from_millis(1), Duration::from_millis(100))
}

/// What to check when a local worker program never became a worker.
fn not_a_worker_hint(program: &std::path::Path) -> String {
    format!(
        "is {} built with the pool crate (and, if it declares \
         pool::workers_start_in_main!(), does it call pool::init() at the top of main)?",
        program.display()
    )
}

/// How a remote worker was lost, for [`Dispatcher::requeue_after_loss`]:
/// which worker, at which peer, and `why`.
fn how_lost(worker: u32, peer: Option<&str>, why: &str) -> String {
    format!("worker {worker} at {} ({why})", peer.unwrap_or("?"))
}

/// "once", "twice", "3 times".
fn times(count: u32) -> String {
    match count {
        1 => "once".into(),
        2 => "twice".into(),
        n => format!("{n} times"),
    }
}
