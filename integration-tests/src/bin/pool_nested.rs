//! A program whose tasks use pools of their own, inside real workers,
//! printing what those nested calls gave, one `key: value` line at a time,
//! for `tests/pool_nested.rs`.

use pool::{Nested, Pool};

pool::task! {
    /// Squares, and says in which process.
    fn square(x: u64) -> (u64, u32) {
        (x * x, std::process::id())
    }
}

pool::task! {
    /// Panics on 2.
    fn panic_on_two(x: u64) -> u64 {
        if x == 2 {
            panic!("two is right out");
        }
        x
    }
}

pool::task! {
    /// Maps `square` over `0..n` with a pool of its own; returns the
    /// squares, whether every one ran in this worker, and what the inner
    /// pool says of itself.
    fn squares_below(n: u64) -> Result<(Vec<u64>, bool, String), pool::Error> {
        let inner = Pool::new(3)?;
        let here = std::process::id();
        let mut progress = Vec::new();
        let squares = inner.map_with(square, 0..n).progress(|p| progress.push(p.done)).run()?;
        let everywhere_here = squares.iter().all(|&(_, pid)| pid == here);
        let about = format!(
            "inline={} processes={} pids={:?} progress_last={:?}",
            inner.is_inline(),
            inner.processes(),
            inner.worker_pids(),
            progress.last()
        );
        Ok((squares.into_iter().map(|(s, _)| s).collect(), everywhere_here, about))
    }
}

pool::task! {
    /// `apply_async`, `apply`, `imap` and `imap_unordered` on a pool of
    /// its own.
    fn other_calls(x: u64) -> Result<String, pool::Error> {
        let inner = Pool::new(2)?;
        let pending = inner.apply_async(square, x);
        let applied = inner.apply(square, x + 1)?.0;
        let lazy: Vec<u64> = inner
            .imap(square, [x, x + 2])
            .map(|r| r.map(|(s, _)| s))
            .collect::<Result<_, _>>()?;
        let mut unordered: Vec<(usize, u64)> = inner
            .imap_unordered(square, [3, 1])
            .map(|r| r.map(|(i, (s, _))| (i, s)))
            .collect::<Result<_, _>>()?;
        unordered.sort_unstable();
        Ok(format!(
            "async={} apply={applied} imap={lazy:?} unordered={unordered:?}",
            pending.get(None)?.0
        ))
    }
}

pool::task! {
    /// Maps `panic_on_two` over `0..4` on a pool of its own, describing
    /// each input's result, then what a failing `map` returns.
    fn inner_panics(_x: ()) -> Result<Vec<String>, pool::Error> {
        let inner = Pool::new(2)?;
        let mut lines: Vec<String> = inner
            .map_with(panic_on_two, 0..4).keep_failures().run()?
            .into_iter()
            .map(|result| match result {
                Ok(x) => format!("ok {x}"),
                Err(err) => format!("err {:?} index={:?}: {err}", err.kind(), err.index()),
            })
            .collect();
        let err = inner.map(panic_on_two, 0..4).unwrap_err();
        lines.push(format!("map {:?} index={:?}", err.kind(), err.index()));
        Ok(lines)
    }
}

pool::task! {
    /// Builds a pool that asks to fail inside a worker.
    fn refuses_nesting(_x: ()) -> Result<(), pool::Error> {
        Pool::builder().nested(Nested::Fail).build().map(drop)
    }
}

fn main() -> Result<(), pool::Error> {
    pool::init();
    let pool = Pool::new(2)?;
    println!("outer inline: {}", pool.is_inline());
    for (n, (squares, here, about)) in [3, 5].into_iter().zip(pool.map(squares_below, [3, 5])?) {
        println!("squares below {n}: {squares:?} in the worker: {here} {about}");
    }
    println!("other calls: {}", pool.apply(other_calls, 4)?);
    for line in pool.apply(inner_panics, ())? {
        println!("inner: {line}");
    }
    let err = pool.apply(refuses_nesting, ()).unwrap_err();
    println!("refused: {:?}: {}", err.kind(), err.message());
    Ok(())
}
