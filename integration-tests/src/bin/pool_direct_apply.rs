//! A program that runs `pool.apply` on a pool of one worker and prints
//! what happened, one `key: value` line at a time, for
//! `tests/pool_direct_apply.rs`. After a first call (which tells the
//! worker of the task), each call goes straight to the idle worker (the
//! pool's lease), so these check that its faults act as the usual way's.
//!
//! Modes:
//! - `wakeups N [async]`: N calls (`apply`, or with `async`
//!   `apply_async(..).get(None)`); prints how many times the dispatcher
//!   and the I/O thread were switched out meanwhile (`/proc/self/task`).
//! - `killed`: the worker is SIGKILLed during a long call; prints that
//!   call's error kind, then the next call's result.
//! - `killed_idle N`: N times, the idle worker is SIGKILLed and a call
//!   made at once, before the pool may have seen the worker end; prints
//!   how many of those calls were answered.
//! - `killed_resting`: after a run of calls, the idle worker is
//!   SIGKILLed and no call made: prints whether the pool replaced it
//!   (the socket of a worker offered for direct calls is still watched
//!   for its end), and how the next call went.
//! - `timeout`: a call longer than the pool's task timeout, then another.
//! - `ctrl_c`: SIGINT to this process during a long call.
//! - `terminate`: `terminate` from another thread during a long call.
//! - `held_ctrl_c`, `held_terminate`, `held_killed`: as `ctrl_c`,
//!   `terminate` and `killed`, with a long call whose task first forks a
//!   process that holds the worker's descriptors open, its socket among
//!   them, so that no end of file comes when the worker dies: the pool's
//!   shutdown of the socket must end the caller's read (after Ctrl-C and
//!   `terminate`), and the worker's exit must be seen without it
//!   (`killed`). `held_killed_queued`: as `held_killed`, the call made by
//!   `map`, the usual way.
//! - `order N`: N times, an `apply_async` that the caller drops at once,
//!   then an `apply` that asks the one worker which input it ran last;
//!   prints how many of those calls overtook the input submitted before
//!   them.
//! - `parked_killed`, `parked_timeout`, `parked_ctrl_c`,
//!   `parked_terminate`: as `killed`, `timeout`, `ctrl_c` and
//!   `terminate`, with the long call made by `apply_async` and its handle
//!   left unread (the call parked with its worker) until after the fault.
//! - `shared_cancel`: an `apply_async` whose handle one thread reads
//!   (`get`) while another calls `cancel_and_stop` on it; prints how the
//!   read ended, then the next call's.
//! - `parked_then_map`: an `apply_async` whose handle is left unread,
//!   waited on briefly, then a `map` on the same one worker (which the
//!   pool must take back from the parked call), then the handle read.
//! - `neighbours`: on a pool of two workers, while one worker's caller
//!   waits in its read of a long direct call (holding that worker's
//!   connection), the other worker runs a `map`, has a long call
//!   cancelled and stopped (its worker killed and replaced) and runs
//!   another `map`; prints whether all that came back while the long
//!   call still ran, then how `terminate` ended the long call.
//! - `concurrent`: four threads applying while a map runs on the same
//!   two workers, then `close` and `join` while a fifth thread applies
//!   until the pool is closed; prints the wrong answers seen.

use std::sync::Arc;
use std::time::Duration;

use integration_tests::signal;
use pool::Pool;

pool::task! {
    /// Sleeps `ms` milliseconds, then returns its own pid.
    fn nap(ms: u64) -> u32 {
        std::thread::sleep(Duration::from_millis(ms));
        std::process::id()
    }
}

/// How long the call that is interrupted would take: far past the test's
/// patience, so only the fault ends it.
const LONG_MS: u64 = 600_000;
/// When the fault is made, after the long call started.
const FAULT_AFTER: Duration = Duration::from_millis(500);
/// The task timeout of `timeout`'s pool, past [`FAULT_AFTER`].
const TIMEOUT: Duration = Duration::from_secs(2);

