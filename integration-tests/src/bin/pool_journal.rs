//! A program that runs journaled maps for `tests/pool_journal.rs`, one
//! scenario per run, named by its first argument, and prints what happened
//! as `label: value` lines. Its tasks append each input they run to the
//! file named by `RUN_LOG` (one line per input, one `write` each), so the
//! test can count what ran, in which run, even across a SIGKILL.

use std::io::Write;
use std::path::PathBuf;

use pool::{Pool, Progress, Result};

/// Notes that input `x` ran, in the run log.
fn note(x: u64) {
    if let Some(log) = std::env::var_os("RUN_LOG") {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(log)
            .expect("the run log");
        file.write_all(format!("{x}\n").as_bytes())
            .expect("a run log line");
    }
}

/// What `step` returns for `x`: a value no other input has.
fn scrambled(x: u64) -> u64 {
    x.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5bd1
}

pool::task! {
    /// Naps `NAP_US` microseconds (default none), notes `x`, and returns
    /// it scrambled.
    fn step(x: u64) -> u64 {
        let nap: u64 = std::env::var("NAP_US").ok().and_then(|n| n.parse().ok()).unwrap_or(0);
        std::thread::sleep(std::time::Duration::from_micros(nap));
        note(x);
        scrambled(x)
    }
}

pool::task! {
    /// Another task with `step`'s types, for a foreign journal.
    fn other_step(x: u64) -> u64 { x }
}

pool::task! {
    /// Notes `x`, and fails on every fifth input while the file `FLAG`
    /// does not exist.
    fn picky(x: u64) -> Result<u64, String> {
        note(x);
        let flag = std::env::var_os("FLAG").map(PathBuf::from);
        if x % 5 == 0 && !flag.is_some_and(|flag| flag.exists()) {
            return Err(format!("{x} is not welcome yet"));
        }
        Ok(scrambled(x))
    }
}

fn pool() -> Result<Pool> {
    Pool::builder()
        .processes(2)
        .handle_interrupts(false)
        .build()
}

/// A fold of the outputs, equal only for equal outputs in equal order
/// (as far as a test needs).
fn fold(outputs: &[u64]) -> String {
    let hash = outputs
        .iter()
        .fold(0u64, |hash, &x| hash.rotate_left(5) ^ x.wrapping_mul(31));
    format!("{} {hash:016x}", outputs.len())
}

fn arg(n: usize) -> String {
    std::env::args()
        .nth(n)
        .unwrap_or_else(|| panic!("argument {n}"))
}

/// `resume <map|imap> <journal> <count>`: a journaled map of `step` over
/// `0..count` in chunks of 4 (the test kills it at some point), printing
/// the first progress report (replayed inputs count as done) and the
/// outputs' fold at the end.
fn resume() -> Result<()> {
    let (form, journal, count) = (
        arg(2),
        PathBuf::from(arg(3)),
        arg(4).parse::<u64>().unwrap(),
    );
    let pool = pool()?;
    let outputs: Vec<u64> = match form.as_str() {
        "map" => {
            let mut first: Option<Progress> = None;
            let outputs = pool
                .map_with(step, 0..count)
                .chunksize(4)
                .journal(&journal)
                .progress(|p| {
                    if first.is_none() {
                        println!("first progress: {}/{}", p.done, p.total);
                        first = Some(p);
                    }
                })
                .run()?;
            outputs
        }
        "imap" => pool
            .imap(step, 0..count)
            .chunksize(4)
            .journal(&journal)
            .collect::<Result<_>>()?,
        other => panic!("unknown form {other}"),
    };
    println!("outputs: {}", fold(&outputs));
    Ok(())
}

/// `plain <count>`: the same map with no journal, uninterrupted.
fn plain() -> Result<()> {
    let count = arg(2).parse::<u64>().unwrap();
    let outputs = pool()?.map(step, 0..count)?;
    println!("outputs: {}", fold(&outputs));
    Ok(())
}

/// `inputs <journal> <x,x,..>`: a journaled map of `step` over the given
/// inputs, printing the outputs.
fn inputs() -> Result<()> {
    let journal = PathBuf::from(arg(2));
    let inputs: Vec<u64> = arg(3).split(',').map(|x| x.parse().unwrap()).collect();
    let outputs = pool()?
        .map_with(step, inputs.clone())
        .journal(&journal)
        .run()?;
    let right = outputs
        .iter()
        .zip(&inputs)
        .all(|(&out, &x)| out == scrambled(x));
    println!("outputs right: {}", right && outputs.len() == inputs.len());
    Ok(())
}

/// `foreign <journal>`: maps of another task (and an imap) with the
/// journal of `step`, printing each one's error.
fn foreign() -> Result<()> {
    let journal = PathBuf::from(arg(2));
    let pool = pool()?;
    let show = |result: Result<Vec<u64>>| match result {
        Ok(outputs) => format!("ran {}", outputs.len()),
        Err(err) => format!("{:?}: {}", err.kind(), err.message()),
    };
    let map = pool.map_with(other_step, 0..10).journal(&journal).run();
    println!("map: {}", show(map));
    let imap = pool.imap(other_step, 0..10).journal(&journal).collect();
    println!("imap: {}", show(imap));
    Ok(())
}

/// `failures <journal> <rerun|keep|stop>`: a journaled map of `picky`
/// over `0..20`, keeping failures (or stopping at one), rerunning them if
/// asked; prints which inputs failed and the messages' origin.
fn failures() -> Result<()> {
    let journal = PathBuf::from(arg(2));
    let pool = pool()?;
    let call = pool.map_with(picky, 0..20).journal(&journal);
    let results = match arg(3).as_str() {
        "rerun" => call.rerun_failures().keep_failures().run()?,
        "keep" => call.keep_failures().run()?,
        "stop" => {
            let err = call.run().unwrap_err();
            println!("stopped: {:?} {:?}", err.kind(), err.index());
            return Ok(());
        }
        other => panic!("unknown mode {other}"),
    };
    let failed: Vec<String> = results
        .iter()
        .enumerate()
        .filter_map(|(i, result)| result.as_ref().err().map(|err| (i, err)))
        .map(|(i, err)| {
            let replayed = err.message().ends_with("(from the map journal)");
            format!(
                "{i}:{:?}:{}",
                err.kind(),
                if replayed { "journal" } else { "run" }
            )
        })
        .collect();
    println!("failed: {}", failed.join(" "));
    let right = results.iter().enumerate().all(|(i, result)| {
        result
            .as_ref()
            .map_or(true, |&out| out == scrambled(i as u64))
    });
    println!("outputs right: {right}");
    Ok(())
}

fn main() -> Result<()> {
    pool::init();
    match arg(1).as_str() {
        "resume" => resume(),
        "plain" => plain(),
        "inputs" => inputs(),
        "foreign" => foreign(),
        "failures" => failures(),
        other => panic!("unknown scenario {other:?}"),
    }
}
