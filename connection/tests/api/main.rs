//! Tests of `connection` that use only its public API, in one binary.

mod messages;
mod pickle;
mod pickle_value;
