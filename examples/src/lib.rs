//! Example crunching programs for the `pool` crate, and the code they
//! share.
//!
//! The programs in `src/bin/` are short on purpose: each reads like
//! documentation of one way to use the pool. The work they hand out lives
//! here, in plain serial functions (tested on their own, and run serially
//! by the programs to measure the speed-up), so that any worker program
//! linking this library can run them.

#![warn(missing_docs)]

pub mod cli;
pub mod mandelbrot;
pub mod pi;
pub mod primes;
pub mod progress;
pub mod rng;
pub mod tempdir;
pub mod tour;
pub mod wordfreq;
