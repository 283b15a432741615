//! The OVSDB client: connect to the first usable remote of a list, then run
//! RFC 7047 §4.1.3 `transact` calls on that one connection.

use std::io::{BufReader, Write};

use serde_json::{json, Value};

use super::jsonrpc::{self, Incoming};
use super::transport::{self, map_io, Conn};
use super::{tls, value, Condition, Deadline, Error, Operation, Remote, TlsFiles};

/// One connection to an OVSDB server.
pub struct Client {
    // Reads go through the buffer; writes go to `get_mut()` directly
    // (BufReader buffers reads only).
    conn: BufReader<Conn>,
    remote: Remote,
    next_id: u64,
    /// Set after a connection-level failure: a half-read reply may be left
    /// in the stream, so the connection must not be reused.
    broken: bool,
    /// Monitor notifications received while waiting for a reply.
    updates: Vec<Value>,
}

impl Client {
    /// Try each remote of the comma-separated list in order; the first that
    /// connects (within the deadline) wins.
    pub fn connect(remotes: &str, tls: &TlsFiles, deadline: Deadline) -> Result<Client, Error> {
        Client::connect_with(remotes, tls, deadline, &NoCheck)
    }

    /// As [`Client::connect`], but a remote is used only if `check` accepts
    /// it (see [`ServerCheck`]); otherwise the next one is tried.
    ///
    /// A single remote's failure is returned as is; when a list of several
    /// all fail, [`Error::AllRemotesFailed`] carries the last failure. The
    /// deadline running out ends the search with [`Error::DeadlineAfter`]
    /// naming the remote being tried.
    pub fn connect_with(
        remotes: &str,
        tls: &TlsFiles,
        deadline: Deadline,
        check: &dyn ServerCheck,
    ) -> Result<Client, Error> {
        let list = Remote::parse_list(remotes)?;
        let config = match list.iter().any(Remote::is_ssl) {
            true => Some(tls::client_config(tls, deadline)?),
            false => None,
        };
        let mut tried = Vec::new();
        let mut last = None;
        for (i, remote) in list.iter().enumerate() {
            let share = u32::try_from(list.len() - i).unwrap_or(u32::MAX);
            let last_one = i + 1 == list.len();
            // A remote that is not the last gets only its share of the time
            // left for the whole attempt (TCP connect, TLS handshake, server
            // check): a stalled cluster member (SIGSTOPped, or its kernel
            // backlog accepting for a dead process) must not use up the
            // budget of the members after it.
            let slice = match last_one {
                true => deadline,
                false => deadline.share(share),
            };
            let attempt = transport::connect(remote, config.as_ref(), slice).and_then(|conn| {
                let mut client = Client {
                    conn: BufReader::new(conn),
                    remote: remote.clone(),
                    next_id: 1,
                    broken: false,
                    updates: Vec::new(),
                };
                check.check(&mut client)?;
                // Later calls get the whole budget back.
                client.set_deadline(deadline);
                Ok(client)
            });
            match attempt {
                Ok(client) => return Ok(client),
                // Only this remote's share ran out: on to the next one.
                Err(Error::DeadlineExceeded) if !last_one && !deadline.expired() => {
                    tried.push(remote.to_string());
                    last = Some(Error::Silent { remote: remote.to_string() });
                }
                // Say which remote the time ran out on (a stalled server).
                Err(Error::DeadlineExceeded) => {
                    return Err(Error::DeadlineAfter { last: Box::new(Error::Silent { remote: remote.to_string() }) })
                }
                Err(e) => {
                    tried.push(remote.to_string());
                    last = Some(e);
                }
            }
        }
        match last {
            Some(e) if tried.len() == 1 => Err(e),
            Some(e) => Err(Error::AllRemotesFailed { tried, last: Box::new(e) }),
            // parse_list never returns an empty list.
            None => Err(Error::InvalidRemote(remotes.to_string())),
        }
    }

    /// One RFC 7047 §4.1.3 transaction: all operations commit atomically or
    /// none does. Returns one result per operation.
    ///
    /// §4.1.3: the transaction failed iff some result has an `error`
    /// member. At index `i < ops.len()` it is operation `i`'s error (later
    /// results are `null`); an extra result at index `ops.len()` is a
    /// commit-time failure such as an index "constraint violation".
    pub fn transact(&mut self, db: &str, ops: &[Operation]) -> Result<Vec<Value>, Error> {
        let mut params = Vec::with_capacity(ops.len() + 1);
        params.push(Value::from(db));
        params.extend(ops.iter().map(Operation::to_json));
        let result = self.call("transact", Value::Array(params))?;
        check_results(ops, result)
    }

