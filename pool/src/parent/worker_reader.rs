//! One thread per worker reads what it sends and forwards it to the
//! dispatcher as [`Event`]s; when the worker's connection ends, it reaps
//! the process to learn how it ended.

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use connection::Connection;
use crossbeam_channel::Sender;

use super::identity::{self, Build, Mismatch};
use crate::sys;
use crate::task::TaskFailure;
use crate::wire::{FromWorker, WireError};

/// How long a worker whose connection ended may take to exit before it is
/// killed (it may have closed the connection and gone on running).
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Something that happened to a worker.
pub(crate) enum Event {
    Ready {
        worker: u32,
        /// The pid the worker says it has: true of a local worker, only a
        /// claim of a remote one.
        claimed_pid: u32,
        /// The worker traces its tasks and wants their input indices.
        wants_indices: bool,
        /// The Slurm job a remote worker says it runs in: a claim too.
        slurm_job: Option<u64>,
        build: Build,
    },
    /// The worker's tasks differ from this program's: it is refused.
    Mismatch {
        worker: u32,
        mismatch: Box<Mismatch>,
    },
    SetupFailed {
        worker: u32,
        failure: TaskFailure,
    },
    /// The program the pool started ran its own `main` and tried to start
    /// a pool instead of becoming a worker.
    Refused {
        worker: u32,
        message: String,
    },
    /// A results message, its structure checked but its chunks not yet
    /// matched with those sent: the dispatcher reads them in place
    /// ([`ResultChunks`](crate::wire::ResultChunks)), so a message costs
    /// its own bytes and nothing per item until then.
    Results {
        worker: u32,
        message: Arc<Vec<u8>>,
        busy_nanos: u64,
    },
    /// The worker's resident memory was over the budget after an input.
    OverBudget {
        worker: u32,
        resident: u64,
    },
    /// The worker leaves (it was signalled to): it gives back what it has
    /// not started.
    Leaving {
        worker: u32,
    },
    Lost {
        worker: u32,
        end: WorkerEnd,
    },
    /// A remote worker connected and authenticated (boxed: a connection
    /// is several times larger than any other event).
    Joined {
        conn: Box<Connection>,
        peer: String,
    },
}

impl Event {
    /// What the worker said, for a log line.
    fn name(&self) -> &'static str {
        match self {
            Event::Ready { .. } | Event::Mismatch { .. } => "a ready message",
            Event::OverBudget { .. } => "a second report of memory over budget",
            Event::Leaving { .. } => "a second notice that it leaves",
            Event::SetupFailed { .. } => "a setup failure",
            Event::Refused { .. } => "a refusal",
            Event::Results { .. } => "results",
            Event::Lost { .. } | Event::Joined { .. } => "nothing",
        }
    }
}

/// How a worker's connection ended, and how its process ended if it is ours.
#[derive(Debug)]
pub(crate) struct WorkerEnd {
    pub(crate) status: Option<ExitStatus>,
    pub(crate) error: String,
}

impl WorkerEnd {
    /// "killed by signal 9 (SIGKILL)", "exited with status 3", or for a
    /// remote worker what happened to the connection.
    pub(crate) fn describe(&self) -> String {
        match self.status {
            Some(status) => match (status.signal(), status.code()) {
                (Some(signal), _) => format!(
                    "killed by signal {signal} ({}){}",
                    sys::signal_name(signal),
                    if status.core_dumped() {
                        ", core dumped"
                    } else {
                        ""
                    }
                ),
                (None, Some(code)) => format!("exited with status {code}"),
                (None, None) => format!("ended ({status})"),
            },
            None => format!("connection lost: {}", self.error),
        }
    }
}

/// Starts the reader thread for worker `id`, which first sends the worker
/// its `setup` message.
///
/// The setup is sent here rather than by the dispatcher because it can be
/// larger than a socket buffer (it carries the initializer's input): a
/// worker that never reads it must block this thread alone, not the
/// dispatcher, which then enforces the start-up deadline and kills it.
pub(crate) fn start(
    id: u32,
    conn: Connection,
    setup: Vec<u8>,
    child: Option<Arc<Mutex<Child>>>,
    events: Sender<Event>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("pool-worker-{id}-reader"))
        .spawn(move || read_until_end(id, conn, &setup, child, events))
}

