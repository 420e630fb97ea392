use std::io::{IoSlice, Read};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

use super::*;
use crate::pipe::pipe;
use crate::sys::Socket;
use crate::Connection;

/// The threshold these tests set, and a size above it.
const THRESHOLD: usize = 1 << 20;
const BIG: usize = THRESHOLD + 12_345;

/// Bytes that differ from their neighbours, so a shifted or spliced
/// message does not compare equal.
fn pattern(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// The sending end of `pipe()` as a raw socket that can forge messages,
/// and the receiving `Connection`.
fn forger() -> (Socket, Connection) {
    let (a, b) = shared_pipe();
    (Socket::from_owned(OwnedFd::from(a)), b)
}

/// `pipe()`, its ends sending payloads from [`THRESHOLD`] up as shared memory.
fn shared_pipe() -> (Connection, Connection) {
    let (mut a, mut b) = pipe().unwrap();
    a.set_shared_memory_threshold(Some(THRESHOLD));
    b.set_shared_memory_threshold(Some(THRESHOLD));
    (a, b)
}

/// Sends a shared-memory header announcing `len` bytes with `fds` attached.
fn forge(socket: &Socket, len: u64, fds: &[BorrowedFd<'_>]) {
    let mut header = (-2i32).to_be_bytes().to_vec();
    header.extend_from_slice(&len.to_be_bytes());
    send_with_fds(socket, &header, fds);
}

/// Sends `header` with `fds` attached, in one `sendmsg`.
fn send_with_fds(socket: &Socket, header: &[u8], fds: &[BorrowedFd<'_>]) {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
    }
    let sent = rustix::net::sendmsg(
        socket.fd(),
        &[IoSlice::new(header)],
        &mut control,
        SendFlags::empty(),
    )
    .unwrap();
    assert_eq!(sent, header.len());
}

/// A forged message that must be refused: what it is, the descriptors
/// that come with it, and what the error must say.
type Forgery<'a> = (&'a str, Vec<BorrowedFd<'a>>, &'a str);

/// Sends each forgery with `forge`, followed by an ordinary message, and
/// checks that the forgery is refused with `Decode` and the ordinary
/// message then reads. Returns the raw sender and the receiver.
fn assert_each_refused(
    cases: Vec<Forgery<'_>>,
    forge: impl Fn(&Socket, &[BorrowedFd<'_>]),
) -> (Socket, Connection) {
    let (socket, mut conn) = forger();
    for (what, fds, why) in cases {
        forge(&socket, &fds);
        plain(&socket, what.as_bytes());
        let err = conn.recv_bytes().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode, "{what}: {err}");
        assert!(err.to_string().contains(why), "{what}: {err}");
        assert!(err.to_string().contains("refused a shared-memory"), "{err}");
        assert_eq!(conn.recv_bytes().unwrap(), what.as_bytes(), "after {what}");
    }
    (socket, conn)
}

/// An ordinary message, written on the raw socket.
fn plain(socket: &Socket, payload: &[u8]) {
    let mut message = (payload.len() as i32).to_be_bytes().to_vec();
    message.extend_from_slice(payload);
    socket.write(&message).unwrap();
}

fn memfd_with(bytes: &[u8], seals: SealFlags) -> OwnedFd {
    let fd =
        rustix::fs::memfd_create("test", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).unwrap();
    rustix::io::pwrite(&fd, bytes, 0).unwrap();
    rustix::fs::fcntl_add_seals(&fd, seals).unwrap();
    fd
}

const SEALED: SealFlags = SealFlags::WRITE
    .union(SealFlags::GROW)
    .union(SealFlags::SHRINK);

/// The read end of a pipe and the write end, to send as a forged
/// descriptor: once every copy of the write end is closed, reading the read
/// end gives end of file. That is how a test sees that the receiver closed
/// the copy it was sent.
fn os_pipe() -> (std::fs::File, OwnedFd) {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    (std::fs::File::from(read), write)
}

fn assert_closed_by_receiver(mut read_end: std::fs::File) {
    let mut rest = Vec::new();
    // Returns (end of file) only once no write end is open anywhere.
    read_end.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

fn memfds_work() -> bool {
    match crate::sys::shm::create() {
        Ok(_) => true,
        Err(err) => {
            eprintln!("skipped: memfd_create fails here ({err})");
            false
        }
    }
}

#[test]
fn large_messages_between_pipe_ends_travel_as_shared_memory() {
    if !memfds_work() {
        return;
    }
    let (mut a, mut b) = shared_pipe();
    assert!(a.shared_memory() && b.shared_memory());
    let data = pattern(BIG);
    let before = shared_memory_stats();
    a.send_bytes(&data).unwrap();
    a.send_bytes(b"small").unwrap();
    a.send(&data).unwrap();
    a.send_bytes_range(&data, 1, None).unwrap();
    assert_eq!(b.recv_bytes().unwrap(), data);
    assert_eq!(b.recv_bytes().unwrap(), b"small");
    assert_eq!(b.recv::<Vec<u8>>().unwrap(), data);
    let mut into = vec![0u8; BIG + 7];
    assert_eq!(b.recv_bytes_into(&mut into, 7).unwrap(), BIG - 1);
    assert_eq!(&into[7..BIG + 6], &data[1..]);
    let after = shared_memory_stats();
    // Other tests run meanwhile; these three are ours at least.
    assert!(after.sent >= before.sent + 3, "{before:?} {after:?}");
    assert!(
        after.received >= before.received + 3,
        "{before:?} {after:?}"
    );
}

/// The typed receives read a shared-memory payload from the memfd: the
/// `Pod` slices, a payload that is one byte string (`ByteBuf`), a value
/// whose encoding passes the streaming size, and a pickle.
#[test]
fn typed_receives_take_shared_memory_payloads() {
    if !memfds_work() {
        return;
    }
    let (mut a, mut b) = shared_pipe();
    let floats: Vec<f64> = (0..BIG / 8).map(|i| i as f64 * 0.5).collect();
    let bytes = serde_bytes::ByteBuf::from(pattern(BIG));
    let words: Vec<u64> = (0..BIG as u64 / 4).collect();
    let before = shared_memory_stats();
    a.send_slice(&floats).unwrap();
    a.send_slice(&floats).unwrap();
    a.send(&bytes).unwrap();
    a.send(&words).unwrap();
    a.send_pickle(&bytes).unwrap();
    a.send_bytes(&[1, 2, 3]).unwrap(); // not a whole number of u64s, through the socket
    a.send_bytes(&pattern(BIG + 1)).unwrap(); // nor this, as shared memory
    assert_eq!(b.recv_vec::<f64>().unwrap(), floats);
    let mut into = vec![0f64; floats.len() + 1];
    assert_eq!(b.recv_into_slice(&mut into).unwrap(), floats.len());
    assert_eq!(into[..floats.len()], floats[..]);
    assert_eq!(b.recv::<serde_bytes::ByteBuf>().unwrap(), bytes);
    assert_eq!(b.recv::<Vec<u64>>().unwrap(), words);
    assert_eq!(b.recv_pickle::<serde_bytes::ByteBuf>().unwrap(), bytes);
    assert_eq!(b.recv_vec::<u64>().unwrap_err().kind(), ErrorKind::Decode);
    assert_eq!(b.recv_vec::<u64>().unwrap_err().kind(), ErrorKind::Decode);
    a.send_bytes(b"still usable").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"still usable");
    let after = shared_memory_stats();
    assert!(
        after.received >= before.received + 6,
        "{before:?} {after:?}"
    );
}

#[test]
fn one_way_pipes_and_clones_keep_the_setting() {
    if !memfds_work() {
        return;
    }
    let (mut reader, mut writer) = crate::pipe::one_way_pipe().unwrap();
    writer.set_shared_memory_threshold(Some(THRESHOLD));
    let mut writer = writer.try_clone().unwrap();
    let data = pattern(BIG);
    let before = shared_memory_stats();
    writer.send_bytes(&data).unwrap();
    assert!(shared_memory_stats().sent > before.sent);
    let view = reader.recv_shared().unwrap();
    // A recyclable memfd is copied out, never mapped.
    assert!(!view.is_mapped());
    assert_eq!(view.into_vec(), data);
}

#[test]
fn shared_buf_arrives_as_a_view_of_the_same_bytes() {
    if !memfds_work() {
        return;
    }
    let (mut a, mut b) = shared_pipe();
    let data = pattern(3 * BIG);
    let mut buf = SharedBuf::new(data.len()).unwrap();
    assert!(buf.iter().all(|&byte| byte == 0));
    buf.copy_from_slice(&data);
    a.send_shared(buf).unwrap();
    // Small SharedBufs go by descriptor too: the caller asked for it.
    let mut small = SharedBuf::new(5).unwrap();
    small.copy_from_slice(b"tiny!");
    a.send_shared(small).unwrap();
    a.send_bytes(b"socket").unwrap();
    let view = b.recv_shared().unwrap();
    assert!(view.is_mapped());
    assert_eq!(&view[..], &data[..]);
    let tiny = b.recv_shared().unwrap();
    assert!(tiny.is_mapped());
    assert_eq!(&tiny[..], b"tiny!");
    let owned = b.recv_shared().unwrap();
    assert!(!owned.is_mapped());
    assert_eq!(owned.into_vec(), b"socket");
    // The view outlives the sender.
    drop(a);
    assert_eq!(view.into_vec(), data);
}

#[test]
fn an_empty_shared_buf_round_trips() {
    if !memfds_work() {
        return;
    }
    let (mut a, mut b) = shared_pipe();
    a.send_shared(SharedBuf::new(0).unwrap()).unwrap();
    assert!(b.recv_shared().unwrap().is_empty());
}

#[test]
fn ends_that_did_not_agree_use_the_socket() {
    if !memfds_work() {
        return;
    }
    let (mut a, mut b) = shared_pipe();
    a.set_shared_memory(false).unwrap();
    b.set_shared_memory(false).unwrap();
    let data = pattern(BIG);
    let expected = data.clone();
    // Through the socket, which holds less than a message: a thread sends.
    let sender = std::thread::spawn(move || {
        a.send_bytes(&data).unwrap();
        let mut buf = SharedBuf::new(BIG).unwrap();
        buf.copy_from_slice(&data);
        a.send_shared(buf).unwrap();
    });
    let view = b.recv_shared().unwrap();
    assert!(!view.is_mapped());
    assert_eq!(&view[..], &expected[..]);
    assert_eq!(b.recv_bytes().unwrap(), expected);
    sender.join().unwrap();
}

#[test]
fn a_shared_memory_message_to_an_end_that_did_not_agree_is_a_protocol_error() {
    if !memfds_work() {
        return;
    }
    let (mut a, mut b) = shared_pipe();
    b.set_shared_memory(false).unwrap();
    a.send_bytes(&pattern(BIG)).unwrap();
    let err = b.recv_bytes().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    assert!(err.to_string().contains("did not agree"), "{err}");
}

#[test]
fn forged_descriptors_are_refused_and_the_next_message_reads() {
    if !memfds_work() {
        return;
    }
    let len = BIG as u64;
    let data = pattern(BIG);
    let (pipe_read, pipe_write) = os_pipe();
    let file = tempfile_with(&data);
    let unsealed = memfd_with(&data, SealFlags::empty());
    let writable = memfd_with(&data, SealFlags::GROW | SealFlags::SHRINK);
    let short = memfd_with(&data[..BIG - 1], SEALED);
    let sparse = {
        let fd = rustix::fs::memfd_create("sparse", MemfdFlags::ALLOW_SEALING).unwrap();
        rustix::fs::ftruncate(&fd, len).unwrap();
        rustix::fs::fcntl_add_seals(&fd, SEALED).unwrap();
        fd
    };
    let good = memfd_with(&data, SEALED);
    let cases = vec![
        ("a pipe", vec![pipe_write.as_fd()], "not a memfd"),
        ("a regular file", vec![file.as_fd()], "not a memfd"),
        ("an unsealed memfd", vec![unsealed.as_fd()], "not sealed"),
        ("a writable memfd", vec![writable.as_fd()], "not sealed"),
        ("a short memfd", vec![short.as_fd()], "holds"),
        ("a sparse memfd", vec![sparse.as_fd()], "memory behind it"),
        ("no descriptor", vec![], "no descriptor"),
        (
            "two descriptors",
            vec![good.as_fd(), good.as_fd()],
            "2 descriptors",
        ),
    ];
    let (socket, mut conn) = assert_each_refused(cases, |socket, fds| forge(socket, len, fds));
    // The receiver closed the pipe's write end it was sent.
    drop(pipe_write);
    assert_closed_by_receiver(pipe_read);
    // And a good one, forged the same way, reads.
    forge(&socket, len, &[good.as_fd()]);
    assert_eq!(conn.recv_bytes().unwrap(), data);
}

#[test]
fn a_descriptor_sent_with_an_ordinary_message_is_closed() {
    let (pipe_read, pipe_write) = os_pipe();
    let (socket, mut conn) = forger();
    let message = (4i32)
        .to_be_bytes()
        .iter()
        .chain(b"data")
        .copied()
        .collect::<Vec<_>>();
    socket
        .send_with_fd(
            &[IoSlice::new(&message)],
            pipe_write.as_fd(),
            crate::sys::Wait::ForRoom,
        )
        .unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"data");
    drop(pipe_write);
    assert_closed_by_receiver(pipe_read);
}

#[test]
fn a_shared_message_over_the_limit_stays_pending() {
    if !memfds_work() {
        return;
    }
    let (mut a, mut b) = shared_pipe();
    let data = pattern(BIG);
    a.send_bytes(&data).unwrap();
    let err = b.recv_bytes_max(BIG - 1).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MessageTooLarge);
    let mut short = vec![0u8; 10];
    let err = b.recv_bytes_into(&mut short, 0).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BufferTooShort);
    assert_eq!(err.into_message().unwrap(), data);
    a.send_bytes(&data).unwrap();
    b.set_max_message_size(10);
    assert_eq!(
        b.recv_shared().unwrap_err().kind(),
        ErrorKind::MessageTooLarge
    );
    b.set_max_message_size(BIG as u64);
    assert_eq!(b.recv_bytes().unwrap(), data);
}

