//! A crowd of 1,100 silent peers at a pool's door (its listener for
//! remote workers) in a process whose soft descriptor limit is 1024: the
//! pool must keep enough descriptors to adopt a good remote worker that
//! joins, to replace a local worker SIGKILLed mid-map (the map completing
//! with correct results), and to go on once the crowd has left.
//!
//! Once with a hard limit of 1024 too, where raising the soft limit does
//! not help and only the cap on pending handshakes keeps the reserve free;
//! once with a hard limit of 4096, which the pool raises the soft one to.
//! And a pool whose process ran out of descriptors itself (no crowd):
//! replacing a worker waits for some to be free, it does not end the pool.
//!
//! The limits are set in the pool's own process (`pool_door`), not in
//! this one; the crowd lives here, keeps itself 1,100 strong (reconnecting
//! whatever the pool closes) and needs about as many descriptors.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::{
    descriptor_limits, line, report_skip, scenario_output, set_descriptor_limit,
    wait_with_deadline, SilentCrowd, Watchdog,
};

const PROGRAM: &str = env!("CARGO_BIN_EXE_pool_door");
const WORKER: &str = env!("CARGO_BIN_EXE_pool_remote_worker");
const CROWD: usize = 1_100;
/// Bounds every wait, so that a failure cannot hang; never asserted on.
const PATIENCE: Duration = Duration::from_secs(60);

fn crowd_at_the_door(hard: u64) {
    let (soft, own_hard) = descriptor_limits();
    // The crowd's ends, two test runs side by side, and some to spare.
    let needed = 2 * CROWD as u64 + 512;
    if soft < needed {
        if own_hard < needed {
            report_skip(&format!(
                "a crowd of {CROWD} needs {needed} descriptors; the hard limit is {own_hard}"
            ));
            return;
        }
        set_descriptor_limit(own_hard).unwrap();
    }
    let _watchdog = Watchdog::start("crowd at the door", Duration::from_secs(400));
    let mut program = Command::new(PROGRAM)
        .args(["descriptors", &hard.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn pool_door");
    let mut to_program = program.stdin.take().unwrap();
    let mut from_program = BufReader::new(program.stdout.take().unwrap());
    let mut output = String::new();
    let mut read_until = |label: &str, output: &mut String| loop {
        let mut next = String::new();
        let read = from_program.read_line(&mut next).expect("read");
        output.push_str(&next);
        assert!(read > 0, "no {label:?} line:\n{output}");
        if next.starts_with(label) {
            return;
        }
    };
    read_until("limits: ", &mut output);
    let address = line(&output, "address").to_string();
    let addr = address.strip_prefix("tcp:").unwrap().parse().unwrap();
    let crowd = SilentCrowd::start(addr, CROWD);
    let began = Instant::now();
    while crowd.connected() < CROWD as u64 && began.elapsed() < PATIENCE {
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "{} connections of the crowd in {:?}",
        crowd.connected(),
        began.elapsed()
    );
    // Fewer would not press the pool's descriptors at all.
    assert!(
        crowd.connected() >= CROWD as u64,
        "the crowd made only {} connections",
        crowd.connected()
    );
    writeln!(to_program, "flooded").unwrap();
    read_until("descriptors under the crowd: ", &mut output);
    let mut worker = Command::new(WORKER)
        .args(["--connect", &address])
        .env("POOL_AUTHKEY", "door key")
        .spawn()
        .expect("spawn the remote worker");
    read_until("waiting for the crowd to leave", &mut output);
    eprintln!("the crowd made {} connections in all", crowd.connected());
    drop(crowd);
    writeln!(to_program, "gone").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut from_program, &mut rest).expect("read");
    output.push_str(&rest);
    let status = wait_with_deadline(&mut program, PATIENCE);
    eprintln!("{output}");
    assert!(status.success(), "{status}\n{output}");
    let limits: Vec<u64> = line(&output, "limits")
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect();
    // The pool raised its soft limit as far as it could.
    assert_eq!(limits[0], limits[1], "{output}");
    assert!(
        line(&output, "remote joined").starts_with("yes"),
        "{output}"
    );
    assert_eq!(line(&output, "map"), "correct", "{output}");
    assert_eq!(line(&output, "replaced"), "true", "{output}");
    assert_eq!(line(&output, "after"), "correct", "{output}");
    // Its pool gone, the remote worker was told to quit.
    assert!(wait_with_deadline(&mut worker, PATIENCE).success());
}

#[test]
fn a_crowd_cannot_take_the_pools_reserve_at_a_hard_limit_of_1024() {
    crowd_at_the_door(1024);
}

#[test]
fn a_crowd_cannot_take_the_pools_reserve_at_a_soft_limit_of_1024() {
    crowd_at_the_door(4096);
}

#[test]
fn a_pool_short_of_descriptors_replaces_its_worker_once_some_are_free() {
    // The program uses up its own descriptors, kills a worker mid-map,
    // and frees them once the pool said it cannot start the replacement:
    // the replacement waits, it does not break the pool.
    let output = scenario_output(PROGRAM, "exhausted", Duration::from_secs(180));
    eprintln!("{output}");
    assert_eq!(line(&output, "map"), "correct", "{output}");
    assert_eq!(line(&output, "replaced"), "true", "{output}");
    assert_eq!(line(&output, "after"), "correct", "{output}");
    // The replacement did meet the shortage (else this tested nothing).
    assert!(
        output.contains("cannot start a worker for now"),
        "no shortage was met:\n{output}"
    );
}
