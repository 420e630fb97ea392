//! [`Address`]: where a [`Listener`](crate::Listener) listens and a
//! [`Client`](crate::Client) connects, written as a string.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

#[cfg(any(target_os = "linux", target_os = "android"))]
use interprocess::local_socket::ToNsName;
use interprocess::local_socket::{GenericFilePath, Name, ToFsName};
#[cfg(any(target_os = "linux", target_os = "android"))]
use interprocess::os::unix::local_socket::AbstractNsUdSocket;

use crate::error::{Error, ErrorKind};

/// The longest name `sun_path` can hold on Linux, less the terminating (or,
/// for abstract names, leading) NUL byte.
const MAX_UNIX_NAME: usize = 107;

/// A socket address: a Unix socket path, a name in the Linux abstract
/// namespace, or a TCP endpoint.
///
/// # Syntax
///
/// | string                  | meaning                                          |
/// |-------------------------|--------------------------------------------------|
/// | `unix:/run/app.sock`    | Unix socket at that path (relative paths too)    |
/// | `/run/app.sock`         | the same: a string starting with `/` is a path   |
/// | `abstract:app`          | Linux abstract-namespace Unix socket `\0app`     |
/// | `tcp:127.0.0.1:7000`    | TCP over IPv4                                    |
/// | `tcp:[::1]:7000`        | TCP over IPv6 (brackets required)                |
/// | `tcp:db.local:7000`     | TCP to a host name, resolved at connect or bind  |
/// | `127.0.0.1:7000`, `localhost:7000`, `[::1]:7000` | bare `HOST:PORT` means TCP |
///
/// The bare forms exist so that a command-line flag such as
/// `--connect HOST:PORT` or `--socket /run/app.sock` parses without a
/// scheme. [`Display`](fmt::Display) always writes the prefixed form, which
/// parses back to the same address. Anything else is
/// [`ErrorKind::InvalidInput`], and the error quotes the text.
///
/// # Examples
///
/// ```
/// use connection::Address;
///
/// let a: Address = "tcp:[::1]:7000".parse()?;
/// assert_eq!(a, Address::Tcp("[::1]:7000".parse().unwrap()));
/// let b: Address = "localhost:7000".parse()?;
/// assert_eq!(b.to_string(), "tcp:localhost:7000");
/// let c: Address = "/tmp/app.sock".parse()?;
/// assert_eq!(c.to_string(), "unix:/tmp/app.sock");
/// assert!("udp:1.2.3.4:5".parse::<Address>().is_err());
/// # Ok::<(), connection::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// A Unix socket at a filesystem path.
    Unix(PathBuf),
    /// A Unix socket in the Linux abstract namespace: no file, gone when
    /// the listener closes. The name is given without its leading NUL.
    Abstract(String),
    /// A TCP endpoint given by IP address.
    Tcp(SocketAddr),
    /// A TCP endpoint given by host name, resolved when connecting or binding.
    TcpHost {
        /// The host name, such as `localhost`.
        host: String,
        /// The port.
        port: u16,
    },
}

impl Address {
    /// TCP on the loopback interface, IPv4, at `port` (0: any free port,
    /// see [`Listener::address`](crate::Listener::address)).
    ///
    /// # Examples
    ///
    /// ```
    /// let a = connection::Address::localhost(7000);
    /// assert_eq!(a.to_string(), "tcp:127.0.0.1:7000");
    /// ```
    pub fn localhost(port: u16) -> Address {
        Address::Tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
    }

    /// Whether this is a TCP address (by IP or by host name).
    ///
    /// # Examples
    ///
    /// ```
    /// use connection::Address;
    /// assert!(Address::localhost(1).is_tcp());
    /// assert!(!"abstract:x".parse::<Address>()?.is_tcp());
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn is_tcp(&self) -> bool {
        matches!(self, Address::Tcp(_) | Address::TcpHost { .. })
    }
}

impl Address {
    /// The `interprocess` name of a Unix or abstract address.
    pub(crate) fn local_socket_name(&self) -> io::Result<Name<'_>> {
        match self {
            Address::Unix(path) => path.as_os_str().to_fs_name::<GenericFilePath>(),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Address::Abstract(name) => name.as_str().to_ns_name::<AbstractNsUdSocket>(),
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            Address::Abstract(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the abstract socket namespace exists on Linux only",
            )),
            Address::Tcp(_) | Address::TcpHost { .. } => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a TCP address has no local socket name",
            )),
        }
    }

    /// The address of a Unix-socket peer, if it has one: most clients never
    /// bind a name, and a non-UTF-8 abstract name cannot be written as one.
    pub(crate) fn from_unix_peer(peer: &std::os::unix::net::SocketAddr) -> Option<Address> {
        if let Some(path) = peer.as_pathname() {
            return Some(Address::Unix(path.to_owned()));
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            #[cfg(target_os = "android")]
            use std::os::android::net::SocketAddrExt;
            #[cfg(target_os = "linux")]
            use std::os::linux::net::SocketAddrExt;
            if let Some(name) = peer.as_abstract_name() {
                return std::str::from_utf8(name)
                    .ok()
                    .map(|n| Address::Abstract(n.to_owned()));
            }
        }
        None
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Address {
        Address::Tcp(addr)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
            Address::Abstract(name) => write!(f, "abstract:{name}"),
            // SocketAddr's Display brackets IPv6 already.
            Address::Tcp(addr) => write!(f, "tcp:{addr}"),
            Address::TcpHost { host, port } => write!(f, "tcp:{host}:{port}"),
        }
    }
}

