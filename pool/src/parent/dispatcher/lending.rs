//! The dispatcher's side of direct calls (`parent/lease.rs`,
//! `parent/direct_call.rs`): offering idle workers to callers, and taking
//! them back, with what they ran and the calls parked with them, before
//! it hands them work, closes or is terminated.

use super::{Dispatcher, Phase};
use crate::error::Error;
use crate::parent::direct_call::{self, Failure};
use crate::parent::lease::Call;

impl Dispatcher {
    /// Whether this pool's workers may be lent at all: not where the
    /// dispatcher must see every input a worker runs (a retry count, a
    /// task budget per worker, memory limits whose breach it judges).
    fn lends(&self) -> bool {
        self.config.retries == 0
            && self.config.max_tasks_per_child.is_none()
            && self.config.memory.budget.is_none()
            && self.config.memory.hard.is_none()
    }

    /// Offers the workers it has nothing for to callers, while nothing
    /// waits in the queue.
    pub(super) fn offer_idle(&mut self) {
        if self.phase != Phase::Open
            || self.broken.is_some()
            || !self.queue.is_empty()
            || !self.lends()
        {
            return;
        }
        let poller = self.io.poller();
        for id in self.workers.idle_local() {
            let lendable = self
                .workers
                .get(id)
                .and_then(|slot| slot.lendable(&self.task_numbers, &poller));
            if let Some(worker) = lendable {
                if self.leases.offer(worker).is_none() {
                    if let Some(mut slot) = self.worker_mut(id) {
                        slot.set_lent(true);
                    }
                }
            }
        }
    }

    /// Takes back the workers offered and not lent, counting what they
    /// ran, adopts the calls parked with lent workers, queues the inputs
    /// of direct calls to run again, and forgets the lost workers (a lost
    /// worker's slot is killed, if still there: its `Lost` event follows).
    /// If `want`, the next lease to end wakes the dispatcher. True if none
    /// stays lent.
    pub(super) fn reclaim_lent(&mut self, want: bool) -> bool {
        if self.workers.lent() == 0 {
            return true;
        }
        self.take_back_lent(want)
    }

    /// [`reclaim_lent`](Self::reclaim_lent), even if no worker is lent
    /// now: a lease that ended as its worker was lost (which removes the
    /// worker) may have left an input to run again.
    pub(super) fn take_back_lent(&mut self, want: bool) -> bool {
        let reclaimed = self.leases.reclaim(want);
        let (idle, lost) = (reclaimed.idle, reclaimed.lost);
        for call in reclaimed.adopted {
            self.adopt(call);
        }
        self.requeue(reclaimed.run_again, None);
        for worker in idle {
            if let Some(mut slot) = self.worker_mut(worker.id) {
                slot.count_lent(worker.ran);
                slot.set_lent(false);
            }
        }
        for worker in lost {
            if let Some(mut slot) = self.worker_mut(worker.id) {
                slot.count_lent(worker.ran);
                slot.set_lent(false);
                slot.kill();
            }
        }
        self.workers.lent() == 0
    }

    /// Counts a call a caller sent its lent worker as a chunk the worker
    /// holds, and has `pool-io` read the worker's socket again: the
    /// result then comes the usual way, with every guarantee of queued
    /// work.
    fn adopt(&mut self, call: Call) {
        // The worker was reported lost meanwhile (it died while offered,
        // before the caller took it): as if the caller saw its
        // connection end.
        if self.workers.get(call.worker.id).is_none() {
            call.fail(&self.leases, Failure::Ended("the worker ended".into()));
            return;
        }
        let answer = direct_call::answer_early(&call);
        let Call {
            worker,
            number,
            job,
            ..
        } = call;
        // Its handle may have been cancelled before the dispatcher saw the
        // call: a stop asked for is looked into this turn.
        self.stops_pending |= job.sink.wants_running_stopped();
        if let Some(mut slot) = self.worker_mut(worker.id) {
            slot.count_lent(worker.ran);
            slot.set_lent(false);
            slot.adopt_chunk(crate::wire::DIRECT_CHUNK, number, job);
        }
        worker.conn.end_lease_answering(&worker.poller, answer);
    }

    /// Ends the calls of the workers lent now with `why()`: kills those
    /// workers and shuts their sockets (so that the wait ends even if a
    /// process the worker forked holds its end open); true if any was
    /// lent. The calls parked with lent workers are adopted first, and
    /// end as queued work does.
    pub(super) fn stop_lent(&mut self, why: impl Fn() -> Error) -> bool {
        self.reclaim_lent(false);
        let lent = self.leases.stop_lent(why);
        for &worker in &lent {
            if let Some(mut slot) = self.worker_mut(worker) {
                slot.kill();
                slot.shut_down();
            }
        }
        !lent.is_empty()
    }
}
