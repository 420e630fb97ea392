//! What the benches share: the "small struct", a typical request; byte
//! patterns; a peer process that is this bench binary re-executed.
//!
//! Each bench is its own crate and uses only some of these.
#![allow(dead_code)]

use std::process::{Child, Command};

use connection::Connection;
use serde::de::DeserializeOwned;
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

/// A payload whose bytes depend on their position, so that a message that
/// arrived shifted or mixed up would not compare equal.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Re-executes this bench binary with `peer_env` set, as the peer of the
/// measurements, passing it each connection under its variable name.
/// Our copies of the passed ends are closed once it runs, so that its
/// death is our end of file.
pub fn spawn_peer(peer_env: &str, ends: Vec<(Connection, &str)>) -> Child {
    let mut command = Command::new(std::env::current_exe().expect("current_exe"));
    command.env(peer_env, "1");
    for (end, name) in ends {
        end.pass_to_child(&mut command, name)
            .expect("pass a connection");
    }
    let peer = command.spawn().expect("spawn peer");
    drop(command);
    peer
}

/// The parent's side of the control connection: tells the peer what
/// comes next and waits until it is ready, so that a timed section starts
/// with both sides in place.
pub fn order<J: Serialize>(control: &mut Connection, job: &J) {
    control.send(job).expect("send job");
    let ready: String = control.recv().expect("peer ready");
    assert_eq!(ready, "ready");
}

/// The peer's side: the next job, answered with "ready", or `None` when
/// the parent closed the control connection.
pub fn next_job<J: DeserializeOwned>(control: &mut Connection) -> Option<J> {
    let job = match control.recv() {
        Ok(job) => job,
        Err(err) if err.kind() == connection::ErrorKind::Eof => return None,
        Err(err) => panic!("peer: control: {err}"),
    };
    control.send("ready").expect("peer: ready");
    Some(job)
}
