//! The core alone: two handshakes talking through queues, no sockets, and
//! hostile messages handed straight to one of them.

use std::collections::VecDeque;

use super::digest::{respond, CHALLENGE, FAILURE};
use super::*;

const KEY: &[u8] = b"core key";
const LISTENER_NONCE: [u8; NONCE_LEN] = [1; NONCE_LEN];
const CLIENT_NONCE: [u8; NONCE_LEN] = [2; NONCE_LEN];

/// Every message sent, with its sender: 0 the listener, 1 the client.
type Transcript = Vec<(usize, Vec<u8>)>;

struct End {
    handshake: Handshake,
    key: &'static [u8],
    inbox: VecDeque<Vec<u8>>,
    outcome: Option<Result<()>>,
}

fn end(role: Role, key: &'static [u8], strict: bool) -> End {
    let nonce = match role {
        Role::Listener => LISTENER_NONCE,
        Role::Client => CLIENT_NONCE,
    };
    End {
        handshake: Handshake::new(role, strict, &nonce),
        key,
        inbox: VecDeque::new(),
        outcome: None,
    }
}

/// Runs both ends until both finish. An end waiting on a finished peer
/// sees it close.
fn talk(ends: &mut [End; 2]) -> Transcript {
    let mut transcript = Vec::new();
    for _ in 0..100 {
        if ends.iter().all(|end| end.outcome.is_some()) {
            return transcript;
        }
        for i in 0..2 {
            let (left, right) = ends.split_at_mut(1);
            let (me, peer) = if i == 0 {
                (&mut left[0], &mut right[0])
            } else {
                (&mut right[0], &mut left[0])
            };
            if me.outcome.is_some() {
                continue;
            }
            match me.handshake.next() {
                Next::Send(message) | Next::Farewell(message) => {
                    transcript.push((i, message.to_vec()));
                    peer.inbox.push_back(message.to_vec());
                    me.handshake.sent(Ok(()));
                }
                Next::Receive { max } => {
                    assert_eq!(max, MAX_MESSAGE);
                    if let Some(message) = me.inbox.pop_front() {
                        me.handshake.received(me.key, Ok(message));
                    } else if peer.outcome.is_some() {
                        me.handshake.received(me.key, closed());
                    }
                }
                Next::Finished(outcome) => me.outcome = Some(outcome),
            }
        }
    }
    panic!("the handshakes did not end: {transcript:?}");
}

fn closed() -> Result<&'static [u8]> {
    Err(peer_closed(false))
}

/// The outcomes of a listener with `listener_key` and a client with
/// `client_key`, and what they said.
fn pair(
    listener: (&'static [u8], bool),
    client: (&'static [u8], bool),
) -> (Result<()>, Result<()>, Transcript) {
    let mut ends = [
        end(Role::Listener, listener.0, listener.1),
        end(Role::Client, client.0, client.1),
    ];
    let transcript = talk(&mut ends);
    let [listener, client] = ends.map(|end| end.outcome.unwrap());
    (listener, client, transcript)
}

/// Hands `message` to a fresh `role` end once it waits for its first
/// message (after our challenge, for a listener), then runs it to its end:
/// what it sent after, and how it ended (with end of file if it waits on).
fn answer_with(role: Role, strict: bool, message: &[u8]) -> (Vec<Vec<u8>>, Result<()>) {
    let mut end = end(role, KEY, strict);
    if let Next::Send(_) = end.handshake.next() {
        end.handshake.sent(Ok(()));
    }
    assert!(matches!(end.handshake.next(), Next::Receive { .. }));
    end.handshake.received(KEY, Ok(message));
    let mut sent = Vec::new();
    loop {
        match end.handshake.next() {
            Next::Send(message) | Next::Farewell(message) => {
                sent.push(message.to_vec());
                end.handshake.sent(Ok(()));
            }
            Next::Receive { .. } => end.handshake.received(KEY, closed()),
            Next::Finished(outcome) => return (sent, outcome),
        }
    }
}

fn with_prefix(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    [prefix, rest].concat()
}

#[test]
fn listener_challenges_first_and_client_answers_first_in_cpythons_order() {
    let (listener, client, transcript) = pair((KEY, true), (KEY, true));
    listener.unwrap();
    client.unwrap();
    let ours = digest::challenge(&LISTENER_NONCE);
    let theirs = digest::challenge(&CLIENT_NONCE);
    let expected = [
        (0, with_prefix(CHALLENGE, &ours)),
        (1, respond(KEY, &ours, true).unwrap()),
        (0, WELCOME.to_vec()),
        (1, with_prefix(CHALLENGE, &theirs)),
        (0, respond(KEY, &theirs, true).unwrap()),
        (1, WELCOME.to_vec()),
    ];
    assert_eq!(transcript, expected);
    assert!(ours.starts_with(b"{sha256}") && ours.ends_with(&LISTENER_NONCE));
}

#[test]
fn a_wrong_digest_gets_failure_then_fails_on_both_sides() {
    let (listener, client, transcript) = pair((KEY, false), (b"other key", false));
    assert_eq!(
        listener.unwrap_err().kind(),
        ErrorKind::AuthenticationFailed
    );
    let err = client.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthenticationFailed, "{err}");
    assert!(err.to_string().contains("rejected our digest"), "{err}");
    assert_eq!(transcript.last(), Some(&(0, FAILURE.to_vec())));
    assert_eq!(transcript.len(), 3);
}

#[test]
fn an_oversized_message_is_refused_and_its_announcement_before_it() {
    assert_eq!(message_len(256i32.to_be_bytes(), MAX_MESSAGE).unwrap(), 256);
    for header in [257i32, -1, i32::MIN] {
        let err = message_len(header.to_be_bytes(), MAX_MESSAGE).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol, "{header}: {err}");
    }
    // A driver that hands it over anyway: refused, and nothing is said.
    for role in [Role::Listener, Role::Client] {
        let (sent, outcome) = answer_with(role, false, &[b'x'; MAX_MESSAGE + 1]);
        assert_eq!(outcome.unwrap_err().kind(), ErrorKind::Protocol);
        assert!(sent.is_empty(), "{role:?} sent {sent:?}");
    }
}

