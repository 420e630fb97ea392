//! A program that runs one pool scenario, named by its first argument,
//! and prints what happened, one `key: value` line at a time, for the
//! tests in `tests/pool_*.rs` to check. Its tasks fail, panic, die and
//! hang on purpose.

use std::collections::BTreeSet;
use std::time::Duration;

use pool::{ErrorKind, Pool};
use serde::{Serialize, Serializer};

pool::task! {
    /// Fails for 7, succeeds otherwise.
    fn fail_on_seven(x: u32) -> Result<u32, String> {
        if x == 7 { Err(format!("seven is not allowed (got {x})")) } else { Ok(x * 10) }
    }
}

pool::task! {
    /// Panics for 3.
    fn panic_on_three(x: u32) -> u32 {
        if x == 3 {
            panic!("three is right out");
        }
        x
    }
}

pool::task! {
    /// Ends its own process for 5, in the way `how` says.
    fn die_on_five((x, how): (u32, String)) -> u32 {
        if x == 5 {
            match how.as_str() {
                "abort" => std::process::abort(),
                "exit3" => std::process::exit(3),
                // SAFETY: sending SIGKILL to ourselves; nothing to uphold.
                _ => unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                },
            }
        }
        x
    }
}

pool::task! {
    /// Sleeps for `ms` milliseconds.
    fn sleep_for(ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }
}

pool::task! {
    /// Returns the worker's pid.
    fn whoami(_x: u32) -> u32 {
        std::process::id()
    }
}

pool::task! {
    /// Writes a line to stderr.
    fn say(text: String) -> usize {
        eprintln!("{text}");
        text.len()
    }
}

/// A value whose encoding fails when it is odd.
#[derive(serde::Deserialize, Debug)]
struct Picky(u32);

impl Serialize for Picky {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 % 2 == 1 {
            return Err(serde::ser::Error::custom(format!(
                "refusing to encode odd {}",
                self.0
            )));
        }
        serializer.serialize_u32(self.0)
    }
}

/// A value that the worker encodes but whose decoding fails for 13.
#[derive(Serialize, Debug)]
struct Unlucky(u32);

impl<'de> serde::Deserialize<'de> for Unlucky {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match u32::deserialize(deserializer)? {
            13 => Err(serde::de::Error::custom("refusing to decode 13")),
            x => Ok(Unlucky(x)),
        }
    }
}

pool::task! {
    /// Makes an Unlucky: 13 cannot be decoded in the parent.
    fn make_unlucky(x: u32) -> Unlucky { Unlucky(x) }
}

pool::task! {
    /// Makes a Picky: odd outputs cannot be encoded.
    fn make_picky(x: u32) -> Picky { Picky(x) }
}

pool::task! {
    /// Reads a Picky: odd inputs cannot be encoded.
    fn read_picky(p: Picky) -> u32 { p.0 }
}

static SETTING: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pool::task! {
    /// Stores the per-worker setting.
    fn configure(setting: String) -> () {
        let _ = SETTING.set(setting);
    }
}

pool::task! {
    /// Reads the per-worker setting.
    fn read_setting(_x: u32) -> String {
        SETTING.get().cloned().unwrap_or_default()
    }
}

pool::task! {
    /// An initializer that takes half a minute while `marker` exists.
    fn slow_start(marker: String) -> () {
        if std::path::Path::new(&marker).exists() {
            std::thread::sleep(Duration::from_secs(30));
        }
    }
}

pool::task! {
    /// Appends a line to the file `log`, then aborts: a task that kills
    /// every worker that runs it, and counts how often it ran.
    fn log_and_abort(log: String) -> u32 {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("open log");
        let _ = file.write_all(b"attempt\n");
        drop(file);
        std::process::abort()
    }
}

pool::task! {
    /// Aborts the first time it runs for `x` (when its marker file is
    /// new), and returns `x` when run again.
    fn abort_first_time((x, marker): (u32, String)) -> u32 {
        let fresh = std::fs::OpenOptions::new().write(true).create_new(true).open(&marker).is_ok();
        if fresh {
            std::process::abort();
        }
        x
    }
}

pool::task! {
    /// An initializer that fails in a process whose environment says so.
    fn picky_setup(_x: ()) -> Result<(), String> {
        match std::env::var_os("POOL_PROGRAM_FAIL_SETUP") {
            Some(_) => Err("this host cannot set up".to_string()),
            None => Ok(()),
        }
    }
}

fn kill(pid: u32) {
    // SAFETY: kill takes plain integers; the pid is one of our workers.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
}

