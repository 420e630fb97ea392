//! The digests of CPython's `multiprocessing.connection` handshake, byte
//! for byte: what `deliver_challenge` sends and checks, and what
//! `answer_challenge` answers.
//!
//! Each side proves it knows the shared authkey by returning an HMAC of a
//! random challenge; the key itself never crosses the wire. Two schemes
//! share the exchange:
//!
//! - modern (Python 3.12+): the challenge is `{sha256}` plus 40 random
//!   bytes, the answer `{digest}` plus the HMAC of the whole challenge
//!   (prefix included, so the digest cannot be downgraded in flight);
//! - legacy (Python 3.11 and older): 20 random bytes, answered with a bare
//!   HMAC-MD5. A bare 16-byte answer to a modern challenge is the legacy
//!   answer of an old peer and is accepted as such, as CPython 3.12 does.
//!
//! Strict mode refuses MD5 in either form.

use std::hint::black_box;

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};

use crate::error::{Error, ErrorKind, Result};

pub(crate) const CHALLENGE: &[u8] = b"#CHALLENGE#";
pub(crate) const WELCOME: &[u8] = b"#WELCOME#";
pub(crate) const FAILURE: &[u8] = b"#FAILURE#";
/// Random bytes in a modern challenge (CPython's `MESSAGE_LENGTH`).
pub(crate) const NONCE_LEN: usize = 40;
/// A legacy challenge is exactly this long, and no modern one can be.
const LEGACY_CHALLENGE_LEN: usize = 20;
const MD5_LEN: usize = 16;
/// Every digest name CPython may put in a challenge; the longest sets how
/// far to look for the closing brace.
const CPYTHON_DIGESTS: [&[u8]; 5] = [b"md5", b"sha256", b"sha384", b"sha3_256", b"sha3_384"];
const MAX_DIGEST_NAME: usize = 8;

/// The HMAC digests this crate speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Digest {
    Md5,
    Sha256,
    Sha384,
}

impl Digest {
    fn name(self) -> &'static str {
        match self {
            Digest::Md5 => "md5",
            Digest::Sha256 => "sha256",
            Digest::Sha384 => "sha384",
        }
    }

    /// `{name}` followed by the HMAC of `message`, or the bare HMAC when
    /// `prefixed` is false (the legacy MD5 answer).
    pub(super) fn respond(self, key: &[u8], message: &[u8], prefixed: bool) -> Result<Vec<u8>> {
        fn run<M: Mac + KeyInit>(key: &[u8], message: &[u8], out: &mut Vec<u8>) -> Result<()> {
            let mut mac = <M as Mac>::new_from_slice(key)
                .map_err(|_| Error::new(ErrorKind::InvalidInput, "authkey refused by HMAC"))?;
            mac.update(message);
            out.extend_from_slice(&mac.finalize().into_bytes());
            Ok(())
        }
        let mut out = Vec::new();
        if prefixed {
            out.extend_from_slice(format!("{{{}}}", self.name()).as_bytes());
        }
        match self {
            Digest::Md5 => run::<Hmac<md5::Md5>>(key, message, &mut out)?,
            Digest::Sha256 => run::<Hmac<sha2::Sha256>>(key, message, &mut out)?,
            Digest::Sha384 => run::<Hmac<sha2::Sha384>>(key, message, &mut out)?,
        }
        Ok(out)
    }

    /// Constant-time comparison of `tag` with the HMAC of `message`; a tag
    /// of the wrong length is simply wrong. Every byte is compared, and
    /// `black_box` keeps the compiler from stopping at the first difference.
    fn verify(self, key: &[u8], message: &[u8], tag: &[u8]) -> bool {
        self.respond(key, message, false).is_ok_and(|right| {
            let differ = right
                .iter()
                .zip(tag)
                .fold(0, |d, (a, b)| black_box(d | a ^ b));
            right.len() == tag.len() && differ == 0
        })
    }
}