#[test]
fn try_send_holds_the_memfd_until_the_header_goes() {
    if !memfds_work() {
        return;
    }
    let (mut a, mut b) = shared_pipe();
    // Nobody reads: fill the socket with small messages.
    let mut sent = 0u32;
    let data = pattern(BIG);
    let rest = loop {
        match a.try_send_bytes(&sent.to_be_bytes()).unwrap() {
            None => sent += 1,
            Some(rest) => break rest,
        }
    };
    let mut sender = a.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        sender.send_unsent(rest).unwrap();
        // Still full, most likely: the header waits with its memfd.
        if let Some(unsent) = sender.try_send_bytes(&data).unwrap() {
            assert!(unsent.len() <= 20, "{}", unsent.len());
            sender.send_unsent(unsent).unwrap();
        }
        sender.send_bytes(b"last").unwrap();
    });
    for i in 0..=sent {
        assert_eq!(b.recv_bytes().unwrap(), i.to_be_bytes(), "message {i}");
    }
    assert_eq!(b.recv_bytes().unwrap(), pattern(BIG));
    assert_eq!(b.recv_bytes().unwrap(), b"last");
    writer.join().unwrap();
    // With room, a large message goes out whole: only its header is in
    // the socket.
    assert!(a.try_send_bytes(&pattern(BIG)).unwrap().is_none());
    assert_eq!(b.recv_bytes().unwrap(), pattern(BIG));
}

