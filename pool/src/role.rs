//! Whether this process has become a pool's worker: set once, by the
//! worker side, and read where the two sides must differ (a pool refuses
//! to start in a worker; a function sent by pointer runs only in a local
//! worker of the pool's own build). A leaf module, so that both sides can
//! ask without naming each other.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set once this process has become a worker: pools refuse to start here.
static IN_WORKER: AtomicBool = AtomicBool::new(false);

/// Whether this process has become a worker.
pub(crate) fn in_worker() -> bool {
    IN_WORKER.load(Ordering::Relaxed)
}

/// Marks this process as a worker for good.
pub(crate) fn become_worker() {
    IN_WORKER.store(true, Ordering::Relaxed);
}
