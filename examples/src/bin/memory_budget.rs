//! A leaky task kept in check by a memory budget, measured against the
//! same map without the leak.
//!
//! Each input writes a block of memory (10 MiB by default). The baseline
//! frees it; the leaky run forgets it, as a careless cache would, under
//! `PoolBuilder::max_worker_memory`: a worker whose resident memory is over
//! the budget after an input retires and a fresh one takes over, so the map
//! completes with no failure and no worker grows past the budget plus one
//! input. Prints both times, their ratio, how many workers the leaky run
//! used and the largest peak resident size a worker reported.
//!
//! ```text
//! cargo run --release -p examples --bin memory_budget
//! cargo run --release -p examples --bin memory_budget -- --inputs 500 --budget-mib 128
//! ```

#![deny(unsafe_code)]

use std::collections::BTreeMap;
use std::error::Error;
use std::process::ExitCode;

use clap::Parser;
use examples::cli::{exit_code, timed};

const MIB: u64 = 1 << 20;

/// Map a leaky task under a memory budget, and the same map without the leak.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Inputs in each map
    #[arg(long, default_value_t = 2000)]
    inputs: u64,

    /// MiB each input writes (and the leaky run leaks)
    #[arg(long, default_value_t = 10)]
    leak_mib: u64,

    /// The workers' memory budget, in MiB
    #[arg(long, default_value_t = 256)]
    budget_mib: u64,

    /// Worker processes [default: the available parallelism]
    #[arg(long)]
    workers: Option<usize>,

    /// Have both runs' workers map each block afresh, so that the baseline
    /// faults in new pages for every input as a leak must
    #[arg(long)]
    fresh_pages: bool,
}

/// This process's peak resident size (`VmHWM`), in bytes.
fn peak_resident() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Writes `mib` MiB (every page), keeping it if `leak`.
fn write_block(mib: u64, leak: bool) -> (u32, u64) {
    let block = vec![1u8; (mib * MIB) as usize];
    std::hint::black_box(&block);
    if leak {
        std::mem::forget(block);
    }
    (std::process::id(), peak_resident())
}

pool::task! {
    /// Makes this worker's allocator map every block of 1 MiB and more
    /// afresh and unmap it when freed (glibc otherwise keeps freed blocks
    /// for reuse): `--fresh-pages`.
    fn map_blocks_afresh() {
        // Called before this worker's tasks allocate; an allocator that
        // refuses leaves freed blocks for reuse, the default.
        examples::sys::map_blocks_afresh_from(MIB as usize);
    }
}

pool::task! {
    /// Writes a block and frees it: the baseline.
    fn write_and_free(mib: u64) -> (u32, u64) { write_block(mib, false) }
}

pool::task! {
    /// Writes a block and leaks it.
    fn write_and_leak(mib: u64) -> (u32, u64) { write_block(mib, true) }
}

fn main() -> ExitCode {
    let args = Args::parse();
    exit_code("memory_budget", run(&args))
}

/// Runs one map; returns its reports per worker (the largest peak) and time.
fn measure<T>(
    pool: pool::PoolBuilder,
    task: T,
    args: &Args,
) -> Result<(BTreeMap<u32, u64>, f64), pool::Error>
where
    T: pool::Task<Input = u64, Output = (u32, u64)>,
{
    let pool = pool.build()?;
    let inputs = std::iter::repeat(args.leak_mib).take(args.inputs as usize);
    let (reports, time) = timed(|| pool.map(task, inputs));
    let mut peaks = BTreeMap::new();
    for (pid, peak) in reports? {
        let top: &mut u64 = peaks.entry(pid).or_default();
        *top = (*top).max(peak);
    }
    Ok((peaks, time.as_secs_f64()))
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let budget = args.budget_mib * MIB;
    let builder = || {
        let builder = pool::Pool::builder().processes(workers);
        match args.fresh_pages {
            true => builder.initializer(map_blocks_afresh, ()),
            false => builder,
        }
    };

    let (base_peaks, base_time) = measure(builder(), write_and_free, args)?;
    let (leak_peaks, leak_time) =
        measure(builder().max_worker_memory(budget), write_and_leak, args)?;

    let top = |peaks: &BTreeMap<u32, u64>| peaks.values().copied().max().unwrap_or(0);
    let bound = budget + args.leak_mib * MIB;
    println!(
        "{} inputs of {} MiB on {workers} workers, budget {} MiB{}",
        args.inputs,
        args.leak_mib,
        args.budget_mib,
        if args.fresh_pages {
            ", blocks mapped afresh"
        } else {
            ""
        }
    );
    println!(
        "baseline (freed):  {base_time:>7.3} s, {} workers, largest peak {} MiB",
        base_peaks.len(),
        top(&base_peaks) / MIB
    );
    println!(
        "leaky, budgeted:   {leak_time:>7.3} s, {} workers, largest peak {} MiB \
         (budget + one input: {} MiB)",
        leak_peaks.len(),
        top(&leak_peaks) / MIB,
        bound / MIB
    );
    println!("ratio: {:.2}x the baseline's time", leak_time / base_time);
    if top(&leak_peaks) > bound {
        return Err("a worker grew past the budget plus one input".into());
    }
    Ok(())
}