#[test]
fn without_a_threshold_copying_calls_use_the_socket() {
    if !memfds_work() {
        return;
    }
    let (mut a, mut b) = pipe().unwrap();
    a.set_shared_memory_threshold(None);
    let data = pattern(BIG);
    let expected = data.clone();
    let sender = std::thread::spawn(move || a.send_bytes(&data).unwrap());
    let view = b.recv_shared().unwrap();
    assert!(!view.is_mapped());
    assert_eq!(view.into_vec(), expected);
    sender.join().unwrap();
}

#[test]
fn shared_memory_needs_a_unix_socket() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let mut conn = Connection::from(OwnedFd::from(stream));
    assert!(!conn.shared_memory());
    let err = conn.set_shared_memory(true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(!conn.shared_memory());
    conn.set_shared_memory(false).unwrap();
}

/// A regular file holding `bytes`, already unlinked.
fn tempfile_with(bytes: &[u8]) -> std::fs::File {
    use std::io::Write;
    // Tests run side by side in one process: each file needs its own name.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("shm-forged-{}-{unique}", std::process::id()));
    let mut file = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    file.write_all(bytes).unwrap();
    file
}

#[test]
fn a_sender_gone_inside_a_shared_header_is_truncated_and_its_memfd_closed() {
    let (pipe_read, pipe_write) = os_pipe();
    let (socket, mut conn) = forger();
    // The first four bytes of a shared-memory header, with a descriptor,
    // and then the sender is gone.
    socket
        .send_with_fd(
            &[IoSlice::new(&(-2i32).to_be_bytes())],
            pipe_write.as_fd(),
            crate::sys::Wait::ForRoom,
        )
        .unwrap();
    drop(socket);
    let err = conn.recv_bytes().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Truncated, "{err}");
    drop(pipe_write);
    assert_closed_by_receiver(pipe_read);
}

