//! [`Pool`]: the handle a program uses to run tasks in worker processes.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::unbounded;

use super::async_result::AsyncResult;
use super::command::{Command, Commands};
use super::config::Config;
use super::direct_call::{self, Direct, Started};
use super::dispatcher::Dispatcher;
use super::imap::{Imap, ImapUnordered, Order};
use super::inline;
use super::interrupt;
use super::job::{encode_input, Job};
use super::launch::Launcher;
use super::lease::Leases;
use super::map_with::MapWith;
use super::remote_listener::{self, RemoteListener};
use super::roster::{self, RemoteWorker, SharedRoster};
use super::sink::{CancelNotice, ResultCell, Sink};
use crate::error::{Error, ErrorKind, Result};
use crate::task::Task;
use crate::worker;

/// Where the reply of a call sent straight to a worker is read.
enum Reply {
    /// By the caller, before the call returns (`apply`).
    Now,
    /// By the handle, or by the pool if the handle cannot wait for it
    /// (`apply_async`).
    Parked,
}
/// A pool of worker processes that run [`Task`]s (Python's
/// `multiprocessing.Pool`).
///
/// Every method takes `&self`, so one pool can serve several threads.
/// Dropping the pool terminates its workers and reaps them: no worker
/// outlives it, and none is left a zombie.
///
/// # Examples
///
/// ```
/// pool::task! {
///     /// Counts the primes in `start..end`.
///     pub fn count_primes((start, end): (u64, u64)) -> u64 {
///         (start..end).filter(|&n| n > 1 && (2..n).take_while(|d| d * d <= n).all(|d| n % d != 0)).count() as u64
///     }
/// }
///
/// fn main() -> Result<(), pool::Error> {
///     let pool = pool::Pool::new(2)?;
///     let ranges = vec![(0, 100), (100, 200), (200, 300)];
///     assert_eq!(pool.map(count_primes, ranges)?, [25, 21, 16]);
///     assert_eq!(pool.apply(count_primes, (0, 10))?, 4);
///     Ok(())
/// }
/// ```
pub struct Pool {
    commands: Commands,
    roster: SharedRoster,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    listener: Mutex<Option<RemoteListener>>,
    listen_address: Option<String>,
    /// How many remote workers have joined; none without a listener.
    remote_joined: Option<Arc<std::sync::atomic::AtomicUsize>>,
    /// The Slurm jobs of workers the pool submitted itself, if any.
    launcher: Mutex<Option<Launcher>>,
    /// What `apply_async`'s handles do when dropped unfinished, awaited.
    stop_on_drop: bool,
    /// How long `apply_async`'s handles check for their result before
    /// they sleep.
    spin: Duration,
    /// Why this pool's workers may not run functions sent by pointer
    /// (`map_fn`), if they may not.
    pub(super) fn_refusal: Option<String>,
    /// The idle workers `apply` may call directly; none in a pool built
    /// inside a worker.
    leases: Option<Arc<Leases>>,
    task_timeout: Option<Duration>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.processes())
            .field("worker_pids", &self.worker_pids())
            .field("remote_workers", &self.remote_workers())
            .field("closed", &self.commands.is_closed())
            .finish_non_exhaustive()
    }
}

