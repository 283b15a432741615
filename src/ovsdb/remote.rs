//! `ovsdb(7)` active remote syntax: `unix:FILE`, `tcp:HOST[:PORT]`,
//! `ssl:HOST[:PORT]`, IPv6 hosts in brackets (`ssl:[::1]:6641`), and
//! comma-separated lists of them for clusters.

use std::fmt;
use std::path::PathBuf;

use super::Error;

/// The IANA OVSDB port, the `ovsdb(7)` default when a remote omits it. (The
/// OVN NB listens on 6641 by convention, so give the port explicitly.)
pub const DEFAULT_PORT: u16 = 6640;

/// One server address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Remote {
    Unix(PathBuf),
    Tcp { host: String, port: u16 },
    Ssl { host: String, port: u16 },
}

impl Remote {
    /// Parse one remote.
    pub fn parse(s: &str) -> Result<Remote, Error> {
        let bad = || Error::InvalidRemote(s.to_string());
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        match kind {
            "unix" if !rest.is_empty() => Ok(Remote::Unix(PathBuf::from(rest))),
            "tcp" => {
                let (host, port) = host_port(rest).ok_or_else(bad)?;
                Ok(Remote::Tcp { host, port })
            }
            "ssl" => {
                let (host, port) = host_port(rest).ok_or_else(bad)?;
                Ok(Remote::Ssl { host, port })
            }
            // Passive remotes (punix:, ptcp:, pssl:) are for servers; "cid:"
            // (cluster id pinning) is not supported.
            _ => Err(bad()),
        }
    }

    /// Parse a comma-separated list; blanks around entries are ignored, an
    /// empty list or an empty entry is an error.
    pub fn parse_list(s: &str) -> Result<Vec<Remote>, Error> {
        if s.trim().is_empty() {
            return Err(Error::InvalidRemote(s.to_string()));
        }
        s.split(',').map(|r| Remote::parse(r.trim())).collect()
    }

    /// True for `ssl:` remotes (which need [`TlsFiles`](super::TlsFiles)).
    pub fn is_ssl(&self) -> bool {
        matches!(self, Remote::Ssl { .. })
    }
}

/// `HOST[:PORT]` or `[IPV6][:PORT]`. An unbracketed host with a colon is
/// ambiguous (`::1:6641`) and rejected, as `ovsdb(7)` requires brackets.
fn host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() || host.contains(|c: char| c == '[' || c == ']' || c.is_whitespace()) {
        return None;
    }
    if !s.starts_with('[') && host.contains(':') {
        return None;
    }
    let port = match port {
        None => DEFAULT_PORT,
        // Digits only: `u16::from_str` would also take `+6640`.
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse::<u16>().ok().filter(|&p| p != 0)?
        }
        Some(_) => return None,
    };
    Some((host.to_string(), port))
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, host, port) = match self {
            Remote::Unix(p) => return write!(f, "unix:{}", p.display()),
            Remote::Tcp { host, port } => ("tcp", host, port),
            Remote::Ssl { host, port } => ("ssl", host, port),
        };
        if host.contains(':') {
            write!(f, "{kind}:[{host}]:{port}")
        } else {
            write!(f, "{kind}:{host}:{port}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> Remote {
        Remote::Tcp { host: host.into(), port }
    }

    #[test]
    fn parse_and_display() {
        let cases = [
            ("unix:/run/ovn/ovnnb_db.sock", Remote::Unix("/run/ovn/ovnnb_db.sock".into())),
            ("tcp:127.0.0.1:6641", tcp("127.0.0.1", 6641)),
            ("tcp:nb.example.org", tcp("nb.example.org", DEFAULT_PORT)),
            ("ssl:[::1]:6641", Remote::Ssl { host: "::1".into(), port: 6641 }),
            ("tcp:[fe80::1%eth0]", tcp("fe80::1%eth0", DEFAULT_PORT)),
        ];
        for (s, want) in cases {
            let r = Remote::parse(s).unwrap();
            assert_eq!(r, want, "{s}");
            // Display gives the ovsdb(7) form back (with the port made explicit).
            assert_eq!(Remote::parse(&r.to_string()).unwrap(), want);
        }
        assert_eq!(tcp("::1", 6641).to_string(), "tcp:[::1]:6641");
        assert_eq!(Remote::parse("ssl:h").unwrap().to_string(), "ssl:h:6640");
    }

    #[test]
    fn garbage_is_rejected() {
        for s in [
            "",
            "unix:",
            "tcp:",
            "tcp::6641",
            "tcp:h:",
            "tcp:h:0",
            "tcp:h:70000",
            "tcp:h:x",
            "tcp:h:+6641",
            "tcp:::1:6641",
            "tcp:[::1",
            "tcp:[::1]6641",
            "tcp:[]:1",
            "ptcp:6641",
            "punix:/x",
            "http://h",
            "cid:1234",
            "/var/run/x.sock",
        ] {
            let e = Remote::parse(s).unwrap_err();
            assert!(matches!(&e, Error::InvalidRemote(r) if r == s), "{s}: {e}");
        }
    }

    #[test]
    fn lists() {
        let l = Remote::parse_list(" tcp:10.0.0.1:6641 , ssl:10.0.0.2:6641,unix:/x").unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l[0], tcp("10.0.0.1", 6641));
        assert!(l[1].is_ssl());
        for s in ["", "  ", "unix:/a,", "unix:/a,,unix:/b", "unix:/a,bogus"] {
            assert!(Remote::parse_list(s).is_err(), "{s:?}");
        }
    }
}
