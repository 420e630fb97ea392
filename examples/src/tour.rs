//! The values of the `pipe_tour` program: the original documentation sends
//! the Python list `[1, 'hello', None]`, whose items have different types.
//! In Rust such a list is a `Vec` of an enum.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One item of a list of mixed types, like a Python list's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Item {
    /// An integer, Python's `int`.
    Int(i64),
    /// A string, Python's `str`.
    Str(String),
    /// Python's `None`.
    None,
}

/// The list the tour sends: `[1, 'hello', None]`.
pub fn tour_list() -> Vec<Item> {
    vec![Item::Int(1), Item::Str("hello".into()), Item::None]
}

/// Displays a list the way Python prints it, so the tour's output can be
/// read side by side with the original session.
///
/// # Examples
///
/// ```
/// use examples::tour::{python_list, tour_list};
///
/// assert_eq!(python_list(&tour_list()), "[1, 'hello', None]");
/// ```
pub fn python_list(items: &[Item]) -> String {
    let items: Vec<String> = items.iter().map(Item::to_string).collect();
    format!("[{}]", items.join(", "))
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Int(n) => write!(f, "{n}"),
            // Python's repr, close enough for the strings of the tour.
            Item::Str(s) => write!(f, "'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
            Item::None => f.write_str("None"),
        }
    }
}

/// The bytes of `values` as native-endian `i32`s: what Python's
/// `array('i', ...)` hands to `send_bytes`.
pub fn i32_bytes(values: &[i32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

/// Reads native-endian `i32`s back from bytes (a trailing partial value is
/// ignored).
pub fn i32s_from_bytes(bytes: &[u8]) -> Vec<i32> {
    bytes
        .chunks_exact(4)
        .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_survives_a_pipe() {
        let (mut a, mut b) = connection::pipe().unwrap();
        a.send(&tour_list()).unwrap();
        assert_eq!(b.recv::<Vec<Item>>().unwrap(), tour_list());
    }

    #[test]
    fn strings_are_quoted_like_python() {
        assert_eq!(Item::Str("it's".into()).to_string(), r"'it\'s'");
    }

    #[test]
    fn i32_bytes_round_trip() {
        let values = [0, 1, -2, i32::MAX, i32::MIN];
        assert_eq!(i32s_from_bytes(&i32_bytes(&values)), values);
    }
}
