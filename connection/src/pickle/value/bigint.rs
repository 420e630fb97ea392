//! Python ints of any size, kept as the bytes a pickle carries them in.

use std::cmp::Ordering;
use std::fmt;

use crate::error::{Error, ErrorKind};

/// A Python `int` of any size, held exactly: its little-endian two's
/// complement bytes, the form `LONG1`/`LONG4` carry in a pickle, always
/// in the fewest bytes that keep the sign (zero is no bytes at all).
///
/// [`Value`](super::Value) holds ints that fit an `i64` as
/// [`Value::Int`](super::Value::Int) and others as
/// [`Value::BigInt`](super::Value::BigInt). This type only stores and
/// converts; for arithmetic, hand [`to_signed_bytes_le`](Self::to_signed_bytes_le)
/// to a big-number crate (`num_bigint::BigInt::from_signed_bytes_le`).
///
/// `Display` (and `Debug`) print decimal, as Python's `repr` does, up to
/// 2048 bytes (about 4900 digits); beyond that they print hexadecimal
/// (`0x...`, `-0x...`), since decimal conversion is quadratic and a peer
/// could send a megabyte-wide int. (CPython itself refuses `str()` of ints
/// over 4300 digits.)
///
/// # Examples
///
/// ```
/// use connection::pickle::BigInt;
///
/// let n = BigInt::from(u128::MAX);
/// assert_eq!(n.to_string(), "340282366920938463463374607431768211455");
/// assert_eq!(u128::try_from(&n)?, u128::MAX);
/// assert!(i64::try_from(&n).is_err());
///
/// // -2**100, from the bytes pickle.dumps(-2**100) carries.
/// let mut bytes = vec![0; 12];
/// bytes.push(0xf0);
/// let big = BigInt::from_signed_bytes_le(&bytes);
/// assert_eq!(big.to_string(), "-1267650600228229401496703205376");
/// assert!(big.is_negative());
/// # Ok::<(), connection::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BigInt {
    /// Little-endian two's complement, shortest form.
    bytes: Box<[u8]>,
}

/// Decimal is printed up to this many bytes of magnitude, hexadecimal above.
const DECIMAL_LIMIT: usize = 2048;

impl BigInt {
    /// The int whose little-endian two's complement bytes are `bytes`
    /// (any length; redundant sign bytes are dropped).
    pub fn from_signed_bytes_le(bytes: &[u8]) -> BigInt {
        BigInt {
            bytes: bytes[..shortest_len(bytes)].into(),
        }
    }

