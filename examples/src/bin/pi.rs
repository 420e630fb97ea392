//! Estimates pi by throwing random darts on every core: many
//! `apply_async` calls.
//!
//! Each batch of darts is one `pool.apply_async(throw_darts, batch)` call,
//! which returns at once with a handle; the workers take the batches as
//! they come, and `pool::as_completed` hands back each handle as its count
//! arrives (so the progress bar moves with the work, not with the order of
//! submission), where `handle.get(None)` reads it. Every batch
//! carries its own seed, derived from `--seed` and the batch's number, so a
//! given seed gives the same estimate with any number of workers.
//!
//! ```text
//! cargo run --release -p examples --bin pi
//! cargo run --release -p examples --bin pi -- --seed 7 --darts 1e10
//! ```

#![deny(unsafe_code)]

use std::error::Error;
use std::process::ExitCode;

use clap::Parser;
use examples::cli::{exit_code, parse_count_in, start_pool, timed, Common, Report};
use examples::pi::{estimate, hits, plan, throw_darts};
use examples::progress;

/// Estimate pi by monte-carlo, one asynchronous task per batch of darts.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Seed of the run: the same seed gives the same estimate
    #[arg(long, default_value_t = 2024)]
    seed: u64,

    /// Darts to throw in all
    #[arg(long, default_value = "256e6", value_parser = |s: &str| parse_count_in(s, 1..=1_000_000_000_000))]
    darts: u64,

    /// Batches (tasks) to split the darts into
    #[arg(long, default_value_t = 64, value_parser = |s: &str| parse_count_in(s, 1..=1_000_000))]
    batches: u64,

    #[command(flatten)]
    common: Common,
}

fn main() -> ExitCode {
    // In a worker process this runs the worker loop and never returns.
    pool::init();
    let args = Args::parse();
    exit_code("pi", run(&args))
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    let batches = plan(args.seed, args.darts, args.batches);
    let workers = args.common.workers();
    let builder = args.common.pool_builder()?;

    let bar = progress::bar(batches.len() as u64, "batches", args.common.quiet);
    let mut remote = 0;
    let (inside, parallel) = timed(|| -> Result<u64, pool::Error> {
        let pool = start_pool(builder)?;
        // Every call returns at once: all the batches are queued before
        // the first result is awaited.
        let handles: Vec<_> = batches
            .iter()
            .map(|&batch| pool.apply_async(throw_darts, batch))
            .collect();
        let mut inside = 0;
        for (_batch, handle) in pool::as_completed(handles) {
            inside += handle.get(None)?;
            bar.inc(1);
        }
        remote = pool.remote_workers_joined();
        Ok(inside)
    });
    bar.finish_and_clear();
    let inside = inside?;

    let pi = estimate(inside, args.darts);
    println!(
        "pi is about {pi:.8} ({inside} of {} darts inside; seed {})",
        args.darts, args.seed
    );
    println!("error:    {:+.2e}", pi - std::f64::consts::PI);

    let serial = if args.common.no_serial {
        None
    } else {
        let spinner = progress::spinner("serial run, for comparison", args.common.quiet);
        let (serial_inside, serial) = timed(|| batches.into_iter().map(hits).sum::<u64>());
        spinner.finish_and_clear();
        if serial_inside != inside {
            return Err(format!("the serial count is {serial_inside}, the pool's {inside}").into());
        }
        Some(serial)
    };
    println!(
        "{}",
        Report::new(workers, parallel, serial).with_remote(remote)
    );
    Ok(())
}
