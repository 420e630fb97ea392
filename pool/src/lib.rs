//! A process pool in the spirit of Python's `multiprocessing.Pool`: run
//! named functions ("tasks") over many inputs in worker processes, with
//! typed inputs and outputs, clear errors for every fault, and no hangs.
//!
//! # Example
//!
//! ```
//! pool::task! {
//!     /// Sums the squares of a range.
//!     pub fn sum_squares((start, end): (u64, u64)) -> u64 {
//!         (start..end).map(|n| n * n).sum()
//!     }
//! }
//!
//! fn main() -> Result<(), pool::Error> {
//!     // First thing in main: in a worker this runs the worker loop and
//!     // never returns; anywhere else it returns at once.
//!     pool::init();
//!
//!     let pool = pool::Pool::new(2)?;
//!     let ranges: Vec<(u64, u64)> = (0..8).map(|i| (i * 100, (i + 1) * 100)).collect();
//!     let sums = pool.map(sum_squares, ranges)?;
//!     assert_eq!(sums.iter().sum::<u64>(), (0..800u64).map(|n| n * n).sum());
//!     Ok(())
//! }
//! ```
//!
//! # How it works
//!
//! By default the pool re-executes the current program
//! ([`std::env::current_exe`]) once per worker, marking each copy as a
//! worker through environment variables and an inherited connection. The
//! copy's call to [`init`] recognises this and becomes a worker. Tasks are
//! found by name: [`task!`] registers each task, so parent and worker agree
//! on them as long as both are built from the same code. A separate worker
//! program is possible too ([`PoolBuilder::worker_program`], the
//! `pool-worker` binary of the `worker-bin` crate), and so are workers on
//! other machines ([`PoolBuilder::listen`], [`connect_worker`]).
//!
//! The source tree follows the process boundary: `parent/` runs in the
//! pool's process, `worker/` in worker processes, and `wire.rs` is the
//! protocol between them.
//!
//! Tasks travel in batches: one message carries many tasks to a worker and
//! one message carries many results back, so that small tasks cost a few
//! microseconds each rather than a system call each. Inputs can also be
//! grouped into chunks explicitly ([`Pool::map_chunked`], [`Imap::chunksize`]).
//!
//! # Completion order and progress
//!
//! [`as_completed`] hands back [`AsyncResult`]s as their results arrive
//! (also as a `Stream`), and [`wait_any`] waits for the first of several;
//! neither needs a thread or a polling loop.
//! [`Pool::map_with_progress`] and [`Pool::map_results_with_progress`]
//! report a [`Progress`] (inputs done, failed, in all) to a callback as
//! results arrive; [`Pool::map_results`] keeps every input's result, each
//! failure at its index. The `indicatif` feature adds
//! [`Progress::update_bar`](Progress) for a terminal progress bar.
//!
//! # Faults
//!
//! - A task that returns `Err` or panics: that input gets
//!   [`ErrorKind::TaskFailed`] or [`ErrorKind::Panicked`] with the message;
//!   the worker goes on. Panic messages are not printed by the worker.
//! - A worker that dies (a signal, `abort`, `exit`, out of memory): the
//!   input it was running gets [`ErrorKind::WorkerDied`] naming the exit
//!   status or signal (or runs again, up to [`PoolBuilder::retries`], 0 by
//!   default); the other inputs it held run elsewhere; a replacement starts.
//!   A local worker records in shared memory which input it starts, so the
//!   pool knows exactly which one was running.
//! - An input that runs past [`PoolBuilder::task_timeout`]: its worker is
//!   killed and replaced, the input gets [`ErrorKind::Timeout`].
//! - The parent killed: every worker gets SIGKILL from the kernel
//!   (`PR_SET_PDEATHSIG`) and also sees end of file on its connection.
//! - Ctrl-C: see [`PoolBuilder::handle_interrupts`]. Workers ignore SIGINT.
//! - A program that forgot [`init`]: [`PoolBuilder::build`] fails with
//!   [`ErrorKind::Startup`] saying so. A worker never starts a pool itself.
//!
//! # Tracing
//!
//! Everything is at DEBUG level, through [`tracing`](https://docs.rs/tracing).
//!
//! In the pool's process:
//! - a `worker` span (fields `id`, `pid`) around each worker's reader thread;
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
//! A worker has no subscriber unless one is installed in it: in a worker
//! program of your own before it connects or calls [`init`] (which
//! returns at once outside a worker), or by the initializer. What it writes
//! to stderr reaches the pool's stderr, each line tagged `[worker N] `.
//!
//! When DEBUG is disabled this costs one `tracing::enabled!` check per chunk
//! in the pool and per chunk in the worker, and no span is made. A worker
//! asks for the input indices (8 bytes per input on the wire) only if DEBUG
//! was enabled in it when it became ready.
//!
//! Platform: Linux.

#![warn(missing_docs)]

mod error;
mod parent;
mod sys;
mod task;
mod wire;
mod worker;

pub mod builtin;

pub use crate::error::{Error, ErrorKind, Result, WorkerInfo};
pub use crate::parent::{
    as_completed, wait_any, AsCompleted, AsyncResult, Imap, ImapUnordered, Pool, PoolBuilder,
    Progress, DEFAULT_STARTUP_TIMEOUT,
};
pub use crate::task::{registered_tasks, Task, TaskEntry, TaskFailure};
pub use crate::worker::{connect_worker, init, AUTHKEY_ENV};

/// What [`task!`] expands to refers to these; not for direct use.
#[doc(hidden)]
pub mod __private {
    pub use crate::task::{run_encoded, TaskEntry};
    pub use inventory;
}
