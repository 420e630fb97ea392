//! [`PoolBuilder`]: how a pool is configured and started.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use super::config::Config;
use super::config::Nested;
use super::launch::{self, slurm::SlurmWorkers};
use super::pool::Pool;
use crate::error::{Error, ErrorKind, Result};
use crate::spin::MAX_SPIN;
use crate::task::Task;
use crate::wire::MIN_HARD_MEMORY;

/// Configures and starts a [`Pool`]; made by [`Pool::builder`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// pool::task! { fn inc(x: u32) -> u32 { x + 1 } }
///
/// fn main() -> Result<(), pool::Error> {
///     let pool = pool::Pool::builder()
///         .processes(2)
///         .max_tasks_per_child(1000)
///         .task_timeout(Duration::from_secs(60))
///         .env("RUST_LOG", "info")
///         .build()?;
///     assert_eq!(pool.apply(inc, 41)?, 42);
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct PoolBuilder {
    config: Config,
    error: Option<Error>,
}

/// How a pool is made: the builder's way in, and its shortcut.
impl Pool {
    /// Options for a new pool.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    /// A pool of `processes` workers with default options.
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }
}

impl PoolBuilder {
    pub(crate) fn new() -> PoolBuilder {
        PoolBuilder {
            config: Config::default(),
            error: None,
        }
    }

    /// How many local worker processes to run (default: the available
    /// parallelism). Zero is allowed with [`listen`](PoolBuilder::listen),
    /// for a pool of remote workers only: its calls wait, without a time
    /// limit, until a remote worker joins and runs their work (bound the
    /// wait with [`AsyncResult::get`](crate::AsyncResult::get), or end it
    /// with Ctrl-C, which fails them with [`ErrorKind::Interrupted`]).
    pub fn processes(mut self, processes: usize) -> PoolBuilder {
        self.config.processes = processes;
        self
    }

    /// A task each worker runs once, with `input`, before any other: to
    /// open files, warm caches, or fill a per-process `static`. Its output
    /// is discarded. If it fails, [`build`](PoolBuilder::build) (or the
    /// call waiting for a replacement worker) fails with
    /// [`ErrorKind::Startup`] carrying the initializer's error.
    pub fn initializer<T: Task>(mut self, task: T, input: T::Input) -> PoolBuilder {
        let _ = task;
        match connection::encode(&input) {
            Ok(bytes) => self.config.initializer = Some((T::NAME, bytes)),
            Err(err) => {
                self.error = Some(
                    Error::from_connection(err, "encode the initializer's input")
                        .with_task(T::NAME),
                )
            }
        }
        self
    }

    /// Replaces a worker with a fresh process once it has been given this
    /// many inputs (a chunk is never split, so it may run a few more), to
    /// bound what a leaky task can accumulate. Default: never.
    pub fn max_tasks_per_child(mut self, tasks: u64) -> PoolBuilder {
        self.config.max_tasks_per_child = Some(tasks.max(1));
        self
    }

    /// A soft memory budget per worker, in bytes: a worker whose resident
    /// memory (RSS) is over it after an input retires and is replaced by a
    /// fresh process, as after [`max_tasks_per_child`](Self::max_tasks_per_child)
    /// but when it is needed. The input that crossed the budget succeeds;
    /// the inputs the worker held and had not started run elsewhere, so
    /// no input fails for it and a worker's resident memory stays under
    /// the budget plus what one input adds (plus, for inputs shorter than
    /// 100 µs, what those of the last 100 µs added: a worker reads its
    /// resident size, a 2 µs system call, at most that often). A worker
    /// measures itself (`/proc/self/statm`), so remote workers apply it
    /// too. Default: none.
    ///
    /// ```
    /// pool::task! {
    ///     /// Leaks a mebibyte per input, as a careless cache would.
    ///     fn leaky(n: u64) -> u64 {
    ///         std::mem::forget(vec![1u8; 1 << 20]);
    ///         n
    ///     }
    /// }
    ///
    /// let pool = pool::Pool::builder()
    ///     .processes(1)
    ///     .max_worker_memory(64 << 20)
    ///     .build()?;
    /// assert_eq!(pool.map(leaky, 0..200)?.len(), 200);
    /// # Ok::<(), pool::Error>(())
    /// ```
    pub fn max_worker_memory(mut self, bytes: u64) -> PoolBuilder {
        self.config.memory.budget = Some(bytes.max(1));
        self
    }

