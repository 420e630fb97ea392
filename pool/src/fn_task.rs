//! Plain functions and non-capturing closures as tasks
//! ([`Pool::map_fn`](crate::Pool::map_fn) and its kin), for pools whose
//! workers run this very image, as the `procspawn` crate runs function
//! pointers.
//!
//! A function pointer cannot travel by name, so its input travels with
//! two offsets into this program's code: of the function, and of
//! [`call_fn`] for its input and output types, which decodes the input,
//! calls the function and encodes its output. Each offset is counted from
//! where the loader put the image, so that a worker that loaded the same
//! image elsewhere (ASLR) finds the same code. One registered task,
//! [`NAME`], receives every such input in the worker and jumps there.
//!
//! That jump is sound only in a worker that runs the very image its pool
//! runs: the pool allows these calls only when its workers are local and
//! start from `/proc/self/exe` (not a `worker_program`, not remote), and a
//! worker runs them only when its pool started it over an inherited
//! connection and sent, in its setup, a build id equal to its own.
//! Everything else is refused with an error that says to use
//! [`task!`](crate::task!). This module and `sys::image` hold the only
//! `unsafe` of it.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::sys;
use crate::task::{self, FailureKind, Task, TaskEntry, TaskFailure};

/// The name under which inputs of functions passed by pointer travel.
pub(crate) const NAME: &str = "pool::fn_task";

/// The offsets of a function and of its [`call_fn`], little-endian: 16
/// bytes that precede the input's own encoding.
type Pointers = [u8; 16];

/// How a worker calls [`call_fn`] for some input and output types: the
/// function's address, the encoded input, where the output goes.
type Trampoline = fn(usize, &[u8], &mut Vec<u8>) -> std::result::Result<(), TaskFailure>;

/// What the pool sends to run a plain function or non-capturing closure
/// `fn(I) -> O` by pointer: made by [`Pool::map_fn`](crate::Pool::map_fn),
/// [`imap_fn`](crate::Pool::imap_fn) and
/// [`apply_async_fn`](crate::Pool::apply_async_fn), not by hand (its
/// input carries offsets into this program's code).
pub struct FnTask<I, O>(PhantomData<fn(I) -> O>);

impl<I, O> Clone for FnTask<I, O> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<I, O> Copy for FnTask<I, O> {}

impl<I, O> Default for FnTask<I, O> {
    fn default() -> Self {
        FnTask(PhantomData)
    }
}

impl<I, O> std::fmt::Debug for FnTask<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FnTask<{}>", std::any::type_name::<fn(I) -> O>())
    }
}

impl<I, O> Task for FnTask<I, O>
where
    I: Serialize + DeserializeOwned + 'static,
    O: Serialize + DeserializeOwned + 'static,
{
    type Input = FnInput<I, O>;
    type Output = O;
    type Returned = O;
    const NAME: &'static str = NAME;

    /// Runs the function in this process, which made the pointers.
    fn call(
        &self,
        FnInput {
            pointers, input, ..
        }: FnInput<I, O>,
    ) -> O {
        let (function, _) = addresses(&pointers).expect("pointers made by this process");
        // SAFETY: an `FnInput<I, O>` is made only by this module, with
        // the pointers `pointers::<I, O>` made from a `fn(I) -> O` of this
        // very process (its fields are private and it cannot be decoded).
        let function = unsafe { std::mem::transmute::<usize, fn(I) -> O>(function) };
        function(input)
    }

    fn outcome(returned: O) -> std::result::Result<O, String> {
        Ok(returned)
    }

    fn registration() -> &'static TaskEntry {
        &FN_TASK
    }
}

#[linkme::distributed_slice(task::TASKS)]
static FN_TASK: TaskEntry = TaskEntry::new(NAME, run_by_pointer, 0, 0, || {
    ["(offsets, input) of a fn", "the fn's output"]
});

/// An input of a function sent by pointer, with the function's offsets:
/// made only by this crate, for the function the caller passed (its
/// fields are private, and it cannot be decoded, so that no safe code can
/// make one that points elsewhere).
#[derive(Debug)]
pub struct FnInput<I, O> {
    pointers: Pointers,
    input: I,
    /// The function's output type: the pointers are of a `fn(I) -> O`.
    output: PhantomData<fn() -> O>,
}

