//! Plain functions and closures as tasks, run by pointer in real workers
//! (`Pool::map_fn` and its kin), printing what each call gave, one
//! `key: value` line at a time, for `tests/pool_fn.rs`.

use pool::{Pool, PoolBuilder};

fn cube(x: u64) -> u64 {
    x * x * x
}

/// Where the closures of the refused scenario would leave a mark, had
/// they run.
const MARKS_ENV: &str = "POOL_FN_MARKS";

fn leave_mark(x: u64) -> u64 {
    let dir = std::env::var(MARKS_ENV).expect("the marks directory");
    std::fs::write(format!("{dir}/{x}-{}", std::process::id()), "ran").expect("a mark");
    x
}

pool::task! {
    /// Maps a closure over `0..n` with a pool of its own, which runs inline
    /// in this worker.
    fn nested_squares(n: u64) -> Result<(Vec<u64>, bool), pool::Error> {
        let inner = Pool::new(2)?;
        Ok((inner.map_fn(|x: u64| x * x, 0..n)?, inner.is_inline()))
    }
}

fn calls() -> Result<(), pool::Error> {
    let pool = Pool::new(2)?;
    let here = std::process::id();
    println!("map closure: {:?}", pool.map_fn(|x: u64| x * x, 0..6)?);
    println!("map fn item: {:?}", pool.map_fn(cube, [2, 3, 4])?);
    let pids = pool.map_fn(|_: u64| std::process::id(), 0..8)?;
    println!("ran elsewhere: {}", pids.iter().all(|&pid| pid != here));
    let words = pool.map_fn(
        |(word, times): (String, usize)| word.repeat(times),
        [("ab".to_string(), 2), ("c".to_string(), 3)],
    )?;
    println!("map tuple: {words:?}");
    let lazy: Vec<u64> = pool
        .imap_fn(|x: u64| x + 100, 0..)?
        .take(4)
        .collect::<Result<_, _>>()?;
    println!("imap: {lazy:?}");
    let pending = pool.apply_async_fn(|text: String| text.len(), "four".into());
    let handles: Vec<_> = (0..3).map(|x| pool.apply_async_fn(cube, x)).collect();
    let cubes: Vec<u64> = handles
        .iter()
        .map(|handle| handle.get(None))
        .collect::<Result<_, _>>()?;
    println!("apply_async: {} {cubes:?}", pending.get(None)?);
    println!("apply: {}", pool.apply_fn(cube, 5)?);
    println!("nested: {:?}", pool.apply(nested_squares, 4)?);
    // What the 16 bytes of offsets and the jump cost, for the report
    // (printed, not asserted: the machine is shared).
    for round in 0..3 {
        let began = std::time::Instant::now();
        pool.map_fn(|x: u64| x, 0..100_000)?;
        let by_pointer = began.elapsed();
        let began = std::time::Instant::now();
        pool.map(pool::builtin::echo, 0..100_000)?;
        eprintln!(
            "round {round}: 100000 inputs by pointer {by_pointer:?}, by a task {:?}",
            began.elapsed()
        );
    }
    Ok(())
}

fn panic_on_two(x: u64) -> u64 {
    if x == 2 {
        panic!("two is right out");
    }
    x
}

fn panics() -> Result<(), pool::Error> {
    let pool = Pool::new(2)?;
    let results: Vec<String> = pool
        .imap_fn(panic_on_two, 0..4)?
        .map(|result| match result {
            Ok(x) => format!("ok {x}"),
            Err(err) => format!("err {:?} index={:?}: {err}", err.kind(), err.index()),
        })
        .collect();
    for result in results {
        println!("imap: {result}");
    }
    let err = pool.map_fn(panic_on_two, 0..4).unwrap_err();
    println!("map: {:?} index={:?}", err.kind(), err.index());
    let err = pool
        .apply_fn(|_: u64| -> u64 { panic!("in a closure") }, 1)
        .unwrap_err();
    println!("apply: {:?}: {err}", err.kind());
    println!("after the panics: {:?}", pool.map_fn(cube, [1, 2])?);
    Ok(())
}

fn refused(builder: PoolBuilder, label: &str) -> Result<(), pool::Error> {
    let pool = builder.build()?;
    let err = pool.map_fn(leave_mark, 0..4).unwrap_err();
    println!("{label} map: {:?}: {err}", err.kind());
    let err = pool.imap_fn(leave_mark, 0..4).err().expect("a refusal");
    println!("{label} imap: {:?}", err.kind());
    let err = pool.apply_async_fn(leave_mark, 7).get(None).unwrap_err();
    println!("{label} apply_async: {:?}", err.kind());
    Ok(())
}

fn main() -> Result<(), pool::Error> {
    pool::init();
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("calls") => calls(),
        Some("panics") => panics(),
        Some("refused") => {
            let [_, _, worker_program, marks] = &args[..] else {
                panic!("usage: pool_fn refused WORKER_PROGRAM MARKS_DIR");
            };
            std::env::set_var(MARKS_ENV, marks);
            refused(
                Pool::builder().processes(1).worker_program(worker_program),
                "worker_program",
            )?;
            refused(
                Pool::builder()
                    .processes(1)
                    .listen("tcp:127.0.0.1:0", b"pool_fn key".to_vec()),
                "remote",
            )
        }
        other => panic!("unknown scenario {other:?}"),
    }
}
