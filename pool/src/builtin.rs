//! A few ready-made tasks, linked into every program that uses the pool
//! (so the `pool-worker` binary has them too): handy for trying a pool
//! out, for checking that remote workers work, and for tests.
//!
//! # Examples
//!
//! ```
//! use pool::builtin::{count_primes, sleep_ms};
//!
//! assert_eq!(count_primes.call((0, 100)), 25);
//! assert_eq!(sleep_ms.call(1), 1);
//! ```

use std::time::Duration;

crate::task! {
    /// Counts the primes in `start..end` by trial division: a CPU-bound
    /// task whose cost grows with the numbers.
    pub fn count_primes((start, end): (u64, u64)) -> u64 {
        (start..end).filter(|&n| is_prime(n)).count() as u64
    }
}

crate::task! {
    /// Sleeps for the given number of milliseconds and returns it: a task
    /// that takes time without using CPU.
    pub fn sleep_ms(millis: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(millis));
        millis
    }
}

crate::task! {
    /// Returns its input unchanged: the cheapest possible task, for
    /// measuring the pool's own overhead.
    pub fn echo(value: u64) -> u64 {
        value
    }
}

crate::task! {
    /// Returns the worker's process id, to see which worker ran a task.
    pub fn worker_pid(_unit: ()) -> u32 {
        std::process::id()
    }
}

crate::task! {
    /// Sleeps for the given number of milliseconds, then returns the
    /// worker's process id: which worker ran each input of a map whose
    /// inputs take time, to see how the work was spread.
    pub fn worker_pid_after_ms(millis: u64) -> u32 {
        std::thread::sleep(Duration::from_millis(millis));
        std::process::id()
    }
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut divisor = 2;
    while divisor * divisor <= n {
        if n % divisor == 0 {
            return false;
        }
        divisor += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_compute_what_they_say() {
        assert_eq!(count_primes.call((0, 30)), 10);
        assert_eq!(count_primes.call((30, 30)), 0);
        assert_eq!(echo.call(u64::MAX), u64::MAX);
        assert_eq!(worker_pid.call(()), std::process::id());
        assert!(crate::registered_tasks().contains(&"pool::builtin::echo"));
    }
}
