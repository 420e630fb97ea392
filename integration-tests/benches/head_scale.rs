//! The pool's head at cluster scale: a pool that listens on loopback with
//! N remote workers joined, measured for its join time, its threads and
//! memory per worker, and two maps: 1,000,000 trivial inputs (`x + 1`) and
//! 4N inputs that sleep 200 ms (ideally 0.80 s).
//!
//! Workers come in three kinds, each a row of the table:
//! - `local`: a pool of 2 local workers, the baseline of the trivial map
//!   (no listener, no join);
//! - `simulated`: one swarm process (`integration_tests::swarm`: this
//!   program started again) hosting N workers, each a thread with its own
//!   authenticated connection running the pool's worker loop, so that the
//!   head is measured rather than the machine's ability to run N processes;
//! - `real`: N processes of this program started with `POOL_CONNECT` (what
//!   `pool-worker --connect` does, in the head's own build).
//!
//! Sizes, as comma-separated lists (empty for none):
//! `HEAD_SCALE_SIMULATED` (default `50,200,1000,3000,10000`),
//! `HEAD_SCALE_REAL` (default `50,200,1000`; 3,000 is a size to ask for);
//! `HEAD_SCALE_TRIVIAL` sets the trivial map's length (default 1,000,000).
//! A row whose workers do not all join (none more for `JOIN_STALLED`, or
//! `JOIN_LIMIT` passed) is measured with those that did, and says so;
//! its join time is the last one's.
//!
//! The head is this process: its threads are `/proc/self/status`'s
//! `Threads`, its memory per worker the growth of `VmRSS` from the pool's
//! build to the last worker's join, divided by N. Raises the descriptor
//! limits to 2 per worker of the largest size, and a reserve, where it
//! may raise the hard one (as root), else the soft one to the hard one;
//! the swarm does the same for itself.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::swarm::{self, nap, plus_one, Faults, Swarm};
use integration_tests::{raise_descriptor_limit, wait_with_deadline};
use pool::Pool;

const KEY: &[u8] = b"head scale bench key";
const NAP_MS: u64 = 200;
const JOIN_LIMIT: Duration = Duration::from_secs(120);
const JOIN_STALLED: Duration = Duration::from_secs(15);
const END_LIMIT: Duration = Duration::from_secs(120);

