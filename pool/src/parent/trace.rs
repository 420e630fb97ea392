//! The parent's `task` spans: one per input sent to a worker, open from the
//! moment its chunk is handed to the worker until its result (or failure)
//! is handled, with the outcome recorded on it. Made only for chunks sent
//! while DEBUG is enabled (checked once per chunk), so that they cost
//! nothing otherwise. See the crate docs' section on tracing.

use tracing::field::{debug, display, Empty};
use tracing::Span;

use crate::error::Error;

/// What `outcome` says of an input handed back to the queue to run again
/// (its worker died, was killed or sent results that did not line up).
pub(crate) const REQUEUED: &str = "requeued";

/// The span for input `index` of `task`, sent to `worker` in `chunk`.
pub(crate) fn task_span(task: &'static str, index: usize, worker: u32, chunk: u64) -> Span {
    tracing::debug_span!(
        "task",
        task,
        index,
        worker,
        chunk,
        outcome = Empty,
        error = Empty
    )
}

pub(crate) fn record_outcome<T>(span: &Span, outcome: &Result<T, Error>) {
    match outcome {
        Ok(_) => {
            span.record("outcome", "ok");
        }
        Err(err) => record_error(span, err),
    }
}

pub(crate) fn record_error(span: &Span, err: &Error) {
    // The kind's Debug form is its name: `TaskFailed`, `WorkerDied`, ...
    span.record("outcome", debug(err.kind()));
    span.record("error", display(err.message()));
}

pub(crate) fn record_requeued(span: &Span) {
    span.record("outcome", REQUEUED);
}
