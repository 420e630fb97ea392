//! The crate's one error type.
//!
//! Modelled on [`connection::Error`]: a caller matches on [`ErrorKind`], and
//! the error carries the context that explains it (the task's name, the
//! index of its input, the worker that ran it) plus the underlying cause as
//! its [`source`](std::error::Error::source).

use std::fmt;
use std::sync::Arc;

/// The category of an [`Error`], for callers that want to act on it.
///
/// # Examples
///
/// ```
/// use pool::{Error, ErrorKind};
///
/// let err = Error::new(ErrorKind::Closed, "pool is closed");
/// assert_eq!(err.kind(), ErrorKind::Closed);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The task itself returned `Err`; the error's message is that error's
    /// `Display`.
    TaskFailed,
    /// The task panicked; the error's message is the panic message.
    Panicked,
    /// The worker process running the task died (killed by a signal,
    /// exited) or a remote worker disconnected. A worker that ran out of
    /// memory, where the pool can tell, is [`ErrorKind::OutOfMemory`].
    WorkerDied,
    /// The remote workers running the input were lost, more times than
    /// [`PoolBuilder::allowed_failures`](crate::PoolBuilder::allowed_failures)
    /// allows: their connections ended or fell silent, or their node or
    /// Slurm job ended. Until then, an input whose remote worker is lost
    /// runs again elsewhere, since that is most often the cluster's fault
    /// rather than the input's; the message says how often and how the
    /// last worker was lost.
    WorkerLost,
    /// The task's worker ran out of memory while running it: it crossed the
    /// pool's hard limit
    /// ([`PoolBuilder::hard_worker_memory`](crate::PoolBuilder::hard_worker_memory),
    /// which the message names), or the kernel's OOM killer ended it (told
    /// from its memory cgroup's count of OOM kills, or the system's). The
    /// worker was replaced; the other inputs it held run elsewhere.
    OutOfMemory,
    /// The task ran longer than the pool's task timeout; its worker was
    /// killed and replaced.
    Timeout,
    /// A wait with a timeout, such as [`AsyncResult::get`](crate::AsyncResult::get),
    /// gave up before the result was ready. The task goes on; ask again later.
    WaitTimedOut,
    /// The worker does not know a task of this name: it was built from a
    /// program that does not link the task. A call of a task that the
    /// pool's worker program lacks (known from the task table its first
    /// worker sent) fails at once with it, no input sent, saying to name
    /// the task with [`link_tasks!`](crate::link_tasks). Also a plain
    /// function or closure ([`Pool::map_fn`](crate::Pool::map_fn)) in a
    /// pool whose workers may run another program than this one, which
    /// cannot follow its pointer: refused before anything runs.
    UnknownTask,
    /// A task's input or output could not be encoded.
    Encode,
    /// A task's input or output is larger than the pool's message limit
    /// ([`PoolBuilder::max_message_size`](crate::PoolBuilder::max_message_size)).
    /// That input alone fails; the worker goes on.
    MessageTooLarge,
    /// A task's input or output could not be decoded (for example, the
    /// worker program was built from different sources than the parent).
    Decode,
    /// Ctrl-C (SIGINT) arrived while the call was outstanding.
    Interrupted,
    /// The caller cancelled the input ([`AsyncResult::cancel`](crate::AsyncResult::cancel),
    /// or dropping an awaited [`AsyncResult`](crate::AsyncResult)).
    Cancelled,
    /// Workers could not be started: the program could not be executed, a
    /// worker program (or a program that declares
    /// [`workers_start_in_main!`](crate::workers_start_in_main)) did not
    /// call [`pool::init()`](crate::init), the initializer failed, or a
    /// pool was created inside a worker.
    Startup,
    /// The pool was closed or terminated before the call could run.
    Closed,
    /// The connection between the pool and a worker failed in a way that is
    /// not a worker death (on the worker side: reaching the pool, or its
    /// authentication).
    Connection,
    /// A worker runs another form of a task than this program: another
    /// input or output type, or another version declared with
    /// `#[version = N]` in [`task!`](crate::task!). Such a worker (a
    /// [`worker_program`](crate::PoolBuilder::worker_program) or a remote
    /// worker built from other sources) is refused when it joins; the
    /// message names each task and says which side has which type or
    /// version. `build()` fails with it when the pool's own workers are
    /// refused, and so does a call of that task that no other worker can
    /// run.
    TaskMismatch,
    /// A map's journal could not be read or written: it belongs to another
    /// task or format, is corrupt before its last record, or the file
    /// failed. The message says which, and the file's path.
    Journal,
}

