//! Where a map's CPU time went: the head's threads (this process, by
//! thread name), the workers' processes (the swarm, or every real
//! worker), and the rest of the machine (`/proc/stat`: other programs,
//! and what stayed idle), so that a row shows which side fills the
//! machine's cores; and how long threads waited for a core while they
//! could run, which says whether the machine was the limit.
//!
//! Threads are read from `/proc/<pid>/task/<tid>/schedstat` (time run and
//! time waited runnable, in nanoseconds: a real worker runs for less than
//! a clock tick per map, so `stat`'s ticks would count 3,000 of them as
//! nothing); the machine from `/proc/stat`, in ticks of all its cores.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// The head's threads as they are named, the calling thread (this
/// program's main thread) apart; the pool's other threads (`pool-listener`,
/// `pool-stderr`) are `other`.
const ROLES: [&str; 4] = ["caller", "pool-dispatcher", "pool-io", "other"];
const DISPATCHER: usize = 1;

/// What a thread, or a set of them, had spent by some moment.
#[derive(Clone, Copy, Default)]
struct Times {
    ran: Duration,
    /// Runnable but waiting for a core.
    waited: Duration,
    /// How many times it was given a core: a thread that sleeps between
    /// messages is given one per wake-up.
    runs: u64,
}

impl Times {
    fn since(self, before: Times) -> Times {
        Times {
            ran: self.ran.saturating_sub(before.ran),
            waited: self.waited.saturating_sub(before.waited),
            runs: self.runs.saturating_sub(before.runs),
        }
    }

    fn add(&mut self, other: Times) {
        self.ran += other.ran;
        self.waited += other.waited;
        self.runs += other.runs;
    }
}

/// CPU times read at one moment.
pub struct Sample {
    /// Each head thread's role and times, by thread id.
    threads: HashMap<u32, (usize, Times)>,
    /// The workers' threads, summed.
    workers: Times,
    /// The machine's (busy, all) ticks, summed over its cores.
    machine: (u64, u64),
}

impl Sample {
    /// Reads the threads of the processes `workers`, the machine and the
    /// head's threads, in this order, before a map: reading a swarm's
    /// 10,000 threads costs the head's calling thread, outside the map.
    pub fn before(workers: &[u32]) -> Sample {
        let workers = workers_times(workers);
        let machine = machine_ticks();
        Sample {
            threads: head_threads(),
            workers,
            machine,
        }
    }

    /// The same, after a map, in the opposite order.
    pub fn after(workers: &[u32]) -> Sample {
        let threads = head_threads();
        Sample {
            threads,
            machine: machine_ticks(),
            workers: workers_times(workers),
        }
    }
}

/// Each of the head's threads' role and times, by thread id.
fn head_threads() -> HashMap<u32, (usize, Times)> {
    let me = std::process::id();
    let mut threads = HashMap::new();
    for (tid, path) in tasks(me) {
        let Some(times) = schedstat(&path.join("schedstat")) else {
            continue;
        };
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let role = if tid == me {
            0
        } else {
            ROLES
                .iter()
                .position(|&r| r == comm.trim_end())
                .unwrap_or(3)
        };
        threads.insert(tid, (role, times));
    }
    threads
}

/// The times of every thread of the processes `pids`, summed.
fn workers_times(pids: &[u32]) -> Times {
    let mut all = Times::default();
    for &pid in pids {
        for (_, path) in tasks(pid) {
            if let Some(times) = schedstat(&path.join("schedstat")) {
                all.add(times);
            }
        }
    }
    all
}

/// The CPU time spent during a map, between two samples.
pub struct Spent {
    wall: Duration,
    /// The head's, by role (see [`ROLES`]).
    roles: [Times; 4],
    head: Times,
    workers: Times,
    /// The machine's busy time, all programs (other benches, builds) included.
    machine_busy: Duration,
    /// The machine's time, busy or not, over all its cores.
    machine_all: Duration,
}

