//! Pools built inside a worker: their calls run in the worker itself.
//!
//! A task that maps another task over a pool of its own is a nested call.
//! Rayon runs it on the same threads, joblib runs it in the worker,
//! serially; so does this pool, by default ([`Nested::Inline`]): the pool
//! built inside a worker starts no process, and each job its calls submit
//! runs right where it is submitted, on the calling thread, input after
//! input, through the same registry and encoding a worker uses. Everything
//! above the submission (chunking, ordering, progress, errors per input,
//! `AsyncResult`s) is the ordinary pool's, unchanged: only
//! [`Commands::send`](super::command::Commands::send) turns here instead of
//! to a dispatcher.

use std::sync::Arc;

use super::config::{Config, Nested};
use super::job::Job;
use super::sink::{Payload, Sink};
use crate::error::{Error, ErrorKind, Result};
use crate::task::{self, FailureKind, TaskFailure};

/// Checks that a pool configured with `config` can run inline here, and
/// runs its initializer, as a worker would before its first input.
pub(crate) fn prepare(config: &Config) -> Result<()> {
    if config.nested == Nested::Fail {
        return Err(Error::new(
            ErrorKind::Startup,
            "a pool cannot be started inside a pool worker: it was built with \
             PoolBuilder::nested(Nested::Fail) (Nested::Inline runs its calls in the worker)",
        ));
    }
    if config.listen.is_some() {
        return Err(Error::new(
            ErrorKind::Startup,
            "a pool built inside a pool worker runs its calls in the worker and cannot \
             take remote workers (listen or slurm)",
        ));
    }
    if config.task_timeout.is_some() {
        tracing::debug!("a pool inside a worker runs inline: its task_timeout is not enforced");
    }
    if let Some((name, input)) = &config.initializer {
        let mut discarded_output = Vec::new();
        run_by_name(name, input, &mut discarded_output).map_err(|failure| {
            Error::new(
                ErrorKind::Startup,
                format!(
                    "the initializer failed in the worker running this pool inline: {}",
                    failure.message
                ),
            )
            .with_task(name)
        })?;
    }
    Ok(())
}

/// Runs `job` now, on the calling thread, input after input: what an
/// inline pool does with a job it is sent.
pub(crate) fn run_job(mut job: Job) {
    for item in std::mem::take(&mut job.items) {
        // A caller that gave up (a map's first failure, a dropped imap)
        // wants the rest dropped, as the dispatcher would.
        if job.sink.is_cancelled() {
            return;
        }
        let mut output = Vec::new();
        let outcome = match run_by_name(job.task, item.input(), &mut output) {
            Ok(()) => {
                let range = 0..output.len();
                Ok(Payload::new(Arc::new(output), range))
            }
            Err(failure) => Err(failure.into_error(job.task, item.index)),
        };
        job.sink.deliver_now(item.index, outcome);
        if let Sink::Channel(stream) = &job.sink {
            stream.give_back(item.into_buffer());
        }
    }
}

/// Runs a registered task on an encoded input, as a worker does. The
/// caller's program refers to the task, so it is linked: an unknown name
/// is a bug, reported as a worker would.
fn run_by_name(name: &str, input: &[u8], output: &mut Vec<u8>) -> Result<(), TaskFailure> {
    // A function sent by pointer by this very process: whatever program
    // this worker is, the pointers are its own.
    if name == crate::fn_task::NAME {
        return crate::fn_task::run_here(input, output);
    }
    match task::find(name) {
        Some(run) => run(input, output),
        None => Err(TaskFailure::new(
            FailureKind::UnknownTask,
            format!("this program does not define a task named {name:?}"),
        )),
    }
}