impl ErrorKind {
    fn describe(self) -> &'static str {
        match self {
            ErrorKind::TaskFailed => "task failed",
            ErrorKind::Panicked => "task panicked",
            ErrorKind::WorkerDied => "worker died",
            ErrorKind::WorkerLost => "the remote workers running it were lost",
            ErrorKind::OutOfMemory => "worker out of memory",
            ErrorKind::Timeout => "task timed out",
            ErrorKind::WaitTimedOut => "result not ready before the timeout",
            ErrorKind::UnknownTask => "unknown task",
            ErrorKind::Encode => "value could not be encoded",
            ErrorKind::MessageTooLarge => "message too large",
            ErrorKind::Decode => "value could not be decoded",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Startup => "workers could not be started",
            ErrorKind::Closed => "pool is closed",
            ErrorKind::Connection => "connection between pool and worker failed",
            ErrorKind::TaskMismatch => "worker runs another version of the task",
            ErrorKind::Journal => "map journal could not be used",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Which worker an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerInfo {
    /// The pool's number for the worker (the `N` of `[worker N]` in its logs).
    pub id: u32,
    /// Its process id, for a local worker: a process the pool started.
    pub pid: Option<u32>,
    /// For a remote worker, the pid it claimed in its ready message, once
    /// it sent one: unverified (any peer with the key can claim any
    /// number, the pool's own or 1 among them) and on another machine, so
    /// for reading only, never for signalling.
    pub claimed_pid: Option<u32>,
}

/// Where a task panicked: the file, line and column its worker's panic
/// hook saw ([`Error::panic_location`]).
///
/// Text from a worker, which may be a hostile peer: for display only. The
/// file name is cut to [`MAX_PANIC_FILE`] bytes (and a note of its
/// length), its control characters escaped.
///
/// # Examples
///
/// ```
/// pool::task! { fn fail(_x: ()) -> u8 { panic!("no") } }
///
/// fn main() -> Result<(), pool::Error> {
///     let pool = pool::Pool::new(1)?;
///     let err = pool.apply(fail, ()).unwrap_err();
///     let location = err.panic_location().expect("a panic's location");
///     assert!(location.line() > 0);
///     // "task panicked at FILE:LINE:COLUMN: ...::fail, input 0, worker ...: no"
///     assert!(err.to_string().starts_with(&format!("task panicked at {location}: ")));
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanicLocation {
    file: String,
    line: u32,
    column: u32,
}

impl PanicLocation {
    /// A location from a worker's report: the file name clipped and its
    /// control characters escaped, since it is shown to people.
    pub(crate) fn new(file: &str, line: u32, column: u32) -> PanicLocation {
        PanicLocation {
            file: displayable(file.as_bytes(), MAX_PANIC_FILE),
            line,
            column,
        }
    }

    /// The source file, as the panicking program's compiler named it
    /// (relative to its workspace, or absolute for a dependency).
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The line, from 1.
    pub fn line(&self) -> u32 {
        self.line
    }

    /// The column, from 1.
    pub fn column(&self) -> u32 {
        self.column
    }
}

/// `file:line:column`, as Rust's panic messages write it.
impl fmt::Display for PanicLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// The longest file name kept for a [`PanicLocation`], in bytes.
pub const MAX_PANIC_FILE: usize = 1024;

/// The longest remote backtrace kept ([`Error::remote_backtrace`]), in
/// bytes: a worker sends its top frames up to this size, and the pool cuts
/// what a worker sends to it.
pub const MAX_REMOTE_BACKTRACE: usize = 16 * 1024;

/// What a worker reported about a panic besides its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemotePanic {
    pub(crate) location: PanicLocation,
    /// The worker's backtrace, if backtraces were enabled in it.
    pub(crate) backtrace: Option<String>,
}

impl RemotePanic {
    /// The report as it arrived from a worker: lossy UTF-8, bounded, with
    /// the control characters that could steer a terminal escaped (line
    /// breaks and tabs of the backtrace kept).
    pub(crate) fn from_worker(
        file: &[u8],
        line: u32,
        column: u32,
        backtrace: &[u8],
    ) -> RemotePanic {
        RemotePanic {
            location: PanicLocation {
                file: displayable(file, MAX_PANIC_FILE),
                line,
                column,
            },
            backtrace: (!backtrace.is_empty())
                .then(|| displayable(backtrace, MAX_REMOTE_BACKTRACE)),
        }
    }
}

/// `text` as lossy UTF-8 cut to about `max` bytes (a note of its length
/// after), with every control character but a line break or tab escaped:
/// whatever a worker sent, the result is at most about `max` bytes, and
/// only the start of `text` is ever looked at.
fn displayable(text: &[u8], max: usize) -> String {
    // A character cut in two here is replaced, like invalid UTF-8.
    let start = String::from_utf8_lossy(&text[..text.len().min(max + 4)]);
    let mut shown = String::with_capacity(start.len().min(max));
    for c in start.chars() {
        if shown.len() >= max {
            shown.push_str(&format!("... ({} bytes in all)", text.len()));
            break;
        }
        match c {
            '\n' | '\t' => shown.push(c),
            c if c.is_control() => shown.extend(c.escape_default()),
            c => shown.push(c),
        }
    }
    shown
}

type Source = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// An error from this crate: a kind, a message, where it happened (task,
/// input index, worker) and, where there is one, the underlying cause.
///
/// Errors are cheap to clone, so that a result can be read more than once.
///
/// # Examples
///
/// ```
/// use pool::{Error, ErrorKind};
///
/// let err = Error::new(ErrorKind::TaskFailed, "no such file")
///     .with_task("demo::load")
///     .with_index(7);
/// assert_eq!(err.index(), Some(7));
/// assert_eq!(err.task(), Some("demo::load"));
/// assert_eq!(err.to_string(), "task failed: demo::load, input 7: no such file");
/// ```
///
/// A task's panic also carries where it happened
/// ([`panic_location`](Error::panic_location)), which the one-line
/// `Display` shows, and, if backtraces were enabled in its worker
/// (`RUST_BACKTRACE` or `RUST_LIB_BACKTRACE`, which the worker inherits or
/// is given with [`PoolBuilder::env`](crate::PoolBuilder::env)), the
/// worker's backtrace ([`remote_backtrace`](Error::remote_backtrace)), which
/// `Debug` (what `unwrap` and a `main` returning the error print) shows on
/// the lines after the error, like Python's `RemoteTraceback`.
#[derive(Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    task: Option<&'static str>,
    index: Option<usize>,
    worker: Option<WorkerInfo>,
    source: Option<Source>,
    panic: Option<Arc<RemotePanic>>,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Creates an error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            task: None,
            index: None,
            worker: None,
            source: None,
            panic: None,
        }
    }

    /// The error of an input that ran past the pool's task timeout, whose
    /// worker was killed for it (by the dispatcher, or by a direct call).
    pub(crate) fn task_timed_out(timeout: std::time::Duration) -> Error {
        Error::new(
            ErrorKind::Timeout,
            format!("ran longer than {timeout:?}; its worker was killed"),
        )
    }

    /// The error of a task's failure reported by a worker (or run inline).
    pub(crate) fn from_failure(
        kind: ErrorKind,
        message: String,
        panic: Option<RemotePanic>,
    ) -> Error {
        Error {
            panic: panic.map(Arc::new),
            ..Error::new(kind, message)
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        self.source = Some(Arc::new(source));
        self
    }

    /// Names the task the error is about.
    pub fn with_task(mut self, task: &'static str) -> Error {
        self.task = Some(task);
        self
    }

    /// Records the index of the task's input (its position in the inputs of
    /// `map`, `imap` and the like; 0 for `apply`).
    pub fn with_index(mut self, index: usize) -> Error {
        self.index = Some(index);
        self
    }

    /// Records the worker that ran the task.
    pub fn with_worker(mut self, worker: WorkerInfo) -> Error {
        self.worker = Some(worker);
        self
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message: for [`ErrorKind::TaskFailed`] the task's own error, for
    /// [`ErrorKind::Panicked`] the panic message, for
    /// [`ErrorKind::WorkerDied`] how the worker ended.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The name of the task involved, if any.
    pub fn task(&self) -> Option<&'static str> {
        self.task
    }

    /// The index of the input whose task failed, if the error is about one task.
    pub fn index(&self) -> Option<usize> {
        self.index
    }

    /// The worker involved, if any.
    pub fn worker(&self) -> Option<WorkerInfo> {
        self.worker
    }

    /// Where the task panicked, for [`ErrorKind::Panicked`]: the file, line
    /// and column the worker's panic hook saw. `None` for other errors, and
    /// for a panic whose worker could not report it.
    pub fn panic_location(&self) -> Option<&PanicLocation> {
        self.panic.as_ref().map(|panic| &panic.location)
    }

    /// The panicking worker's backtrace, for [`ErrorKind::Panicked`], if
    /// backtraces were enabled in the worker (`RUST_BACKTRACE=1` or
    /// `RUST_LIB_BACKTRACE=1` in its environment, as
    /// [`std::backtrace::Backtrace::capture`] decides): the frames from the
    /// panic down to the task's function and the pool's call of it, at most
    /// [`MAX_REMOTE_BACKTRACE`] bytes, top frames first. Text from the
    /// worker, for display only. `Debug` prints it after the error.
    ///
    /// ```
    /// pool::task! { fn fail(_x: ()) -> u8 { panic!("no") } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::builder().processes(1).env("RUST_BACKTRACE", "1").build()?;
    ///     let err = pool.apply(fail, ()).unwrap_err();
    ///     // Named in the backtrace when the worker has its symbols.
    ///     assert!(err.remote_backtrace().is_some());
    ///     Ok(())
    /// }
    /// ```
    pub fn remote_backtrace(&self) -> Option<&str> {
        self.panic.as_ref()?.backtrace.as_deref()
    }

    /// What every call still waiting gets when the pool is terminated.
    pub(crate) fn terminated() -> Error {
        Error::new(ErrorKind::Closed, "the pool was terminated")
    }

    pub(crate) fn with_kind(mut self, kind: ErrorKind) -> Error {
        self.kind = kind;
        self
    }

    pub(crate) fn from_connection(err: connection::Error, context: impl fmt::Display) -> Error {
        let kind = match err.kind() {
            connection::ErrorKind::Interrupted => ErrorKind::Interrupted,
            connection::ErrorKind::Encode => ErrorKind::Encode,
            connection::ErrorKind::Decode => ErrorKind::Decode,
            _ => ErrorKind::Connection,
        };
        Error::new(kind, context.to_string()).with_source(err)
    }
}