impl Spent {
    /// What was spent between `before` and `after`, around a map that
    /// took `wall`.
    pub fn between(before: &Sample, after: &Sample, wall: Duration) -> Spent {
        let mut roles = [Times::default(); 4];
        let mut head = Times::default();
        for (tid, &(role, times)) in &after.threads {
            // A thread born meanwhile spent all it shows.
            let was = before
                .threads
                .get(tid)
                .map_or_else(Times::default, |&(_, t)| t);
            roles[role].add(times.since(was));
            head.add(times.since(was));
        }
        Spent {
            wall,
            roles,
            head,
            workers: after.workers.since(before.workers),
            machine_busy: ticks(after.machine.0.saturating_sub(before.machine.0)),
            machine_all: ticks(after.machine.1.saturating_sub(before.machine.1)),
        }
    }

    /// A row of the CPU table (see [`header`]) for a map of `inputs`
    /// inputs (0: a time without a map, which has no figures per input).
    pub fn row(&self, inputs: usize) -> String {
        let wall = self.wall.as_secs_f64().max(1e-9);
        let cores = |d: Duration| d.as_secs_f64() / wall;
        let per_input = |d: Duration| match inputs {
            0 => "-".to_string(),
            n => format!("{:.1} µs", d.as_secs_f64() * 1e6 / n as f64),
        };
        let roles: Vec<String> = self
            .roles
            .iter()
            .map(|t| format!("{:.2}", cores(t.ran)))
            .collect();
        let rest = self
            .machine_busy
            .saturating_sub(self.head.ran)
            .saturating_sub(self.workers.ran);
        let idle = self.machine_all.saturating_sub(self.machine_busy);
        // The least wall time in which the machine's cores, all given to
        // the head and the workers, could have done their work.
        let cores_here = std::thread::available_parallelism().map_or(1, |n| n.get());
        let least = (self.head.ran + self.workers.ran).as_secs_f64() / cores_here as f64;
        format!(
            "{:.2} s | {:.2} s | {:.2} ({}) | {:.2} | {:.2} | {:.2} | {} | {} | {:.0} ms | {} | {} |",
            wall,
            least,
            cores(self.head.ran),
            roles.join(" / "),
            cores(self.workers.ran),
            cores(rest),
            cores(idle),
            per_input(self.head.ran),
            per_input(self.workers.ran),
            self.roles[DISPATCHER].waited.as_secs_f64() * 1e3,
            per_input(self.workers.waited),
            self.roles[DISPATCHER].runs,
        )
    }
}

/// The header of the CPU table, whose rows [`Spent::row`] ends: the
/// map's wall time, and the least it could have been with every core of
/// the machine given to the head and the workers (their CPU time over the
/// cores); cores used (CPU time over the map's wall time) by the head, by
/// each of its threads and by the workers; what the rest of the machine
/// used and left idle; the head's and the workers' CPU time per input;
/// how long the dispatcher waited for a core while it could run, and the
/// workers per input; how many times the dispatcher was given a core
/// (about once per wake-up: it sleeps whenever nothing is waiting).
pub fn header() -> String {
    format!(
        "| workers | kind | map | wall | head + workers' CPU / cores | \
         head cores ({}) | workers' cores | \
         rest of the machine's cores | idle cores | head CPU per input | \
         workers' CPU per input | dispatcher's wait for a core | \
         workers' wait for a core per input | dispatcher's runs |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ROLES.join(" / ")
    )
}

/// The threads of process `pid`: their ids and `/proc` directories.
fn tasks(pid: u32) -> Vec<(u32, std::path::PathBuf)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let tid = task.file_name().to_str()?.parse().ok()?;
            Some((tid, task.path()))
        })
        .collect()
}

/// A thread's time run and time waited for a core (`schedstat`'s first
/// two fields, in nanoseconds), and the times it was given a core (its
/// third).
fn schedstat(path: &Path) -> Option<Times> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    Some(Times {
        ran: Duration::from_nanos(fields.next()??),
        waited: Duration::from_nanos(fields.next()??),
        runs: fields.next()??,
    })
}

/// The machine's busy and total ticks from `/proc/stat`'s `cpu` line
/// (idle and iowait are not busy).
fn machine_ticks() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    // user nice system idle iowait irq softirq steal (guest time is
    // already counted in user).
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|v| v.parse().ok())
        .collect();
    let all: u64 = values.iter().sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    (all - idle, all)
}

/// Clock ticks as time.
fn ticks(ticks: u64) -> Duration {
    Duration::from_secs_f64(ticks as f64 / ticks_per_second())
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}
