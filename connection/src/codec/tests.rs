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

// The codec reads and writes bincode's format itself: it must agree with
// bincode byte for byte on every value, and on the odd encodings bincode
// accepts.

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

fn bincode_encode<T: Serialize + ?Sized>(value: &T) -> Option<Vec<u8>> {
    bincode::serde::encode_to_vec(value, config()).ok()
}

fn bincode_decode<T: DeserializeOwned>(payload: &[u8]) -> Option<T> {
    match bincode::serde::decode_from_slice::<T, _>(payload, config()) {
        Ok((value, used)) if used == payload.len() => Some(value),
        _ => None,
    }
}

/// Encodes `value`, decodes it back, and checks that bincode writes the
/// same bytes and reads them as the same value.
fn round_trips<T>(value: T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let payload = encode(&value).unwrap();
    assert_eq!(Some(&payload), bincode_encode(&value).as_ref(), "{value:?}");
    assert_eq!(decode::<T>(&payload).unwrap(), value, "{payload:?}");
    assert_eq!(bincode_decode::<T>(&payload).unwrap(), value);
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
enum Shape {
    Empty,
    Circle(f64),
    Rect { w: u32, h: u32 },
    Poly(Vec<(i16, i16)>, Option<Box<Shape>>),
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
struct Unit;

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct Wrapper(u64);

#[test]
fn agrees_with_bincode_on_every_kind_of_value() {
    for n in [
        0u64,
        1,
        250,
        251,
        255,
        256,
        65_535,
        65_536,
        u32::MAX as u64,
        u64::MAX,
    ] {
        round_trips(n);
        round_trips(n as u16);
        round_trips(n as u32);
        round_trips(n as u128 * 1_000_003);
        round_trips(n as i64);
        round_trips(-(n as i64));
        round_trips(n as i8);
        round_trips(n as u8);
        round_trips(n as i16);
        round_trips(-(n as i32));
        round_trips(-(n as i128) * 1_000_003);
    }
    for n in [i64::MIN, i64::MAX, i32::MIN as i64] {
        round_trips(n);
        round_trips(n as i128);
    }
    round_trips(u128::MAX);
    round_trips(i128::MIN);
    round_trips((true, false, 1.5f32, -2.25f64, f64::INFINITY));
    for c in ['a', '\0', 'é', '€', '𝄞', char::MAX] {
        round_trips(c);
    }
    round_trips(String::from("héllo wörld"));
    round_trips(vec![String::new(), "x".repeat(300)]);
    round_trips((Unit, (), Wrapper(300), Some(Wrapper(1)), None::<u8>));
    round_trips(
        std::collections::BTreeMap::from([(1u8, "one"), (2, "two")])
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect::<std::collections::BTreeMap<_, _>>(),
    );
    round_trips(vec![
        Shape::Empty,
        Shape::Circle(1.0),
        Shape::Rect { w: 3, h: 70_000 },
        Shape::Poly(
            vec![(1, -1), (i16::MIN, i16::MAX)],
            Some(Box::new(Shape::Empty)),
        ),
    ]);
    round_trips([7u32; 32]);
    round_trips(vec![(); 1000]);
}

#[test]
fn reads_the_wider_integer_encodings_bincode_accepts() {
    // Values that fit one byte, written in the wider forms: bincode takes
    // them, and stored data may hold them.
    for payload in [
        &[251u8, 5, 0][..],
        &[252, 5, 0, 0, 0],
        &[253, 5, 0, 0, 0, 0, 0, 0, 0],
    ] {
        assert_eq!(decode::<u64>(payload).unwrap(), 5);
        assert_eq!(bincode_decode::<u64>(payload), Some(5));
    }
    // ... but not wider than the type, nor the reserved marker.
    for payload in [&[252u8, 5, 0, 0, 0][..], &[255, 0, 0]] {
        assert_eq!(
            decode::<u16>(payload).unwrap_err().kind(),
            ErrorKind::Decode
        );
        assert_eq!(bincode_decode::<u16>(payload), None);
    }
}

/// Whether both this decoder and bincode refuse `payload` as a `T`.
fn both_refuse<T: DeserializeOwned>(payload: &[u8]) -> bool {
    decode::<T>(payload).is_err() && bincode_decode::<T>(payload).is_none()
}

#[test]
fn rejects_what_bincode_rejects() {
    assert!(both_refuse::<bool>(&[2]), "bool 2");
    assert!(both_refuse::<Option<u8>>(&[2, 0]), "Option tag 2");
    assert!(
        both_refuse::<char>(&[0x80]),
        "lone continuation byte as char"
    );
    assert!(
        both_refuse::<char>(&[0xED, 0xA0, 0x80]),
        "surrogate as char"
    );
    assert!(both_refuse::<char>(&[0xF0, 0x9D]), "char cut short");
    assert!(
        both_refuse::<String>(&[2, 0xC3, 0x28]),
        "invalid UTF-8 string"
    );
    assert!(both_refuse::<Shape>(&[9]), "unknown variant");
    assert!(
        both_refuse::<u32>(&[253, 0, 0, 0, 0, 0, 0, 0, 0]),
        "u64 marker for a u32"
    );
}

// The bounds.

/// `ones` `Some` tags then a `None`: a chain of `ones + 1` `Nest`s, each
/// two levels deep (the newtype and the `Option` holding a value).
fn nest_payload(ones: usize) -> Vec<u8> {
    let mut payload = vec![1u8; ones];
    payload.push(0);
    payload
}

#[derive(serde::Deserialize, Debug)]
struct Nest(#[allow(dead_code)] Option<Box<Nest>>);

#[test]
fn nesting_up_to_the_limit_decodes_and_deeper_is_a_decode_error() {
    let deepest = MAX_DECODE_DEPTH / 2 - 1;
    assert!(decode::<Nest>(&nest_payload(deepest)).is_ok());
    for ones in [deepest + 1, 50_000, 1_000_000] {
        let err = decode::<Nest>(&nest_payload(ones)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert!(source.contains("nested more than 256"), "{source}");
    }
}

#[test]
fn nesting_through_sequences_and_enums_is_bounded_too() {
    // Shape::Poly(vec![], Some(Box::new(Shape::Poly(...)))): variant 3, an
    // empty Vec, a Some tag; enum and Option are a level each.
    let mut payload = [3u8, 0, 1].repeat(200_000);
    payload.push(0);
    assert_eq!(
        decode::<Shape>(&payload).unwrap_err().kind(),
        ErrorKind::Decode
    );
    // Vec<Vec<...>> as serde_value-like recursion through sequences.
    #[derive(serde::Deserialize, Debug)]
    struct Tree(#[allow(dead_code)] Vec<Tree>);
    let mut payload = vec![1u8; 300_000];
    payload.push(0);
    assert_eq!(
        decode::<Tree>(&payload).unwrap_err().kind(),
        ErrorKind::Decode
    );
}

#[test]
fn a_forged_count_of_empty_elements_is_refused_without_looping() {
    let mut forged = vec![253];
    forged.extend_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(
        decode::<Vec<()>>(&forged).unwrap_err().kind(),
        ErrorKind::Decode
    );
    assert_eq!(
        decode::<std::collections::HashMap<(), ()>>(&forged)
            .unwrap_err()
            .kind(),
        ErrorKind::Decode
    );
    // Just past the allowance: claimed count fits the check up front only
    // when bytes are left, so spread them over two sequences.
    let half = encode(&vec![(); MAX_EMPTY_ELEMENTS / 2 + 1]).unwrap();
    let two = [half.clone(), half].concat();
    assert_eq!(
        decode::<(Vec<()>, Vec<()>)>(&two).unwrap_err().kind(),
        ErrorKind::Decode
    );
    let allowed = encode(&(
        vec![(); MAX_EMPTY_ELEMENTS / 2],
        vec![Unit; MAX_EMPTY_ELEMENTS / 2],
    ))
    .unwrap();
    assert!(decode::<(Vec<()>, Vec<Unit>)>(&allowed).is_ok());
}

#[test]
fn elements_that_occupy_bytes_are_not_counted_as_empty() {
    let many = vec![0u8; MAX_EMPTY_ELEMENTS * 2];
    round_trips(many);
    let pairs = vec![((), 1u8); MAX_EMPTY_ELEMENTS + 5];
    round_trips(pairs);
}

#[test]
fn a_claimed_length_beyond_the_bytes_left_is_refused() {
    // A string claiming one byte more than there is, at every size class
    // of the length varint.
    for len in [3usize, 300, 70_000] {
        let mut payload = encode(&"x".repeat(len)).unwrap();
        payload.pop();
        let err = decode::<String>(&payload).unwrap_err();
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert!(source.contains(&format!("{len} bytes claimed")), "{source}");
    }
}

/// A byte string that serializes with `serialize_bytes`, as `serde_bytes`
/// does, rather than as a sequence.
#[derive(Debug, PartialEq)]
struct Bytes(Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, bytes: &[u8]) -> std::result::Result<Bytes, E> {
                Ok(Bytes(bytes.to_vec()))
            }
        }
        deserializer.deserialize_bytes(Visit)
    }
}

#[test]
fn byte_strings_round_trip_as_bincode_writes_them() {
    round_trips(Bytes(vec![]));
    round_trips(Bytes((0..=255).collect()));
}

#[test]
fn refuses_to_encode_what_bincode_refuses() {
    /// A sequence that does not say its length up front.
    struct Unsized;
    impl Serialize for Unsized {
        fn serialize<S: serde::Serializer>(
            &self,
            serializer: S,
        ) -> std::result::Result<S::Ok, S::Error> {
            serializer.collect_seq((0..3u8).filter(|n| n % 2 == 0))
        }
    }
    let mut out = vec![9];
    let err = encode_into(&(1u8, Unsized), &mut out).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Encode);
    assert_eq!(out, [9], "a failed encode leaves the buffer as it was");
    assert!(bincode_encode(&Unsized).is_none());
}

#[test]
fn collect_str_writes_a_string_as_bincode_does() {
    struct Shown;
    impl Serialize for Shown {
        fn serialize<S: serde::Serializer>(
            &self,
            serializer: S,
        ) -> std::result::Result<S::Ok, S::Error> {
            serializer.collect_str(&format_args!("{}-{}", 4, 2))
        }
    }
    assert_eq!(encode(&Shown).unwrap(), [3, b'4', b'-', b'2']);
    assert_eq!(bincode_encode(&Shown).unwrap(), [3, b'4', b'-', b'2']);
}

mod agreement {
    //! Random values of every kind serde has, encoded by both.

    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn shape() -> impl Strategy<Value = Shape> {
        let leaf = prop_oneof![
            Just(Shape::Empty),
            any::<f64>().prop_map(Shape::Circle),
            (any::<u32>(), any::<u32>()).prop_map(|(w, h)| Shape::Rect { w, h }),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            (
                prop::collection::vec(any::<(i16, i16)>(), 0..4),
                prop::option::of(inner),
            )
                .prop_map(|(points, next)| Shape::Poly(points, next.map(Box::new)))
        })
    }

    type Scalars = (
        (bool, i8, i16, i32, i64, i128),
        (u8, u16, u32, u64, u128, char),
    );
    type Containers = (
        f32,
        f64,
        String,
        Vec<u8>,
        Option<u16>,
        Vec<Option<i64>>,
        BTreeMap<String, u32>,
    );

    proptest! {
        #[test]
        fn encodes_every_value_as_bincode_does_and_reads_it_back(
            scalars in any::<Scalars>(),
            containers in any::<Containers>(),
            shape in shape(),
        ) {
            let value = (scalars, containers, shape);
            let payload = encode(&value).unwrap();
            prop_assert_eq!(Some(payload.clone()), bincode_encode(&value));
            // Floats may be NaN, which is not equal to itself: compare the
            // bytes of the decoded value instead.
            let decoded: (Scalars, Containers, Shape) = decode(&payload).unwrap();
            prop_assert_eq!(encode(&decoded).unwrap(), payload);
        }
    }
}

