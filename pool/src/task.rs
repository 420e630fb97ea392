//! Tasks: named functions that parent and worker both know.
//!
//! [`task!`](crate::task!) turns a function into a unit struct that
//! implements [`Task`] and puts an entry for it in `TASKS`, a table the
//! linker assembles from every crate in the program (`linkme`). A worker
//! process, which is the same program or one that links the same task
//! crates, finds the function from the name the parent sends. The table
//! needs no code to run before it is complete, so a worker can read it
//! before `main`, where it starts (see `worker::before_main`).

use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Display;
use std::panic::{self, AssertUnwindSafe};
use std::sync::OnceLock;

use crate::error::{PanicLocation, RemotePanic};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A function that a pool can run in its workers, defined with
/// [`task!`](crate::task!).
///
/// The implementing type is a unit struct named like the function, so that
/// `pool.map(count_primes, inputs)` reads like a call and
/// `count_primes.call(input)` runs the function here, in this process.
///
/// # Examples
///
/// ```
/// use pool::Task;
///
/// pool::task! {
///     /// Doubles a number.
///     pub fn double(x: u64) -> u64 { x * 2 }
/// }
///
/// assert_eq!(double.call(21), 42);
/// assert!(double::NAME.ends_with("::double"));
/// ```
///
/// A plain `fn` or a closure is not a `Task`; a pool whose workers run
/// this very program takes one by pointer instead, through
/// [`Pool::map_fn`](crate::Pool::map_fn) and its kin.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a pool task",
    label = "not a task declared with `pool::task!`",
    note = "declare the function with `pool::task! {{ fn name(input: In) -> Out {{ .. }} }}` and pass `name`",
    note = "or, for a plain `fn` or a closure that captures nothing, call `map_fn`, `imap_fn`, \
            `apply_fn` or `apply_async_fn` instead of `map`, `imap`, `apply` or `apply_async` \
            (workers that run this very program only)"
)]
pub trait Task: Copy + Default + Send + Sync + 'static {
    /// The argument: several arguments are a tuple, none is `()`.
    type Input: Serialize + DeserializeOwned;
    /// The value a successful run produces.
    type Output: Serialize + DeserializeOwned;
    /// What the function returns: `Output`, or a `Result` whose `Ok` is
    /// `Output` for a task that can fail.
    type Returned;
    /// The name the worker finds the task by: the defining module's path
    /// and the function's name.
    const NAME: &'static str;
    /// The version the task declares, `#[version = N]` in
    /// [`task!`](crate::task!), or 0. A worker whose task of this name has
    /// another version (or other input or output types) is refused with
    /// [`ErrorKind::TaskMismatch`](crate::ErrorKind::TaskMismatch).
    const VERSION: u32 = 0;

    /// Runs the function in this process.
    fn call(&self, input: Self::Input) -> Self::Returned;

    /// Splits what the function returned into an output or the message of
    /// its error.
    fn outcome(returned: Self::Returned) -> Result<Self::Output, String>;

    /// The task's entry in the link-time table. The pool refers to it
    /// whenever it sends the task, which makes the linker keep the object
    /// file holding the entry even when nothing else in the defining crate
    /// is used by the program. (Today's rustc keeps `#[used]` statics of
    /// libraries anyway, through a synthetic object that names them; this
    /// makes the pool independent of that.)
    #[doc(hidden)]
    fn registration() -> &'static TaskEntry;
}

