//! What pool handles ask of the dispatcher, and the sending end they share.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;

use super::identity::WorkerTasks;
use super::inline;
use super::job::Job;
use super::lease::Leases;
use super::sink::CancelNotice;
use crate::error::{Error, ErrorKind, Result};

/// A request to the dispatcher.
pub(crate) enum Command {
    Submit(Job),
    SubmitMany(Vec<Job>),
    /// Finish the queued work, then stop the workers.
    Close,
    /// Stop the workers now, failing unfinished work.
    Terminate,
    /// Ctrl-C: fail unfinished work with `Interrupted`; replies whether
    /// there was any.
    Interrupt(Sender<bool>),
    /// The pool can get no more workers (its launcher gave up): fail the
    /// queued work and every later call with this error.
    Break(Error),
    /// Slurm no longer runs this job (it ended, or was requeued): its
    /// remote workers are cut off, and what they ran runs elsewhere.
    RetireJob(u64),
}

/// The way into a pool's dispatcher, for the pool and the iterators it
/// lends out.
pub(crate) struct Commands {
    sender: Sender<Command>,
    closed: AtomicBool,
    /// The number of local workers configured.
    processes: usize,
    /// The workers live now, local and remote (starting or ready), as the
    /// dispatcher last published it: what sizes chunks and windows.
    live_workers: Arc<AtomicUsize>,
    /// The largest message to a worker, which bounds an encoded input.
    max_message_size: u64,
    /// Tells the dispatcher that a caller gave up on some work.
    cancel_notice: CancelNotice,
    /// A pool built inside a worker: commands run here ([`inline`]), and
    /// no dispatcher reads `sender`.
    inline: bool,
    /// The worker program's tasks, once known.
    worker_tasks: Arc<WorkerTasks>,
    /// Told of each submission before it goes, so that no direct call
    /// overtakes it (see `lease`).
    leases: Option<Arc<Leases>>,
}

impl Commands {
    pub(crate) fn new(
        sender: Sender<Command>,
        processes: usize,
        live_workers: Arc<AtomicUsize>,
        max_message_size: u64,
        cancel_notice: CancelNotice,
    ) -> Commands {
        Commands {
            sender,
            closed: AtomicBool::new(false),
            processes,
            live_workers,
            max_message_size,
            cancel_notice,
            inline: false,
            worker_tasks: Arc::default(),
            leases: None,
        }
    }

    /// Has calls check `worker_tasks`, which the dispatcher fills in.
    pub(crate) fn with_worker_tasks(self, worker_tasks: Arc<WorkerTasks>) -> Commands {
        Commands {
            worker_tasks,
            ..self
        }
    }

    /// Tells `leases` of each submission before it goes.
    pub(crate) fn with_leases(self, leases: Arc<Leases>) -> Commands {
        Commands {
            leases: Some(leases),
            ..self
        }
    }

    /// The commands of a pool that runs its calls on the calling thread
    /// ([`inline`]): one "worker", the caller, always live.
    pub(crate) fn inline(max_message_size: u64) -> Commands {
        let (sender, _nobody) = crossbeam_channel::bounded(0);
        let (cancel_notice, _unwatched) = CancelNotice::pair();
        Commands {
            inline: true,
            ..Commands::new(
                sender,
                1,
                Arc::new(AtomicUsize::new(1)),
                max_message_size,
                cancel_notice,
            )
        }
    }

    pub(crate) fn is_inline(&self) -> bool {
        self.inline
    }

    pub(crate) fn cancel_notice(&self) -> &CancelNotice {
        &self.cancel_notice
    }

    pub(crate) fn processes(&self) -> usize {
        self.processes
    }

    /// The workers live now, local and remote; 0 while a remote-only pool
    /// waits for its first.
    pub(crate) fn live_workers(&self) -> usize {
        self.live_workers.load(Ordering::Relaxed)
    }

    pub(crate) fn max_message_size(&self) -> u64 {
        self.max_message_size
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Fails a call of `task` at once if the pool's worker program lacks
    /// it (see [`WorkerTasks`]), before any input is taken or sent.
    pub(crate) fn check_task(&self, task: &'static str) -> Result<()> {
        self.worker_tasks.check(task)
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        match self.is_closed() {
            true => Err(Error::new(ErrorKind::Closed, "the pool was closed")),
            false => Ok(()),
        }
    }

    /// Sends `command`. A dispatcher that has gone hands the command back,
    /// dropped here: its jobs then answer their callers with `Closed`.
    pub(crate) fn send(&self, command: Command) {
        if self.inline {
            return run_inline(command);
        }
        if let (Some(leases), Command::Submit(_) | Command::SubmitMany(_)) =
            (&self.leases, &command)
        {
            leases.submitting();
        }
        let _ = self.sender.send(command);
    }

    pub(crate) fn submit(&self, jobs: Vec<Job>) {
        self.send(Command::SubmitMany(jobs));
    }

    /// Marks the pool closed; returns whether it was open until now.
    pub(crate) fn mark_closed(&self) -> bool {
        !self.closed.swap(true, Ordering::Relaxed)
    }

    /// For the Ctrl-C handler, which outlives no pool but needs its own copy.
    pub(crate) fn sender(&self) -> Sender<Command> {
        self.sender.clone()
    }
}

/// Carries out a command of an inline pool: a job runs now, input after
/// input; the rest has nothing to stop or wait for.
fn run_inline(command: Command) {
    match command {
        Command::Submit(job) => inline::run_job(job),
        Command::SubmitMany(jobs) => jobs.into_iter().for_each(inline::run_job),
        Command::Interrupt(reply) => {
            let _ = reply.send(false);
        }
        Command::Close | Command::Terminate | Command::Break(_) | Command::RetireJob(_) => {}
    }
}
