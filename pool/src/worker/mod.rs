//! The worker side: what runs in a worker process, local or remote.
//!
//! A local worker is this program (or a [worker
//! program](crate::PoolBuilder::worker_program)) re-executed by a pool. It
//! becomes a worker before `main` ([`before_main`], called from the start-up
//! code by `sys`), so the user's `main`, a test harness or a host program
//! never runs in it; a program that must run code of its own first
//! declares [`workers_start_in_main!`](crate::workers_start_in_main) and
//! calls [`init`]. A remote worker joins a pool over TCP with
//! [`connect_worker`]. Either way [`serve`] runs the protocol. What the
//! pool's variables said, and their removal from the environment, is
//! [`start`]'s. Nothing here refers to the parent side of the crate.

mod connect;
mod memory;
mod serve;
mod start;
mod wake;

pub use connect::{connect_worker, join_pool, serve_joined};
pub(crate) use start::started_as_worker;
pub use start::{AUTHKEY_ENV, CONNECT_ENV};

use crate::error::{Error, ErrorKind, Result};
use crate::sys;
use crate::wire::FromWorker;
use start::{LocalStart, Start};

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
/// after looking at two environment variables.
///
/// This first look at the environment is also where a worker's pool
/// variables (its authkey among them) leave it, while the process has one
/// thread, and where a program in secure-execution mode refuses them; see
/// `start`.
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

/// What [`link_tasks!`](crate::link_tasks) expands to for each task: keeps
/// the task's entry, and the start-up hook through which the program's
/// copies become workers (a worker program may name nothing else of the
/// pool).
#[doc(hidden)]
pub fn link_task<T: crate::Task>(_task: &T) {
    crate::task::keep_linked::<T>();
    keep_linked();
}

sys::run_before_main!(before_main);

/// Turns this process into a pool worker if a pool started it as one and
/// it is not one yet, and otherwise returns at once (it only looks at what
/// the start-up code read from the environment).
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
    // A program that calls this must have the hook, which takes the pool's
    // variables out of the environment before `main`'s threads can read it.
    keep_before_main_hook();
    if !started_as_worker() || crate::role::in_worker() {
        return;
    }
    std::process::exit(run_and_report());
}

/// Runs the worker; returns the exit status, having said why on stderr
/// (which the pool forwards) if it is not 0.
fn run_and_report() -> i32 {
    let worker = match start::take_start() {
        Some(Start::Local(local)) => local.and_then(run_local_worker),
        Some(Start::Remote { address, authkey }) => run_remote_worker(address, authkey),
        Some(Start::Refused(err)) => Err(err),
        None => Err(Error::new(
            ErrorKind::Startup,
            "this process was started as a pool worker, but its pool's connection was \
             already used",
        )),
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
fn run_local_worker(local: LocalStart) -> Result<()> {
    crate::role::become_worker();
    crate::fn_task::started_locally();
    serve::serve(local.conn, local.progress, None)
}

/// Joins the pool that [`CONNECT_ENV`] named with the key [`AUTHKEY_ENV`]
/// held, as a launcher (such as [`SlurmWorkers`](crate::SlurmWorkers))
/// asked.
fn run_remote_worker(
    address: std::ffi::OsString,
    authkey: Option<std::ffi::OsString>,
) -> Result<()> {
    let address = address.into_string().map_err(|_| {
        Error::new(
            ErrorKind::Startup,
            format!("{CONNECT_ENV} is not a valid address"),
        )
    })?;
    let authkey = authkey
        .map(std::ffi::OsString::into_encoded_bytes)
        .filter(|key| !key.is_empty())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Startup,
                format!("{CONNECT_ENV} is set but {AUTHKEY_ENV} holds no authkey"),
            )
        })?;
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
    if let Some(Start::Local(Ok(LocalStart { mut conn, .. }))) = start::take_start() {
        let _ = conn.send_bytes(&FromWorker::Refused { reason: &reason }.encode());
    }
    Error::new(ErrorKind::Startup, reason)
}