/// Defines a task: a function that a pool runs in its workers by name.
///
/// Write the function as usual, inside the macro:
///
/// - **Arguments**: any number, of owned types that serde can encode and
///   decode (`String`, `Vec<u8>`, your own `#[derive(Serialize,
///   Deserialize)]` structs). Several arguments become one tuple input:
///   `fn add(a: u64, b: u64)` takes `(u64, u64)`, so
///   `pool.map(add, [(1, 2), (3, 4)])`; none is `()`. Patterns work
///   (`(start, end): (u64, u64)`, `mut line: String`).
/// - **Return type**: anything serde can encode, nothing (`()`), or a
///   `Result` whose error implements `Display`. A `Result` is recognised by
///   its last path segment, so aliases work: `Result<T, E>`,
///   `std::io::Result<T>`, `anyhow::Result<T>`. An `Err` fails that input
///   alone with [`ErrorKind::TaskFailed`](crate::ErrorKind::TaskFailed),
///   carrying the error's text (`{:#}`, which for `anyhow` includes its
///   causes). An alias not named `...Result` is treated as a plain output:
///   its `Err` would travel as a successful value.
///
/// Refused at compile time, each with a message saying what to write
/// instead: borrowed arguments or outputs (`&str`, `&[u8]`, `Cow<'a, str>`:
/// they cross to another process, so use `String`, `Vec<u8>`), generics
/// (a worker finds a task by name, so it has one type), `async fn`,
/// `unsafe fn`, `self`, and `impl Trait`.
///
/// **Version**: `#[version = N]` on the function (`N` a `u32`, 0 when
/// absent) declares a version of the task. Workers that are not copies of
/// this very build (a [`worker_program`](crate::PoolBuilder::worker_program),
/// a remote `pool-worker`, Slurm's workers) tell the pool, when they join,
/// each task's name, input and output types, version, and a hash of the
/// function's code as written inside `task!` (its tokens: not spacing,
/// comments or doc comments). A worker whose task differs from this
/// program's in any of them is refused with
/// [`ErrorKind::TaskMismatch`](crate::ErrorKind::TaskMismatch), naming the
/// task and the difference. So a change of the task's signature or body is
/// caught by itself; raise the version when what the task computes changes
/// through the functions it calls, which the hash does not see.
///
/// The expansion is a unit struct of the function's name implementing
/// [`Task`], with an inherent `call` that runs the function in-process, and
/// an entry in a link-time table through which workers find it.
///
/// # Examples
///
/// ```
/// pool::task! {
///     /// Adds two numbers: the input is the tuple `(u64, u64)`.
///     pub fn add(a: u64, b: u64) -> u64 {
///         a + b
///     }
/// }
///
/// pool::task! {
///     /// Parses an integer, failing on garbage.
///     pub fn parse(text: String) -> Result<i64, std::num::ParseIntError> {
///         text.trim().parse()
///     }
/// }
///
/// pool::task! {
///     /// Reads a file's length: `io::Result` is a `Result` too.
///     pub fn file_len(path: std::path::PathBuf) -> std::io::Result<u64> {
///         Ok(std::fs::metadata(path)?.len())
///     }
/// }
///
/// pool::task! {
///     /// Returns nothing: the output is `()`.
///     pub fn log(line: String) {
///         eprintln!("{line}");
///     }
/// }
///
/// pool::task! {
///     /// Version 2: now rounds to the nearest rather than down.
///     #[version = 2]
///     pub fn mean(values: Vec<f64>) -> f64 {
///         (values.iter().sum::<f64>() / values.len() as f64).round()
///     }
/// }
///
/// fn main() -> Result<(), pool::Error> {
///     use pool::Task;
///     assert_eq!(mean::VERSION, 2);
///     assert_eq!(add.call((1, 5)), 6);
///     assert_eq!(parse.call(" 12 ".into()), Ok(12));
///     assert!(parse.call("x".into()).is_err());
///     log.call("in-process".into());
///
///     let pool = pool::Pool::new(2)?;
///     assert_eq!(pool.map(add, [(1, 2), (3, 4)])?, [3, 7]);
///     assert_eq!(pool.map(log, ["a".to_string()])?, [()]);
///     let err = pool.apply(file_len, "/nonexistent".into()).unwrap_err();
///     assert_eq!(err.kind(), pool::ErrorKind::TaskFailed);
///     Ok(())
/// }
/// ```
#[macro_export]
macro_rules! task {
    ($($function:tt)*) => {
        $crate::__private::task_impl! { $crate; $($function)* }
    };
}

/// A task's return type that can fail: `Result<T, E>` with `E: Display`,
/// under any alias. `task!` uses it for return types spelled `...Result<..>`.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "a task returning `{Self}` must return `std::result::Result<T, E>` with `E: Display`",
    label = "a return type whose name ends in `Result` is taken as fallible",
    note = "return an alias of `std::result::Result` (`io::Result<T>`, `anyhow::Result<T>`), \
            or give a custom type another name"
)]
pub trait TaskResult {
    /// What the task produces when it succeeds.
    type Value;

