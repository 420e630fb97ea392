//! Plain functions and non-capturing closures as tasks: the calls that
//! send a function by pointer ([`crate::fn_task`]), and when a pool may.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::async_result::AsyncResult;
use super::imap::Imap;
use super::pool::Pool;
use super::sink::ResultCell;
use crate::error::Result;
use crate::fn_task::{self, FnInputs, FnTask};

/// What [`Pool::imap_fn`] returns: an [`Imap`] of a function `fn(I) -> O`
/// sent by pointer, over the inputs `It`.
pub type FnImap<'p, I, O, It> = Imap<'p, FnTask<I, O>, FnInputs<It, O>>;

impl Pool {
    /// [`map`](Pool::map) for a plain `fn` or a closure that captures
    /// nothing: runs `function` on every input in the workers and returns
    /// the outputs in input order.
    ///
    /// The function travels by pointer, so this works only where every
    /// worker runs this very program's image: a pool of local workers
    /// (they start from `/proc/self/exe`, and check the pool's build id
    /// when they join). A pool with a
    /// [`worker_program`](crate::PoolBuilder::worker_program), or one that
    /// takes remote workers ([`listen`](crate::PoolBuilder::listen),
    /// Slurm), refuses the call at once with
    /// [`ErrorKind::UnknownTask`](crate::ErrorKind::UnknownTask), running
    /// nothing: declare the function with [`task!`](crate::task!) there.
    /// A panic fails its input alone, as a task's does.
    ///
    /// ```
    /// fn cube(x: u64) -> u64 {
    ///     x * x * x
    /// }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(2)?;
    ///     assert_eq!(pool.map_fn(|x: u64| x * x, 1..4)?, [1, 4, 9]);
    ///     assert_eq!(pool.map_fn(cube, [2, 3])?, [8, 27]);
    ///     Ok(())
    /// }
    /// ```
    pub fn map_fn<I, O>(
        &self,
        function: fn(I) -> O,
        inputs: impl IntoIterator<Item = I>,
    ) -> Result<Vec<O>>
    where
        I: Serialize + DeserializeOwned + 'static,
        O: Serialize + DeserializeOwned + 'static,
    {
        let pointers = fn_task::pointers(function, self.fn_refusal.as_deref())?;
        self.map(
            FnTask::default(),
            FnInputs::new(pointers, inputs.into_iter()),
        )
    }

    /// [`imap`](Pool::imap) for a plain `fn` or a closure that captures
    /// nothing, in pools whose workers run this very program (see
    /// [`map_fn`](Pool::map_fn)); elsewhere the call fails at once.
    ///
    /// ```
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(2)?;
    ///     let evens: Vec<u64> = pool
    ///         .imap_fn(|x: u64| 2 * x, 0..)?
    ///         .take(3)
    ///         .collect::<Result<_, _>>()?;
    ///     assert_eq!(evens, [0, 2, 4]);
    ///     Ok(())
    /// }
    /// ```
    pub fn imap_fn<I, O, It>(
        &self,
        function: fn(I) -> O,
        inputs: It,
    ) -> Result<FnImap<'_, I, O, It::IntoIter>>
    where
        I: Serialize + DeserializeOwned + 'static,
        O: Serialize + DeserializeOwned + 'static,
        It: IntoIterator<Item = I>,
    {
        let pointers = fn_task::pointers(function, self.fn_refusal.as_deref())?;
        Ok(self.imap(
            FnTask::default(),
            FnInputs::new(pointers, inputs.into_iter()),
        ))
    }

    /// [`apply`](Pool::apply) for a plain `fn` or a closure that captures
    /// nothing (see [`map_fn`](Pool::map_fn)).
    ///
    /// ```
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(1)?;
    ///     assert_eq!(pool.apply_fn(|name: String| format!("hello, {name}"), "you".into())?, "hello, you");
    ///     Ok(())
    /// }
    /// ```
    pub fn apply_fn<I, O>(&self, function: fn(I) -> O, input: I) -> Result<O>
    where
        I: Serialize + DeserializeOwned + 'static,
        O: Serialize + DeserializeOwned + 'static,
    {
        self.apply_async_fn(function, input).get(None)
    }

    /// [`apply_async`](Pool::apply_async) for a plain `fn` or a closure
    /// that captures nothing (see [`map_fn`](Pool::map_fn)); a refusal
    /// arrives through the handle, with nothing run.
    ///
    /// ```
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(2)?;
    ///     let pending = pool.apply_async_fn(|text: String| text.len(), "four".into());
    ///     assert_eq!(pending.get(None)?, 4);
    ///     Ok(())
    /// }
    /// ```
    pub fn apply_async_fn<I, O>(&self, function: fn(I) -> O, input: I) -> AsyncResult<O>
    where
        I: Serialize + DeserializeOwned + 'static,
        O: Serialize + DeserializeOwned + 'static,
    {
        match fn_task::pointers(function, self.fn_refusal.as_deref()) {
            Ok(pointers) => self.apply_async(FnTask::default(), fn_task::input(pointers, input)),
            Err(err) => {
                let slot = ResultCell::new();
                slot.complete(Err(err));
                AsyncResult::new(Arc::clone(&slot), fn_task::NAME, None)
            }
        }
    }
}
