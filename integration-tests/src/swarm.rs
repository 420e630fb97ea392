//! A worker simulator: many remote workers in one process, for measuring
//! and testing a pool's head at cluster scale without a process per worker.
//!
//! Each simulated worker is a thread (with a small stack) holding its own
//! authenticated TCP connection to a pool that
//! [listens](pool::PoolBuilder::listen), and runs the pool's own worker
//! loop on it ([`pool::join_pool`], [`pool::serve_joined`]: the code
//! `pool-worker --connect` runs, less its process-wide watcher), so the
//! head sees exactly what a real remote worker costs it and says.
//!
//! A swarm is the head's own program started again ([`Swarm::start`]), so
//! that its workers are the head's very build (a pool may refuse workers of
//! another build), and its tasks ([`plus_one`], [`nap`], [`stamped_nap`]) are
//! linked into both. The program's `main` must call [`serve_if_swarm`] first.
//!
//! Some workers can be told to misbehave at their first [`nap`], as a real
//! worker can: [`Fault::Die`] drops the connection mid-chunk (as a worker
//! whose process died), [`Fault::Stall`] stops reading until the pool hangs
//! up on it (as a stopped process), [`Fault::Garbage`] sends the pool a
//! message that is no message of the protocol.

use std::cell::RefCell;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use connection::Connection;

/// The address of the pool a swarm joins; its presence makes a program a
/// swarm in [`serve_if_swarm`].
const ADDRESS_ENV: &str = "POOL_SWARM_ADDRESS";
const AUTHKEY_ENV: &str = "POOL_SWARM_AUTHKEY";
const WORKERS_ENV: &str = "POOL_SWARM_WORKERS";
/// How many workers misbehave, and how: `die=2,stall=1,garbage=1`.
const FAULTS_ENV: &str = "POOL_SWARM_FAULTS";

/// Enough for the worker loop, a handshake and the simulator's tasks, and
/// small enough that 10,000 workers reserve 640 MiB of address space and
/// touch far less.
const STACK: usize = 64 << 10;

/// How often a stalled worker looks whether the pool hung up on it.
const STALL_CHECK: Duration = Duration::from_millis(20);

pool::task! {
    /// The trivial task: `x + 1`.
    pub fn plus_one(x: u64) -> u64 {
        x + 1
    }
}

pool::task! {
    /// Sleeps `ms` milliseconds and returns `ms`; where the worker was told
    /// to misbehave, it does so instead, at its first nap.
    pub fn nap(ms: u64) -> u64 {
        misbehave();
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }
}

pool::task! {
    /// Sleeps `ms` milliseconds, as [`nap`] does (misbehaving likewise),
    /// and returns when the nap began, by [`monotonic_nanos`]: the head,
    /// on the same machine, reads the same clock, so that it can tell how
    /// long each input waited from the map's start to its worker.
    pub fn stamped_nap(ms: u64) -> u64 {
        let began = monotonic_nanos();
        misbehave();
        std::thread::sleep(Duration::from_millis(ms));
        began
    }
}

/// The machine's monotonic clock, in nanoseconds: one clock for every
/// process on the machine (`CLOCK_MONOTONIC`), unlike an `Instant`, which
/// cannot cross a process.
pub fn monotonic_nanos() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// How a simulated worker misbehaves, at its first [`nap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Drops its connection (both directions) while running the input,
    /// as a worker whose process died mid-chunk.
    Die,
    /// Stops reading and sending until the pool closes the connection,
    /// as a stopped process the pool ends (a task timeout, its drop).
    Stall,
    /// Sends a well-framed message that is no message of the protocol,
    /// then carries on.
    Garbage,
}

impl Fault {
    const ALL: [Fault; 3] = [Fault::Die, Fault::Stall, Fault::Garbage];

    fn name(self) -> &'static str {
        match self {
            Fault::Die => "die",
            Fault::Stall => "stall",
            Fault::Garbage => "garbage",
        }
    }
}

/// How many of a swarm's workers misbehave, and how; the rest behave.
#[derive(Clone, Debug, Default)]
pub struct Faults(Vec<(Fault, usize)>);

impl Faults {
    /// None: every worker behaves.
    pub fn none() -> Faults {
        Faults::default()
    }