#[test]
fn values_across_the_staging_buffer_encode_as_bincode_does() {
    // The encoder stages 4096 bytes at a time and hands byte strings of
    // that length or more to its downstream apart: every split of a value
    // around those lengths must still be bincode's bytes.
    for before in [0usize, 1, 4090, 4095, 4096, 5000] {
        for len in [0usize, 1, 4095, 4096, 4097, 9000, 70_000] {
            let filler: Vec<u8> = (0..before).map(|i| i as u8).collect();
            let bytes = serde_bytes::ByteBuf::from(vec![0xabu8; len]);
            let text = "é".repeat(len / 2);
            let floats: Vec<f64> = (0..len / 8).map(|i| i as f64).collect();
            let value = (filler, bytes, text, floats);
            let payload = encode(&value).unwrap();
            assert_eq!(
                Some(&payload),
                bincode_encode(&value).as_ref(),
                "{before} {len}"
            );
            let staged = super::encode_to(&value, Vec::new()).ok().unwrap();
            assert_eq!(staged, payload, "staged: {before} {len}");
            assert_eq!(super::encoded_len(&value).unwrap(), payload.len() as u64);
            type Value = (Vec<u8>, serde_bytes::ByteBuf, String, Vec<f64>);
            assert_eq!(decode::<Value>(&payload).unwrap(), value);
        }
    }
}