#[test]
fn an_async_end_refuses_shared_memory_without_misreading_it() {
    if !memfds_work() {
        return;
    }
    let (mut a, b) = pipe().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut b = crate::tokio::AsyncConnection::from_blocking(b).unwrap();
        let mut buf = SharedBuf::new(16).unwrap();
        buf.fill(3);
        a.send_shared(buf).unwrap();
        let err = b.recv_bytes().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
        assert!(err.to_string().contains("did not agree"), "{err}");
    });
}

/// A shared-memory message left pending (over the limit) is not read
/// from the stream by an async end made from its end, which reads no memfds.
#[tokio::test]
async fn a_pending_shared_message_is_not_read_from_the_stream_by_an_async_end() {
    if !memfds_work() {
        return;
    }
    let (mut a, mut b) = pipe().unwrap();
    a.send_shared(SharedBuf::new(1 << 16).unwrap()).unwrap();
    b.set_max_message_size(10);
    let err = b.recv_shared().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MessageTooLarge);
    a.send_bytes(b"next").unwrap();
    let mut b = crate::tokio::AsyncConnection::from_blocking(b).unwrap();
    b.set_max_message_size(1 << 20);
    // Patience that only turns a hang into a failure.
    let received = tokio::time::timeout(std::time::Duration::from_secs(60), b.recv_bytes());
    assert_eq!(received.await.expect("hung").unwrap(), b"next");
}