#[test]
fn strict_mode_refuses_md5_whichever_side_offers_it() {
    let ours = digest::challenge(&LISTENER_NONCE);
    let md5 = digest::Digest::Md5;
    // A prefixed and a bare (Python 3.11) HMAC-MD5 of our challenge.
    for answer in [
        md5.respond(KEY, &ours, true),
        md5.respond(KEY, &ours, false),
    ] {
        let answer = answer.unwrap();
        let (sent, outcome) = answer_with(Role::Listener, true, &answer);
        let err = outcome.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AuthenticationFailed, "{err}");
        assert!(err.to_string().contains("strict"), "{err}");
        assert_eq!(sent, [FAILURE]);
        // Not strict, the same answer is right.
        let (sent, outcome) = answer_with(Role::Listener, false, &answer);
        assert!(matches!(outcome.unwrap_err().kind(), ErrorKind::Eof));
        assert_eq!(sent, [WELCOME]);
    }
    // A Python 3.11 listener's legacy challenge: no answer goes out.
    let legacy = with_prefix(CHALLENGE, &[9; 20]);
    let (sent, outcome) = answer_with(Role::Client, true, &legacy);
    assert_eq!(outcome.unwrap_err().kind(), ErrorKind::AuthenticationFailed);
    assert!(sent.is_empty());
}

#[test]
fn a_verdict_other_than_welcome_fails_the_client() {
    for verdict in [&b"#WELCOME"[..], b"#WELCOME#!", b"", FAILURE] {
        let mut end = end(Role::Client, KEY, false);
        end.handshake.received(
            KEY,
            Ok(with_prefix(CHALLENGE, &digest::challenge(&[3; 40]))),
        );
        assert!(matches!(end.handshake.next(), Next::Send(_)));
        end.handshake.sent(Ok(()));
        end.handshake.received(KEY, Ok(verdict));
        let Next::Finished(outcome) = end.handshake.next() else {
            panic!("goes on after the verdict {verdict:?}");
        };
        let err = outcome.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AuthenticationFailed, "{verdict:?}");
    }
}

#[test]
fn an_unexpected_message_fails_and_only_a_challenger_says_failure() {
    // The client waits for a challenge.
    let (sent, outcome) = answer_with(Role::Client, false, WELCOME);
    assert_eq!(outcome.unwrap_err().kind(), ErrorKind::Protocol);
    assert!(sent.is_empty());
    // The listener waits for a digest, and is challenged instead.
    let challenge = with_prefix(CHALLENGE, &digest::challenge(&[3; 40]));
    let (sent, outcome) = answer_with(Role::Listener, false, &challenge);
    assert_eq!(outcome.unwrap_err().kind(), ErrorKind::Protocol);
    assert_eq!(sent, [FAILURE]);
}

#[test]
fn a_peer_that_closes_early_ends_it_with_nothing_more_said() {
    for role in [Role::Listener, Role::Client] {
        let mut end = end(role, KEY, false);
        if let Next::Send(_) = end.handshake.next() {
            end.handshake.sent(Ok(()));
        }
        end.handshake.received(KEY, closed());
        let Next::Finished(outcome) = end.handshake.next() else {
            panic!("{role:?} goes on after the peer closed");
        };
        assert_eq!(outcome.unwrap_err().kind(), ErrorKind::Eof);
        // Over: a driver that asks again is told so, and nothing is sent.
        let Next::Finished(again) = end.handshake.next() else {
            panic!("{role:?} restarted");
        };
        assert_eq!(again.unwrap_err().kind(), ErrorKind::InvalidInput);
    }
}

#[test]
fn a_failed_send_ends_it_but_a_failed_farewell_leaves_the_refusal() {
    let mut end = end(Role::Listener, KEY, false);
    let broken = || Err(peer_closed(true));
    end.handshake.sent(broken());
    let Next::Finished(outcome) = end.handshake.next() else {
        panic!("goes on after a failed send");
    };
    assert_eq!(outcome.unwrap_err().kind(), ErrorKind::Truncated);

    let mut end = self::end(Role::Listener, KEY, false);
    end.handshake.sent(Ok(()));
    end.handshake
        .received(KEY, Ok(b"{sha256}not the digest, not at all"));
    assert!(matches!(end.handshake.next(), Next::Farewell(FAILURE)));
    end.handshake.sent(broken());
    let Next::Finished(outcome) = end.handshake.next() else {
        panic!("goes on after its farewell");
    };
    assert_eq!(outcome.unwrap_err().kind(), ErrorKind::AuthenticationFailed);
}
