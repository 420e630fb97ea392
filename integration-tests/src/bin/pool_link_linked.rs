//! `pool_link_lacking` with the task named by `pool::link_tasks!`, as the
//! pool's error message says to, and nothing else of the pool: its
//! workers run it.

fn main() {
    pool::link_tasks!(integration_tests::link_probe::cube);
    eprintln!("pool_link_linked is a worker program: it does nothing on its own");
}
