//! The dispatcher's side of direct calls (`parent/lease.rs`): offering
//! idle workers to callers, and taking them back, with what they ran,
//! before it hands them work, closes or is terminated.

use super::{Dispatcher, Phase};
use crate::error::Error;

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
    /// ran, and forgets the lost ones (a lost worker's slot is killed, if
    /// still there: its `Lost` event follows). If `want`, the next lease
    /// to end wakes the dispatcher. True if none stays lent.
    pub(super) fn reclaim_lent(&mut self, want: bool) -> bool {
        if self.workers.lent() == 0 {
            return true;
        }
        let (idle, lost) = self.leases.reclaim(want);
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

    /// Ends the calls of the workers lent now with `why()`: kills those
    /// workers and shuts their sockets (so that the wait ends even if a
    /// process the worker forked holds its end open); true if any was
    /// lent.
    pub(super) fn stop_lent(&mut self, why: impl Fn() -> Error) -> bool {
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