    /// Adds `count` workers that misbehave with `fault`.
    pub fn with(mut self, fault: Fault, count: usize) -> Faults {
        self.0.push((fault, count));
        self
    }

    fn encode(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(fault, count)| format!("{}={count}", fault.name()))
            .collect();
        parts.join(",")
    }

    fn parse(text: &str) -> Faults {
        let mut faults = Faults::none();
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let (name, count) = part.split_once('=').expect("fault=count");
            let fault = Fault::ALL
                .into_iter()
                .find(|f| f.name() == name)
                .unwrap_or_else(|| panic!("unknown fault {name:?}"));
            faults = faults.with(fault, count.parse().expect("a fault count"));
        }
        faults
    }

    /// The fault of worker `index`: the first workers take them in order.
    fn of(&self, index: usize) -> Option<Fault> {
        let mut first = 0;
        for &(fault, count) in &self.0 {
            if index < first + count {
                return Some(fault);
            }
            first += count;
        }
        None
    }
}

/// A swarm process: this program started again to host `workers`
/// simulated workers for the pool at `address`.
pub struct Swarm {
    child: Child,
}

impl Swarm {
    /// Starts the swarm; its workers connect at once, in parallel.
    pub fn start(address: &str, authkey: &[u8], workers: usize, faults: &Faults) -> Swarm {
        let authkey = std::str::from_utf8(authkey).expect("a swarm's authkey is text");
        let child = Command::new(std::env::current_exe().expect("this program's path"))
            .env(ADDRESS_ENV, address)
            .env(AUTHKEY_ENV, authkey)
            .env(WORKERS_ENV, workers.to_string())
            .env(FAULTS_ENV, faults.encode())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the swarm");
        Swarm { child }
    }

