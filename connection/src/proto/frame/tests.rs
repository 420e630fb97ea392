//! The framing core alone: bytes in, decisions out, no socket.

use super::*;

fn header_of(len: usize) -> Vec<u8> {
    let mut room = [0u8; HEADER_ROOM];
    let used = put_header(len, &mut room);
    room[HEADER_ROOM - used..].to_vec()
}

/// Feeds `bytes` to a decoder in the pieces `split` cuts, as reads that
/// each return what arrived. Returns the header, and checks that the
/// decoder never asked for more than the header's bytes.
fn decode_in_pieces(bytes: &[u8], splits: &[usize], shared: bool) -> Result<Header> {
    let mut decoder = HeaderDecoder::new(shared);
    let mut at = 0;
    let mut cuts = splits.iter().copied().chain([bytes.len()]);
    loop {
        let end = cuts.next().expect("the header ended early");
        while at < end {
            let room = decoder.unfilled();
            assert!(at + room.len() <= bytes.len(), "asked past the header");
            let n = room.len().min(end - at);
            room[..n].copy_from_slice(&bytes[at..at + n]);
            at += n;
            if let Some(header) = decoder.received(n)? {
                assert_eq!(at, bytes.len(), "the header ended before its bytes");
                return Ok(header);
            }
        }
    }
}

#[test]
fn short_header_matches_cpython() {
    // struct.pack("!i", 9)
    assert_eq!(header_of(9), [0, 0, 0, 9]);
    assert_eq!(header_of(SHORT_FORM_MAX), [0x7f, 0xff, 0xff, 0xff]);
}

#[test]
fn long_header_matches_cpython() {
    // struct.pack("!i", -1) + struct.pack("!Q", 2**31)
    assert_eq!(
        header_of(1 << 31),
        [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x80, 0, 0, 0]
    );
}

#[test]
fn headers_round_trip_at_the_two_gib_boundary() {
    let lens = [
        0,
        1,
        SHORT_FORM_MAX - 1,
        SHORT_FORM_MAX,
        1 << 31,
        (1 << 31) + 1,
    ];
    for len in lens
        .into_iter()
        .chain([u32::MAX as usize, 1 << 40, usize::MAX])
    {
        let bytes = header_of(len);
        let form = if len < 1 << 31 { 4 } else { 12 };
        assert_eq!(bytes.len(), form, "{len}");
        let header = decode_in_pieces(&bytes, &[], false).unwrap();
        assert_eq!(header, Header::Stream(len as u64), "{len}");
    }
}

#[test]
fn a_header_split_at_every_byte_decodes_the_same() {
    let cases = [
        (header_of(77), false, Header::Stream(77)),
        (header_of(3 << 31), false, Header::Stream(3 << 31)),
        (shared_header(5 << 20), true, Header::Shared(5 << 20)),
        (
            recycled_header(9 << 20, 42),
            true,
            Header::Recycled {
                len: 9 << 20,
                generation: 42,
            },
        ),
    ];
    for (bytes, shared, expected) in cases {
        for cut in 0..=bytes.len() {
            let header = decode_in_pieces(&bytes, &[cut], shared).unwrap();
            assert_eq!(header, expected, "cut at {cut}");
        }
        let every_byte: Vec<usize> = (1..bytes.len()).collect();
        assert_eq!(
            decode_in_pieces(&bytes, &every_byte, shared).unwrap(),
            expected
        );
    }
}

#[test]
fn the_decoder_starts_over_after_each_header() {
    let mut decoder = HeaderDecoder::new(false);
    for len in [3usize, 1 << 33, 0] {
        let bytes = header_of(len);
        let mut got = None;
        for &byte in &bytes {
            decoder.unfilled()[0] = byte;
            got = decoder.received(1).unwrap();
        }
        assert_eq!(got, Some(Header::Stream(len as u64)));
        assert!(!decoder.is_started());
    }
}

#[test]
fn marker_lengths_are_protocol_errors_unless_agreed() {
    for marker in [SHARED_MARKER, RECYCLED_MARKER, -5, i32::MIN] {
        let err = decode_in_pieces(&marker.to_be_bytes(), &[], false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol, "{marker}");
    }
    let err = decode_in_pieces(&(-4i32).to_be_bytes(), &[], true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol);
}

