//! Issue 9, items 1-3: payloads whose content lies about its size or depth,
//! sent by one process and received with `recv::<T>()` by another.
//!
//! The receiver is `pipe_peer recv-hostile KIND` (src/bin/pipe_peer.rs): it
//! must get a `Decode` error for the hostile message and then decode the
//! good one after it. Before the fix each of these killed the receiver (an
//! allocation of 60 GiB, a stack overflow) or left it spinning for ever, so
//! the receiver is a child process, waited for with a deadline: a failure
//! shows as its exit status instead of taking the test run down or hanging.

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command};
use std::time::Duration;

use connection::{encode, pipe, Connection};
use integration_tests::{wait_with_deadline, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);
const CONN_ENV: &str = "PIPE_CONN";

/// Starts `pipe_peer recv-hostile KIND` and sends it `hostile` then `good`
/// as byte messages; asserts that it took both as it should.
fn receiver_refuses_then_decodes(kind: &str, hostile: &[u8], good: &[u8]) {
    // Longer than the wait below, which kills a stuck receiver: the watchdog
    // aborting this process first would leave the receiver running.
    let _watchdog = Watchdog::start(kind, 2 * LIMIT);
    let (mut ours, theirs) = pipe().unwrap();
    let mut child = spawn_receiver(kind, theirs);
    // The sends fail only if the receiver died; its status says why.
    let sent = ours
        .send_bytes(hostile)
        .and_then(|()| ours.send_bytes(good));
    drop(ours);
    let status = wait_with_deadline(&mut child, LIMIT);
    assert!(
        status.success(),
        "receiver of the hostile {kind} payload: {status:?} (signal {:?})",
        status.signal()
    );
    sent.unwrap();
}

fn spawn_receiver(kind: &str, conn: Connection) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pipe_peer"));
    command.args(["recv-hostile", kind]);
    conn.pass_to_child(&mut command, CONN_ENV).unwrap();
    command.spawn().expect("spawn pipe_peer")
}

/// A bincode varint claiming `n`: the marker 253, then `n` as a little
/// endian u64.
fn varint_u64(n: u64) -> Vec<u8> {
    let mut bytes = vec![253];
    bytes.extend_from_slice(&n.to_le_bytes());
    bytes
}

#[test]
fn a_forged_string_length_in_a_large_payload_is_a_decode_error() {
    // 2^28 + 1 bytes whose string length claims 60 GiB: the old limit,
    // rounded up to 64 GiB for a payload that size, let it through to the
    // allocator, which aborted the receiver.
    let mut hostile = varint_u64(60 << 30);
    hostile.resize((1 << 28) + 1, b'x');
    receiver_refuses_then_decodes("string", &hostile, &encode("after").unwrap());
}

#[test]
fn nesting_deeper_than_the_limit_is_a_decode_error() {
    // 100,000 `Some`s of `struct Nest(Option<Box<Nest>>)`: the receiver's
    // stack overflowed before the depth limit.
    let mut hostile = vec![1u8; 100_000];
    hostile.push(0);
    receiver_refuses_then_decodes("nest", &hostile, &[1, 0]);
}

#[test]
fn a_forged_count_of_empty_elements_is_a_decode_error() {
    // Vec<()> claiming u64::MAX elements in 9 bytes: each `()` reads
    // nothing, so the receiver spun for ever.
    let hostile = varint_u64(u64::MAX);
    receiver_refuses_then_decodes("unit-vec", &hostile, &encode(&vec![(); 3]).unwrap());
}
