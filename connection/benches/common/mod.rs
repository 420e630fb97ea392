//! What the benches share: the "small struct", a typical request.

use serde::{Deserialize, Serialize};

/// The "small struct" of the struct round trip: a typical request.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Small {
    id: u64,
    op: String,
    args: Vec<i32>,
    ratio: f64,
    reply: Option<u32>,
}

/// The one value of [`Small`] the benches send and decode.
pub fn small() -> Small {
    Small {
        id: 0x1234_5678,
        op: "resize_thumbnail".to_string(),
        args: vec![640, 480, -1, 90],
        ratio: 1.5,
        reply: Some(7),
    }
}
