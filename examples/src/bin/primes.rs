//! Counts the primes below N on every core: the pool's `map`.
//!
//! The numbers below N are cut into ranges;
//! `pool.map_with(count_primes, ranges).progress(..).run()` counts each range in
//! some worker process and hands the counts back in order, moving a
//! progress bar as they arrive; their sum is the answer. Then the same ranges are counted here,
//! serially, to show what the pool saved.
//!
//! ```text
//! cargo run --release -p examples --bin primes                 # N = 4 billion
//! cargo run --release -p examples --bin primes -- 1e9 --workers 4
//! ```

#![deny(unsafe_code)]

use std::error::Error;
use std::process::ExitCode;

use clap::Parser;
use examples::cli::{exit_code, parse_count_in, start_pool, timed, Common, Report};
use examples::primes::{count_primes, count_primes_in, split, MAX_LIMIT};
use examples::progress;

/// Count the primes below N, in ranges spread over worker processes.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Count the primes below this number (at most 1e12)
    #[arg(default_value = "4e9", value_parser = |s: &str| parse_count_in(s, 0..=MAX_LIMIT))]
    n: u64,

    /// Cut the numbers into this many ranges, one task each
    #[arg(long, default_value_t = 64, value_parser = |s: &str| parse_count_in(s, 1..=1_000_000))]
    ranges: u64,

    #[command(flatten)]
    common: Common,
}

fn main() -> ExitCode {
    // In a worker process (this program, re-executed by the pool) this runs
    // the worker loop and never returns; in the parent it returns at once.
    pool::init();
    let args = Args::parse();
    exit_code("primes", run(&args))
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    let ranges = split(args.n, args.ranges);
    let workers = args.common.workers();
    let builder = args.common.pool_builder()?;

    // `map` returns when every range is counted; meanwhile its progress,
    // reported as the counts arrive, moves the bar.
    let bar = progress::bar(ranges.len() as u64, "ranges", args.common.quiet);
    let mut remote = 0;
    let (count, parallel) = timed(|| -> Result<u64, pool::Error> {
        let pool = start_pool(builder)?;
        let counts = pool
            .map_with(count_primes, ranges.clone())
            .progress(|progress| progress.update_bar(&bar))
            .run()?;
        remote = pool.remote_workers_joined();
        Ok(counts.into_iter().sum())
    });
    bar.finish_and_clear();
    let count = count?;
    println!("{count} primes below {}", args.n);

    let serial = if args.common.no_serial {
        None
    } else {
        let spinner = progress::spinner("serial run, for comparison", args.common.quiet);
        let (serial_count, serial) = timed(|| ranges.into_iter().map(count_primes_in).sum::<u64>());
        spinner.finish_and_clear();
        if serial_count != count {
            return Err(format!("the serial count is {serial_count}, the pool's {count}").into());
        }
        Some(serial)
    };
    println!(
        "{}",
        Report::new(workers, parallel, serial).with_remote(remote)
    );
    Ok(())
}