/// Starts a pool: the dispatcher thread, its workers, and the listener for
/// remote workers. Called by [`PoolBuilder::build`](crate::PoolBuilder::build).
pub(crate) fn start(mut config: Config) -> Result<Pool> {
    if crate::role::in_worker() {
        inline::prepare(&config)?;
        return Ok(Pool {
            commands: Commands::inline(config.max_message_size),
            roster: SharedRoster::default(),
            dispatcher: Mutex::new(None),
            listener: Mutex::new(None),
            listen_address: None,
            remote_joined: None,
            launcher: Mutex::new(None),
            stop_on_drop: config.stop_on_drop,
            spin: config.spin,
            // An inline pool runs its calls in this very process.
            fn_refusal: None,
            leases: None,
            task_timeout: config.task_timeout,
        });
    }
    if worker::started_as_worker() {
        return Err(worker::refuse_to_start_pool());
    }
    // Not the builder's: pools built from clones of one builder have
    // workers of their own.
    config.worker_tasks = Arc::default();
    let config = Arc::new(config);
    let (commands, command_receiver) = unbounded();
    let (events, event_receiver) = unbounded();
    let (cancel_notice, cancellations) = CancelNotice::pair();
    let roster = SharedRoster::default();
    let live_workers = Arc::new(AtomicUsize::new(0));
    let leases = Arc::new(Leases::new(events.clone()));
    let (started_tx, started_rx) = crossbeam_channel::bounded(1);
    let dispatcher = {
        let (config, events) = (Arc::clone(&config), events.clone());
        let roster = Arc::clone(&roster);
        let live_workers = Arc::clone(&live_workers);
        let leases = Arc::clone(&leases);
        // Workers are spawned from this thread, which lives as long as the
        // pool: their parent-death signal is tied to the spawning thread.
        std::thread::Builder::new()
            .name("pool-dispatcher".into())
            .spawn(move || {
                let started = Dispatcher::new(
                    config,
                    command_receiver,
                    cancellations,
                    (events, event_receiver),
                    roster,
                    live_workers,
                    leases,
                )
                .and_then(|mut dispatcher| dispatcher.start().map(|()| dispatcher));
                match started {
                    Ok(dispatcher) => {
                        let _ = started_tx.send(Ok(()));
                        dispatcher.run();
                    }
                    Err(err) => {
                        let _ = started_tx.send(Err(err));
                    }
                }
            })
            .map_err(|err| {
                Error::new(ErrorKind::Startup, "start the dispatcher thread").with_source(err)
            })?
    };
    let started = started_rx
        .recv()
        .unwrap_or_else(|_| Err(Error::new(ErrorKind::Startup, "the dispatcher thread died")));
    if let Err(err) = started {
        let _ = dispatcher.join();
        return Err(err);
    }
    let mut pool = Pool {
        commands: Commands::new(
            commands,
            config.processes,
            live_workers,
            config.max_message_size,
            cancel_notice,
        )
        .with_worker_tasks(Arc::clone(&config.worker_tasks))
        .with_leases(Arc::clone(&leases)),
        roster,
        dispatcher: Mutex::new(Some(dispatcher)),
        listener: Mutex::new(None),
        listen_address: None,
        remote_joined: None,
        launcher: Mutex::new(None),
        stop_on_drop: config.stop_on_drop,
        spin: config.spin,
        fn_refusal: config.fn_refusal(),
        leases: Some(leases),
        task_timeout: config.task_timeout,
    };
    if let Some((address, authkey)) = &config.listen {
        let listener = remote_listener::listen(address, authkey, config.processes, events)?;
        pool.listen_address = Some(listener.address().to_string());
        pool.remote_joined = Some(listener.joined());
        let launcher = config.slurm.as_ref().map(|slurm| {
            let joined = listener.joined();
            let commands = pool.commands.sender();
            Launcher::start(
                slurm,
                &config,
                listener.address(),
                authkey,
                joined,
                Arc::clone(&pool.roster),
                commands,
            )
        });
        // Stored before the launcher's error is returned: dropping the
        // pool then stops the listener too.
        *pool.listener.lock().unwrap_or_else(|p| p.into_inner()) = Some(listener);
        *pool.launcher.lock().unwrap_or_else(|p| p.into_inner()) = launcher.transpose()?;
    }
    if config.handle_interrupts {
        interrupt::watch(pool.commands.sender())?;
    }
    tracing::debug!(processes = pool.processes(), "pool started");
    Ok(pool)
}

impl Pool {
    /// The number of local worker processes the pool keeps running; 1 for
    /// an [inline](Pool::is_inline) pool, whose one "worker" is the
    /// process it runs in (it starts none: its
    /// [`worker_pids`](Pool::worker_pids) is empty).
    pub fn processes(&self) -> usize {
        self.commands.processes()
    }

