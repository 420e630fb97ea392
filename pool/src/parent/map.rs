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
    let (stream, _cancel_on_return) = Channel::new(sender);
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
