//! A process pool in the spirit of Python's `multiprocessing.Pool`: run
//! named functions ("tasks") over many inputs in worker processes, with
//! typed inputs and outputs, clear errors for every fault, and no hangs.
//!
//! # Example
//!
//! ```
//! pool::task! {
//!     /// Sums the squares of a range.
//!     pub fn sum_squares(start: u64, end: u64) -> u64 {
//!         (start..end).map(|n| n * n).sum()
//!     }
//! }
//!
//! fn main() -> Result<(), pool::Error> {
//!     let pool = pool::Pool::new(2)?;
//!     let ranges: Vec<(u64, u64)> = (0..8).map(|i| (i * 100, (i + 1) * 100)).collect();
//!     let sums = pool.map(sum_squares, ranges)?;
//!     assert_eq!(sums.iter().sum::<u64>(), (0..800u64).map(|n| n * n).sum());
//!     Ok(())
//! }
//! ```
//!
//! Nothing else is needed in `main`: no set-up call, no worker program.
//!
//! # How it works
//!
//! By default the pool re-executes the current program once per worker
//! (the very image it runs, `/proc/self/exe`, even once a rebuild has
//! replaced the file at [`std::env::current_exe`]), marking each copy as a
//! worker through environment variables and an inherited connection. The
//! copy recognises this before its `main` runs (a start-up hook, as C++
//! static constructors run) and becomes a worker there: it never runs your
//! `main`, a test harness, or the `main` of the program your library is
//! part of. Tasks are found by name: [`task!`] puts each task in a table
//! that the linker assembles, so parent and worker agree on them as long
//! as both are built from the same code. A separate worker program is
//! possible too ([`PoolBuilder::worker_program`], the `pool-worker` binary
//! of the `worker-bin` crate), and so are workers on other machines
//! ([`PoolBuilder::listen`], [`connect_worker`]): such a worker tells the
//! pool its build and each task's types, version and code hash when it
//! joins, and one whose task differs from the pool's is refused with
//! [`ErrorKind::TaskMismatch`]. A worker program has only the tasks it
//! names: a call of a task it lacks fails at once, before any input is
//! sent, saying to name it with [`link_tasks!`].
//!
//! # Plain functions and closures
//!
//! Where every worker runs this very program (local workers, the
//! default), a plain `fn` or a closure that captures nothing runs without
//! [`task!`]: [`Pool::map_fn`], [`Pool::imap_fn`], [`Pool::apply_fn`] and
//! [`Pool::apply_async_fn`] send it by pointer, as offsets into the
//! program's code that the worker, which loaded the same image elsewhere,
//! turns back into its own addresses. A pool whose workers may run
//! another program (a [`worker_program`](PoolBuilder::worker_program),
//! remote workers) refuses such a call at once with
//! [`ErrorKind::UnknownTask`], saying to use [`task!`].
//!
//! ```
//! fn main() -> Result<(), pool::Error> {
//!     let pool = pool::Pool::new(2)?;
//!     assert_eq!(pool.map_fn(|x: u64| x * x, [1, 2, 3])?, [1, 4, 9]);
//!     Ok(())
//! }
//! ```
//!
//! [`init`] is optional: programs that call it at the top of `main` keep
//! working (it does nothing there). A program that wants its workers to
//! run some of its `main` first (to install a tracing subscriber, say)
//! declares [`workers_start_in_main!`] and calls [`init`] after that
//! set-up.
//!
//! # Testing code that uses a pool
//!
//! A pool works in a `#[test]`, in unit tests in `src/` as in `tests/`,
//! and in doctests, with nothing more than the pool itself: the workers are
//! copies of the test binary that become workers before the test harness
//! starts, so they run no test and print nothing.
//!
//! ```
//! pool::task! { fn double(x: u64) -> u64 { x * 2 } }
//!
//! // The body of a `#[test] fn` as much as of this doctest, which is a
//! // test too: the pool's workers are copies of the test's binary.
//! let pool = pool::Pool::new(2).unwrap();
//! assert_eq!(pool.map(double, [1, 2, 3]).unwrap(), [2, 4, 6]);
//! ```
//!
//! Each test may start its own pool; tests run on several threads, so
//! several pools may run at once (size them small, 1 or 2 workers, on a
//! shared machine). A task defined in a test module is linked into the
//! test binary like any other.
//!
//! # Using a pool from a library
//!
//! A library can define tasks and start pools without asking anything of
//! the programs that use it: a program that calls the library's function
//! gets its workers, which run the library's tasks and never the
//! program's `main` (so its side effects, such as a banner printed or a
//! file written, happen once).
//!
//! ```
//! mod my_library {
//!     pool::task! {
//!         fn word_count(text: String) -> usize { text.split_whitespace().count() }
//!     }
//!
//!     /// Counts the words of each text in worker processes.
//!     pub fn count_words(texts: Vec<String>) -> Result<Vec<usize>, pool::Error> {
//!         pool::Pool::new(2)?.map(word_count, texts)
//!     }
//! }
//!
//! fn main() -> Result<(), pool::Error> {
//!     println!("printed once, by the parent only");
//!     assert_eq!(my_library::count_words(vec!["a b".into(), "c".into()])?, [2, 1]);
//!     Ok(())
//! }
//! ```
//!
//! Tasks must be reachable from the program: a task is linked in when the
//! program (or the library) uses it, which sending it to a pool does. A
//! worker program of your own (for remote workers) must name something
//! from each crate whose tasks it serves, as `worker-bin`'s README shows.
//!
//! # What a worker is, and is not
//!
//! Workers are separate processes started from the program file, not
//! forks of the running process:
//!
//! - **Globals set in `main` are not seen by workers**: a `static`,
//!   `OnceLock` or environment variable set at run time in the parent has
//!   its initial value in a worker. Pass what a task needs in its input, or
//!   prepare each worker with [`PoolBuilder::initializer`] (a task run once
//!   per worker, before any other); [`PoolBuilder::env`] sets environment
//!   variables for workers.
//! - **Output**: a worker's stdout is the pool's stdout (inherited, so a
//!   task's `println!` lands there, untagged and possibly interleaved with
//!   other workers' lines); its stderr reaches the pool's stderr line by
//!   line, each line tagged `[worker N] `; its stdin is `/dev/null`.
//! - **After an error**: [`Pool::map`] returns the first error to arrive
//!   and cancels the rest, but inputs already sent to workers (the chunks
//!   in flight) still run to the end, their results dropped: a task with
//!   side effects may have run for inputs past the failing one. Use
//!   [`Pool::imap`] to see every input's result.
//!
//! The source tree follows the process boundary: `parent/` runs in the
//! pool's process, `worker/` in worker processes, and `wire.rs` is the
//! protocol between them.
//!
//! Tasks travel in batches: one message carries many tasks to a worker and
//! one message carries many results back, so that small tasks cost a few
//! microseconds each rather than a system call each. Inputs can also be
//! grouped into chunks explicitly ([`MapWith::chunksize`], [`Imap::chunksize`]).
//!
//! # Maps stream their inputs
//!
//! [`Pool::map`] and [`Pool::map_with`] take inputs from the caller's iterator only as
//! a bounded window has room, encode them chunk by chunk and collect the
//! results in input order as they arrive: the parent holds a window of
//! encoded inputs (3 chunks per live worker, within about 16 MiB, but
//! always one chunk per live worker) and the outputs, never every input
//! encoded at once. An iterator that knows its length exactly (a range, a
//! `Vec`, `map` over them) is never collected; any other is collected
//! first, as the caller's own values, because the automatic chunk size and
//! the progress reports need the count.
//!
//! The automatic chunk size is Python's rule, applied to each chunk as it
//! is cut: the inputs left over four chunks per worker live at that moment,
//! local and remote, so a pool whose remote workers join during a map
//! spreads the rest over them, and the chunks shrink towards the end, which
//! evens out the finish. Chunks are also cut short at their share of the
//! window's bytes. [`MapWith::chunksize`] keeps the size it is given.
//!
//! For data-heavy tasks (arrays, images, text), send bytes as
//! `serde_bytes::ByteBuf` (or a field marked `#[serde(with =
//! "serde_bytes")]`) rather than a plain `Vec<u8>`, which serde encodes one
//! byte at a time: the `blur` example and the `pool_vs_python` bench
//! measure both. Raise [`PoolBuilder::max_message_size`] for inputs or
//! outputs over its default; a single input over it fails alone with
//! [`ErrorKind::MessageTooLarge`]. A large input is copied as few times as
//! the connection allows, each time into memory already faulted in: the
//! parent encodes it into a buffer the call reuses from an input whose
//! result arrived, and sends it (from 64 KiB) as a message of its own
//! straight from there; the worker receives into a buffer it keeps, and
//! encodes outputs straight into its results message.
//!
//! # Completion order and progress
//!
//! [`as_completed`] hands back [`AsyncResult`]s as their results arrive
//! (also as a `Stream`), and [`wait_any`] waits for the first of several;
//! neither needs a thread or a polling loop.
//! [`MapWith::progress`] reports a [`Progress`] (inputs done, failed, in all) to a callback as
//! results arrive, input by input rather than chunk by chunk: a worker
//! sends what it finished of a long chunk every 50 ms, so the first report
//! counts something within about 50 ms of the first inputs finishing,
//! whatever the chunk size; [`MapWith::keep_failures`] keeps every input's result, each
//! failure at its index. The `indicatif` feature adds
//! [`Progress::update_bar`](Progress) for a terminal progress bar.
//!
//! # Resumable maps
//!
//! [`MapWith::journal`] (and [`Imap::journal`]) appends every finished
//! input's result to a file as it arrives; a rerun with the same file
//! takes from it the results of the inputs it holds (same index, same
//! encoded input) and runs the rest, so a map killed at 90% resumes at
//! 90% and returns what an uninterrupted run returns. A journal of
//! another task or format is an [`ErrorKind::Journal`] error; a torn last
//! record is dropped. Records reach the file after every batch of
//! results, and the disk every [`DEFAULT_JOURNAL_SYNC`] (1 s) and at the
//! end ([`MapWith::journal_sync`]). The README's "Resumable maps" has the
//! details and the costs.
//!
//! # Faults
//!
//! - A task that returns `Err` or panics: that input gets
//!   [`ErrorKind::TaskFailed`] or [`ErrorKind::Panicked`] with the message;
//!   the worker goes on. Panic messages are not printed by the worker. A
//!   panic's error names its file, line and column
//!   ([`Error::panic_location`], in the one-line `Display`), and carries
//!   the worker's backtrace when backtraces are enabled in the worker
//!   (`RUST_BACKTRACE`): [`Error::remote_backtrace`], shown by `Debug`.
//! - A worker that dies (a signal, `abort`, `exit`): the input it was
//!   running gets [`ErrorKind::WorkerDied`] naming the exit status or
//!   signal (or runs again, up to [`PoolBuilder::retries`], 0 by default);
//!   the other inputs it held run elsewhere; a replacement starts. One
//!   that ran out of memory (at [`PoolBuilder::hard_worker_memory`], or
//!   ended by the kernel's OOM killer) gets [`ErrorKind::OutOfMemory`]
//!   instead; see [Memory](#memory).
//!   A local worker records in shared memory which input it starts, so the
//!   pool knows exactly which one was running.
//! - A remote worker lost (its connection ended or fell silent, its node
//!   or job ended): that is taken to be the cluster's fault, not the
//!   input's, so the input it was running runs again elsewhere, up to
//!   [`PoolBuilder::allowed_failures`] times (3 by default), then fails
//!   with [`ErrorKind::WorkerLost`]; the others it held run elsewhere.
//! - An input that runs past [`PoolBuilder::task_timeout`]: its worker is
//!   killed and replaced, the input gets [`ErrorKind::Timeout`].
//! - An input given up on while it runs: [`AsyncResult::cancel_and_stop`],
//!   or an awaited [`AsyncResult`] dropped unfinished (a
//!   `tokio::time::timeout`, the losing branch of a `select!`), kills and
//!   replaces its worker, freeing it for the next request; the other
//!   inputs that worker held run again. [`PoolBuilder::stop_on_drop`] and
//!   [`AsyncResult::stop_on_drop`] make a dropped handle only cancel.
//! - The parent killed: every worker gets SIGKILL from the kernel
//!   (`PR_SET_PDEATHSIG`) and also sees end of file on its connection.
//! - Ctrl-C: see [`PoolBuilder::handle_interrupts`]. Workers ignore SIGINT.
//! - A worker whose results do not answer the chunks it holds (a remote
//!   peer with the key can send anything): its connection is ended, with a
//!   WARN event saying what it sent, and what it held runs elsewhere.
//!   Such a message is checked before anything is made of its items, so
//!   it costs about its own size. So is a worker that says it is ready a
//!   second time. The pid a remote worker gives is only a claim:
//!   [`Pool::remote_workers`] shows it, [`Pool::worker_pids`] never.
//! - A program that declared [`workers_start_in_main!`] and forgot
//!   [`init`]: [`PoolBuilder::build`] fails with [`ErrorKind::Startup`]
//!   saying so. A worker never starts a process pool itself: a pool
//!   built in a task runs its calls in that worker, serially and in
//!   order ([`Pool::is_inline`], [`Nested`]).
//!
//! # Memory
//!
//! - [`PoolBuilder::max_worker_memory`], a soft budget: a worker whose
//!   resident memory is over it after an input retires once its results
//!   are sent, giving back what it has not started, and a fresh one
//!   replaces it. No input fails, and a worker stays under the budget plus
//!   one input's growth.
//! - [`PoolBuilder::hard_worker_memory`], a hard limit the kernel enforces
//!   (`RLIMIT_DATA`, set in the worker): an input whose allocation crosses
//!   it fails alone with [`ErrorKind::OutOfMemory`]. Rust aborts on a
//!   failed allocation after printing `memory allocation of N bytes
//!   failed`; the pool recognises that line on the worker's stderr, which
//!   it forwards, together with the SIGABRT.
//! - A worker the kernel's OOM killer ends (a SIGKILL the pool did not
//!   send, while a count of OOM kills rose: the worker's memory cgroup's,
//!   v2 or v1, or the system's) is reported as [`ErrorKind::OutOfMemory`],
//!   not as a bare SIGKILL; where no count is readable the error says the
//!   two cannot be told apart.
//!
//! Remote workers apply both limits to themselves (they travel in the
//! setup message).
//!
//! # Per-worker state
//!
//! [`WorkerState`]: a value each worker builds once (lazily, or from the
//! initializer's input), lends to its tasks as `&mut T` through
//! `T::with(|value| ..)`, and drops when it retires, with no `static` of
//! the user's own.
//!
//! # Tracing
//!
//! Everything is at DEBUG level, through [`tracing`](https://docs.rs/tracing),
//! except WARN events for faults the pool deals with on its own (a worker
//! that sent results for work it was not given, a replacement that failed
//! to start, ...).
//!
//! In the pool's process:
//! - a `worker` span (fields `id`, and `pid` for a local worker), entered
//!   while the pool's I/O thread reads, writes or ends that worker;
//! - events `worker ready` (`worker`, `pid`) and `remote worker ready`
//!   (`worker`, `peer`, `claimed_pid`: what the peer said, unverified);
//! - events `chunk sent` and `chunk done` (`worker`, `chunk`, `task`, `items`);
//! - a `task` span per input (`task`, `index`, `worker`, `chunk`), open from
//!   when its chunk is handed to a worker until its result is handled
//!   (entered while it is handed over), recording `outcome`: `ok`, the
//!   [`ErrorKind`]'s name (`TaskFailed`, `Panicked`, `WorkerDied`,
//!   `Timeout`, `Interrupted`, `Closed`, ...), or `requeued` when its worker
//!   ended before answering and the input goes back to the queue (a rerun
//!   gets a new span); on failure also `error`, the error's message.
//!
//! In a worker process:
//! - a `worker` span (`id`) around the worker loop;
//! - a `task` span (`task`, `index`, `chunk`) entered around each input's run.
//!
//! A worker has no subscriber unless one is installed in it: by the
//! initializer, or in `main` before [`init`] in a program that declares
//! [`workers_start_in_main!`] (as `worker-bin`'s programs do). What it writes
//! to stderr reaches the pool's stderr, each line tagged `[worker N] `.
//!
//! When DEBUG is disabled this costs one `tracing::enabled!` check per chunk
//! in the pool and per chunk in the worker, and no span is made. A worker
//! asks for the input indices (8 bytes per input on the wire) only if DEBUG
//! was enabled in it when it became ready.
//!
//! Platform: Linux.