    /// The value, or the error's text.
    fn into_outcome(self) -> Result<Self::Value, String>;
}

impl<T, E: Display> TaskResult for Result<T, E> {
    type Value = T;

    fn into_outcome(self) -> Result<T, String> {
        // `{:#}`: anyhow's errors print their chain of causes.
        self.map_err(|err| format!("{err:#}"))
    }
}

/// Why a task produced no output, as it travels from worker to parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    Failed = 1,
    Panicked = 2,
    Decode = 3,
    Encode = 4,
    UnknownTask = 5,
    /// The output is larger than the pool's message limit.
    TooLarge = 6,
    /// Not run: the pool recalled the input before it started.
    Returned = 7,
    // 8 is `wire::PANICKED_AT`, a panic sent with its location.
}

impl FailureKind {
    pub(crate) fn from_code(code: u8) -> Option<FailureKind> {
        Some(match code {
            1 => FailureKind::Failed,
            2 => FailureKind::Panicked,
            3 => FailureKind::Decode,
            4 => FailureKind::Encode,
            5 => FailureKind::UnknownTask,
            6 => FailureKind::TooLarge,
            7 => FailureKind::Returned,
            _ => return None,
        })
    }

    pub(crate) fn error_kind(self) -> crate::ErrorKind {
        match self {
            FailureKind::Failed => crate::ErrorKind::TaskFailed,
            FailureKind::Panicked => crate::ErrorKind::Panicked,
            FailureKind::Decode => crate::ErrorKind::Decode,
            FailureKind::Encode => crate::ErrorKind::Encode,
            FailureKind::UnknownTask => crate::ErrorKind::UnknownTask,
            FailureKind::TooLarge => crate::ErrorKind::MessageTooLarge,
            // Never delivered as an error: the pool runs the input
            // elsewhere or drops it (see `WorkerSlot::complete_chunks`).
            FailureKind::Returned => crate::ErrorKind::Cancelled,
        }
    }
}

/// A task's failure inside a worker: the kind and a message, and for a
/// panic where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    pub(crate) kind: FailureKind,
    pub(crate) message: String,
    pub(crate) panic: Option<RemotePanic>,
}

impl TaskFailure {
    pub(crate) fn new(kind: FailureKind, message: impl Into<String>) -> TaskFailure {
        TaskFailure {
            kind,
            message: message.into(),
            panic: None,
        }
    }

    /// The error a caller gets for this failure of input `index` of `task`.
    pub(crate) fn into_error(self, task: &'static str, index: usize) -> crate::Error {
        crate::Error::from_failure(self.kind.error_kind(), self.message, self.panic)
            .with_task(task)
            .with_index(index)
    }
}

/// Runs a task on an encoded input and appends the encoded output to `out`.
pub type RunEncoded = fn(&[u8], &mut Vec<u8>) -> Result<(), TaskFailure>;

/// One registered task: its name, how to run it on encoded input, and
/// what a worker shows of it to its pool. Made by [`task!`](crate::task!);
/// not meant to be built by hand.
#[derive(Debug)]
pub struct TaskEntry {
    name: &'static str,
    run: RunEncoded,
    version: u32,
    /// A hash of the function's code as written in `task!`.
    code: u64,
    /// The input's and the output's type names (`type_name` is not yet
    /// callable in a constant).
    types: fn() -> [&'static str; 2],
}

impl TaskEntry {
    #[doc(hidden)]
    pub const fn new(
        name: &'static str,
        run: RunEncoded,
        version: u32,
        code: u64,
        types: fn() -> [&'static str; 2],
    ) -> TaskEntry {
        TaskEntry {
            name,
            run,
            version,
            code,
            types,
        }
    }

    pub(crate) fn fingerprint(&self) -> Fingerprint<'static> {
        let [input, output] = (self.types)();
        Fingerprint {
            name: self.name,
            input,
            output,
            version: self.version,
            code: self.code,
        }
    }
}

/// `T`'s input and output type names, for its [`TaskEntry`].
#[doc(hidden)]
pub fn type_names<T: Task>() -> [&'static str; 2] {
    [
        std::any::type_name::<T::Input>(),
        std::any::type_name::<T::Output>(),
    ]
}

/// What tells a task of one build from a task of the same name in
/// another: its input and output types, by name (`std::any::type_name`,
/// which may also change with the compiler), its declared version, and a
/// hash of its function's code as written in `task!` (not of the
/// functions it calls: the version is for those).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fingerprint<'a> {
    pub(crate) name: &'a str,
    pub(crate) input: &'a str,
    pub(crate) output: &'a str,
    pub(crate) version: u32,
    pub(crate) code: u64,
}

