//! Joining a pool from another process or host: the library side of
//! `pool-worker --connect` (whose command line lives in `worker-bin`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use connection::{Address, Client, Connection};

use super::serve::{is_silence, serve, Remote, POOL_GONE, POOL_SILENT};
use super::start::{forget_env, AUTHKEY_ENV};
use super::wake::{Leave, Wake};
use crate::error::{Error, Result};
use crate::sys;

/// Connects to a pool listening at `address`, authenticates with
/// `authkey`, and works for it until it closes; the library side of
/// `pool-worker --connect`.
///
/// Returns `Ok` when the pool tells the worker to quit (it was closed, or
/// dropped), and an [`ErrorKind::Connection`](crate::ErrorKind::Connection)
/// error when the pool goes away without saying so while the worker waits
/// for work. If the pool goes away while a task runs, **the process
/// exits** (status 1, with a line on stderr) within about half a second
/// when the pool's host closes the connection, or about five
/// seconds when it falls silent (TCP keepalive: probes after 2 s idle, 1 s
/// apart, 3 unanswered): a task cannot be stopped otherwise, and a worker
/// left computing for a dead pool would hold its host and its job. The
/// line and the error tell the two apart: a pool that closed the
/// connection, or one that fell silent (cut off, or its host down).
///
/// **Told to leave**: SIGTERM, SIGUSR1 or SIGUSR2 (what Slurm sends
/// before a job's time limit: SIGTERM at the limit, or the signal its
/// `--signal=SIG@SECONDS` names, that long before) makes the worker leave
/// in good order rather than die: it runs nothing more, tells the pool,
/// which runs the inputs it gives back (all it has not started) elsewhere
/// and counts it out (a Slurm pool submits a replacement), finishes the
/// input it runs and exits once the pool says quit. A second SIGTERM ends
/// the process at once (status 143).
///
/// This makes the calling process a worker for good: it can no longer start
/// pools of its own, and panics in it are no longer printed (task panics
/// are reported to the pool instead). It also removes [`AUTHKEY_ENV`]
/// from the process's environment, whatever key it was given, so that
/// tasks and the programs they start cannot read a pool's key there; that
/// is sound only while the process has one thread, so a program that
/// started threads before calling this keeps the variable, and is told so
/// on stderr (remove it yourself before starting threads, or pass the key
/// another way).
///
/// # Examples
///
/// A pool that listens on a free loopback port, and a worker thread that
/// joins it (a real remote worker is a separate process on another host):
///
/// ```
/// pool::task! { fn plus_one(x: u64) -> u64 { x + 1 } }
///
/// fn main() -> Result<(), pool::Error> {
///     let pool = pool::Pool::builder()
///         .processes(0)
///         .listen("tcp:127.0.0.1:0", b"secret".to_vec())
///         .build()?;
///     let address = pool.listen_address().unwrap().to_string();
///     std::thread::spawn(move || pool::connect_worker(&address, b"secret"));
///     assert_eq!(pool.apply(plus_one, 1)?, 2);
///     Ok(())
/// }
/// ```
pub fn connect_worker(address: &str, authkey: &[u8]) -> Result<()> {
    // The caller may have read the key from there (`pool-worker` does):
    // the tasks this process will run, and their children, must not.
    forget_env(&[AUTHKEY_ENV]);
    let conn = join_pool(address, authkey)?;
    let busy = Arc::new(AtomicBool::new(false));
    let watcher = Watcher::start(&conn, Arc::clone(&busy));
    let remote = Remote {
        busy: Some(busy),
        leave: Leave::on_signals(),
        slurm_job: std::env::var("SLURM_JOB_ID")
            .ok()
            .and_then(|id| id.parse().ok()),
    };
    let served = serve(conn, None, Some(remote));
    drop(watcher);
    served
}