/// Context switches of this process's threads named `name`.
fn switches(name: &str) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let path = task.expect("a task").path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
        total += status
            .lines()
            .filter(|line| line.contains("ctxt_switches:"))
            .filter_map(|line| line.split(':').nth(1)?.trim().parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

/// Lets the dispatcher finish what the first calls gave it (the first
/// went the usual way) and go to sleep, so that the switches counted
/// after are those of the calls measured.
fn settle() {
    std::thread::sleep(Duration::from_millis(200));
}

fn kind(result: &Result<u32, pool::Error>) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        Err(err) => format!("{:?}", err.kind()),
    }
}

fn one_worker(timeout: Option<Duration>) -> Result<Pool, pool::Error> {
    let mut builder = Pool::builder().processes(1);
    if let Some(timeout) = timeout {
        builder = builder.task_timeout(timeout);
    }
    let pool = builder.build()?;
    // The first call tells the worker of the task, and the worker is
    // offered once the dispatcher has handed its result over: by the
    // last of these, calls go straight to it.
    for _ in 0..10 {
        pool.apply(nap, 0)?;
    }
    Ok(pool)
}

fn wakeups(count: u64, handles: bool) -> Result<(), pool::Error> {
    let pool = one_worker(None)?;
    settle();
    let dispatcher = switches("pool-dispatcher");
    let io = switches("pool-io");
    for _ in 0..count {
        match handles {
            true => pool.apply_async(nap, 0).get(None)?,
            false => pool.apply(nap, 0)?,
        };
    }
    println!(
        "dispatcher switches: {}",
        switches("pool-dispatcher") - dispatcher
    );
    println!("io switches: {}", switches("pool-io") - io);
    Ok(())
}

/// Runs a call of `ms` milliseconds on another thread, makes the fault
/// with `fault` after [`FAULT_AFTER`], and prints how the call ended and
/// how often the dispatcher was switched out before the fault (never,
/// for a direct call).
fn long_call_with(pool: &Arc<Pool>, ms: u64, fault: impl FnOnce(&Pool)) {
    settle();
    let before = switches("pool-dispatcher");
    let caller = {
        let pool = Arc::clone(pool);
        std::thread::spawn(move || pool.apply(nap, ms))
    };
    std::thread::sleep(FAULT_AFTER);
    let during = switches("pool-dispatcher") - before;
    println!("dispatcher switches during the call: {during}");
    fault(pool);
    let result = caller.join().expect("the caller thread");
    println!("long call: {}", kind(&result));
}

/// [`long_call_with`] for a call made by `apply_async`, whose handle is
/// read only after the fault.
fn parked_call_with(pool: &Pool, ms: u64, fault: impl FnOnce(&Pool)) {
    settle();
    let before = switches("pool-dispatcher");
    let handle = pool.apply_async(nap, ms);
    std::thread::sleep(FAULT_AFTER);
    let during = switches("pool-dispatcher") - before;
    println!("dispatcher switches during the call: {during}");
    fault(pool);
    println!("long call: {}", kind(&handle.get(None)));
}

/// Runs the parked variant of a fault scenario: `fault` is made during
/// the call (for `timeout`, the handle is read past the task timeout),
/// then a next call,
/// unless the pool was terminated.
fn parked(fault: &str) -> Result<(), pool::Error> {
    let timeout = (fault == "timeout").then_some(TIMEOUT);
    let pool = one_worker(timeout)?;
    let worker = pool.worker_pids()[0];
    match fault {
        "killed" => parked_call_with(&pool, LONG_MS, |_| signal(worker, libc::SIGKILL)),
        // The handle is read well past the timeout: nothing watched the
        // parked call meanwhile but its own clock.
        "timeout" => parked_call_with(&pool, LONG_MS, |_| {
            std::thread::sleep(TIMEOUT + Duration::from_secs(1))
        }),
        "ctrl_c" => parked_call_with(&pool, LONG_MS, |_| signal(std::process::id(), libc::SIGINT)),
        "terminate" => {
            parked_call_with(&pool, LONG_MS, Pool::terminate);
            println!("terminated");
            return Ok(());
        }
        other => panic!("no parked scenario {other:?}"),
    }
    let next = pool.apply(nap, 0);
    println!("next call: {}", kind(&next));
    println!("replaced: {}", next.is_ok_and(|pid| pid != worker));
    Ok(())
}

