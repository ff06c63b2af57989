//! Addresses berth listens on and connects to: `unix:///path`, a bare path, or
//! `tcp://host:port`.

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// Where a gRPC endpoint lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A unix socket path.
    Unix(PathBuf),
    /// A TCP `host:port`.
    Tcp(String),
}

impl Address {
    /// Parses `unix:///abs/path`, `/abs/path` or `tcp://host:port`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidAddress {
            addr: s.to_string(),
            reason: reason.to_string(),
        };
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(bad("a unix socket path must be absolute (unix:///path)"));
            }
            Ok(Address::Unix(PathBuf::from(path)))
        } else if s.starts_with('/') {
            Ok(Address::Unix(PathBuf::from(s)))
        } else if let Some(hostport) = s.strip_prefix("tcp://") {
            let hostport = hostport.trim_end_matches('/');
            let (host, port) = hostport
                .rsplit_once(':')
                .ok_or_else(|| bad("expected tcp://host:port"))?;
            if host.is_empty() {
                return Err(bad("missing host (use 0.0.0.0 to listen on every address)"));
            }
            port.parse::<u16>()
                .map_err(|_| bad("the port must be a number from 0 to 65535"))?;
            Ok(Address::Tcp(hostport.to_string()))
        } else {
            Err(bad("expected unix:///path or tcp://host:port"))
        }
    }

    /// The host part of a TCP address, without brackets, for TLS server-name checks.
    pub fn tcp_host(&self) -> Option<&str> {
        match self {
            Address::Tcp(hp) => hp
                .rsplit_once(':')
                .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']')),
            Address::Unix(_) => None,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix://{}", p.display()),
            Address::Tcp(hp) => write!(f, "tcp://{hp}"),
        }
    }
}

impl std::str::FromStr for Address {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Address::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_accepted_forms() {
        assert_eq!(
            Address::parse("unix:///run/berth/engine.sock").unwrap(),
            Address::Unix("/run/berth/engine.sock".into())
        );
        assert_eq!(
            Address::parse("/tmp/x.sock").unwrap(),
            Address::Unix("/tmp/x.sock".into())
        );
        let tcp = Address::parse("tcp://127.0.0.1:2376").unwrap();
        assert_eq!(tcp, Address::Tcp("127.0.0.1:2376".into()));
        assert_eq!(tcp.tcp_host(), Some("127.0.0.1"));
        assert_eq!(tcp.to_string(), "tcp://127.0.0.1:2376");
        assert_eq!(
            Address::parse("tcp://[::1]:1").unwrap().tcp_host(),
            Some("::1")
        );
    }

    #[test]
    fn refuses_malformed_ones() {
        for bad in [
            "",
            "unix://relative",
            "tcp://nohost",
            "tcp://:80",
            "tcp://h:99999",
            "http://x:1",
            "engine.sock",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