impl<I: Serialize, O> Serialize for FnInput<I, O> {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut tuple = serializer.serialize_tuple(2)?;
        tuple.serialize_element(&self.pointers)?;
        tuple.serialize_element(&self.input)?;
        tuple.end()
    }
}

/// Never decoded: a worker reads the offsets from the bytes itself
/// (`run_by_pointer`); decoding one would forge pointers.
impl<'de, I, O> serde::Deserialize<'de> for FnInput<I, O> {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> std::result::Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "an input of a function sent by pointer cannot be decoded",
        ))
    }
}

/// The inputs of [`Pool::imap_fn`](crate::Pool::imap_fn) (and the
/// others): each of `I`'s items with the function's offsets before it.
#[derive(Debug)]
pub struct FnInputs<It, O> {
    pointers: Pointers,
    inputs: It,
    output: PhantomData<fn() -> O>,
}

impl<It: Iterator, O> Iterator for FnInputs<It, O> {
    type Item = FnInput<It::Item, O>;

    fn next(&mut self) -> Option<Self::Item> {
        let pointers = self.pointers;
        self.inputs.next().map(|input| FnInput {
            pointers,
            input,
            output: PhantomData,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inputs.size_hint()
    }
}

impl<It, O> FnInputs<It, O> {
    pub(crate) fn new(pointers: Pointers, inputs: It) -> FnInputs<It, O> {
        FnInputs {
            pointers,
            inputs,
            output: PhantomData,
        }
    }
}

/// `input` of the function `pointers` name.
pub(crate) fn input<I, O>(pointers: Pointers, input: I) -> FnInput<I, O> {
    FnInput {
        pointers,
        input,
        output: PhantomData,
    }
}

/// The pointers for `function`, if this pool may send them (`refusal` is
/// why it may not); an error that says to use `task!` otherwise.
pub(crate) fn pointers<I, O>(function: fn(I) -> O, refusal: Option<&str>) -> Result<Pointers>
where
    I: DeserializeOwned + 'static,
    O: Serialize + 'static,
{
    let refused = |why: &str| {
        Error::new(
            ErrorKind::UnknownTask,
            format!(
                "a plain function or closure ({}) cannot run in this pool: {why}; nothing \
                 was run: declare the function with `pool::task!` and pass the task instead",
                std::any::type_name::<fn(I) -> O>()
            ),
        )
        .with_task(NAME)
    };
    if let Some(why) = refusal {
        return Err(refused(why));
    }
    let trampoline = call_fn::<I, O> as Trampoline;
    match (
        sys::code_offset(function as usize),
        sys::code_offset(trampoline as usize),
    ) {
        (Some(function), Some(trampoline)) => {
            let mut pointers = [0; 16];
            pointers[..8].copy_from_slice(&function.to_le_bytes());
            pointers[8..].copy_from_slice(&trampoline.to_le_bytes());
            Ok(pointers)
        }
        _ => Err(refused(
            "the function is not in this program's executable code (a shared library's?)",
        )),
    }
}

/// The addresses in this process of the function and the trampoline that
/// `pointers` name, if both lie in this program's executable code.
fn addresses(pointers: &Pointers) -> Option<(usize, usize)> {
    let (function, trampoline) = pointers.split_at(8);
    let offset = |bytes: &[u8]| u64::from_le_bytes(bytes.try_into().unwrap_or_default());
    Some((
        sys::code_address(offset(function))?,
        sys::code_address(offset(trampoline))?,
    ))
}

/// Set in a worker that its pool started over an inherited connection
/// (not a remote worker), and whose pool runs this very build.
static POOL_RUNS_THIS_IMAGE: AtomicBool = AtomicBool::new(false);
/// Set in a worker started by a local pool, before its setup.
static STARTED_LOCALLY: AtomicBool = AtomicBool::new(false);

/// Notes that this worker was started by a local pool, over a connection
/// inherited from it.
pub(crate) fn started_locally() {
    STARTED_LOCALLY.store(true, Ordering::Relaxed);
}

/// Notes the build id the pool sent in its setup: a local worker of the
/// same build runs the pool's functions by pointer.
pub(crate) fn note_pool_build(pool_build: &str) {
    let same = STARTED_LOCALLY.load(Ordering::Relaxed) && sys::is_this_build(pool_build);
    POOL_RUNS_THIS_IMAGE.store(same, Ordering::Relaxed);
}

/// The registered task behind [`NAME`]: checks that the pointers may be
/// followed here, then calls the function through its trampoline.
fn run_by_pointer(input: &[u8], out: &mut Vec<u8>) -> std::result::Result<(), TaskFailure> {
    // Outside a worker, the pointers come from this process (a test's
    // direct call); in a worker, from its pool.
    if crate::role::in_worker() && !POOL_RUNS_THIS_IMAGE.load(Ordering::Relaxed) {
        return Err(TaskFailure::new(
            FailureKind::UnknownTask,
            "this worker does not run plain functions or closures sent by pointer: it is not \
             a local worker running its pool's own build (a worker program, a remote worker, \
             or another build); declare the function with `pool::task!` and pass the task \
             instead",
        ));
    }
    run_here(input, out)
}

/// Calls the function of an input this very process made (a call of an
/// inline pool, run on the calling thread), or one whose pool was checked
/// to run this image ([`run_by_pointer`]).
pub(crate) fn run_here(input: &[u8], out: &mut Vec<u8>) -> std::result::Result<(), TaskFailure> {
    let refused = |why: &str| {
        TaskFailure::new(
            FailureKind::UnknownTask,
            format!(
                "a plain function or closure sent by pointer cannot run here: {why}; \
                 declare the function with `pool::task!` and pass the task instead"
            ),
        )
    };
    let Some((pointers, input)) = input.split_first_chunk::<16>() else {
        return Err(TaskFailure::new(
            FailureKind::Decode,
            format!("input of {NAME}: shorter than its 16 bytes of offsets"),
        ));
    };
    let Some((function, trampoline)) = addresses(pointers) else {
        return Err(refused(
            "its offsets do not lie in this program's executable code",
        ));
    };
    // SAFETY: the pointers were made by this process (an inline pool's
    // call), or this process runs the very image its pool runs (checked
    // by `run_by_pointer`: the pool started it from `/proc/self/exe`, over
    // a private socketpair the pool created, and its build id equals the
    // pool's), so the offsets, made by `pointers::<I, O>` in the pool
    // from `call_fn::<I, O>`, name that function's code here, and the
    // address lies in this image's executable segment. Only the pool can
    // send on that connection, and it already chose which program this
    // process runs: following its pointers trusts it with nothing more.
    let trampoline = unsafe { std::mem::transmute::<usize, Trampoline>(trampoline) };
    trampoline(function, input, out)
}

/// Decodes an `I`, calls `function` (a `fn(I) -> O`) on it, and encodes
/// its output: what a worker jumps to, one for each pair of types.
fn call_fn<I: DeserializeOwned, O: Serialize>(
    function: usize,
    input: &[u8],
    out: &mut Vec<u8>,
) -> std::result::Result<(), TaskFailure> {
    // SAFETY: reached only through `run_by_pointer` with the address that
    // `pointers::<I, O>` paired with this very instance of `call_fn`: the
    // address of a `fn(I) -> O` in the same image.
    let function = unsafe { std::mem::transmute::<usize, fn(I) -> O>(function) };
    task::run_with(NAME, input, out, function, Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(x: u64) -> u64 {
        x * x
    }

    #[test]
    fn a_function_runs_by_its_pointers_in_this_process() {
        let squared = pointers(square, None).unwrap();
        let mut out = Vec::new();
        let encoded = connection::encode(&input::<u64, u64>(squared, 7)).unwrap();
        assert_eq!(encoded[16..], connection::encode(&7u64).unwrap());
        assert!(connection::decode::<FnInput<u64, u64>>(&encoded).is_err());
        run_by_pointer(&encoded, &mut out).unwrap();
        assert_eq!(connection::decode::<u64>(&out).unwrap(), 49);
        let closure = pointers(|text: String| text.len(), None).unwrap();
        assert_eq!(
            FnTask::<String, usize>::default().call(input(closure, "four".into())),
            4
        );
    }

    #[test]
    fn pointers_outside_the_code_and_short_inputs_are_refused() {
        let mut out = Vec::new();
        let failure = run_by_pointer(&[0; 16], &mut out).unwrap_err();
        assert_eq!(failure.kind, FailureKind::UnknownTask);
        assert!(
            failure.message.contains("pool::task!"),
            "{}",
            failure.message
        );
        let failure = run_by_pointer(&[0; 3], &mut out).unwrap_err();
        assert_eq!(failure.kind, FailureKind::Decode);
        let err = pointers(square, Some("its workers run another program")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnknownTask);
        assert!(err.to_string().contains("pool::task!"), "{err}");
    }
}
