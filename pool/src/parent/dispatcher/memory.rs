//! Workers over their memory budget: retired and replaced, by need.

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
        let Some(slot) = self.worker_mut(worker) else {
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
        slot.recall(|_, _| true);
        slot.retire();
        self.publish_roster();
    }
}
