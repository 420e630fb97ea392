//! A pool that listens, with a swarm of simulated remote workers
//! (`integration_tests::swarm`: this program started again) of which some
//! misbehave, for `tests/pool_swarm.rs`. It prints what happened, one
//! `key: value` line at a time.
//!
//! Modes, each with 8 workers of which the first misbehave at their first
//! input, and a map of 64 naps of 20 ms:
//! - `die`: 2 drop their connection while running an input;
//! - `stall`: 1 stops reading, under a task timeout of 2 s;
//! - `garbage`: 2 send a message that is no message of the protocol.
//!
//! No lost worker's input runs again (`allowed_failures(0)`), so that the
//! inputs a fault cost show as errors.
//!
//! Then a second map of 32 naps runs on the workers left, and the pool is
//! dropped; the swarm's own report follows.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use integration_tests::swarm::{self, nap, Fault, Faults, Swarm};
use pool::Pool;

const KEY: &[u8] = b"swarm test key";
const WORKERS: usize = 8;
const NAP_MS: u64 = 20;
const LIMIT: Duration = Duration::from_secs(60);

fn main() {
    swarm::serve_if_swarm();
    let mode = std::env::args().nth(1).expect("a mode");
    let (fault, count, timeout) = match mode.as_str() {
        "die" => (Fault::Die, 2, None),
        "stall" => (Fault::Stall, 1, Some(Duration::from_secs(2))),
        "garbage" => (Fault::Garbage, 2, None),
        other => panic!("unknown mode {other:?}"),
    };
    let mut builder = Pool::builder()
        .processes(0)
        .allowed_failures(0)
        .listen("tcp:127.0.0.1:0", KEY.to_vec());
    if let Some(timeout) = timeout {
        builder = builder.task_timeout(timeout);
    }
    let pool = builder.build().expect("build the pool");
    let address = pool.listen_address().expect("listening").to_string();
    let swarm = Swarm::start(&address, KEY, WORKERS, &Faults::none().with(fault, count));
    let (ready, _) = swarm::wait_until_ready(&pool, WORKERS, Instant::now(), LIMIT, LIMIT);
    assert_eq!(ready, WORKERS, "the swarm did not join");

    let started = Instant::now();
    let inputs = vec![NAP_MS; 64];
    let results = pool
        .map_with(nap, inputs)
        .keep_failures()
        .run()
        .expect("the map runs");
    let mut errors = BTreeMap::new();
    let mut ok = 0;
    for result in &results {
        match result {
            Ok(ms) if *ms == NAP_MS => ok += 1,
            Ok(other) => panic!("wrong result {other}"),
            Err(err) => {
                eprintln!("input failed: {err:#}");
                *errors.entry(format!("{:?}", err.kind())).or_insert(0) += 1;
            }
        }
    }
    println!("results: {}", results.len());
    println!("ok: {ok}");
    println!("errors: {errors:?}");
    eprintln!("first map took {:?}", started.elapsed());
    // The pool has ended every misbehaving worker by now: the others
    // still serve, and nothing is left in flight on the ones it ended.
    println!("workers left: {}", pool.remote_workers().len());
    let after = pool.map(nap, vec![NAP_MS; 32]).expect("a second map");
    println!("second map ok: {}", after.iter().all(|ms| *ms == NAP_MS));
    drop(pool);
    let (report, clean) = swarm.wait(LIMIT);
    print!("{report}");
    println!("swarm exit clean: {clean}");
}
