//! Example crunching programs for the `pool` crate, and the code they
//! share.
//!
//! The programs in `src/bin/` are short on purpose: each reads like
//! documentation of one way to use the pool. The work they hand out lives
//! here, in plain serial functions (tested on their own, and run serially
//! by the programs to measure the speed-up), so that any worker program
//! linking this library can run them.

#![warn(missing_docs)]
#![deny(unsafe_code)]

use pool::Task;

pub mod blur;
pub mod cli;
pub mod mandelbrot;
pub mod pi;
pub mod primes;
pub mod progress;
pub mod rarewords;
pub mod rng;
#[allow(unsafe_code)]
pub mod sys;
pub mod tempdir;
pub mod tour;
pub mod wordfreq;

/// The names of the pool tasks this crate defines, as workers look them up:
/// [`primes::count_primes`], [`mandelbrot::render`],
/// [`wordfreq::count_words`], [`pi::throw_darts`], [`blur::blur`] and
/// [`blur::blur_plain`].
///
/// A worker program of its own (see the `worker-bin` README) serves these
/// tasks once it links this crate; calling this function from its `main`
/// is one way to make sure the linker keeps the crate, and the tasks with it.
///
/// # Examples
///
/// ```
/// assert!(examples::task_names().contains(&"examples::primes::count_primes"));
/// ```
pub fn task_names() -> [&'static str; 6] {
    [
        primes::count_primes::NAME,
        mandelbrot::render::NAME,
        wordfreq::count_words::NAME,
        pi::throw_darts::NAME,
        blur::blur::NAME,
        blur::blur_plain::NAME,
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_task_is_registered_for_workers() {
        let registered = pool::registered_tasks();
        for name in super::task_names() {
            assert!(registered.contains(&name), "{name} not in {registered:?}");
        }
    }
}
