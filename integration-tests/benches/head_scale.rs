//! The pool's head at cluster scale: a pool that listens on loopback with
//! N remote workers joined, measured for its join time, its threads and
//! memory per worker, and two maps: 1,000,000 trivial inputs (`x + 1`) and
//! 4N inputs that sleep 200 ms (ideally 0.80 s: four rounds of naps).
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
//! `HEAD_SCALE_TRIVIAL` sets the trivial map's length (default 1,000,000),
//! `HEAD_SCALE_NAP_MS` the naps' (default 200), to see whether what a
//! round costs beyond its nap depends on the nap.
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
//!
//! A second table says where each map's CPU time went
//! (`head_scale/cpu.rs`): the least wall time the map could have taken
//! with every core given to the head and the workers (their CPU time over
//! the cores: where it passes the naps' ideal, the machine, not the
//! schedule, sets the pace), the cores the head used (by thread: the
//! calling thread, `pool-dispatcher`, `pool-io`, the others), the cores
//! the workers' processes used, those the rest of the machine (other
//! programs) used or left idle, the head's and the workers' CPU time per
//! input (for the naps, per worker and round), how long the dispatcher
//! waited for a core while it could run, and the workers per input; and
//! when each round of naps ended (when the results of N, 2N, 3N and 4N
//! inputs were in), and when the first round's naps began in the workers
//! (each nap returns when it began, `swarm::stamped_nap`).
//! Each listening row also has a row for a second of its joined workers
//! with nothing to do: what merely keeping them costs.
//!
//! A third table is the machine's floor for that first round, measured
//! after each listening row (`head_scale/wake.rs`; `HEAD_SCALE_BASELINE=0`
//! leaves it out): N sleepers, processes for a real row and threads of
//! one process for a simulated one, each blocked reading its own TCP
//! connection from the head's process and woken by one write each, in
//! turn; when they woke, beside when the first round's naps began.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "head_scale/cpu.rs"]
mod cpu;
#[path = "head_scale/wake.rs"]
mod wake;

use integration_tests::swarm::{self, plus_one, stamped_nap, Faults, Swarm};
use integration_tests::{raise_descriptor_limit, wait_with_deadline};
use pool::Pool;

const KEY: &[u8] = b"head scale bench key";
const JOIN_LIMIT: Duration = Duration::from_secs(120);
const JOIN_STALLED: Duration = Duration::from_secs(15);
const END_LIMIT: Duration = Duration::from_secs(120);
/// How long joined workers are watched with nothing to do, for what they
/// cost the machine idle.
const IDLE: Duration = Duration::from_secs(1);

