//! Starting, retiring and stopping workers, and the pool's own end.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::shortage::is_shortage;
use super::{Dispatcher, Phase, REAP_WAIT};
use crate::error::{Error, Result};
use crate::parent::outbox::Outbox;
use crate::parent::roster::{RemoteWorker, Roster};
use crate::parent::shared_conn::SharedConnection;
use crate::parent::spawn;
use crate::parent::worker_io::NewWorker;
use crate::parent::worker_reader::Event;
use crate::parent::worker_slot::{Process, State, WorkerSlot};
use crate::wire::{Initializer, ToWorker};

/// The roster is published at most once per this many times what
/// publishing it took (see [`LastPublished::next`]).
const ROSTER_SPACING: u32 = 8;
/// Up to this many live workers the roster is published at every change,
/// at once: it costs next to nothing, and a caller whose task a worker
/// just ran then finds that worker in it. The spacing, which a busy
/// machine stretches (what a publication took includes the time its
/// thread waited for a core), is for the join of thousands.
const ROSTER_AT_ONCE: usize = 64;

impl Dispatcher {
    /// Quits a worker that has been given its share of tasks, once it has
    /// answered them all; `replenish` starts its replacement.
    pub(super) fn retire_if_due(&mut self, worker: u32) {
        let Some(limit) = self.config.max_tasks_per_child else {
            return;
        };
        let Some(mut slot) = self.workers.get_mut(worker) else {
            return;
        };
        if slot.state() == State::Ready && slot.items_sent() >= limit && slot.load().chunks == 0 {
            tracing::debug!(worker = slot.id(), "worker retiring after {limit} tasks");
            slot.retire();
        }
    }

    /// Starts local workers until the configured number are live. A shortage
    /// of descriptors (or memory, or processes) only holds that off for a
    /// while (see `shortage`); any other failure to start a worker (a
    /// missing program, say) breaks the pool.
    pub(super) fn replenish(&mut self) {
        if self.broken.is_some() || self.phase == Phase::Terminating {
            return;
        }
        if self.shortage.holds_off(Instant::now()) {
            return;
        }
        let round = self.shortage.begin_round();
        if self.phase != Phase::Closing || !self.queue.is_empty() {
            self.start_missing_locals();
        }
        self.shortage.end_round(round);
    }

    fn start_missing_locals(&mut self) {
        for _ in self.workers.local_live()..self.config.processes {
            match self.spawn_local() {
                Ok(()) => self.shortage.passed(),
                Err(err) if is_shortage(&err) => {
                    self.shortage.failed("start a worker", &err);
                    return;
                }
                Err(err) => {
                    self.break_pool(err);
                    return;
                }
            }
        }
    }

    pub(super) fn spawn_local(&mut self) -> Result<()> {
        let id = self.next_worker_id;
        self.next_worker_id += 1;
        let setup = self.setup_message(id);
        let local = spawn::spawn_local(&self.config, &self.program, id, setup, &self.io)?;
        self.memory.watch(id, local.stderr);
        let deadline = Instant::now() + self.config.startup_timeout;
        let process = Process::Local {
            child: local.child,
            progress: Arc::new(local.progress),
        };
        self.workers.push(WorkerSlot::starting(
            id,
            Some(local.pid),
            process,
            local.conn,
            Outbox::new(self.io.sender(), local.pending),
            deadline,
            self.config.max_message_size,
        ));
        self.publish_roster();
        Ok(())
    }

    /// Hands a remote worker that authenticated to the I/O thread, which
    /// sends it its setup. It takes no descriptor beyond its connection's
    /// (shared by the dispatcher and the I/O thread), so a shortage of
    /// descriptors cannot stop it here.
    pub(super) fn adopt_remote(&mut self, mut conn: connection::Connection, peer: String) {
        if self.phase != Phase::Open || self.broken.is_some() {
            // Never waiting for it: a peer that does not read just loses
            // its connection without being told why.
            let _ = conn.try_send_bytes(&ToWorker::Quit.encode());
            return;
        }
        conn.set_max_message_size(self.config.max_message_size);
        let id = self.next_worker_id;
        self.next_worker_id += 1;
        let conn = SharedConnection::new(conn);
        let pending = self.io.add(NewWorker {
            id,
            conn: conn.clone(),
            setup: Some(self.setup_message(id)),
            child: None,
            stderr: None,
        });
        tracing::debug!(worker = id, %peer, "remote worker joined");
        let deadline = Instant::now() + self.config.startup_timeout;
        self.workers.push(WorkerSlot::starting(
            id,
            None,
            Process::Remote {
                peer,
                claimed_pid: None,
                slurm_job: None,
            },
            conn,
            Outbox::new(self.io.sender(), pending),
            deadline,
            self.config.max_message_size,
        ));
        self.publish_roster();
    }

