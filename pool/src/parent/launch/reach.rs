//! Which address of this host Slurm's nodes can reach, for a pool that
//! listens on every interface.
//!
//! A host name is no answer: compute nodes often cannot resolve the
//! submitting host's name (a login node's, a container's). The kernel
//! knows which of this host's addresses faces the cluster: the source
//! address it would give a packet to the Slurm controller, which every node
//! talks to. Connecting a UDP socket asks the routing table that without
//! sending anything.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::process::Command;
use std::time::Duration;

use super::timed;

/// `slurmctld`'s port when `scontrol` does not say.
const DEFAULT_CONTROLLER_PORT: u16 = 6817;
/// How many node addresses are tried when the controller is this host on
/// loopback.
const NODES_TRIED: usize = 16;

/// This host's address on the interface that routes to the Slurm
/// controller (`SlurmctldHost`); if that is loopback (the controller runs
/// here, named by a loopback address), the one that routes to a node of
/// the cluster; loopback only if everything is. `None` if Slurm's commands
/// cannot say (each runs for at most `limit`).
pub(crate) fn head_address(limit: Duration) -> Option<IpAddr> {
    let config = scontrol_config(limit)?;
    let (controllers, port) = controllers(&config);
    let mut fallback = None;
    let controllers = controllers
        .iter()
        .flat_map(|host| resolve(host, port))
        .collect::<Vec<_>>();
    for source in controllers.iter().filter_map(|to| source_toward(*to)) {
        if !source.is_loopback() {
            return Some(source);
        }
        fallback = fallback.or(Some(source));
    }
    for source in node_addresses(limit)
        .iter()
        .flat_map(|host| resolve(host, port))
        .filter_map(source_toward)
    {
        if !source.is_loopback() {
            return Some(source);
        }
        fallback = fallback.or(Some(source));
    }
    fallback
}

fn scontrol_config(limit: Duration) -> Option<String> {
    let output = timed::run(
        Command::new("scontrol").args(["show", "config"]),
        "scontrol",
        "finding the Slurm controller",
        None,
        limit,
    );
    match output {
        Ok(out) if out.status.success() => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => {
            tracing::debug!(status = %out.status, "scontrol show config failed");
            None
        }
        Err(err) => {
            tracing::debug!(%err, "cannot ask scontrol for the controller");
            None
        }
    }
}

/// The controllers' hosts (the address in `name(address)`, else the name)
/// and port, from `scontrol show config`.
fn controllers(config: &str) -> (Vec<String>, u16) {
    let mut hosts = Vec::new();
    let mut port = DEFAULT_CONTROLLER_PORT;
    for line in config.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if key.starts_with("SlurmctldHost") || key == "ControlMachine" || key == "ControlAddr" {
            let host = match value.split_once('(') {
                Some((_, address)) => address.trim_end_matches(')'),
                None => value,
            };
            if !host.is_empty() && host != "(null)" {
                hosts.push(host.to_string());
            }
        } else if key == "SlurmctldPort" {
            // A range ("6817-6818") listens on its first port too.
            if let Ok(first) = value.split('-').next().unwrap_or(value).parse() {
                port = first;
            }
        }
    }
    (hosts, port)
}

/// The addresses of the cluster's nodes (`NodeAddr`), a few of them.
fn node_addresses(limit: Duration) -> Vec<String> {
    let output = timed::run(
        Command::new("sinfo").args(["--noheader", "--Node", "--format=%o"]),
        "sinfo",
        "finding the cluster's nodes",
        None,
        limit,
    );
    let Ok(out) = output else { return Vec::new() };
    let mut addresses: Vec<String> = Vec::new();
    for address in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if !addresses.iter().any(|seen| seen == address) {
            addresses.push(address.to_string());
        }
        if addresses.len() == NODES_TRIED {
            break;
        }
    }
    addresses
}

fn resolve(host: &str, port: u16) -> Vec<SocketAddr> {
    match (host, port).to_socket_addrs() {
        Ok(addresses) => addresses.collect(),
        Err(err) => {
            tracing::debug!(host, %err, "cannot resolve a Slurm host");
            Vec::new()
        }
    }
}

/// The source address this host would send from to `to`.
fn source_toward(to: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = match to {
        SocketAddr::V4(_) => "0.0.0.0:0".parse().ok()?,
        SocketAddr::V6(_) => "[::]:0".parse().ok()?,
    };
    let socket = UdpSocket::bind(any).ok()?;
    socket.connect(to).ok()?;
    let source = socket.local_addr().ok()?.ip();
    (!source.is_unspecified()).then_some(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_controller_is_read_from_scontrol_show_config() {
        let config = "Configuration data as of 2026-12-07T10:30:00\n\
                      SlurmctldAddr           = (null)\n\
                      SlurmctldHost[0]        = head(10.213.0.1)\n\
                      SlurmctldHost[1]        = backup\n\
                      SlurmctldPort           = 6820-6821\n\
                      SlurmdPort              = 6818\n";
        let (hosts, port) = controllers(config);
        assert_eq!(hosts, ["10.213.0.1", "backup"]);
        assert_eq!(port, 6820);
        assert_eq!(controllers("nothing here").1, DEFAULT_CONTROLLER_PORT);
    }

    #[test]
    fn the_source_toward_loopback_is_loopback() {
        let to: SocketAddr = "127.0.0.1:6817".parse().unwrap();
        assert_eq!(source_toward(to), Some("127.0.0.1".parse().unwrap()));
    }
}
