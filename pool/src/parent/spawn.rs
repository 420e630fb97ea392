//! Where a local worker process is started: the one place that builds its
//! command line, environment and inherited descriptors.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use super::config::Config;
use super::oom::StderrWatch;
use super::shared_conn::SharedConnection;
use super::worker_io::{NewWorker, WorkerIo};
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, SharedCounter};
use crate::wire::{self, CONNECTION_ENV, PARENT_ENV, PROGRESS_ENV};

/// A started local worker, not yet known to be ready.
pub(crate) struct LocalWorker {
    pub(crate) conn: SharedConnection,
    pub(crate) child: Arc<Mutex<Child>>,
    pub(crate) pid: u32,
    pub(crate) progress: SharedCounter,
    /// What the I/O thread holds for it (its setup), for its `Outbox`.
    pub(crate) pending: Arc<AtomicUsize>,
    /// What its stderr said of a failed allocation.
    pub(crate) stderr: Arc<StderrWatch>,
}

/// The program a local worker runs, as messages name it: the configured
/// one or this program (whose very image it then runs: see `spawn_local`).
pub(crate) fn worker_program(config: &Config) -> Result<PathBuf> {
    match &config.program {
        Some(program) => Ok(program.clone()),
        None => std::env::current_exe().map_err(|err| {
            Error::new(
                ErrorKind::Startup,
                "cannot find this program to re-execute it",
            )
            .with_source(err)
        }),
    }
}

/// Starts worker `id`: spawns the process with its end of a connection and
/// its progress page, and hands it to the I/O thread, which sends it the
/// setup message, reads its messages and forwards its stderr.
pub(crate) fn spawn_local(
    config: &Config,
    program: &Path,
    id: u32,
    setup: Vec<u8>,
    io: &WorkerIo,
) -> Result<LocalWorker> {
    fn startup(what: &'static str) -> impl Fn(connection::Error) -> Error {
        move |err| Error::from_connection(err, what).with_kind(ErrorKind::Startup)
    }
    let (mut conn, child_end) = connection::pipe().map_err(startup("create a connection"))?;
    // Results may be as large as what the pool lets itself send.
    conn.set_max_message_size(config.max_message_size);
    wire::use_shared_memory(&mut conn);
    let progress = SharedCounter::create()
        .map_err(|err| Error::new(ErrorKind::Startup, "create a progress page").with_source(err))?;
    // This program's workers run the image this process runs, not the
    // file at its path, which a rebuild may have replaced since: workers
    // started mid-job must run the code the job started with.
    let mut command = match &config.program {
        Some(program) => Command::new(program),
        None => sys::own_image_command(program),
    };
    command
        .args(&config.args)
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .env(PARENT_ENV, std::process::id().to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    child_end
        .pass_to_child(&mut command, CONNECTION_ENV)
        .map_err(startup("pass the connection"))?;
    let progress_fd = progress.fd().try_clone().map_err(|err| {
        Error::new(ErrorKind::Startup, "share the progress page").with_source(err)
    })?;
    connection::inherit::pass_fd_to_child(progress_fd, &mut command, PROGRESS_ENV)
        .map_err(startup("pass the progress page"))?;
    sys::prepare_worker_command(&mut command);
    let mut child = command.spawn().map_err(|err| {
        Error::new(
            ErrorKind::Startup,
            format!("cannot start worker program {}", program.display()),
        )
        .with_source(err)
    })?;
    // Dropping the command closes the parent's copy of the child's end, so
    // that the connection reports end of file once the child is gone.
    drop(command);
    let pid = child.id();
    let stderr = child.stderr.take();
    let child = Arc::new(Mutex::new(child));
    let watch = Arc::new(StderrWatch::default());
    // A small message (a direct call's reply, most results) costs one
    // read instead of two; `shared_conn` keeps what is read ahead in
    // sight of every reader. Remote workers' connections do not read
    // ahead: at thousands of them the buffers would add up.
    conn.set_read_ahead(true);
    let conn = SharedConnection::new(conn);
    if stderr.is_none() {
        watch.close();
    }
    let pending = io.add(NewWorker {
        id,
        conn: conn.clone(),
        setup: Some(setup),
        child: Some(Arc::clone(&child)),
        stderr: stderr.map(|pipe| (pipe, Arc::clone(&watch))),
    });
    tracing::debug!(worker = id, pid, program = %program.display(), "worker spawned");
    Ok(LocalWorker {
        conn,
        child,
        pid,
        progress,
        pending,
        stderr: watch,
    })
}
