//! A pool whose door (the listener for remote workers) takes hostile
//! traffic, for `tests/pool_door_*.rs`: one scenario per run, named by the
//! first argument, printing what happened as `label: value` lines.
//!
//! - `reset_flood WORKER`: a remote-only pool while peers connect and
//!   reset about 1,000 times a second; `WORKER` (`pool_remote_worker`) is
//!   started with `--connect` once the flood is under way, and must join
//!   while it runs and then run a map.
//! - `descriptors HARD`: with a soft descriptor limit of 1024 and a hard
//!   one of `HARD`, a pool of two local workers that listens. The test
//!   holds a crowd of silent peers at its door and says `flooded` on
//!   stdin; this prints how many descriptors are in use, and the test
//!   starts a remote worker. It must join; a local worker SIGKILLed
//!   mid-map must be replaced and the map complete; after `gone` (the
//!   crowd left) the pool must still work.
//! - `exhausted`: a pool of two local workers (no listener) in a process
//!   that uses up its descriptors itself, then SIGKILLs a worker mid-map;
//!   once the pool said it cannot start the replacement, it frees them.
//!   The replacement must start then, and the map complete.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pool::Pool;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// The key of the pool's door; the tests give it to the good worker.
const KEY: &str = "door key";
/// Bounds every wait so that a failure ends instead of hanging.
const PATIENCE: Duration = Duration::from_secs(60);
const RESETS_PER_SECOND: u32 = 1000;
/// What the pool logs when it cannot start a worker for a shortage.
const SHORTAGE_WARNING: &str = "cannot start a worker for now";
/// How long the reset flood lasts at least (if the worker joins sooner).
const FLOOD_AT_LEAST: Duration = Duration::from_secs(25);

/// Keeps the text of each warning (or error) the pool and connection log.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl<S: Subscriber> Layer<S> for Warnings {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let metadata = event.metadata();
        let ours = ["pool", "connection"]
            .iter()
            .any(|crate_name| metadata.target().starts_with(crate_name));
        if *metadata.level() > Level::WARN || !ours {
            return;
        }
        struct Text(String);
        impl Visit for Text {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={value:?} ", field.name()));
            }
        }
        let mut text = Text(String::new());
        event.record(&mut text);
        self.0.lock().unwrap().push(text.0);
    }
}

fn main() {
    pool::init();
    let warnings = Warnings::default();
    tracing_subscriber::registry().with(warnings.clone()).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match &args[..] {
        [scenario, worker] if scenario == "reset_flood" => reset_flood(worker, &warnings),
        [scenario, hard] if scenario == "descriptors" => {
            descriptors(hard.parse().expect("a hard limit"))
        }
        [scenario] if scenario == "exhausted" => exhausted(&warnings),
        _ => {
            eprintln!("usage: pool_door reset_flood WORKER | descriptors HARD | exhausted");
            std::process::exit(2);
        }
    }
}

fn socket_address(pool: &Pool) -> std::net::SocketAddr {
    let address = pool.listen_address().expect("a listening pool");
    address
        .strip_prefix("tcp:")
        .and_then(|a| a.parse().ok())
        .expect("a TCP address")
}

/// The primes in each of `ranges`, counted here.
fn expected_primes(ranges: &[(u64, u64)]) -> Vec<u64> {
    let is_prime = |n: u64| n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0);
    ranges
        .iter()
        .map(|&(start, end)| (start..end).filter(|&n| is_prime(n)).count() as u64)
        .collect()
}

