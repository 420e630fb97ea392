//! The busy wait of the low-latency mode
//! ([`PoolBuilder::spin`](crate::PoolBuilder::spin)): a thread about to
//! sleep until something arrives first checks for it, without blocking,
//! for a short while. A message that arrives meanwhile is taken at once,
//! without the wake-up of a sleeping thread (tens of microseconds on a
//! virtual machine); the price is a thread that keeps its core busy for
//! that while after each message.

use std::time::{Duration, Instant};

/// The longest spin a pool may ask of its threads and workers: a worker
/// refuses a setup message asking for more.
pub(crate) const MAX_SPIN: Duration = Duration::from_millis(100);

/// Checks `ready` until it holds or `spin` has passed, and returns
/// whether it held; with a zero `spin`, returns `false` at once, for the
/// caller's blocking wait to find out.
///
/// Between checks the thread yields its core to any other thread that
/// can run there: with more spinning threads than cores (the pool's
/// caller, dispatcher, I/O thread and workers all spin), a pure busy
/// loop would keep the thread that has the awaited message off the core.
pub(crate) fn spin_until(spin: Duration, mut ready: impl FnMut() -> bool) -> bool {
    if spin.is_zero() {
        return false;
    }
    let deadline = Instant::now() + spin;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_zero_spin_never_checks_and_a_spin_sees_what_arrives() {
        assert!(!spin_until(Duration::ZERO, || true));
        let mut checks = 0;
        assert!(!spin_until(Duration::from_millis(2), || {
            checks += 1;
            false
        }));
        assert!(checks > 1, "{checks} checks");
        let flag = Arc::new(AtomicBool::new(false));
        let setter = {
            let flag = Arc::clone(&flag);
            std::thread::spawn(move || flag.store(true, Ordering::Release))
        };
        // Patience only: the flag is set almost at once.
        assert!(spin_until(Duration::from_secs(60), || flag.load(Ordering::Acquire)));
        setter.join().unwrap();
    }
}
