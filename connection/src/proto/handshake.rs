//! CPython's authkey handshake as a state machine that does no I/O, in the
//! manner of `quinn-proto` or rustls's unbuffered API: it says which whole
//! message to send next or how long a message it will take, and is told
//! what was sent and what arrived. The socket drivers (`auth.rs`, for the
//! blocking client and the listener's handshakes that never wait) and the
//! tokio one (`tokio/handshake.rs`) only move its messages.
//!
//! The order is CPython's: `deliver_challenge` (send `#CHALLENGE#` and a
//! nonce, check the peer's digest, send `#WELCOME#`) and `answer_challenge`
//! (take the peer's challenge, send our digest, read its verdict); the
//! listener delivers first, the client answers first. A wrong digest of our
//! challenge (or anything else in its place) is answered with `#FAILURE#`
//! before the handshake fails, as CPython does. The digests themselves are in [`digest`].

use crate::error::{Error, ErrorKind, Result};

pub(crate) mod digest;

use digest::{CHALLENGE, FAILURE, NONCE_LEN, WELCOME};

/// CPython's `recv_bytes(256)`: the largest handshake message accepted.
pub(crate) const MAX_MESSAGE: usize = 256;

/// Which end of the connection this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// The accepting end: challenges first, then answers.
    Listener,
    /// The connecting end: answers first, then challenges.
    Client,
}

/// One step of a half of the exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    SendChallenge,
    ReceiveResponse,
    SendWelcome,
    ReceiveChallenge,
    SendAnswer,
    ReceiveVerdict,
}

use Step::*;

/// CPython's `deliver_challenge`, then `answer_challenge`.
const DELIVER: [Step; 3] = [SendChallenge, ReceiveResponse, SendWelcome];
const ANSWER: [Step; 3] = [ReceiveChallenge, SendAnswer, ReceiveVerdict];

