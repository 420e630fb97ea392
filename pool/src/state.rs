//! Per-worker state: a value a worker builds once, lends to every task
//! that asks for it, and drops when it retires.
//!
//! Why a trait on the value's type rather than a `static` the user
//! declares or an argument `task!` recognises: the type says once how it
//! is built (`build`, or `install` from an initializer that has the
//! input it needs), any task borrows it with `T::with(|value| ..)` with no
//! declaration of its own, the borrow's extent is the closure's (so it can
//! be `&mut`, and the value needs neither `Send` nor `Sync`), and the pool
//! knows every value so it can drop them when the worker retires, which a
//! user's `static` never is. `task!` is left as it was.
//!
//! The values live on the thread that runs tasks (a worker's only task
//! thread): thread-local storage, taken out while borrowed, so a nested
//! `with` of the same type is an error rather than a second `&mut`.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};

use crate::error::{Error, ErrorKind, Result};

/// What [`WorkerState::build`] may fail with: any error (`?` converts
/// `io::Error`, `anyhow::Error`, a `String`, ...).
pub type BuildError = Box<dyn std::error::Error + Send + Sync>;

/// A value each worker builds once and keeps until it retires: a model, a
/// database connection, a parsed dictionary. Tasks borrow it with
/// [`with`](WorkerState::with); nobody declares a `static`.
///
/// - **Built** on first use in each worker by [`build`](WorkerState::build),
///   or by the pool's [initializer](crate::PoolBuilder::initializer) with
///   [`install`](WorkerState::install) when it needs the initializer's
///   input (a path, a size, a connection string).
/// - **Kept** for every later input the worker runs: a worker is a
///   process, so each worker has its own, never shared between workers.
/// - **Dropped** when the worker retires (the pool closes, the worker is
///   replaced after [`max_tasks_per_child`](crate::PoolBuilder::max_tasks_per_child)
///   or [`max_worker_memory`](crate::PoolBuilder::max_worker_memory)), in
///   the reverse order of building, so a `Drop` that flushes or closes
///   runs. A worker that is killed (a timeout, a crash, `terminate`) runs
///   no destructor.
///
/// Outside a worker (a task's [`call`](crate::Task::call) in the pool's
/// process) the value is per thread, built the same way.
///
/// # Examples
///
/// ```
/// use std::collections::HashMap;
/// use pool::WorkerState;
///
/// /// Loaded once per worker, however many inputs it runs.
/// struct Dictionary(HashMap<String, u32>);
///
/// impl WorkerState for Dictionary {
///     fn build() -> Result<Self, pool::BuildError> {
///         // A real one would read a file: `std::fs::read_to_string(path)?`.
///         let words = ["apple", "pear", "plum"].iter().enumerate();
///         Ok(Dictionary(words.map(|(i, w)| (w.to_string(), i as u32)).collect()))
///     }
/// }
///
/// pool::task! {
///     /// The word's number in the dictionary, if it has one.
///     fn lookup(word: String) -> Result<Option<u32>, pool::Error> {
///         Dictionary::with(|dict| dict.0.get(&word).copied())
///     }
/// }
///
/// let pool = pool::Pool::new(2)?;
/// let words = ["pear", "fig"].map(String::from);
/// assert_eq!(pool.map(lookup, words)?, [Some(1), None]);
/// # Ok::<(), pool::Error>(())
/// ```
///
/// A value built from the initializer's input:
///
/// ```
/// use pool::WorkerState;
///
/// struct Scale(u64);
/// // No `build`: a task that runs before `install` fails with a clear error.
/// impl WorkerState for Scale {}
///
/// pool::task! { fn set_scale(factor: u64) { Scale(factor).install() } }
/// pool::task! {
///     fn scaled(x: u64) -> Result<u64, pool::Error> { Scale::with(|s| x * s.0) }
/// }
///
/// let pool = pool::Pool::builder().processes(1).initializer(set_scale, 10).build()?;
/// assert_eq!(pool.map(scaled, [1, 2])?, [10, 20]);
/// # Ok::<(), pool::Error>(())
/// ```
pub trait WorkerState: Sized + 'static {
    /// Builds the value the first time a task in this worker asks for it,
    /// unless the initializer [installed](WorkerState::install) one. If it
    /// fails, that input fails (see [`with`](WorkerState::with)) and the
    /// next use tries again. By default it fails, saying that the value
    /// must be installed.
    fn build() -> std::result::Result<Self, BuildError> {
        Err(format!(
            "{} has no build(): install one from the pool's initializer",
            std::any::type_name::<Self>()
        )
        .into())
    }

    /// Runs `f` with this worker's value, building it first if there is
    /// none yet. Fails with [`ErrorKind::TaskFailed`] if building fails
    /// (the build error's text), or if `f` (or what it calls) asks for the
    /// same type again while it holds it. A task returning
    /// `Result<_, pool::Error>` (or `anyhow::Result`) passes either on
    /// with `?`. If `f` panics, the value stays.
    fn with<R>(f: impl FnOnce(&mut Self) -> R) -> Result<R> {
        let mut lent = Lent(Some(take::<Self>()?));
        let value = lent
            .0
            .as_mut()
            .unwrap_or_else(|| unreachable!("just taken"));
        Ok(f(value))
    }

    /// Makes `self` this worker's value, dropping the one it replaces (if
    /// any): for an initializer that builds the value from its input.
    fn install(self) {
        let old = STATES.with(|states| {
            let mut states = states.borrow_mut();
            match states
                .iter_mut()
                .find(|s| s.type_id == TypeId::of::<Self>())
            {
                Some(slot) => slot.value.replace(Box::new(self)),
                None => {
                    states.push(Slot::new::<Self>(Box::new(self)));
                    None
                }
            }
        });
        // Dropped outside the borrow: its `Drop` may use other states.
        drop(old);
    }
}