/// Connects to the pool at `address` and authenticates with `authkey`, as
/// [`connect_worker`] does, returning the connection before any of the
/// worker protocol has run on it (the pool's setup message waits there).
///
/// With [`serve_joined`], the way to host many remote workers in one
/// process, each on its own thread: a worker simulator for the pool's
/// scale tests and benches (`integration-tests/src/swarm.rs`). Not for
/// programs: a remote worker is [`connect_worker`].
#[doc(hidden)]
pub fn join_pool(address: &str, authkey: &[u8]) -> Result<Connection> {
    let parsed: Address = address
        .parse()
        .map_err(|err| Error::from_connection(err, format!("pool address {address:?}")))?;
    let conn = Client::connect_with_authkey(&parsed, authkey)
        .map_err(|err| Error::from_connection(err, format!("connect to the pool at {address}")))?;
    tracing::debug!(%address, "joined a pool as a remote worker");
    if let Err(err) = sys::keep_alive(&conn) {
        tracing::warn!(%err, "cannot turn on TCP keepalive; a partition will go unnoticed");
    }
    Ok(conn)
}

/// Serves the pool that `conn` ([`join_pool`]'s) leads to on the calling
/// thread, with the worker loop every worker runs, until the pool says
/// quit (`Ok`) or goes away (an error).
///
/// Unlike [`connect_worker`], it neither starts the watcher thread that
/// exits the process when the pool vanishes mid-task, nor touches the
/// environment: many of these may run at once in one process, each a
/// worker of its own (per-worker state is per thread). What is process-wide
/// still is: the process can no longer start pools, the panic hook is the
/// worker's (task panics go to the pool), and a memory budget the pool sets
/// is judged on the whole process's memory. Hidden, for worker simulators
/// like [`join_pool`].
#[doc(hidden)]
pub fn serve_joined(conn: Connection) -> Result<()> {
    serve(conn, None, None)
}

/// How long the watcher pauses after it saw the pool hang up while the
/// worker waited for work (which the worker loop sees itself).
const WATCH_PAUSE: Duration = Duration::from_millis(50);
/// How long a worker whose pool hung up may go on with the batch it runs
/// before the watcher ends it.
const QUIT_GRACE: Duration = Duration::from_millis(250);

/// A thread that ends this process when the pool goes away while a task
/// runs: a remote worker has no parent-death signal, and a long task would
/// otherwise go on for a pool that is gone, holding its host (and, under a
/// job launcher, its job) until it next sends a result.
struct Watcher {
    stop: Arc<AtomicBool>,
    /// Wakes the watcher to see `stop`.
    wake: Arc<Wake>,
}

impl Watcher {
    fn start(conn: &Connection, busy: Arc<AtomicBool>) -> Option<Watcher> {
        let watched = match conn.try_clone() {
            Ok(watched) => watched,
            Err(err) => {
                tracing::warn!(%err, "cannot watch the pool's connection");
                return None;
            }
        };
        let wake = match Wake::new() {
            Ok(wake) => Arc::new(wake),
            Err(err) => {
                tracing::warn!(%err, "cannot watch the pool's connection");
                return None;
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (stopped, woken) = (Arc::clone(&stop), Arc::clone(&wake));
        // Sleeps until the pool hangs up or the watcher is stopped: no
        // timer, so an idle worker costs its machine nothing.
        let watch = move || {
            while !stopped.load(Ordering::Relaxed) {
                match sys::hung_up_or_woken(&watched, woken.readable()) {
                    // The pool may have told the worker to quit just before
                    // it closed: a worker that finishes its batch in the
                    // grace period reads that itself (and exits as told).
                    Ok(true) if busy.load(Ordering::Relaxed) => {
                        std::thread::sleep(QUIT_GRACE);
                        if busy.load(Ordering::Relaxed) && !stopped.load(Ordering::Relaxed) {
                            // Read only here, about to exit: reading the
                            // error clears it for the worker loop.
                            let gone = match sys::connection_error(&watched) {
                                Some(err) if is_silence(err.kind()) => POOL_SILENT,
                                _ => POOL_GONE,
                            };
                            eprintln!("pool worker: {gone}, while this worker ran a task; exiting");
                            std::process::exit(1);
                        }
                    }
                    // Waiting for work, the worker loop sees the end itself.
                    Ok(true) | Err(_) => std::thread::sleep(WATCH_PAUSE),
                    Ok(false) => woken.drain(),
                }
            }
        };
        match std::thread::Builder::new()
            .name("pool-watch".into())
            .spawn(watch)
        {
            Ok(_) => Some(Watcher { stop, wake }),
            Err(err) => {
                tracing::warn!(%err, "cannot watch the pool's connection");
                None
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.wake();
    }
}
