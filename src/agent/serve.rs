//! The two HTTP services, as CloudStack's virtual router offers them:
//! metadata on :80 (its Apache layout) and the password server on :8080
//! (`DomU_Request`). Requests are small: one read up to a cap, one answer,
//! connection closed.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::time::Duration;

use crate::metadata::key;

/// Largest request head we read; anything longer is refused.
pub const MAX_REQUEST: usize = 8 * 1024;
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
}

/// Parse a request head (`None`: malformed or incomplete).
pub fn parse(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?;
    if !first.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let path = target.split(['?', '#']).next()?.to_string();
    let mut headers = BTreeMap::new();
    for l in lines.take_while(|l| !l.is_empty()) {
        let (k, v) = l.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    Some(Request { method, path, headers })
}

/// Read one request head from `s`, up to [`MAX_REQUEST`] bytes.
pub fn read_request(s: &mut impl Read) -> Option<Request> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return parse(&buf[..end + 2]);
        }
        if buf.len() >= MAX_REQUEST {
            return None;
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n.min(MAX_REQUEST + 4 - buf.len().min(MAX_REQUEST))]);
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn ok(body: impl Into<Vec<u8>>) -> Response {
        Response { status: 200, body: body.into() }
    }

    pub fn not_found() -> Response {
        Response { status: 404, body: b"Not Found\n".to_vec() }
    }

    pub fn write(&self, s: &mut impl Write, head_only: bool, server: &str) -> std::io::Result<()> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            413 => "Request Entity Too Large",
            429 => "Too Many Requests",
            _ => "Error",
        };
        let head = format!(
            "HTTP/1.1 {} {reason}\r\nServer: {server}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            self.body.len()
        );
        s.write_all(head.as_bytes())?;
        if !head_only {
            s.write_all(&self.body)?;
        }
        s.flush()
    }
}

/// `latest/<f>` names the virtual router serves outside `meta-data/`.
const TOP_LEVEL: &[&str] = &[
    "availability-zone",
    "cloud-identifier",
    "instance-id",
    "local-hostname",
    "local-ipv4",
    "public-hostname",
    "public-ipv4",
    "public-keys",
    "service-offering",
    "vm-id",
];

/// What :80 answers for `path`, given the VM's data (`None`: unknown VM).
/// `userdata` opens the sealed user data on demand.
pub fn metadata(
    path: &str,
    row: Option<&BTreeMap<String, String>>,
    userdata: impl FnOnce() -> Option<Vec<u8>>,
) -> Response {
    let Some(row) = row else { return Response::not_found() };
    // Case-insensitive, optional trailing slash, as the VR's rewrite rules.
    let p = path.to_ascii_lowercase();
    let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    let file = |f: &str| row.get(&format!("{}{f}", key::MD_PREFIX)).map(|v| Response::ok(v.as_bytes().to_vec()));
    match parts.as_slice() {
        [] => Response::ok("latest\n"),
        ["latest"] => Response::ok("meta-data\nuser-data\n"),
        ["latest", "user-data" | "user_data"] => match userdata() {
            Some(b) => Response::ok(b),
            None => Response::not_found(),
        },
        ["latest", "meta-data"] => {
            let mut list: String =
                row.keys().filter_map(|k| k.strip_prefix(key::MD_PREFIX)).map(|f| format!("{f}\n")).collect();
            if list.is_empty() {
                list.push('\n');
            }
            Response::ok(list)
        }
        ["latest", "meta-data", f] => file(f).unwrap_or_else(Response::not_found),
        ["latest", f] if TOP_LEVEL.contains(f) => file(f).unwrap_or_else(Response::not_found),
        _ => Response::not_found(),
    }
}

/// The password server's answer kinds.
#[derive(Debug, PartialEq, Eq)]
pub enum PasswordAsk {
    Send,
    Saved,
    Bad,
}

pub fn password_ask(req: &Request) -> PasswordAsk {
    match req.headers.get("domu_request").map(|v| v.trim()) {
        Some("send_my_password") => PasswordAsk::Send,
        Some("saved_password") => PasswordAsk::Saved,
        _ => PasswordAsk::Bad,
    }
}

/// A per-source token bucket: `burst` requests at once, `rate` per second.
pub struct RateLimit {
    rate: f64,
    burst: f64,
    buckets: std::sync::Mutex<std::collections::HashMap<(u64, IpAddr), (f64, std::time::Instant)>>,
}

impl RateLimit {
    pub fn new(rate: f64, burst: f64) -> RateLimit {
        RateLimit { rate, burst, buckets: Default::default() }
    }

    pub fn allow(&self, network: u64, src: IpAddr) -> bool {
        let now = std::time::Instant::now();
        let Ok(mut b) = self.buckets.lock() else { return false };
        if b.len() > 100_000 {
            b.retain(|_, (_, t)| now.duration_since(*t) < Duration::from_secs(60));
        }
        let (tokens, last) = b.entry((network, src)).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> BTreeMap<String, String> {
        [("md:instance-id", "i-1"), ("md:public-keys", "ssh-ed25519 AAA"), ("ud", "s1:x")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn vr_layout() {
        let r = row();
        let none = || None;
        assert_eq!(metadata("/latest/meta-data/", Some(&r), none).body, b"instance-id\npublic-keys\n");
        assert_eq!(metadata("/latest/meta-data/instance-id", Some(&r), none).body, b"i-1");
        assert_eq!(metadata("/LATEST/Instance-ID/", Some(&r), none).body, b"i-1");
        assert_eq!(metadata("/latest/public-keys", Some(&r), none).body, b"ssh-ed25519 AAA");
        assert_eq!(metadata("/latest/user-data", Some(&r), none).status, 404);
        assert_eq!(metadata("/latest/user-data", Some(&r), || Some(b"#x".to_vec())).body, b"#x");
        assert_eq!(metadata("/latest/meta-data/nope", Some(&r), none).status, 404);
        assert_eq!(metadata("/latest/nope", Some(&r), none).status, 404);
        assert_eq!(metadata("/latest/meta-data/", None, none).status, 404);
    }

    #[test]
    fn requests_parse_and_password_headers() {
        let r = parse(b"GET /x?y HTTP/1.0\r\nDomU_Request: send_my_password\r\n").unwrap();
        assert_eq!(r.path, "/x");
        assert_eq!(password_ask(&r), PasswordAsk::Send);
        let r = parse(b"GET / HTTP/1.1\r\ndomu_request: saved_password\r\n").unwrap();
        assert_eq!(password_ask(&r), PasswordAsk::Saved);
        let r = parse(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
        assert_eq!(password_ask(&r), PasswordAsk::Bad);
        assert!(parse(b"garbage\r\n").is_none());
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_REQUEST * 2));
        assert!(read_request(&mut big.as_slice()).is_none());
    }

    #[test]
    fn rate_limit_per_source() {
        let rl = RateLimit::new(0.0, 2.0);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(rl.allow(1, a) && rl.allow(1, a));
        assert!(!rl.allow(1, a));
        assert!(rl.allow(1, b));
    }
}