fn read_until_end(
    id: u32,
    mut conn: Connection,
    setup: &[u8],
    child: Option<Arc<Mutex<Child>>>,
    events: Sender<Event>,
) {
    let pid = child
        .as_ref()
        .map(|c| c.lock().unwrap_or_else(|p| p.into_inner()).id());
    let span = tracing::debug_span!("worker", id, pid);
    let _entered = span.enter();
    // A worker that is already gone (it refused to be a worker, or could
    // not run) makes this fail; reading on tells why, which says more than
    // this send's broken pipe would.
    if let Err(err) = conn.send_bytes(setup) {
        tracing::debug!(%err, "sending setup failed");
    }
    // Whether the worker said it is ready (or why it is not): it says so
    // once, and only results may follow, and one report that it is over
    // its memory budget (after which it waits to be told to quit).
    let mut greeted = false;
    // The notices a worker may send once after its ready message.
    let mut said = Said::default();
    let error = loop {
        let message = match conn.recv_bytes() {
            Ok(message) => message,
            Err(err) => break format!("{err:#}"),
        };
        match parse(id, message) {
            // Each would cost the dispatcher a turn (and, queued faster
            // than it takes them, memory): the connection ends instead.
            Ok(event) if !may_come(&event, greeted, &said) => {
                let error = match greeted {
                    true => format!("it sent {} after its start-up was over", event.name()),
                    false => format!("it sent {} before it was ready", event.name()),
                };
                tracing::warn!(worker = id, "{error}; its connection is ended");
                break error;
            }
            Ok(event) => {
                said.over_budget |= matches!(event, Event::OverBudget { .. });
                said.leaving |= matches!(event, Event::Leaving { .. });
                greeted |= !matches!(
                    event,
                    Event::Results { .. } | Event::OverBudget { .. } | Event::Leaving { .. }
                );
                if events.send(event).is_err() {
                    break "the pool stopped".to_string();
                }
            }
            Err(err) => break format!("{err:#}"),
        }
    };
    tracing::debug!(%error, "worker connection ended");
    let status = child.as_deref().and_then(reap);
    let _ = events.send(Event::Lost {
        worker: id,
        end: WorkerEnd { status, error },
    });
}

/// The notices a worker has sent since it said it is ready.
#[derive(Default)]
struct Said {
    over_budget: bool,
    leaving: bool,
}

/// Whether `event` may come now: results at any time, one report of
/// memory over budget and one notice that it leaves, and anything else
/// only until the worker has said it is ready.
fn may_come(event: &Event, greeted: bool, said: &Said) -> bool {
    match event {
        Event::Results { .. } => true,
        Event::OverBudget { .. } => !said.over_budget,
        Event::Leaving { .. } => !said.leaving,
        _ => !greeted,
    }
}

fn parse(worker: u32, message: Vec<u8>) -> Result<Event, WireError> {
    Ok(match FromWorker::parse(&message)? {
        FromWorker::Results(results) => {
            let busy_nanos = results.busy_nanos;
            Event::Results {
                worker,
                message: Arc::new(message),
                busy_nanos,
            }
        }
        // Compared here rather than in the dispatcher, which serves every
        // worker: a long list of tasks delays this worker alone.
        FromWorker::Ready {
            pid,
            wants_indices,
            slurm_job,
            identity,
        } => match identity::check(&identity) {
            Ok(build) => Event::Ready {
                worker,
                claimed_pid: pid,
                wants_indices,
                slurm_job,
                build,
            },
            Err(mismatch) => Event::Mismatch { worker, mismatch },
        },
        FromWorker::SetupFailed(failure) => Event::SetupFailed { worker, failure },
        FromWorker::OverBudget { resident } => Event::OverBudget { worker, resident },
        FromWorker::Leaving => Event::Leaving { worker },
        FromWorker::Refused { reason } => Event::Refused {
            worker,
            message: reason.to_string(),
        },
    })
}

/// Waits for the child to exit, killing it if it lingers, and returns its
/// status. The lock is held only briefly, so the dispatcher can still
/// kill the child meanwhile.
fn reap(child: &Mutex<Child>) -> Option<ExitStatus> {
    let deadline = Instant::now() + EXIT_GRACE;
    let mut pause = Duration::from_micros(50);
    loop {
        let mut guard = child.lock().unwrap_or_else(|p| p.into_inner());
        match guard.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = guard.kill();
                return guard.wait().ok();
            }
            Ok(None) => {}
            Err(_) => return None,
        }
        drop(guard);
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_says_once_that_it_leaves_whether_or_not_it_is_ready() {
        let leaving = Event::Leaving { worker: 1 };
        let mut said = Said::default();
        for greeted in [false, true] {
            assert!(may_come(&leaving, greeted, &said));
        }
        said.leaving = true;
        for greeted in [false, true] {
            assert!(!may_come(&leaving, greeted, &said));
        }
        // Over budget is a notice of its own, also once.
        let over = Event::OverBudget {
            worker: 1,
            resident: 1,
        };
        assert!(may_come(&over, true, &said));
        said.over_budget = true;
        assert!(!may_come(&over, false, &said));
    }
}