fn report_error(label: &str, err: &pool::Error) {
    println!(
        "{label}: kind={:?} index={:?} task={:?} message={}",
        err.kind(),
        err.index(),
        err.task(),
        err.message()
    );
}

fn print_pids(pool: &Pool) {
    let pids: Vec<String> = pool.worker_pids().iter().map(u32::to_string).collect();
    println!("pids: {}", pids.join(" "));
}

/// Tallies an imap over results: successes, and each error reported.
fn tally<T>(label: &str, results: impl Iterator<Item = pool::Result<T>>) {
    let mut ok = 0;
    for result in results {
        match result {
            Ok(_) => ok += 1,
            Err(err) => report_error(&format!("{label} error"), &err),
        }
    }
    println!("{label} ok: {ok}");
}

/// A pool of remote workers only: the test starts them with the address
/// printed here and the key in POOL_AUTHKEY.
fn remote_only_pool() -> Result<Pool, pool::Error> {
    let key = std::env::var("POOL_AUTHKEY").unwrap_or_default();
    let pool = Pool::builder()
        .processes(0)
        .listen("tcp:127.0.0.1:0", key)
        .build()?;
    println!("address: {}", pool.listen_address().unwrap_or_default());
    Ok(pool)
}

fn main() -> Result<(), pool::Error> {
    pool::init();
    let mode = std::env::args().nth(1).unwrap_or_default();
    let builder = Pool::builder().processes(2);
    match mode.as_str() {
        "task_error" => {
            let pool = builder.build()?;
            match pool.map(fail_on_seven, 0..20) {
                Ok(_) => println!("map: unexpectedly ok"),
                Err(err) => report_error("map", &err),
            }
            tally("imap", pool.imap(fail_on_seven, 0..20));
            let out = pool.map(fail_on_seven, [1, 2, 3])?;
            println!("after: {out:?}");
        }
        "panic" => {
            let pool = builder.build()?;
            tally("imap", pool.imap(panic_on_three, 0..10));
            println!("after: {:?}", pool.map(panic_on_three, [4, 5])?);
        }
        "die" => {
            let how = std::env::args().nth(2).unwrap_or_default();
            let pool = builder.build()?;
            print_pids(&pool);
            let inputs = (0..20).map(|x| (x, how.clone()));
            tally("imap", pool.imap(die_on_five, inputs));
            print_pids(&pool);
            println!("after: {:?}", pool.map(die_on_five, [(1, how.clone())])?);
        }
        "spin" => {
            // The low-latency mode: every side spins, the caller too.
            let pool = builder.spin(Duration::from_micros(200)).build()?;
            let before = pool.worker_pids();
            print_pids(&pool);
            let inputs: Vec<(u32, String)> = (0..2000)
                .filter(|&x| x != 5)
                .map(|x| (x, String::new()))
                .collect();
            let out = pool.map(die_on_five, inputs.clone())?;
            let expected: Vec<u32> = inputs.iter().map(|(x, _)| *x).collect();
            println!("map matches: {}", out == expected);
            let applied: Vec<u32> = (0..200)
                .map(|x| pool.apply(die_on_five, (x + 10, String::new())))
                .collect::<Result<_, _>>()?;
            println!(
                "apply matches: {}",
                applied == (10..210).collect::<Vec<u32>>()
            );
            println!(
                "get: {}",
                pool.apply_async(die_on_five, (7, String::new()))
                    .get(None)?
            );
            match pool.apply(die_on_five, (5, "sigkill".into())) {
                Ok(x) => println!("killed apply: unexpectedly ok {x}"),
                Err(err) => report_error("killed apply", &err),
            }
            println!("after: {}", pool.apply(die_on_five, (9, String::new()))?);
            let after = integration_tests::pids_once_replaced(&pool, &before);
            let after: Vec<String> = after.iter().map(u32::to_string).collect();
            println!("pids: {}", after.join(" "));
        }
        "long_map" => {
            // The test kills a worker from outside while this runs.
            let pool = builder.build()?;
            print_pids(&pool);
            tally(
                "imap",
                pool.imap(sleep_for, std::iter::repeat(100).take(30)),
            );
            print_pids(&pool);
        }
        "wait_forever" => {
            // The test SIGKILLs this process; its workers must follow.
            let pool = builder.build()?;
            print_pids(&pool);
            let _ = pool.map(sleep_for, [60_000, 60_000]);
        }
        "ctrl_c" => {
            let pool = builder.build()?;
            print_pids(&pool);
            match pool
                .map_with(sleep_for, std::iter::repeat(200).take(100))
                .chunksize(1)
                .run()
            {
                Err(err) if err.kind() == ErrorKind::Interrupted => println!("interrupted"),
                Err(err) => report_error("map", &err),
                Ok(_) => println!("map: finished without interruption"),
            }
        }
        "timeout" => {
            let pool = builder.task_timeout(Duration::from_millis(300)).build()?;
            let before: BTreeSet<u32> = pool.worker_pids().into_iter().collect();
            tally("imap", pool.imap(sleep_for, [10, 10, 60_000, 10, 10, 10]));
            let after: BTreeSet<u32> = pool.worker_pids().into_iter().collect();
            println!("replaced: {}", before.difference(&after).count());
            println!("after: {:?}", pool.map(sleep_for, [1, 2])?);
        }
        "encode" => {
            let pool = builder.build()?;
            tally("outputs", pool.imap(make_picky, 0..4));
            tally("inputs", pool.imap(read_picky, (0..4).map(Picky)));
            match pool.apply(make_unlucky, 13) {
                Ok(_) => println!("decode: unexpectedly ok"),
                Err(err) => report_error("decode", &err),
            }
        }
        "initializer" => {
            let pool = builder
                .initializer(configure, "configured".to_string())
                .build()?;
            println!("settings: {:?}", pool.map(read_setting, 0..4)?);
        }
        "remote_setup_fails" => {
            // A running pool; then a remote worker (a thread here, in a
            // process whose environment makes the initializer fail) joins
            // and fails its set-up. It is turned away; the pool goes on.
            let pool = Pool::builder()
                .processes(1)
                .initializer(picky_setup, ())
                .listen("tcp:127.0.0.1:0", b"setup key".to_vec())
                .handle_interrupts(false)
                .build()?;
            let address = pool.listen_address().unwrap_or_default().to_string();
            std::env::set_var("POOL_PROGRAM_FAIL_SETUP", "1");
            let joined = std::thread::spawn(move || pool::connect_worker(&address, b"setup key"));
            let left = joined.join().map(|r| r.map_err(|e| e.kind()));
            println!("remote worker: {left:?}");
            match pool.apply(whoami, 1) {
                Ok(_) => println!("after: ok"),
                Err(err) => report_error("after", &err),
            }
        }
        "max_tasks" => {
            let pool = builder.max_tasks_per_child(3).build()?;
            let pids: BTreeSet<u32> = pool
                .map_with(whoami, 0..12)
                .chunksize(1)
                .run()?
                .into_iter()
                .collect();
            println!("distinct workers: {}", pids.len());
        }
        "stderr" => {
            let pool = builder.build()?;
            pool.apply(say, "a line from a task".to_string())?;
        }
        "unknown_task" => {
            let program = std::env::args().nth(2).unwrap_or_default();
            let pool = builder.worker_program(program).build()?;
            match pool.apply(fail_on_seven, 1) {
                Ok(_) => println!("apply: unexpectedly ok"),
                Err(err) => report_error("apply", &err),
            }
            println!("builtin: {}", pool.apply(pool::builtin::echo, 42)?);
        }
        "close_join" => {
            let pool = builder.build()?;
            let pids = pool.worker_pids();
            let pending: Vec<_> = (0..4).map(|_| pool.apply_async(sleep_for, 50)).collect();
            pool.close();
            pool.join();
            let done = pending.iter().filter(|p| p.get(None).is_ok()).count();
            println!("finished after close: {done}");
            let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
            println!("old pids: {}", pids.join(" "));
            match pool.apply(sleep_for, 1) {
                Err(err) => report_error("after close", &err),
                Ok(_) => println!("after close: unexpectedly ok"),
            }
        }
        "remote" => {
            let pool = remote_only_pool()?;
            let ranges = (0..10u64).map(|i| (i * 1000, (i + 1) * 1000));
            let primes: u64 = pool
                .map_with(pool::builtin::count_primes, ranges)
                .chunksize(1)
                .run()?
                .iter()
                .sum();
            println!("primes below 10000: {primes}");
        }
        "remote_idle" => {
            // A remote-only pool that keeps its one worker idle for a
            // while once it has run an input, for the test to watch it.
            let pool = remote_only_pool()?;
            let pids = pool.map(pool::builtin::worker_pid_after_ms, vec![0])?;
            println!("worker: {}", pids[0]);
            std::thread::sleep(Duration::from_secs(3));
            println!("done");
        }
        "remote_spread" => {
            // A remote-only pool: once the six workers the test starts
            // have joined, a map of 64 inputs of 50 ms each, chunked
            // automatically, must keep every one of them busy.
            let pool = remote_only_pool()?;
            let began = std::time::Instant::now();
            let ready = || {
                let remote = pool.remote_workers();
                remote.iter().filter(|w| w.claimed_pid.is_some()).count()
            };
            while ready() < 6 && began.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(10));
            }
            println!("workers joined: {}", ready());
            let pids = pool.map(pool::builtin::worker_pid_after_ms, vec![50; 64])?;
            let used: BTreeSet<u32> = pids.iter().copied().collect();
            println!("inputs run: {}", pids.len());
            println!("workers used: {}", used.len());
        }
        "remote_long" => {
            // One long task for a remote worker; the test kills this
            // process while the worker runs it.
            let pool = remote_only_pool()?;
            report_error(
                "long task",
                &pool
                    .apply(pool::builtin::sleep_ms, 120_000)
                    .err()
                    .unwrap_or_else(|| pool::Error::new(ErrorKind::Closed, "finished")),
            );
        }
        "setup_unread" => {
            // A worker program that never reads its setup message, which
            // a large initializer input makes larger than a socket buffer.
            let started = builder
                .worker_program("/bin/sleep")
                .worker_arg("600")
                .initializer(configure, "x".repeat(8 << 20))
                .startup_timeout(Duration::from_millis(500))
                .build();
            match started {
                Ok(_) => println!("build: unexpectedly ok"),
                Err(err) => report_error("build", &err),
            }
        }
        "replacement_killed" => {
            // A replacement worker is SIGKILLed from outside while it is
            // still starting: the pool must start another and go on.
            let marker = std::env::temp_dir()
                .join(format!("pool-slow-start-{}", std::process::id()))
                .display()
                .to_string();
            let pool = builder.initializer(slow_start, marker.clone()).build()?;
            let first = pool.worker_pids();
            std::fs::write(&marker, b"").expect("write the marker");
            kill(first[0]);
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            let replacement = loop {
                let new = pool.worker_pids().into_iter().find(|p| !first.contains(p));
                if let Some(pid) = new {
                    break pid;
                }
                assert!(std::time::Instant::now() < deadline, "no replacement");
                std::thread::sleep(Duration::from_millis(5));
            };
            // It is in its 30-second initializer: not ready yet.
            kill(replacement);
            std::fs::remove_file(&marker).expect("remove the marker");
            // Once it is no longer listed, the pool has dealt with its end.
            while pool.worker_pids().contains(&replacement) {
                assert!(std::time::Instant::now() < deadline, "still listed");
                std::thread::sleep(Duration::from_millis(5));
            }
            match pool.map_with(whoami, 0..8).chunksize(1).run() {
                Ok(pids) => println!("map after: ok {}", pids.len()),
                Err(err) => report_error("map after", &err),
            }
        }
        "retries" => {
            let dir = std::env::temp_dir().join(format!("pool-retries-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("create the scratch directory");
            let pool = builder.retries(2).build()?;
            let log = dir.join("attempts").display().to_string();
            match pool.apply(log_and_abort, log.clone()) {
                Ok(_) => println!("always: unexpectedly ok"),
                Err(err) => report_error("always", &err),
            }
            let attempts = std::fs::read_to_string(&log).unwrap_or_default();
            println!("attempts: {}", attempts.lines().count());
            let inputs = (0..6).map(|x| (x, dir.join(format!("ran-{x}")).display().to_string()));
            println!(
                "once: {:?}",
                pool.map_with(abort_first_time, inputs).chunksize(1).run()?
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
        "remote_alone" => {
            // A pool of remote workers only, and none ever joins: calls
            // wait; a timed get and Ctrl-C are the ways out.
            let pool = Pool::builder()
                .processes(0)
                .listen("tcp:127.0.0.1:0", "nobody has this key")
                .build()?;
            let pending = pool.apply_async(whoami, 1);
            let timed = pending.get(Some(Duration::from_millis(100)));
            println!("pids: ");
            match pool.map(whoami, 0..4) {
                Err(err) if err.kind() == ErrorKind::Interrupted => println!("interrupted"),
                Err(err) => report_error("map", &err),
                Ok(_) => println!("map: unexpectedly ok"),
            }
            match timed {
                Ok(_) => println!("get: unexpectedly ok"),
                Err(err) => report_error("get", &err),
            }
            match pending.get(None) {
                Ok(_) => println!("pending: unexpectedly ok"),
                Err(err) => report_error("pending", &err),
            }
        }
        other => {
            eprintln!("unknown mode {other:?}");
            std::process::exit(2);
        }
    }
    Ok(())
}
