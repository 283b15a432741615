//! RFC 7047 §4 JSON-RPC 1.0 framing and message handling.
//!
//! Messages are JSON objects written back to back with no delimiter or
//! length prefix; one may arrive split over several reads, and several may
//! arrive in one read. serde_json's reader-based deserializer parses exactly
//! one value and, for an object, stops at its closing `}` without reading
//! ahead, so the rest of the stream stays in the `BufReader` for the next
//! call. Strings (ACL matches full of `\"`, braces) are handled by the real
//! JSON parser, not by brace counting.

use std::io::BufRead;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::transport::map_io;
use super::Error;

/// Read one message. `r` must be buffered: serde_json reads byte by byte.
pub(crate) fn read_message<R: BufRead>(r: &mut R) -> Result<Map<String, Value>, Error> {
    let mut de = serde_json::Deserializer::from_reader(r);
    match Value::deserialize(&mut de) {
        Ok(Value::Object(m)) => Ok(m),
        // A bare number would also have consumed one byte of look-ahead;
        // either way the peer is not speaking JSON-RPC.
        Ok(other) => Err(Error::Protocol(format!("expected a JSON-RPC object, got {}", truncate(&other.to_string())))),
        Err(e) if e.is_io() => Err(map_io(e.into())),
        Err(e) if e.is_eof() => Err(Error::Protocol("connection closed by the server".into())),
        Err(e) => Err(Error::Protocol(format!("malformed JSON from the server: {e}"))),
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// What a received message means for a caller waiting for reply `id`.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// The reply: §4.1 `result`, or the `error` as [`Error::Rpc`].
    Reply(Result<Value, Error>),
    /// A server request that must be answered with these bytes (§4.1.11
    /// echo: ovsdb-server's inactivity probe; unanswered, it drops us).
    Answer(Vec<u8>),
    /// A monitor's change notification (`update`, `update2`, `update3`):
    /// its `params`.
    Update(Value),
    /// Other notifications (locked, stolen, monitor_canceled) and replies
    /// to other ids.
    Ignore,
}

pub(crate) fn classify(mut msg: Map<String, Value>, id: u64) -> Incoming {
    let msg_id = msg.remove("id").unwrap_or(Value::Null);
    if let Some(method) = msg.get("method") {
        if method == "echo" && !msg_id.is_null() {
            // §4.1.11: the reply's result is the request's params.
            let params = msg.remove("params").unwrap_or_else(|| json!([]));
            let reply = json!({"id": msg_id, "result": params, "error": null});
            return Incoming::Answer(reply.to_string().into_bytes());
        }
        if msg_id.is_null() && matches!(method.as_str(), Some("update" | "update2" | "update3")) {
            return Incoming::Update(msg.remove("params").unwrap_or(Value::Null));
        }
        return Incoming::Ignore;
    }
    if msg_id != id {
        return Incoming::Ignore;
    }
    match msg.remove("error") {
        Some(e) if !e.is_null() => Incoming::Reply(Err(rpc_error(&e))),
        // ovsdb-server omits "result" on RPC errors but always sends it
        // otherwise; a reply with neither is malformed.
        _ => Incoming::Reply(
            msg.remove("result").ok_or_else(|| Error::Protocol("reply has neither result nor error".into())),
        ),
    }
}

/// §4.1 error member: ovsdb-server sends `{"error":…, "details":…}`; be
/// lenient with a bare string or anything else.
fn rpc_error(e: &Value) -> Error {
    let (error, details) = match e {
        Value::String(s) => (s.clone(), None),
        Value::Object(o) => (
            o.get("error").and_then(Value::as_str).map_or_else(|| e.to_string(), str::to_owned),
            o.get("details").and_then(Value::as_str).map(str::to_owned),
        ),
        other => (other.to_string(), None),
    };
    Error::Rpc { error, details }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Read};

    /// A reader that returns `data[..cut]` first, then the rest 1, 2, 3,
    /// 1, 2, 3… bytes per read: a message boundary at every offset.
    struct Trickle {
        chunks: std::collections::VecDeque<Vec<u8>>,
    }

    impl Trickle {
        fn new(data: &[u8], cut: usize) -> Trickle {
            let mut chunks = std::collections::VecDeque::from([data[..cut].to_vec()]);
            let (mut rest, mut n) = (&data[cut..], 0);
            while !rest.is_empty() {
                n = n % 3 + 1;
                let k = n.min(rest.len());
                chunks.push_back(rest[..k].to_vec());
                rest = &rest[k..];
            }
            chunks.retain(|c| !c.is_empty());
            Trickle { chunks }
        }
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let Some(mut c) = self.chunks.pop_front() else {
                return Ok(0);
            };
            let k = c.len().min(buf.len());
            buf[..k].copy_from_slice(&c[..k]);
            if k < c.len() {
                self.chunks.push_front(c.split_off(k));
            }
            Ok(k)
        }
    }

    const TWO: &str = r#"{"id":null,"method":"update2","params":["x",{"a":"}{"}]}{"id":7,"result":[{"rows":[{"match":"ip4.src == \"10.0.0.1\" && outport == \"{\\\"p\\\"}\""}]}],"error":null}"#;

    fn all(r: &mut impl BufRead) -> Vec<Map<String, Value>> {
        let mut out = vec![];
        loop {
            match read_message(r) {
                Ok(m) => out.push(m),
                Err(Error::Protocol(m)) if m.contains("closed") => return out,
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn two_messages_in_one_buffer() {
        let got = all(&mut BufReader::new(TWO.as_bytes()));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0]["params"][1]["a"], "}{");
        let m = &got[1]["result"][0]["rows"][0]["match"];
        assert_eq!(m, r#"ip4.src == "10.0.0.1" && outport == "{\"p\"}""#);
    }

    #[test]
    fn split_at_every_offset() {
        let want = all(&mut BufReader::new(TWO.as_bytes()));
        for cut in 0..=TWO.len() {
            let mut r = BufReader::new(Trickle::new(TWO.as_bytes(), cut));
            assert_eq!(all(&mut r), want, "cut at {cut}");
        }
    }

    #[test]
    fn eof_and_garbage() {
        let mut r = BufReader::new(&br#"{"id":1,"res"#[..]);
        assert!(matches!(read_message(&mut r), Err(Error::Protocol(m)) if m.contains("closed")));
        let mut r = BufReader::new(&b"[1,2]"[..]);
        assert!(matches!(read_message(&mut r), Err(Error::Protocol(m)) if m.contains("object")));
        let mut r = BufReader::new(&b"{nope}"[..]);
        assert!(matches!(read_message(&mut r), Err(Error::Protocol(m)) if m.contains("malformed")));
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn classification() {
        let echo = obj(json!({"id":"echo","method":"echo","params":[]}));
        match classify(echo, 1) {
            Incoming::Answer(b) => {
                assert_eq!(serde_json::from_slice::<Value>(&b).unwrap(), json!({"id":"echo","result":[],"error":null}))
            }
            other => panic!("{other:?}"),
        }
        let notif = obj(json!({"id":null,"method":"update3","params":[]}));
        assert!(matches!(classify(notif, 1), Incoming::Update(_)));
        let locked = obj(json!({"id":null,"method":"locked","params":[]}));
        assert!(matches!(classify(locked, 1), Incoming::Ignore));
        let other = obj(json!({"id":2,"result":[],"error":null}));
        assert!(matches!(classify(other, 1), Incoming::Ignore));
        let ok = obj(json!({"id":1,"result":["x"],"error":null}));
        assert!(matches!(classify(ok, 1), Incoming::Reply(Ok(v)) if v == json!(["x"])));
        let err = obj(json!({"id":1,"error":{"error":"unknown database","details":"no Nope"}}));
        match classify(err, 1) {
            Incoming::Reply(Err(Error::Rpc { error, details })) => {
                assert_eq!(error, "unknown database");
                assert_eq!(details.as_deref(), Some("no Nope"));
            }
            other => panic!("{other:?}"),
        }
        let bare = obj(json!({"id":1,"error":"oops"}));
        assert!(matches!(classify(bare, 1), Incoming::Reply(Err(Error::Rpc { error, .. })) if error == "oops"));
    }
}
