//! Everything a pool was configured with, as the dispatcher reads it.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use super::launch::slurm::SlurmWorkers;

/// How long a new worker may take to report that it is ready.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Made by [`PoolBuilder`](crate::PoolBuilder).
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) processes: usize,
    pub(crate) program: Option<PathBuf>,
    pub(crate) args: Vec<OsString>,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) initializer: Option<(&'static str, Vec<u8>)>,
    pub(crate) max_tasks_per_child: Option<u64>,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) retries: u32,
    pub(crate) startup_timeout: Duration,
    pub(crate) listen: Option<(String, Vec<u8>)>,
    /// Workers to submit to Slurm, which join through `listen`.
    pub(crate) slurm: Option<SlurmWorkers>,
    pub(crate) handle_interrupts: bool,
    /// The largest message between pool and worker, either way.
    pub(crate) max_message_size: u64,
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
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            listen: None,
            slurm: None,
            handle_interrupts: true,
            max_message_size: connection::DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}
