//! Tasks: named functions that parent and worker both know.
//!
//! [`task!`](crate::task!) turns a function into a unit struct that
//! implements [`Task`] and registers it by name (through `inventory`), so
//! that a worker process, which is the same program or one that links the
//! same task crate, can find the function from the name the parent sends.

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A function that a pool can run in its workers, usually defined with
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
pub trait Task: Copy + Default + Send + Sync + 'static {
    /// The argument: several arguments are a tuple.
    type Input: Serialize + DeserializeOwned;
    /// The value a successful run produces.
    type Output: Serialize + DeserializeOwned;
    /// What the function returns: `Output`, or `Result<Output, E>` for a
    /// task that can fail.
    type Returned;
    /// The name the worker finds the task by: the defining module's path
    /// and the function's name.
    const NAME: &'static str;

    /// Runs the function in this process.
    fn call(&self, input: Self::Input) -> Self::Returned;

    /// Splits what the function returned into an output or the message of
    /// its error.
    fn outcome(returned: Self::Returned) -> Result<Self::Output, String>;
}

/// Defines a task: a function that a pool runs in its workers by name.
///
/// The function takes one argument (a tuple for several, which a pattern can
/// take apart) and returns either a value or `Result<T, E>` with
/// `E: Display`; an `Err` becomes that input's
/// [`ErrorKind::TaskFailed`](crate::ErrorKind::TaskFailed) error, carrying
/// the error's text. Spell the fallible return type `Result<T, E>` (not an
/// alias such as `io::Result<T>`), since the macro recognises it by its shape.
///
/// The expansion is a unit struct of the function's name implementing
/// [`Task`], with an inherent `call` that runs the function in-process, and
/// a registration that lets workers find it.
///
/// # Examples
///
/// ```
/// pool::task! {
///     /// Sums a range of numbers.
///     pub fn sum_range((start, end): (u64, u64)) -> u64 {
///         (start..end).sum()
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
/// assert_eq!(sum_range.call((1, 5)), 10);
/// assert_eq!(parse.call(" 12 ".into()), Ok(12));
/// assert!(parse.call("x".into()).is_err());
/// ```
#[macro_export]
macro_rules! task {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident ($arg:tt : $input:ty) -> Result<$output:ty, $error:ty> $body:block
    ) => {
        $crate::task! {
            @define [$(#[$meta])*] $vis $name ($arg : $input)
            ($output) (::core::result::Result<$output, $error>) $body
            |returned| returned.map_err(|err| ::std::string::ToString::to_string(&err))
        }
    };
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident ($arg:tt : $input:ty) -> $output:ty $body:block
    ) => {
        $crate::task! {
            @define [$(#[$meta])*] $vis $name ($arg : $input)
            ($output) ($output) $body
            |returned| ::core::result::Result::Ok(returned)
        }
    };
    (
        @define [$($meta:tt)*] $vis:vis $name:ident ($arg:tt : $input:ty)
        ($output:ty) ($returned:ty) $body:block
        |$returned_value:ident| $outcome:expr
    ) => {
        $($meta)*
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        $vis struct $name;

        impl $name {
            /// Runs the task in this process, as a plain function call.
            #[allow(dead_code)]
            $vis fn call(&self, $arg: $input) -> $returned $body
        }

        impl $crate::Task for $name {
            type Input = $input;
            type Output = $output;
            type Returned = $returned;
            const NAME: &'static str = concat!(module_path!(), "::", stringify!($name));

            fn call(&self, input: $input) -> $returned {
                $name::call(self, input)
            }

            fn outcome($returned_value: $returned) -> ::core::result::Result<$output, ::std::string::String> {
                $outcome
            }
        }

        $crate::__private::inventory::submit! {
            $crate::__private::TaskEntry::new(
                <$name as $crate::Task>::NAME,
                $crate::__private::run_encoded::<$name>,
            )
        }
    };
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

/// A task's failure inside a worker: the kind and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    pub(crate) kind: FailureKind,
    pub(crate) message: String,
}

impl TaskFailure {
    pub(crate) fn new(kind: FailureKind, message: impl Into<String>) -> TaskFailure {
        TaskFailure {
            kind,
            message: message.into(),
        }
    }
}

/// Runs a task on an encoded input and appends the encoded output to `out`.
pub type RunEncoded = fn(&[u8], &mut Vec<u8>) -> Result<(), TaskFailure>;

/// One registered task: its name and how to run it on encoded input.
/// Made by [`task!`](crate::task!); not meant to be built by hand.
#[derive(Debug)]
pub struct TaskEntry {
    name: &'static str,
    run: RunEncoded,
}

impl TaskEntry {
    #[doc(hidden)]
    pub const fn new(name: &'static str, run: RunEncoded) -> TaskEntry {
        TaskEntry { name, run }
    }
}

inventory::collect!(TaskEntry);

/// Every task linked into this program, by name.
pub(crate) fn registry() -> &'static HashMap<&'static str, RunEncoded> {
    static REGISTRY: OnceLock<HashMap<&'static str, RunEncoded>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        inventory::iter::<TaskEntry>
            .into_iter()
            .map(|entry| (entry.name, entry.run))
            .collect()
    })
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
    let input: T::Input = connection::decode(input).map_err(|err| {
        TaskFailure::new(
            FailureKind::Decode,
            format!("input of {}: {err:#}", T::NAME),
        )
    })?;
    let task = T::default();
    let returned = panic::catch_unwind(AssertUnwindSafe(|| task.call(input)))
        .map_err(|payload| TaskFailure::new(FailureKind::Panicked, panic_message(&*payload)))?;
    let output = T::outcome(returned).map_err(|msg| TaskFailure::new(FailureKind::Failed, msg))?;
    let encoded = connection::encode(&output).map_err(|err| {
        TaskFailure::new(
            FailureKind::Encode,
            format!("output of {}: {err:#}", T::NAME),
        )
    })?;
    out.extend_from_slice(&encoded);
    Ok(())
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
        fn explode(_x: ()) -> u8 { panic!("boom {}", 7) }
    }

    crate::task! {
        fn add((a, b): (u8, u8)) -> u8 { a.wrapping_add(b) }
    }

    fn run<T: Task>(input: &T::Input) -> Result<Vec<u8>, TaskFailure> {
        let mut out = Vec::new();
        let entry = registry()[T::NAME];
        entry(&connection::encode(input).unwrap(), &mut out)?;
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
    fn panics_become_failures_with_the_message() {
        let hook = panic::take_hook();
        panic::set_hook(Box::new(|_| {}));
        let failure = run::<explode>(&()).unwrap_err();
        panic::set_hook(hook);
        assert_eq!(failure.kind, FailureKind::Panicked);
        assert_eq!(failure.message, "boom 7");
    }

    #[test]
    fn undecodable_input_is_a_decode_failure() {
        let mut out = Vec::new();
        let failure = registry()[halve::NAME](&[0xff, 0xff], &mut out).unwrap_err();
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