fn shared_cancel() -> Result<(), pool::Error> {
    let pool = one_worker(None)?;
    let worker = pool.worker_pids()[0];
    settle();
    let before = switches("pool-dispatcher");
    let handle = Arc::new(pool.apply_async(nap, LONG_MS));
    let reader = {
        let handle = Arc::clone(&handle);
        std::thread::spawn(move || handle.get(None))
    };
    std::thread::sleep(FAULT_AFTER);
    println!(
        "dispatcher switches during the call: {}",
        switches("pool-dispatcher") - before
    );
    println!("cancel came first: {}", handle.cancel_and_stop());
    let read = reader.join().expect("the reading thread");
    println!("long call: {}", kind(&read));
    let next = pool.apply(nap, 0);
    println!("next call: {}", kind(&next));
    println!("replaced: {}", next.is_ok_and(|pid| pid != worker));
    Ok(())
}

fn parked_then_map() -> Result<(), pool::Error> {
    let pool = one_worker(None)?;
    let worker = pool.worker_pids()[0];
    let handle = pool.apply_async(nap, 300);
    println!(
        "short wait: {}",
        handle.wait(Some(Duration::from_millis(50)))
    );
    let mapped = pool.map(nap, vec![0; 4])?;
    println!(
        "map ran on the worker: {}",
        mapped.iter().all(|&pid| pid == worker)
    );
    println!("parked call: {}", kind(&handle.get(None)));
    Ok(())
}

fn killed() -> Result<(), pool::Error> {
    let pool = Arc::new(one_worker(None)?);
    let worker = pool.worker_pids()[0];
    long_call_with(&pool, LONG_MS, |_| signal(worker, libc::SIGKILL));
    let next = pool.apply(nap, 0);
    println!("next call: {}", kind(&next));
    println!("replaced: {}", next.is_ok_and(|pid| pid != worker));
    Ok(())
}

fn killed_idle(times: usize) -> Result<(), pool::Error> {
    let pool = one_worker(None)?;
    let mut answered = 0;
    for _ in 0..times {
        let worker = pool.worker_pids()[0];
        signal(worker, libc::SIGKILL);
        match pool.apply(nap, 0) {
            Ok(_) => answered += 1,
            Err(err) => println!("error: {err}"),
        }
        // The next round's call goes direct again: warm its worker up.
        for _ in 0..10 {
            pool.apply(nap, 0)?;
        }
    }
    println!("answered: {answered}");
    Ok(())
}

fn killed_resting() -> Result<(), pool::Error> {
    let pool = one_worker(None)?;
    settle();
    let before = pool.worker_pids();
    signal(before[0], libc::SIGKILL);
    // Dead first (a SIGKILLed process takes a moment to stop being one),
    // so that the pid list read next cannot be the one from before.
    integration_tests::eventually(Duration::from_secs(50), || {
        !integration_tests::process_alive(before[0])
    });
    let after = integration_tests::pids_once_replaced(&pool, &before);
    println!("replaced: {}", after.len() == 1 && after != before);
    println!("next call: {}", kind(&pool.apply(nap, 0)));
    Ok(())
}

fn timeout() -> Result<(), pool::Error> {
    let pool = Arc::new(one_worker(Some(TIMEOUT))?);
    let worker = pool.worker_pids()[0];
    // No fault but the timeout, which comes after the look.
    long_call_with(&pool, LONG_MS, |_| {});
    let next = pool.apply(nap, 0);
    println!("next call: {}", kind(&next));
    println!("replaced: {}", next.is_ok_and(|pid| pid != worker));
    Ok(())
}

fn ctrl_c() -> Result<(), pool::Error> {
    let pool = Arc::new(one_worker(None)?);
    long_call_with(&pool, LONG_MS, |_| signal(std::process::id(), libc::SIGINT));
    println!("next call: {}", kind(&pool.apply(nap, 0)));
    Ok(())
}