/// How a challenge or response announces its digest.
#[derive(Debug, PartialEq, Eq)]
enum Scheme<'a> {
    /// No prefix: bare HMAC-MD5 of Python 3.11 and older.
    Legacy(&'a [u8]),
    /// A `{digest}` prefix, and what follows it.
    Modern(Digest, &'a [u8]),
}

fn auth_failed(context: impl Into<String>) -> Error {
    Error::new(ErrorKind::AuthenticationFailed, context)
}

/// CPython's `_get_digest_name_and_payload`.
fn parse_scheme(message: &[u8]) -> Result<Scheme<'_>> {
    if message.len() == LEGACY_CHALLENGE_LEN || message.len() == MD5_LEN {
        return Ok(Scheme::Legacy(message));
    }
    let window = &message[..message.len().min(MAX_DIGEST_NAME + 2)];
    let close = window
        .iter()
        .skip(1)
        .position(|&b| b == b'}')
        .map(|i| i + 1);
    if let (Some(b'{'), Some(close)) = (message.first(), close) {
        let name = &message[1..close];
        let payload = &message[close + 1..];
        let digest = match name {
            b"md5" => Some(Digest::Md5),
            b"sha256" => Some(Digest::Sha256),
            b"sha384" => Some(Digest::Sha384),
            _ => None,
        };
        if let Some(digest) = digest {
            return Ok(Scheme::Modern(digest, payload));
        }
        if CPYTHON_DIGESTS.contains(&name) {
            return Err(auth_failed(format!(
                "the peer uses digest {}, which this implementation does not support \
                 (supported: md5, sha256, sha384)",
                String::from_utf8_lossy(name)
            )));
        }
    }
    Err(Error::new(
        ErrorKind::Protocol,
        format!(
            "unsupported message length ({} bytes), missing digest prefix, or unknown digest",
            message.len()
        ),
    ))
}

fn refuse_md5_if_strict(strict: bool, digest: Digest, legacy: bool) -> Result<()> {
    if strict && digest == Digest::Md5 {
        let what = if legacy {
            "the legacy HMAC-MD5 scheme of Python 3.11 and older"
        } else {
            "HMAC-MD5"
        };
        return Err(auth_failed(format!(
            "the peer uses {what}, refused in strict mode"
        )));
    }
    Ok(())
}

/// The response to a challenge's payload (what follows `#CHALLENGE#`).
pub(crate) fn respond(key: &[u8], challenge: &[u8], strict: bool) -> Result<Vec<u8>> {
    if challenge.len() < LEGACY_CHALLENGE_LEN {
        return Err(Error::new(
            ErrorKind::Protocol,
            format!("challenge too short: {} bytes", challenge.len()),
        ));
    }
    // The MAC always covers the whole challenge, digest prefix included.
    match parse_scheme(challenge)? {
        Scheme::Legacy(_) => {
            refuse_md5_if_strict(strict, Digest::Md5, true)?;
            Digest::Md5.respond(key, challenge, false)
        }
        Scheme::Modern(digest, _) => {
            refuse_md5_if_strict(strict, digest, false)?;
            digest.respond(key, challenge, true)
        }
    }
}

/// Whether `response` is a right answer to `challenge` (the payload we sent
/// after `#CHALLENGE#`). As in CPython the responder may pick any digest it
/// likes: the prefix it answered is covered by its MAC.
pub(crate) fn check_response(
    key: &[u8],
    challenge: &[u8],
    response: &[u8],
    strict: bool,
) -> Result<()> {
    let (digest, tag, legacy) = match parse_scheme(response)? {
        Scheme::Legacy(tag) => (Digest::Md5, tag, true),
        Scheme::Modern(digest, tag) => (digest, tag, false),
    };
    refuse_md5_if_strict(strict, digest, legacy)?;
    if digest.verify(key, challenge, tag) {
        Ok(())
    } else {
        Err(auth_failed(format!(
            "the peer's {} digest was wrong (different authkey?)",
            digest.name()
        )))
    }
}

/// The payload of the peer's `#CHALLENGE#` message.
pub(super) fn challenge_payload(message: &[u8]) -> Result<&[u8]> {
    message.strip_prefix(CHALLENGE).ok_or_else(|| {
        Error::new(
            ErrorKind::Protocol,
            "expected a #CHALLENGE# message (does the peer use an authkey?)",
        )
    })
}

/// Whether the peer's verdict on our answer is `#WELCOME#`.
pub(super) fn check_verdict(message: &[u8]) -> Result<()> {
    if message == WELCOME {
        Ok(())
    } else {
        Err(auth_failed(
            "the peer rejected our digest (different authkey, or it refuses our scheme)",
        ))
    }
}

/// Our challenge's payload (what follows `#CHALLENGE#`): the default
/// digest's name and `nonce`, as CPython 3.12 sends it.
pub(crate) fn challenge(nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    [format!("{{{}}}", Digest::Sha256.name()).as_bytes(), nonce].concat()
}

#[cfg(test)]
mod tests;
