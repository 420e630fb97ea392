//! The worker side: what runs in a worker process, local or remote.
//!
//! A local worker is this program (or a [worker
//! program](crate::PoolBuilder::worker_program)) re-executed by a pool. It
//! becomes a worker before `main` ([`before_main`], called from the start-up
//! code by `sys`), so the user's `main`, a test harness or a host program
//! never runs in it; a program that must run code of its own first
//! declares [`workers_start_in_main!`](crate::workers_start_in_main) and
//! calls [`init`]. A remote worker joins a pool over TCP with
//! [`connect_worker`]. Either way [`serve`] runs the protocol. Nothing
//! here refers to the parent side of the crate.

mod connect;
mod serve;

use connection::Connection;

pub use connect::{connect_worker, AUTHKEY_ENV, CONNECT_ENV};
pub(crate) use serve::in_worker;

use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, SharedCounter};
use crate::wire::{FromWorker, CONNECTION_ENV, PARENT_ENV, PROGRESS_ENV};

/// Whether a pool started this process as a worker: a local one (an
/// inherited connection), or a remote one told where to connect.
pub(crate) fn started_as_worker() -> bool {
    std::env::var_os(CONNECTION_ENV).is_some() || std::env::var_os(CONNECT_ENV).is_some()
}

/// One entry per [`workers_start_in_main!`](crate::workers_start_in_main)
/// in the program: if there is any, workers start in [`init`], not before
/// `main`.
#[doc(hidden)]
#[linkme::distributed_slice]
pub static WORKERS_START_IN_MAIN: [&'static str];

/// Makes this program's pool workers start where `main` calls
/// [`pool::init()`](crate::init), instead of before `main`.
///
/// By default a copy of the program that a pool started becomes a worker
/// before `main` runs, so nothing in `main` runs in workers. A program
/// that wants something from its `main` in its workers too, such as a
/// tracing subscriber or a logger, declares this once, anywhere in the
/// binary's crate, and calls `pool::init()` after that set-up. (An
/// [`initializer`](crate::PoolBuilder::initializer) task is the other way
/// to prepare workers, and needs neither.) Forgetting the call is then an
/// [`ErrorKind::Startup`] error from the pool, never a fork bomb or a hang.
///
/// # Examples
///
/// ```
/// pool::workers_start_in_main!();
///
/// pool::task! { fn square(x: u64) -> u64 { x * x } }
///
/// fn main() -> Result<(), pool::Error> {
///     // Set-up that workers should share goes here, then:
///     pool::init();
///     let pool = pool::Pool::new(2)?;
///     assert_eq!(pool.map(square, [1, 2, 3])?, [1, 4, 9]);
///     Ok(())
/// }
/// ```
#[macro_export]
macro_rules! workers_start_in_main {
    () => {
        const _: () = {
            #[$crate::__private::linkme::distributed_slice(
                $crate::__private::WORKERS_START_IN_MAIN
            )]
            #[linkme(crate = $crate::__private::linkme)]
            static WORKERS_START_IN_MAIN: &'static str = ::core::module_path!();
        };
    };
}

/// Called by the program's start-up code before `main` (and before the
/// Rust runtime's own set-up of `main`'s thread): in a process a pool
/// started as a worker, runs the worker loop and exits, unless the program
/// asked for workers to start in `main`. Elsewhere it returns at once
/// after looking at one environment variable.
pub(crate) fn before_main() {
    if !started_as_worker() || !WORKERS_START_IN_MAIN.is_empty() {
        return;
    }
    // What Rust's runtime would have done before `main`: a task writing to
    // a closed stdout gets an error, not a fatal signal.
    sys::ignore_sigpipe();
    // A panic must not unwind out of the start-up code, which would abort
    // without a word; it is reported and ends the worker like an error.
    std::process::exit(std::panic::catch_unwind(run_and_report).unwrap_or(2));
}

/// The pool's code that must be linked into every program that starts a
/// pool: the start-up hook, which lives in an object file that nothing
/// else would refer to.
pub(crate) fn keep_linked() {
    keep_before_main_hook();
}

sys::run_before_main!(before_main);

/// Turns this process into a pool worker if a pool started it as one and
/// it is not one yet, and otherwise returns at once (it only looks at one
/// environment variable).
///
/// Optional: a program a pool re-executes becomes a worker before its
/// `main` runs, so this call is only needed by a program that declared
/// [`workers_start_in_main!`](crate::workers_start_in_main) to run set-up
/// of its own first. There, it is where the copy becomes a worker, and in a
/// worker it never returns: the process exits when the pool is done with
/// it. Existing programs that call it at the top of `main` keep working,
/// since it does nothing outside such a program's workers.
///
/// # Examples
///
/// ```
/// pool::task! { fn square(x: u64) -> u64 { x * x } }
///
/// fn main() -> Result<(), pool::Error> {
///     pool::init(); // optional: does nothing here
///     let pool = pool::Pool::new(2)?;
///     assert_eq!(pool.map(square, vec![1, 2, 3])?, [1, 4, 9]);
///     Ok(())
/// }
/// ```
pub fn init() {
    if !started_as_worker() || in_worker() {
        return;
    }
    std::process::exit(run_and_report());
}

/// Runs the worker; returns the exit status, having said why on stderr
/// (which the pool forwards) if it is not 0.
fn run_and_report() -> i32 {
    let worker = match std::env::var_os(CONNECTION_ENV) {
        Some(_) => run_local_worker(),
        None => run_remote_worker(),
    };
    match worker {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("pool worker: {err:#}");
            2
        }
    }
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
    let mut conn = Connection::from_env(CONNECTION_ENV)
        .map_err(|err| Error::from_connection(err, "inherit the pool's connection"))?;
    crate::wire::use_shared_memory(&mut conn);
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

/// Joins the pool named by [`CONNECT_ENV`] with the key in [`AUTHKEY_ENV`],
/// as a launcher (such as [`SlurmWorkers`](crate::SlurmWorkers)) asked.
fn run_remote_worker() -> Result<()> {
    let address = std::env::var(CONNECT_ENV).map_err(|_| {
        Error::new(
            ErrorKind::Startup,
            format!("{CONNECT_ENV} is not a valid address"),
        )
    })?;
    let authkey = std::env::var_os(AUTHKEY_ENV)
        .map(std::ffi::OsString::into_encoded_bytes)
        .filter(|key| !key.is_empty())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Startup,
                format!("{CONNECT_ENV} is set but {AUTHKEY_ENV} holds no authkey"),
            )
        })?;
    // Tasks that start programs of their own must not make them workers,
    // nor hand them the key.
    for var in [CONNECT_ENV, AUTHKEY_ENV] {
        std::env::remove_var(var);
    }
    connect_worker(&address, &authkey)
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
         it declares pool::workers_start_in_main!(), so call pool::init() at the top of main"
    );
    if let Ok(mut conn) = Connection::from_env(CONNECTION_ENV) {
        let _ = conn.send_bytes(&FromWorker::Refused { reason: &reason }.encode());
    }
    Error::new(ErrorKind::Startup, reason)
}
