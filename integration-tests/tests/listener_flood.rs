//! Thousands of peers that connect and say nothing, and hundreds that send
//! garbage, all connected at once: a `Listener` with default settings must
//! still accept a good client, while every one of them stays connected,
//! and leave no descriptor or thread behind.
//!
//! The flood is as large as `ulimit -n` allows (the listener's end and the
//! peer's end of each connection are both in this process), up to the
//! 5,000 + 1,000 the listener is built for; a smaller one says so. No
//! assertion is on time: PATIENCE only bounds each wait so that a listener
//! that starves the good client fails instead of hanging. The full flood,
//! timed, is `cargo bench -p integration-tests --bench handshake_flood`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use connection::{Address, Client, ErrorKind, Listener};
use integration_tests::{
    census, descriptor_limits, is_open_and_quiet, patient_tcp_listener, read_raw_message, Flood,
};

const KEY: &[u8] = b"flood key";
const SILENT: usize = 5_000;
const GARBAGE: usize = 1_000;
/// Descriptors left for everything but the flood's two per peer.
const HEADROOM: u64 = 64;
/// The longest any one wait may take before the test gives up. A listener
/// that starves the good client (one thread per handshake, 64 at most, as
/// before) fails here rather than hang.
const PATIENCE: Duration = Duration::from_secs(120);

/// What the serving thread saw.
struct Served {
    /// The first message of each connection accepted, and its peer.
    accepted: Vec<(Vec<u8>, Option<Address>)>,
    /// The kind of each failed handshake, in order.
    failures: Vec<ErrorKind>,
}

/// Accepts in a thread until `stop` and, then, until `failures_expected`
/// failures are in (or PATIENCE has passed).
fn serve(
    mut listener: Listener,
    stop: Arc<AtomicBool>,
    failures_expected: Arc<AtomicUsize>,
) -> thread::JoinHandle<Served> {
    thread::spawn(move || {
        let mut served = Served {
            accepted: Vec::new(),
            failures: Vec::new(),
        };
        let mut stopping_since = None;
        loop {
            if stop.load(Ordering::SeqCst) {
                let since = *stopping_since.get_or_insert_with(Instant::now);
                if served.failures.len() >= failures_expected.load(Ordering::SeqCst)
                    || since.elapsed() > PATIENCE
                {
                    return served;
                }
            }
            match listener.accept_timeout(Duration::from_millis(50)) {
                Ok(None) => {}
                Ok(Some(mut conn)) => {
                    let first = match conn.poll(Some(PATIENCE)) {
                        Ok(true) => conn.recv_bytes().unwrap_or_default(),
                        _ => Vec::new(),
                    };
                    let _ = conn.send_bytes(b"served");
                    served
                        .accepted
                        .push((first, listener.last_accepted().cloned()));
                }
                Err(err) => served.failures.push(err.kind()),
            }
        }
    })
}

/// One listener and one client, so that whatever the library or std sets
/// up once (and keeps) is there before the census.
fn warm_up() {
    let mut listener = Listener::builder()
        .authkey(KEY)
        .bind(&Address::localhost(0))
        .unwrap();
    let address = listener.address().clone();
    let client = thread::spawn(move || Client::connect_with_authkey(&address, KEY).map(drop));
    listener.accept().unwrap();
    client.join().unwrap().unwrap();
}

#[test]
fn a_good_client_is_accepted_while_thousands_of_peers_flood_the_listener() {
    warm_up();
    let Some(before) = census() else {
        integration_tests::report_skip("no /proc/self to count descriptors and threads");
        return;
    };
    let (soft, _) = descriptor_limits();
    let fit = soft.saturating_sub(before.descriptors as u64 + HEADROOM) / 2;
    let peers = usize::try_from(fit)
        .unwrap_or(usize::MAX)
        .min(SILENT + GARBAGE);
    let garbage = peers * GARBAGE / (SILENT + GARBAGE);
    let silent = peers - garbage;
    if peers < SILENT + GARBAGE {
        integration_tests::report_skip(&format!(
            "the full flood of {SILENT} silent + {GARBAGE} garbage peers needs about {} \
             descriptors and `ulimit -n` is {soft}: flooding with {silent} + {garbage}",
            2 * (SILENT + GARBAGE) as u64 + HEADROOM + before.descriptors as u64,
        ));
    }
    assert!(
        silent > 0,
        "ulimit -n {soft} leaves no room for a single peer"
    );

    let (listener, addr) = patient_tcp_listener(KEY);
    let address = listener.address().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let failures_expected = Arc::new(AtomicUsize::new(usize::MAX));
    let server = serve(listener, stop.clone(), failures_expected.clone());

    let flood = Flood::connect(addr, silent, garbage, PATIENCE).unwrap_or_else(|err| {
        panic!("the listener stopped taking connections during the flood: {err}")
    });
    let flooders: std::collections::HashSet<SocketAddr> = flood.silent_addresses();

    let mut good = Client::new()
        .authkey(KEY)
        .connect_timeout(Some(PATIENCE))
        .handshake_timeout(Some(PATIENCE))
        .connect(&address)
        .unwrap_or_else(|err| {
            panic!(
                "the good client was not accepted with {silent} + {garbage} peers connected: {err}"
            )
        });
    good.send_bytes(b"the good client").unwrap();
    assert!(
        good.poll(Some(PATIENCE)).unwrap(),
        "the good client was not served"
    );
    assert_eq!(good.recv_bytes().unwrap(), b"served");

    // Every silent peer's handshake had started (its challenge came) and
    // none has ended: the good client did not wait for any of them.
    let mut silent_peers = flood.silent;
    for (i, peer) in silent_peers.iter_mut().enumerate() {
        let challenge = read_raw_message(peer, PATIENCE)
            .unwrap_or_else(|err| panic!("silent peer {i} had no challenge: {err}"));
        assert!(challenge.starts_with(b"#CHALLENGE#"), "silent peer {i}");
        assert!(is_open_and_quiet(peer), "silent peer {i} was let go");
    }

    failures_expected.store(garbage, Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    let served = server.join().expect("the serving thread panicked");
    assert_eq!(
        served.accepted.len(),
        1,
        "only the good client authenticates"
    );
    let (first, peer) = &served.accepted[0];
    assert_eq!(first, b"the good client");
    match peer {
        Some(Address::Tcp(peer)) => {
            assert!(!flooders.contains(peer), "{peer} is a silent flood peer")
        }
        other => panic!("the good client's address: {other:?}"),
    }
    assert_eq!(served.failures.len(), garbage, "{:?}", served.failures);
    for kind in &served.failures {
        assert!(
            matches!(kind, ErrorKind::Protocol | ErrorKind::AuthenticationFailed),
            "{:?}",
            served.failures
        );
    }

    drop((good, silent_peers, flood.garbage));
    let after = census().unwrap();
    assert_eq!(after, before, "descriptors or threads left behind");
}
