//! The parent side: what runs in the process that owns a pool.
//!
//! The [`Pool`] handle and its iterators and result handles talk to one
//! dispatcher thread per pool through [`Command`](command::Command)s. The
//! dispatcher owns the queue and a [`WorkerSlot`](worker_slot::WorkerSlot)
//! per worker; one I/O thread (`worker_io`) reads and writes every
//! worker's connection, turning what workers send into events for the
//! dispatcher (`worker_reader`) and writing what the dispatcher's own
//! sends left over (`outbox`). Local workers are
//! started by `spawn`, remote ones accepted by `remote_listener`. A pool
//! built inside a worker (a task's own pool) has no dispatcher: `inline`
//! runs its commands on the calling thread. Nothing else here runs in a
//! worker.

mod async_result;
mod builder;
mod command;
mod completion;
mod config;
mod direct_call;
mod dispatcher;
mod fn_calls;
mod identity;
mod imap;
mod in_flight;
mod inline;
mod interrupt;
mod job;
mod journal;
mod launch;
mod lease;
mod map;
mod map_with;
mod oom;
mod outbox;
mod pool;
mod progress;
mod remote_listener;
mod roster;
mod shared_conn;
mod sink;
mod spare;
mod spawn;
mod trace;
mod worker_io;
mod worker_reader;
mod worker_slot;

pub use async_result::AsyncResult;
pub use builder::PoolBuilder;
pub use completion::{as_completed, wait_any, AsCompleted};
pub use config::{Nested, DEFAULT_ALLOWED_FAILURES, DEFAULT_STARTUP_TIMEOUT};
pub use fn_calls::FnImap;
pub use imap::{Imap, ImapUnordered};
pub use journal::DEFAULT_JOURNAL_SYNC;
pub use launch::slurm::{
    SlurmWaiting, SlurmWorkers, DEFAULT_SLURM_COMMAND_TIMEOUT, DEFAULT_SLURM_RESUBMITS,
    DEFAULT_SLURM_START_TIMEOUT, DEFAULT_SLURM_WAIT_REPORT_EVERY,
};
pub use map_with::{KeepFailures, MapWith, NoProgress, StopAtFailure};
pub use pool::Pool;
pub use progress::Progress;
pub use roster::RemoteWorker;