// --- Recyclable memfds (the copying calls' path) ------------------------------

/// Sends a recycled-message header (`-3`, length, generation) with `fds`.
fn forge_recycled(socket: &Socket, len: u64, generation: u64, fds: &[BorrowedFd<'_>]) {
    send_with_fds(
        socket,
        &crate::proto::frame::recycled_header(len, generation),
        fds,
    );
}

/// A memfd laid out as a recyclable one: the generation `written` in its
/// header, `payload` after it, then `seals`.
fn recyclable_with(payload: &[u8], written: u64, seals: SealFlags) -> OwnedFd {
    let fd =
        rustix::fs::memfd_create("test", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).unwrap();
    shm::write_generation(fd.as_fd(), shm::SENT_GENERATION_AT, written).unwrap();
    shm::write_at(fd.as_fd(), payload, shm::RECYCLED_HEADER).unwrap();
    rustix::fs::fcntl_add_seals(&fd, seals).unwrap();
    fd
}

const RESIZE_SEALED: SealFlags = SealFlags::GROW.union(SealFlags::SHRINK);

#[test]
fn the_copying_calls_reuse_one_memfd_for_messages_read_in_turn() {
    if !memfds_work() {
        return;
    }
    let (mut a, mut b) = shared_pipe();
    let before = shared_memory_stats();
    for round in 0..5u8 {
        let mut data = pattern(BIG);
        data[0] = round;
        a.send_bytes(&data).unwrap();
        assert_eq!(b.recv_bytes().unwrap(), data, "round {round}");
        a.send(&data).unwrap();
        assert_eq!(b.recv::<Vec<u8>>().unwrap(), data, "round {round}");
    }
    assert_eq!(a.shared.recycler.len(), 1);
    let after = shared_memory_stats();
    assert!(after.sent >= before.sent + 10, "{before:?} {after:?}");
}

#[test]
fn messages_in_flight_take_other_memfds_up_to_the_bound_then_fresh_sealed_ones() {
    if !memfds_work() {
        return;
    }
    let (mut a, mut b) = shared_pipe();
    let messages: Vec<Vec<u8>> = (0..recycle::MAX_MEMFDS as u8 + 2)
        .map(|i| {
            let mut data = pattern(BIG);
            data[7] = i;
            data
        })
        .collect();
    // None is read yet: each in-flight message needs a memfd of its own,
    // and past the bound a fresh sealed one, so that the sender never
    // waits for its reader (one thread does both here).
    for data in &messages {
        a.send_bytes(data).unwrap();
    }
    assert_eq!(a.shared.recycler.len(), recycle::MAX_MEMFDS);
    for (i, data) in messages.iter().enumerate() {
        assert_eq!(&b.recv_bytes().unwrap(), data, "message {i}");
    }
    // All read: the same memfds carry the next ones.
    for data in &messages {
        a.send_bytes(data).unwrap();
        assert_eq!(&b.recv_bytes().unwrap(), data);
    }
    assert_eq!(a.shared.recycler.len(), recycle::MAX_MEMFDS);
}

/// A sender ahead of its reader waits for one of its memfds to come free
/// instead of paying for fresh memory, which its reader would then pay to
/// free as well and fall further behind.
#[test]
fn a_sender_ahead_of_its_reader_waits_for_a_recycled_memfd() {
    if !memfds_work() {
        return;
    }
    let (mut a, mut b) = shared_pipe();
    // However late the reader thread runs on a loaded machine.
    a.shared
        .recycler
        .set_least_patience(std::time::Duration::from_secs(60));
    let count = recycle::MAX_MEMFDS + 6;
    let reader = std::thread::spawn(move || {
        (0..count)
            .map(|_| {
                let view = b.recv_shared().unwrap();
                (view.is_mapped(), view.into_vec())
            })
            .collect::<Vec<_>>()
    });
    let messages: Vec<Vec<u8>> = (0..count as u8)
        .map(|i| {
            let mut data = pattern(BIG);
            data[9] = i;
            data
        })
        .collect();
    for data in &messages {
        a.send_bytes(data).unwrap();
    }
    let received = reader.join().unwrap();
    for (i, ((sealed, got), data)) in received.iter().zip(&messages).enumerate() {
        assert!(!sealed, "message {i} went in fresh sealed memory");
        assert_eq!(got, data, "message {i}");
    }
    assert_eq!(a.shared.recycler.len(), recycle::MAX_MEMFDS);
}

#[test]
fn a_recycled_message_is_copied_by_every_receive_and_marked_consumed() {
    if !memfds_work() {
        return;
    }
    let data = pattern(BIG);
    let generation = 77;
    let (socket, mut conn) = forger();
    let mut into = vec![0u8; BIG];
    for receive in ["recv_bytes", "recv_bytes_into", "recv_shared", "recv"] {
        let encoded = crate::codec::encode(&data).unwrap();
        let payload = if receive == "recv" { &encoded } else { &data };
        let memfd = recyclable_with(payload, generation, RESIZE_SEALED);
        forge_recycled(&socket, payload.len() as u64, generation, &[memfd.as_fd()]);
        let got = match receive {
            "recv_bytes" => conn.recv_bytes().unwrap(),
            "recv_bytes_into" => {
                let n = conn.recv_bytes_into(&mut into, 0).unwrap();
                into[..n].to_vec()
            }
            "recv_shared" => {
                let view = conn.recv_shared().unwrap();
                assert!(!view.is_mapped(), "a recyclable memfd is never mapped");
                view.into_vec()
            }
            _ => conn.recv::<Vec<u8>>().unwrap(),
        };
        assert_eq!(got, data, "{receive}");
        let consumed = shm::read_generation(memfd.as_fd(), shm::CONSUMED_GENERATION_AT).unwrap();
        assert_eq!(consumed, generation, "{receive}");
    }
}

#[test]
fn forged_recycled_messages_are_refused_and_the_next_message_reads() {
    if !memfds_work() {
        return;
    }
    let len = BIG as u64;
    let data = pattern(BIG);
    let generation = 5;
    let (pipe_read, pipe_write) = os_pipe();
    let file = tempfile_with(&data);
    let unsealed = recyclable_with(&data, generation, SealFlags::empty());
    let growable = recyclable_with(&data, generation, SealFlags::SHRINK);
    let short = recyclable_with(&data[..BIG - 1], generation, RESIZE_SEALED);
    let sparse = {
        let fd = rustix::fs::memfd_create("sparse", MemfdFlags::ALLOW_SEALING).unwrap();
        rustix::fs::ftruncate(&fd, shm::RECYCLED_HEADER + len).unwrap();
        shm::write_generation(fd.as_fd(), shm::SENT_GENERATION_AT, generation).unwrap();
        rustix::fs::fcntl_add_seals(&fd, RESIZE_SEALED).unwrap();
        fd
    };
    let stale = recyclable_with(&data, generation - 1, RESIZE_SEALED);
    let good = recyclable_with(&data, generation, RESIZE_SEALED);
    let cases = vec![
        ("a pipe", vec![pipe_write.as_fd()], "not a memfd"),
        ("a regular file", vec![file.as_fd()], "not a memfd"),
        ("an unsealed memfd", vec![unsealed.as_fd()], "not sealed"),
        ("a growable memfd", vec![growable.as_fd()], "not sealed"),
        ("a short memfd", vec![short.as_fd()], "holds"),
        ("a sparse memfd", vec![sparse.as_fd()], "memory behind it"),
        ("a lying generation", vec![stale.as_fd()], "generation 4"),
        ("no descriptor", vec![], "no descriptor"),
        (
            "two descriptors",
            vec![good.as_fd(), good.as_fd()],
            "2 descriptors",
        ),
    ];
    let (socket, mut conn) = assert_each_refused(cases, |socket, fds| {
        forge_recycled(socket, len, generation, fds)
    });
    // A refused memfd is not marked consumed: it was not read.
    let consumed = shm::read_generation(stale.as_fd(), shm::CONSUMED_GENERATION_AT).unwrap();
    assert_eq!(consumed, 0);
    drop(pipe_write);
    assert_closed_by_receiver(pipe_read);
    // A huge announced length is refused as short, not allocated.
    forge_recycled(&socket, u64::MAX - 1, generation, &[good.as_fd()]);
    let err = conn.recv_bytes().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode, "{err}");
    // And a good one, forged the same way, reads.
    let (socket, mut conn) = forger();
    forge_recycled(&socket, len, generation, &[good.as_fd()]);
    assert_eq!(conn.recv_bytes().unwrap(), data);
}