    /// The swarm process's id (to read what it spent from `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (at most `limit`, then kills it) for the swarm to end, which
    /// it does once every worker has left its pool; returns its report
    /// (see [`serve_if_swarm`]) and whether it exited cleanly.
    pub fn wait(mut self, limit: Duration) -> (String, bool) {
        let status = crate::wait_with_deadline(&mut self.child, limit);
        let mut report = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            let _ = out.read_to_string(&mut report);
        }
        (report, status.success())
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        // Only a swarm not waited for: its workers must not outlive the run.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until `n` remote workers of `pool` said they are ready, or until
/// none more did for `stalled`, or `limit` passed since `began`; returns
/// how many had, and when the last of them did, counted from `began`.
pub fn wait_until_ready(
    pool: &pool::Pool,
    n: usize,
    began: Instant,
    limit: Duration,
    stalled: Duration,
) -> (usize, Duration) {
    let (mut ready, mut last) = (0, began.elapsed());
    loop {
        let now_ready = pool
            .remote_workers()
            .iter()
            .filter(|w| w.claimed_pid.is_some())
            .count();
        if now_ready > ready {
            (ready, last) = (now_ready, began.elapsed());
        }
        let elapsed = began.elapsed();
        if ready >= n || elapsed - last >= stalled || elapsed >= limit {
            return (ready, last);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What a worker's thread knows of its fault, until its first nap.
struct Misbehaving {
    fault: Fault,
    /// The same socket as the connection the worker loop owns.
    conn: Connection,
    acted: Arc<AtomicUsize>,
}

thread_local! {
    static MISBEHAVING: RefCell<Option<Misbehaving>> = const { RefCell::new(None) };
}

fn misbehave() {
    let Some(mut this) = MISBEHAVING.with(|m| m.borrow_mut().take()) else {
        return;
    };
    this.acted.fetch_add(1, Ordering::Relaxed);
    match this.fault {
        Fault::Die => {
            let _ = this.conn.shutdown(std::net::Shutdown::Both);
        }
        Fault::Stall => {
            while !hung_up(&this.conn) {
                std::thread::sleep(STALL_CHECK);
            }
        }
        Fault::Garbage => {
            let _ = this
                .conn
                .send_bytes(b"\xffnot a message of the pool's protocol");
        }
    }
}

/// Whether the pool closed (or reset) the connection, looked at without
/// reading from it.
fn hung_up(conn: &Connection) -> bool {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut fds = [PollFd::new(conn, PollFlags::RDHUP)];
    match poll(&mut fds, Some(&rustix::time::Timespec::default())) {
        Ok(_) => !fds[0].revents().is_empty(),
        Err(_) => true,
    }
}

/// If this process was started as a swarm ([`Swarm::start`]), runs it and
/// exits; otherwise returns at once. Call it first thing in `main`.
///
/// The swarm starts every worker, waits for all to leave their pool, and
/// prints one line, `swarm: W workers, Q quit when told, E ended with an
/// error, F failed to join, A faults acted` (and the first error of each
/// kind on lines of their own), then exits 0.
pub fn serve_if_swarm() {
    let Some(address) = std::env::var_os(ADDRESS_ENV) else {
        return;
    };
    let address = address.into_string().expect("a swarm's address is text");
    let authkey = std::env::var(AUTHKEY_ENV).expect("a swarm's authkey");
    let workers: usize = std::env::var(WORKERS_ENV)
        .expect("a swarm's size")
        .parse()
        .expect("a swarm's size is a number");
    let faults = Faults::parse(&std::env::var(FAULTS_ENV).unwrap_or_default());
    // One descriptor per worker (two for one told to misbehave), and a
    // few for the process.
    crate::raise_descriptor_limit(2 * workers as libc::rlim_t + 64);
    let report = run(&address, authkey.as_bytes(), workers, &faults);
    println!("{report}");
    std::process::exit(0);
}

#[derive(Default)]
struct Tally {
    quit: usize,
    ended: usize,
    failed_to_join: usize,
    first_end: Option<String>,
    first_join_failure: Option<String>,
}

fn run(address: &str, authkey: &[u8], workers: usize, faults: &Faults) -> String {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let acted = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::with_capacity(workers);
    let mut not_started = 0;
    for index in 0..workers {
        let (address, authkey) = (address.to_string(), authkey.to_vec());
        let (tally, acted) = (Arc::clone(&tally), Arc::clone(&acted));
        let fault = faults.of(index);
        let worker = move || {
            let outcome = pool::join_pool(&address, &authkey)
                .map_err(Err)
                .and_then(|conn| {
                    if let Some(fault) = fault {
                        let twin = conn.try_clone().expect("clone a worker's connection");
                        MISBEHAVING.with(|m| {
                            *m.borrow_mut() = Some(Misbehaving {
                                fault,
                                conn: twin,
                                acted,
                            })
                        });
                    }
                    pool::serve_joined(conn).map_err(Ok)
                });
            let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
            match outcome {
                Ok(()) => tally.quit += 1,
                Err(Ok(err)) => {
                    tally.ended += 1;
                    tally.first_end.get_or_insert_with(|| format!("{err:#}"));
                }
                Err(Err(err)) => {
                    tally.failed_to_join += 1;
                    tally
                        .first_join_failure
                        .get_or_insert_with(|| format!("{err:#}"));
                }
            }
        };
        match std::thread::Builder::new()
            .name(format!("swarm-{index}"))
            .stack_size(STACK)
            .spawn(worker)
        {
            Ok(thread) => threads.push(thread),
            Err(_) => not_started += 1,
        }
    }
    for thread in threads {
        let _ = thread.join();
    }
    let tally = tally.lock().unwrap_or_else(|p| p.into_inner());
    let mut report = format!(
        "swarm: {workers} workers, {} quit when told, {} ended with an error, {} failed to \
         join, {not_started} threads not started, {} faults acted",
        tally.quit,
        tally.ended,
        tally.failed_to_join,
        acted.load(Ordering::Relaxed)
    );
    if let Some(err) = &tally.first_end {
        report.push_str(&format!("\nswarm first error: {err}"));
    }
    if let Some(err) = &tally.first_join_failure {
        report.push_str(&format!("\nswarm first join failure: {err}"));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_travel_through_the_environment_and_go_to_the_first_workers() {
        let faults = Faults::none().with(Fault::Die, 2).with(Fault::Garbage, 1);
        let parsed = Faults::parse(&faults.encode());
        let of: Vec<_> = (0..4).map(|i| parsed.of(i)).collect();
        assert_eq!(
            of,
            [
                Some(Fault::Die),
                Some(Fault::Die),
                Some(Fault::Garbage),
                None
            ]
        );
        assert!(Faults::parse("").of(0).is_none());
    }
}
