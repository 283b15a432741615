//! The two HTTP services, as CloudStack's virtual router offers them:
//! metadata on :80 (its Apache layout) and the password server on :8080
//! (`DomU_Request`). Pure answers to a parsed request; the sockets, parsing
//! and limits are in `http`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::metadata::key;

/// A parsed request head: header names lowercase, values trimmed.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
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

/// What the agent answers on `port` for `req` from a VM known as `nic`
/// (with its vm-data `row`), or from an unknown source (`None`), and which
/// service answered (for the log). `userdata(nic, sealed)` opens the sealed
/// user data; `password` answers the password protocol (it may touch the SB).
pub fn answer(
    port: u16,
    req: &Request,
    nic: Option<&str>,
    row: Option<&BTreeMap<String, String>>,
    userdata: impl FnOnce(&str, &str) -> Option<Vec<u8>>,
    password: impl FnOnce(&str, Option<&BTreeMap<String, String>>, PasswordAsk) -> Response,
) -> (Response, &'static str) {
    match (port, nic) {
        // The VR's Apache serves GET/HEAD; everything else is not found.
        (80, _) if !matches!(req.method.as_str(), "GET" | "HEAD") => (Response::not_found(), "method"),
        (80, _) => {
            let r = metadata(&req.path, row, || userdata(nic?, row?.get(key::USERDATA)?));
            (r, "metadata")
        }
        (_, None) => (Response::not_found(), "password"),
        (_, Some(n)) => (password(n, row, password_ask(req)), "password"),
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

    fn req(method: &str, path: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn password_headers() {
        assert_eq!(password_ask(&req("GET", "/", &[("domu_request", "send_my_password")])), PasswordAsk::Send);
        assert_eq!(password_ask(&req("GET", "/", &[("domu_request", "saved_password")])), PasswordAsk::Saved);
        assert_eq!(password_ask(&req("GET", "/", &[("host", "x")])), PasswordAsk::Bad);
    }

    #[test]
    fn answer_routes_by_port_method_and_vm() {
        let r = row();
        let nic = Some("nic-1");
        let open = |n: &str, sealed: &str| Some(format!("{n}/{sealed}").into_bytes());
        let pw = |n: &str, _: Option<&BTreeMap<String, String>>, ask| Response::ok(format!("{n} {ask:?}"));
        let get = |path: &str| req("GET", path, &[]);
        assert_eq!(
            answer(80, &get("/latest/user-data"), nic, Some(&r), open, pw),
            (Response::ok("nic-1/s1:x"), "metadata")
        );
        assert_eq!(answer(80, &req("HEAD", "/latest/instance-id", &[]), nic, Some(&r), open, pw).0.body, b"i-1");
        for m in ["POST", "PUT", "DELETE"] {
            assert_eq!(answer(80, &req(m, "/latest/instance-id", &[]), nic, Some(&r), open, pw).0.status, 404, "{m}");
        }
        assert_eq!(answer(80, &get("/latest/instance-id"), None, None, open, pw).0.status, 404, "unknown VM");
        let ask = req("GET", "/", &[("domu_request", "send_my_password")]);
        assert_eq!(answer(8080, &ask, nic, Some(&r), open, pw), (Response::ok("nic-1 Send"), "password"));
        assert_eq!(answer(8080, &ask, None, None, open, pw).0.status, 404, "unknown VM");
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
