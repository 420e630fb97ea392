//! [`MapWith`]: the one eager map call with options, which
//! [`Pool::map_with`](crate::Pool::map_with) starts and
//! [`Pool::map`](crate::Pool::map) runs with none.
//!
//! Whether a failure stops the call is part of the builder's type
//! ([`StopAtFailure`] or [`KeepFailures`]), because it changes what
//! [`run`](MapWith::run) returns: the outputs, or every input's result.

use std::marker::PhantomData;
use std::path::Path;
use std::time::Duration;

use super::command::Commands;
use super::journal::JournalOptions;
use super::map::{self, OnFailure};
use super::progress::Progress;
use crate::error::Result;
use crate::task::Task;

/// The failure mode of a [`MapWith`] by default: the first failure ends
/// the call, and [`run`](MapWith::run) returns the outputs.
#[derive(Debug, Clone, Copy, Default)]
pub struct StopAtFailure;

/// The failure mode of a [`MapWith`] after
/// [`keep_failures`](MapWith::keep_failures): every input's result is
/// kept at its index, and [`run`](MapWith::run) returns them all.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeepFailures;

/// A progress callback that ignores the reports: a [`MapWith`]'s until
/// [`progress`](MapWith::progress) gives one.
pub type NoProgress = fn(Progress);

/// A map call being set up: [`Pool::map_with`](crate::Pool::map_with)
/// returns one, its methods set options, and [`run`](MapWith::run) runs
/// it. Every combination of options works.
///
/// `F` is what a failure does ([`StopAtFailure`], or [`KeepFailures`]
/// after [`keep_failures`](MapWith::keep_failures)); `P` is the progress
/// callback.
///
/// ```
/// pool::task! { fn halve(x: u32) -> Result<u32, String> { if x % 2 == 0 { Ok(x / 2) } else { Err(format!("{x} is odd")) } } }
///
/// fn main() -> Result<(), pool::Error> {
///     let pool = pool::Pool::new(2)?;
///     let mut last = None;
///     let results = pool
///         .map_with(halve, 0..100)
///         .chunksize(8)
///         .progress(|progress| last = Some(progress))
///         .keep_failures()
///         .run()?;
///     assert_eq!(results.iter().filter(|result| result.is_err()).count(), 50);
///     assert_eq!(results[10].as_ref().ok(), Some(&5));
///     assert_eq!(last.map(|p| (p.done, p.failed)), Some((100, 50)));
///     Ok(())
/// }
/// ```
#[must_use = "a map does nothing until it is run"]
pub struct MapWith<'p, T: Task, I, F = StopAtFailure, P = NoProgress> {
    commands: &'p Commands,
    inputs: I,
    chunksize: Option<usize>,
    on_progress: P,
    journal: JournalOptions,
    failures: PhantomData<F>,
    task: PhantomData<fn() -> T>,
}

impl<'p, T: Task, I: Iterator<Item = T::Input>> MapWith<'p, T, I> {
    pub(crate) fn new(commands: &'p Commands, _task: T, inputs: I) -> Self {
        MapWith {
            commands,
            inputs,
            chunksize: None,
            on_progress: |_| {},
            journal: JournalOptions::default(),
            failures: PhantomData,
            task: PhantomData,
        }
    }
}

