//! A program that runs `Pool::map_with` in every combination of its
//! options (chunk size × progress × keep failures) over real workers and
//! prints one `label: value` line per combination and input set, for
//! `tests/pool_maps.rs`.
//!
//! Each line says what the call returned in a form the test compares
//! exactly: whether the outputs are the ones expected, which failures came
//! back and where, how many workers ran the inputs (a chunk of every input
//! runs on one worker), and whether the progress reports were well formed.

use pool::{Pool, Progress, Result};

/// Inputs per call; every seventh (3, 10, 17, ..) fails.
const INPUTS: u32 = 70;

pool::task! {
    /// Doubles `x`, with the pid of the worker that ran it; fails on every
    /// seventh input. Naps a little so that both workers get work.
    fn probe(x: u32) -> Result<(u32, u32), String> {
        std::thread::sleep(std::time::Duration::from_millis(1));
        if x % 7 == 3 {
            return Err(format!("{x} is unlucky"));
        }
        Ok((std::process::id(), 2 * x))
    }
}

fn fails(x: u32) -> bool {
    x % 7 == 3
}

/// The outputs of a call that returned every output: right or not, and
/// on how many workers.
fn outputs(inputs: &[u32], outputs: &[(u32, u32)]) -> String {
    let right = outputs.len() == inputs.len()
        && inputs
            .iter()
            .zip(outputs)
            .all(|(&x, &(_, doubled))| doubled == 2 * x);
    let mut pids: Vec<u32> = outputs.iter().map(|&(pid, _)| pid).collect();
    pids.sort_unstable();
    pids.dedup();
    format!("ok right={right} workers={}", pids.len())
}

/// Every input's result, failures included: right or not.
fn kept(inputs: &[u32], results: &[Result<(u32, u32)>]) -> String {
    let right = results.len() == inputs.len()
        && inputs
            .iter()
            .zip(results)
            .enumerate()
            .all(|(i, (&x, result))| match result {
                Ok((_, doubled)) => !fails(x) && *doubled == 2 * x,
                Err(err) => {
                    fails(x) && err.kind() == pool::ErrorKind::TaskFailed && err.index() == Some(i)
                }
            });
    let failed = results.iter().filter(|result| result.is_err()).count();
    format!("kept right={right} failed={failed}")
}

/// The first failure of a call that stopped at it.
fn stopped(inputs: &[u32], err: &pool::Error) -> String {
    let at_a_failing_input = err.index().is_some_and(|i| fails(inputs[i]));
    format!(
        "stopped {:?} at_a_failing_input={at_a_failing_input}",
        err.kind()
    )
}

/// Whether the reports were well formed (`done` grows strictly, `failed`
/// never passes it, `total` is the call's) and the last one.
fn reports(reports: &[Progress], total: usize) -> String {
    let grows = reports.windows(2).all(|pair| pair[0].done < pair[1].done);
    let bounded = reports
        .iter()
        .all(|p| p.failed <= p.done && p.done <= p.total && p.total == total);
    match reports.last() {
        Some(last) => format!(
            "well_formed={} last={}/{}/{}",
            grows && bounded,
            last.done,
            last.failed,
            last.total
        ),
        None => "none".to_string(),
    }
}

/// Runs one combination over `inputs` and prints its lines, labelled
/// `label`. `$chunk` is `None` or a chunk size, `$progress` and `$keep`
/// whether to ask for progress and to keep failures.
macro_rules! combination {
    ($pool:expr, $label:expr, $inputs:expr, $chunk:expr, progress, $($keep:ident)?) => {{
        let mut seen = Vec::new();
        let call = $pool.map_with(probe, $inputs.iter().copied());
        let call = match $chunk {
            Some(size) => call.chunksize(size),
            None => call,
        };
        let outcome = combination!(@run call.progress(|p| seen.push(p)) $(, $keep)?, $inputs);
        println!("{}: {outcome}", $label);
        println!("{} progress: {}", $label, reports(&seen, $inputs.len()));
    }};
    ($pool:expr, $label:expr, $inputs:expr, $chunk:expr, quiet, $($keep:ident)?) => {{
        let call = $pool.map_with(probe, $inputs.iter().copied());
        let call = match $chunk {
            Some(size) => call.chunksize(size),
            None => call,
        };
        let outcome = combination!(@run call $(, $keep)?, $inputs);
        println!("{}: {outcome}", $label);
    }};
    (@run $call:expr, keep, $inputs:expr) => {
        match $call.keep_failures().run() {
            Ok(results) => kept(&$inputs, &results),
            Err(err) => format!("call failed {:?}", err.kind()),
        }
    };
    (@run $call:expr, $inputs:expr) => {
        match $call.run() {
            Ok(out) => outputs(&$inputs, &out),
            Err(err) => stopped(&$inputs, &err),
        }
    };
}

fn options() -> Result<()> {
    let pool = Pool::builder()
        .processes(2)
        .handle_interrupts(false)
        .build()?;
    let mixed: Vec<u32> = (0..INPUTS).collect();
    let clean: Vec<u32> = (0..INPUTS).filter(|&x| !fails(x)).collect();
    for (set, inputs) in [("mixed", &mixed), ("clean", &clean)] {
        // A chunk of every input: one worker runs them all.
        let whole = Some(inputs.len());
        combination!(
            pool,
            format!("{set} auto quiet stop"),
            inputs,
            None::<usize>,
            quiet,
        );
        combination!(
            pool,
            format!("{set} auto quiet keep"),
            inputs,
            None::<usize>,
            quiet,
            keep
        );
        combination!(
            pool,
            format!("{set} auto progress stop"),
            inputs,
            None::<usize>,
            progress,
        );
        combination!(
            pool,
            format!("{set} auto progress keep"),
            inputs,
            None::<usize>,
            progress,
            keep
        );
        combination!(
            pool,
            format!("{set} whole quiet stop"),
            inputs,
            whole,
            quiet,
        );
        combination!(
            pool,
            format!("{set} whole quiet keep"),
            inputs,
            whole,
            quiet,
            keep
        );
        combination!(
            pool,
            format!("{set} whole progress stop"),
            inputs,
            whole,
            progress,
        );
        combination!(
            pool,
            format!("{set} whole progress keep"),
            inputs,
            whole,
            progress,
            keep
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    pool::init();
    match std::env::args().nth(1).unwrap_or_default().as_str() {
        "options" => options(),
        other => panic!("unknown scenario {other:?}"),
    }
}