/// Every task linked into this program: one entry per [`task!`](crate::task!),
/// gathered by the linker.
#[doc(hidden)]
#[linkme::distributed_slice]
// linkme declares the table with `link_section`s, which the lint counts as
// unsafe code; there is none of ours, and the linker's gathering is the
// point.
#[allow(unsafe_code)]
pub static TASKS: [TaskEntry];

/// Every task linked into this program, by name.
pub(crate) fn registry() -> &'static HashMap<&'static str, &'static TaskEntry> {
    static REGISTRY: OnceLock<HashMap<&'static str, &'static TaskEntry>> = OnceLock::new();
    REGISTRY.get_or_init(|| TASKS.iter().map(|entry| (entry.name, entry)).collect())
}

/// How to run the task of this name, if this program links it.
pub(crate) fn find(name: &str) -> Option<RunEncoded> {
    registry().get(name).map(|entry| entry.run)
}

/// Makes the program keep `T`'s table entry: called wherever the pool
/// sends `T` (see [`Task::registration`]).
pub(crate) fn keep_linked<T: Task>() {
    std::hint::black_box(T::registration());
}

/// Makes this program link the named tasks, so that a worker program can
/// run them: a statement for the worker program's `main`.
///
/// The linker keeps only what a program refers to: a worker program that
/// depends on a crate of tasks but never names one of them has none of
/// them (the crate is not even linked), and a pool that sends it one
/// fails the call at once with
/// [`ErrorKind::UnknownTask`](crate::ErrorKind::UnknownTask), whose
/// message says to name the task here. Programs that start pools need
/// nothing of the kind: every call names its task.
///
/// # Examples
///
/// A worker program for a pool that runs `mytasks::cube` (here a module;
/// in practice a crate the program depends on):
///
/// ```
/// mod mytasks {
///     pool::task! { pub fn cube(x: u64) -> u64 { x * x * x } }
/// }
///
/// fn main() {
///     pool::link_tasks!(mytasks::cube);
///     assert!(pool::registered_tasks().iter().any(|name| name.ends_with("mytasks::cube")));
/// }
/// ```
#[macro_export]
macro_rules! link_tasks {
    ($($task:path),* $(,)?) => {
        $( $crate::__private::link_task(&$task); )*
    };
}

/// The names of every task linked into this program, sorted: what a
/// worker built from it can run.
///
/// # Examples
///
/// ```
/// pool::task! { fn shout(text: String) -> String { text.to_uppercase() } }
///
/// assert!(pool::registered_tasks().iter().any(|name| name.ends_with("::shout")));
/// ```
pub fn registered_tasks() -> Vec<&'static str> {
    let mut names: Vec<_> = registry().keys().copied().collect();
    names.sort_unstable();
    names
}

#[doc(hidden)]
pub fn run_encoded<T: Task>(input: &[u8], out: &mut Vec<u8>) -> Result<(), TaskFailure> {
    let task = T::default();
    run_with(T::NAME, input, out, |input| task.call(input), T::outcome)
}