    /// Any JSON-RPC method (`echo`, `list_dbs`, `get_schema`, …): returns
    /// the `result`, or [`Error::Rpc`].
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, Error> {
        if self.broken {
            return Err(Error::Protocol("connection unusable after an earlier failure".into()));
        }
        let id = self.next_id;
        self.next_id += 1;
        let r = self.exchange(method, params, id);
        // Only a well-formed error reply leaves the stream in sync.
        if let Err(e) = &r {
            self.broken = !matches!(e, Error::Rpc { .. } | Error::Operation { .. } | Error::Commit { .. });
        }
        r
    }

    fn exchange(&mut self, method: &str, params: Value, id: u64) -> Result<Value, Error> {
        let request = json!({"id": id, "method": method, "params": params});
        self.send(request.to_string().as_bytes())?;
        loop {
            let msg = jsonrpc::read_message(&mut self.conn)?;
            match jsonrpc::classify(msg, id) {
                Incoming::Reply(r) => return r,
                Incoming::Answer(bytes) => self.send(&bytes)?,
                Incoming::Update(u) => self.updates.push(u),
                Incoming::Ignore => {}
            }
        }
    }

    /// ovsdb-server(7) `monitor_cond`: follow the rows of `requests`
    /// (`{table: [{"columns": [...], "where": [clause, ...]}]}`; a row
    /// matching any clause of its table is monitored) under monitor `id`.
    /// Returns the initial `table-updates2`; later changes arrive as
    /// notifications ([`Client::wait_updates`]).
    pub fn monitor_cond(&mut self, db: &str, id: &str, requests: Value) -> Result<Value, Error> {
        self.call("monitor_cond", json!([db, id, requests]))
    }

    /// ovsdb-server(7) `monitor_cond_change`: replace the conditions of
    /// monitor `id` (the server sends the rows that enter or leave).
    /// `requests` holds only `where` members: the columns cannot change.
    pub fn monitor_cond_change(&mut self, id: &str, requests: Value) -> Result<(), Error> {
        self.call("monitor_cond_change", json!([id, id, requests])).map(|_| ())
    }

    /// RFC 7047 §4.1.7 `monitor_cancel`: stop monitor `id`.
    pub fn monitor_cancel(&mut self, id: &str) -> Result<(), Error> {
        self.call("monitor_cancel", json!([id])).map(|_| ())
    }