/// What the driver does next.
#[derive(Debug)]
pub(crate) enum Next<'a> {
    /// Send this message (the driver frames it), then report with
    /// [`Handshake::sent`].
    Send(&'a [u8]),
    /// Send this `#FAILURE#`, then report with [`Handshake::sent`]; a
    /// driver that never waits tries once (the peer is owed it, not a
    /// wait), and a failure to send it leaves the refusal the outcome.
    Farewell(&'a [u8]),
    /// Receive one message of at most `max` bytes, refusing a header that
    /// announces more before reading on (see [`message_len`]), then report
    /// with [`Handshake::received`].
    Receive { max: usize },
    /// The handshake ended: the peer is authenticated, or why not.
    Finished(Result<()>),
}

#[derive(Debug)]
enum State {
    /// At this index of the role's steps.
    Running(usize),
    /// Our challenge was answered wrongly: `#FAILURE#` goes out, then this.
    Refusing(Error),
    /// Ended; the outcome until [`Handshake::next`] hands it over.
    Ended(Option<Result<()>>),
}

/// One end's handshake in progress.
#[derive(Debug)]
pub(crate) struct Handshake {
    role: Role,
    strict: bool,
    /// Our `#CHALLENGE#` message: the peer must return the HMAC of its
    /// payload.
    challenge: Vec<u8>,
    /// Our answer to the peer's challenge, once it came.
    answer: Vec<u8>,
    state: State,
}

impl Handshake {
    /// A handshake whose challenge carries `nonce`, which must be fresh
    /// random bytes: see [`start`](Self::start).
    pub(crate) fn new(role: Role, strict: bool, nonce: &[u8; NONCE_LEN]) -> Handshake {
        Handshake {
            role,
            strict,
            challenge: [CHALLENGE, &digest::challenge(nonce)].concat(),
            answer: Vec::new(),
            state: State::Running(0),
        }
    }

    /// A handshake with a nonce from the system's random source.
    pub(crate) fn start(role: Role, strict: bool) -> Result<Handshake> {
        let mut nonce = [0; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|err| {
            Error::new(ErrorKind::Io, "read random bytes for the challenge").with_source(err)
        })?;
        Ok(Handshake::new(role, strict, &nonce))
    }

    /// What the driver does next. Once this is [`Next::Finished`], the
    /// handshake is over and a further call says so as an error.
    pub(crate) fn next(&mut self) -> Next<'_> {
        match self.state {
            State::Running(at) => match self.step(at) {
                Some(SendChallenge) => Next::Send(&self.challenge),
                Some(SendWelcome) => Next::Send(WELCOME),
                Some(SendAnswer) => Next::Send(&self.answer),
                Some(_) => Next::Receive { max: MAX_MESSAGE },
                None => {
                    self.state = State::Ended(None);
                    Next::Finished(Ok(()))
                }
            },
            State::Refusing(_) => Next::Farewell(FAILURE),
            State::Ended(ref mut outcome) => Next::Finished(outcome.take().unwrap_or_else(|| {
                Err(Error::new(
                    ErrorKind::InvalidInput,
                    "the handshake already ended",
                ))
            })),
        }
    }

    /// How the message of [`Next::Send`] or [`Next::Farewell`] went. A
    /// failed farewell leaves the refusal as the outcome, the error worth
    /// reporting.
    pub(crate) fn sent(&mut self, outcome: Result<()>) {
        let state = std::mem::replace(&mut self.state, State::Ended(None));
        self.state = match (state, outcome) {
            (State::Running(at), Ok(())) => State::Running(at + 1),
            (State::Refusing(refusal), outcome) => {
                if let Err(err) = outcome {
                    tracing::debug!(error = %err, "could not send #FAILURE#");
                }
                State::Ended(Some(Err(refusal)))
            }
            (_, Err(err)) => State::Ended(Some(Err(err))),
            (ended, Ok(())) => ended,
        };
    }

    /// What came of the receive that [`Next::Receive`] asked for: the
    /// message (the key checks or answers it), or why there is none.
    pub(crate) fn received(&mut self, key: &[u8], message: Result<impl AsRef<[u8]>>) {
        let State::Running(at) = self.state else {
            return;
        };
        let step = self.step(at);
        let outcome = match message {
            Ok(message) if message.as_ref().len() > MAX_MESSAGE => {
                Err(too_long(message.as_ref().len(), MAX_MESSAGE))
            }
            Ok(message) => match self.take(step, key, message.as_ref()) {
                // CPython's `deliver_challenge` tells the peer.
                Err(err) if step == Some(ReceiveResponse) => {
                    self.state = State::Refusing(err);
                    return;
                }
                outcome => outcome,
            },
            Err(err) => Err(err),
        };
        self.state = match outcome {
            Ok(()) => State::Running(at + 1),
            Err(err) => State::Ended(Some(Err(err))),
        };
    }

    fn take(&mut self, step: Option<Step>, key: &[u8], message: &[u8]) -> Result<()> {
        match step {
            Some(ReceiveResponse) => {
                let challenge = &self.challenge[CHALLENGE.len()..];
                digest::check_response(key, challenge, message, self.strict)
            }
            Some(ReceiveChallenge) => {
                let challenge = digest::challenge_payload(message)?;
                self.answer = digest::respond(key, challenge, self.strict)?;
                Ok(())
            }
            Some(ReceiveVerdict) => digest::check_verdict(message),
            _ => Err(Error::new(
                ErrorKind::InvalidInput,
                "a handshake message arrived while one was to be sent",
            )),
        }
    }

    /// The step at `at` in this role's order; `None` past the last.
    fn step(&self, at: usize) -> Option<Step> {
        let (first, second) = match self.role {
            Role::Listener => (DELIVER, ANSWER),
            Role::Client => (ANSWER, DELIVER),
        };
        first.into_iter().chain(second).nth(at)
    }
}

/// The payload length that a handshake message's 4-byte header announces,
/// refused unless it is in `0..=max`: nothing past a header this refuses
/// is read.
pub(crate) fn message_len(header: [u8; 4], max: usize) -> Result<usize> {
    let len = i32::from_be_bytes(header);
    usize::try_from(len)
        .ok()
        .filter(|&len| len <= max)
        .ok_or_else(|| too_long(len, max))
}

/// A handshake message of `len` bytes, more than `max` (or fewer than
/// none): the peer does not speak this protocol.
pub(crate) fn too_long(len: impl std::fmt::Display, max: usize) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!(
            "handshake message length {len} is outside 0..={max} \
             (is the peer speaking this protocol?)"
        ),
    )
}

/// The peer hung up: cleanly between messages, else in the middle of one.
pub(crate) fn peer_closed(mid_message: bool) -> Error {
    let (kind, when) = match mid_message {
        true => (ErrorKind::Truncated, "in the middle of a handshake message"),
        false => (ErrorKind::Eof, "during the handshake"),
    };
    Error::new(kind, format!("the peer closed the connection {when}"))
}

/// The handshake's deadline passed.
pub(crate) fn timed_out() -> Error {
    Error::new(
        ErrorKind::TimedOut,
        "the handshake did not complete within the timeout",
    )
}

#[cfg(test)]
mod tests;
