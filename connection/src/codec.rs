//! How objects become message payloads.
//!
//! The only module that names `bincode`, so the encoding can be swapped in
//! one place. Payloads are bincode 2's standard configuration (variable-length
//! integers, little endian) driven through serde.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Appends the encoding of `value` to `out`. On error `out` is restored to
/// its original length.
pub(crate) fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    let start = out.len();
    bincode::serde::encode_into_std_write(value, out, config()).map_err(|err| {
        out.truncate(start);
        Error::new(
            ErrorKind::Encode,
            format!("cannot encode {}", std::any::type_name::<T>()),
        )
        .with_source(err)
    })?;
    Ok(())
}

/// Encodes `value` as a standalone payload.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_into(value, &mut out)?;
    Ok(out)
}

/// Decodes `payload` under an allocation limit proportional to its length.
///
/// bincode allocates a string's or byte string's claimed length before
/// reading it, so a forged length prefix in a small payload could ask for
/// exabytes. Its only guard is a limit on the bytes a decode may claim, a
/// compile-time constant, so one is chosen from a ladder of constants here.
/// A valid payload never hits it: bincode claims a value's in-memory size,
/// which is at most 16 times its encoded size (a `u128` from one byte).
fn decode_limited<T: DeserializeOwned>(
    payload: &[u8],
) -> Result<(T, usize), bincode::error::DecodeError> {
    fn with_limit<const LIMIT: usize, T: DeserializeOwned>(
        payload: &[u8],
    ) -> Result<(T, usize), bincode::error::DecodeError> {
        bincode::serde::decode_from_slice(payload, config().with_limit::<LIMIT>())
    }
    const fn tier(shift: u32) -> usize {
        let limit = 1u64 << shift;
        if limit > usize::MAX as u64 {
            usize::MAX
        } else {
            limit as usize
        }
    }
    let claim = payload.len().saturating_mul(16);
    match claim {
        n if n <= tier(20) => with_limit::<{ tier(20) }, T>(payload),
        n if n <= tier(24) => with_limit::<{ tier(24) }, T>(payload),
        n if n <= tier(28) => with_limit::<{ tier(28) }, T>(payload),
        n if n <= tier(32) => with_limit::<{ tier(32) }, T>(payload),
        n if n <= tier(36) => with_limit::<{ tier(36) }, T>(payload),
        n if n <= tier(40) => with_limit::<{ tier(40) }, T>(payload),
        _ => with_limit::<{ usize::MAX }, T>(payload),
    }
}

/// Decodes a whole payload as a `T`. Trailing bytes are an error: a payload
/// is exactly one value.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T> {
    let decode_error = |detail: String| {
        Error::new(
            ErrorKind::Decode,
            format!(
                "{}-byte message does not decode as {}{detail}",
                payload.len(),
                std::any::type_name::<T>()
            ),
        )
    };
    let (value, used) =
        decode_limited::<T>(payload).map_err(|err| decode_error(String::new()).with_source(err))?;
    if used != payload.len() {
        return Err(decode_error(format!(
            " ({} bytes left over after the value)",
            payload.len() - used
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Point {
        x: i32,
        label: String,
    }

    #[test]
    fn round_trip() {
        let p = Point {
            x: -7,
            label: "seven".into(),
        };
        let bytes = encode(&p).unwrap();
        assert_eq!(decode::<Point>(&bytes).unwrap(), p);
    }

    #[test]
    fn wrong_type_is_decode_error() {
        let bytes = encode(&"text").unwrap();
        let err = decode::<Point>(&bytes).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        assert!(err.to_string().contains("Point"), "{err}");
    }

    #[test]
    fn trailing_bytes_are_decode_error() {
        let mut bytes = encode(&5u8).unwrap();
        bytes.push(0);
        assert_eq!(decode::<u8>(&bytes).unwrap_err().kind(), ErrorKind::Decode);
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        // A Vec<u8> claiming u64::MAX elements in a 10-byte payload must fail
        // cleanly rather than try to reserve the claimed size.
        let payload = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
        assert_eq!(
            decode::<Vec<u64>>(&payload).unwrap_err().kind(),
            ErrorKind::Decode
        );
    }

    #[test]
    fn huge_string_length_prefix_does_not_allocate() {
        // Varint marker 253 (a u64 follows), then u64::MAX / 4: a length
        // prefix claiming about 4.6e18 bytes.
        let mut payload = vec![253];
        payload.extend_from_slice(&(u64::MAX / 4).to_le_bytes());
        payload.extend_from_slice(b"abc");
        for result in [
            decode::<String>(&payload).map(drop),
            decode::<Vec<u8>>(&payload).map(drop),
            decode::<(u8, String)>(&[&[1u8][..], &payload].concat()).map(drop),
        ] {
            assert_eq!(result.unwrap_err().kind(), ErrorKind::Decode);
        }
    }

    #[test]
    fn values_of_large_in_memory_size_still_decode() {
        // One byte each on the wire, sixteen in memory: the limit must allow it.
        let value: Vec<u128> = vec![1; 100_000];
        let bytes = encode(&value).unwrap();
        assert_eq!(decode::<Vec<u128>>(&bytes).unwrap(), value);
        let text = "x".repeat(3 << 20);
        assert_eq!(decode::<String>(&encode(&text).unwrap()).unwrap(), text);
    }

    #[test]
    fn encode_into_appends() {
        let mut out = vec![9, 9];
        encode_into(&1u8, &mut out).unwrap();
        assert_eq!(out, [9, 9, 1]);
    }
}
