//! The same behaviour from both implementations: each test runs against
//! epoll and against the `poll` fallback.

use std::time::{Duration, Instant};

use super::{poll, Interest, Ready};
use crate::sys::Socket;

/// Runs `$test` with each implementation's `ReadySet`.
macro_rules! both {
    ($($name:ident => $test:ident;)*) => {$(
        mod $name {
            #[test]
            fn epoll() {
                super::$test::<super::super::epoll::ReadySet>();
            }
            #[test]
            fn poll() {
                super::$test::<super::poll::ReadySet>();
            }
        }
    )*};
}

both! {
    members => members_are_reported_by_token_while_ready;
    writable => interest_in_room_reports_a_writable_member;
    removal => a_removed_member_is_no_longer_reported;
    timeout => an_empty_wait_ends_at_its_timeout;
}

/// What the tests need of either implementation.
trait Set: Sized {
    fn new() -> Self;
    fn add(&mut self, socket: &Socket, token: u64, interest: Interest);
    fn watch(&mut self, socket: &Socket, token: u64, interest: Interest);
    fn remove(&mut self, socket: &Socket, token: u64);
    fn ready(&mut self, timeout: Duration) -> Vec<u64>;
}

macro_rules! set_impl {
    ($ty:ty) => {
        impl Set for $ty {
            fn new() -> Self {
                <$ty>::new().unwrap()
            }
            fn add(&mut self, socket: &Socket, token: u64, interest: Interest) {
                <$ty>::add(self, socket.fd(), token, interest).unwrap()
            }
            fn watch(&mut self, socket: &Socket, token: u64, interest: Interest) {
                <$ty>::watch(self, socket.fd(), token, interest).unwrap()
            }
            fn remove(&mut self, socket: &Socket, token: u64) {
                <$ty>::remove(self, socket.fd(), token).unwrap()
            }
            fn ready(&mut self, timeout: Duration) -> Vec<u64> {
                let mut ready = Vec::new();
                self.wait(&mut ready, Some(timeout)).unwrap();
                let mut tokens: Vec<u64> = ready.iter().map(|r: &Ready| r.token).collect();
                tokens.sort_unstable();
                tokens
            }
        }
    };
}

set_impl!(super::epoll::ReadySet);
set_impl!(poll::ReadySet);

fn members_are_reported_by_token_while_ready<S: Set>() {
    let (a, b) = Socket::pair().unwrap();
    let (c, d) = Socket::pair().unwrap();
    let mut set = S::new();
    set.add(&b, 7, Interest::Readable);
    set.add(&d, 9, Interest::Readable);
    assert_eq!(set.ready(Duration::ZERO), [0u64; 0]);
    a.write(b"x").unwrap();
    c.write(b"y").unwrap();
    assert_eq!(set.ready(Duration::from_secs(30)), [7, 9]);
    // Level-triggered: still ready until read.
    assert_eq!(set.ready(Duration::ZERO), [7, 9]);
    set.watch(&d, 9, Interest::Nothing);
    assert_eq!(set.ready(Duration::ZERO), [7]);
    b.read(&mut [0u8; 1]).unwrap();
    assert_eq!(set.ready(Duration::ZERO), [0u64; 0]);
    set.watch(&d, 9, Interest::Readable);
    assert_eq!(set.ready(Duration::ZERO), [9]);
}

fn interest_in_room_reports_a_writable_member<S: Set>() {
    let (a, _b) = Socket::pair().unwrap();
    let mut set = S::new();
    set.add(&a, 1, Interest::Readable);
    assert_eq!(set.ready(Duration::ZERO), [0u64; 0]);
    set.watch(&a, 1, Interest::Writable);
    assert_eq!(set.ready(Duration::from_secs(30)), [1]);
}

fn a_removed_member_is_no_longer_reported<S: Set>() {
    let (a, b) = Socket::pair().unwrap();
    let (c, d) = Socket::pair().unwrap();
    let mut set = S::new();
    set.add(&b, 1, Interest::Readable);
    set.add(&d, 2, Interest::Readable);
    a.write(b"x").unwrap();
    c.write(b"y").unwrap();
    set.remove(&b, 1);
    assert_eq!(set.ready(Duration::from_secs(30)), [2]);
    set.remove(&d, 2);
    assert_eq!(set.ready(Duration::ZERO), [0u64; 0]);
}

fn an_empty_wait_ends_at_its_timeout<S: Set>() {
    let mut set = S::new();
    let start = Instant::now();
    assert_eq!(set.ready(Duration::from_millis(20)), [0u64; 0]);
    // Not a timing assertion: only that it did wait rather than return at once.
    assert!(start.elapsed() >= Duration::from_millis(20));
}

/// The epoll set's own descriptor: readable while a member is ready or
/// after the alarm, which the set never reports as a member.
#[test]
fn the_epoll_descriptor_is_readable_for_members_and_the_alarm() {
    use crate::sys::{self as unix, PollFd};
    /// Whether the set's descriptor polls readable within `timeout`.
    fn readable(set: &super::epoll::ReadySet, timeout: Duration) -> bool {
        let mut fds = [PollFd::readable(set.fd().unwrap())];
        unix::poll(&mut fds, Some(timeout)).unwrap() == 1
    }
    let mut set = super::epoll::ReadySet::new().unwrap();
    let (a, b) = Socket::pair().unwrap();
    set.add(b.fd(), 1, Interest::Readable).unwrap();
    assert!(!readable(&set, Duration::ZERO));
    a.write(b"x").unwrap();
    assert!(readable(&set, Duration::ZERO));
    b.read(&mut [0u8; 1]).unwrap();
    assert!(!readable(&set, Duration::ZERO));
    set.set_alarm(Some(Instant::now())).unwrap();
    assert!(readable(&set, Duration::from_secs(30)));
    let mut ready = Vec::new();
    set.wait(&mut ready, Some(Duration::ZERO)).unwrap();
    assert_eq!(ready, []);
    set.set_alarm(Some(Instant::now() + Duration::from_secs(3600)))
        .unwrap();
    assert!(
        !readable(&set, Duration::ZERO),
        "re-arming ends the alarm's readiness"
    );
    set.set_alarm(Some(Instant::now())).unwrap();
    assert!(readable(&set, Duration::from_secs(30)));
    set.set_alarm(None).unwrap();
    assert!(!readable(&set, Duration::ZERO));
}

/// The fallback has no descriptor for `wait` to watch, so `Listener`
/// falls back to its listening socket; its alarm must not make a wait end.
#[test]
fn the_poll_set_has_no_descriptor_and_an_alarm_changes_nothing() {
    let mut set = poll::ReadySet::new().unwrap();
    assert!(set.fd().is_none());
    set.set_alarm(Some(Instant::now())).unwrap();
    let mut ready = Vec::new();
    set.wait(&mut ready, Some(Duration::ZERO)).unwrap();
    assert_eq!(ready, []);
}
