//! `pool-worker`: a worker program for pools.
//!
//! Run by a pool as its `worker_program`, or by hand (or ssh, srun, a
//! Kubernetes Job) as `pool-worker --connect HOST:PORT` to join a pool that
//! listens for remote workers. It runs the tasks linked into it: the
//! pool's built-in tasks (`pool::builtin`). See README.md to build a
//! worker with your own tasks.

fn main() {
    pool::worker_main()
}
