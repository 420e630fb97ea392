//! The core alone: two handshakes talking with no sockets between them,
//! and one handed hostile messages.

use super::digest::{respond, CHALLENGE, FAILURE};
use super::*;

const KEY: &[u8] = b"core key";

fn nonce(role: Role) -> [u8; NONCE_LEN] {
    [role as u8 + 1; NONCE_LEN]
}

fn closed<'a>() -> Result<&'a [u8]> {
    Err(peer_closed(false))
}

/// Every message sent, with its sender: 0 the listener, 1 the client.
type Transcript = Vec<(usize, Vec<u8>)>;

/// A listener and a client with `keys` talk until both end; a peer that
/// ended is seen to close.
fn pair(keys: [&[u8]; 2], strict: bool) -> ([Result<()>; 2], Transcript) {
    let mut ends = [Role::Listener, Role::Client].map(|r| Handshake::new(r, strict, &nonce(r)));
    let (mut outcomes, mut read, mut transcript) = ([None, None], [0, 0], Vec::new());
    for _ in 0..20 {
        for i in 0..2 {
            match ends[i].next() {
                _ if outcomes[i].is_some() => {}
                Next::Send(message) | Next::Farewell(message) => {
                    transcript.push((i, message.to_vec()));
                    ends[i].sent(Ok(()));
                }
                Next::Receive { max } => {
                    assert_eq!(max, MAX_MESSAGE);
                    let mut unread = transcript.iter().enumerate().skip(read[i]);
                    if let Some((at, (_, message))) = unread.find(|(_, (from, _))| *from != i) {
                        read[i] = at + 1;
                        ends[i].received(keys[i], Ok(message));
                    } else if outcomes[1 - i].is_some() {
                        ends[i].received(keys[i], closed());
                    }
                }
                Next::Finished(outcome) => outcomes[i] = Some(outcome),
            }
        }
        if outcomes.iter().all(Option::is_some) {
            return (outcomes.map(Option::unwrap), transcript);
        }
    }
    panic!("the handshakes did not end: {transcript:?}");
}

/// Drives one end whose receives get `incoming` in turn, then end of
/// file: what it sent, and how it ended.
fn script(role: Role, strict: bool, incoming: &[&[u8]]) -> (Vec<Vec<u8>>, Result<()>) {
    let mut handshake = Handshake::new(role, strict, &nonce(role));
    let (mut incoming, mut sent) = (incoming.iter(), Vec::new());
    loop {
        match handshake.next() {
            Next::Send(message) | Next::Farewell(message) => {
                sent.push(message.to_vec());
                handshake.sent(Ok(()));
            }
            Next::Receive { .. } => handshake.received(
                KEY,
                incoming.next().copied().ok_or_else(|| peer_closed(false)),
            ),
            Next::Finished(outcome) => return (sent, outcome),
        }
    }
}

fn challenge_message(role: Role) -> Vec<u8> {
    [CHALLENGE, &digest::challenge(&nonce(role))].concat()
}

#[test]
fn listener_challenges_first_and_client_answers_first_in_cpythons_order() {
    let ([listener, client], transcript) = pair([KEY, KEY], true);
    listener.unwrap();
    client.unwrap();
    let [ours, theirs] = [Role::Listener, Role::Client].map(challenge_message);
    let answer = |challenge: &[u8]| respond(KEY, &challenge[CHALLENGE.len()..], true).unwrap();
    let expected = [
        (0, ours.clone()),
        (1, answer(&ours)),
        (0, WELCOME.to_vec()),
        (1, theirs.clone()),
        (0, answer(&theirs)),
        (1, WELCOME.to_vec()),
    ];
    assert_eq!(transcript, expected);
    assert!(ours.starts_with(b"#CHALLENGE#{sha256}") && ours.ends_with(&nonce(Role::Listener)));
}

#[test]
fn a_wrong_digest_gets_failure_then_fails_on_both_sides() {
    let ([listener, client], transcript) = pair([KEY, b"other key"], false);
    assert_eq!(
        listener.unwrap_err().kind(),
        ErrorKind::AuthenticationFailed
    );
    let err = client.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthenticationFailed, "{err}");
    assert!(err.to_string().contains("rejected our digest"), "{err}");
    assert_eq!(transcript.len(), 3);
    assert_eq!(transcript[2], (0, FAILURE.to_vec()));
}