impl<'p, T, I, F, P> MapWith<'p, T, I, F, P>
where
    T: Task,
    I: Iterator<Item = T::Input>,
    P: FnMut(Progress),
{
    /// Sends `chunksize` inputs (at least 1) per chunk instead of the
    /// automatic size (see [`Pool::map`](crate::Pool::map)). Larger chunks
    /// cost less per input; smaller ones balance uneven work better.
    ///
    /// ```
    /// pool::task! { fn negate(x: i32) -> i32 { -x } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(2)?;
    ///     assert_eq!(pool.map_with(negate, 0..5).chunksize(2).run()?, [0, -1, -2, -3, -4]);
    ///     Ok(())
    /// }
    /// ```
    pub fn chunksize(mut self, chunksize: usize) -> Self {
        self.chunksize = Some(chunksize.max(1));
        self
    }

    /// Reports the call's [`Progress`] to `on_progress`: once when the
    /// first inputs are submitted, then each time results arrive. Counts
    /// are exact, in inputs (not chunks), whatever the chunk size; the
    /// callback runs on the calling thread. A call that stops at a failure
    /// reports it last; a call that completes ends with `done == total`.
    ///
    /// ```
    /// pool::task! { fn square(x: u64) -> u64 { x * x } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(2)?;
    ///     let mut seen = 0;
    ///     let squares = pool
    ///         .map_with(square, 0..1000)
    ///         .progress(|progress| {
    ///             eprint!("\r{}/{}", progress.done, progress.total);
    ///             seen = progress.done;
    ///         })
    ///         .run()?;
    ///     assert_eq!((squares.len(), seen), (1000, 1000));
    ///     Ok(())
    /// }
    /// ```
    pub fn progress<Q: FnMut(Progress)>(self, on_progress: Q) -> MapWith<'p, T, I, F, Q> {
        MapWith {
            commands: self.commands,
            inputs: self.inputs,
            chunksize: self.chunksize,
            on_progress,
            journal: self.journal,
            failures: PhantomData,
            task: PhantomData,
        }
    }

    /// Keeps every input's result at its index, failures included,
    /// instead of stopping at the first failure: [`run`](MapWith::run)
    /// then returns `Vec<Result<T::Output>>` (what [`Pool::imap`](crate::Pool::imap)
    /// yields, collected). Its outer error is only for failures of the
    /// call itself: a closed or stopped pool
    /// ([`ErrorKind::Closed`](crate::ErrorKind::Closed)), Ctrl-C
    /// ([`ErrorKind::Interrupted`](crate::ErrorKind::Interrupted)), or
    /// workers that cannot start ([`ErrorKind::Startup`](crate::ErrorKind::Startup)).
    ///
    /// ```
    /// pool::task! { fn parse(text: String) -> Result<i64, std::num::ParseIntError> { text.parse() } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(2)?;
    ///     let inputs = ["1", "x", "3"].map(String::from);
    ///     let results = pool.map_with(parse, inputs).keep_failures().run()?;
    ///     assert_eq!(results[0].as_ref().ok(), Some(&1));
    ///     let err = results[1].as_ref().unwrap_err();
    ///     assert_eq!((err.kind(), err.index()), (pool::ErrorKind::TaskFailed, Some(1)));
    ///     assert_eq!(results[2].as_ref().ok(), Some(&3));
    ///     Ok(())
    /// }
    /// ```
    pub fn keep_failures(self) -> MapWith<'p, T, I, KeepFailures, P> {
        MapWith {
            commands: self.commands,
            inputs: self.inputs,
            chunksize: self.chunksize,
            on_progress: self.on_progress,
            journal: self.journal,
            failures: PhantomData,
            task: PhantomData,
        }
    }

    /// Journals every input's result in the file at `path` as it
    /// arrives, and takes from it the results a previous run of the same
    /// map journaled: a rerun after a kill (SIGKILL, a time limit,
    /// Ctrl-C) runs only what is missing, and returns the same results as
    /// a run that was never interrupted.
    ///
    /// An input is taken from the journal when the journal holds a result
    /// for its index *and* for the same encoded input (the encoding
    /// itself if under 16 bytes, else a SHA-256 digest of it): a changed
    /// input runs again. Failures are journaled too and
    /// replayed as failures (with their kind and message, without worker
    /// details) unless [`rerun_failures`](MapWith::rerun_failures) asks to
    /// run them again. Progress counts replayed inputs as done, so a
    /// resumed run's bar starts where the last one ended.
    ///
    /// The file is created if missing. A journal of another task (name,
    /// input or output type) or format, or damaged before its last record,
    /// fails the call with [`ErrorKind::Journal`](crate::ErrorKind::Journal)
    /// before anything runs; a last record torn by a kill is dropped.
    /// Records reach the file after each batch of results, and the disk at
    /// most every [`journal_sync`](MapWith::journal_sync) interval (1 s by
    /// default) and at the end. The format and the write policy are
    /// described in the pool's README ("Resumable maps").
    ///
    /// ```
    /// pool::task! { fn cube(x: u64) -> u64 { x * x * x } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(2)?;
    ///     let dir = std::env::temp_dir().join(format!("pool-journal-doc-{}", std::process::id()));
    ///     std::fs::create_dir_all(&dir).unwrap();
    ///     let path = dir.join("cubes.journal");
    ///     let first = pool.map_with(cube, 0..100).journal(&path).run()?;
    ///     // A rerun runs nothing: every output comes from the journal.
    ///     let mut reports = Vec::new();
    ///     let again = pool.map_with(cube, 0..100).journal(&path).progress(|p| reports.push(p.done)).run()?;
    ///     assert_eq!(first, again);
    ///     assert_eq!(reports, [100]);
    ///     std::fs::remove_dir_all(&dir).unwrap();
    ///     Ok(())
    /// }
    /// ```
    pub fn journal(mut self, path: impl AsRef<Path>) -> Self {
        self.journal.path = Some(path.as_ref().to_path_buf());
        self
    }

    /// With a [`journal`](MapWith::journal), runs again the inputs whose
    /// journaled result is a failure (their new results are journaled in
    /// turn); without one, does nothing.
    ///
    /// ```
    /// pool::task! { fn flaky(x: u32) -> Result<u32, String> {
    ///     let flag = std::env::temp_dir().join(format!("pool-flaky-doc-{}", std::os::unix::process::parent_id()));
    ///     if x == 1 && !flag.exists() { Err("not yet".into()) } else { Ok(x) }
    /// } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(1)?;
    ///     let path = std::env::temp_dir().join(format!("pool-flaky-doc-{}.journal", std::process::id()));
    ///     let flag = std::env::temp_dir().join(format!("pool-flaky-doc-{}", std::process::id()));
    ///     let first = pool.map_with(flaky, 0..3).journal(&path).keep_failures().run()?;
    ///     assert!(first[1].is_err());
    ///     std::fs::write(&flag, b"").unwrap();
    ///     // Replayed from the journal: still the failure.
    ///     let replayed = pool.map_with(flaky, 0..3).journal(&path).keep_failures().run()?;
    ///     assert!(replayed[1].is_err());
    ///     let rerun = pool.map_with(flaky, 0..3).journal(&path).rerun_failures().run()?;
    ///     assert_eq!(rerun, [0, 1, 2]);
    ///     std::fs::remove_file(&path).unwrap();
    ///     std::fs::remove_file(&flag).unwrap();
    ///     Ok(())
    /// }
    /// ```
    pub fn rerun_failures(mut self) -> Self {
        self.journal.rerun_failures = true;
        self
    }

    /// How often the [`journal`](MapWith::journal) is flushed to disk
    /// (`fdatasync`): what a crash of the machine can lose. Every batch
    /// of results is written to the file as it arrives whatever this is,
    /// so a killed program loses nothing but the batch being written.
    /// `Duration::ZERO` flushes after every batch. Default:
    /// [`DEFAULT_JOURNAL_SYNC`](crate::DEFAULT_JOURNAL_SYNC), 1 s.
    ///
    /// ```
    /// pool::task! { fn inc(x: u8) -> u8 { x + 1 } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(2)?;
    ///     let path = std::env::temp_dir().join(format!("pool-sync-doc-{}.journal", std::process::id()));
    ///     let out = pool.map_with(inc, 0..10).journal(&path).journal_sync(std::time::Duration::ZERO).run()?;
    ///     assert_eq!(out[9], 10);
    ///     std::fs::remove_file(&path).unwrap();
    ///     Ok(())
    /// }
    /// ```
    pub fn journal_sync(mut self, interval: Duration) -> Self {
        self.journal.sync = interval;
        self
    }

    /// Runs the call with `on_failure`, each result passed through `keep`.
    /// Inputs stream from an iterator that knows its length exactly
    /// (`size_hint`); others are collected first, as the caller's values
    /// (never encoded), since the automatic chunk size and the progress
    /// reports need the count.
    fn run_with<R>(
        mut self,
        on_failure: OnFailure,
        keep: impl FnMut(Result<T::Output>) -> Result<R>,
    ) -> Result<Vec<R>> {
        let call = map::Options {
            chunksize: self.chunksize,
            on_failure,
            journal: std::mem::take(&mut self.journal),
        };
        match self.inputs.size_hint() {
            (low, Some(high)) if low == high => map::run::<T, R>(
                self.commands,
                self.inputs,
                low,
                call,
                &mut self.on_progress,
                keep,
            ),
            _ => {
                let inputs: Vec<T::Input> = self.inputs.collect();
                let total = inputs.len();
                map::run::<T, R>(
                    self.commands,
                    inputs.into_iter(),
                    total,
                    call,
                    &mut self.on_progress,
                    keep,
                )
            }
        }
    }
}