/// Decodes `name`'s input, runs `call` on it (a panic fails the input),
/// splits what it returned with `outcome`, and encodes the output.
pub(crate) fn run_with<I: DeserializeOwned, R, O: Serialize>(
    name: &str,
    input: &[u8],
    out: &mut Vec<u8>,
    call: impl FnOnce(I) -> R,
    outcome: impl FnOnce(R) -> Result<O, String>,
) -> Result<(), TaskFailure> {
    let input: I = connection::decode(input).map_err(|err| {
        TaskFailure::new(FailureKind::Decode, format!("input of {name}: {err:#}"))
    })?;
    let returned = catch_panic(|| call(input))?;
    let output = outcome(returned).map_err(|msg| TaskFailure::new(FailureKind::Failed, msg))?;
    // Straight into the results message: a large output is written once,
    // into memory the worker keeps, not into a fresh buffer first.
    connection::encode_into(&output, out)
        .map_err(|err| TaskFailure::new(FailureKind::Encode, format!("output of {name}: {err:#}")))
}

thread_local! {
    /// Where this thread last panicked, and its backtrace if enabled, as
    /// the panic hook of a worker saw it ([`note_panic`]).
    static LAST_PANIC: RefCell<Option<(PanicLocation, Backtrace)>> = const { RefCell::new(None) };
}

/// A worker's panic hook: keeps the panic's location and backtrace for
/// [`catch_panic`] to send with the message. The backtrace is captured if
/// `RUST_BACKTRACE` or `RUST_LIB_BACKTRACE` enables it in this process (a
/// check of a cached setting otherwise), and resolved only if the panic
/// reaches [`catch_panic`].
pub(crate) fn note_panic(info: &panic::PanicHookInfo<'_>) {
    let Some(location) = info.location() else {
        return;
    };
    let noted = (
        PanicLocation::new(location.file(), location.line(), location.column()),
        Backtrace::capture(),
    );
    // `try_`: a panic while the thread's locals are being destroyed must
    // not become a second panic in the hook.
    let _ = LAST_PANIC.try_with(|last| {
        if let Ok(mut last) = last.try_borrow_mut() {
            *last = Some(noted);
        }
    });
}

fn take_noted_panic() -> Option<(PanicLocation, Backtrace)> {
    LAST_PANIC
        .try_with(|last| last.try_borrow_mut().ok()?.take())
        .ok()
        .flatten()
}

/// Runs a task's function, turning a panic into a failure with its
/// message, and with its location and backtrace where a panic hook noted
/// them ([`note_panic`], installed in workers).
pub(crate) fn catch_panic<R>(run: impl FnOnce() -> R) -> Result<R, TaskFailure> {
    // A panic the task caught itself must not be taken for this one.
    drop(take_noted_panic());
    panic::catch_unwind(AssertUnwindSafe(|| __pool_begin_task(run))).map_err(|payload| {
        let mut failure = TaskFailure::new(FailureKind::Panicked, panic_message(&*payload));
        failure.panic = take_noted_panic().map(|(location, backtrace)| RemotePanic {
            location,
            backtrace: (backtrace.status() == BacktraceStatus::Captured)
                .then(|| task_frames(&backtrace.to_string())),
        });
        failure
    })
}

/// Marks where the pool calls a task, for [`task_frames`] (as std's
/// `__rust_begin_short_backtrace` does for threads): never inlined, and
/// not a tail call, so that it stays a frame of its own.
#[inline(never)]
fn __pool_begin_task<R>(run: impl FnOnce() -> R) -> R {
    let returned = run();
    std::hint::black_box(());
    returned
}

/// The frames of a rendered backtrace that concern the task: from the
/// panic (std's `__rust_end_short_backtrace` marks where its panic
/// machinery ends) down to the task's function (the frame above
/// [`__pool_begin_task`]), which is what std's short backtraces show. A
/// backtrace without the markers (symbols stripped) is kept whole.
fn task_frames(rendered: &str) -> String {
    let frames = split_frames(rendered);
    let first = frames
        .iter()
        .position(|frame| frame.contains("__rust_end_short_backtrace"))
        .map_or(0, |end| end + 1);
    let last = frames
        .iter()
        .position(|frame| frame.contains("__pool_begin_task"))
        .filter(|&begin| begin > first)
        .unwrap_or(frames.len());
    frames[first..last].concat()
}

