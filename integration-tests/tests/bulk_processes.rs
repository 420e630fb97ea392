//! The bulk fast paths across two processes: a `serde_bytes::ByteBuf`,
//! `send_slice`/`recv_vec` of `f64`s and of a `#[repr(C)]` struct, plain
//! `Vec<u8>`, `Vec<f64>`, `Vec<String>` and a `String`, each sent to
//! `pipe_peer bulk-echo` and back, large enough (several MiB) to take the
//! streamed send and the byte-string receive; a length that is not a
//! whole number of elements refused in the child with the connection
//! still usable. And the wire form against CPython: `array.array` reads
//! what `send_slice` sent and sends back what `recv_vec` reads.
//!
//! A watchdog fails a test that hangs; nothing asserts on time.

use std::process::{Command, Stdio};
use std::time::Duration;

use connection::serde_bytes::ByteBuf;
use connection::{pipe, Connection};
use integration_tests::bulk::{samples, Sample};
use integration_tests::{python3, wait_with_deadline, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);

fn spawn_peer(mode: &str, conn: Connection) -> std::process::Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pipe_peer"));
    command.arg(mode);
    conn.pass_to_child(&mut command, "PIPE_CONN").unwrap();
    command.spawn().expect("spawn pipe_peer")
}

/// Sends `value` on a thread (the child echoes as it receives, and a
/// large message does not fit the socket buffer) and receives the echo.
fn round_trip<T>(
    conn: &mut Connection,
    send: impl FnOnce(&mut Connection) + Send,
    recv: impl FnOnce(&mut Connection) -> T,
) -> T {
    let mut sender = conn.try_clone().unwrap();
    std::thread::scope(|scope| {
        scope.spawn(move || send(&mut sender));
        recv(conn)
    })
}

#[test]
fn every_bulk_type_round_trips_through_another_process() {
    let _watchdog = Watchdog::start("bulk round trips", LIMIT);
    let (mut conn, child_end) = pipe().unwrap();
    let mut child = spawn_peer("bulk-echo", child_end);

    let bytes: Vec<u8> = (0..6_000_003u32).map(|i| (i * 7 % 256) as u8).collect();
    let byte_buf = ByteBuf::from(bytes.clone());
    let echoed: ByteBuf = round_trip(
        &mut conn,
        |c| c.send(&byte_buf).unwrap(),
        |c| c.recv().unwrap(),
    );
    assert!(echoed == byte_buf, "ByteBuf changed on the way");

    let floats: Vec<f64> = (0..700_001).map(|i| f64::from(i) * -1.5 + 0.125).collect();
    let echoed = round_trip(
        &mut conn,
        |c| c.send_slice(&floats).unwrap(),
        |c| c.recv_vec::<f64>().unwrap(),
    );
    assert!(echoed == floats, "f64 slice changed on the way");

    let records = samples(300_001);
    let echoed = round_trip(
        &mut conn,
        |c| c.send_slice(&records).unwrap(),
        |c| c.recv_vec::<Sample>().unwrap(),
    );
    assert!(echoed == records, "Sample slice changed on the way");

    let echoed: Vec<u8> = round_trip(
        &mut conn,
        |c| c.send(&bytes).unwrap(),
        |c| c.recv().unwrap(),
    );
    assert!(echoed == bytes, "Vec<u8> changed on the way");

    let echoed: Vec<f64> = round_trip(
        &mut conn,
        |c| c.send(&floats).unwrap(),
        |c| c.recv().unwrap(),
    );
    assert!(echoed == floats, "Vec<f64> changed on the way");

    let strings: Vec<String> = (0..200_000).map(|i| format!("string number {i}")).collect();
    let echoed: Vec<String> = round_trip(
        &mut conn,
        |c| c.send(&strings).unwrap(),
        |c| c.recv().unwrap(),
    );
    assert!(echoed == strings, "Vec<String> changed on the way");

    let text: String = "déjà vu, ".repeat(300_000);
    let echoed: String = round_trip(&mut conn, |c| c.send(&text).unwrap(), |c| c.recv().unwrap());
    assert!(echoed == text, "String changed on the way");

    conn.send_bytes(&[1u8; 4099]).unwrap();
    assert_eq!(conn.recv::<String>().unwrap(), "Decode");
    conn.send_slice(&[7u32, 8, 9]).unwrap();
    assert_eq!(conn.recv_vec::<u32>().unwrap(), [7, 8, 9]);

    drop(conn);
    let status = wait_with_deadline(&mut child, LIMIT);
    assert!(status.success(), "pipe_peer bulk-echo: {status}");
}

/// Python's side: reads the doubles that `send_slice` sent with
/// `array.array('d', ...)`, sends back each doubled, and the same for a
/// message of int32s.
const PY_ARRAYS: &str = r#"
import array, os, sys
from multiprocessing.connection import Connection
conn = Connection(int(os.environ["PIPE_CONN"].split(":")[0]))
doubles = array.array("d", conn.recv_bytes())
conn.send_bytes(array.array("d", [2 * x for x in doubles]).tobytes())
ints = array.array("i", conn.recv_bytes())
conn.send_bytes(array.array("i", [x + 1 for x in ints]).tobytes())
conn.send_bytes(b"\x01\x02\x03")
"#;

#[test]
fn a_python_peer_reads_and_writes_slices_with_array_array() {
    let Some(py) = python3() else { return };
    let _watchdog = Watchdog::start("python arrays", LIMIT);
    let (mut conn, child_end) = pipe().unwrap();
    let mut command = Command::new(py);
    command.args(["-c", PY_ARRAYS]).stdin(Stdio::null());
    child_end.pass_to_child(&mut command, "PIPE_CONN").unwrap();
    let mut child = command.spawn().expect("spawn python3");
    drop(command);

    let doubles: Vec<f64> = (0..100_000).map(|i| f64::from(i) / 3.0).collect();
    let doubled = round_trip(
        &mut conn,
        |c| c.send_slice(&doubles).unwrap(),
        |c| c.recv_vec::<f64>().unwrap(),
    );
    let expected: Vec<f64> = doubles.iter().map(|x| 2.0 * x).collect();
    assert!(doubled == expected, "python's doubles differ");

    conn.send_slice(&[-5i32, 0, 41, i32::MAX - 1]).unwrap();
    assert_eq!(conn.recv_vec::<i32>().unwrap(), [-4, 1, 42, i32::MAX]);

    // Three bytes are not a whole f64: refused, and nothing is lost.
    let err = conn.recv_vec::<f64>().unwrap_err();
    assert_eq!(err.kind(), connection::ErrorKind::Decode, "{err}");
    let status = wait_with_deadline(&mut child, LIMIT);
    assert!(status.success(), "python3: {status}");
}