#[test]
fn sequences_of_scalars_around_the_one_byte_varint_read_as_bincode_writes_them() {
    // The elements' fast path reads one-byte varints (below 251, after
    // zigzag for signed types) itself and leaves longer ones, and
    // anything it does not accept, to the decoder.
    fn agrees<T>(values: Vec<T>)
    where
        T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let payload = bincode_encode(&values).unwrap();
        assert_eq!(encode(&values).unwrap(), payload);
        assert_eq!(decode::<Vec<T>>(&payload).unwrap(), values);
    }
    agrees((0..=300u16).chain([u16::MAX]).collect());
    agrees((0..=300u32).chain([u32::MAX]).collect());
    agrees((0..=300u64).chain([u64::MAX]).collect());
    agrees((-200..=200i16).chain([i16::MIN, i16::MAX]).collect());
    agrees((-200..=200i32).chain([i32::MIN, i32::MAX]).collect());
    agrees((-200..=200i64).chain([i64::MIN, i64::MAX]).collect());
    agrees((0..=255u8).map(|b| b as i8).collect::<Vec<i8>>());
    agrees(vec![0.5f32, -0.0, f32::MAX, f32::MIN_POSITIVE]);
    agrees(vec![true, false, true]);
    // A bool that is neither 0 nor 1, and a sequence cut inside an f64,
    // are the decoder's errors.
    let err = decode::<Vec<bool>>(&[3, 1, 2, 0]).unwrap_err();
    assert!(format!("{err:#}").contains("2 is not a bool"), "{err:#}");
    let mut cut = encode(&vec![1.5f64, 2.5]).unwrap();
    cut.pop();
    assert_eq!(
        decode::<Vec<f64>>(&cut).unwrap_err().kind(),
        ErrorKind::Decode
    );
    // A visitor that stops early leaves the rest over, as before.
    assert_eq!(
        decode::<(u8, [u8; 2])>(&[9, 1, 2, 3]).unwrap_err().kind(),
        ErrorKind::Decode
    );
}

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