#[test]
fn a_recycled_message_to_an_end_that_did_not_agree_is_a_protocol_error() {
    if !memfds_work() {
        return;
    }
    let (socket, mut conn) = forger();
    conn.set_shared_memory(false).unwrap();
    let memfd = recyclable_with(b"abc", 1, RESIZE_SEALED);
    forge_recycled(&socket, 3, 1, &[memfd.as_fd()]);
    let err = conn.recv_bytes().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    assert!(err.to_string().contains("length -3"), "{err}");
    assert!(err.to_string().contains("did not agree"), "{err}");
}

#[test]
fn a_receiver_cannot_seal_a_recyclable_memfd_against_its_sender() {
    if !memfds_work() {
        return;
    }
    let memfd = shm::create_recyclable(4096).unwrap();
    let err = rustix::fs::fcntl_add_seals(&memfd, SealFlags::WRITE).unwrap_err();
    assert_eq!(err, rustix::io::Errno::PERM);
    // Nor resize it, which would turn the sender's writes into errors.
    assert!(rustix::fs::ftruncate(&memfd, 1).is_err());
    shm::write_at(memfd.as_fd(), b"still writable", shm::RECYCLED_HEADER).unwrap();
}

/// A racy view of `fd`, or `None` (said why) where this target has none.
fn racy_view(fd: BorrowedFd<'_>, len: usize) -> Option<RacyView> {
    match RacyView::map(fd, len) {
        Ok(view) => Some(view),
        Err(err) if err.kind() == std::io::ErrorKind::Unsupported => {
            eprintln!("skipped: no atomic loads on read-only memory on this target");
            None
        }
        Err(err) => panic!("map a racy view: {err}"),
    }
}

