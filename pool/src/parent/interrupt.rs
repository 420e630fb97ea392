//! Ctrl-C (SIGINT) for pools, through `signal-hook`.
//!
//! The first SIGINT makes every pool fail its unfinished calls with
//! [`ErrorKind::Interrupted`], so that a
//! program blocked in `map` gets control back; if no pool had anything
//! unfinished, the process ends the way SIGINT ends it by default. From the
//! first SIGINT on, another one exits the process at once (status 130), so
//! a program that does not stop after the first is never stuck.
//! Workers ignore SIGINT: the parent alone decides.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crossbeam_channel::Sender;
use signal_hook::consts::SIGINT;

use super::command::Command;
use crate::error::{Error, ErrorKind, Result};

/// How long a dispatcher may take to say whether it had work.
const REPLY_WAIT: Duration = Duration::from_secs(1);

static WATCHED: Mutex<Vec<Sender<Command>>> = Mutex::new(Vec::new());

/// How many `build`s wait for a Slurm job now: each handles SIGINT itself
/// (cancelling its job first), so a SIGINT then is not one "nobody waited
/// on", which would end the process before the job is cancelled.
static BUILDS_WAITING: AtomicUsize = AtomicUsize::new(0);

/// Set when SIGINT came while a `build` waited, for the waiter to act on.
static BUILD_INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// A `build` starts (`true`) or stops waiting for a Slurm job.
pub(crate) fn build_waiting(waiting: bool) {
    if waiting {
        BUILDS_WAITING.fetch_add(1, Ordering::Relaxed);
    } else {
        BUILDS_WAITING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether SIGINT came, through this handler, while a `build` waited.
pub(crate) fn build_interrupted() -> bool {
    BUILD_INTERRUPTED.load(Ordering::Relaxed)
}

/// Makes the pool behind `commands` subject to Ctrl-C, installing the
/// handler on first use.
pub(crate) fn watch(commands: Sender<Command>) -> Result<()> {
    static INSTALLED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| install().map_err(|err| err.to_string()))
        .clone()
        .map_err(|err| Error::new(ErrorKind::Startup, format!("cannot handle SIGINT: {err}")))?;
    WATCHED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(commands);
    Ok(())
}

fn install() -> std::io::Result<()> {
    let armed = Arc::new(AtomicBool::new(false));
    // Registered first, so it sees the flag as the previous SIGINT left it.
    signal_hook::flag::register_conditional_shutdown(SIGINT, 130, Arc::clone(&armed))?;
    signal_hook::flag::register(SIGINT, armed)?;
    let mut signals = signal_hook::iterator::Signals::new([SIGINT])?;
    std::thread::Builder::new()
        .name("pool-sigint".into())
        .spawn(move || {
            for _ in signals.forever() {
                interrupt_pools();
            }
        })?;
    Ok(())
}

fn interrupt_pools() {
    let (reply, replies) = crossbeam_channel::unbounded();
    let asked = {
        let mut watched = WATCHED.lock().unwrap_or_else(|p| p.into_inner());
        watched.retain(|pool| pool.send(Command::Interrupt(reply.clone())).is_ok());
        watched.len()
    };
    tracing::debug!(pools = asked, "SIGINT: interrupting pool calls");
    // A dispatcher too busy to answer in time is taken to have work.
    let build_waits = BUILDS_WAITING.load(Ordering::Relaxed) > 0;
    if build_waits {
        BUILD_INTERRUPTED.store(true, Ordering::Relaxed);
    }
    let had_work =
        build_waits || (0..asked).any(|_| replies.recv_timeout(REPLY_WAIT).unwrap_or(true));
    if !had_work {
        // Nothing was waiting on a pool: behave as if we had not been here.
        let _ = signal_hook::low_level::emulate_default_handler(SIGINT);
    }
}