#![warn(missing_docs)]
// Platform code alone may be `unsafe`: see `sys`.
#![deny(unsafe_code)]

mod error;
// The one module outside `sys` allowed `unsafe`: calling a function by
// its offset into the image is sound only under this module's own
// invariants (private `FnInput` fields, offsets checked against the
// executable segment, workers of the very image), which the `unsafe`
// stays beside; see its docs.
#[allow(unsafe_code)]
mod fn_task;
mod inbox;
mod parent;
mod role;
mod spin;
mod state;
#[allow(unsafe_code)]
mod sys;
mod task;
mod wire;
mod worker;

pub mod builtin;

pub use crate::error::{
    Error, ErrorKind, PanicLocation, Result, WorkerInfo, MAX_PANIC_FILE, MAX_REMOTE_BACKTRACE,
};
pub use crate::fn_task::{FnInput, FnInputs, FnTask};
pub use crate::parent::{
    as_completed, wait_any, AsCompleted, AsyncResult, FnImap, Imap, ImapUnordered, KeepFailures,
    MapWith, Nested, NoProgress, Pool, PoolBuilder, Progress, RemoteWorker, SlurmWaiting,
    SlurmWorkers, StopAtFailure, DEFAULT_ALLOWED_FAILURES, DEFAULT_JOURNAL_SYNC,
    DEFAULT_SLURM_COMMAND_TIMEOUT, DEFAULT_SLURM_RESUBMITS, DEFAULT_SLURM_START_TIMEOUT,
    DEFAULT_SLURM_WAIT_REPORT_EVERY, DEFAULT_STARTUP_TIMEOUT,
};
pub use crate::state::{BuildError, WorkerState};
pub use crate::task::{registered_tasks, Task, TaskEntry, TaskFailure};
pub use crate::worker::{connect_worker, init, AUTHKEY_ENV, CONNECT_ENV};
/// Many remote workers in one process, for scale tests: see `join_pool`.
#[doc(hidden)]
pub use crate::worker::{join_pool, serve_joined};

/// What [`task!`] expands to refers to these; not for direct use.
#[doc(hidden)]
pub mod __private {
    pub use crate::task::{run_encoded, type_names, TaskEntry, TaskResult, TASKS};
    pub use crate::worker::link_task;
    pub use crate::worker::WORKERS_START_IN_MAIN;
    pub use linkme;
    pub use pool_macros::task_impl;
}
