//! CPython's authkey handshake as a state machine that does no I/O, in the
//! manner of `quinn-proto` or rustls's unbuffered API: it says which whole
//! message to send next or how long a message it will take, and is told
//! what was sent and what arrived. The blocking client (`auth.rs`), the
//! listener's handshakes that never wait (`handshakes/exchange.rs`) and
//! the tokio side (`tokio/handshake.rs`) only move its messages.
//!
//! The order is CPython's: `deliver_challenge` (send `#CHALLENGE#` and a
//! nonce, check the peer's digest, send `#WELCOME#`) and `answer_challenge`
//! (take the peer's challenge, send our digest, read its verdict); the
//! listener delivers first, the client answers first. A wrong digest of our
//! challenge is answered with `#FAILURE#` before the handshake fails, as
//! CPython does. The digests themselves are in [`digest`].

use crate::error::{Error, ErrorKind, Result};

pub(crate) mod digest;

use digest::{NONCE_LEN, WELCOME};

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

/// CPython's `deliver_challenge`.
const DELIVER: [Step; 3] = [
    Step::SendChallenge,
    Step::ReceiveResponse,
    Step::SendWelcome,
];
/// CPython's `answer_challenge`.
const ANSWER: [Step; 3] = [
    Step::ReceiveChallenge,
    Step::SendAnswer,
    Step::ReceiveVerdict,
];

/// What the driver does next.
#[derive(Debug)]
pub(crate) enum Next<'a> {
    /// Send this message (the driver frames it), then report with
    /// [`Handshake::sent`].
    Send(&'a [u8]),
    /// Send this `#FAILURE#` if the socket takes it without waiting on the
    /// peer, then report with [`Handshake::sent`]: the peer is owed it,
    /// not a wait.
    Farewell(&'a [u8]),
    /// Receive one message of at most `max` bytes (refuse a header that
    /// announces more before reading on), then report with
    /// [`Handshake::received`].
    Receive {
        /// The longest message taken.
        max: usize,
    },
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
    /// Our challenge's payload, which the peer must return the HMAC of.
    challenge: Vec<u8>,
    /// The message of the step at hand, while it is a send.
    out: Vec<u8>,
    state: State,
}

impl Handshake {
    /// A handshake whose challenge carries `nonce`, which must be fresh
    /// random bytes: see [`start`](Self::start).
    pub(crate) fn new(role: Role, strict: bool, nonce: &[u8; NONCE_LEN]) -> Handshake {
        let mut handshake = Handshake {
            role,
            strict,
            challenge: digest::challenge(nonce),
            out: Vec::new(),
            state: State::Running(0),
        };
        handshake.enter(0);
        handshake
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
                Some(Step::ReceiveResponse | Step::ReceiveChallenge | Step::ReceiveVerdict) => {
                    Next::Receive { max: MAX_MESSAGE }
                }
                Some(_) => Next::Send(&self.out),
                None => {
                    self.state = State::Ended(None);
                    Next::Finished(Ok(()))
                }
            },
            State::Refusing(_) => Next::Farewell(digest::FAILURE),
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
        match (&self.state, outcome) {
            (State::Running(at), Ok(())) => self.enter(at + 1),
            (State::Refusing(_), Err(err)) => {
                tracing::debug!(error = %err, "could not send #FAILURE#");
                self.refused();
            }
            (State::Refusing(_), Ok(())) => self.refused(),
            (_, Err(err)) => self.fail(err),
            (State::Ended(_), Ok(())) => {}
        }
    }

    /// What came of the receive that [`Next::Receive`] asked for: the
    /// message (the key checks or answers it), or why there is none.
    pub(crate) fn received(&mut self, key: &[u8], message: Result<impl AsRef<[u8]>>) {
        let State::Running(at) = self.state else {
            return;
        };
        let message = match message {
            Ok(message) => message,
            Err(err) => return self.fail(err),
        };
        let (step, message) = (self.step(at), message.as_ref());
        if message.len() > MAX_MESSAGE {
            return self.fail(too_long(message.len()));
        }
        match self.take(step, key, message) {
            Ok(()) => self.enter(at + 1),
            // CPython's `deliver_challenge` tells the peer.
            Err(err) if step == Some(Step::ReceiveResponse) => self.state = State::Refusing(err),
            Err(err) => self.fail(err),
        }
    }

    /// Acts on the message of a receive step.
    fn take(&mut self, step: Option<Step>, key: &[u8], message: &[u8]) -> Result<()> {
        match step {
            Some(Step::ReceiveResponse) => {
                digest::check_response(key, &self.challenge, message, self.strict)
            }
            Some(Step::ReceiveChallenge) => {
                let challenge = digest::challenge_payload(message)?;
                self.out = digest::respond(key, challenge, self.strict)?;
                Ok(())
            }
            Some(Step::ReceiveVerdict) => digest::check_verdict(message),
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

    /// Moves to step `at`, with its message if it sends one.
    fn enter(&mut self, at: usize) {
        self.state = State::Running(at);
        match self.step(at) {
            Some(Step::SendChallenge) => {
                self.out = [digest::CHALLENGE, &self.challenge].concat();
            }
            Some(Step::SendWelcome) => self.out = WELCOME.to_vec(),
            // The answer was made from the challenge it answers.
            _ => {}
        }
    }

    fn refused(&mut self) {
        if let State::Refusing(err) = std::mem::replace(&mut self.state, State::Ended(None)) {
            self.fail(err);
        }
    }

    fn fail(&mut self, err: Error) {
        self.state = State::Ended(Some(Err(err)));
    }
}

/// The payload length that a handshake message's 4-byte header announces,
/// refused unless it is in `0..=max`: nothing past a header this refuses
/// is read.
pub(crate) fn message_len(header: [u8; 4], max: usize) -> Result<usize> {
    let len = i32::from_be_bytes(header);
    match usize::try_from(len) {
        Ok(len) if len <= max => Ok(len),
        _ => Err(Error::new(
            ErrorKind::Protocol,
            format!(
                "handshake message length {len} is outside 0..={max} \
                 (is the peer speaking this protocol?)"
            ),
        )),
    }
}

/// A handshake message longer than [`MAX_MESSAGE`]: the peer does not
/// speak this protocol.
pub(crate) fn too_long(len: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!(
            "handshake message of {len} bytes, longer than {MAX_MESSAGE} \
             (is the peer speaking this protocol?)"
        ),
    )
}

/// The peer hung up: cleanly between messages, else in the middle of one.
pub(crate) fn peer_closed(mid_message: bool) -> Error {
    if mid_message {
        Error::new(
            ErrorKind::Truncated,
            "the peer closed the connection in the middle of a handshake message",
        )
    } else {
        Error::new(
            ErrorKind::Eof,
            "the peer closed the connection during the handshake",
        )
    }
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
