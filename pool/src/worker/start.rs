//! How a process learns from its environment that it is a pool's worker,
//! and how those variables leave the environment again.
//!
//! A pool's variables are read once, the first time anything asks (which,
//! with the start-up hook linked, is before `main`, while the process has
//! one thread) and then removed, so that neither the worker's tasks nor
//! the programs they start see them: a task must not read the pool's
//! authkey, and a child must not take the inherited connection's number,
//! stale there, for a pool's invitation. What they said is kept here: the
//! claimed connection for a local worker, the address and key for a
//! remote one, until the worker starts (before `main`, or in
//! [`init`](crate::init)).
//!
//! A program in secure-execution mode (`AT_SECURE`: set-user-ID,
//! set-group-ID, or with file capabilities) refuses them and exits, saying
//! why, without running `main`: whoever set its environment may hold fewer
//! privileges than it does, and must not make it run their tasks; nor
//! may a pool's worker run the program's `main` instead (which would start
//! pools of its own, and so on).

use std::ffi::OsString;
use std::sync::{Mutex, OnceLock};

use connection::Connection;

use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, SharedCounter};
use crate::wire::{CONNECTION_ENV, PARENT_ENV, PROGRESS_ENV};

/// The environment variable a remote worker reads its authkey from when no
/// key file is given (`pool-worker` reads it;
/// [`connect_worker`](crate::connect_worker) takes the key itself).
pub const AUTHKEY_ENV: &str = "POOL_AUTHKEY";

/// The environment variable that makes any program linking the pool a
/// remote worker: a process started with `POOL_CONNECT=ADDRESS` (and the
/// key in [`AUTHKEY_ENV`]) joins the pool at `ADDRESS` where a process a
/// pool re-executed would become a local worker (before `main`, or in
/// [`pool::init()`](crate::init)), and exits when the pool is done with it.
/// This is how [Slurm workers](crate::SlurmWorkers) run the pool's own
/// program, and how a launcher of your own (ssh, a Kubernetes Job) can.
///
/// Both variables leave the worker's environment before `main` (so no task
/// and no program a task starts sees the key), and a program running in
/// secure-execution mode (`AT_SECURE`: set-user-ID, set-group-ID, or with
/// file capabilities) refuses them: it says so on stderr and exits with
/// status 2 before `main`, since whoever set its environment must not make
/// it work for them.
pub const CONNECT_ENV: &str = "POOL_CONNECT";

/// Every variable a pool sets for its workers; all leave a worker's
/// environment (the authkey too when a local worker merely inherited it
/// from its pool's own environment).
const POOL_VARS: [&str; 5] = [
    CONNECTION_ENV,
    PROGRESS_ENV,
    PARENT_ENV,
    CONNECT_ENV,
    AUTHKEY_ENV,
];

/// What the environment made of this process.
pub(crate) enum Start {
    /// A pool re-executed this program: what it passed down, claimed.
    Local(Result<LocalStart>),
    /// Join the pool at `address` ([`CONNECT_ENV`]) with `authkey`
    /// ([`AUTHKEY_ENV`], if set).
    Remote {
        address: OsString,
        authkey: Option<OsString>,
    },
    /// Invited, but it must not be a worker: it exits saying why.
    Refused(Error),
}

/// A local worker's inheritance.
pub(crate) struct LocalStart {
    pub(crate) conn: Connection,
    pub(crate) progress: Option<SharedCounter>,
}

struct Taken {
    worker: bool,
    /// Until the worker starts (or tells its pool why it will not).
    start: Mutex<Option<Start>>,
}

fn taken() -> &'static Taken {
    static TAKEN: OnceLock<Taken> = OnceLock::new();
    TAKEN.get_or_init(take_from_env)
}

/// Whether a pool started this process as a worker: a local one (an
/// inherited connection), or a remote one told where to connect. The
/// first call reads the environment; later ones only look at what it said.
pub(crate) fn started_as_worker() -> bool {
    taken().worker
}

/// What the environment said, once: `None` if this process is no worker
/// or its start was already taken.
pub(crate) fn take_start() -> Option<Start> {
    let mut start = taken().start.lock().unwrap_or_else(|e| e.into_inner());
    start.take()
}

fn take_from_env() -> Taken {
    let local = std::env::var_os(CONNECTION_ENV).is_some();
    let remote = std::env::var_os(CONNECT_ENV);
    let invited = local || remote.is_some();
    let start = match (local, remote) {
        (false, None) => None,
        // Not None, which would run `main` as if nothing were set: a
        // pool that re-executed its own privileged program (or had Slurm
        // run it) would then have each "worker" run the program again,
        // start pools of its own, and so on down.
        _ if sys::secure_execution() => Some(Start::Refused(Error::new(
            ErrorKind::Startup,
            format!(
                "{CONNECTION_ENV} or {CONNECT_ENV} is set, but this program runs set-user-ID, \
                 set-group-ID or with file capabilities (AT_SECURE), so it never becomes a pool \
                 worker from its environment; it exits without running its main (a pool of \
                 such a program needs a worker program without privileges: \
                 PoolBuilder::worker_program)"
            ),
        ))),
        (true, _) => Some(Start::Local(claim_local())),
        (false, Some(address)) => Some(Start::Remote {
            address,
            authkey: std::env::var_os(AUTHKEY_ENV),
        }),
    };
    if invited {
        forget_env(&POOL_VARS);
    }
    Taken {
        worker: start.is_some(),
        start: Mutex::new(start),
    }
}

/// Removes `vars` from the environment, or says on stderr why they stay.
pub(crate) fn forget_env(vars: &[&str]) {
    let present: Vec<&str> = vars
        .iter()
        .copied()
        .filter(|var| std::env::var_os(var).is_some())
        .collect();
    if present.is_empty() || sys::remove_env_while_single_threaded(&present) {
        return;
    }
    eprintln!(
        "pool: {} stay in this process's environment, where its tasks and their children \
         see them: other threads were running, and removing a variable then is unsound",
        present.join(", ")
    );
}

/// Claims what a pool passed to the local worker it started.
fn claim_local() -> Result<LocalStart> {
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
    Ok(LocalStart { conn, progress })
}
