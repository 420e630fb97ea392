//! A program with the `new-body` form of `stale_task::bump`
//! (fixtures/stale-task/README.md), for tests/pool_stale.rs. Its copies
//! become workers before `main`; run as a program, it only says so.

fn main() {
    // Names the task so that its crate, and the task with it, is linked.
    let _ = stale_task_new_body::bump;
    eprintln!("pool_stale_new_body is a worker program: it does nothing on its own");
}
