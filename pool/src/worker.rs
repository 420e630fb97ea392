//! The worker loop: what a worker process runs instead of the user's `main`.
//!
//! A worker reads batches of tasks, runs them in order, and answers with
//! batches of results. It replies as soon as nothing more is waiting for it,
//! or after [`FLUSH_CHUNKS`] results or [`FLUSH_AFTER`], whichever comes
//! first: under load many results share one message, and a slow task's
//! result is never held back behind the next task.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use connection::Connection;

use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, SharedCounter};
use crate::task::{self, FailureKind, RunEncoded, TaskFailure};
use crate::wire::{self, BatchRecord, Reader, ResultsWriter};

/// Names the inherited connection of a local worker (`fd:mode`).
pub(crate) const CONNECTION_ENV: &str = "POOL_WORKER_CONNECTION";
/// Names the inherited progress page of a local worker.
pub(crate) const PROGRESS_ENV: &str = "POOL_WORKER_PROGRESS";
/// The pid of the pool's process, so the worker can notice it is gone.
pub(crate) const PARENT_ENV: &str = "POOL_WORKER_PARENT";

/// Reply once this many chunk results are waiting.
const FLUSH_CHUNKS: usize = 64;
/// Reply once the work behind the waiting results has taken this long.
const FLUSH_AFTER: Duration = Duration::from_micros(500);

/// Set once this process has become a worker: pools refuse to start here.
static IN_WORKER: AtomicBool = AtomicBool::new(false);

pub(crate) fn in_worker() -> bool {
    IN_WORKER.load(Ordering::Relaxed)
}

/// Whether a pool started this process as a worker.
pub(crate) fn started_as_worker() -> bool {
    std::env::var_os(CONNECTION_ENV).is_some()
}

/// Turns this process into a pool worker if a pool started it as one, and
/// otherwise returns at once (it only looks at one environment variable).
///
/// Call it first thing in `main` of every program that starts a pool with
/// the default worker program (the program itself): the pool re-executes
/// the program, and this call is where the copy becomes a worker. In a
/// worker it never returns: the process exits when the pool is done with it.
///
/// A program that forgets the call gets an [`ErrorKind::Startup`] error
/// from [`PoolBuilder::build`](crate::PoolBuilder::build) instead of a pool.
///
/// # Examples
///
/// ```
/// pool::task! { fn square(x: u64) -> u64 { x * x } }
///
/// fn main() -> Result<(), pool::Error> {
///     pool::init();
///     let pool = pool::Pool::new(2)?;
///     assert_eq!(pool.map(square, vec![1, 2, 3])?, [1, 4, 9]);
///     Ok(())
/// }
/// ```
pub fn init() {
    if !started_as_worker() || in_worker() {
        return;
    }
    let code = match run_local_worker() {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("pool worker: {err}");
            2
        }
    };
    std::process::exit(code);
}

/// The `main` of a standalone worker program such as `pool-worker`.
///
/// Started by a pool (as its [`worker_program`](crate::PoolBuilder::worker_program)),
/// it behaves like [`init`]. Started by hand with
/// `--connect ADDRESS` it joins a pool that listens for remote workers (see
/// [`PoolBuilder::listen`](crate::PoolBuilder::listen)), reading the
/// authentication key from the file named by `--authkey-file` or from the
/// `POOL_AUTHKEY` environment variable. It never returns.
///
/// A worker program carries the tasks linked into it: link the crates that
/// define your tasks and reference them (see the `worker-bin` README).
///
/// ```no_run
/// // The whole main of a worker program:
/// pool::worker_main();
/// ```
pub fn worker_main() -> ! {
    init();
    let code = match crate::remote::run_from_args(std::env::args().skip(1)) {
        Ok(()) => 0,
        Err(err) if err.kind() == ErrorKind::Startup => {
            eprintln!("pool-worker: {}", err.message());
            2
        }
        Err(err) => {
            eprintln!("pool-worker: {err}");
            1
        }
    };
    std::process::exit(code)
}

