// A plain `fn` passed where a task is expected: the error says both ways,
// `pool::task!` or `map_fn`.

fn double(x: u64) -> u64 {
    x * 2
}

fn main() -> Result<(), pool::Error> {
    let pool = pool::Pool::new(1)?;
    pool.map(double, [1, 2])?;
    Ok(())
}
