//! Vectors below were made with CPython's `hmac` module:
//!
//! ```python
//! import hmac
//! key, nonce = b"secret key", bytes(range(40))
//! for d in ("sha256", "sha384", "md5"):
//!     print(d, hmac.new(key, b"{%s}" % d.encode() + nonce, d).hexdigest())
//! print(hmac.new(key, bytes(range(100, 120)), "md5").hexdigest())  # legacy
//! print(hmac.new(key, b"{sha256}" + nonce, "md5").hexdigest())     # 3.11 client
//! ```

use super::*;

const KEY: &[u8] = b"secret key";
const SHA256: &str = "de660527caa52c2d8313422ff6496f5aa46b4ddfca5f20b8da5748f901d3dd5b";
const SHA384: &str = "c8e9fe2bdeb806e0decf0717a058be72c597f25a968232be34b30566dc0a6018\
                      b1f01212ca18eb95382dc585f89622c8";
const MD5_PREFIXED: &str = "4f029a779bdd8985c1f1ad9a0f4b9135";
const LEGACY_MD5: &str = "316925bc6c3c42d0accaaf0bdeec1c0b";
const BARE_MD5_OF_SHA256_CHALLENGE: &str = "b60d7fd0e70a7da2749f805c65053205";

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn challenge(digest: &str) -> Vec<u8> {
    let mut c = format!("{{{digest}}}").into_bytes();
    c.extend(0..40u8);
    c
}

fn prefixed(digest: &str, mac: &str) -> Vec<u8> {
    let mut r = format!("{{{digest}}}").into_bytes();
    r.extend(hex(mac));
    r
}

#[test]
fn responses_match_cpython_hmac() {
    for (digest, mac) in [
        ("sha256", SHA256),
        ("sha384", SHA384),
        ("md5", MD5_PREFIXED),
    ] {
        let got = respond(KEY, &challenge(digest), false).unwrap();
        assert_eq!(got, prefixed(digest, mac), "{digest}");
    }
    let legacy: Vec<u8> = (100..120).collect();
    assert_eq!(respond(KEY, &legacy, false).unwrap(), hex(LEGACY_MD5));
}

#[test]
fn challenger_accepts_right_answers_only() {
    let c = challenge("sha256");
    check_response(KEY, &c, &prefixed("sha256", SHA256), false).unwrap();
    // The responder may choose another digest: its prefix is under the MAC.
    let sha384_of_sha256_challenge = Digest::Sha384.respond(KEY, &c, true).unwrap();
    check_response(KEY, &c, &sha384_of_sha256_challenge, true).unwrap();
    // A Python 3.11 client's bare MD5 of the whole prefixed challenge.
    check_response(KEY, &c, &hex(BARE_MD5_OF_SHA256_CHALLENGE), false).unwrap();

    let mut flipped = prefixed("sha256", SHA256);
    *flipped.last_mut().unwrap() ^= 1;
    let err = check_response(KEY, &c, &flipped, false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthenticationFailed);
    let err = check_response(b"other key", &c, &prefixed("sha256", SHA256), false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthenticationFailed);
    // Right digest name, truncated tag.
    let short = &prefixed("sha256", SHA256)[..30];
    assert!(check_response(KEY, &c, short, false).is_err());
}

#[test]
fn strict_mode_refuses_md5_in_both_forms() {
    let c = challenge("sha256");
    let err = check_response(KEY, &c, &hex(BARE_MD5_OF_SHA256_CHALLENGE), true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthenticationFailed);
    assert!(err.to_string().contains("strict"), "{err}");
    let md5 = Digest::Md5.respond(KEY, &c, true).unwrap();
    assert!(check_response(KEY, &c, &md5, true).is_err());
    check_response(KEY, &c, &md5, false).unwrap();

    let legacy: Vec<u8> = (100..120).collect();
    assert!(respond(KEY, &legacy, true).is_err());
    assert!(respond(KEY, &challenge("md5"), true).is_err());
    respond(KEY, &challenge("sha384"), true).unwrap();
}

#[test]
fn unsupported_and_malformed_challenges_are_refused() {
    let err = respond(KEY, &challenge("sha3_256"), false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthenticationFailed);
    assert!(err.to_string().contains("sha3_256"), "{err}");
    for bad in [
        &b"{sha256"[..],
        b"sha256}xxxxxxxxxxxxxxxxxxxxxxxxx",
        b"{sha512}xxxxxxxxxxxxxxxx",
    ] {
        let mut long = bad.to_vec();
        long.resize(48, b'x');
        assert_eq!(
            respond(KEY, &long, false).unwrap_err().kind(),
            ErrorKind::Protocol
        );
    }
    assert_eq!(
        respond(KEY, b"short", false).unwrap_err().kind(),
        ErrorKind::Protocol
    );
    assert_eq!(
        respond(KEY, b"", false).unwrap_err().kind(),
        ErrorKind::Protocol
    );
}