/// Becomes a worker for the pool that re-executed this program.
fn run_local_worker() -> Result<()> {
    IN_WORKER.store(true, Ordering::Relaxed);
    let startup = |what: &str, err: &dyn std::fmt::Display| {
        Error::new(ErrorKind::Startup, format!("{what}: {err}"))
    };
    if let Some(parent) = std::env::var(PARENT_ENV).ok().and_then(|v| v.parse().ok()) {
        sys::die_with_parent(parent).map_err(|err| startup("parent check", &err))?;
    }
    sys::ignore_sigint().map_err(|err| startup("ignore SIGINT", &err))?;
    let conn = Connection::from_env(CONNECTION_ENV)
        .map_err(|err| Error::from_connection(err, "inherit the pool's connection"))?;
    let progress = match std::env::var(PROGRESS_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(fd) => {
            let fd = sys::claim_inherited_fd(fd).map_err(|err| startup("progress page", &err))?;
            Some(SharedCounter::from_fd(fd).map_err(|err| startup("progress page", &err))?)
        }
        None => None,
    };
    // Tasks that start programs of their own must not make them workers.
    for var in [CONNECTION_ENV, PROGRESS_ENV, PARENT_ENV] {
        std::env::remove_var(var);
    }
    serve(conn, progress)
}

/// Runs the worker protocol on `conn` until the pool says quit or goes away.
pub(crate) fn serve(conn: Connection, progress: Option<SharedCounter>) -> Result<()> {
    IN_WORKER.store(true, Ordering::Relaxed);
    // Panics are caught and sent to the pool as the task's error; printing
    // them here too would only spam the pool's stderr.
    std::panic::set_hook(Box::new(|_| {}));
    let mut worker = Worker {
        conn,
        progress,
        started: 0,
        tasks: Vec::new(),
        results: ResultsWriter::new(),
        oldest_unsent: None,
    };
    let id = worker.setup()?;
    // For a subscriber installed in this process (a worker program's own,
    // or one set up before `init` or by the initializer); without one this
    // span is disabled and costs nothing.
    let span = tracing::debug_span!("worker", id);
    let _entered = span.enter();
    worker.run()
}

struct Worker {
    conn: Connection,
    progress: Option<SharedCounter>,
    /// Task items started so far, mirrored into `progress`.
    started: u64,
    /// Task numbers the pool defined, with the function if this program has it.
    tasks: Vec<(String, Option<RunEncoded>)>,
    results: ResultsWriter,
    oldest_unsent: Option<Instant>,
}

fn protocol(err: wire::WireError) -> Error {
    Error::new(ErrorKind::Connection, "message from the pool").with_source(err)
}

impl Worker {
    /// Reads the setup message, runs the initializer and says ready;
    /// returns the pool's id for this worker.
    fn setup(&mut self) -> Result<u32> {
        let message = self
            .conn
            .recv_bytes()
            .map_err(|err| Error::from_connection(err, "wait for setup"))?;
        let mut reader = Reader::new(&message);
        if reader.u8("tag").map_err(protocol)? != wire::SETUP {
            return Err(Error::new(
                ErrorKind::Connection,
                "expected a setup message",
            ));
        }
        let worker_id = reader.u32("worker id").map_err(protocol)?;
        let outcome = if reader.u8("initializer flag").map_err(protocol)? == 1 {
            let name = reader.str("initializer name").map_err(protocol)?;
            let input = reader.bytes("initializer input").map_err(protocol)?;
            run_initializer(name, input)
        } else {
            Ok(())
        };
        let reply = match outcome {
            Ok(()) => {
                let mut reply = vec![wire::READY];
                wire::put_u32(&mut reply, std::process::id());
                // Checked after the initializer, which may install a
                // subscriber: a worker that traces its tasks wants their
                // input indices; the others are spared the bytes.
                let traced = tracing::enabled!(tracing::Level::DEBUG);
                reply.push(if traced { wire::WANTS_INDICES } else { 0 });
                reply
            }
            Err(failure) => wire::failure(wire::SETUP_FAILED, &failure),
        };
        self.conn
            .send_bytes(&reply)
            .map_err(|err| Error::from_connection(err, "send ready"))?;
        Ok(worker_id)
    }

    fn run(&mut self) -> Result<()> {
        loop {
            let message = match self.conn.recv_bytes() {
                Ok(message) => message,
                Err(err) if err.kind() == connection::ErrorKind::Eof => return Ok(()),
                Err(err) => return Err(Error::from_connection(err, "receive tasks")),
            };
            match message.first() {
                Some(&wire::BATCH) => self.run_batch(&message[1..])?,
                Some(&wire::QUIT) => return self.flush(),
                _ => {
                    return Err(Error::new(
                        ErrorKind::Connection,
                        "unknown message from the pool",
                    ))
                }
            }
            let more_waiting = self
                .conn
                .poll(Some(Duration::ZERO))
                .map_err(|err| Error::from_connection(err, "poll"))?;
            if !more_waiting {
                self.flush()?;
            }
        }
    }