/// A receiver copies recycled payloads out of a kept mapping with atomic
/// loads: every start and length, aligned or not, copies the same bytes.
#[test]
fn racy_copies_out_of_a_mapping_match_at_every_alignment() {
    if !memfds_work() {
        return;
    }
    let data = pattern(4096 + 64);
    let memfd = memfd_with(&data, SealFlags::GROW | SealFlags::SHRINK);
    let Some(mapping) = racy_view(memfd.as_fd(), data.len()) else {
        return;
    };
    // Lengths past 64 bytes take the eight-words-a-step loop and its rest.
    for offset in 0..17 {
        for len in (0..40).chain(60..140) {
            let mut out = vec![0u8; len];
            mapping.copy_out_racy(offset, &mut out);
            assert_eq!(
                out[..],
                data[offset..offset + len],
                "offset {offset}, len {len}"
            );
        }
    }
    let mut out = vec![0u8; data.len() - 3];
    mapping.copy_out_racy(3, &mut out);
    assert_eq!(out[..], data[3..]);
}

/// Copies of 16 MiB and more store past the caches where the destination
/// is aligned, and as usual where it is not: both copy the same bytes.
#[test]
fn large_racy_copies_match_into_aligned_and_unaligned_buffers() {
    if !memfds_work() {
        return;
    }
    let data = pattern((16 << 20) + 4096 + 100);
    let memfd = memfd_with(&data, SealFlags::GROW | SealFlags::SHRINK);
    let Some(mapping) = racy_view(memfd.as_fd(), data.len()) else {
        return;
    };
    for (offset, shift) in [(0, 0), (8, 0), (3, 0), (0, 1), (5, 3)] {
        let len = data.len() - offset - 7;
        let mut out = vec![0u8; len + shift];
        mapping.copy_out_racy(offset, &mut out[shift..]);
        assert!(
            out[shift..] == data[offset..offset + len],
            "offset {offset}, destination shifted by {shift}"
        );
    }
}

// --- Memory that only looks like an ordinary, whole memfd ----------------------

/// A memfd of `len` bytes holding `data`'s bytes but for a hole of a
/// page in the middle (never written), with a page more than the hole
/// allocated past its end (`FALLOC_FL_KEEP_SIZE`), so that its block
/// count covers its size; then sealed with `seals`. `at` is where `data`
/// starts, after as many zeroes (a recyclable memfd's header page).
fn holed_with_blocks_past_the_end(data: &[u8], at: u64, seals: SealFlags) -> OwnedFd {
    let fd =
        rustix::fs::memfd_create("holed", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).unwrap();
    let size = at + data.len() as u64;
    rustix::fs::ftruncate(&fd, size).unwrap();
    let hole = (size / 2 / 4096 * 4096)..(size / 2 / 4096 * 4096 + 4096);
    let (before, after) = (hole.start - at, hole.end - at);
    shm::write_at(fd.as_fd(), &vec![0; at as usize], 0).unwrap();
    shm::write_at(fd.as_fd(), &data[..before as usize], at).unwrap();
    shm::write_at(fd.as_fd(), &data[after as usize..], hole.end).unwrap();
    rustix::fs::fallocate(&fd, rustix::fs::FallocateFlags::KEEP_SIZE, size, 8192).unwrap();
    let stat = rustix::fs::fstat(&fd).unwrap();
    assert!(
        stat.st_blocks as u64 * 512 >= size,
        "the block count covers the size"
    );
    let hole_at = rustix::fs::seek(&fd, rustix::fs::SeekFrom::Hole(0)).unwrap();
    assert_eq!(hole_at, hole.start, "the hole is where it was left");
    rustix::fs::fcntl_add_seals(&fd, seals).unwrap();
    fd
}

