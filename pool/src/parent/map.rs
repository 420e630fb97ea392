//! The eager map calls (`map`, `map_chunked`, `map_results` and their
//! `_with_progress` forms): submit every input at once, then collect the
//! results in input order as they arrive.

use crossbeam_channel::unbounded;

use super::command::Commands;
use super::job::{decode_output, encode_input, Item, Job};
use super::progress::{report, Progress};
use super::sink::{Channel, Delivery};
use crate::error::{Error, ErrorKind, Result};
use crate::task::Task;

/// What a map call does when an input fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnFailure {
    /// Return that failure; the inputs not yet started are dropped (`map`).
    Stop,
    /// Keep it at its index and go on (`map_results`).
    Keep,
}

/// Whether an error ends the whole call rather than one input: the pool
/// stopped, was interrupted, or could not keep workers running.
pub(crate) fn ends_the_call(err: &Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::Interrupted | ErrorKind::Closed | ErrorKind::Startup
    )
}

/// Runs `T` on every input in chunks of `chunksize` and returns each
/// input's result in input order; with [`OnFailure::Stop`], the first
/// failure to arrive instead. `on_progress` hears of every batch of
/// results that moved the count.
pub(crate) fn run<T: Task>(
    commands: &Commands,
    inputs: impl IntoIterator<Item = T::Input>,
    chunksize: usize,
    on_failure: OnFailure,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<Vec<Result<T::Output>>> {
    commands.check_open()?;
    let chunksize = chunksize.max(1);
    let (sender, receiver) = unbounded();
    let (stream, _cancel_on_return) = Channel::new(sender, commands.cancel_notice().clone());
    let mut collected = Collected::<T>::default();
    let mut jobs = Vec::new();
    let mut items = Vec::with_capacity(chunksize);
    for (index, input) in inputs.into_iter().enumerate() {
        collected.results.push(None);
        match encode_input::<T>(&input, index, commands.max_message_size()) {
            Ok(encoded) => items.push(Item::new(index, encoded)),
            Err(err) if on_failure == OnFailure::Stop => return Err(err),
            Err(err) => collected.early_failures.push(Delivery {
                index,
                outcome: Err(err),
            }),
        }
        if items.len() == chunksize {
            jobs.push(Job::streamed::<T>(std::mem::take(&mut items), &stream));
        }
    }
    if !items.is_empty() {
        jobs.push(Job::streamed::<T>(items, &stream));
    }
    drop(stream);
    commands.submit(jobs);

    let mut progress = Progress::new(collected.results.len());
    let mut reported = None;
    let early = std::mem::take(&mut collected.early_failures);
    collected.absorb(early, &mut progress);
    report(progress, &mut reported, on_progress);
    while progress.done < progress.total {
        let batch = receiver.recv().map_err(|_| {
            Error::new(
                ErrorKind::Closed,
                "the pool stopped before the map finished",
            )
        })?;
        let first_failure = collected.absorb(batch, &mut progress);
        report(progress, &mut reported, on_progress);
        if let Some(err) = first_failure {
            if on_failure == OnFailure::Stop || ends_the_call(&err) {
                return Err(err);
            }
        }
    }
    Ok(collected.results.into_iter().flatten().collect())
}

/// The results of one map call so far, by input index.
struct Collected<T: Task> {
    results: Vec<Option<Result<T::Output>>>,
    /// Inputs that failed before they could be submitted.
    early_failures: Vec<Delivery>,
}

impl<T: Task> Default for Collected<T> {
    fn default() -> Self {
        Collected {
            results: Vec::new(),
            early_failures: Vec::new(),
        }
    }
}

impl<T: Task> Collected<T> {
    /// Files a batch of results, counting each input once; returns the
    /// batch's first failure, if any (one that ends the call first).
    fn absorb(&mut self, batch: Vec<Delivery>, progress: &mut Progress) -> Option<Error> {
        let mut first_failure: Option<Error> = None;
        for delivery in batch {
            let Some(slot @ None) = self.results.get_mut(delivery.index) else {
                continue;
            };
            let result = decode_output::<T>(delivery);
            if let Err(err) = &result {
                let ends = ends_the_call(err);
                if first_failure.is_none()
                    || (ends && !first_failure.as_ref().is_some_and(ends_the_call))
                {
                    first_failure = Some(err.clone());
                }
            }
            progress.count(result.is_err());
            *slot = Some(result);
        }
        first_failure
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::parent::sink::Payload;

    crate::task! { fn echo(x: u32) -> u32 { x } }

    fn ok(index: usize, value: u32) -> Delivery {
        let message = Arc::new(connection::encode(&value).unwrap());
        let len = message.len();
        Delivery {
            index,
            outcome: Ok(Payload::new(message, 0..len)),
        }
    }

    fn failed(index: usize, kind: ErrorKind) -> Delivery {
        Delivery {
            index,
            outcome: Err(Error::new(kind, "failed").with_index(index)),
        }
    }

    fn collected(n: usize) -> Collected<echo> {
        let mut collected = Collected::default();
        collected.results.resize_with(n, || None);
        collected
    }

    #[test]
    fn each_input_counts_once_and_failures_are_kept_at_their_index() {
        let mut collected = collected(3);
        let mut progress = Progress::new(3);
        let first = collected.absorb(
            vec![ok(2, 20), failed(0, ErrorKind::TaskFailed), ok(2, 99)],
            &mut progress,
        );
        assert_eq!(first.map(|err| err.kind()), Some(ErrorKind::TaskFailed));
        assert_eq!((progress.done, progress.failed), (2, 1));
        // A result for an index already filed, or out of range, counts nothing.
        assert!(collected
            .absorb(vec![ok(0, 1), ok(7, 7)], &mut progress)
            .is_none());
        assert_eq!((progress.done, progress.failed), (2, 1));
        collected.absorb(vec![ok(1, 10)], &mut progress);
        assert!(progress.is_finished());
        let results: Vec<_> = collected.results.into_iter().flatten().collect();
        assert_eq!(results[0].as_ref().unwrap_err().index(), Some(0));
        assert_eq!(results[1].as_ref().ok(), Some(&10));
        assert_eq!(results[2].as_ref().ok(), Some(&20));
    }

    #[test]
    fn a_call_ending_error_wins_over_an_input_failure_in_the_same_batch() {
        let mut collected = collected(2);
        let mut progress = Progress::new(2);
        let first = collected.absorb(
            vec![
                failed(0, ErrorKind::Panicked),
                failed(1, ErrorKind::Interrupted),
            ],
            &mut progress,
        );
        assert_eq!(first.map(|err| err.kind()), Some(ErrorKind::Interrupted));
    }

    #[test]
    fn reports_only_moves() {
        let mut seen = Vec::new();
        let mut last = None;
        let mut progress = Progress::new(2);
        report(progress, &mut last, &mut |p| seen.push(p.done));
        report(progress, &mut last, &mut |p| seen.push(p.done));
        progress.count(false);
        report(progress, &mut last, &mut |p| seen.push(p.done));
        assert_eq!(seen, [0, 1]);
    }
}