    /// Whether the pool runs its calls inline: a pool built inside a pool
    /// worker (in a task) with [`Nested::Inline`](crate::Nested), the
    /// default. Such a pool starts no process: each call runs its inputs in
    /// that worker, on the calling thread, one after the other in input
    /// order, before it returns (`apply_async` and `imap` too, the latter
    /// a window of inputs at a time), through the same encoding as a
    /// worker. Results, errors per input (`TaskFailed`, `Panicked` caught
    /// per input, with the panic's location), progress reports and
    /// `close` behave as documented; `task_timeout` cannot be enforced
    /// (nothing can stop the calling thread) and is ignored, as are the
    /// options about processes (`env`, `worker_program`,
    /// `max_tasks_per_child`, `retries`); the initializer runs once, when
    /// the pool is built. `listen` and `slurm` fail the build.
    ///
    /// ```
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(2)?;
    ///     assert!(!pool.is_inline());
    ///     Ok(())
    /// }
    /// ```
    pub fn is_inline(&self) -> bool {
        self.commands.is_inline()
    }

    /// The process ids of the local workers running now (replacements
    /// included, dead ones not): processes this pool started itself, and
    /// only those, as the pool's dispatcher last saw them. A worker that
    /// died a moment ago can still be listed for a few milliseconds (for
    /// instance right after an [`apply`](Pool::apply) that went straight
    /// to it failed with `WorkerDied`: the caller hears of the death
    /// before the dispatcher), and in a pool of more than 64 workers for
    /// as long as the roster's spacing allows (see
    /// [`remote_workers`](Pool::remote_workers)). Remote workers are listed apart, by
    /// [`remote_workers`](Pool::remote_workers), since the pid a remote
    /// worker gives is only a claim.
    ///
    /// ```
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(2)?;
    ///     assert_eq!(pool.worker_pids().len(), 2);
    ///     Ok(())
    /// }
    /// ```
    pub fn worker_pids(&self) -> Vec<u32> {
        roster::read(&self.roster, |roster| roster.local_pids.clone())
    }

    /// The remote workers connected now (those still starting included,
    /// those gone not): each one's number, the address it connected from,
    /// and the pid it claims, which nothing verifies: see [`RemoteWorker`].
    ///
    /// As the dispatcher last published it: in a pool of up to 64 live
    /// workers at every change, at once; in a larger one (thousands
    /// joining at once) at most once per eight times what publishing it
    /// took, so a worker that joined, said its pid or left a moment ago
    /// may be missing, claim nothing yet, or still be listed, for about
    /// that long (milliseconds at 10,000 workers), even after a result of
    /// its own came back.
    ///
    /// ```
    /// pool::task! { fn plus_one(x: u64) -> u64 { x + 1 } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::builder()
    ///         .processes(0)
    ///         .listen("tcp:127.0.0.1:0", b"secret".to_vec())
    ///         .build()?;
    ///     assert!(pool.remote_workers().is_empty());
    ///     let address = pool.listen_address().unwrap().to_string();
    ///     std::thread::spawn(move || pool::connect_worker(&address, b"secret"));
    ///     assert_eq!(pool.apply(plus_one, 1)?, 2);
    ///     let remote = pool.remote_workers();
    ///     assert_eq!(remote.len(), 1);
    ///     assert!(remote[0].peer.starts_with("tcp:127.0.0.1:"));
    ///     // The worker thread's claim, true here, but only a claim.
    ///     assert_eq!(remote[0].claimed_pid, Some(std::process::id()));
    ///     assert!(pool.worker_pids().is_empty());
    ///     Ok(())
    /// }
    /// ```
    pub fn remote_workers(&self) -> Vec<RemoteWorker> {
        roster::read(&self.roster, |roster| roster.remote.clone())
    }