    /// The little-endian two's complement bytes, in the fewest that keep
    /// the sign: what a pickle's `LONG1`/`LONG4` carries. Zero is empty.
    pub fn to_signed_bytes_le(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether the int is below zero.
    pub fn is_negative(&self) -> bool {
        self.bytes.last().is_some_and(|&b| b & 0x80 != 0)
    }

    /// The value as an `i128`, if it fits.
    fn to_i128(&self) -> Option<i128> {
        if self.bytes.len() > 16 {
            return None;
        }
        let mut buf = if self.is_negative() {
            [0xff; 16]
        } else {
            [0; 16]
        };
        buf[..self.bytes.len()].copy_from_slice(&self.bytes);
        Some(i128::from_le_bytes(buf))
    }

    /// The value as a `u128`, if it fits.
    fn to_u128(&self) -> Option<u128> {
        if self.is_negative() {
            return None;
        }
        // A u128 above i128::MAX takes a 17th byte, zero, for its sign.
        let len = self.bytes.len().min(16);
        if self.bytes[len..].iter().any(|&b| b != 0) {
            return None;
        }
        let mut buf = [0; 16];
        buf[..len].copy_from_slice(&self.bytes[..len]);
        Some(u128::from_le_bytes(buf))
    }

    /// The magnitude, little-endian, unsigned.
    fn magnitude(&self) -> Vec<u8> {
        let mut magnitude = self.bytes.to_vec();
        if self.is_negative() {
            // Two's complement negation: invert, then add one.
            let mut carry = true;
            for byte in &mut magnitude {
                *byte = !*byte;
                if carry {
                    let (sum, overflow) = byte.overflowing_add(1);
                    *byte = sum;
                    carry = overflow;
                }
            }
        }
        while magnitude.last() == Some(&0) {
            magnitude.pop();
        }
        magnitude
    }
}

/// How many of `bytes` a two's complement value needs: trailing bytes that
/// only repeat the sign of the byte below them are dropped.
pub(in crate::pickle) fn shortest_len(bytes: &[u8]) -> usize {
    let mut len = bytes.len();
    while len > 0 {
        let last = bytes[len - 1];
        let below_negative = len > 1 && bytes[len - 2] & 0x80 != 0;
        let redundant = (last == 0 && !below_negative) || (last == 0xff && below_negative);
        if !redundant {
            break;
        }
        len -= 1;
    }
    len
}

/// Decimal digits of a little-endian magnitude: divides by 10^9 again and
/// again, nine digits at a time.
fn decimal(magnitude: &[u8]) -> String {
    let mut limbs: Vec<u32> = magnitude
        .chunks(4)
        .map(|chunk| {
            let mut word = [0; 4];
            word[..chunk.len()].copy_from_slice(chunk);
            u32::from_le_bytes(word)
        })
        .collect();
    let mut groups = Vec::new();
    while !limbs.is_empty() {
        let mut remainder = 0u64;
        for limb in limbs.iter_mut().rev() {
            let current = (remainder << 32) | u64::from(*limb);
            *limb = (current / 1_000_000_000) as u32;
            remainder = current % 1_000_000_000;
        }
        groups.push(remainder as u32);
        while limbs.last() == Some(&0) {
            limbs.pop();
        }
    }
    let mut text = groups.pop().unwrap_or(0).to_string();
    for group in groups.iter().rev() {
        text.push_str(&format!("{group:09}"));
    }
    text
}

impl fmt::Display for BigInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.to_i128() {
            return write!(f, "{n}");
        }
        let sign = if self.is_negative() { "-" } else { "" };
        let magnitude = self.magnitude();
        if magnitude.len() <= DECIMAL_LIMIT {
            return write!(f, "{sign}{}", decimal(&magnitude));
        }
        let (top, below) = magnitude.split_last().expect("past the limit");
        write!(f, "{sign}0x{top:x}")?;
        for byte in below.iter().rev() {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for BigInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Numeric order.
impl Ord for BigInt {
    fn cmp(&self, other: &BigInt) -> Ordering {
        match (self.is_negative(), other.is_negative()) {
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        // Same sign, shortest forms: more bytes is further from zero, and
        // equal lengths compare from the top byte down.
        let by_len = self.bytes.len().cmp(&other.bytes.len());
        let by_len = if self.is_negative() {
            by_len.reverse()
        } else {
            by_len
        };
        by_len.then_with(|| self.bytes.iter().rev().cmp(other.bytes.iter().rev()))
    }
}

impl PartialOrd for BigInt {
    fn partial_cmp(&self, other: &BigInt) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl From<i128> for BigInt {
    fn from(n: i128) -> BigInt {
        BigInt::from_signed_bytes_le(&n.to_le_bytes())
    }
}

impl From<u128> for BigInt {
    fn from(n: u128) -> BigInt {
        // A zero byte on top keeps the sign bit clear.
        let mut bytes = [0u8; 17];
        bytes[..16].copy_from_slice(&n.to_le_bytes());
        BigInt::from_signed_bytes_le(&bytes)
    }
}

macro_rules! from_small {
    ($($ty:ty => $wide:ty),*) => {$(
        impl From<$ty> for BigInt {
            fn from(n: $ty) -> BigInt {
                BigInt::from(<$wide>::try_from(n).expect("widening"))
            }
        }
    )*};
}

from_small!(i8 => i128, i16 => i128, i32 => i128, i64 => i128, isize => i128,
    u8 => u128, u16 => u128, u32 => u128, u64 => u128, usize => u128);

/// `TryFrom<&BigInt>` and `TryFrom<BigInt>` for the primitive ints, through
/// `i128` or `u128`; an int out of range is an
/// [`InvalidInput`](ErrorKind::InvalidInput) error naming it.
macro_rules! try_into_primitive {
    ($($ty:ty: $wide:ident),*) => {$(
        impl TryFrom<&BigInt> for $ty {
            type Error = Error;

            fn try_from(n: &BigInt) -> Result<$ty, Error> {
                n.$wide()
                    .and_then(|wide| <$ty>::try_from(wide).ok())
                    .ok_or_else(|| out_of_range(n, stringify!($ty)))
            }
        }

        impl TryFrom<BigInt> for $ty {
            type Error = Error;

            fn try_from(n: BigInt) -> Result<$ty, Error> {
                <$ty>::try_from(&n)
            }
        }
    )*};
}

try_into_primitive!(i8: to_i128, i16: to_i128, i32: to_i128, i64: to_i128,
    i128: to_i128, isize: to_i128, u8: to_u128, u16: to_u128, u32: to_u128,
    u64: to_u128, u128: to_u128, usize: to_u128);

fn out_of_range(n: &BigInt, ty: &str) -> Error {
    // Keep a hostile width out of the message.
    let mut shown = n.to_string();
    if shown.len() > 60 {
        shown = format!("an int of {} bytes", n.bytes.len());
    }
    Error::new(
        ErrorKind::InvalidInput,
        format!("{shown} does not fit in {ty}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_hold_every_edge() {
        for n in [
            0i128,
            1,
            -1,
            127,
            128,
            -128,
            -129,
            255,
            256,
            i128::MIN,
            i128::MAX,
        ] {
            let big = BigInt::from(n);
            assert_eq!(i128::try_from(&big).unwrap(), n);
            assert_eq!(big.to_string(), n.to_string());
        }
        assert_eq!(BigInt::from(0u8).to_signed_bytes_le(), b"");
        assert_eq!(BigInt::from(128u8).to_signed_bytes_le(), [0x80, 0]);
        assert_eq!(BigInt::from(-1i8).to_signed_bytes_le(), [0xff]);
        let max = BigInt::from(u128::MAX);
        assert_eq!(u128::try_from(&max).unwrap(), u128::MAX);
        assert_eq!(max.to_signed_bytes_le().len(), 17);
        assert!(i128::try_from(&max).is_err());
        let err = u8::try_from(BigInt::from(-1)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("-1 does not fit in u8"), "{err}");
        // Padding with sign bytes changes nothing.
        assert_eq!(
            BigInt::from_signed_bytes_le(&[0xfe, 0xff, 0xff]),
            BigInt::from(-2)
        );
    }

    #[test]
    fn prints_decimal_and_hex_beyond_the_limit() {
        let mut two_to_200 = vec![0u8; 25];
        two_to_200.push(1);
        let big = BigInt::from_signed_bytes_le(&two_to_200);
        assert_eq!(
            big.to_string(),
            "1606938044258990275541962092341162602522202993782792835301376"
        );
        let mut huge = vec![0u8; DECIMAL_LIMIT];
        huge.push(1);
        let shown = BigInt::from_signed_bytes_le(&huge).to_string();
        assert!(shown.starts_with("0x1000"), "{}", &shown[..10]);
        assert_eq!(shown.len(), 2 + 1 + 2 * DECIMAL_LIMIT);
        huge.push(0x80); // negative now
        assert!(BigInt::from_signed_bytes_le(&huge)
            .to_string()
            .starts_with("-0x"));
    }

    #[test]
    fn orders_numerically() {
        let mut ints: Vec<BigInt> = [u128::MAX as i128, -5, 0, 300, -300]
            .iter()
            .map(|&n| BigInt::from(n))
            .collect();
        ints.push(BigInt::from(u128::MAX));
        ints.push(BigInt::from(i128::MIN));
        ints.sort();
        let shown: Vec<String> = ints.iter().map(BigInt::to_string).collect();
        assert_eq!(
            shown,
            [
                &i128::MIN.to_string(),
                "-300",
                "-5",
                "-1",
                "0",
                "300",
                &u128::MAX.to_string()
            ]
        );
    }
}