    /// Wait up to `wait` (and at most until the deadline) for monitor
    /// notifications; returns those received so far (empty: none came).
    /// Echo requests are answered meanwhile. An idle wait leaves the
    /// stream in sync: only a readable socket is read.
    pub fn wait_updates(&mut self, wait: std::time::Duration) -> Result<Vec<Value>, Error> {
        if self.broken {
            return Err(Error::Protocol("connection unusable after an earlier failure".into()));
        }
        if self.updates.is_empty() && self.conn.buffer().is_empty() {
            match self.conn.get_mut().wait_readable(wait) {
                Ok(true) => {}
                Ok(false) => return Ok(Vec::new()),
                Err(e) => {
                    self.broken = true;
                    return Err(map_io(e));
                }
            }
        }
        loop {
            if !self.updates.is_empty() && self.conn.buffer().is_empty() {
                return Ok(std::mem::take(&mut self.updates));
            }
            let msg = match jsonrpc::read_message(&mut self.conn) {
                Ok(m) => m,
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            };
            match jsonrpc::classify(msg, 0) {
                Incoming::Update(u) => self.updates.push(u),
                Incoming::Answer(bytes) => self.send(&bytes)?,
                Incoming::Reply(_) | Incoming::Ignore => {}
            }
            if self.updates.is_empty() && self.conn.buffer().is_empty() {
                // Only an echo (or a stray message) came.
                return Ok(Vec::new());
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let w = self.conn.get_mut();
        w.write_all(bytes).and_then(|()| w.flush()).map_err(map_io)
    }

    /// The `_Server` database's row for `db` (ovsdb-server(7)), or `None`
    /// when the server does not serve `db`. Selects only the columns needed
    /// for the leader decision: the `schema` column would add ~17 KB.
    pub fn database_status(&mut self, db: &str) -> Result<Option<DatabaseStatus>, Error> {
        let select = Operation::Select {
            table: "Database".into(),
            conditions: vec![Condition::eq("name", db)],
            columns: Some(["name", "model", "connected", "leader", "index"].map(String::from).to_vec()),
        };
        let result = self.transact("_Server", &[select])?;
        let row = result.first().and_then(|r| r.get("rows")).and_then(|r| r.get(0));
        Ok(row.and_then(DatabaseStatus::from_row))
    }

    /// The remote that connected.
    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    /// Bytes received so far (JSON text; TLS plaintext).
    pub fn bytes_read(&self) -> u64 {
        self.conn.get_ref().read
    }

    /// Bytes sent so far (JSON text; TLS plaintext).
    pub fn bytes_written(&self) -> u64 {
        self.conn.get_ref().written
    }

    /// Replace the deadline for all later reads and writes.
    pub fn set_deadline(&mut self, d: Deadline) {
        self.conn.get_mut().set_deadline(d);
    }
}

/// Map a §4.1.3 result array to per-operation results or the first error.
fn check_results(ops: &[Operation], result: Value) -> Result<Vec<Value>, Error> {
    let Value::Array(mut results) = result else {
        return Err(Error::Protocol("transact result is not an array".into()));
    };
    for (index, r) in results.iter().enumerate() {
        let Some(e) = r.get("error").filter(|e| !e.is_null()) else {
            continue;
        };
        let error = e.as_str().map_or_else(|| e.to_string(), str::to_owned);
        let mut details = r.get("details").and_then(Value::as_str).map(str::to_owned);
        // "syntax" quotes the offending JSON; keep it, it is what makes a
        // "syntax error" or "unknown column" actionable.
        if let Some(syntax) = r.get("syntax").and_then(Value::as_str) {
            let d = details.get_or_insert_with(String::new);
            d.push_str(&format!(" (syntax: {syntax})"));
            *d = d.trim_start().to_string();
        }
        return Err(match ops.get(index) {
            Some(op) => Error::Operation {
                index,
                op: op.name().to_string(),
                table: op.table().map(str::to_owned),
                error,
                details,
            },
            None => Error::Commit { error, details },
        });
    }
    if results.len() < ops.len() {
        return Err(Error::Protocol(format!(
            "transact returned {} results for {} operations",
            results.len(),
            ops.len()
        )));
    }
    results.truncate(ops.len());
    Ok(results)
}

/// Seam for deciding whether a freshly connected server may be used,
/// typically from its `_Server` database (ovsdb-server(7)): in a Raft
/// cluster, a follower that lost the cluster serves stale data, and writes
/// through a follower take an extra hop. `Client::connect_with` moves on to
/// the next remote when `check` fails.
pub trait ServerCheck {
    fn check(&self, client: &mut Client) -> Result<(), Error>;
}

/// Accept any server (what [`Client::connect`] uses).
pub struct NoCheck;

impl ServerCheck for NoCheck {
    fn check(&self, _: &mut Client) -> Result<(), Error> {
        Ok(())
    }
}

/// The `ovn-nbctl` rule: the server must serve `database`; if clustered it
/// must be connected to the cluster and, with `leader_only`, be the leader.
pub struct LeaderCheck {
    pub database: String,
    pub leader_only: bool,
}

impl ServerCheck for LeaderCheck {
    fn check(&self, client: &mut Client) -> Result<(), Error> {
        let reason = match client.database_status(&self.database) {
            Ok(Some(status)) => status.unusable_reason(self.leader_only),
            Ok(None) => Some(format!("does not serve database {}", self.database)),
            // Servers older than OVS 2.9 have no _Server database; they
            // cannot be clustered either.
            Err(Error::Rpc { error, .. }) if error == "unknown database" => None,
            Err(e) => return Err(e),
        };
        match reason {
            None => Ok(()),
            Some(reason) => Err(Error::ServerRejected { remote: client.remote().to_string(), reason }),
        }
    }
}

/// A row of the `_Server` `Database` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseStatus {
    pub name: String,
    /// "standalone", "clustered", "relay" (or others in future versions).
    pub model: String,
    pub connected: bool,
    pub leader: bool,
    /// Raft log index; `None` for standalone databases (`["set",[]]`).
    pub index: Option<i64>,
}

impl DatabaseStatus {
    /// Decode a selected row; `None` if a required column is missing.
    pub fn from_row(row: &Value) -> Option<DatabaseStatus> {
        Some(DatabaseStatus {
            name: row.get("name")?.as_str()?.to_string(),
            model: row.get("model")?.as_str()?.to_string(),
            connected: row.get("connected")?.as_bool()?,
            leader: row.get("leader")?.as_bool()?,
            index: row.get("index").and_then(|v| value::set_items(v).first().and_then(|i| i.as_i64())),
        })
    }

