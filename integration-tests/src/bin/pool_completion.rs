//! A program that runs one of the pool's completion-order and progress
//! scenarios, named by its first argument, and prints what happened, one
//! `key: value` line at a time, for `tests/pool_completion.rs`.
//!
//! Completion order is made certain rather than likely: a pool of one
//! worker runs its inputs in the order they were submitted, and the first
//! pending one waits for a file that this program creates only once the
//! handles already completed were yielded. So no scenario depends on how
//! long anything takes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pool::{AsyncResult, Pool, Progress, Result};

/// What one [`run_step`] does.
#[derive(serde::Serialize, serde::Deserialize)]
enum Step {
    /// Returns the number.
    Echo(u64),
    /// Waits until the file exists, then returns the number.
    WaitFor(PathBuf, u64),
    /// Fails with the message.
    Fail(String),
}

pool::task! {
    /// Runs one [`Step`].
    fn run_step(step: Step) -> Result<u64, String> {
        match step {
            Step::Echo(n) => Ok(n),
            Step::WaitFor(path, n) => {
                while !path.exists() {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(n)
            }
            Step::Fail(message) => Err(message),
        }
    }
}

pool::task! {
    /// Fails on multiples of 7, panics on 50, and doubles the rest.
    fn check(x: u64) -> Result<u64, String> {
        if x == 50 {
            panic!("fifty");
        }
        if x % 7 == 0 {
            return Err(format!("{x} is a multiple of 7"));
        }
        Ok(2 * x)
    }
}

pool::task! {
    /// Like `check`, and kills its worker on 17.
    fn trouble(x: u64) -> Result<u64, String> {
        if x == 17 {
            std::process::abort();
        }
        check.call(x)
    }
}

pool::task! {
    /// Sleeps for `ms` milliseconds.
    fn nap(ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }
}

fn one_worker() -> Result<Pool> {
    workers(1)
}

/// A pool of `processes` workers that leaves Ctrl-C to the test.
fn workers(processes: usize) -> Result<Pool> {
    Pool::builder()
        .processes(processes)
        .handle_interrupts(false)
        .build()
}

/// A directory of this process's own, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("pool-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    fn go(&self) -> PathBuf {
        self.0.join("go")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn release(go: &Path) {
    std::fs::write(go, b"go").expect("create the go file");
}

/// A handle's outcome as a word: `ok:N` or the error's kind.
fn outcome(handle: &AsyncResult<u64>) -> String {
    match handle.get(Some(Duration::ZERO)) {
        Ok(n) => format!("ok:{n}"),
        Err(err) => format!("{:?}", err.kind()),
    }
}

fn joined(words: impl IntoIterator<Item = impl ToString>) -> String {
    words
        .into_iter()
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Handles in the order: completes last, fails, cancelled, blocked, done.
fn five_handles(pool: &Pool, go: &Path) -> Vec<AsyncResult<u64>> {
    let done = pool.apply_async(run_step, Step::Echo(4));
    done.wait(None);
    let blocked = pool.apply_async(run_step, Step::WaitFor(go.to_owned(), 1));
    let cancelled = pool.apply_async(run_step, Step::Echo(9));
    cancelled.cancel();
    let fails = pool.apply_async(run_step, Step::Fail("no".into()));
    let last = pool.apply_async(run_step, Step::Echo(7));
    vec![last, fails, cancelled, blocked, done]
}

fn as_completed() -> Result<()> {
    let scratch = Scratch::new("as-completed");
    let pool = one_worker()?;
    let mut completed = pool::as_completed(five_handles(&pool, &scratch.go()));
    let mut order = Vec::new();
    let mut outcomes = Vec::new();
    // The two handles already complete, while the rest wait for `go`.
    for _ in 0..2 {
        let (position, handle) = completed
            .next_timeout(Duration::from_secs(30))?
            .expect("a handle");
        order.push(position);
        outcomes.push(outcome(&handle));
    }
    println!("remaining: {}", completed.remaining());
    release(&scratch.go());
    for (position, handle) in completed {
        order.push(position);
        outcomes.push(outcome(&handle));
    }
    println!("order: {}", joined(order));
    println!("outcomes: {}", joined(outcomes));
    let mut empty = pool::as_completed(Vec::<AsyncResult<u64>>::new());
    println!(
        "empty: {:?}",
        empty.next_timeout(Duration::ZERO).map(|n| n.is_none())
    );
    Ok(())
}

fn as_completed_stream() -> Result<()> {
    use futures_core::Stream;
    let scratch = Scratch::new("as-completed-stream");
    let pool = one_worker()?;
    let mut completed = pool::as_completed(five_handles(&pool, &scratch.go()));
    let next = |completed: &mut pool::AsCompleted<u64>| {
        futures_executor::block_on(std::future::poll_fn(|cx| {
            std::pin::Pin::new(&mut *completed).poll_next(cx)
        }))
    };
    let mut order = Vec::new();
    for _ in 0..2 {
        order.push(next(&mut completed).expect("a handle").0);
    }
    release(&scratch.go());
    while let Some((position, _)) = next(&mut completed) {
        order.push(position);
    }
    println!("order: {}", joined(order));
    Ok(())
}

fn wait_any() -> Result<()> {
    let scratch = Scratch::new("wait-any");
    let pool = one_worker()?;
    let done = pool.apply_async(run_step, Step::Echo(4));
    done.wait(None);
    let blocked = pool.apply_async(run_step, Step::WaitFor(scratch.go(), 1));
    let behind = pool.apply_async(run_step, Step::Echo(2));
    let mut handles = vec![blocked, behind, done];
    println!("one done: {:?}", pool::wait_any(&handles, None));
    handles.pop();
    println!(
        "none done: {:?}",
        pool::wait_any(&handles, Some(Duration::from_millis(100)))
    );
    release(&scratch.go());
    println!("released: {:?}", pool::wait_any(&handles, None));
    let outcomes = handles.iter().map(|handle| {
        handle.wait(None);
        outcome(handle)
    });
    println!("outcomes: {}", joined(outcomes));
    Ok(())
}

/// Progress reports as `done/failed/total` words.
fn reports(reports: &[Progress]) -> String {
    joined(
        reports
            .iter()
            .map(|p| format!("{}/{}/{}", p.done, p.failed, p.total)),
    )
}

fn progress() -> Result<()> {
    let pool = workers(2)?;
    let mut seen = Vec::new();
    let results = pool
        .map_with(check, 0..100)
        .progress(|p| seen.push(p))
        .keep_failures()
        .run()?;
    println!("results: {}", results.len());
    println!("failing: {}", reports(&seen));
    let mut seen = Vec::new();
    let doubled = pool
        .map_with(check, (0..3000).filter(|x| x % 7 != 0 && *x != 50))
        .progress(|p| seen.push(p))
        .run()?;
    println!("doubled: {}", doubled.len());
    println!("succeeding: {}", reports(&seen));
    let mut seen = Vec::new();
    let stopped = pool
        .map_with(check, 1..100)
        .progress(|p| seen.push(p))
        .run();
    let err = stopped.expect_err("multiples of 7 fail");
    println!("stopped at: {:?} {:?}", err.kind(), err.index());
    println!("stopping: {}", reports(&seen));
    Ok(())
}

pool::task! {
    /// Keeps its core busy for `micros` microseconds.
    fn spin_for(micros: u64) -> u64 {
        let began = Instant::now();
        while began.elapsed() < Duration::from_micros(micros) {
            std::hint::spin_loop();
        }
        micros
    }
}

/// Inputs of the live-progress map, and what each one costs.
const LIVE_INPUTS: usize = 100_000;
const LIVE_MICROS: u64 = 30;

/// A map of many short inputs in large automatic chunks (12,500 inputs,
/// about 0.4 s of work each): its progress must move before the first
/// chunk is done. Prints the first report that counts something, and
/// when it came against the whole run.
fn live_progress() -> Result<()> {
    let pool = workers(2)?;
    let mut seen = Vec::new();
    let mut first = None;
    let began = Instant::now();
    let inputs = std::iter::repeat(LIVE_MICROS).take(LIVE_INPUTS);
    let outputs = pool
        .map_with(spin_for, inputs)
        .progress(|p| {
            if p.done > 0 && first.is_none() {
                first = Some(began.elapsed());
            }
            seen.push(p);
        })
        .run()?;
    let whole = began.elapsed();
    println!("outputs: {}", outputs.len());
    println!("reports: {}", reports(&seen));
    let first = first.expect("a report with done > 0");
    println!(
        "first moved at: {first:.2?} of {whole:.2?} ({:.1}%)",
        100.0 * first.as_secs_f64() / whole.as_secs_f64()
    );
    Ok(())
}

fn keep_failures() -> Result<()> {
    let pool = workers(2)?;
    let results = pool.map_with(trouble, 0..40).keep_failures().run()?;
    let words = results.iter().enumerate().map(|(i, result)| match result {
        Ok(n) => format!("{i}:ok:{n}"),
        Err(err) => format!("{i}:{:?}:{:?}", err.kind(), err.index()),
    });
    println!("results: {}", joined(words));
    pool.close();
    let closed = pool
        .map_with(check, 0..3)
        .keep_failures()
        .run()
        .map(|r| r.len());
    println!("closed: {:?}", closed.map_err(|err| err.kind()));
    Ok(())
}

/// A long map that keeps failures, that the test interrupts with Ctrl-C: the call as a
/// whole fails, rather than each input.
fn ctrl_c() -> Result<()> {
    let pool = Pool::builder().processes(2).build()?;
    let pids: Vec<String> = pool.worker_pids().iter().map(u32::to_string).collect();
    println!("pids: {}", pids.join(" "));
    let mut last = None;
    let results = pool
        .map_with(nap, std::iter::repeat(200).take(100))
        .progress(|p| last = Some(p))
        .keep_failures()
        .run();
    println!(
        "outcome: {:?}",
        results.map(|r| r.len()).map_err(|e| e.kind())
    );
    let last = last.expect("a report");
    println!("unfinished: {}", last.done < last.total);
    Ok(())
}

fn main() -> Result<()> {
    pool::init();
    match std::env::args().nth(1).unwrap_or_default().as_str() {
        "as_completed" => as_completed(),
        "as_completed_stream" => as_completed_stream(),
        "wait_any" => wait_any(),
        "progress" => progress(),
        "live_progress" => live_progress(),
        "keep_failures" => keep_failures(),
        "ctrl_c" => ctrl_c(),
        other => {
            println!("unknown scenario {other:?}");
            Ok(())
        }
    }
}