fn terminate() -> Result<(), pool::Error> {
    let pool = Arc::new(one_worker(None)?);
    long_call_with(&pool, LONG_MS, Pool::terminate);
    println!("terminated");
    Ok(())
}

pool::task! {
    /// With a `path`, forks a process that holds this worker's
    /// descriptors open for as long as a long call lasts and writes its
    /// pid there; then naps `ms` milliseconds and returns its own pid.
    fn hold_and_nap(input: (String, u64)) -> u32 {
        let (path, ms) = input;
        if !path.is_empty() {
            let holder = integration_tests::fork_sleeper((LONG_MS / 1000) as u32);
            std::fs::write(&path, holder.to_string()).expect("write the holder's pid");
        }
        std::thread::sleep(Duration::from_millis(ms));
        std::process::id()
    }
}

/// The long call of [`hold_and_nap`], ended by `fault`; the process that
/// held the socket is killed afterwards.
fn held(fault: &str) -> Result<(), pool::Error> {
    let pool = Arc::new(one_worker(None)?);
    let worker = pool.worker_pids()[0];
    for _ in 0..10 {
        pool.apply(hold_and_nap, (String::new(), 0))?;
    }
    settle();
    let path = std::env::temp_dir().join(format!("pool-direct-holder-{}", std::process::id()));
    let before = switches("pool-dispatcher");
    let caller = {
        let (pool, path) = (Arc::clone(&pool), path.to_string_lossy().into_owned());
        let queued = fault == "killed_queued";
        std::thread::spawn(move || match queued {
            // A map goes the usual way, through the dispatcher.
            true => pool
                .map(hold_and_nap, vec![(path, LONG_MS)])
                .map(|pids| pids[0]),
            false => pool.apply(hold_and_nap, (path, LONG_MS)),
        })
    };
    std::thread::sleep(FAULT_AFTER);
    println!(
        "dispatcher switches during the call: {}",
        switches("pool-dispatcher") - before
    );
    match fault {
        "ctrl_c" => signal(std::process::id(), libc::SIGINT),
        "killed" | "killed_queued" => signal(worker, libc::SIGKILL),
        _ => pool.terminate(),
    }
    let result = caller.join().expect("the caller thread");
    println!("long call: {}", kind(&result));
    match std::fs::read_to_string(&path) {
        Ok(holder) => {
            signal(holder.trim().parse().expect("a pid"), libc::SIGKILL);
            println!("held: true");
        }
        Err(err) => println!("held: no holder ({err})"),
    }
    let _ = std::fs::remove_file(&path);
    if fault != "terminate" {
        let next = pool.apply(nap, 0);
        println!("next call: {}", kind(&next));
        println!("replaced: {}", next.is_ok_and(|pid| pid != worker));
    }
    Ok(())
}

pool::task! {
    fn double(x: u64) -> u64 { 2 * x }
}

pool::task! {
    /// Notes `x` as the last input this worker ran.
    fn note(x: u64) -> u64 {
        LAST_NOTED.store(x, std::sync::atomic::Ordering::SeqCst);
        x
    }
}

pool::task! {
    /// The last input `note` ran in this worker.
    fn last_noted(_unit: ()) -> u64 {
        LAST_NOTED.load(std::sync::atomic::Ordering::SeqCst)
    }
}

static LAST_NOTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn order(times: u64) -> Result<(), pool::Error> {
    let pool = one_worker(None)?;
    // The first call of each task tells the worker of it; later ones may
    // go straight to the worker.
    pool.apply(note, 0)?;
    pool.apply(last_noted, ())?;
    let overtaken = (1..=times)
        .map(|i| {
            drop(pool.apply_async(note, i));
            pool.apply(last_noted, ())
        })
        .zip(1..)
        .filter(|(last, i)| last.as_ref().ok() != Some(i))
        .count();
    println!("overtaken: {overtaken}");
    Ok(())
}