fn main() {
    swarm::serve_if_swarm();
    let simulated = sizes("HEAD_SCALE_SIMULATED", "50,200,1000,3000,10000");
    let real = sizes("HEAD_SCALE_REAL", "50,200,1000");
    // The head holds one descriptor per remote worker (its connection,
    // which the dispatcher and pool-io share), so 10,000 fit under a hard
    // limit of 20,000 with the pool's own reserve; room for two each (a
    // row's workers leaving while the next row's join) where it can be had.
    let largest = simulated.iter().chain(&real).copied().max().unwrap_or(0);
    let limit = raise_descriptor_limit(2 * largest as u64 + 4096);
    let trivial: u64 = std::env::var("HEAD_SCALE_TRIVIAL")
        .ok()
        .map_or(1_000_000, |n| {
            n.parse().expect("HEAD_SCALE_TRIVIAL is a number")
        });
    println!("descriptor limit: {limit}; trivial map: {trivial} inputs");
    println!(
        "| workers | kind | join time | head threads | head RSS per worker | \
         {trivial} trivial map | 4N x {NAP_MS} ms map (ideal {:.2} s) |",
        4.0 * NAP_MS as f64 / 1000.0
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let local = Pool::new(2).expect("a local pool");
    print_row(2, "local", trivial, Ok(measure(&local, trivial, None)));
    drop(local);
    for n in simulated {
        let row = listening(n, trivial, |address| {
            Workers::Swarm(Swarm::start(address, KEY, n, &Faults::none()))
        });
        print_row(n, "simulated", trivial, row);
    }
    for n in real {
        let row = listening(n, trivial, |address| {
            Workers::Processes(processes(address, n))
        });
        print_row(n, "real", trivial, row);
    }
}

/// One row's figures.
struct Row {
    /// How many remote workers joined (`None` for the local pool).
    joined: Option<usize>,
    join: Option<Duration>,
    threads: usize,
    rss_per_worker: Option<f64>,
    /// The map of trivial inputs.
    trivial_map: Timed,
    /// The map of 4N naps.
    naps: Option<Timed>,
}

enum Workers {
    Swarm(Swarm),
    Processes(Vec<Child>),
}

impl Workers {
    /// Waits for the workers to leave once the pool is gone; tells on
    /// stderr how they left.
    fn end(self) {
        match self {
            Workers::Swarm(swarm) => {
                let (report, clean) = swarm.wait(END_LIMIT);
                eprintln!("{} (exited cleanly: {clean})", report.trim());
            }
            Workers::Processes(children) => {
                for mut child in children {
                    let status = wait_with_deadline(&mut child, END_LIMIT);
                    if !status.success() {
                        eprintln!("a worker process ended with {status}");
                    }
                }
            }
        }
    }
}

/// A pool that listens, joined by the `n` workers `start` starts.
fn listening(n: usize, trivial: u64, start: impl FnOnce(&str) -> Workers) -> Result<Row, String> {
    let pool = Pool::builder()
        .processes(0)
        .listen("tcp:127.0.0.1:0", KEY.to_vec())
        .startup_timeout(JOIN_LIMIT)
        .build()
        .map_err(|err| format!("build: {err:#}"))?;
    let address = pool.listen_address().expect("listening").to_string();
    let rss_before = status_field("VmRSS:");
    let began = Instant::now();
    let workers = start(&address);
    let (joined, join) = swarm::wait_until_ready(&pool, n, began, JOIN_LIMIT, JOIN_STALLED);
    let row = if joined == 0 {
        Err(format!("none joined in {:.1?}", began.elapsed()))
    } else {
        // Those that joined are measured, and the row says how many.
        let rss = status_field("VmRSS:").saturating_sub(rss_before);
        Ok(measure(&pool, trivial, Some((joined, join, rss))))
    };
    drop(pool);
    workers.end();
    row
}

/// The maps, on a pool whose `n` workers joined in `join` and grew the
/// head by `rss` KiB (`None` for the local pool).
fn measure(pool: &Pool, trivial: u64, joined: Option<(usize, Duration, usize)>) -> Row {
    let threads = status_field("Threads:");
    let trivial_map = timed(pool, plus_one, (0..trivial).collect(), |x| x + 1);
    let naps = joined.map(|(n, _, _)| timed(pool, nap, vec![NAP_MS; 4 * n], |ms| ms));
    Row {
        joined: joined.map(|(n, _, _)| n),
        join: joined.map(|(_, join, _)| join),
        threads,
        rss_per_worker: joined.map(|(n, _, rss)| rss as f64 / n as f64),
        trivial_map,
        naps,
    }
}

/// A map that ran to its end, its failed inputs counted rather than
/// ending it (a row still shows what the others cost).
struct Timed {
    took: Duration,
    failed: usize,
    first_failure: Option<pool::ErrorKind>,
}

impl Timed {
    fn failures(&self) -> String {
        match self.first_failure {
            Some(kind) => format!(", {} failed ({kind:?})", self.failed),
            None => String::new(),
        }
    }
}

/// Maps `task` over `inputs`, checking each output is `expected` of its
/// input.
fn timed<T>(pool: &Pool, task: T, inputs: Vec<u64>, expected: fn(u64) -> u64) -> Timed
where
    T: pool::Task<Input = u64, Output = u64>,
{
    let started = Instant::now();
    let outputs = pool
        .map_with(task, inputs.iter().copied())
        .keep_failures()
        .run()
        .expect("a map");
    let took = started.elapsed();
    let mut timed = Timed {
        took,
        failed: 0,
        first_failure: None,
    };
    for (output, input) in outputs.into_iter().zip(inputs) {
        match output {
            Ok(output) => assert_eq!(output, expected(input)),
            Err(err) => {
                timed.failed += 1;
                if timed.first_failure.is_none() {
                    eprintln!("first failed input: {err:#}");
                    timed.first_failure = Some(err.kind());
                }
            }
        }
    }
    timed
}

fn print_row(n: usize, kind: &str, trivial: u64, row: Result<Row, String>) {
    let n = match &row {
        Ok(Row {
            joined: Some(joined),
            ..
        }) if *joined < n => format!("{n} ({joined} joined)"),
        _ => n.to_string(),
    };
    let row = match row {
        Ok(row) => row,
        Err(why) => {
            println!("| {n} | {kind} | {why} | - | - | - | - |");
            return;
        }
    };
    let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".into());
    println!(
        "| {n} | {kind} | {} | {} | {} | {:.3} M/s{} | {} |",
        or_dash(row.join.map(|d| format!("{:.2} s", d.as_secs_f64()))),
        row.threads,
        or_dash(row.rss_per_worker.map(|kib| format!("{kib:.0} KiB"))),
        trivial as f64 / row.trivial_map.took.as_secs_f64() / 1e6,
        row.trivial_map.failures(),
        or_dash(row.naps.map(|naps| format!(
            "{:.2} s ({:.2}x){}",
            naps.took.as_secs_f64(),
            naps.took.as_secs_f64() / (4.0 * NAP_MS as f64 / 1000.0),
            naps.failures()
        ))),
    );
}

/// `n` processes of this program, each a remote worker of the pool at
/// `address` from before its `main`.
fn processes(address: &str, n: usize) -> Vec<Child> {
    let program = std::env::current_exe().expect("this program's path");
    (0..n)
        .map_while(|_| {
            Command::new(&program)
                .env(pool::CONNECT_ENV, address)
                .env(pool::AUTHKEY_ENV, std::str::from_utf8(KEY).unwrap())
                .stdin(Stdio::null())
                .spawn()
                .map_err(|err| eprintln!("cannot start a worker process: {err}"))
                .ok()
        })
        .collect()
}

/// A number of `/proc/self/status` (`Threads:`, or `VmRSS:` in KiB).
fn status_field(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

fn sizes(var: &str, default: &str) -> Vec<usize> {
    let list = std::env::var(var).unwrap_or_else(|_| default.to_string());
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("{var}: {s:?} is not a number"))
        })
        .collect()
}
