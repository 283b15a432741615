//! A standalone OVN_Northbound ovsdb-server, plus whole-DB snapshots.

use std::path::Path;
use std::process::Output;
use std::sync::{Arc, OnceLock};

use serde_json::{json, Map, Value};

use super::daemon::{standalone_ovsdb, Daemon};
use super::util::{ovs_command, require, run, run_ok, LabDir, CMD_TIMEOUT, OVN_NB_SCHEMA};

/// Standalone NB `ovsdb-server` (no northd) with the OVN_Northbound schema
/// and the NB_Global row created by `ovn-nbctl init`.
pub struct Nb {
    // Field order = drop order: the server stops before its dir goes away.
    // None: a clustered NB whose members a `Cluster` owns (`Nb::attach`).
    server: Option<Daemon>,
    remote: String,
    dir: Arc<LabDir>,
}

impl Nb {
    pub fn start() -> Nb {
        Nb::start_with(&[])
    }

    /// [`Nb::start`] with extra `ovsdb-server` arguments, e.g.
    /// `--remote=ptcp:0:127.0.0.1` (see [`Nb::listening_port`]).
    pub fn start_with(extra: &[String]) -> Nb {
        require(&["ovsdb-tool", "ovsdb-server", "ovn-nbctl", "ovsdb-client"], &[OVN_NB_SCHEMA]);
        Nb::start_in_with(Arc::new(LabDir::new("nb")), extra)
    }

    /// NB server inside an existing lab dir (used by `Central`).
    pub(crate) fn start_in(dir: Arc<LabDir>) -> Nb {
        Nb::start_in_with(dir, &[])
    }

    fn start_in_with(dir: Arc<LabDir>, extra: &[String]) -> Nb {
        let (server, remote) = standalone_ovsdb(dir.path(), "nb", OVN_NB_SCHEMA, extra);
        let nb = Nb { server: Some(server), remote, dir };
        nb.nbctl(&["init"]);
        nb
    }

    /// The NB API over servers someone else runs (a Raft cluster's
    /// `remote` list); pause/resume/log/port need a server of our own.
    pub(crate) fn attach(remote: String, dir: Arc<LabDir>) -> Nb {
        Nb { server: None, remote, dir }
    }

    pub(crate) fn server_mut(&mut self) -> Option<&mut Daemon> {
        self.server.as_mut()
    }

    fn server(&self) -> &Daemon {
        self.server.as_ref().expect("an NB server of our own (not a cluster's)")
    }

    /// Stall the server (SIGSTOP) until [`Nb::resume`] (also done on drop).
    pub fn pause(&self) {
        self.server().pause().expect("NB server running");
    }

    pub fn resume(&self) {
        self.server().resume();
    }

    /// `unix:/tmp/csovn-.../nb.sock`
    pub fn remote(&self) -> String {
        self.remote.clone()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `ovsdb-server` log file of this NB.
    pub fn log_file(&self) -> &Path {
        self.server().log()
    }

    /// The port the kernel chose for a `ptcp:0` / `pssl:0` remote.
    pub fn listening_port(&self) -> u16 {
        self.server().listening_port()
    }

    /// `ovn-nbctl --db=<remote> --timeout=10 ARGS`; panics (with stderr) on
    /// failure; returns trimmed stdout.
    pub fn nbctl(&self, args: &[&str]) -> String {
        run_ok(&mut self.nbctl_command(args))
    }

    pub fn nbctl_result(&self, args: &[&str]) -> Output {
        run(&mut self.nbctl_command(args), CMD_TIMEOUT)
    }

    fn nbctl_command(&self, args: &[&str]) -> std::process::Command {
        let mut c = ovs_command(self.dir(), "ovn-nbctl");
        c.arg(format!("--db={}", self.remote)).arg("--timeout=10").args(args);
        c
    }

    /// `ovsdb-client transact` of `ops` (the operations, without the
    /// leading "OVN_Northbound"); panics on any error, returns the result
    /// array.
    pub fn transact(&self, ops: &[Value]) -> Value {
        let mut all = vec![json!("OVN_Northbound")];
        all.extend_from_slice(ops);
        let txn = Value::Array(all).to_string();
        let out = run_ok(
            ovs_command(self.dir(), "ovsdb-client").arg("--timeout=10").arg("transact").arg(&self.remote).arg(&txn),
        );
        let v: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("ovsdb-client transact returned non-JSON ({e}): {out}"));
        let results = v.as_array().unwrap_or_else(|| panic!("transact result is not an array: {v}"));
        for r in results {
            if r.get("error").is_some() {
                panic!("transact {txn} failed: {v}");
            }
        }
        v
    }