    /// The address remote workers connect to, if the pool
    /// [listens](crate::PoolBuilder::listen): the bound one, so a port 0 shows as
    /// the port actually chosen.
    pub fn listen_address(&self) -> Option<&str> {
        self.listen_address.as_deref()
    }

    /// How many remote workers have joined the pool so far (hand-launched
    /// or [Slurm](crate::PoolBuilder::slurm) ones, replacements included,
    /// those gone since too); 0 for a pool that does not listen.
    pub fn remote_workers_joined(&self) -> usize {
        self.remote_joined.as_ref().map_or(0, |joined| {
            joined.load(std::sync::atomic::Ordering::Relaxed)
        })
    }

    /// The ids of the Slurm jobs of workers this pool
    /// [submitted](crate::PoolBuilder::slurm), the current one last; empty
    /// without Slurm workers, or once the pool has ended (and cancelled
    /// them).
    pub fn slurm_jobs(&self) -> Vec<u64> {
        self.launcher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or_else(Vec::new, Launcher::jobs)
    }

    /// Runs `task` on every input and returns the outputs in input order
    /// (Python's `map`): [`map_with`](Pool::map_with) with no options.
    /// Inputs go out in chunks of `ceil(left / (4 * workers))`, Python's
    /// rule applied to the inputs left and the workers live (local and
    /// remote) as each chunk is cut; [`MapWith::chunksize`] chooses.
    ///
    /// Inputs are taken from the iterator, encoded and sent as a bounded
    /// window has room, so the pool's memory stays flat whatever their
    /// number (see [Maps stream their inputs](crate#maps-stream-their-inputs)).
    /// An iterator whose `size_hint` is exact is never collected; any other
    /// is collected first (not encoded), for the count.
    ///
    /// The first failure to arrive is returned, with its input's index
    /// ([`Error::index`]), and the inputs not yet started are dropped; use
    /// [`MapWith::keep_failures`] (or [`imap`](Pool::imap)) to get every
    /// input's result, failures included, and [`MapWith::progress`] to
    /// follow the call.
    ///
    /// Several arguments are a tuple (Python's `starmap`):
    ///
    /// ```
    /// pool::task! { fn power((base, exp): (u64, u32)) -> u64 { base.pow(exp) } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(2)?;
    ///     assert_eq!(pool.map(power, [(2, 10), (3, 3)])?, [1024, 27]);
    ///     Ok(())
    /// }
    /// ```
    pub fn map<T: Task>(
        &self,
        task: T,
        inputs: impl IntoIterator<Item = T::Input>,
    ) -> Result<Vec<T::Output>> {
        self.map_with(task, inputs).run()
    }

