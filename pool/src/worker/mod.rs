//! The worker side: what runs in a worker process, local or remote.
//!
//! A local worker is this program (or a [worker
//! program](crate::PoolBuilder::worker_program)) re-executed by a pool,
//! which becomes a worker in [`init`]; a remote one joins a pool over TCP
//! with [`connect_worker`]. Either way [`serve`] runs the protocol. Nothing
//! here refers to the parent side of the crate.

mod connect;
mod serve;

use connection::Connection;

pub use connect::{connect_worker, AUTHKEY_ENV};
pub(crate) use serve::in_worker;

use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, SharedCounter};
use crate::wire::{FromWorker, CONNECTION_ENV, PARENT_ENV, PROGRESS_ENV};

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
            eprintln!("pool worker: {err:#}");
            2
        }
    };
    std::process::exit(code);
}

/// Becomes a worker for the pool that re-executed this program.
fn run_local_worker() -> Result<()> {
    serve::become_worker();
    let startup =
        |what: &str, err: std::io::Error| Error::new(ErrorKind::Startup, what).with_source(err);
    if let Some(parent) = std::env::var(PARENT_ENV).ok().and_then(|v| v.parse().ok()) {
        sys::die_with_parent(parent).map_err(|err| startup("parent check", err))?;
    }
    // SIGINT is already ignored: the pool set that up before exec.
    let conn = Connection::from_env(CONNECTION_ENV)
        .map_err(|err| Error::from_connection(err, "inherit the pool's connection"))?;
    let progress = match std::env::var_os(PROGRESS_ENV) {
        Some(_) => {
            let fd = connection::inherit::claim_fd_from_env(PROGRESS_ENV).map_err(|err| {
                Error::from_connection(err, "progress page").with_kind(ErrorKind::Startup)
            })?;
            Some(SharedCounter::from_fd(fd).map_err(|err| startup("progress page", err))?)
        }
        None => None,
    };
    // Tasks that start programs of their own must not make them workers.
    for var in [CONNECTION_ENV, PROGRESS_ENV, PARENT_ENV] {
        std::env::remove_var(var);
    }
    serve::serve(conn, progress, None)
}

/// This program was started as a worker but ran its own `main` up to
/// creating a pool: tells the parent why it will never hear from us, so it
/// fails at once with the reason instead of waiting for its timeout, and
/// returns the same error for the caller here.
pub(crate) fn refuse_to_start_pool() -> Error {
    let program = std::env::current_exe()
        .map(|path| path.display().to_string())
        .unwrap_or_else(|_| "this program".into());
    let reason = format!(
        "{program} was started as a pool worker but ran its own main and tried to start a pool: \
         call pool::init() at the top of main"
    );
    if let Ok(mut conn) = Connection::from_env(CONNECTION_ENV) {
        let _ = conn.send_bytes(&FromWorker::Refused { reason: &reason }.encode());
    }
    Error::new(ErrorKind::Startup, reason)
}