    /// A hard memory limit per worker, in bytes, that the kernel enforces:
    /// the worker's data (heap and private mappings: `RLIMIT_DATA`, set in
    /// the worker before its initializer runs) cannot grow past it. An
    /// allocation that would cross it fails, which in Rust ends the
    /// worker (the standard library prints `memory allocation of N bytes
    /// failed` and aborts); the input it was running fails alone with
    /// [`ErrorKind::OutOfMemory`] naming the limit, the others it held run
    /// elsewhere, and a replacement starts. Set it well above
    /// [`max_worker_memory`](Self::max_worker_memory), which retires
    /// workers before they come near it. Default: none.
    ///
    /// For a remote worker the limit applies just as well, but its death
    /// is seen only as a lost connection: its input fails with
    /// [`ErrorKind::WorkerDied`]. A limit under 16 MiB, in which a worker
    /// could not even start, makes [`build`](Self::build) fail with
    /// [`ErrorKind::Startup`].
    pub fn hard_worker_memory(mut self, bytes: u64) -> PoolBuilder {
        if bytes < MIN_HARD_MEMORY {
            self.error = Some(Error::new(
                ErrorKind::Startup,
                format!(
                    "a hard memory limit of {bytes} bytes is below the {MIN_HARD_MEMORY} a \
                     worker needs to run"
                ),
            ));
        }
        self.config.memory.hard = Some(bytes);
        self
    }

    /// Runs `program` as the worker instead of re-executing this program;
    /// it must call [`pool::init()`](crate::init) or
    /// `worker_bin::main()` (the `worker-bin` crate) and link the tasks it
    /// will be asked to run (`pool-worker` from the `worker-bin` crate is
    /// such a program).
    ///
    /// Its workers run whatever the file holds when each starts, so the
    /// pool checks them: each tells, when it is ready, every task's name,
    /// input and output types, declared version (`#[version = N]` in
    /// [`task!`](crate::task!)) and a hash of its code as written there.
    /// If a task this program also has differs in any of them, the worker
    /// is refused and `build()` fails with
    /// [`ErrorKind::TaskMismatch`], naming
    /// the task and which side has what (a replacement refused while the
    /// pool runs counts as a failed start: three in a row fail the pool's
    /// calls with that error). Tasks only the worker program has are not
    /// compared. Without `worker_program`, workers run the very image of
    /// this process (`/proc/self/exe`), even once a rebuild has replaced
    /// its file.
    ///
    /// ```no_run
    /// pool::task! { pub fn square(x: u64) -> u64 { x * x } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::builder()
    ///         .processes(2)
    ///         .worker_program("target/release/pool-worker")
    ///         .build()?;
    ///     match pool.map(square, 0..10) {
    ///         Err(err) if err.kind() == pool::ErrorKind::TaskMismatch => {
    ///             eprintln!("rebuild the worker program: {err}");
    ///         }
    ///         other => println!("{:?}", other?),
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn worker_program(mut self, program: impl Into<PathBuf>) -> PoolBuilder {
        self.config.program = Some(program.into());
        self
    }

    /// Adds a command-line argument for worker processes (none by default).
    pub fn worker_arg(mut self, arg: impl Into<OsString>) -> PoolBuilder {
        self.config.args.push(arg.into());
        self
    }

