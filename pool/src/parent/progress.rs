//! [`Progress`]: how far a `map` call has come, reported to a callback as
//! its results arrive.

/// How far a map call has come: the callback given to
/// [`MapWith::progress`](crate::MapWith::progress) receives one of these once when
/// the first inputs are submitted (`done` is then 0, unless some input could not
/// even be encoded) and again each time a batch of results raises `done`.
///
/// Results come input by input, not chunk by chunk: a worker sends the
/// results of the inputs it finished in the chunk it runs at least every
/// 50 ms, so a map of many short inputs (whose automatic chunks hold an
/// eighth of the inputs per worker at first) moves within about 50 ms of
/// its first inputs finishing, and reports several times a second per
/// worker. A chunk of short inputs that all finish within 50 ms is
/// reported as one batch.
///
/// `total` is the number of inputs the iterator announced (its exact
/// `size_hint`, or the count of a collected iterator); should an iterator
/// yield a different number than it announced, `total` follows what it
/// yields (then one report may differ from the last in `total` alone).
///
/// Counts are exact: each input counts once in `done` when its result
/// arrives, whether it succeeded or failed; `failed` counts the failures
/// among them. So `done` only grows, reports are never repeated, and a call
/// that completes ends with a report where `done == total`. Chunked maps
/// count inputs, not chunks.
///
/// The callback runs on the calling thread, between batches of results:
/// a slow callback delays only the collection of results (the workers go
/// on). To read the progress from another thread, store it from the
/// callback, for example in an `AtomicUsize`.
///
/// ```
/// pool::task! { fn check(x: u32) -> Result<u32, String> { if x % 10 == 3 { Err(format!("{x} ends in 3")) } else { Ok(x) } } }
///
/// fn main() -> Result<(), pool::Error> {
///     let pool = pool::Pool::new(2)?;
///     let mut reports = Vec::new();
///     let results = pool.map_with(check, 0..50).progress(|progress| reports.push(progress)).keep_failures().run()?;
///     assert_eq!(results.len(), 50);
///     let last = reports.last().expect("at least one report");
///     assert_eq!((last.done, last.failed, last.total), (50, 5, 50));
///     assert!(last.is_finished());
///     assert!(reports.windows(2).all(|pair| pair[0].done < pair[1].done));
///     Ok(())
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Inputs whose result arrived, failures included.
    pub done: usize,
    /// Inputs among `done` that failed.
    pub failed: usize,
    /// Inputs in the call.
    pub total: usize,
}

impl Progress {
    pub(crate) fn new(total: usize) -> Progress {
        Progress {
            done: 0,
            failed: 0,
            total,
        }
    }

    /// Counts one input's result.
    pub(crate) fn count(&mut self, failed: bool) {
        self.done += 1;
        self.failed += usize::from(failed);
    }

    /// Inputs among `done` that succeeded.
    pub fn succeeded(&self) -> usize {
        self.done - self.failed
    }

    /// Whether every input's result arrived.
    pub fn is_finished(&self) -> bool {
        self.done == self.total
    }

    /// Shows this progress on an [`indicatif`] bar: its length becomes
    /// `total` and its position `done`. (With the `indicatif` feature.)
    ///
    /// ```
    /// pool::task! { fn square(x: u64) -> u64 { x * x } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(2)?;
    ///     let bar = indicatif::ProgressBar::hidden(); // or ProgressBar::new(0)
    ///     let squares = pool.map_with(square, 0..100).progress(|p| p.update_bar(&bar)).run()?;
    ///     bar.finish_and_clear();
    ///     assert_eq!((bar.position(), bar.length()), (100, Some(100)));
    ///     assert_eq!(squares[9], 81);
    ///     Ok(())
    /// }
    /// ```
    #[cfg(feature = "indicatif")]
    pub fn update_bar(&self, bar: &indicatif::ProgressBar) {
        bar.set_length(self.total as u64);
        bar.set_position(self.done as u64);
    }
}

/// Reports `progress` to `on_progress` when it moved since `last` (or was
/// never reported), so that every report the caller sees is a new one.
pub(crate) fn report(
    progress: Progress,
    last: &mut Option<Progress>,
    on_progress: &mut dyn FnMut(Progress),
) {
    if *last != Some(progress) {
        *last = Some(progress);
        on_progress(progress);
    }
}
