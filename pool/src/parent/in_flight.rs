//! A chunk a worker holds and has not answered in full: what a
//! [`WorkerSlot`](super::worker_slot::WorkerSlot) keeps of each, in the
//! order sent. A worker may answer a long chunk in parts (see the wire
//! format's `P` messages), so a chunk here is its inputs not yet answered.

use tracing::Span;

use super::job::{Item, Job};
use super::trace;
use crate::error::Error;

/// A chunk a worker holds.
///
/// The inputs answered by partial results stay at the front of
/// `job.items` (and of `spans`) as empty placeholders until the chunk is
/// done, so that answering a chunk in many small parts costs each part
/// only its own inputs (draining the front of the list each time would
/// cost a part the whole rest of the chunk).
pub(crate) struct InFlight {
    pub(crate) id: u64,
    pub(crate) job: Job,
    /// Its inputs the worker has not answered yet. Counted even after they
    /// were answered early (an interrupt empties `job.items`), so that the
    /// worker's results still line up.
    pub(crate) items: u64,
    pub(crate) bytes: usize,
    /// The worker's number for its first input not yet answered (1 for the
    /// worker's first input ever).
    pub(crate) first_seq: u64,
    /// A `task` span per entry of `job.items`, in the same order, if DEBUG
    /// was enabled when the chunk was sent; otherwise empty.
    pub(crate) spans: Vec<Span>,
    /// The worker was asked to give back what it has not started of it.
    pub(crate) recalled: bool,
    /// Placeholders at the front of `job.items` and `spans`: inputs
    /// answered by partial results.
    answered: usize,
}

impl InFlight {
    /// Chunk `id`, whose inputs take `bytes` and are numbered from
    /// `first_seq` by its worker.
    pub(crate) fn new(
        id: u64,
        job: Job,
        bytes: usize,
        first_seq: u64,
        spans: Vec<Span>,
    ) -> InFlight {
        InFlight {
            id,
            items: job.items.len() as u64,
            bytes,
            job,
            first_seq,
            spans,
            recalled: false,
            answered: 0,
        }
    }

    /// Whether the worker's input number `seq` is one of this chunk's not
    /// yet answered.
    pub(crate) fn holds_seq(&self, seq: u64) -> bool {
        (self.first_seq..self.first_seq + self.items).contains(&seq)
    }

    /// Fails every input still in the chunk, recording the error on their spans.
    pub(crate) fn fail_all(&mut self, error: &impl Fn() -> Error) {
        self.drop_answered();
        for span in self.spans.drain(..) {
            trace::record_error(&span, &error());
        }
        self.job.fail_all(|_| error());
    }

    /// Takes the next `count` inputs off the chunk, answered by the worker,
    /// with their spans (if traced): all that is left if that is `count`.
    /// Inputs answered early (an interrupt) are gone: then none.
    pub(crate) fn take_answered(&mut self, count: u64) -> (Vec<Item>, Vec<Span>) {
        let count = count.min(self.items);
        self.items -= count;
        self.first_seq += count;
        if self.items == 0 {
            return self.take_unanswered();
        }
        let part = self.answered..self.answered + count as usize;
        self.answered = part.end;
        let items = match self.job.items.get_mut(part.clone()) {
            Some(items) => items
                .iter_mut()
                .map(|item| {
                    let placeholder = Item::new(item.index, Vec::new());
                    std::mem::replace(item, placeholder)
                })
                .collect(),
            None => Vec::new(),
        };
        let spans = match self.spans.get_mut(part) {
            Some(spans) => spans
                .iter_mut()
                .map(|span| std::mem::replace(span, Span::none()))
                .collect(),
            None => Vec::new(),
        };
        (items, spans)
    }

    /// Takes every input not yet answered off the chunk, with their spans
    /// (if traced), in order.
    pub(crate) fn take_unanswered(&mut self) -> (Vec<Item>, Vec<Span>) {
        self.drop_answered();
        (
            std::mem::take(&mut self.job.items),
            std::mem::take(&mut self.spans),
        )
    }

    /// Removes the placeholders of inputs answered by partial results.
    fn drop_answered(&mut self) {
        let answered = std::mem::take(&mut self.answered);
        self.job.items.drain(..answered.min(self.job.items.len()));
        self.spans.drain(..answered.min(self.spans.len()));
    }
}

/// A chunk dropped with inputs in it (the pool stopped) fails them through
/// its job's own drop: only those not answered, never a placeholder.
impl Drop for InFlight {
    fn drop(&mut self) {
        self.drop_answered();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parent::sink::{ResultCell, Sink};

    fn held(inputs: usize) -> InFlight {
        let items = (0..inputs).map(|index| Item::new(index, vec![1])).collect();
        let job = Job {
            task: "demo::task",
            items,
            sink: Sink::Single(ResultCell::new()),
        };
        InFlight::new(9, job, inputs, 11, Vec::new())
    }

    fn indices(items: &[Item]) -> Vec<usize> {
        items.iter().map(|item| item.index).collect()
    }

    #[test]
    fn a_chunk_answered_in_parts_gives_each_input_once_in_order() {
        let mut chunk = held(5);
        assert!(chunk.holds_seq(11) && chunk.holds_seq(15) && !chunk.holds_seq(16));
        let (first, spans) = chunk.take_answered(2);
        assert_eq!((indices(&first), spans.len()), (vec![0, 1], 0));
        assert_eq!((chunk.items, chunk.first_seq), (3, 13));
        assert!(!chunk.holds_seq(12) && chunk.holds_seq(13));
        assert_eq!(indices(&chunk.take_answered(1).0), [2]);
        // What is taken back (a worker killed) is only what is unanswered.
        let mut killed = chunk;
        assert_eq!(indices(&killed.take_unanswered().0), [3, 4]);

        let mut chunk = held(3);
        assert_eq!(indices(&chunk.take_answered(1).0), [0]);
        assert_eq!(indices(&chunk.take_answered(2).0), [1, 2]);
        assert_eq!(chunk.items, 0);
        assert!(chunk.job.items.is_empty());
    }

    #[test]
    fn failing_a_chunk_answered_in_part_fails_only_its_other_inputs() {
        let slot = ResultCell::new();
        let mut chunk = held(3);
        chunk.job.sink = Sink::Single(std::sync::Arc::clone(&slot));
        let (answered, _) = chunk.take_answered(2);
        drop(answered);
        assert!(slot.lock().outcome.is_none());
        chunk.fail_all(&|| Error::new(crate::ErrorKind::Interrupted, "stop"));
        let outcome = slot.lock().outcome.clone().expect("failed");
        assert_eq!(outcome.unwrap_err().index(), Some(2));
    }
}
