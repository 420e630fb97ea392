//! Telling a worker that ran out of memory from one that merely died.
//!
//! Two ways a worker dies of memory, and how each is known:
//!
//! - **At the pool's hard limit** (`RLIMIT_DATA`, set in the worker): an
//!   allocation fails, and Rust's standard library prints `memory
//!   allocation of N bytes failed` on stderr and aborts (SIGABRT). Its
//!   alloc-error hook cannot be replaced on stable Rust, and a global
//!   allocator is the program's to choose, not the pool's; so the pool
//!   reads the worker's stderr, which it forwards anyway: a local worker
//!   that died of SIGABRT under a hard limit after printing that line ran
//!   out of memory at the limit. A remote worker's stderr is its own, so
//!   its death is a lost connection.
//! - **By the kernel's OOM killer**: a SIGKILL, like any other. The pool
//!   reads a count of OOM kills when it starts and when a worker dies of
//!   SIGKILL it did not send: the count of its memory cgroup (v2
//!   `memory.events`, v1 `memory.oom_control`) where it can read one,
//!   else the system's (`/proc/vmstat`). A count that rose means the OOM
//!   killer struck meanwhile (in that cgroup, or anywhere), which the
//!   error says with the count; where no count is readable it says that a
//!   SIGKILL cannot be told apart.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::ErrorKind;
use crate::sys::OomCounter;
use crate::wire::MemoryLimits;

use super::worker_reader::WorkerEnd;

/// How long a local worker's death by SIGABRT waits for its stderr to be
/// read to the end, where the allocation failure would be.
const STDERR_PATIENCE: Duration = Duration::from_millis(200);

/// The line Rust's standard library prints before aborting on a failed
/// allocation.
const ALLOC_FAILED: (&str, &str) = ("memory allocation of ", " bytes failed");

/// What a local worker's stderr said of a failed allocation, as the I/O
/// thread reads it (`worker_io`).
#[derive(Default)]
pub(crate) struct StderrWatch {
    failed_allocation: Mutex<Option<String>>,
    closed: AtomicBool,
}

impl StderrWatch {
    /// Notes a line the worker wrote.
    pub(crate) fn line(&self, line: &[u8]) {
        if !line.starts_with(ALLOC_FAILED.0.as_bytes()) {
            return;
        }
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end();
        if line.starts_with(ALLOC_FAILED.0) && line.ends_with(ALLOC_FAILED.1) {
            *self
                .failed_allocation
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(line.to_string());
        }
    }

    /// The worker's stderr is closed: every line is in.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// The failed-allocation line, once the stderr has been read to its
    /// end or `patience` has passed (a process the worker started may hold
    /// the pipe open).
    fn failed_allocation(&self, patience: Duration) -> Option<String> {
        let deadline = Instant::now() + patience;
        loop {
            let seen = self
                .failed_allocation
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if seen.is_some() || self.closed.load(Ordering::Acquire) || Instant::now() >= deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The dispatcher's memory books: the OOM kill count last read, and each
/// local worker's stderr watch.
pub(crate) struct MemoryWatch {
    limits: MemoryLimits,
    /// Each readable count of OOM kills, and its value when last read.
    oom: Vec<(OomCounter, u64)>,
    stderr: HashMap<u32, Arc<StderrWatch>>,
}

impl MemoryWatch {
    pub(crate) fn new(limits: MemoryLimits) -> MemoryWatch {
        let oom = OomCounter::all()
            .into_iter()
            .filter_map(|counter| {
                let count = counter.read()?;
                Some((counter, count))
            })
            .collect();
        MemoryWatch {
            limits,
            oom,
            stderr: HashMap::new(),
        }
    }

    /// Watches a local worker's stderr.
    pub(crate) fn watch(&mut self, worker: u32, stderr: Arc<StderrWatch>) {
        self.stderr.insert(worker, stderr);
    }

    /// Forgets a worker whose end the pool caused.
    pub(crate) fn forget(&mut self, worker: u32) {
        self.stderr.remove(&worker);
    }

    /// How worker `worker` ended, which the pool did not cause:
    /// [`ErrorKind::OutOfMemory`] if it can tell the worker ran out of
    /// memory, else [`ErrorKind::WorkerDied`]. Forgets the worker.
    pub(crate) fn judge(&mut self, worker: u32, end: &WorkerEnd) -> Death {
        let stderr = self.stderr.remove(&worker);
        let death = Death::died(end.describe());
        match end.status.and_then(|status| status.signal()) {
            Some(libc::SIGABRT) => {
                let (Some(limit), Some(stderr)) = (self.limits.hard, stderr) else {
                    return death;
                };
                match stderr.failed_allocation(STDERR_PATIENCE) {
                    Some(line) => Death {
                        kind: ErrorKind::OutOfMemory,
                        note: format!(
                            ": it crossed the pool's hard memory limit of {limit} bytes \
                             (RLIMIT_DATA; it said \"{line}\")"
                        ),
                        ..death
                    },
                    None => death,
                }
            }
            Some(libc::SIGKILL) => self.judge_sigkill(death),
            _ => death,
        }
    }

    /// A SIGKILL the pool did not send: the OOM killer's if a count of
    /// OOM kills rose since it was last read (the most specific that
    /// rose is named).
    fn judge_sigkill(&mut self, death: Death) -> Death {
        if self.oom.is_empty() {
            return Death {
                note: ", not sent by the pool: sent by another process or by the kernel's \
                       OOM killer (no count of OOM kills is readable here to tell them apart)"
                    .to_string(),
                ..death
            };
        }
        let mut rose = None;
        for (counter, seen) in &mut self.oom {
            let before = *seen;
            *seen = counter.read().unwrap_or(before);
            if *seen > before && rose.is_none() {
                rose = Some(format!(
                    " (the count of OOM kills of the {} rose from {before} to {})",
                    counter.scope, *seen
                ));
            }
        }
        match rose {
            Some(note) => Death {
                kind: ErrorKind::OutOfMemory,
                how: format!("{} by the kernel's OOM killer", death.how),
                note,
            },
            None => {
                let counts: Vec<String> = self
                    .oom
                    .iter()
                    .map(|(counter, seen)| format!("{} at {seen}", counter.scope))
                    .collect();
                Death {
                    note: format!(
                        ", not sent by the pool nor by the kernel's OOM killer (counts of \
                         OOM kills unchanged: {})",
                        counts.join("; ")
                    ),
                    ..death
                }
            }
        }
    }
}

/// How a worker ended, as its inputs' errors say it: the input it was
/// running fails with `kind` and "{how} while running this task{note}".
pub(crate) struct Death {
    pub(crate) kind: ErrorKind,
    pub(crate) how: String,
    pub(crate) note: String,
}

impl Death {
    /// A plain [`ErrorKind::WorkerDied`].
    pub(crate) fn died(how: String) -> Death {
        Death {
            kind: ErrorKind::WorkerDied,
            how,
            note: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_standard_librarys_allocation_failure_is_noted() {
        let watch = StderrWatch::default();
        watch.line(b"memory allocation of bytes\n");
        watch.line(b"some memory allocation of 8 bytes failed\n");
        watch.close();
        assert_eq!(watch.failed_allocation(Duration::ZERO), None);
        watch.line(b"memory allocation of 1073741824 bytes failed\n");
        assert_eq!(
            watch.failed_allocation(Duration::ZERO).as_deref(),
            Some("memory allocation of 1073741824 bytes failed")
        );
    }
}
