//! Workers over their memory budget, or leaving when signalled: retired
//! and replaced, by need.

use super::Dispatcher;
use crate::parent::worker_slot::State;

impl Dispatcher {
    /// A worker's resident memory was over the budget after an input (it
    /// measures itself: see `worker/memory.rs`). It is asked for every
    /// input it holds and has not started, which it gives back with its
    /// results, and told to quit; `replenish` starts its replacement. It
    /// already gives back whatever it is sent meanwhile, so nothing it
    /// held fails for it.
    pub(super) fn on_over_budget(&mut self, worker: u32, resident: u64) {
        let budget = self.config.memory.budget;
        let Some(slot) = self.workers.get(worker) else {
            return;
        };
        if slot.state() != State::Ready {
            return;
        }
        tracing::debug!(
            worker,
            resident,
            budget,
            "worker over its memory budget; retiring"
        );
        self.take_back_and_retire(worker);
    }

    /// A worker leaves, told to by a signal (Slurm's warning before its
    /// time limit): handled as a worker over budget, so that it runs
    /// nothing more and its unstarted inputs run elsewhere; it no longer
    /// counts as live, so a launcher sees the shortfall and replaces it.
    pub(super) fn on_leaving(&mut self, worker: u32) {
        if self.workers.get(worker).map(|slot| slot.state()) != Some(State::Ready) {
            return;
        }
        tracing::info!(worker, "worker leaves (signalled); retiring");
        self.take_back_and_retire(worker);
    }

    /// Asks a ready worker for every input it holds and has not started,
    /// which it gives back with its results (it gives back whatever it is
    /// sent meanwhile too), and tells it to quit; `replenish` starts a
    /// local one's replacement.
    fn take_back_and_retire(&mut self, worker: u32) {
        let Some(mut slot) = self.worker_mut(worker) else {
            return;
        };
        slot.recall(|_, _| true);
        slot.retire();
        drop(slot);
        self.publish_roster();
    }
}