    /// Sets an environment variable for worker processes, on top of this
    /// process's environment, which they inherit.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> PoolBuilder {
        self.config.env.push((key.into(), value.into()));
        self
    }

    /// Fails an input that runs longer than `timeout` with
    /// [`ErrorKind::Timeout`], killing its worker (SIGKILL) and starting a
    /// replacement; the other inputs that worker held run elsewhere. The
    /// clock starts when the worker starts that input, as the pool sees it
    /// (within about a tenth of the timeout). Default: no timeout.
    pub fn task_timeout(mut self, timeout: Duration) -> PoolBuilder {
        self.config.task_timeout = Some(timeout);
        self
    }

    /// How many times an input whose local worker died while running it
    /// is run again before it fails with [`ErrorKind::WorkerDied`] (a
    /// remote worker lost is counted by
    /// [`allowed_failures`](PoolBuilder::allowed_failures) instead). Default 0: an
    /// input that killed its worker (abort, out of memory, a fatal signal)
    /// would most likely kill the next one too. The other inputs a dead
    /// worker held are always run again, without counting as a retry.
    pub fn retries(mut self, retries: u32) -> PoolBuilder {
        self.config.retries = retries;
        self
    }

    /// How many times an input whose remote worker was lost while running
    /// it is run again elsewhere before it fails with
    /// [`ErrorKind::WorkerLost`] (default
    /// [`DEFAULT_ALLOWED_FAILURES`](crate::DEFAULT_ALLOWED_FAILURES), 3,
    /// as Dask's `allowed-failures`). A remote worker is lost when its
    /// connection ends or falls silent (TCP keepalive), or its node or
    /// Slurm job ends: most often the cluster's doing rather than the
    /// input's, so unlike [`retries`](PoolBuilder::retries) (which counts
    /// the deaths of local workers, whose cause the pool sees), a loss
    /// runs the input again by default. An input that keeps losing its
    /// workers (one that crashes every host it runs on) fails after
    /// `allowed_failures + 1` of them. The other inputs a lost worker held
    /// always run again, without counting.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = pool::Pool::builder()
    ///     .processes(0)
    ///     .listen("tcp:127.0.0.1:0", b"key".to_vec())
    ///     .allowed_failures(5)
    ///     .build()?;
    /// # Ok::<(), pool::Error>(())
    /// ```
    pub fn allowed_failures(mut self, failures: u32) -> PoolBuilder {
        self.config.allowed_failures = failures;
        self
    }

    /// How long a new worker may take to start and report that it is
    /// ready (default [`DEFAULT_STARTUP_TIMEOUT`](crate::DEFAULT_STARTUP_TIMEOUT)); past that it is killed.
    /// While [`build`](PoolBuilder::build) starts the pool, that fails the
    /// build with [`ErrorKind::Startup`]; a late replacement worker is
    /// replaced in turn, and only after three such failures in a row does
    /// the pool give up, failing its calls with [`ErrorKind::Startup`].
    pub fn startup_timeout(mut self, timeout: Duration) -> PoolBuilder {
        self.config.startup_timeout = timeout;
        self
    }

    /// Also accepts remote workers (`pool-worker --connect ADDRESS`) on
    /// `address`, such as `tcp:0.0.0.0:7000`, authenticating them with
    /// `authkey`. See [`Pool::listen_address`] for the bound address, and
    /// the crate README for launching workers with ssh, Slurm or Kubernetes.
    ///
    /// Anyone who can reach the address can knock, and the pool is built
    /// for that:
    ///
    /// - A peer whose handshake fails (a wrong key, silence for 5 s, a
    ///   reset, garbage) costs only itself: the listener goes on to the
    ///   next at once. The log gets one WARN line at the first failure,
    ///   then one every 10 s at most, counting the failures by kind.
    /// - [`build`](PoolBuilder::build) raises the soft descriptor limit
    ///   (`RLIMIT_NOFILE`) to the hard one, as servers do; local workers
    ///   get the old soft limit back. It then keeps a reserve of
    ///   descriptors no crowd at the door can take: 10 per local worker
    ///   (to replace it), room for 64 remote workers (2 each) and 64 for
    ///   the rest of the program. Handshakes in progress are capped at
    ///   half of what is left once the reserve and the descriptors already
    ///   open are set aside (between 16 and 8,192: about 380 at a limit of
    ///   1024 with two local workers); at the cap a new peer takes the
    ///   place of the oldest pending handshake.
    /// - If descriptors still run short (the program's own files, say),
    ///   replacing a local worker or adopting a remote one waits and tries
    ///   again, backing off up to a second, rather than failing the pool.
    pub fn listen(
        mut self,
        address: impl Into<String>,
        authkey: impl Into<Vec<u8>>,
    ) -> PoolBuilder {
        self.config.listen = Some((address.into(), authkey.into()));
        self
    }

    /// Also submits workers to Slurm, as one batch job the pool follows,
    /// replaces (boundedly) and cancels with it: see [`SlurmWorkers`] for
    /// the details. The workers join over TCP: on the pool's
    /// [`listen`](PoolBuilder::listen) address and key if given, else on
    /// every interface at a port the system chooses, with a fresh random
    /// key. With `.processes(0)`, [`build`](PoolBuilder::build) waits for
    /// the first worker to join.
    ///
    /// ```no_run
    /// pool::task! { fn double(x: u64) -> u64 { 2 * x } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::builder()
    ///         .processes(0)
    ///         .slurm(pool::SlurmWorkers::new(16).partition("debug"))
    ///         .build()?;
    ///     assert_eq!(pool.map(double, [1, 2, 3])?, [2, 4, 6]);
    ///     eprintln!("Slurm jobs: {:?}", pool.slurm_jobs());
    ///     Ok(())
    /// }
    /// ```
    pub fn slurm(mut self, workers: SlurmWorkers) -> PoolBuilder {
        self.config.slurm = Some(workers);
        self
    }

    /// Whether the pool handles Ctrl-C (SIGINT), default `true`: the first
    /// Ctrl-C makes every unfinished pool call fail with
    /// [`ErrorKind::Interrupted`] (and exits the process the usual way if no
    /// pool call is unfinished); from then on another Ctrl-C exits at once
    /// with status 130. Turn it off to handle SIGINT yourself.
    pub fn handle_interrupts(mut self, handle: bool) -> PoolBuilder {
        self.config.handle_interrupts = handle;
        self
    }

    /// Whether a handle from [`apply_async`](crate::Pool::apply_async)
    /// that was awaited (polled as a future) and is dropped before its
    /// result came stops its input if the input is running, as
    /// [`AsyncResult::cancel_and_stop`](crate::AsyncResult::cancel_and_stop)
    /// does, by killing and replacing its worker; default `true`. With
    /// `false`, such a handle only [cancels](crate::AsyncResult::cancel):
    /// an input not started never runs, and a running one runs to its end,
    /// keeping its worker busy meanwhile. Each handle can choose otherwise
    /// with [`AsyncResult::stop_on_drop`](crate::AsyncResult::stop_on_drop).
    ///
    /// That is what `tokio::time::timeout` around an awaited handle, or
    /// the losing branch of a `select!`, does to it: the caller gave up,
    /// so by default its worker is freed for the next request rather than
    /// left busy until the abandoned input ends. Turn it off for tasks
    /// that must never be killed part way (for example, ones that write
    /// files in place).
    ///
    /// ```
    /// pool::task! { fn id(x: u8) -> u8 { x } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::builder().processes(1).stop_on_drop(false).build()?;
    ///     assert_eq!(futures_executor::block_on(pool.apply_async(id, 7))?, 7);
    ///     Ok(())
    /// }
    /// ```
    pub fn stop_on_drop(mut self, stop: bool) -> PoolBuilder {
        self.config.stop_on_drop = stop;
        self
    }

    /// The largest message between the pool and a worker, in either
    /// direction (default [`connection::DEFAULT_MAX_MESSAGE_SIZE`], 1 GiB),
    /// which bounds one task's encoded input and its encoded output.
    ///
    /// An input over the limit fails alone with
    /// [`ErrorKind::MessageTooLarge`] before it is sent; an output over it
    /// fails its input the same way, in the worker, which goes on. A chunk
    /// of inputs larger than the limit is split before it is sent. The
    /// limit is at most 4 GiB - 1 per input or output (the pool's framing
    /// holds 32-bit lengths); messages of 2 GiB and more travel with
    /// the 8-byte length header.
    ///
    /// ```
    /// pool::task! { fn len(bytes: Vec<u8>) -> usize { bytes.len() } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::builder().processes(1).max_message_size(64 * 1024).build()?;
    ///     let err = pool.apply(len, vec![0; 100_000]).unwrap_err();
    ///     assert_eq!(err.kind(), pool::ErrorKind::MessageTooLarge);
    ///     assert_eq!(pool.apply(len, vec![0; 1000])?, 1000);
    ///     Ok(())
    /// }
    /// ```
    pub fn max_message_size(mut self, bytes: u64) -> PoolBuilder {
        self.config.max_message_size = bytes;
        self
    }

    /// The low-latency mode, for request/response services on machines
    /// with cores to spare: after each message, every thread that would
    /// sleep until the next one checks for it without blocking for up to
    /// `spin` first. That is each worker (for its next batch), the pool's
    /// dispatcher and I/O threads, and a caller waiting in
    /// [`Pool::apply`] or [`AsyncResult::get`](crate::AsyncResult::get) /
    /// [`wait`](crate::AsyncResult::wait) (for its result). A message
    /// that arrives meanwhile is taken without waking a sleeping thread,
    /// which on a virtual machine costs tens of microseconds per hop.
    /// Default: zero, no spinning.
    ///
    /// **CPU cost**: each of those threads keeps a core busy for up to
    /// `spin` after every message it handles, even when nothing more
    /// comes: an idle pool spinning for 100 µs after a request burns up
    /// to `processes + 3` cores for 100 µs per request. The spinning
    /// threads yield between checks, so other runnable threads on the
    /// same cores still get them, but an otherwise idle core never
    /// sleeps in that time. Choose a spin a little longer than a task's
    /// round trip (tens of microseconds); longer only burns more.
    /// Awaited handles (`.await`) do not spin: an executor's thread is
    /// not the caller's to hold.
    ///
    /// A spin over 100 ms makes [`build`](Self::build) fail with
    /// [`ErrorKind::Startup`] (workers refuse one).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// pool::task! { fn double(x: u64) -> u64 { 2 * x } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::builder()
    ///         .processes(1)
    ///         .spin(Duration::from_micros(50))
    ///         .build()?;
    ///     assert_eq!(pool.apply(double, 21)?, 42);
    ///     Ok(())
    /// }
    /// ```
    pub fn spin(mut self, spin: Duration) -> PoolBuilder {
        if spin > MAX_SPIN {
            self.error = Some(Error::new(
                ErrorKind::Startup,
                format!("a spin of {spin:?} is above the {MAX_SPIN:?} a worker allows"),
            ));
        }
        self.config.spin = spin;
        self
    }

    /// What building this pool inside a pool worker (in a task) does:
    /// by default ([`Nested::Inline`]) the pool starts no process and runs
    /// its calls in that worker, on the calling thread, serially and in
    /// input order, as joblib runs nested calls; [`Nested::Fail`] makes
    /// [`build`](PoolBuilder::build) fail instead. See [`Nested`] and
    /// [`Pool::is_inline`] for what such a pool does with the other
    /// options.
    pub fn nested(mut self, nested: Nested) -> PoolBuilder {
        self.config.nested = nested;
        self
    }

    /// Starts the workers and waits until each one is ready (with
    /// [`slurm`](PoolBuilder::slurm) and no local processes: until the
    /// first Slurm worker joined).
    ///
    /// Fails with [`ErrorKind::Startup`] if a worker cannot be started, does
    /// not become ready within the start-up timeout, exits first, or turns
    /// out to be a program that ran its own `main` because it does not call
    /// [`pool::init()`](crate::init) first; no worker is left running.
    pub fn build(mut self) -> Result<Pool> {
        // Every program that starts a pool must carry the hook through
        // which its copies become workers before `main`.
        crate::worker::keep_linked();
        if let Some(err) = self.error {
            return Err(err);
        }
        if self.config.processes == 0 && self.config.listen.is_none() && self.config.slurm.is_none()
        {
            return Err(Error::new(
                ErrorKind::Startup,
                "a pool needs at least one process, or `listen` or `slurm` for remote workers",
            ));
        }
        if self.config.slurm.is_some() && self.config.listen.is_none() {
            self.config.listen = Some(("tcp:0.0.0.0:0".into(), launch::random_authkey()?));
        }
        super::pool::start(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spin_beyond_what_workers_allow_fails_the_build() {
        let err = Pool::builder()
            .processes(1)
            .spin(MAX_SPIN + Duration::from_nanos(1))
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Startup);
        assert!(err.message().contains("spin"), "{err}");
    }
}
