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

/// Makes sure the machine has `count` free huge pages, raising
/// `/proc/sys/vm/nr_hugepages` (as root) if it has fewer; the guard puts
/// the old value back. `Err` says why there are none.
fn free_huge_pages(count: u64) -> Result<HugePagesGuard, String> {
    const KNOB: &str = "/proc/sys/vm/nr_hugepages";
    const FREE: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages";
    let read = |path: &str| -> Result<u64, String> {
        let text = std::fs::read_to_string(path).map_err(|err| format!("{path}: {err}"))?;
        text.trim().parse().map_err(|err| format!("{path}: {err}"))
    };
    let free = read(FREE)?;
    if free >= count {
        return Ok(HugePagesGuard(None));
    }
    let before = read(KNOB)?;
    let wanted = before + count - free;
    std::fs::write(KNOB, wanted.to_string())
        .map_err(|err| format!("{free} free huge pages, and {KNOB} cannot be raised: {err}"))?;
    let guard = HugePagesGuard(Some(before));
    match read(FREE)? {
        free if free >= count => Ok(guard),
        free => Err(format!(
            "{free} free huge pages even with {KNOB} raised to {wanted} (memory too fragmented?)"
        )),
    }
}

/// Puts back the number of huge pages found before a test raised it.
struct HugePagesGuard(Option<u64>);

impl Drop for HugePagesGuard {
    fn drop(&mut self) {
        if let Some(before) = self.0 {
            if let Err(err) = std::fs::write("/proc/sys/vm/nr_hugepages", before.to_string()) {
                eprintln!("could not put nr_hugepages back to {before}: {err}");
            }
        }
    }
}

/// A peer that sends a message in a memfd of huge pages (`MFD_HUGETLB`),
/// sealed or recyclable, has it refused as such; the connection goes on.
/// (Unrefused, such a memfd leaked the mappings of messages shorter than
/// a huge page, whose unmapping fails, and a recyclable one whose sender
/// punches a page out turned the receiver's read into SIGBUS once the
/// machine had no free huge page.) Where the machine has no huge page to
/// give, the test says so and returns.
#[test]
fn a_memfd_of_huge_pages_is_refused_and_the_connection_goes_on() {
    let _alone = ALONE.lock().unwrap_or_else(|poison| poison.into_inner());
    if !memfds_work() {
        return;
    }
    // The peer's two memfds may both be alive at once.
    let _huge_pages = match free_huge_pages(2) {
        Ok(guard) => guard,
        Err(why) => return report_skip(&why),
    };
    let _watchdog = Watchdog::start("huge pages", LIMIT);
    let (mut conn, child_end) = pipe().unwrap();
    let mut child = spawn("huge-pages", child_end);
    let status = conn.recv_bytes().unwrap();
    if status != b"ready" {
        report_skip(&String::from_utf8_lossy(&status));
        return assert!(wait_with_deadline(&mut child, LIMIT).success());
    }
    let received = connection::shared_memory_stats().received;
    for which in ["sealed", "recycled"] {
        let err = match conn.recv_bytes() {
            Ok(bytes) => panic!("the {which} one was accepted: {} bytes read", bytes.len()),
            Err(err) => err,
        };
        assert_eq!(err.kind(), ErrorKind::Decode, "{which}: {err}");
        let why = "the memfd is of huge pages (hugetlbfs, MFD_HUGETLB)";
        assert!(err.to_string().contains(why), "{which}: {err}");
        let next = conn.recv_bytes().unwrap();
        assert_eq!(next, format!("after the {which} one").as_bytes());
    }
    assert_eq!(connection::shared_memory_stats().received, received);
    drop(conn);
    assert!(wait_with_deadline(&mut child, LIMIT).success());
}