    /// Why this server must not be used, or `None` if it may.
    pub fn unusable_reason(&self, leader_only: bool) -> Option<String> {
        match self.model.as_str() {
            "standalone" => None,
            _ if !self.connected => Some("not connected to its cluster".into()),
            _ if leader_only && !self.leader => Some(format!("{} server is not the leader", self.model)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ovsdb::Condition;
    use std::io::Read;
    use std::os::unix::net::UnixListener;
    use std::time::Duration;

    fn ops() -> Vec<Operation> {
        vec![
            Operation::Wait {
                table: "Logical_Switch".into(),
                conditions: vec![Condition::eq("name", "n")],
                columns: vec!["name".into()],
                until: crate::ovsdb::WaitUntil::Equal,
                rows: vec![],
                timeout_ms: Some(0),
            },
            Operation::Comment("c".into()),
        ]
    }

    #[test]
    fn result_mapping() {
        let ok = check_results(&ops(), json!([{}, {}])).unwrap();
        assert_eq!(ok, vec![json!({}), json!({})]);

        let e = check_results(&ops(), json!([{"error":"timed out","details":"\"where\" clause test failed"}, null]))
            .unwrap_err();
        assert!(e.is_conflict(), "{e}");
        match e {
            Error::Operation { index, op, table, error, details } => {
                assert_eq!((index, op.as_str(), table.as_deref()), (0, "wait", Some("Logical_Switch")));
                assert_eq!(error, "timed out");
                assert_eq!(details.as_deref(), Some("\"where\" clause test failed"));
            }
            other => panic!("{other:?}"),
        }

        let e = check_results(&ops(), json!([{}, {}, {"error":"constraint violation","details":"dup"}]));
        assert!(matches!(e, Err(Error::Commit { error, .. }) if error == "constraint violation"));

        let e = check_results(&ops(), json!([{}, {"error":"syntax error","syntax":"5"}]));
        assert!(matches!(e, Err(Error::Operation { index: 1, details: Some(d), .. }) if d == "(syntax: 5)"));

        assert!(matches!(check_results(&ops(), json!([{}])), Err(Error::Protocol(_))));
        assert!(matches!(check_results(&ops(), json!({})), Err(Error::Protocol(_))));
    }

    #[test]
    fn database_status() {
        let standalone = json!({"leader":true,"connected":true,"name":"OVN_Northbound",
                                "model":"standalone","index":["set",[]]});
        let s = DatabaseStatus::from_row(&standalone).unwrap();
        assert_eq!((s.index, s.unusable_reason(true)), (None, None));
        let follower = json!({"leader":false,"connected":true,"name":"OVN_Northbound",
                              "model":"clustered","index":7});
        let f = DatabaseStatus::from_row(&follower).unwrap();
        assert_eq!(f.index, Some(7));
        assert_eq!(f.unusable_reason(false), None);
        assert!(f.unusable_reason(true).is_some());
        let lost = json!({"leader":true,"connected":false,"name":"x","model":"clustered","index":7});
        assert!(DatabaseStatus::from_row(&lost).unwrap().unusable_reason(false).is_some());
        assert_eq!(DatabaseStatus::from_row(&json!({"name":"x"})), None);
    }

    /// A fake server that sends an inactivity-probe echo and a notification
    /// before the reply, and checks that the client answered the echo.
    #[test]
    fn answers_server_echo() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fake.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (sock, _) = listener.accept().unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut w = sock.try_clone().unwrap();
            let mut r = BufReader::new(sock);
            let req = jsonrpc::read_message(&mut r).unwrap();
            assert_eq!(req["method"], "transact");
            let id = req["id"].clone();
            // Probe and a notification, in one write, no delimiters.
            w.write_all(
                br#"{"id":"echo","method":"echo","params":[]}{"id":null,"method":"update2","params":[null,{}]}"#,
            )
            .unwrap();
            let answer = jsonrpc::read_message(&mut r).unwrap();
            let reply = json!({"id": id, "result": [{"rows": []}], "error": null});
            w.write_all(reply.to_string().as_bytes()).unwrap();
            // Nothing else may be sent: the connection then closes cleanly.
            let mut rest = Vec::new();
            let _ = r.read_to_end(&mut rest);
            (Value::Object(answer), rest)
        });
        let remote = format!("unix:{}", path.display());
        let mut c = Client::connect(&remote, &TlsFiles::default(), Deadline::after(Duration::from_secs(5))).unwrap();
        let select = Operation::Select { table: "NB_Global".into(), conditions: vec![], columns: None };
        let rows = c.transact("OVN_Northbound", &[select]).unwrap();
        assert_eq!(rows, vec![json!({"rows": []})]);
        drop(c);
        let (answer, rest) = server.join().unwrap();
        assert_eq!(answer, json!({"id":"echo","result":[],"error":null}));
        assert!(rest.is_empty());
    }
}
