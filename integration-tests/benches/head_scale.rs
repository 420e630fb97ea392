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
//! A row whose workers do not all join within `JOIN_LIMIT` says how many
//! did and is not measured further.
//!
//! The head is this process: its threads are `/proc/self/status`'s
//! `Threads`, its memory per worker the growth of `VmRSS` from the pool's
//! build to the last worker's join, divided by N. Raises the soft
//! descriptor limit to the hard one (the pool raises its own too).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::swarm::{self, nap, plus_one, Faults, Swarm};
use integration_tests::{descriptor_limits, set_descriptor_limit, wait_with_deadline};
use pool::Pool;

const KEY: &[u8] = b"head scale bench key";
const NAP_MS: u64 = 200;
const JOIN_LIMIT: Duration = Duration::from_secs(120);
const END_LIMIT: Duration = Duration::from_secs(120);

fn main() {
    swarm::serve_if_swarm();
    let (_, hard) = descriptor_limits();
    let _ = set_descriptor_limit(hard);
    let simulated = sizes("HEAD_SCALE_SIMULATED", "50,200,1000,3000,10000");
    let real = sizes("HEAD_SCALE_REAL", "50,200,1000");
    let trivial: u64 = std::env::var("HEAD_SCALE_TRIVIAL")
        .ok()
        .map_or(1_000_000, |n| {
            n.parse().expect("HEAD_SCALE_TRIVIAL is a number")
        });
    println!("descriptor limit: {hard}; trivial map: {trivial} inputs");
    println!(
        "| workers | kind | join time | head threads | head RSS per worker | \
         {trivial} trivial map | 4N x {NAP_MS} ms map (ideal {:.2} s) |",
        4.0 * NAP_MS as f64 / 1000.0
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let local = Pool::new(2).expect("a local pool");
    print_row(2, "local", Ok(measure(&local, trivial, None)));
    drop(local);
    for n in simulated {
        let row = listening(n, trivial, |address| {
            Workers::Swarm(Swarm::start(address, KEY, n, &Faults::none()))
        });
        print_row(n, "simulated", row);
    }
    for n in real {
        let row = listening(n, trivial, |address| {
            Workers::Processes(processes(address, n))
        });
        print_row(n, "real", row);
    }
}

/// One row's figures.
struct Row {
    join: Option<Duration>,
    threads: usize,
    rss_per_worker: Option<f64>,
    trivial_per_second: f64,
    naps: Option<Duration>,
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
    let joined = wait_until_ready(&pool, n);
    let join = began.elapsed();
    let row = if joined < n {
        Err(format!("{joined} of {n} joined in {join:.1?}"))
    } else {
        let rss = status_field("VmRSS:").saturating_sub(rss_before);
        Ok(measure(&pool, trivial, Some((n, join, rss))))
    };
    drop(pool);
    workers.end();
    row
}

/// The maps, on a pool whose `n` workers joined in `join` and grew the
/// head by `rss` KiB (`None` for the local pool).
fn measure(pool: &Pool, trivial: u64, joined: Option<(usize, Duration, usize)>) -> Row {
    let threads = status_field("Threads:");
    let started = Instant::now();
    let outputs = pool.map(plus_one, 0..trivial).expect("the trivial map");
    let took = started.elapsed();
    assert!(outputs.iter().zip(1..).all(|(out, want)| *out == want));
    drop(outputs);
    let naps = joined.map(|(n, _, _)| {
        let started = Instant::now();
        let outputs = pool.map(nap, vec![NAP_MS; 4 * n]).expect("the nap map");
        let took = started.elapsed();
        assert!(outputs.iter().all(|ms| *ms == NAP_MS));
        took
    });
    Row {
        join: joined.map(|(_, join, _)| join),
        threads,
        rss_per_worker: joined.map(|(n, _, rss)| rss as f64 / n as f64),
        trivial_per_second: trivial as f64 / took.as_secs_f64(),
        naps,
    }
}

fn print_row(n: usize, kind: &str, row: Result<Row, String>) {
    let row = match row {
        Ok(row) => row,
        Err(why) => {
            println!("| {n} | {kind} | {why} | - | - | - | - |");
            return;
        }
    };
    let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".into());
    println!(
        "| {n} | {kind} | {} | {} | {} | {:.2} M/s | {} |",
        or_dash(row.join.map(|d| format!("{:.2} s", d.as_secs_f64()))),
        row.threads,
        or_dash(row.rss_per_worker.map(|kib| format!("{kib:.0} KiB"))),
        row.trivial_per_second / 1e6,
        or_dash(row.naps.map(|d| format!(
            "{:.2} s ({:.2}x)",
            d.as_secs_f64(),
            d.as_secs_f64() / (4.0 * NAP_MS as f64 / 1000.0)
        ))),
    );
}

/// Waits until `n` remote workers said they are ready, or `JOIN_LIMIT`;
/// returns how many had.
fn wait_until_ready(pool: &Pool, n: usize) -> usize {
    let deadline = Instant::now() + JOIN_LIMIT;
    loop {
        let ready = pool
            .remote_workers()
            .iter()
            .filter(|w| w.claimed_pid.is_some())
            .count();
        if ready >= n || Instant::now() >= deadline {
            return ready;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
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
