//! What a worker's messages become for the dispatcher: [`Event`]s, each
//! message checked (header first, see `wire.rs`) by the I/O thread that
//! read it (`worker_io`), and how a worker ended ([`WorkerEnd`]).

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;

use connection::Connection;

use super::identity::{self, Build, Mismatch};
use crate::sys;
use crate::task::TaskFailure;
use crate::wire::{FromWorker, WireError};

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
    /// A caller's lease of a worker ended, and the dispatcher had asked to
    /// know, or the worker was lost (see `lease`).
    LeaseEnded,
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
            Event::Lost { .. } | Event::Joined { .. } | Event::LeaseEnded => "nothing",
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

/// What a worker may still say, for turning its messages into events:
/// it says it is ready (or why it is not) once, and then only results may
/// follow; before and after that, one report that it is over its memory
/// budget (after which it waits to be told to quit) and one notice that
/// it leaves.
#[derive(Default)]
pub(crate) struct Greeting {
    greeted: bool,
    said: Said,
}

impl Greeting {
    /// The event that `message`, from worker `worker`, is; or why its
    /// connection must end.
    pub(crate) fn event(&mut self, worker: u32, message: Vec<u8>) -> Result<Event, String> {
        match parse(worker, message) {
            // Each would cost the dispatcher a turn (and, queued faster
            // than it takes them, memory): the connection ends instead.
            Ok(event) if !may_come(&event, self.greeted, &self.said) => {
                let error = match self.greeted {
                    true => format!("it sent {} after its start-up was over", event.name()),
                    false => format!("it sent {} before it was ready", event.name()),
                };
                tracing::warn!(worker, "{error}; its connection is ended");
                Err(error)
            }
            Ok(event) => {
                self.said.over_budget |= matches!(event, Event::OverBudget { .. });
                self.said.leaving |= matches!(event, Event::Leaving { .. });
                self.greeted |= !matches!(
                    event,
                    Event::Results { .. } | Event::OverBudget { .. } | Event::Leaving { .. }
                );
                Ok(event)
            }
            Err(err) => Err(format!("{err:#}")),
        }
    }
}

/// The notices a worker has sent, before or after it said it is ready.
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
        // Compared here, on the I/O thread, rather than in the dispatcher,
        // which serves every caller: like the parse, it costs time linear
        // in the message, which is within the pool's message size.
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