/// A value taken out of its slot for [`WorkerState::with`], put back when
/// this drops: after `f` returns or while a panic unwinds through it.
struct Lent<T: 'static>(Option<Box<T>>);

impl<T: 'static> Drop for Lent<T> {
    fn drop(&mut self) {
        if let Some(value) = self.0.take() {
            put_back(value);
        }
    }
}

/// One type's value, absent while a task borrows it.
struct Slot {
    type_id: TypeId,
    name: &'static str,
    value: Option<Box<dyn Any>>,
}

impl Slot {
    fn new<T: 'static>(value: Box<dyn Any>) -> Slot {
        Slot {
            type_id: TypeId::of::<T>(),
            name: std::any::type_name::<T>(),
            value: Some(value),
        }
    }
}

thread_local! {
    /// In the order the values were first built.
    static STATES: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
}

/// Takes this thread's `T` out of its slot, building it if there is none.
fn take<T: WorkerState>() -> Result<Box<T>> {
    let taken = STATES.with(|states| {
        let mut states = states.borrow_mut();
        match states.iter_mut().find(|s| s.type_id == TypeId::of::<T>()) {
            Some(slot) => match slot.value.take() {
                Some(value) => Ok(Some(value)),
                None => Err(Error::new(
                    ErrorKind::TaskFailed,
                    format!(
                        "{} is already borrowed by an enclosing {0}::with",
                        slot.name
                    ),
                )),
            },
            None => Ok(None),
        }
    })?;
    match taken {
        Some(value) => Ok(value
            .downcast::<T>()
            .unwrap_or_else(|_| unreachable!("slots are keyed by TypeId"))),
        None => {
            // Built outside the borrow: `build` may use other states.
            let value = T::build().map_err(|err| {
                Error::new(
                    ErrorKind::TaskFailed,
                    format!(
                        "building this worker's {}: {err}",
                        std::any::type_name::<T>()
                    ),
                )
            })?;
            Ok(Box::new(value))
        }
    }
}

/// Returns a value taken by [`take`] to its slot (making one the first time).
fn put_back<T: 'static>(value: Box<T>) {
    STATES.with(|states| {
        let mut states = states.borrow_mut();
        match states.iter_mut().find(|s| s.type_id == TypeId::of::<T>()) {
            Some(slot) => slot.value = Some(value),
            None => states.push(Slot::new::<T>(value)),
        }
    });
}

/// Drops this thread's values, the last built first: the worker retires.
/// A destructor that panics is reported on stderr (which the pool
/// forwards) and the others still run.
pub(crate) fn drop_all() {
    loop {
        let Some(slot) = STATES.with(|states| states.borrow_mut().pop()) else {
            return;
        };
        let name = slot.name;
        if panic::catch_unwind(AssertUnwindSafe(move || drop(slot))).is_err() {
            eprintln!("pool worker: dropping its {name} panicked");
        }
    }
}
