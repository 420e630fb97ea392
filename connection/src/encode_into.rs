//! Encoding into a buffer the caller keeps: [`encode_into`], the
//! allocation-free twin of [`encode`](crate::encode) for a caller that
//! encodes many values in turn (a process pool's inputs and outputs), so
//! that large payloads land in memory already faulted in rather than in a
//! fresh allocation each.

use serde::Serialize;

use crate::error::Result;

/// Appends the encoding of `value` to `out`: the same bytes that
/// [`encode`](crate::encode) returns, in a buffer the caller keeps and
/// reuses. On error `out` is left as it was.
///
/// # Examples
///
/// ```
/// let mut out = b"header".to_vec();
/// connection::encode_into(&(7u32, "seven"), &mut out)?;
/// assert_eq!(out[6..], connection::encode(&(7u32, "seven"))?);
///
/// // Reused: cleared, refilled, no new allocation once large enough.
/// out.clear();
/// connection::encode_into(&connection::serde_bytes::ByteBuf::from(vec![1u8; 1000]), &mut out)?;
/// assert_eq!(connection::decode::<connection::serde_bytes::ByteBuf>(&out)?.len(), 1000);
/// # Ok::<(), connection::Error>(())
/// ```
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    crate::codec::encode_into(value, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    /// A value whose encoding fails halfway, after writing some bytes.
    struct FailsHalfway;

    impl Serialize for FailsHalfway {
        fn serialize<S: serde::Serializer>(
            &self,
            serializer: S,
        ) -> std::result::Result<S::Ok, S::Error> {
            use serde::ser::{Error, SerializeTuple};
            let mut tuple = serializer.serialize_tuple(2)?;
            tuple.serialize_element(&u64::MAX)?;
            Err(S::Error::custom("refused halfway"))
        }
    }

    #[test]
    fn appends_what_encode_returns() {
        let value = (1u8, String::from("two"), vec![3u16; 300]);
        let mut out = vec![9, 9];
        encode_into(&value, &mut out).unwrap();
        assert_eq!(out[..2], [9, 9]);
        assert_eq!(out[2..], crate::encode(&value).unwrap());
    }

    #[test]
    fn a_failed_encoding_leaves_the_buffer_as_it_was() {
        let mut out = vec![1, 2, 3];
        let err = encode_into(&FailsHalfway, &mut out).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Encode);
        assert_eq!(out, [1, 2, 3]);
    }
}
