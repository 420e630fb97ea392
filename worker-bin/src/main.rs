//! `pool-worker`: a worker program for pools.
//!
//! Run by a pool as its `worker_program`, or by hand (or ssh, srun, a
//! Kubernetes Job) as `pool-worker --connect HOST:PORT` to join a pool that
//! listens for remote workers. It runs the tasks linked into it: the
//! pool's built-in tasks (`pool::builtin`) and, with the default
//! `example-tasks` feature, the example programs' tasks
//! (`examples::task_names()`). See README.md to build a worker with your
//! own tasks.

#![deny(unsafe_code)]

fn main() {
    // Name the examples crate so that it is linked in: a crate nothing
    // refers to is left out of the binary, and its task registrations with it.
    #[cfg(feature = "example-tasks")]
    let _ = examples::task_names;
    worker_bin::main()
}