/// See the module's doc: nothing the pool does for its other worker
/// (dispatching, `pool-io`'s reads, a kill and a replacement) may wait
/// for the connection a caller holds while it reads a long direct call.
fn neighbours() -> Result<(), pool::Error> {
    let pool = Arc::new(Pool::builder().processes(2).build()?);
    for _ in 0..10 {
        pool.apply(nap, 0)?;
    }
    settle();
    let long_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let before = switches("pool-dispatcher");
    let caller = {
        let (pool, done) = (Arc::clone(&pool), Arc::clone(&long_done));
        std::thread::spawn(move || {
            let result = pool.apply(nap, LONG_MS);
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            result
        })
    };
    std::thread::sleep(FAULT_AFTER);
    println!(
        "dispatcher switches during the call: {}",
        switches("pool-dispatcher") - before
    );
    let first = pool.map(double, 0..2000u64)?;
    let stopped = pool.apply_async(nap, LONG_MS);
    std::thread::sleep(FAULT_AFTER);
    stopped.cancel_and_stop();
    let second = pool.map(double, 0..2000u64)?;
    let right = (0..2000u64).all(|x| first[x as usize] == 2 * x && second[x as usize] == 2 * x);
    println!("maps right: {right}");
    let still = !long_done.load(std::sync::atomic::Ordering::SeqCst);
    println!("all while the long call ran: {still}");
    pool.terminate();
    let result = caller.join().expect("the caller thread");
    println!("long call: {}", kind(&result));
    Ok(())
}

fn concurrent() -> Result<(), pool::Error> {
    let pool = Arc::new(Pool::builder().processes(2).build()?);
    let callers: Vec<_> = (0..4u64)
        .map(|t| {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                (0..500u64)
                    .map(|i| t * 1000 + i)
                    .filter(|&x| pool.apply(double, x).ok() != Some(2 * x))
                    .count()
            })
        })
        .collect();
    let mapped = pool.map(double, 0..5000u64)?;
    let mut wrong = (0..5000u64)
        .filter(|&x| mapped[x as usize] != 2 * x)
        .count();
    for caller in callers {
        wrong += caller.join().expect("a caller thread");
    }
    println!("wrong answers: {wrong}");
    let last = {
        let pool = Arc::clone(&pool);
        std::thread::spawn(move || {
            let mut answered = 0u64;
            loop {
                match pool.apply(double, answered) {
                    Ok(y) if y == 2 * answered => answered += 1,
                    Ok(_) => return "a wrong answer".to_string(),
                    Err(err) => return format!("{:?}", err.kind()),
                }
            }
        })
    };
    std::thread::sleep(FAULT_AFTER);
    pool.close();
    pool.join();
    println!("joined");
    println!("last caller: {}", last.join().expect("the last caller"));
    println!("workers after join: {}", pool.worker_pids().len());
    Ok(())
}

fn main() -> Result<(), pool::Error> {
    pool::init();
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str).unwrap_or_default() {
        "wakeups" => wakeups(
            args.get(2).and_then(|n| n.parse().ok()).unwrap_or(200),
            args.get(3).is_some_and(|how| how == "async"),
        )?,
        "parked_killed" => parked("killed")?,
        "parked_timeout" => parked("timeout")?,
        "parked_ctrl_c" => parked("ctrl_c")?,
        "parked_terminate" => parked("terminate")?,
        "parked_then_map" => parked_then_map()?,
        "shared_cancel" => shared_cancel()?,
        "killed" => killed()?,
        "killed_idle" => killed_idle(args.get(2).and_then(|n| n.parse().ok()).unwrap_or(5))?,
        "killed_resting" => killed_resting()?,
        "timeout" => timeout()?,
        "ctrl_c" => ctrl_c()?,
        "terminate" => terminate()?,
        "held_ctrl_c" => held("ctrl_c")?,
        "held_terminate" => held("terminate")?,
        "held_killed" => held("killed")?,
        "held_killed_queued" => held("killed_queued")?,
        "order" => order(args.get(2).and_then(|n| n.parse().ok()).unwrap_or(300))?,
        "neighbours" => neighbours()?,
        "concurrent" => concurrent()?,
        other => {
            eprintln!("unknown mode {other:?}");
            std::process::exit(2);
        }
    }
    Ok(())
}
