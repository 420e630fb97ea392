//! A worker program built the way worker-bin's README says a user builds
//! one: link the crates whose tasks it should run and call
//! `worker_bin::main()`. This one links only the pool's built-in tasks,
//! so the tests also use it as a worker that does not know their tasks.

fn main() {
    worker_bin::main()
}
