//! The two ends of a pipe in two processes: the child is `pipe_peer`
//! (src/bin/pipe_peer.rs), started with exec, which rebuilds its end with
//! `Connection::from_env` after the parent passed it with
//! `Connection::pass_to_child`.
//!
//! Every test holds a [`Watchdog`], so a receive that never completes
//! fails the run instead of hanging it, and waits for children with
//! [`wait_with_deadline`]. Nothing asserts on time.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use connection::{pipe, Connection, ErrorKind};
use integration_tests::{process_alive, wait_with_deadline, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);
const CONN_ENV: &str = "PIPE_CONN";
const REPORT_ENV: &str = "PIPE_REPORT";

/// What `pipe_peer read-report` sends after each receive: outcome ("Ok" or
/// the error kind), the error text, peak resident and peak virtual memory
/// of the child in KiB.
type Report = (String, String, u64, u64);

/// A running `pipe_peer`, killed and reaped if the test fails before it
/// exits on its own.
struct Peer {
    child: Child,
}

impl Peer {
    fn spawn(mode: &str, arg: Option<&str>, conn: Connection, report: Option<Connection>) -> Peer {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pipe_peer"));
        command.arg(mode).args(arg);
        conn.pass_to_child(&mut command, CONN_ENV).unwrap();
        if let Some(report) = report {
            report.pass_to_child(&mut command, REPORT_ENV).unwrap();
        }
        let child = command.spawn().expect("spawn pipe_peer");
        // The command holds our copies of the child's ends; closing them
        // is what lets the child's exit read as end of file here.
        drop(command);
        Peer { child }
    }