#[test]
fn a_stream_ending_inside_a_header_is_truncated_and_between_is_eof() {
    let recycled = recycled_header(1, 2);
    for (bytes, shared) in [
        (header_of(5), false),
        (header_of(1 << 31), false),
        (recycled, true),
    ] {
        for cut in 0..bytes.len() {
            let mut decoder = HeaderDecoder::new(shared);
            let mut at = 0;
            while at < cut {
                let room = decoder.unfilled();
                let n = room.len().min(cut - at);
                room[..n].copy_from_slice(&bytes[at..at + n]);
                assert_eq!(decoder.received(n).unwrap(), None);
                at += n;
            }
            let err = decoder.end_of_stream();
            if cut == 0 {
                assert_eq!(err.kind(), ErrorKind::Eof);
                continue;
            }
            assert_eq!(err.kind(), ErrorKind::Truncated, "{cut}");
            // Until its first four bytes are in, a header is four bytes long.
            let whole = if cut < 4 { 4 } else { bytes.len() };
            let closed = format!("expected {whole} bytes, the other end closed after {cut}");
            assert!(err.to_string().contains(&closed), "{cut}: {err}");
        }
    }
}

#[test]
fn limits_refuse_a_header_before_anything_is_set_aside() {
    let err = too_large(9, 8, 8);
    assert_eq!(err.kind(), ErrorKind::MessageTooLarge);
    assert!(err.to_string().contains("max_message_size of 8"), "{err}");
    assert!(too_large(9, 4, 8)
        .to_string()
        .contains("caller's limit of 4"));
    // The first read of a payload, however large its header claims it is,
    // sets aside one chunk.
    for claimed in [MIN_CHUNK + 1, 1 << 30, 1 << 40, usize::MAX] {
        assert_eq!(Payload::new(claimed, 0).chunk(), MIN_CHUNK, "{claimed}");
    }
    assert_eq!(Payload::new(10, 0).chunk(), 10);
}

#[test]
fn payload_room_grows_with_what_arrived_never_to_what_was_claimed() {
    let claimed = 1usize << 40;
    let mut payload = Payload::new(claimed, 0);
    let mut set_aside = 0;
    while payload.got() < 100 * MAX_CHUNK {
        let chunk = payload.chunk();
        assert!(chunk <= payload.got().clamp(MIN_CHUNK, MAX_CHUNK));
        set_aside = payload.got() + chunk;
        // The peer sends a third of what was set aside each time.
        payload.arrived(chunk / 3 + 1).unwrap();
    }
    assert!(set_aside <= payload.got() + MAX_CHUNK, "{set_aside}");
    let err = payload.arrived(0).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Truncated);
    let closed = format!(
        "expected {claimed} bytes, the other end closed after {}",
        payload.got()
    );
    assert!(err.to_string().contains(&closed), "{err}");
}

#[test]
fn a_payload_completes_at_its_length() {
    let mut payload = Payload::new(5, 2);
    assert!(!payload.is_complete());
    assert_eq!(payload.chunk(), 3);
    payload.arrived(3).unwrap();
    assert!(payload.is_complete());
    assert_eq!(payload.chunk(), 0);
}

#[test]
fn a_send_plan_gives_header_and_payload_as_slices_and_resumes_anywhere() {
    let payload: Vec<u8> = (0..SMALL_MESSAGE as u32 + 9).map(|i| i as u8).collect();
    let mut whole = header_of(payload.len());
    whole.extend_from_slice(&payload);
    for gone in [0, 1, 3, 4, 5, whole.len() - 1, whole.len()] {
        let mut plan = SendPlan::message(&payload);
        assert_eq!(plan.slices().len(), 2);
        plan.advance(gone);
        assert_eq!(plan.sent(), gone);
        assert_eq!(plan.unsent(), whole[gone..], "{gone}");
        assert_eq!(plan.is_done(), gone == whole.len());
        assert_eq!(plan.slices().len(), if gone < 4 { 2 } else { 1 });
    }
}

#[test]
fn a_small_message_is_joined_into_one_slice_a_large_one_is_not_copied() {
    let mut scratch = Vec::new();
    let plan = SendPlan::joined(b"thank you", &mut scratch);
    assert_eq!(plan.slices().len(), 1);
    assert_eq!(plan.unsent(), b"\0\0\0\x09thank you");
    let large = vec![7u8; SMALL_MESSAGE + 1];
    let mut scratch = Vec::new();
    let plan = SendPlan::joined(&large, &mut scratch);
    assert_eq!(plan.slices().len(), 2);
    assert!(std::ptr::eq(plan.slices()[1].as_ptr(), large.as_ptr()));
    assert!(scratch.is_empty());
}

#[test]
fn framing_in_place_uses_the_room_in_front() {
    for len in [0usize, 3, 300] {
        let mut buf = vec![0u8; HEADER_ROOM + len];
        let start = frame_in_place(&mut buf);
        assert_eq!(buf[start..HEADER_ROOM], header_of(len));
    }
}
