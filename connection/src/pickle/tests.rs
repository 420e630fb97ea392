//! What the codec's private parts promise: a decode within a budget, and
//! the size of a parsed node. Its behaviour through the public API is
//! tested in `connection/tests/api/pickle.rs`.

use serde::Deserialize;

use super::decode_with_budget;

#[derive(Deserialize, Debug)]
struct Nest(#[allow(dead_code)] Vec<Nest>);

#[test]
fn memo_reuse_is_held_to_the_budget() {
    // The same shape, ten levels deep, within a budget just too small.
    let shallow = |levels: u32| {
        let mut pickle = b"\x80\x04]\x94".to_vec();
        for level in 0..levels {
            pickle.extend(b"](h");
            pickle.push(level as u8);
            pickle.push(b'h');
            pickle.push(level as u8);
            pickle.extend(b"e\x94");
        }
        pickle.push(b'.');
        pickle
    };
    // 2^11 - 1 lists in all.
    assert!(decode_with_budget::<Nest>(&shallow(10), 2047).is_ok());
    let err = decode_with_budget::<Nest>(&shallow(10), 2046).unwrap_err();
    assert!(format!("{err:#}").contains("budget"), "{err:#}");
}

#[test]
fn a_parsed_value_is_as_small_as_the_memory_bound_says() {
    // The module docs derive "about 80 bytes per byte of pickle" from this.
    assert_eq!(std::mem::size_of::<super::node::Node>(), 32);
}