    fn wait(&mut self) -> ExitStatus {
        wait_with_deadline(&mut self.child, LIMIT)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Bytes that differ from their neighbours at every offset, so a message
/// that arrived shifted, short or spliced does not compare equal.
fn pattern(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// Our end as a plain socket, to write bytes that `Connection` never would.
fn raw_socket(conn: Connection) -> UnixStream {
    UnixStream::from(OwnedFd::from(conn))
}

/// The 12-byte header that announces a payload of `len` bytes in the long form.
fn long_header(len: u64) -> Vec<u8> {
    let mut header = (-1i32).to_be_bytes().to_vec();
    header.extend_from_slice(&len.to_be_bytes());
    header
}

#[test]
fn documented_example_runs_between_two_processes() {
    let _watchdog = Watchdog::start("documented example", LIMIT);
    let (mut a, b) = pipe().unwrap();
    let mut peer = Peer::spawn("tour", None, b, None);

    // a.send([1, 'hello', None]); the child's b.recv() sends it back.
    a.send(&(1i64, "hello", None::<()>)).unwrap();
    let list: (i64, String, Option<()>) = a.recv().unwrap();
    assert_eq!(list, (1, "hello".to_string(), None));

    // b.send_bytes('thank you'); a.recv_bytes()
    assert_eq!(a.recv_bytes().unwrap(), b"thank you");

    // a.send_bytes(array('i', range(5))); count = b.recv_bytes_into(arr2)
    let arr1: Vec<u8> = (0..5i32).flat_map(i32::to_ne_bytes).collect();
    a.send_bytes(&arr1).unwrap();
    let (count, arr2): (u64, Vec<i32>) = a.recv().unwrap();
    assert_eq!(count, 5 * 4);
    assert_eq!(arr2, [0, 1, 2, 3, 4, 0, 0, 0, 0, 0]);

    // The child expects end of file once we close.
    drop(a);
    assert!(peer.wait().success());
}

#[test]
fn large_messages_cross_both_ways_intact() {
    let _watchdog = Watchdog::start("large messages", LIMIT);
    let (mut a, b) = pipe().unwrap();
    let mut peer = Peer::spawn("echo", None, b, None);
    let payload = pattern(40 << 20);

    a.send_bytes(&payload).unwrap();
    assert!(a.recv_bytes().unwrap() == payload, "40 MiB echo differs");

    a.send_bytes(&payload).unwrap();
    let mut buf = vec![0xAAu8; 8 + payload.len()];
    assert_eq!(a.recv_bytes_into(&mut buf, 8).unwrap(), payload.len());
    assert_eq!(buf[..8], [0xAA; 8], "bytes before the offset were touched");
    assert!(buf[8..] == payload[..], "40 MiB echo into a buffer differs");

    drop(a);
    assert!(peer.wait().success());
}

#[test]
fn recv_bytes_into_too_short_carries_the_whole_message_and_keeps_the_stream() {
    let _watchdog = Watchdog::start("buffer too short", LIMIT);
    let (mut a, b) = pipe().unwrap();
    let mut peer = Peer::spawn("echo", None, b, None);

    // Larger than the socket buffer, so it arrives in many reads.
    let message = pattern(3 << 20);
    a.send_bytes(&message).unwrap();
    let mut small = [0u8; 1024];
    let err = a.recv_bytes_into(&mut small, 0).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BufferTooShort);
    assert!(
        err.into_message().unwrap() == message,
        "carried message differs"
    );

    // The room is what lies after the offset.
    let mut buf = [0u8; 16];
    a.send_bytes(b"seven!!").unwrap();
    let err = a.recv_bytes_into(&mut buf, 10).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BufferTooShort);
    assert_eq!(err.into_message().unwrap(), b"seven!!");
    a.send_bytes(b"six!!!").unwrap();
    assert_eq!(a.recv_bytes_into(&mut buf, 10).unwrap(), 6);
    assert_eq!(&buf[10..], b"six!!!");
    assert_eq!(buf[..10], [0; 10]);

    drop(a);
    assert!(peer.wait().success());
}

#[test]
fn send_bytes_range_sends_exactly_the_range() {
    let _watchdog = Watchdog::start("send_bytes_range", LIMIT);
    let (mut a, b) = pipe().unwrap();
    let mut peer = Peer::spawn("echo", None, b, None);
    let data = b"0123456789";

    a.send_bytes_range(data, 3, Some(5)).unwrap();
    assert_eq!(a.recv_bytes().unwrap(), b"34567");
    a.send_bytes_range(data, 8, None).unwrap();
    assert_eq!(a.recv_bytes().unwrap(), b"89");
    a.send_bytes_range(data, 10, None).unwrap();
    assert_eq!(a.recv_bytes().unwrap(), b"");

    for (offset, size) in [(6, Some(5)), (11, None), (usize::MAX, Some(2))] {
        let err = a.send_bytes_range(data, offset, size).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{offset} {size:?}");
    }
    // The refused ranges sent nothing: the next echo is the next message.
    a.send_bytes(b"marker").unwrap();
    assert_eq!(a.recv_bytes().unwrap(), b"marker");

    // A range of a large buffer goes out without the rest of it.
    let big = pattern(20 << 20);
    a.send_bytes_range(&big, 1 << 20, Some(17 << 20)).unwrap();
    assert!(
        a.recv_bytes().unwrap() == big[1 << 20..18 << 20],
        "large range differs"
    );

    drop(a);
    assert!(peer.wait().success());
}

#[test]
fn writer_killed_mid_message_is_truncated_not_eof_and_stays_broken() {
    let _watchdog = Watchdog::start("killed writer", LIMIT);
    const SIZE: usize = 64 << 20;
    for how in ["recv_bytes", "recv_bytes_into", "recv"] {
        let (mut a, b) = pipe().unwrap();
        let mut peer = Peer::spawn("send-big", Some("64"), b, None);

        // Read the header alone: a limit of 0 refuses the message and
        // leaves it pending. Header and payload go out in one vectored
        // send, and the socket buffer holds a tiny fraction of 64 MiB, so
        // the child is now blocked inside that send until we read on.
        let err = a.recv_bytes_max(0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MessageTooLarge, "{err}");
        assert!(err.to_string().contains(&format!("{SIZE} bytes")), "{err}");
        assert!(
            process_alive(peer.child.id()),
            "the writer finished a send we never read"
        );

        peer.child.kill().unwrap();
        assert_eq!(peer.wait().signal(), Some(libc::SIGKILL));

        let err = match how {
            "recv_bytes" => a.recv_bytes().unwrap_err(),
            "recv_bytes_into" => a.recv_bytes_into(&mut vec![0u8; SIZE], 0).unwrap_err(),
            _ => a.recv::<Vec<u8>>().unwrap_err(),
        };
        assert_eq!(err.kind(), ErrorKind::Truncated, "{how}: {err}");
        assert!(
            err.to_string().contains(&format!("expected {SIZE} bytes")),
            "{how}: {err}"
        );

        // The message boundary is lost for good: every later receive says
        // so, rather than reading the tail as a new header or calling it a
        // clean end of file.
        assert_eq!(a.recv_bytes().unwrap_err().kind(), ErrorKind::Truncated);
        assert_eq!(a.recv::<u8>().unwrap_err().kind(), ErrorKind::Truncated);
        let mut buf = [0u8; 16];
        assert_eq!(
            a.recv_bytes_into(&mut buf, 0).unwrap_err().kind(),
            ErrorKind::Truncated
        );
        assert!(
            a.poll(Some(Duration::ZERO)).unwrap(),
            "the error is ready to be read"
        );
    }
}

#[test]
fn clean_exit_after_sending_gives_the_messages_then_eof() {
    let _watchdog = Watchdog::start("clean exit", LIMIT);
    let (mut a, b) = pipe().unwrap();
    let mut peer = Peer::spawn("send-then-exit", None, b, None);
    // Everything below is read from a peer that is already gone.
    assert!(peer.wait().success());

    assert_eq!(a.recv::<String>().unwrap(), "first");
    assert_eq!(a.recv_bytes().unwrap(), b"second");
    assert_eq!(a.recv::<u32>().unwrap(), 3);

    assert_eq!(a.recv_bytes().unwrap_err().kind(), ErrorKind::Eof);
    assert_eq!(a.recv_bytes().unwrap_err().kind(), ErrorKind::Eof);
    assert_eq!(a.recv::<u32>().unwrap_err().kind(), ErrorKind::Eof);
    let mut buf = [0u8; 8];
    assert_eq!(
        a.recv_bytes_into(&mut buf, 0).unwrap_err().kind(),
        ErrorKind::Eof
    );
    assert!(
        a.poll(Some(Duration::ZERO)).unwrap(),
        "end of file is ready to be read"
    );
    assert_eq!(a.send_bytes(b"anyone?").unwrap_err().kind(), ErrorKind::Eof);
}

#[test]
fn decode_error_leaves_the_next_message_readable_across_processes() {
    let _watchdog = Watchdog::start("decode error", LIMIT);

    // Child to parent: the child sends "first", b"second", 3u32.
    let (mut a, b) = pipe().unwrap();
    let mut peer = Peer::spawn("send-then-exit", None, b, None);
    assert_eq!(a.recv::<u32>().unwrap_err().kind(), ErrorKind::Decode);
    assert_eq!(a.recv::<u32>().unwrap_err().kind(), ErrorKind::Decode);
    assert_eq!(a.recv::<u32>().unwrap(), 3);
    assert_eq!(a.recv::<u32>().unwrap_err().kind(), ErrorKind::Eof);
    assert!(peer.wait().success());

    // Parent to child: the child receives (u32, String) and reports each.
    let (mut a, b) = pipe().unwrap();
    let mut peer = Peer::spawn("typed-echo", None, b, None);
    type Reply = Result<(u32, String), String>;
    a.send(&(7u32, "seven")).unwrap();
    assert_eq!(a.recv::<Reply>().unwrap(), Ok((7, "seven".to_string())));
    a.send("just a string").unwrap();
    assert_eq!(a.recv::<Reply>().unwrap(), Err("Decode".to_string()));
    a.send(&(1u32, "one", 0xFFu8)).unwrap();
    assert_eq!(a.recv::<Reply>().unwrap(), Err("Decode".to_string()));
    a.send_bytes(b"").unwrap();
    assert_eq!(a.recv::<Reply>().unwrap(), Err("Decode".to_string()));
    a.send(&(8u32, "eight")).unwrap();
    assert_eq!(a.recv::<Reply>().unwrap(), Ok((8, "eight".to_string())));
    drop(a);
    assert!(peer.wait().success());
}

/// Peak virtual memory allowed to a `read-report` child. A Rust program
/// this small peaks at a few tens of MiB; reserving anything near what the
/// headers below claim (4 GiB, 1 TiB) would show here or abort the child.
const PEAK_KIB: u64 = 512 << 10;

#[test]
fn oversized_header_is_refused_from_the_header_alone() {
    let _watchdog = Watchdog::start("oversized header", LIMIT);
    let (a, b) = pipe().unwrap();
    let (mut report, report_child) = pipe().unwrap();
    // Default max_message_size: 1 GiB.
    let mut peer = Peer::spawn("read-report", None, b, Some(report_child));
    let mut raw = raw_socket(a);

    raw.write_all(b"\0\0\0\x04fine").unwrap();
    let (outcome, text, _, _) = report.recv::<Report>().unwrap();
    assert_eq!((outcome.as_str(), text.as_str()), ("Ok", "4 bytes"));

    // A 4 GiB header and nothing after it, with our end kept open: the
    // receiver can only answer by refusing the header itself, not by
    // waiting for a payload that never comes.
    raw.write_all(&long_header(4 << 30)).unwrap();
    let (outcome, text, _, peak_kib) = report.recv::<Report>().unwrap();
    assert_eq!(outcome, "MessageTooLarge", "{text}");
    assert!(text.contains("4294967296"), "{text}");
    assert!(
        peak_kib < PEAK_KIB,
        "child peaked at {peak_kib} KiB of virtual memory"
    );

    drop(raw);
    assert!(peer.wait().success());
}

#[test]
fn huge_claimed_length_allocates_only_as_bytes_arrive() {
    let _watchdog = Watchdog::start("huge claimed length", LIMIT);
    let (a, b) = pipe().unwrap();
    let (mut report, report_child) = pipe().unwrap();
    // The limit is lifted, so the 1 TiB header is accepted and the child
    // starts reading a payload that will never be complete.
    let mut peer = Peer::spawn("read-report", Some("max"), b, Some(report_child));
    let mut raw = raw_socket(a);

    raw.write_all(&long_header(1 << 40)).unwrap();
    raw.write_all(&pattern(3 << 20)).unwrap();
    drop(raw);

    let (outcome, text, hwm_kib, peak_kib) = report.recv::<Report>().unwrap();
    assert_eq!(outcome, "Truncated", "{text}");
    assert!(text.contains(&format!("after {}", 3 << 20)), "{text}");
    assert!(
        peak_kib < PEAK_KIB,
        "child peaked at {peak_kib} KiB of virtual memory"
    );
    assert!(hwm_kib < PEAK_KIB, "child peaked at {hwm_kib} KiB resident");
    assert!(peer.wait().success());
}

#[test]
fn poll_interrupted_by_a_real_signal_is_reported_not_retried() {
    let _watchdog = Watchdog::start("poll and signals", LIMIT);
    for (name, signal) in [("INT", libc::SIGINT), ("USR1", libc::SIGUSR1)] {
        let (mut a, b) = pipe().unwrap();
        let mut peer = Peer::spawn("poll-signal", Some(name), b, None);
        assert_eq!(a.recv::<String>().unwrap(), "ready", "SIG{name}");

        // A signal that lands before the child is inside poll only runs
        // its handler; poll then waits on, and the next signal is the one
        // that interrupts it. So keep signalling until the child reports.
        // If poll swallowed interruptions, no report would ever come.
        let pid = libc::pid_t::try_from(peer.child.id()).unwrap();
        let mut sent = 0;
        loop {
            // SAFETY: kill(2) touches no memory of ours; `pid` is our own
            // child, not yet reaped, so the pid cannot have been reused.
            let rc = unsafe { libc::kill(pid, signal) };
            assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
            sent += 1;
            if a.poll(Some(Duration::from_millis(20))).unwrap() {
                break;
            }
            assert!(sent < 2_000, "SIG{name}: no report after {sent} signals");
        }
        let (outcome, caught): (String, bool) = a.recv().unwrap();
        assert_eq!(outcome, "Interrupted", "SIG{name}");
        assert!(caught, "SIG{name}: poll returned before the handler ran");

        // The interruption cost nothing: the connection still works.
        a.send_bytes(b"still there").unwrap();
        assert_eq!(a.recv_bytes().unwrap(), b"still there");
        assert!(peer.wait().success(), "SIG{name}");
    }
}
