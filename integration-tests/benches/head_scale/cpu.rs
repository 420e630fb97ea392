//! Where a map's CPU time went: the head's threads (this process, from
//! `/proc/self/task/*/stat`, by name), the workers' processes (the swarm,
//! or every real worker, from `/proc/<pid>/stat`), and the rest of the
//! machine (`/proc/stat`: other programs, and what stayed idle), so that
//! a row shows which side fills the machine's cores.
//!
//! `/proc` counts in clock ticks (10 ms at the usual 100 Hz): a figure is
//! exact to a tick per thread and per process, which the maps measured
//! here (hundreds of milliseconds) dwarf.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The head's threads as they are named, the calling thread (this
/// program's main thread) apart; the pool's other threads (`pool-listener`,
/// `pool-stderr`) are `other`.
const ROLES: [&str; 4] = ["caller", "pool-dispatcher", "pool-io", "other"];

/// CPU times read at one moment.
pub struct Sample {
    at: Instant,
    /// Each head thread's (role, ticks), by thread id.
    threads: HashMap<u32, (usize, u64)>,
    /// Ticks of the whole head process, exited threads included.
    head: u64,
    /// Ticks of the workers' processes.
    workers: u64,
    /// The machine's (busy, all) ticks, summed over its cores.
    machine: (u64, u64),
}

impl Sample {
    /// Reads the head's threads, the processes `workers` and the machine.
    pub fn now(workers: &[u32]) -> Sample {
        let machine = machine_ticks();
        let at = Instant::now();
        let me = std::process::id();
        let mut threads = HashMap::new();
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for task in tasks.flatten() {
                let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                    continue;
                };
                let Some((comm, ticks)) = stat(&task.path().join("stat")) else {
                    continue;
                };
                let role = if tid == me {
                    0
                } else {
                    ROLES.iter().position(|&r| r == comm).unwrap_or(3)
                };
                threads.insert(tid, (role, ticks));
            }
        }
        let head = stat("/proc/self/stat".as_ref()).map_or(0, |(_, t)| t);
        let workers = workers
            .iter()
            .filter_map(|pid| stat(format!("/proc/{pid}/stat").as_ref()))
            .map(|(_, t)| t)
            .sum();
        Sample {
            at,
            threads,
            head,
            workers,
            machine,
        }
    }
}

/// The CPU time spent between two samples.
pub struct Spent {
    wall: Duration,
    /// The head's, by role (see [`ROLES`]).
    roles: [Duration; 4],
    head: Duration,
    workers: Duration,
    /// The machine's busy time, all programs (other benches, builds) included.
    machine_busy: Duration,
    /// The machine's time, busy or not, over all its cores.
    machine_all: Duration,
}

impl Spent {
    pub fn between(before: &Sample, after: &Sample) -> Spent {
        let mut roles = [0u64; 4];
        for (tid, &(role, ticks)) in &after.threads {
            // A thread born meanwhile spent all it shows.
            let was = before.threads.get(tid).map_or(0, |&(_, t)| t);
            roles[role] += ticks.saturating_sub(was);
        }
        Spent {
            wall: after.at - before.at,
            roles: roles.map(ticks),
            head: ticks(after.head.saturating_sub(before.head)),
            workers: ticks(after.workers.saturating_sub(before.workers)),
            machine_busy: ticks(after.machine.0.saturating_sub(before.machine.0)),
            machine_all: ticks(after.machine.1.saturating_sub(before.machine.1)),
        }
    }

    /// A row of the CPU table for a map of `inputs` inputs: cores used
    /// (CPU time over wall time) by the head, its threads and the workers,
    /// what the rest of the machine used and left idle, and the head's and
    /// the workers' CPU time per input.
    pub fn row(&self, inputs: usize) -> String {
        let wall = self.wall.as_secs_f64().max(1e-9);
        let cores = |d: Duration| d.as_secs_f64() / wall;
        let per_input = |d: Duration| d.as_secs_f64() * 1e6 / inputs.max(1) as f64;
        let roles: Vec<String> = self
            .roles
            .iter()
            .map(|&d| format!("{:.2}", cores(d)))
            .collect();
        let rest = self
            .machine_busy
            .saturating_sub(self.head)
            .saturating_sub(self.workers);
        let idle = self.machine_all.saturating_sub(self.machine_busy);
        format!(
            "{:.2} s | {:.2} ({}) | {:.2} | {:.2} | {:.2} | {:.1} | {:.1}",
            wall,
            cores(self.head),
            roles.join(" / "),
            cores(self.workers),
            cores(rest),
            cores(idle),
            per_input(self.head),
            per_input(self.workers),
        )
    }
}

/// The header of the CPU table, whose rows [`Spent::row`] ends.
pub fn header() -> String {
    format!(
        "| workers | kind | map | wall | head cores ({}) | workers' cores | \
         rest of the machine's cores | idle cores | head CPU per input | workers' CPU per input |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ROLES.join(" / ")
    )
}

/// A `stat` file's command name and user + system ticks.
fn stat(path: &std::path::Path) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    // The name is in parentheses and may hold spaces and parentheses.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    // After the name: state (field 3), ... utime (14), stime (15).
    let mut fields = text.get(close + 2..)?.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((comm, utime + stime))
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
