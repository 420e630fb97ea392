//! Arbitrary bytes on the wire: whatever a peer writes, a `Connection`
//! answers with whole messages or a clear error, and never panics, hangs
//! or makes a value out of a partial message.
//!
//! The writer is a plain socket on a thread of this process (the receiving
//! code is the same whoever writes; `pipe_processes.rs` covers real peer
//! processes).

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;

use connection::{pipe, Connection, ErrorKind};
use proptest::prelude::*;

/// Returns the receiving end and a thread that writes `bytes` raw into the
/// other end and then closes it. The thread lets inputs be larger than the
/// socket buffer without deadlocking against our reads.
fn feed(bytes: Vec<u8>) -> (Connection, JoinHandle<()>) {
    let (reader, writer) = pipe().unwrap();
    let mut writer = UnixStream::from(OwnedFd::from(writer));
    let thread = std::thread::spawn(move || {
        // The reader may stop early (a protocol error) and close: then the
        // rest of the input has nowhere to go, which is fine.
        let _ = writer.write_all(&bytes);
    });
    (reader, thread)
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Bytes,
    BytesMax(usize),
    Into { len: usize, offset: usize },
    Value,
    List,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Bytes),
        (0usize..64).prop_map(Op::BytesMax),
        (0usize..64, 0usize..72).prop_map(|(len, offset)| Op::Into { len, offset }),
        Just(Op::Value),
        Just(Op::List),
    ]
}

/// A header worth trying: small, at the edges of the short form, negative,
/// the long-form marker with a random or huge length.
fn header() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (0i32..64).prop_map(|n| n.to_be_bytes().to_vec()),
        any::<i32>().prop_map(|n| n.to_be_bytes().to_vec()),
        Just(i32::MAX.to_be_bytes().to_vec()),
        Just(i32::MIN.to_be_bytes().to_vec()),
        any::<u64>().prop_map(|n| {
            let mut h = (-1i32).to_be_bytes().to_vec();
            h.extend_from_slice(&n.to_be_bytes());
            h
        }),
        (0u64..64).prop_map(|n| {
            let mut h = (-1i32).to_be_bytes().to_vec();
            h.extend_from_slice(&n.to_be_bytes());
            h
        }),
    ]
}

/// What one receive gave: the message length, or the error kind.
fn run(conn: &mut Connection, op: Op) -> Result<usize, ErrorKind> {
    let result = match op {
        Op::Bytes => conn.recv_bytes().map(|m| m.len()),
        Op::BytesMax(max) => conn.recv_bytes_max(max).map(|m| {
            assert!(
                m.len() <= max,
                "recv_bytes_max({max}) returned {} bytes",
                m.len()
            );
            m.len()
        }),
        Op::Into { len, offset } => {
            let mut buf = vec![0u8; len];
            let result = conn.recv_bytes_into(&mut buf, offset);
            match &result {
                Ok(n) => assert!(offset + n <= len, "{n} bytes at {offset} in {len}"),
                Err(err) if err.kind() == ErrorKind::BufferTooShort => {
                    let message = err.message().expect("BufferTooShort carries the message");
                    assert!(
                        message.len() > len - offset,
                        "{} bytes did fit",
                        message.len()
                    );
                }
                Err(_) => {}
            }
            result
        }
        Op::Value => conn.recv::<(u32, String, Option<i64>)>().map(|_| 0),
        Op::List => conn.recv::<Vec<u64>>().map(|_| 0),
    };
    result.map_err(|err| err.kind())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Garbage in: only documented error kinds come out, and the terminal
    /// states stay terminal (a stream that lost its boundaries never yields
    /// a message again, end of file stays end of file).
    #[test]
    fn arbitrary_input_gives_messages_or_clear_errors(
        head in header(),
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        raised in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..24),
    ) {
        let mut input = head;
        input.extend_from_slice(&body);
        let total = input.len();
        let (mut conn, writer) = feed(input);
        if raised {
            conn.set_max_message_size(u64::MAX);
        }
        let mut consumed = 0usize;
        let mut terminal: Option<ErrorKind> = None;
        for op in ops {
            let outcome = run(&mut conn, op);
            if matches!(op, Op::Into { len, offset } if offset > len) {
                // Checked before anything is read, whatever the stream's state.
                prop_assert_eq!(outcome, Err(ErrorKind::InvalidInput));
                continue;
            }
            if let Some(kind) = terminal {
                prop_assert_eq!(outcome, Err(kind), "after {:?}", kind);
                continue;
            }
            match outcome {
                Ok(len) => consumed += 4 + len,
                Err(kind) => {
                    prop_assert!(
                        matches!(
                            kind,
                            ErrorKind::Eof
                                | ErrorKind::Truncated
                                | ErrorKind::Protocol
                                | ErrorKind::MessageTooLarge
                                | ErrorKind::BufferTooShort
                                | ErrorKind::Decode
                                | ErrorKind::InvalidInput
                        ),
                        "unexpected {:?}",
                        kind
                    );
                    if matches!(kind, ErrorKind::Eof | ErrorKind::Truncated | ErrorKind::Protocol) {
                        terminal = Some(kind);
                    }
                }
            }
            prop_assert!(consumed <= total, "{} bytes of messages from {} bytes", consumed, total);
        }
        drop(conn);
        writer.join().unwrap();
    }

    /// Well-formed messages cut off at any byte: every message that arrived
    /// whole comes out intact and in order; then end of file if the cut
    /// fell between messages, a truncation error if it fell inside one.
    #[test]
    fn cut_stream_yields_whole_messages_then_eof_or_truncated(
        messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
        cut_at in any::<proptest::sample::Index>(),
    ) {
        let mut stream = Vec::new();
        let mut ends = vec![0];
        for message in &messages {
            stream.extend_from_slice(&frame(message));
            ends.push(stream.len());
        }
        let cut = cut_at.index(stream.len() + 1);
        stream.truncate(cut);
        let whole = ends.iter().filter(|&&end| end <= cut).count() - 1;

        let (mut conn, writer) = feed(stream);
        for message in &messages[..whole] {
            prop_assert_eq!(&conn.recv_bytes().unwrap(), message);
        }
        let expected = if ends.contains(&cut) { ErrorKind::Eof } else { ErrorKind::Truncated };
        prop_assert_eq!(conn.recv_bytes().unwrap_err().kind(), expected);
        prop_assert_eq!(conn.recv_bytes().unwrap_err().kind(), expected);
        drop(conn);
        writer.join().unwrap();
    }
}