    fn run_batch(&mut self, body: &[u8]) -> Result<()> {
        let mut reader = Reader::new(body);
        while let Some(record) = wire::next_record(&mut reader).map_err(protocol)? {
            match record {
                BatchRecord::DefineTask { number, name } => {
                    let number = number as usize;
                    if self.tasks.len() <= number {
                        self.tasks.resize(number + 1, (String::new(), None));
                    }
                    self.tasks[number] = (name.to_string(), task::registry().get(name).copied());
                }
                BatchRecord::Chunk {
                    id,
                    task,
                    items,
                    indexed,
                } => {
                    let began = Instant::now();
                    // Counted from when the first unsent chunk began, so that
                    // a slow chunk is sent as soon as it ends.
                    let oldest = *self.oldest_unsent.get_or_insert(began);
                    let chunk = Chunk {
                        id,
                        task: task as usize,
                        items,
                        indexed,
                    };
                    self.run_chunk(&mut reader, chunk, began)?;
                    if self.results.chunks() >= FLUSH_CHUNKS || oldest.elapsed() >= FLUSH_AFTER {
                        self.flush()?;
                    }
                }
            }
        }
        Ok(())
    }

    fn run_chunk(&mut self, reader: &mut Reader<'_>, chunk: Chunk, began: Instant) -> Result<()> {
        let (name, run) = match self.tasks.get(chunk.task) {
            Some((name, run)) => (name.as_str(), *run),
            None => ("", None),
        };
        // One check per chunk, so that untraced tasks pay nothing for spans.
        let traced = tracing::enabled!(tracing::Level::DEBUG);
        self.results.begin_chunk(chunk.id, chunk.items);
        for _ in 0..chunk.items {
            let index = if chunk.indexed {
                Some(reader.u64("input index").map_err(protocol)?)
            } else {
                None
            };
            let input = reader.bytes("task input").map_err(protocol)?;
            self.started += 1;
            if let Some(progress) = &self.progress {
                progress.store(self.started);
            }
            if traced {
                run_traced(&mut self.results, name, run, input, index, chunk.id);
            } else {
                self.results.item(|out| match run {
                    Some(run) => run(input, out),
                    None => Err(unknown_task(name)),
                });
            }
        }
        self.results.add_busy(began.elapsed().as_nanos() as u64);
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.oldest_unsent = None;
        if self.results.chunks() == 0 {
            return Ok(());
        }
        let sent = self.conn.send_bytes(self.results.bytes());
        self.results.clear();
        sent.map_err(|err| Error::from_connection(err, "send results"))
    }
}

/// Runs one input inside its `task` span (DEBUG is enabled here); kept out
/// of line so that the untraced loop stays as it was.
#[cold]
#[inline(never)]
fn run_traced(
    results: &mut ResultsWriter,
    name: &str,
    run: Option<RunEncoded>,
    input: &[u8],
    index: Option<u64>,
    chunk: u64,
) {
    let span = tracing::debug_span!("task", task = name, index, chunk);
    let _entered = span.enter();
    results.item(|out| match run {
        Some(run) => run(input, out),
        None => Err(unknown_task(name)),
    });
}

/// A chunk record's header, as `run_chunk` needs it.
struct Chunk {
    id: u64,
    task: usize,
    items: u32,
    /// Each input is preceded by its index (the pool sends them to a
    /// worker that traces its tasks).
    indexed: bool,
}

fn unknown_task(name: &str) -> TaskFailure {
    TaskFailure::new(
        FailureKind::UnknownTask,
        format!(
            "this worker program ({}) does not define a task named {name:?}; \
             build it from the crate that defines the task",
            std::env::current_exe()
                .map(|path| path.display().to_string())
                .unwrap_or_else(|_| "unknown path".into())
        ),
    )
}

fn run_initializer(name: &str, input: &[u8]) -> std::result::Result<(), TaskFailure> {
    let run = task::registry()
        .get(name)
        .ok_or_else(|| unknown_task(name))?;
    let mut discarded_output = Vec::new();
    run(input, &mut discarded_output)
}
