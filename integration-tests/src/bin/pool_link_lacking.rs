//! A worker program for tests/pool_link.rs that depends on the crate of
//! `integration_tests::link_probe::cube` but never names the task, so
//! that the linker leaves it out. Its copies become workers before `main`.

fn main() {
    pool::init();
    eprintln!("pool_link_lacking is a worker program: it does nothing on its own");
}
