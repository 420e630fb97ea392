//! Workers of other builds: the warning for another build of this
//! program, the refusal of a worker whose tasks differ from this
//! program's, and the calls that then have no worker to run them.

use super::Dispatcher;
use crate::parent::identity::{short, Build, Mismatch};

impl Dispatcher {
    /// Says once per build that workers run another build of this program:
    /// its tasks agree, but what they call may differ.
    /// Another program (a `pool-worker`) is expected to be another build.
    /// A local worker's task table is kept for the calls to check.
    pub(super) fn note_build(&mut self, worker: u32, build: Build) {
        let Build::Other {
            program,
            build_id,
            same_program,
            tasks,
        } = build
        else {
            return;
        };
        if self.workers.get(worker).is_some_and(|slot| slot.is_local()) {
            self.config.worker_tasks.record(&program, &tasks);
        }
        // Without a build id of its own, this program cannot tell its own
        // build from another.
        if !same_program || crate::sys::build_id().is_empty() {
            tracing::debug!(worker, %program, build = short(&build_id), "worker program of another build");
        } else if self.other_builds.insert(build_id.clone()) {
            tracing::warn!(
                worker,
                %program,
                build = short(&build_id),
                own = short(crate::sys::build_id()),
                "a worker runs another build of this program: its tasks agree in types, \
                 versions and code, but the functions they call may differ (rebuild or \
                 restart the workers, or raise a changed task's #[version])"
            );
        }
    }

    /// Turns away a worker whose tasks differ from this program's. A local
    /// one (a `worker_program`) fails `build`, or, once the pool runs,
    /// counts toward the start failures that break it: its replacements
    /// would be refused alike. A remote one is only turned away, and calls
    /// of the tasks it had in another form fail with its error while no
    /// other worker is live (see `fail_refused_jobs`).
    pub(super) fn refuse(&mut self, worker: u32, mismatch: Mismatch) {
        let Some(mut slot) = self.worker_mut(worker) else {
            return;
        };
        let Mismatch { error, tasks } = mismatch;
        let error = error.with_worker(slot.info());
        tracing::warn!(worker, peer = slot.peer(), %error, "worker refused");
        if slot.is_local() {
            drop(slot);
            self.worker_failed_setup(worker, error);
            return;
        }
        slot.deny(error.message());
        drop(slot);
        for task in tasks {
            self.refused_tasks.insert(task, error.clone());
        }
        // A starting worker holds no inputs: there is nothing to take back.
        self.publish_roster();
    }

    /// While no worker is live, fails the queued calls of tasks that a
    /// refused worker had in another form, with its error, rather than let
    /// them wait for a worker that may never come.
    pub(super) fn fail_refused_jobs(&mut self) {
        if self.refused_tasks.is_empty() || self.workers.live() > 0 {
            return;
        }
        let refused = &self.refused_tasks;
        self.queue.retain_mut(|job| match refused.get(job.task) {
            Some(error) => {
                job.fail_all(|_| error.clone());
                false
            }
            None => true,
        });
    }
}
