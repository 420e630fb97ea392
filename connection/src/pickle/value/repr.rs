//! `Debug` for [`Value`]: Python's `repr`.

use std::fmt::{self, Debug, Formatter, Write};

use super::Value;

impl Debug for Value {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Value::None => f.write_str("None"),
            Value::Bool(true) => f.write_str("True"),
            Value::Bool(false) => f.write_str("False"),
            Value::Int(n) => write!(f, "{n}"),
            Value::BigInt(n) => write!(f, "{n}"),
            Value::Float(x) => f.write_str(&float_repr(*x)),
            Value::Str(text) => str_repr(text, f),
            Value::Bytes(bytes) => bytes_repr(bytes, f),
            Value::ByteArray(bytes) => {
                f.write_str("bytearray(")?;
                bytes_repr(bytes, f)?;
                f.write_str(")")
            }
            Value::List(items) => items_repr("[", items, "]", f),
            Value::Tuple(items) if items.len() == 1 => items_repr("(", items, ",)", f),
            Value::Tuple(items) => items_repr("(", items, ")", f),
            Value::Set(items) if items.is_empty() => f.write_str("set()"),
            Value::Set(items) => items_repr("{", items, "}", f),
            Value::FrozenSet(items) if items.is_empty() => f.write_str("frozenset()"),
            Value::FrozenSet(items) => items_repr("frozenset({", items, "})", f),
            Value::Dict(dict) => {
                f.write_str("{")?;
                for (at, (key, value)) in dict.iter().enumerate() {
                    if at > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{key:?}: {value:?}")?;
                }
                f.write_str("}")
            }
        }
    }
}

fn items_repr<'a>(
    open: &str,
    items: impl IntoIterator<Item = &'a Value>,
    close: &str,
    f: &mut Formatter<'_>,
) -> fmt::Result {
    f.write_str(open)?;
    for (at, item) in items.into_iter().enumerate() {
        if at > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item:?}")?;
    }
    f.write_str(close)
}

/// Python's `repr(float)`: the shortest digits that read back the same,
/// positional for exponents from -4 to 15, else `1e+16` style.
pub(super) fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    // Rust's `{:e}` gives the same shortest digits: "-1.2345e-5".
    let scientific = format!("{x:e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("{:e} has an e");
    let exponent: i32 = exponent.parse().expect("{:e} exponent");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|&c| c != '.').collect();
    if (-4..16).contains(&exponent) {
        let point = exponent + 1; // digits before the point
        if point <= 0 {
            let zeros = "0".repeat(point.unsigned_abs() as usize);
            return format!("{sign}0.{zeros}{digits}");
        }
        let point = point as usize;
        if digits.len() <= point {
            let zeros = "0".repeat(point - digits.len());
            return format!("{sign}{digits}{zeros}.0");
        }
        return format!("{sign}{}.{}", &digits[..point], &digits[point..]);
    }
    let (first, rest) = digits.split_at(1);
    let rest = if rest.is_empty() {
        String::new()
    } else {
        format!(".{rest}")
    };
    let exponent_sign = if exponent < 0 { '-' } else { '+' };
    format!(
        "{sign}{first}{rest}e{exponent_sign}{:02}",
        exponent.unsigned_abs()
    )
}

/// The quote Python's repr picks: `'` unless the text has `'` and no `"`.
fn quote(has_single: bool, has_double: bool) -> char {
    if has_single && !has_double {
        '"'
    } else {
        '\''
    }
}

/// Characters Python's `str.isprintable` rejects, as near as this gets
/// without Unicode's tables: controls, separators other than the space,
/// and the common invisible format characters.
fn is_unprintable(c: char) -> bool {
    c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
}

fn str_repr(text: &str, f: &mut Formatter<'_>) -> fmt::Result {
    let quote = quote(text.contains('\''), text.contains('"'));
    f.write_char(quote)?;
    for c in text.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c == quote => write!(f, "\\{c}")?,
            c if is_unprintable(c) => match u32::from(c) {
                code @ 0..=0xff => write!(f, "\\x{code:02x}")?,
                code @ 0x100..=0xffff => write!(f, "\\u{code:04x}")?,
                code => write!(f, "\\U{code:08x}")?,
            },
            c => f.write_char(c)?,
        }
    }
    f.write_char(quote)
}

fn bytes_repr(bytes: &[u8], f: &mut Formatter<'_>) -> fmt::Result {
    let quote = quote(bytes.contains(&b'\''), bytes.contains(&b'"'));
    write!(f, "b{quote}")?;
    for &byte in bytes {
        match byte {
            b'\\' => f.write_str("\\\\")?,
            b'\n' => f.write_str("\\n")?,
            b'\r' => f.write_str("\\r")?,
            b'\t' => f.write_str("\\t")?,
            b if char::from(b) == quote => write!(f, "\\{quote}")?,
            0x20..=0x7e => f.write_char(char::from(byte))?,
            _ => write!(f, "\\x{byte:02x}")?,
        }
    }
    f.write_char(quote)
}
