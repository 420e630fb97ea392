//! A pool whose worker program (the argument) may lack the task it calls:
//! prints what map, imap and apply_async gave, and how many inputs each
//! took from its iterator, for tests/pool_link.rs.

use std::cell::Cell;

use integration_tests::link_probe::cube;
use pool::Pool;

fn outcome<T: std::fmt::Debug>(result: Result<T, pool::Error>) -> String {
    match result {
        Ok(value) => format!("ok {value:?}"),
        Err(err) => format!("{:?} index={:?}: {err}", err.kind(), err.index()),
    }
}

fn main() -> Result<(), pool::Error> {
    let worker = std::env::args()
        .nth(1)
        .expect("usage: pool_link WORKER_PROGRAM");
    let pool = Pool::builder()
        .processes(1)
        .worker_program(worker)
        .build()?;
    let taken = Cell::new(0);
    let inputs = || (0..3u64).inspect(|_| taken.set(taken.get() + 1));
    println!("map: {}", outcome(pool.map(cube, inputs())));
    println!("map taken: {}", taken.replace(0));
    let first = pool.imap(cube, inputs()).next().expect("an item");
    println!("imap: {}", outcome(first));
    println!("imap taken: {}", taken.replace(0));
    println!(
        "apply_async: {}",
        outcome(pool.apply_async(cube, 2).get(None))
    );
    println!("builtin: {}", outcome(pool.apply(pool::builtin::echo, 42)));
    Ok(())
}