/// Whether an error ends the whole call rather than one input: the pool
/// stopped, was interrupted, or could not keep workers running.
pub(crate) fn ends_the_call(err: &Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::Interrupted | ErrorKind::Closed | ErrorKind::Startup
    )
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(task) = self.task {
            d.field("task", &task);
        }
        if let Some(index) = self.index {
            d.field("index", &index);
        }
        if let Some(worker) = &self.worker {
            d.field("worker", worker);
        }
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        if let Some(location) = self.panic_location() {
            d.field("panic_location", &format_args!("{location}"));
        }
        d.finish()?;
        // On lines of its own, readable, where `unwrap` and `main` print it.
        if let Some(backtrace) = self.remote_backtrace() {
            write!(f, "\n\nremote backtrace:\n{backtrace}")?;
        }
        Ok(())
    }
}

/// The kind (with a panic's location), task, index, worker and message,
/// without the cause: that is the [`source`](std::error::Error::source),
/// and a reporter that walks the chain (`anyhow`, `eyre`, a loop over
/// `source()`) prints it once. The alternate form, `{:#}`, appends every
/// cause, for a one-line message. Both stay on one line, for logs: a
/// panic's remote backtrace is in `Debug` and
/// [`remote_backtrace`](Error::remote_backtrace).
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(location) = self.panic_location() {
            write!(f, " at {location}")?;
        }
        let mut separator = ": ";
        if let Some(task) = self.task {
            write!(f, "{separator}{task}")?;
            separator = ", ";
        }
        if let Some(index) = self.index {
            write!(f, "{separator}input {index}")?;
            separator = ", ";
        }
        if let Some(worker) = &self.worker {
            write!(f, "{separator}worker {}", worker.id)?;
            if let Some(pid) = worker.pid {
                write!(f, " (pid {pid})")?;
            } else if let Some(claimed) = worker.claimed_pid {
                write!(f, " (remote, claimed pid {claimed})")?;
            }
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if f.alternate() {
            let mut cause = std::error::Error::source(self);
            while let Some(inner) = cause {
                write!(f, ": {inner}")?;
                cause = inner.source();
            }
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|s| &**s as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_task_index_worker_and_source() {
        let io = std::io::Error::other("disk on fire");
        let err = Error::new(ErrorKind::WorkerDied, "killed by signal 9 (SIGKILL)")
            .with_task("demo::crunch")
            .with_index(3)
            .with_worker(WorkerInfo {
                id: 2,
                pid: Some(4242),
                claimed_pid: None,
            })
            .with_source(io);
        assert_eq!(
            err.to_string(),
            "worker died: demo::crunch, input 3, worker 2 (pid 4242): \
             killed by signal 9 (SIGKILL)"
        );
        let remote = Error::new(ErrorKind::WorkerDied, "connection lost").with_worker(WorkerInfo {
            id: 5,
            pid: None,
            claimed_pid: Some(1),
        });
        assert_eq!(
            remote.to_string(),
            "worker died: worker 5 (remote, claimed pid 1): connection lost"
        );
        assert_eq!(
            std::error::Error::source(&err).map(|s| s.to_string()),
            Some("disk on fire".to_string())
        );
        let copy = err.clone();
        assert_eq!(copy.kind(), ErrorKind::WorkerDied);
    }

    #[test]
    fn connection_interrupts_stay_interrupts() {
        let inner = connection::Error::new(connection::ErrorKind::Interrupted, "poll");
        let err = Error::from_connection(inner, "waiting for results");
        assert_eq!(err.kind(), ErrorKind::Interrupted);
    }

    #[test]
    fn a_chain_reporter_prints_each_cause_once() {
        let inner = connection::Error::new(connection::ErrorKind::Eof, "the peer left");
        let err = Error::from_connection(inner, "receive tasks");
        let mut chain = vec![err.to_string()];
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            chain.push(cause.to_string());
            source = cause.source();
        }
        let whole = chain.join(": ");
        assert_eq!(whole.matches("the peer left").count(), 1, "{whole}");
        assert_eq!(format!("{err:#}"), whole);
    }

    #[test]
    fn a_workers_panic_report_is_bounded_and_shown_escaped() {
        let file = b"src/\x1b[2Jevil.rs";
        let mut backtrace = b"  0: demo::parse\n\tat src/main.rs:12:5\n\x07".to_vec();
        backtrace.resize(backtrace.len() + 10 * MAX_REMOTE_BACKTRACE, b'x');
        let panic = RemotePanic::from_worker(file, 12, 5, &backtrace);
        assert_eq!(panic.location.to_string(), "src/\\u{1b}[2Jevil.rs:12:5");
        let shown = panic.backtrace.unwrap();
        assert!(
            shown.starts_with("  0: demo::parse\n\tat src/main.rs:12:5\n\\u{7}xxx"),
            "{shown:.60}"
        );
        assert!(shown.len() <= MAX_REMOTE_BACKTRACE + 40, "{}", shown.len());
        assert!(shown.ends_with(&format!("... ({} bytes in all)", backtrace.len())));
        let long_file = vec![0xff; 3 * MAX_PANIC_FILE];
        let panic = RemotePanic::from_worker(&long_file, 1, 1, b"");
        assert!(panic.location.file().len() <= MAX_PANIC_FILE + 40);
        assert_eq!(panic.backtrace, None);
        let err = Error::from_failure(ErrorKind::Panicked, "boom".into(), Some(panic));
        assert!(
            err.to_string().starts_with("task panicked at \u{fffd}"),
            "{err}"
        );
    }

    #[test]
    fn error_is_send_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();
    }
}