    pub(super) fn setup_message(&self, id: u32) -> Vec<u8> {
        let initializer = self
            .config
            .initializer
            .as_ref()
            .map(|(name, input)| Initializer { name, input });
        ToWorker::Setup {
            worker_id: id,
            max_message_size: self.config.max_message_size,
            initializer,
            build_id: crate::sys::build_id(),
            memory: self.config.memory,
            spin: self.config.spin,
        }
        .encode()
    }

    pub(super) fn terminate(&mut self) {
        self.phase = Phase::Terminating;
        self.leases.close();
        self.stop_lent(Error::terminated);
        self.fail_queued(Error::terminated);
        self.workers.for_each_mut(|slot| {
            // A remote worker is told to quit, so that one waiting for work
            // exits as after a close; one running a task sees its
            // connection end and stops (see `connect_worker`).
            if !slot.is_local() {
                slot.retire();
            }
            slot.kill();
            slot.fail_in_flight(Error::terminated);
        });
    }

    /// During close: once all work is done, tells the workers to quit;
    /// returns true once they are all gone.
    pub(super) fn finish_closing(&mut self) -> bool {
        if !self.queue.is_empty() {
            return false;
        }
        if self.workers.any_holding() {
            return false;
        }
        // A worker lent to a caller runs its input to the end first.
        if !self.reclaim_lent(true) {
            return false;
        }
        // Retiring and doomed workers are not live: once all are told,
        // each turn until they are gone costs nothing.
        if self.workers.live() > 0 {
            self.workers.for_each_mut(|slot| {
                if !matches!(slot.state(), State::Retiring | State::Doomed) {
                    slot.retire();
                }
            });
        }
        self.workers.is_empty()
    }

    /// Waits (boundedly) until the I/O thread has reported every worker's end,
    /// so that local workers are reaped before the pool is gone.
    pub(super) fn wait_for_workers(&mut self) {
        self.workers.for_each_mut(|slot| {
            if slot.state() != State::Retiring {
                slot.kill();
            }
        });
        let deadline = Instant::now() + REAP_WAIT;
        while self.workers.iter().any(|w| w.is_local()) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::Lost { worker, end }) => self.on_lost(worker, end),
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!("some workers were not reaped in time");
                    break;
                }
            }
        }
        self.deliveries.flush();
        self.publish_roster_now();
    }

    pub(super) fn fail_queued(&mut self, error: impl Fn() -> Error) {
        for mut job in self.queue.drain(..) {
            job.fail_all(|_| error());
        }
    }

    pub(super) fn break_pool(&mut self, err: Error) {
        tracing::debug!(%err, "pool cannot start workers");
        if self.broken.is_none() {
            self.broken = Some(err.clone());
        }
        self.fail_queued(|| err.clone());
        // Later calls fail with it too, direct ones included.
        self.leases.close();
    }

    /// Counts the live workers for the callers' chunk sizes at once, and
    /// publishes the roster: at once in a small pool, else when
    /// `publish_roster_if_due` finds it due.
    pub(super) fn publish_roster(&mut self) {
        self.live_workers
            .store(self.workers.live(), Ordering::Relaxed);
        if self.workers.live() <= ROSTER_AT_ONCE {
            self.publish_roster_now();
            return;
        }
        if self.roster_due.is_none() {
            let at = self
                .roster_published
                .map_or_else(Instant::now, LastPublished::next);
            self.roster_due = Some(at);
        }
    }

    /// Publishes the roster if it is behind and its time has come.
    pub(super) fn publish_roster_if_due(&mut self) {
        if self.roster_due.is_some_and(|at| at <= Instant::now()) {
            self.publish_roster_now();
        }
    }

    /// Publishes the live workers: the local ones' pids for `worker_pids`,
    /// the remote ones for `remote_workers`, and their count (local and
    /// remote) for the callers' chunk sizes.
    pub(super) fn publish_roster_now(&mut self) {
        let began = Instant::now();
        let live = || self.workers.iter().filter(|w| w.is_live());
        self.live_workers
            .store(self.workers.live(), Ordering::Relaxed);
        let roster = Roster {
            local_pids: live().filter_map(|w| w.pid()).collect(),
            remote: live()
                .filter_map(|w| {
                    Some(RemoteWorker {
                        id: w.id(),
                        peer: w.peer()?.to_string(),
                        claimed_pid: w.claimed_pid(),
                        slurm_job: w.slurm_job(),
                    })
                })
                .collect(),
        };
        *self.roster.lock().unwrap_or_else(|p| p.into_inner()) = roster;
        self.roster_due = None;
        self.roster_published = Some(LastPublished {
            at: began,
            took: began.elapsed(),
        });
    }
}

/// The roster's last publication, which walks every worker.
#[derive(Clone, Copy)]
pub(super) struct LastPublished {
    at: Instant,
    took: Duration,
}

impl LastPublished {
    /// The soonest the roster is published again: at once for a few
    /// workers, and with thousands (while they join, each changes it) only
    /// after [`ROSTER_SPACING`] times what the last publication took, so
    /// that publishing stays a small part of the dispatcher's time.
    fn next(self) -> Instant {
        self.at + self.took * ROSTER_SPACING
    }
}
