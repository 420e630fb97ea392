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
    // The borrowing decoder checks a string's or byte string's claimed
    // length against the bytes actually in the payload before taking them;
    // the owning one allocates the claimed length first, so a forged length
    // prefix could ask for exabytes. Owned types come out the same either way.
    let (value, used) = bincode::serde::borrow_decode_from_slice(payload, config())
        .map_err(|err| decode_error(String::new()).with_source(err))?;
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
        // varint 0xFF + u64::MAX/4: a String claiming ~4.6e18 bytes.
        let mut payload = vec![0xFF];
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
    fn owned_values_decode_from_the_borrowing_decoder() {
        let value = (String::from("owned"), vec![1u8, 2], vec![String::from("x")]);
        let bytes = encode(&value).unwrap();
        assert_eq!(
            decode::<(String, Vec<u8>, Vec<String>)>(&bytes).unwrap(),
            value
        );
    }

    #[test]
    fn encode_into_appends() {
        let mut out = vec![9, 9];
        encode_into(&1u8, &mut out).unwrap();
        assert_eq!(out, [9, 9, 1]);
    }
}