fn main() {
    swarm::serve_if_swarm();
    wake::serve_if_sleeper();
    let baseline = std::env::var("HEAD_SCALE_BASELINE").map_or(true, |v| v != "0");
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
    let nap_ms: u64 = std::env::var("HEAD_SCALE_NAP_MS")
        .ok()
        .map_or(200, |n| n.parse().expect("HEAD_SCALE_NAP_MS is a number"));
    let maps = Maps { trivial, nap_ms };
    println!("descriptor limit: {limit}; trivial map: {trivial} inputs");
    println!(
        "| workers | kind | join time | head threads | head RSS per worker | \
         {trivial} trivial map | 4N x {nap_ms} ms map (ideal {:.2} s) |",
        maps.ideal().as_secs_f64()
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut cpu_rows = Vec::new();
    let mut wake_rows = Vec::new();
    let local = Pool::new(2).expect("a local pool");
    let pids = local.worker_pids();
    let row = measure(&local, &maps, None, &pids);
    print_row(2, "local", &maps, &Ok(row), &mut cpu_rows);
    drop(local);
    for n in simulated {
        let row = listening(n, &maps, |address| {
            Workers::Swarm(Swarm::start(address, KEY, n, &Faults::none()))
        });
        print_row(n, "simulated", &maps, &row, &mut cpu_rows);
        if baseline {
            wake_rows.push(wake_row(n, "simulated", &row, wake::measure(n, n, nap_ms)));
        }
    }
    for n in real {
        let row = listening(n, &maps, |address| {
            Workers::Processes(processes(address, n))
        });
        print_row(n, "real", &maps, &row, &mut cpu_rows);
        if baseline {
            wake_rows.push(wake_row(n, "real", &row, wake::measure(n, 1, nap_ms)));
        }
    }
    println!();
    println!("{}", cpu::header());
    for row in cpu_rows {
        println!("{row}");
    }
    if !wake_rows.is_empty() {
        println!();
        println!(
            "| workers | kind | first naps began (median / p90 / last) | \
             N sleepers woken by a TCP write each: writes took | sleepers woke at \
             (median / p90 / last) |"
        );
        println!("| --- | --- | --- | --- | --- |");
        for row in wake_rows {
            println!("{row}");
        }
    }
}

/// A row of the wake-up table: when the row's first naps began, and when
/// `woken`'s sleepers woke.
fn wake_row(n: usize, kind: &str, row: &Result<Row, String>, woken: Option<wake::Woken>) -> String {
    let ms = |d: Duration| format!("{:.0}", d.as_secs_f64() * 1e3);
    let first = match row
        .as_ref()
        .ok()
        .and_then(|r| r.naps.as_ref()?.first_starts.as_ref())
    {
        Some(f) => format!("{} / {} / {} ms", ms(f.median), ms(f.p90), ms(f.last)),
        None => "-".into(),
    };
    match woken {
        Some(w) => format!(
            "| {n} | {kind} | {first} | {} ms ({} woken) | {} / {} / {} ms |",
            ms(w.writes),
            w.woken,
            ms(w.median),
            ms(w.p90),
            ms(w.last)
        ),
        None => format!("| {n} | {kind} | {first} | not all started | - |"),
    }
}

/// The maps each row runs.
struct Maps {
    /// The trivial map's length.
    trivial: u64,
    /// Each nap's length, in milliseconds.
    nap_ms: u64,
}

impl Maps {
    /// What the 4N naps take on N workers with nothing else to do.
    fn ideal(&self) -> Duration {
        Duration::from_millis(4 * self.nap_ms)
    }
}

/// One row's figures.
struct Row {
    /// How many remote workers joined (`None` for the local pool).
    joined: Option<usize>,
    join: Option<Duration>,
    threads: usize,
    rss_per_worker: Option<f64>,
    /// What the head and the workers spent for [`IDLE`] with no map
    /// (`None` for the local pool).
    idle: Option<cpu::Spent>,
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
    /// The workers' process ids.
    fn pids(&self) -> Vec<u32> {
        match self {
            Workers::Swarm(swarm) => vec![swarm.pid()],
            Workers::Processes(children) => children.iter().map(Child::id).collect(),
        }
    }

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
fn listening(n: usize, maps: &Maps, start: impl FnOnce(&str) -> Workers) -> Result<Row, String> {
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
        Ok(measure(
            &pool,
            maps,
            Some((joined, join, rss)),
            &workers.pids(),
        ))
    };
    drop(pool);
    workers.end();
    row
}

/// The maps, on a pool whose `n` workers joined in `join` and grew the
/// head by `rss` KiB (`None` for the local pool), run by the processes
/// `pids`.
fn measure(
    pool: &Pool,
    maps: &Maps,
    joined: Option<(usize, Duration, usize)>,
    pids: &[u32],
) -> Row {
    let threads = status_field("Threads:");
    let idle = joined.map(|_| {
        let before = cpu::Sample::before(pids);
        std::thread::sleep(IDLE);
        cpu::Spent::between(&before, &cpu::Sample::after(pids), IDLE)
    });
    let trivial_map = timed(
        pool,
        plus_one,
        (0..maps.trivial).collect(),
        |x, _, output| assert_eq!(output, x + 1),
        pids,
        0,
    );
    let naps = joined.map(|(n, _, _)| {
        let naps = vec![maps.nap_ms; 4 * n];
        let mut starts = Vec::with_capacity(naps.len());
        let mut timed = timed(
            pool,
            stamped_nap,
            naps,
            |_, began, output| starts.push(Duration::from_nanos(output.saturating_sub(began))),
            pids,
            n,
        );
        timed.first_starts = first_round(starts, n);
        timed
    });
    Row {
        joined: joined.map(|(n, _, _)| n),
        join: joined.map(|(_, join, _)| join),
        threads,
        rss_per_worker: joined.map(|(n, _, rss)| rss as f64 / n as f64),
        idle,
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
    /// Where the CPU time went meanwhile.
    cpu: cpu::Spent,
    inputs: usize,
    /// When the results of each multiple of a round's inputs were in.
    rounds: Vec<Duration>,
    /// For the naps: when the first round's naps began, counted from the
    /// map's start (see [`first_round`]).
    first_starts: Option<FirstRound>,
}

/// When the first round of naps began in the workers: the earliest N of
/// the 4N naps' starts (a worker's second nap begins a nap after its
/// first), counted from the map's start.
struct FirstRound {
    median: Duration,
    p90: Duration,
    last: Duration,
}

/// The first round of `starts` (every nap's start, from the map's), for a
/// round of `n` naps.
fn first_round(mut starts: Vec<Duration>, n: usize) -> Option<FirstRound> {
    starts.sort_unstable();
    starts.truncate(n);
    let at = |fraction: f64| starts[((starts.len() - 1) as f64 * fraction) as usize];
    (!starts.is_empty()).then(|| FirstRound {
        median: at(0.5),
        p90: at(0.9),
        last: at(1.0),
    })
}

impl Timed {
    fn failures(&self) -> String {
        match self.first_failure {
            Some(kind) => format!(", {} failed ({kind:?})", self.failed),
            None => String::new(),
        }
    }
}

/// Maps `task` over `inputs`, handing `check` each input, the map's start
/// (by [`swarm::monotonic_nanos`]) and the input's output, and reading
/// what the head and the processes `pids` spent; with `round` inputs a
/// round (none if 0), notes when each round's results were in.
fn timed<T>(
    pool: &Pool,
    task: T,
    inputs: Vec<u64>,
    mut check: impl FnMut(u64, u64, u64),
    pids: &[u32],
    round: usize,
) -> Timed
where
    T: pool::Task<Input = u64, Output = u64>,
{
    let mut rounds = Vec::new();
    let before = cpu::Sample::before(pids);
    let began = swarm::monotonic_nanos();
    let started = Instant::now();
    let outputs = pool
        .map_with(task, inputs.iter().copied())
        .progress(|progress| {
            while round > 0 && progress.done >= (rounds.len() + 1) * round {
                rounds.push(started.elapsed());
            }
        })
        .keep_failures()
        .run()
        .expect("a map");
    let took = started.elapsed();
    let after = cpu::Sample::after(pids);
    let mut timed = Timed {
        took,
        failed: 0,
        first_failure: None,
        cpu: cpu::Spent::between(&before, &after, took),
        inputs: inputs.len(),
        rounds,
        first_starts: None,
    };
    for (output, input) in outputs.into_iter().zip(inputs) {
        match output {
            Ok(output) => check(input, began, output),
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

/// Prints a row of the main table, and adds its maps' rows to the CPU
/// table's.
fn print_row(
    n: usize,
    kind: &str,
    maps: &Maps,
    row: &Result<Row, String>,
    cpu_rows: &mut Vec<String>,
) {
    let n = match row {
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
        maps.trivial as f64 / row.trivial_map.took.as_secs_f64() / 1e6,
        row.trivial_map.failures(),
        or_dash(row.naps.as_ref().map(|naps| format!(
            "{:.2} s ({:.2}x){}",
            naps.took.as_secs_f64(),
            naps.took.as_secs_f64() / maps.ideal().as_secs_f64(),
            naps.failures()
        ))),
    );
    if let Some(idle) = &row.idle {
        cpu_rows.push(format!(
            "| {n} | {kind} | none ({:.0} s idle) | {}",
            IDLE.as_secs_f64(),
            idle.row(0)
        ));
    }
    let trivial = &row.trivial_map;
    cpu_rows.push(format!(
        "| {n} | {kind} | trivial | {}",
        trivial.cpu.row(trivial.inputs)
    ));
    if let Some(naps) = &row.naps {
        let rounds: Vec<String> = naps
            .rounds
            .iter()
            .map(|at| format!("{:.2}", at.as_secs_f64()))
            .collect();
        let first = naps.first_starts.as_ref().map_or(String::new(), |first| {
            format!(
                "; first naps began at {:.0}/{:.0}/{:.0} ms (median/p90/last)",
                first.median.as_secs_f64() * 1e3,
                first.p90.as_secs_f64() * 1e3,
                first.last.as_secs_f64() * 1e3
            )
        });
        cpu_rows.push(format!(
            "| {n} | {kind} | naps (rounds ended at {} s{first}) | {}",
            rounds.join(", "),
            naps.cpu.row(naps.inputs)
        ));
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
