//! Shared memory between two processes: a child (`shm_peer`,
//! src/bin/shm_peer.rs) holds its end of a `pipe()` through
//! `pass_to_child`/`from_env`, so both ends agreed to it; one test keeps
//! both ends in this process, to count what a sending end holds.
//!
//! Each test holds a [`Watchdog`]; nothing asserts on time. Descriptor
//! counts are of this whole test process, so the tests here take a lock:
//! no other test opens descriptors while one counts them.

use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::Duration;

use connection::{pipe, ErrorKind};
use integration_tests::{report_skip, wait_with_deadline, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);
const CONN_ENV: &str = "SHM_PEER_CONN";

/// Held by every test: the descriptor counts must not see another test's.
static ALONE: Mutex<()> = Mutex::new(());

fn pattern(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// The descriptors open in this process, with what they point to.
fn open_descriptors() -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            Some(format!(
                "{} -> {}",
                entry.file_name().to_string_lossy(),
                target.display()
            ))
        })
        .collect();
    fds.sort();
    fds
}

fn spawn(mode: &str, child_end: connection::Connection) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shm_peer"));
    command.arg(mode);
    child_end.pass_to_child(&mut command, CONN_ENV).unwrap();
    let child = command.spawn().expect("spawn shm_peer");
    drop(command);
    child
}

fn memfds_work() -> bool {
    match connection::SharedBuf::new(1) {
        Ok(_) => true,
        Err(err) => {
            report_skip(&format!(
                "memfd_create fails here ({err}): no shared memory to test"
            ));
            false
        }
    }
}

#[test]
fn a_sender_killed_mid_message_leaks_no_descriptor() {
    let _alone = ALONE.lock().unwrap_or_else(|poison| poison.into_inner());
    if !memfds_work() {
        return;
    }
    let _watchdog = Watchdog::start("killed sender", LIMIT);
    let (mut conn, child_end) = pipe().unwrap();
    let mut child = spawn("send-forever", child_end);
    let before = open_descriptors();
    let expected = pattern(64 << 20);
    let stats = connection::shared_memory_stats();
    for _ in 0..2 {
        let view = conn.recv_shared().unwrap();
        // Sent by send_bytes: a recyclable memfd, copied out, not mapped.
        assert!(!view.is_mapped());
        assert!(view[..] == expected[..]);
    }
    assert_eq!(
        connection::shared_memory_stats().received,
        stats.received + 2
    );
    // The child is now filling its next memfd: kill it there.
    child.kill().unwrap();
    wait_with_deadline(&mut child, LIMIT);
    // What it sent whole before it died still reads; then its end is gone.
    let end = loop {
        match conn.recv_bytes() {
            Ok(message) => assert!(message == expected),
            Err(err) => break err,
        }
    };
    assert!(
        matches!(end.kind(), ErrorKind::Eof | ErrorKind::Truncated),
        "{end}"
    );
    let after = open_descriptors();
    assert_eq!(before, after, "descriptors leaked");
    assert!(!after.iter().any(|fd| fd.contains("memfd:")), "{after:?}");
}

#[test]
fn without_memfd_create_the_sender_falls_back_to_the_socket() {
    let _alone = ALONE.lock().unwrap_or_else(|poison| poison.into_inner());
    let _watchdog = Watchdog::start("no memfd_create", LIMIT);
    let (mut conn, child_end) = pipe().unwrap();
    let mut child = spawn("no-memfd", child_end);
    let received = connection::shared_memory_stats().received;
    let expected = pattern(4 << 20);
    assert!(conn.recv_bytes().unwrap() == expected);
    assert!(conn.recv_bytes().unwrap() == expected);
    let (agreed, shared_buf, sent): (bool, String, u64) = conn.recv().unwrap();
    // The child had agreed, could not make a memfd (the filter worked),
    // and sent both messages through the socket.
    assert!(agreed);
    assert_eq!(shared_buf, "Some(Unsupported)");
    assert_eq!(sent, 0);
    assert_eq!(connection::shared_memory_stats().received, received);
    assert!(wait_with_deadline(&mut child, LIMIT).success());
    // This end still sends by memfd, and the child's end still accepts.
    assert!(conn.shared_memory());
}

/// The mappings of this process's memfds, from /proc/self/maps.
fn memfd_mappings() -> Vec<String> {
    std::fs::read_to_string("/proc/self/maps")
        .expect("/proc/self/maps")
        .lines()
        .filter(|line| line.contains("memfd:"))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_sending_end_releases_its_recycled_memfds_when_dropped() {
    let _alone = ALONE.lock().unwrap_or_else(|poison| poison.into_inner());
    if !memfds_work() {
        return;
    }
    let _watchdog = Watchdog::start("recycled memfds released", LIMIT);
    let before = open_descriptors();
    let (mut a, mut b) = pipe().unwrap();
    a.set_shared_memory_threshold(Some(1 << 20));
    let data = pattern(3 << 20);
    let sent = connection::shared_memory_stats().sent;
    // Three in flight at once: three memfds, each mapped by both ends.
    for _ in 0..3 {
        a.send_bytes(&data).unwrap();
    }
    for _ in 0..3 {
        assert!(b.recv_bytes().unwrap() == data);
    }
    assert_eq!(connection::shared_memory_stats().sent, sent + 3);
    // The sender's three writable mappings, and the receiver's three
    // read-only ones, kept to copy the next message in each memfd out of.
    let mappings = memfd_mappings();
    let writable = mappings
        .iter()
        .filter(|line| line.contains(" rw-s "))
        .count();
    let read_only = mappings
        .iter()
        .filter(|line| line.contains(" r--s "))
        .count();
    assert_eq!((writable, read_only), (3, 3), "{mappings:?}");
    drop(a);
    drop(b);
    assert_eq!(memfd_mappings(), Vec::<String>::new());
    assert_eq!(before, open_descriptors(), "descriptors leaked");
}