/// Waits until a remote worker of `pool` is ready, for at most PATIENCE
/// from `since`; returns how long that took, or `None`.
fn wait_for_remote(pool: &Pool, since: Instant) -> Option<Duration> {
    while since.elapsed() < PATIENCE {
        if pool
            .remote_workers()
            .iter()
            .any(|w| w.claimed_pid.is_some())
        {
            return Some(since.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

fn reset_flood(worker: &str, warnings: &Warnings) {
    let pool = Pool::builder()
        .processes(0)
        .listen("tcp:127.0.0.1:0", KEY)
        .handle_interrupts(false)
        .build()
        .expect("build the pool");
    let addr = socket_address(&pool);
    // As long as the patience, so that a listener that starves the worker
    // ends the flood only by running out of it.
    let max = u64::from(RESETS_PER_SECOND) * PATIENCE.as_secs();
    let began = Instant::now();
    let flood = integration_tests::ResetFlood::start(addr, RESETS_PER_SECOND, max, PATIENCE);
    // Well into the flood: one burst of this size kept remote workers out
    // for most of a minute before.
    while flood.sent() < 1_100 && flood.running() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let spawned = Instant::now();
    let mut child = std::process::Command::new(worker)
        .args(["--connect", &format!("tcp:{addr}")])
        .env("POOL_AUTHKEY", KEY)
        .spawn()
        .expect("start the remote worker");
    let joined = wait_for_remote(&pool, spawned);
    let during = flood.running();
    let sent_before_join = flood.sent();
    println!("resets before the worker started: 1100");
    println!("resets before it joined: {sent_before_join}");
    println!("joined during the flood: {}", joined.is_some() && during);
    match joined {
        Some(took) => println!("join ms: {:.1}", took.as_secs_f64() * 1000.0),
        None => println!("join ms: none within {PATIENCE:?}"),
    }
    // The map runs while the flood goes on, each input waited for within
    // one patience in all: with no worker, a map would wait for ever.
    let ranges: Vec<(u64, u64)> = (0..10u64).map(|i| (i * 1000, (i + 1) * 1000)).collect();
    let pending: Vec<_> = ranges
        .iter()
        .map(|&range| pool.apply_async(pool::builtin::count_primes, range))
        .collect();
    let give_up = Instant::now() + PATIENCE;
    let counts: Result<Vec<u64>, _> = pending
        .iter()
        .map(|p| p.get(Some(give_up.saturating_duration_since(Instant::now()))))
        .collect();
    match counts {
        Ok(counts) if counts == expected_primes(&ranges) => println!("map: correct"),
        Ok(counts) => println!("map: wrong {counts:?}"),
        Err(err) => println!("map: {err:#}"),
    }
    println!("map during the flood: {}", flood.running());
    // Long enough for the pool's report on failed peers to come round
    // more than once.
    while flood.running() && began.elapsed() < FLOOD_AT_LEAST {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (sent, flooded) = flood.stop();
    println!(
        "resets: {sent} in {:.1} s ({:.0} a second)",
        flooded.as_secs_f64(),
        sent as f64 / flooded.as_secs_f64()
    );
    let logged = warnings.0.lock().unwrap().clone();
    println!("flood seconds: {:.1}", flooded.as_secs_f64());
    println!("warnings: {}", logged.len());
    for line in &logged {
        println!("warning: {line}");
    }
    drop(pool);
    let _ = child.wait();
}

/// Sets this process's soft descriptor limit to `soft`, and the hard one
/// down to `hard`.
fn set_limits(soft: u64, hard: u64) {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit only reads the struct it is given.
    let ret = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(ret, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

fn descriptors(hard: u64) {
    let (_, old_hard) = integration_tests::descriptor_limits();
    let hard = hard.min(old_hard);
    set_limits(1024.min(hard), hard);
    let pool = Pool::builder()
        .processes(2)
        .retries(1)
        .listen("tcp:127.0.0.1:0", KEY)
        .handle_interrupts(false)
        .build()
        .expect("build the pool");
    let (soft, _) = integration_tests::descriptor_limits();
    println!("address: tcp:{}", socket_address(&pool));
    println!("limits: {soft} {hard}");
    let mut stdin = std::io::stdin().lock();
    let mut said = String::new();
    stdin.read_line(&mut said).expect("read stdin");
    assert_eq!(said.trim(), "flooded");
    // Until the count settles: the listener has taken what it will.
    let used = || integration_tests::census().map_or(soft, |c| c.descriptors as u64);
    let (mut last, mut steady, began) = (used(), 0, Instant::now());
    while steady < 10 && began.elapsed() < PATIENCE / 3 {
        std::thread::sleep(Duration::from_millis(100));
        let now = used();
        steady = if now == last { steady + 1 } else { 0 };
        last = now;
    }
    println!("descriptors under the crowd: {last} of {soft}");
    let local: Vec<u32> = pool.worker_pids();
    match wait_for_remote(&pool, Instant::now()) {
        Some(took) => println!("remote joined: yes, in {} ms", took.as_millis()),
        None => println!("remote joined: no"),
    }
    map_killing_a_worker(&pool, local[0], || {});
    println!("waiting for the crowd to leave");
    said.clear();
    stdin.read_line(&mut said).expect("read stdin");
    assert_eq!(said.trim(), "gone");
    map_after(&pool);
}

/// Runs a small map once the trouble has passed and prints whether the
/// pool is still usable: "after: correct", "after: wrong ..." or the error.
fn map_after(pool: &Pool) {
    let ranges: Vec<(u64, u64)> = (0..8u64).map(|i| (i * 1000, (i + 1) * 1000)).collect();
    match pool
        .map_with(pool::builtin::count_primes, ranges.clone())
        .chunksize(1)
        .run()
    {
        Ok(counts) if counts == expected_primes(&ranges) => println!("after: correct"),
        Ok(counts) => println!("after: wrong {counts:?}"),
        Err(err) => println!("after: {err:#}"),
    }
}

/// Maps inputs of 40 to 80 ms (so that the map lasts a while) and, once
/// it is under way, SIGKILLs worker `victim` and calls `meanwhile`;
/// prints whether the map was correct and the victim replaced.
fn map_killing_a_worker(pool: &Pool, victim: u32, meanwhile: impl FnOnce()) {
    let before = pool.worker_pids().len();
    let inputs: Vec<u64> = (40..80).collect();
    let mut outputs = Vec::new();
    let mut failed = None;
    let mut meanwhile = Some(meanwhile);
    for result in pool.imap(pool::builtin::sleep_ms, inputs.clone()) {
        match result {
            Ok(output) => outputs.push(output),
            Err(err) => {
                failed = Some(format!("{err:#}"));
                break;
            }
        }
        if let Some(meanwhile) = meanwhile.take() {
            // SAFETY: sends SIGKILL to a worker process of ours.
            unsafe { libc::kill(victim as i32, libc::SIGKILL) };
            meanwhile();
        }
    }
    match failed {
        None if outputs == inputs => println!("map: correct"),
        None => println!("map: wrong {outputs:?}"),
        Some(err) => println!("map: {err}"),
    }
    let began = Instant::now();
    let replaced = loop {
        let now: BTreeSet<u32> = pool.worker_pids().into_iter().collect();
        if !now.contains(&victim) && now.len() >= before {
            break true;
        }
        if began.elapsed() > PATIENCE {
            break false;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    println!("replaced: {replaced}");
}

fn exhausted(warnings: &Warnings) {
    let (_, hard) = integration_tests::descriptor_limits();
    // So that using them up takes a thousand opens, not a million.
    set_limits(1024.min(hard), hard);
    let pool = Pool::builder()
        .processes(2)
        .retries(1)
        .handle_interrupts(false)
        .build()
        .expect("build the pool");
    let victim = pool.worker_pids()[0];
    let held = integration_tests::use_up_descriptors(0);
    map_killing_a_worker(&pool, victim, || {
        // Until the replacement met the shortage (not for a set time: a
        // busy machine may take long to notice the death), and a few of
        // its attempts failed after.
        let began = Instant::now();
        let met = || {
            let logged = warnings.0.lock().unwrap();
            logged.iter().any(|w| w.contains(SHORTAGE_WARNING))
        };
        while !met() && began.elapsed() < PATIENCE {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(200));
        drop(held);
    });
    map_after(&pool);
    let logged = warnings.0.lock().unwrap().clone();
    println!("warnings: {}", logged.len());
    for line in &logged {
        println!("warning: {line}");
    }
}