impl FromStr for Address {
    type Err = Error;

    fn from_str(text: &str) -> Result<Address, Error> {
        parse(text).map_err(|why| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("invalid address {text:?}: {why}"),
            )
        })
    }
}

fn parse(text: &str) -> Result<Address, &'static str> {
    if text.contains('\0') {
        return Err("contains a NUL byte");
    }
    if let Some(path) = text.strip_prefix("unix:") {
        return unix_path(path);
    }
    if let Some(name) = text.strip_prefix("abstract:") {
        if name.is_empty() {
            return Err("empty abstract name");
        }
        if name.len() > MAX_UNIX_NAME {
            return Err("abstract name longer than 107 bytes");
        }
        return Ok(Address::Abstract(name.to_owned()));
    }
    if let Some(endpoint) = text.strip_prefix("tcp:") {
        return tcp(endpoint);
    }
    if text.starts_with('/') {
        return unix_path(text);
    }
    tcp(text).map_err(|_| {
        "expected unix:PATH, abstract:NAME, tcp:HOST:PORT, an absolute path or HOST:PORT"
    })
}

fn unix_path(path: &str) -> Result<Address, &'static str> {
    if path.is_empty() {
        return Err("empty path");
    }
    if path.len() > MAX_UNIX_NAME {
        return Err("Unix socket path longer than 107 bytes");
    }
    Ok(Address::Unix(PathBuf::from(path)))
}

fn tcp(endpoint: &str) -> Result<Address, &'static str> {
    if endpoint.starts_with('[') {
        return endpoint
            .parse::<SocketAddr>()
            .map(Address::Tcp)
            .map_err(|_| "expected [IPV6]:PORT");
    }
    let (host, port) = endpoint.rsplit_once(':').ok_or("missing :PORT")?;
    let port: u16 = port
        .parse()
        .map_err(|_| "port is not a number from 0 to 65535")?;
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(Address::Tcp(SocketAddr::new(IpAddr::V4(ip), port)));
    }
    if host.contains(':') {
        return Err("an IPv6 address needs brackets: tcp:[::1]:PORT");
    }
    let valid_name = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !valid_name {
        return Err("invalid host name");
    }
    Ok(Address::TcpHost {
        host: host.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Address {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn every_form_parses_and_round_trips() {
        let cases = [
            ("unix:/run/x.sock", "unix:/run/x.sock"),
            ("unix:rel.sock", "unix:rel.sock"),
            ("/run/x.sock", "unix:/run/x.sock"),
            ("abstract:name", "abstract:name"),
            ("tcp:127.0.0.1:7000", "tcp:127.0.0.1:7000"),
            ("tcp:[::1]:7000", "tcp:[::1]:7000"),
            ("tcp:[fe80::1%2]:1", "tcp:[fe80::1%2]:1"),
            ("tcp:localhost:0", "tcp:localhost:0"),
            ("10.0.0.1:80", "tcp:10.0.0.1:80"),
            ("[::1]:80", "tcp:[::1]:80"),
            ("db-1.example_net:65535", "tcp:db-1.example_net:65535"),
        ];
        for (input, shown) in cases {
            let addr = ok(input);
            assert_eq!(addr.to_string(), shown);
            assert_eq!(ok(shown), addr, "{shown} does not round-trip");
        }
    }

    #[test]
    fn variants_are_what_the_syntax_says() {
        assert_eq!(ok("abstract:a b"), Address::Abstract("a b".into()));
        assert_eq!(
            ok("tcp:1.2.3.4:5"),
            Address::Tcp("1.2.3.4:5".parse().unwrap())
        );
        assert_eq!(
            ok("example.com:443"),
            Address::TcpHost {
                host: "example.com".into(),
                port: 443
            }
        );
        assert!(ok("tcp:x:1").is_tcp());
    }

    #[test]
    fn bad_text_is_invalid_input_quoting_the_text() {
        let bad = [
            "",
            "unix:",
            "abstract:",
            "tcp:",
            "tcp:1.2.3.4",
            "tcp:1.2.3.4:99999",
            "tcp:::1:80",
            "tcp:[::1]",
            "tcp:[nonsense]:1",
            "udp:1.2.3.4:5",
            "relative.sock",
            "host name:1",
            "/with\0nul",
        ];
        for text in bad {
            let err = text.parse::<Address>().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{text:?}");
            assert!(err.to_string().contains(&format!("{text:?}")), "{err}");
        }
        let long = format!("unix:/{}", "x".repeat(200));
        assert!(long.parse::<Address>().is_err());
    }
}