/// Pages allocated past a memfd's end count in its blocks but not in its
/// bytes: a hole inside the message is refused all the same, sealed or
/// recyclable, and the connection goes on.
#[test]
fn a_hole_hidden_by_pages_allocated_past_the_end_is_refused() {
    if !memfds_work() {
        return;
    }
    let len = BIG as u64;
    let data = pattern(BIG);
    let sealed = holed_with_blocks_past_the_end(&data, 0, SEALED);
    let cases = vec![("a sealed memfd", vec![sealed.as_fd()], "a hole at byte")];
    let (socket, mut conn) = assert_each_refused(cases, |socket, fds| forge(socket, len, fds));
    let generation = 9;
    let recyclable = holed_with_blocks_past_the_end(&data, shm::RECYCLED_HEADER, RESIZE_SEALED);
    shm::write_generation(recyclable.as_fd(), shm::SENT_GENERATION_AT, generation).unwrap();
    let cases = vec![(
        "a recyclable memfd",
        vec![recyclable.as_fd()],
        "a hole at byte",
    )];
    assert_each_refused(cases, |socket, fds| {
        forge_recycled(socket, len, generation, fds)
    });
    // A whole one, forged the same way, reads.
    forge(&socket, len, &[memfd_with(&data, SEALED).as_fd()]);
    assert!(conn.recv_bytes().unwrap() == data);
}

/// A buffer its owner writes only in part, or not at all, still goes:
/// its sender faulted in every page, so none is a hole.
#[test]
fn a_shared_buf_written_in_part_arrives_whole() {
    if !memfds_work() {
        return;
    }
    let (mut a, mut b) = shared_pipe();
    let mut buf = SharedBuf::new(3 * BIG).unwrap();
    buf[..5].copy_from_slice(b"start");
    a.send_shared(buf).unwrap();
    a.send_shared(SharedBuf::new(BIG).unwrap()).unwrap();
    let view = b.recv_shared().unwrap();
    assert!(view.is_mapped());
    assert_eq!(&view[..5], b"start");
    assert!(view[5..].iter().all(|&byte| byte == 0));
    let untouched = b.recv_shared().unwrap();
    assert_eq!(untouched.len(), BIG);
    assert!(untouched.iter().all(|&byte| byte == 0));
}

/// A recyclable memfd is checked for holes once per payload length its
/// receiver keeps it for: a later, longer message in it is checked over
/// the bytes it adds.
#[test]
fn a_longer_message_in_a_kept_memfd_is_checked_over_its_new_bytes() {
    if !memfds_work() {
        return;
    }
    let data = pattern(BIG);
    let fd =
        rustix::fs::memfd_create("grown", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).unwrap();
    rustix::fs::ftruncate(&fd, shm::RECYCLED_HEADER + 2 * BIG as u64).unwrap();
    shm::write_generation(fd.as_fd(), shm::SENT_GENERATION_AT, 1).unwrap();
    shm::write_at(fd.as_fd(), &data, shm::RECYCLED_HEADER).unwrap();
    rustix::fs::fcntl_add_seals(&fd, RESIZE_SEALED).unwrap();
    let (socket, mut conn) = forger();
    forge_recycled(&socket, BIG as u64, 1, &[fd.as_fd()]);
    assert!(conn.recv_bytes().unwrap() == data);
    // The same memfd, kept mapped, now announcing bytes never written.
    shm::write_generation(fd.as_fd(), shm::SENT_GENERATION_AT, 2).unwrap();
    forge_recycled(&socket, 2 * BIG as u64, 2, &[fd.as_fd()]);
    let err = conn.recv_bytes().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode, "{err}");
    assert!(err.to_string().contains("a hole at byte"), "{err}");
    forge_recycled(&socket, BIG as u64, 2, &[fd.as_fd()]);
    assert!(conn.recv_bytes().unwrap() == data);
}
