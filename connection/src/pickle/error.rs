//! The codec's inner error: a message that `pickle::decode` and
//! `pickle::encode` turn into the crate's [`Error`](crate::Error) with kind
//! `Decode` or `Encode`. Serde needs an error type of its own to build.

use std::fmt;

/// What went wrong in a pickle, in words.
#[derive(Debug)]
pub(super) struct PickleError(pub(super) String);

impl fmt::Display for PickleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PickleError {}

impl serde::de::Error for PickleError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        PickleError(msg.to_string())
    }
}

impl serde::ser::Error for PickleError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        PickleError(msg.to_string())
    }
}

pub(super) type PickleResult<T> = Result<T, PickleError>;
