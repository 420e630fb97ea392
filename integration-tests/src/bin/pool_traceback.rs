//! A program whose tasks panic and fail in a real pool, printing what the
//! errors say about where and how, for `tests/pool_traceback.rs`. Its
//! first argument is `off` or `on`: backtraces off in the workers
//! (`RUST_BACKTRACE=0` and `RUST_LIB_BACKTRACE=0`, whatever this process
//! has) or on (`RUST_BACKTRACE=1`), set through `PoolBuilder::env`.

use pool::Pool;

pool::task! {
    /// Parses a number, panicking on anything else.
    fn parse_number(text: String) -> i64 {
        text.trim().parse().unwrap()
    }
}

pool::task! {
    /// Parses a number, failing on anything else: an `Err`, not a panic.
    fn try_parse_number(text: String) -> Result<i64, std::num::ParseIntError> {
        text.trim().parse()
    }
}

fn main() -> Result<(), pool::Error> {
    pool::init();
    let backtraces = std::env::args().nth(1).unwrap_or_default();
    let mut builder = Pool::builder().processes(2);
    builder = match backtraces.as_str() {
        "on" => builder.env("RUST_BACKTRACE", "1"),
        _ => builder
            .env("RUST_BACKTRACE", "0")
            .env("RUST_LIB_BACKTRACE", "0"),
    };
    let pool = builder.build()?;
    let inputs = ["1", "x", "3"].map(String::from);

    let err = pool.map(parse_number, inputs.clone()).unwrap_err();
    println!("panic display: {err}");
    println!("panic alternate: {err:#}");
    println!("panic kind: {:?} index: {:?}", err.kind(), err.index());
    match err.panic_location() {
        Some(at) => println!(
            "panic location: file={} line={} column={}",
            at.file(),
            at.line(),
            at.column()
        ),
        None => println!("panic location: none"),
    }
    match err.remote_backtrace() {
        Some(backtrace) => {
            println!("panic backtrace: {} lines", backtrace.lines().count());
            eprintln!("{backtrace}");
            let names = backtrace.contains("pool_traceback::parse_number");
            println!("panic backtrace names the task: {names}");
            let debug = format!("{err:?}");
            println!(
                "panic debug shows the backtrace: {}",
                debug.contains("\n\nremote backtrace:\n") && debug.contains(backtrace)
            );
        }
        None => println!("panic backtrace: none"),
    }

    // The same panic through imap, and inputs after it still run.
    let results: Vec<_> = pool.imap(parse_number, inputs.clone()).collect();
    for result in &results {
        match result {
            Ok(value) => println!("imap ok: {value}"),
            Err(err) => println!("imap error: {err}"),
        }
    }

    let err = pool.map(try_parse_number, inputs).unwrap_err();
    println!("error display: {err}");
    println!("error debug: {err:?}");
    println!(
        "error location: {:?} backtrace: {:?}",
        err.panic_location(),
        err.remote_backtrace()
    );
    Ok(())
}