    /// All rows of `table` in OVSDB JSON notation (as `select` returns them).
    pub fn rows(&self, table: &str) -> Vec<Value> {
        let r = self.transact(&[json!({"op": "select", "table": table, "where": []})]);
        r[0]["rows"].as_array().cloned().unwrap_or_default()
    }

    pub fn count_rows(&self, table: &str) -> usize {
        let r = self.transact(&[json!({"op": "select", "table": table, "where": [], "columns": ["_uuid"]})]);
        r[0]["rows"].as_array().map_or(0, Vec::len)
    }

    /// Canonical JSON of the whole OVN_Northbound DB:
    /// `{ "<table>": { "<row uuid>": { "<column>": value, ... } } }` for every
    /// table of the schema (empty tables as `{}`), without `_uuid` (it is the
    /// key) and `_version`. Values stay in OVSDB JSON notation
    /// (`["uuid",..]`, `["set",[..]]`, `["map",[[k,v],..]]`) with set
    /// elements and map pairs sorted, so equal contents compare equal.
    pub fn snapshot(&self) -> Value {
        let tables = nb_tables();
        let ops: Vec<Value> = tables.iter().map(|t| json!({"op": "select", "table": t, "where": []})).collect();
        let r = self.transact(&ops);
        let mut db = Map::new();
        for (t, res) in tables.iter().zip(r.as_array().expect("array")) {
            let mut rows = Map::new();
            for row in res["rows"].as_array().expect("rows") {
                let obj = row.as_object().expect("row object");
                let uuid = obj["_uuid"][1].as_str().expect("_uuid").to_string();
                let cols: Map<String, Value> = obj
                    .iter()
                    .filter(|(k, _)| k.as_str() != "_uuid" && k.as_str() != "_version")
                    .map(|(k, v)| (k.clone(), canonicalize(v)))
                    .collect();
                rows.insert(uuid, Value::Object(cols));
            }
            db.insert(t.clone(), Value::Object(rows));
        }
        Value::Object(db)
    }
}

/// Table names of the installed OVN_Northbound schema (read once).
fn nb_tables() -> &'static Vec<String> {
    static T: OnceLock<Vec<String>> = OnceLock::new();
    T.get_or_init(|| {
        let s = std::fs::read_to_string(OVN_NB_SCHEMA)
            .unwrap_or_else(|e| panic!("{} ({OVN_NB_SCHEMA}: {e})", super::util::INSTALL_HINT));
        let v: Value = serde_json::from_str(&s).expect("NB schema is JSON");
        let mut t: Vec<String> = v["tables"].as_object().expect("tables").keys().cloned().collect();
        t.sort();
        t
    })
}

/// Canonicalise an OVSDB JSON value: sort `["set", ..]` elements and
/// `["map", ..]` pairs (by their JSON text), recursively.
pub fn canonicalize(v: &Value) -> Value {
    match v {
        Value::Array(a) if a.len() == 2 && a[0] == "set" && a[1].is_array() => {
            let mut items: Vec<Value> = a[1].as_array().unwrap().iter().map(canonicalize).collect();
            items.sort_by_cached_key(ToString::to_string);
            json!(["set", items])
        }
        Value::Array(a) if a.len() == 2 && a[0] == "map" && a[1].is_array() => {
            let mut pairs: Vec<Value> = a[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| match p.as_array() {
                    Some(kv) if kv.len() == 2 => {
                        json!([canonicalize(&kv[0]), canonicalize(&kv[1])])
                    }
                    _ => p.clone(),
                })
                .collect();
            pairs.sort_by_cached_key(|p| p[0].to_string());
            json!(["map", pairs])
        }
        _ => v.clone(),
    }
}