#[test]
fn an_oversized_message_is_refused_and_its_announcement_before_it() {
    assert_eq!(message_len(256i32.to_be_bytes(), MAX_MESSAGE).unwrap(), 256);
    for header in [257i32, -1, i32::MIN] {
        let err = message_len(header.to_be_bytes(), MAX_MESSAGE).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol, "{header}: {err}");
    }
    // A driver that hands one over anyway: refused, and nothing said.
    for role in [Role::Listener, Role::Client] {
        let (sent, outcome) = script(role, false, &[&[b'x'; MAX_MESSAGE + 1]]);
        assert_eq!(outcome.unwrap_err().kind(), ErrorKind::Protocol);
        assert_eq!(sent.len(), usize::from(role == Role::Listener), "{sent:?}");
    }
}

#[test]
fn strict_mode_refuses_md5_whichever_side_offers_it() {
    let ours = &challenge_message(Role::Listener)[CHALLENGE.len()..];
    let md5 = digest::Digest::Md5;
    // A prefixed and a bare (Python 3.11) HMAC-MD5 of our challenge.
    for answer in [md5.respond(KEY, ours, true), md5.respond(KEY, ours, false)] {
        let answer = answer.unwrap();
        let (sent, outcome) = script(Role::Listener, true, &[&answer]);
        let err = outcome.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AuthenticationFailed, "{err}");
        assert!(err.to_string().contains("strict"), "{err}");
        assert_eq!(sent[1..], [FAILURE]);
        // Not strict, the same answer is right.
        let (sent, outcome) = script(Role::Listener, false, &[&answer]);
        assert_eq!(outcome.unwrap_err().kind(), ErrorKind::Eof);
        assert_eq!(sent[1..], [WELCOME]);
    }
    // A Python 3.11 listener's legacy challenge: no answer goes out.
    let (sent, outcome) = script(Role::Client, true, &[&[CHALLENGE, &[9; 20]].concat()]);
    assert_eq!(outcome.unwrap_err().kind(), ErrorKind::AuthenticationFailed);
    assert!(sent.is_empty());
}

#[test]
fn a_verdict_other_than_welcome_fails_the_client() {
    let challenge = challenge_message(Role::Listener);
    for verdict in [&b"#WELCOME"[..], b"#WELCOME#!", b"", FAILURE] {
        let (sent, outcome) = script(Role::Client, false, &[&challenge, verdict]);
        let err = outcome.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AuthenticationFailed, "{verdict:?}");
        assert_eq!(sent.len(), 1, "only the answer");
    }
}

#[test]
fn an_unexpected_message_fails_and_only_a_challenger_says_failure() {
    // The client waits for a challenge.
    let (sent, outcome) = script(Role::Client, false, &[WELCOME]);
    assert_eq!(outcome.unwrap_err().kind(), ErrorKind::Protocol);
    assert!(sent.is_empty());
    // The listener waits for a digest, and is challenged instead.
    let challenge = challenge_message(Role::Client);
    let (sent, outcome) = script(Role::Listener, false, &[&challenge]);
    assert_eq!(outcome.unwrap_err().kind(), ErrorKind::Protocol);
    assert_eq!(sent[1..], [FAILURE]);
}

#[test]
fn a_peer_that_closes_early_ends_it_with_nothing_more_said() {
    for role in [Role::Listener, Role::Client] {
        let (sent, outcome) = script(role, false, &[]);
        assert_eq!(outcome.unwrap_err().kind(), ErrorKind::Eof);
        assert_eq!(sent.len(), usize::from(role == Role::Listener), "{sent:?}");
    }
}

#[test]
fn a_failed_send_ends_it_but_a_failed_farewell_leaves_the_refusal() {
    let broken = || Err(peer_closed(true));
    let mut handshake = Handshake::new(Role::Listener, false, &[0; NONCE_LEN]);
    handshake.sent(broken());
    let Next::Finished(outcome) = handshake.next() else {
        panic!("goes on after a failed send");
    };
    assert_eq!(outcome.unwrap_err().kind(), ErrorKind::Truncated);
    // Over: a driver that asks again is told so.
    let Next::Finished(again) = handshake.next() else {
        panic!("restarted");
    };
    assert_eq!(again.unwrap_err().kind(), ErrorKind::InvalidInput);

    let mut handshake = Handshake::new(Role::Listener, false, &[0; NONCE_LEN]);
    handshake.sent(Ok(()));
    handshake.received(KEY, Ok(b"{sha256}not the digest, not at all"));
    assert!(matches!(handshake.next(), Next::Farewell(FAILURE)));
    handshake.sent(broken());
    let Next::Finished(outcome) = handshake.next() else {
        panic!("goes on after its farewell");
    };
    assert_eq!(outcome.unwrap_err().kind(), ErrorKind::AuthenticationFailed);
}