impl<T, I, P> MapWith<'_, T, I, StopAtFailure, P>
where
    T: Task,
    I: Iterator<Item = T::Input>,
    P: FnMut(Progress),
{
    /// Runs the map and returns the outputs in input order, or the first
    /// failure to arrive, with its input's index
    /// ([`Error::index`](crate::Error::index)); the inputs not yet started
    /// are then dropped.
    ///
    /// ```
    /// pool::task! { fn checked_inverse(x: i64) -> Result<i64, String> { if x == 0 { Err("zero".into()) } else { Ok(100 / x) } } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(2)?;
    ///     assert_eq!(pool.map_with(checked_inverse, [1, 2, 4]).run()?, [100, 50, 25]);
    ///     let err = pool.map_with(checked_inverse, [1, 0, 4]).run().unwrap_err();
    ///     assert_eq!((err.kind(), err.index()), (pool::ErrorKind::TaskFailed, Some(1)));
    ///     Ok(())
    /// }
    /// ```
    pub fn run(self) -> Result<Vec<T::Output>> {
        self.run_with(OnFailure::Stop, |result| result)
    }
}

impl<T, I, P> MapWith<'_, T, I, KeepFailures, P>
where
    T: Task,
    I: Iterator<Item = T::Input>,
    P: FnMut(Progress),
{
    /// Runs the map and returns every input's result in input order, each
    /// failure at its index; see [`keep_failures`](MapWith::keep_failures).
    ///
    /// ```
    /// pool::task! { fn even(x: u32) -> Result<u32, String> { if x % 2 == 0 { Ok(x) } else { Err(format!("{x} is odd")) } } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(2)?;
    ///     let results = pool.map_with(even, 0..10).keep_failures().run()?;
    ///     assert_eq!(results.iter().filter(|result| result.is_err()).count(), 5);
    ///     Ok(())
    /// }
    /// ```
    pub fn run(self) -> Result<Vec<Result<T::Output>>> {
        self.run_with(OnFailure::Keep, Ok)
    }
}
