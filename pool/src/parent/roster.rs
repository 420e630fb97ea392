//! The live workers as the dispatcher publishes them for
//! [`Pool::worker_pids`](crate::Pool::worker_pids) and
//! [`Pool::remote_workers`](crate::Pool::remote_workers): the pids of the
//! processes the pool started, and the remote workers apart, since what a
//! remote worker says of its pid is only a claim.

use std::sync::{Arc, Mutex};

/// A remote worker connected to the pool, as
/// [`Pool::remote_workers`](crate::Pool::remote_workers) lists it.
///
/// Its pid is the number it sent in its ready message: a claim nobody
/// checked, of a process on another machine as often as not. Any peer that
/// has the pool's key can claim any pid (1, the pool's own, `u32::MAX`),
/// so it is for reading, never for signalling; the pids of the processes
/// the pool started itself are [`Pool::worker_pids`](crate::Pool::worker_pids).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteWorker {
    /// The pool's number for the worker, as errors name it (`worker N`).
    pub id: u32,
    /// The address it connected from, as the pool's listener saw it
    /// (`tcp:10.0.0.7:51234`).
    pub peer: String,
    /// The pid it claims to have, unverified; `None` until it said it is
    /// ready.
    pub claimed_pid: Option<u32>,
    /// The Slurm job it says it runs in (its `SLURM_JOB_ID`), unverified
    /// too; `None` outside Slurm. A pool that submitted that job cuts the
    /// worker off when Slurm no longer runs the job.
    pub slurm_job: Option<u64>,
}

/// What the dispatcher last published, shared with the pool's handle.
#[derive(Debug, Default)]
pub(crate) struct Roster {
    /// The pids of the live local workers: processes the pool started.
    pub(crate) local_pids: Vec<u32>,
    pub(crate) remote: Vec<RemoteWorker>,
}

/// The roster, shared between the dispatcher (which writes it) and the pool.
pub(crate) type SharedRoster = Arc<Mutex<Roster>>;

/// Reads the roster, whoever panicked while holding it (it is replaced
/// whole, so it is never half-written).
pub(crate) fn read<T>(roster: &SharedRoster, what: impl FnOnce(&Roster) -> T) -> T {
    what(&roster.lock().unwrap_or_else(|p| p.into_inner()))
}