    /// A map call with options, run by [`MapWith::run`]:
    /// [`chunksize`](MapWith::chunksize), [`progress`](MapWith::progress)
    /// and [`keep_failures`](MapWith::keep_failures), in any combination.
    /// With none, it is [`map`](Pool::map).
    ///
    /// ```
    /// pool::task! { fn square(x: u64) -> u64 { x * x } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(2)?;
    ///     let mut reports = 0;
    ///     let squares = pool
    ///         .map_with(square, 0..100)
    ///         .chunksize(10)
    ///         .progress(|_| reports += 1)
    ///         .run()?;
    ///     assert_eq!(squares[9], 81);
    ///     assert!(reports >= 2);
    ///     Ok(())
    /// }
    /// ```
    pub fn map_with<T: Task, I: IntoIterator<Item = T::Input>>(
        &self,
        task: T,
        inputs: I,
    ) -> MapWith<'_, T, I::IntoIter> {
        MapWith::new(&self.commands, task, inputs.into_iter())
    }

    /// Runs `task` on each input lazily, yielding each result in input
    /// order as it becomes available (Python's `imap`).
    ///
    /// At most a bounded number of inputs are taken from the iterator ahead
    /// of the results consumed, so an endless iterator works. Each item is
    /// `Ok(output)` or that input's error; after an interrupt or the pool's
    /// end, one such error is yielded and then the iterator ends. Chunks
    /// hold one input unless [`Imap::chunksize`] says otherwise. Dropping
    /// the iterator drops the inputs not yet started.
    ///
    /// ```
    /// pool::task! { fn triple(x: u64) -> u64 { 3 * x } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(2)?;
    ///     let first: Vec<u64> = pool.imap(triple, 0..).take(4).collect::<Result<_, _>>()?;
    ///     assert_eq!(first, [0, 3, 6, 9]);
    ///     Ok(())
    /// }
    /// ```
    pub fn imap<T: Task, I: IntoIterator<Item = T::Input>>(
        &self,
        task: T,
        inputs: I,
    ) -> Imap<'_, T, I::IntoIter> {
        Imap::new(&self.commands, task, inputs.into_iter(), Order::Input)
    }

    /// Like [`imap`](Pool::imap), but yields results as they complete,
    /// each with its input's index (Python's `imap_unordered`, which
    /// leaves out the index).
    ///
    /// ```
    /// pool::task! { fn halve(x: u32) -> u32 { x / 2 } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(2)?;
    ///     let mut results: Vec<(usize, u32)> =
    ///         pool.imap_unordered(halve, [10, 20, 30]).collect::<Result<_, _>>()?;
    ///     results.sort();
    ///     assert_eq!(results, [(0, 5), (1, 10), (2, 15)]);
    ///     Ok(())
    /// }
    /// ```
    pub fn imap_unordered<T: Task, I: IntoIterator<Item = T::Input>>(
        &self,
        task: T,
        inputs: I,
    ) -> ImapUnordered<'_, T, I::IntoIter> {
        ImapUnordered::new(Imap::new(
            &self.commands,
            task,
            inputs.into_iter(),
            Order::Completion,
        ))
    }

    /// Runs `task` on `input` in a worker and waits for the output
    /// (Python's `apply`).
    ///
    /// Where an idle local worker already knows the task and the input is
    /// small, the call goes straight to it: the calling thread writes the
    /// input to the worker's socket and reads the reply itself, which
    /// wakes no thread of the pool's (see the README's *Latency of one
    /// request*). Errors, timeouts, Ctrl-C and `terminate` act on it as
    /// on any other call, and it never overtakes work submitted before it:
    /// while the dispatcher has not yet queued an earlier submission, the
    /// call takes the usual way.
    ///
    /// ```
    /// pool::task! { fn greet(name: String) -> String { format!("hello, {name}") } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(1)?;
    ///     assert_eq!(pool.apply(greet, "world".into())?, "hello, world");
    ///     Ok(())
    /// }
    /// ```
    pub fn apply<T: Task>(&self, task: T, input: T::Input) -> Result<T::Output> {
        let _ = task;
        // Straight to an idle worker where one can take it, the reply
        // read by this thread (`direct_call`).
        self.submit_one::<T>(input, Reply::Now).get(None)
    }

    /// Starts `task` on `input` in a worker and returns a handle to its
    /// result (Python's `apply_async`). Any error, including a closed pool
    /// or an input that cannot be encoded, arrives through the handle.
    ///
    /// Where a local worker that knows the task is idle and nothing
    /// submitted earlier waits, the input goes straight to it from this
    /// thread, and the handle's [`get`](AsyncResult::get) or
    /// [`wait`](AsyncResult::wait) reads the reply from the worker itself,
    /// waking no other thread of the pool; until then the worker is the
    /// call's, and the pool takes the call over whenever it needs that
    /// worker or the handle is awaited, watched, cancelled, asked whether
    /// it is ready, or dropped.
    ///
    /// ```
    /// pool::task! { fn len(text: String) -> usize { text.len() } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(2)?;
    ///     let pending = pool.apply_async(len, "four".into());
    ///     assert_eq!(pending.get(None)?, 4);
    ///     Ok(())
    /// }
    /// ```
    pub fn apply_async<T: Task>(&self, task: T, input: T::Input) -> AsyncResult<T::Output> {
        let _ = task;
        self.submit_one::<T>(input, Reply::Parked)
    }

    /// Submits one input of `T`; if it goes straight to a worker, its
    /// reply is read now or left for the handle (`direct_call`).
    fn submit_one<T: Task>(&self, input: T::Input, reply: Reply) -> AsyncResult<T::Output> {
        let slot = ResultCell::new();
        let result = AsyncResult::new(
            Arc::clone(&slot),
            T::NAME,
            Some(self.commands.cancel_notice().clone()),
        )
        .stop_on_drop(self.stop_on_drop)
        .spinning(self.spin);
        let item = self
            .commands
            .check_open()
            .and_then(|()| self.commands.check_task(T::NAME))
            .and_then(|()| encode_input::<T>(&input, 0, self.commands.max_message_size()));
        let job = match item {
            Err(err) => {
                slot.complete(Err(err));
                return result;
            }
            Ok(item) => Job {
                task: T::NAME,
                items: vec![item],
                sink: Sink::Single(slot),
            },
        };
        // Most submissions of a run find no worker offered: they go the
        // usual way without the direct call's checks.
        let Some(leases) = self.leases.as_ref().filter(|leases| leases.may_lend()) else {
            self.commands.send(Command::Submit(job));
            return result;
        };
        match direct_call::start(leases, job, self.task_timeout) {
            Started::Sent(call) => match reply {
                Reply::Now => direct_call::finish(leases, call, self.spin),
                Reply::Parked => {
                    let worker = call.worker.id;
                    direct_call::park(leases, call);
                    return result.direct(Direct::new(Arc::clone(leases), worker));
                }
            },
            Started::Over => {}
            Started::NotDirect(job) => self.commands.send(Command::Submit(job)),
        }
        result
    }

    /// Stops taking new work; what was submitted still runs, then the
    /// workers exit. Calls after this fail with [`ErrorKind::Closed`].
    ///
    /// ```
    /// pool::task! { fn id(x: u8) -> u8 { x } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(1)?;
    ///     let pending = pool.apply_async(id, 7);
    ///     pool.close();
    ///     assert_eq!(pool.apply(id, 8).unwrap_err().kind(), pool::ErrorKind::Closed);
    ///     pool.join();
    ///     assert_eq!(pending.get(None)?, 7);
    ///     assert!(pool.worker_pids().is_empty());
    ///     Ok(())
    /// }
    /// ```
    pub fn close(&self) {
        self.stop_launching();
        if self.commands.mark_closed() {
            self.commands.send(Command::Close);
        }
    }

    /// Waits until every worker has exited and been reaped. On a pool
    /// still open, closes it first (where Python raises an error), so the
    /// submitted work finishes before the workers exit.
    pub fn join(&self) {
        self.close();
        self.join_dispatcher();
    }

    /// Stops the workers at once (SIGKILL), failing unfinished calls with
    /// [`ErrorKind::Closed`], and waits until they are reaped. Dropping the
    /// pool does this.
    ///
    /// ```
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(2)?;
    ///     pool.terminate();
    ///     assert!(pool.worker_pids().is_empty());
    ///     Ok(())
    /// }
    /// ```
    pub fn terminate(&self) {
        self.stop_launching();
        self.commands.mark_closed();
        self.commands.send(Command::Terminate);
        self.join_dispatcher();
    }

    fn join_dispatcher(&self) {
        if let Some(listener) = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            listener.stop();
        }
        let handle = self
            .dispatcher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        // The workers were told to quit; cancelling their jobs ends any
        // that could not hear it.
        drop(
            self.launcher
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
    }

    /// A closing pool's launched workers may end: they are not replaced.
    fn stop_launching(&self) {
        if let Some(launcher) = &*self.launcher.lock().unwrap_or_else(|p| p.into_inner()) {
            launcher.closing();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
    }
}