/// A rendered backtrace cut into frames: each starts with a line
/// `  N: symbol`, followed by its `at file:line` lines.
fn split_frames(rendered: &str) -> Vec<&str> {
    let mut frames = Vec::new();
    let mut start = 0;
    let mut at = 0;
    for line in rendered.split_inclusive('\n') {
        let numbered = line
            .trim_start()
            .split_once(": ")
            .is_some_and(|(number, _)| {
                !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())
            });
        if numbered && at > start {
            frames.push(&rendered[start..at]);
            start = at;
        }
        at += line.len();
    }
    if at > start {
        frames.push(&rendered[start..at]);
    }
    frames
}

/// The text of a panic, as `panic!` formatted it.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&'static str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic with a payload that is not a string".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::task! {
        fn halve(x: i32) -> Result<i32, String> {
            if x % 2 == 0 { Ok(x / 2) } else { Err(format!("{x} is odd")) }
        }
    }

    crate::task! {
        fn explode(_x: ()) -> u8 { panic!("boom on line {}", line!()) }
    }

    crate::task! {
        fn add((a, b): (u8, u8)) -> u8 { a.wrapping_add(b) }
    }

    fn run<T: Task>(input: &T::Input) -> Result<Vec<u8>, TaskFailure> {
        let mut out = Vec::new();
        let run = find(T::NAME).unwrap();
        run(&connection::encode(input).unwrap(), &mut out)?;
        Ok(out)
    }

    #[test]
    fn tasks_register_under_their_module_path() {
        assert_eq!(halve::NAME, "pool::task::tests::halve");
        assert!(registered_tasks().contains(&"pool::task::tests::add"));
    }

    #[test]
    fn outputs_and_errors_cross_the_encoding() {
        let out = run::<halve>(&8).unwrap();
        assert_eq!(connection::decode::<i32>(&out).unwrap(), 4);
        let failure = run::<halve>(&3).unwrap_err();
        assert_eq!(failure.kind, FailureKind::Failed);
        assert_eq!(failure.message, "3 is odd");
        let out = run::<add>(&(250, 10)).unwrap();
        assert_eq!(connection::decode::<u8>(&out).unwrap(), 4);
    }

    #[test]
    fn panics_become_failures_with_the_message_and_location() {
        let hook = panic::take_hook();
        panic::set_hook(Box::new(note_panic));
        let failure = run::<explode>(&()).unwrap_err();
        panic::set_hook(hook);
        assert_eq!(failure.kind, FailureKind::Panicked);
        let location = failure.panic.expect("a location").location;
        assert_eq!(location.file(), file!());
        assert_eq!(failure.message, format!("boom on line {}", location.line()));
    }

    #[test]
    fn a_backtrace_keeps_the_frames_between_the_panic_and_the_task() {
        let rendered = "   0: std::backtrace::Backtrace::capture\n\
                        \x20            at /rustc/std/src/backtrace.rs:296:9\n\
                        \x20  1: std::sys::backtrace::__rust_end_short_backtrace\n\
                        \x20  2: rust_begin_unwind\n\
                        \x20  3: demo::parse\n\
                        \x20            at src/main.rs:12:5\n\
                        \x20  4: pool::task::__pool_begin_task\n\
                        \x20  5: main\n";
        assert_eq!(
            task_frames(rendered),
            "   2: rust_begin_unwind\n   3: demo::parse\n             at src/main.rs:12:5\n"
        );
        let stripped = "   0: <unknown>\n   1: <unknown>\n";
        assert_eq!(task_frames(stripped), stripped);
    }

    #[test]
    fn undecodable_input_is_a_decode_failure() {
        let mut out = Vec::new();
        let failure = find(halve::NAME).unwrap()(&[0xff, 0xff], &mut out).unwrap_err();
        assert_eq!(failure.kind, FailureKind::Decode);
        assert!(failure.message.contains("halve"), "{}", failure.message);
    }

    #[test]
    fn failure_codes_round_trip() {
        for kind in [
            FailureKind::Failed,
            FailureKind::Panicked,
            FailureKind::Decode,
            FailureKind::Encode,
            FailureKind::UnknownTask,
            FailureKind::TooLarge,
            FailureKind::Returned,
        ] {
            assert_eq!(FailureKind::from_code(kind as u8), Some(kind));
        }
        assert_eq!(FailureKind::from_code(0), None);
    }
}
