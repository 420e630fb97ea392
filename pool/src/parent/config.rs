//! Everything a pool was configured with, as the dispatcher reads it.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::identity::WorkerTasks;
use super::launch::slurm::SlurmWorkers;
use crate::sys;
use crate::wire::MemoryLimits;

/// How long a new worker may take to report that it is ready.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times an input whose remote worker was lost is run again by
/// default ([`PoolBuilder::allowed_failures`](crate::PoolBuilder::allowed_failures)),
/// as Dask's `allowed-failures`.
pub const DEFAULT_ALLOWED_FAILURES: u32 = 3;

/// What building a pool inside a pool worker does
/// ([`PoolBuilder::nested`](crate::PoolBuilder::nested)).
///
/// # Examples
///
/// ```
/// use pool::{Nested, Pool};
///
/// pool::task! { fn square(x: u64) -> u64 { x * x } }
///
/// pool::task! {
///     /// Sums the squares below `n`, with a pool of its own: inside a
///     /// worker, that pool runs them here, serially.
///     fn sum_of_squares(n: u64) -> Result<u64, pool::Error> {
///         let inner = Pool::new(4)?;
///         assert!(inner.is_inline() && inner.worker_pids().is_empty());
///         Ok(inner.map(square, 0..n)?.into_iter().sum())
///     }
/// }
///
/// pool::task! {
///     fn refuse_nesting(_x: ()) -> Result<(), pool::Error> {
///         Pool::builder().nested(Nested::Fail).build().map(drop)
///     }
/// }
///
/// fn main() -> Result<(), pool::Error> {
///     let pool = Pool::new(2)?;
///     assert!(!pool.is_inline());
///     assert_eq!(pool.map(sum_of_squares, [3, 4])?, [5, 14]);
///     let err = pool.apply(refuse_nesting, ()).unwrap_err();
///     assert!(err.message().contains("inside a pool worker"), "{err}");
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Nested {
    /// Run the pool's calls in the worker, serially, in input order,
    /// starting no process (joblib's behaviour for nested calls). The
    /// default.
    #[default]
    Inline,
    /// Fail [`build`](crate::PoolBuilder::build) with
    /// [`ErrorKind::Startup`](crate::ErrorKind::Startup): for code that must not run serially by
    /// surprise.
    Fail,
}

/// Made by [`PoolBuilder`](crate::PoolBuilder). Its `Debug` (which the
/// builder's shows) leaves out the authkey.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) processes: usize,
    pub(crate) program: Option<PathBuf>,
    pub(crate) args: Vec<OsString>,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) initializer: Option<(&'static str, Vec<u8>)>,
    pub(crate) max_tasks_per_child: Option<u64>,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) retries: u32,
    /// How many times an input is run again after losing its remote worker.
    pub(crate) allowed_failures: u32,
    pub(crate) startup_timeout: Duration,
    pub(crate) listen: Option<(String, Vec<u8>)>,
    /// Workers to submit to Slurm, which join through `listen`.
    pub(crate) slurm: Option<SlurmWorkers>,
    pub(crate) handle_interrupts: bool,
    /// Whether an awaited `AsyncResult` dropped unfinished stops its
    /// running input (the default for each handle; see
    /// `AsyncResult::stop_on_drop`).
    pub(crate) stop_on_drop: bool,
    /// The largest message between pool and worker, either way.
    pub(crate) max_message_size: u64,
    /// The soft budget and hard limit each worker applies to itself.
    pub(crate) memory: MemoryLimits,
    /// What building the pool inside a worker does.
    pub(crate) nested: Nested,
    /// How long each of the pool's threads, its workers and a caller
    /// waiting on `apply` check for their next message before they sleep
    /// (`PoolBuilder::spin`); zero by default.
    pub(crate) spin: Duration,
    /// The worker program's task table, once a worker sent it: a pool's
    /// own (`pool::start` makes a fresh one), shared with its calls.
    pub(crate) worker_tasks: Arc<WorkerTasks>,
}

impl Config {
    /// Why a pool of this configuration may not send functions by
    /// pointer, if it may not: only a worker running this very image can
    /// follow them.
    pub(super) fn fn_refusal(&self) -> Option<String> {
        if let Some(program) = &self.program {
            Some(format!(
                "its workers run the worker program {}, not this program's image",
                program.display()
            ))
        } else if self.listen.is_some() || self.slurm.is_some() {
            Some("it takes remote workers, which need not run this program's image".into())
        } else if !sys::workers_run_own_image() {
            Some(
                "/proc/self/exe is missing, so its workers start from this program's path, \
                 which may hold another build by then"
                    .into(),
            )
        } else if sys::build_id().is_empty() {
            Some("this program has no build id, by which a worker could check its image".into())
        } else {
            None
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            processes: std::thread::available_parallelism().map_or(1, |n| n.get()),
            program: None,
            args: Vec::new(),
            env: Vec::new(),
            initializer: None,
            max_tasks_per_child: None,
            task_timeout: None,
            retries: 0,
            allowed_failures: DEFAULT_ALLOWED_FAILURES,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            listen: None,
            slurm: None,
            handle_interrupts: true,
            stop_on_drop: true,
            max_message_size: connection::DEFAULT_MAX_MESSAGE_SIZE,
            memory: MemoryLimits::default(),
            nested: Nested::default(),
            spin: Duration::ZERO,
            worker_tasks: Arc::default(),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key must not reach a log through a `{:?}` of the builder.
        let listen = self
            .listen
            .as_ref()
            .map(|(address, _)| format!("{address} (authkey hidden)"));
        f.debug_struct("Config")
            .field("processes", &self.processes)
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &self.env)
            .field(
                "initializer",
                &self.initializer.as_ref().map(|(name, _)| name),
            )
            .field("max_tasks_per_child", &self.max_tasks_per_child)
            .field("task_timeout", &self.task_timeout)
            .field("retries", &self.retries)
            .field("allowed_failures", &self.allowed_failures)
            .field("startup_timeout", &self.startup_timeout)
            .field("listen", &listen)
            .field("slurm", &self.slurm)
            .field("handle_interrupts", &self.handle_interrupts)
            .field("stop_on_drop", &self.stop_on_drop)
            .field("max_message_size", &self.max_message_size)
            .field("memory", &self.memory)
            .field("nested", &self.nested)
            .field("spin", &self.spin)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_builders_debug_output_shows_no_authkey() {
        let key = b"sekrit-key".to_vec();
        let builder = crate::Pool::builder().listen("tcp:127.0.0.1:0", key.clone());
        let shown = format!("{builder:?}");
        assert!(shown.contains("tcp:127.0.0.1:0"), "{shown}");
        assert!(!shown.contains("sekrit"), "{shown}");
        // A Vec<u8> shows as its numbers.
        let numbers = format!("{:?}", key);
        assert!(!shown.contains(&numbers[1..numbers.len() - 1]), "{shown}");
    }
}
