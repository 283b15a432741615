//! The OVSDB client against a real `ovsdb-server` (one per test, in a temp
//! dir, stopped by its pidfile on drop). A missing `ovsdb-server` fails the
//! tests: install `openvswitch-common` and `ovn-central` (for the schema).

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cloudstack_ovn::ovsdb::{
    value, Client, Condition, Deadline, Error, LeaderCheck, Mutation, Mutator, Operation, Remote, TlsFiles, WaitUntil,
};
use serde_json::{json, Map, Value};
use uuid::Uuid;

const NB: &str = "OVN_Northbound";
const SCHEMA: &str = "/usr/share/ovn/ovn-nb.ovsschema";

fn run(cmd: &mut Command) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (are openvswitch-common and ovn-central installed?): {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

struct Server {
    dir: tempfile::TempDir,
}

impl Server {
    /// Start ovsdb-server on `DIR/nb.sock` plus the extra `--remote`s/options.
    fn start(extra: &[String]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        Server::start_in(dir, extra)
    }

    fn start_in(dir: tempfile::TempDir, extra: &[String]) -> Server {
        let d = dir.path();
        let schema = if Path::new(SCHEMA).exists() {
            PathBuf::from(SCHEMA)
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/ovn-nb.ovsschema")
        };
        run(Command::new("ovsdb-tool").arg("create").arg(d.join("nb.db")).arg(&schema));
        run(Command::new("ovsdb-server")
            .arg(d.join("nb.db"))
            .arg(format!("--remote=punix:{}", d.join("nb.sock").display()))
            .arg(format!("--unixctl={}", d.join("nb.ctl").display()))
            .arg(format!("--pidfile={}", d.join("nb.pid").display()))
            .arg(format!("--log-file={}", d.join("nb.log").display()))
            .args(["--detach", "--no-chdir"])
            .args(extra));
        let server = Server { dir };
        server.wait_for(|s| s.dir.path().join("nb.sock").exists());
        server
    }

    fn wait_for(&self, ready: impl Fn(&Server) -> bool) {
        let start = Instant::now();
        while !ready(self) {
            assert!(start.elapsed() < Duration::from_secs(10), "ovsdb-server did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn unix(&self) -> String {
        format!("unix:{}", self.path("nb.sock").display())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("nb.log")).unwrap_or_default()
    }

    /// The port of a `ptcp:0` / `pssl:0` remote, from the log line
    /// "0:127.0.0.1: listening on port N".
    fn port(&self) -> u16 {
        self.wait_for(|s| s.log().contains("listening on port "));
        let log = self.log();
        let tail = log.split("listening on port ").nth(1).unwrap_or_default();
        let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().unwrap_or_else(|_| panic!("no port in log: {log}"))
    }

    fn connect(&self) -> Client {
        Client::connect(&self.unix(), &TlsFiles::default(), deadline()).expect("connect")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only the server we started: the pid from its own pidfile.
        if let Ok(pid) = std::fs::read_to_string(self.path("nb.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).stderr(Stdio::null()).status();
        }
    }
}

fn deadline() -> Deadline {
    Deadline::after(Duration::from_secs(10))
}

fn row(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn insert_ls(name: &str, uuid: Option<Uuid>) -> Operation {
    Operation::Insert { table: "Logical_Switch".into(), row: row(json!({ "name": name })), uuid_name: None, uuid }
}

fn insert_lsp(uuid_name: &str, name: &str) -> Operation {
    Operation::Insert {
        table: "Logical_Switch_Port".into(),
        row: row(json!({"name": name, "addresses": value::string_set(["02:00:4c:3e:00:05 10.1.1.23"])})),
        uuid_name: Some(uuid_name.into()),
        uuid: None,
    }
}

fn link_ports(ls: Uuid, names: &[&str]) -> Operation {
    Operation::Mutate {
        table: "Logical_Switch".into(),
        conditions: vec![Condition::uuid_is(ls)],
        mutations: vec![Mutation(
            "ports".into(),
            Mutator::Insert,
            value::set(names.iter().map(|n| value::named_uuid(n)).collect()),
        )],
    }
}

const LS: &str = "11111111-2222-3333-4444-555555555555";

#[test]
fn client_chosen_uuid_and_duplicate() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    let u = Uuid::parse_str(LS).unwrap();
    let r = c.transact(NB, &[insert_ls("cs-net-42", Some(u))]).unwrap();
    assert_eq!(value::as_uuid(&r[0]["uuid"]), Some(u));
    let e = c.transact(NB, &[insert_ls("cs-net-42", Some(u))]).unwrap_err();
    assert!(e.is_conflict() && !e.is_connection(), "{e}");
    match e {
        Error::Operation { index, op, table, error, .. } => {
            assert_eq!((index, op.as_str(), table.as_deref()), (0, "insert", Some("Logical_Switch")));
            assert_eq!(error, "duplicate uuid");
        }
        other => panic!("expected duplicate uuid, got {other:?}"),
    }
    assert!(c.bytes_read() > 0 && c.bytes_written() > 0);
}

#[test]
fn named_uuid_link_and_one_element_set() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    let ls = Uuid::parse_str(LS).unwrap();
    c.transact(NB, &[insert_ls("net", Some(ls))]).unwrap();
    let r = c
        .transact(NB, &[insert_lsp("p1", "port-1"), link_ports(ls, &["p1"]), Operation::Comment("test: link".into())])
        .unwrap();
    let lsp = value::as_uuid(&r[0]["uuid"]).expect("lsp uuid");
    assert_eq!(r[1], json!({"count": 1}));
    let select = |table: &str, cond, cols: &[&str]| Operation::Select {
        table: table.into(),
        conditions: vec![cond],
        columns: Some(cols.iter().map(|s| s.to_string()).collect()),
    };
    let r = c
        .transact(
            NB,
            &[
                select("Logical_Switch", Condition::uuid_is(ls), &["name", "ports", "external_ids"]),
                select(
                    "Logical_Switch_Port",
                    Condition::eq("name", "port-1"),
                    &["addresses", "dhcpv4_options", "type"],
                ),
            ],
        )
        .unwrap();
    let ls_row = &r[0]["rows"][0];
    // The server sends the one-port set as a bare uuid (RFC 7047 §5.1).
    assert_eq!(ls_row["ports"], value::uuid(lsp));
    assert_eq!(value::uuid_set_of(&ls_row["ports"]), vec![lsp]);
    assert!(value::string_map_of(&ls_row["external_ids"]).is_empty());
    let lsp_row = &r[1]["rows"][0];
    assert_eq!(value::string_set_of(&lsp_row["addresses"]), vec!["02:00:4c:3e:00:05 10.1.1.23"]);
    assert_eq!(value::optional_uuid(&lsp_row["dhcpv4_options"]), None);
    assert_eq!(value::optional_string(&lsp_row["type"]).as_deref(), Some(""));
}

#[test]
fn commit_time_constraint_violation() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    let ls = Uuid::parse_str(LS).unwrap();
    c.transact(NB, &[insert_ls("net", Some(ls))]).unwrap();
    // Logical_Switch_Port has an index on "name": the clash is found at commit.
    let ops = [insert_lsp("a", "dup"), insert_lsp("b", "dup"), link_ports(ls, &["a", "b"])];
    match c.transact(NB, &ops) {
        Err(e @ Error::Commit { .. }) => {
            assert!(e.is_conflict());
            assert!(
                matches!(&e, Error::Commit { error, details: Some(d) } if error == "constraint violation" && d.contains("index")),
                "{e:?}"
            );
        }
        other => panic!("expected a commit error, got {other:?}"),
    }
}

#[test]
fn wait_guard_times_out() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    let guard = Operation::Wait {
        table: "Logical_Switch".into(),
        conditions: vec![Condition::eq("name", "net-42")],
        columns: vec!["name".into()],
        until: WaitUntil::Equal,
        rows: vec![],
        timeout_ms: Some(0),
    };
    let ops = [guard, insert_ls("net-42", None)];
    c.transact(NB, &ops).unwrap();
    let e = c.transact(NB, &ops).unwrap_err();
    assert!(e.is_conflict(), "{e}");
    assert!(
        matches!(&e, Error::Operation { index: 0, op, error, .. } if op == "wait" && error == "timed out"),
        "{e:?}"
    );
    // Nothing was committed by the failed transaction.
    let all =
        Operation::Select { table: "Logical_Switch".into(), conditions: vec![], columns: Some(vec!["name".into()]) };
    assert_eq!(c.transact(NB, &[all]).unwrap()[0]["rows"].as_array().map(Vec::len), Some(1));
}

#[test]
fn rpc_error_and_leader_check() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    let e = c.transact("Nope_DB", &[Operation::Comment("x".into())]).unwrap_err();
    assert!(matches!(&e, Error::Rpc { error, .. } if error == "unknown database"), "{e:?}");
    // The connection stays usable after an RPC-level error.
    assert_eq!(c.call("echo", json!(["x"])).unwrap(), json!(["x"]));

    let status = c.database_status(NB).unwrap().expect("NB row in _Server");
    assert_eq!((status.model.as_str(), status.index), ("standalone", None));
    let check = LeaderCheck { database: NB.into(), leader_only: true };
    Client::connect_with(&server.unix(), &TlsFiles::default(), deadline(), &check).expect("standalone passes");
    let check = LeaderCheck { database: "Nope".into(), leader_only: true };
    let e = Client::connect_with(&server.unix(), &TlsFiles::default(), deadline(), &check).err();
    assert!(matches!(e, Some(Error::ServerRejected { .. })), "{e:?}");
}

#[test]
fn tcp_remote() {
    let server = Server::start(&["--remote=ptcp:0:127.0.0.1".into()]);
    let remote = format!("tcp:127.0.0.1:{}", server.port());
    let mut c = Client::connect(&remote, &TlsFiles::default(), deadline()).unwrap();
    assert_eq!(c.remote().to_string(), remote);
    c.transact(NB, &[insert_ls("over-tcp", None)]).unwrap();
    let dbs = c.call("list_dbs", json!([])).unwrap();
    assert!(dbs.as_array().is_some_and(|d| d.contains(&json!(NB))), "{dbs}");
}

#[test]
fn remote_list_skips_dead_remotes() {
    let server = Server::start(&[]);
    let dead = format!("unix:{}", server.path("dead.sock").display());
    let list = format!("{dead}, {}", server.unix());
    let mut c = Client::connect(&list, &TlsFiles::default(), deadline()).unwrap();
    assert_eq!(c.remote(), &Remote::parse(&server.unix()).unwrap());
    c.transact(NB, &[Operation::Comment("ok".into())]).unwrap();

    let all_dead = format!("{dead},tcp:127.0.0.1:1");
    match Client::connect(&all_dead, &TlsFiles::default(), deadline()) {
        Err(e @ Error::AllRemotesFailed { .. }) => {
            assert!(e.is_connection());
            assert!(e.to_string().contains("all 2 OVSDB remotes failed"), "{e}");
        }
        other => panic!("expected AllRemotesFailed, got {:?}", other.err()),
    }
}

#[test]
fn deadline_on_silent_peer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("silent.sock");
    // Bound and listening (the kernel completes connects) but never answers.
    let _listener = UnixListener::bind(&path).unwrap();
    let remote = format!("unix:{}", path.display());
    let budget = Duration::from_millis(300);

    let start = Instant::now();
    let mut c = Client::connect(&remote, &TlsFiles::default(), Deadline::after(budget)).unwrap();
    let e = c.transact(NB, &[Operation::Comment("x".into())]).unwrap_err();
    assert!(matches!(e, Error::DeadlineExceeded), "{e:?}");
    assert!(e.is_connection());
    let took = start.elapsed();
    assert!(took >= budget - Duration::from_millis(5) && took < budget * 4, "{took:?}");
    // The connection is now unusable rather than out of sync.
    c.set_deadline(deadline());
    assert!(c.transact(NB, &[]).is_err());

    // With a server check, connect itself is bounded by the deadline.
    let start = Instant::now();
    let check = LeaderCheck { database: NB.into(), leader_only: true };
    let e = Client::connect_with(&remote, &TlsFiles::default(), Deadline::after(budget), &check).err();
    // ... and names the remote it ran out on.
    assert!(
        matches!(&e, Some(Error::DeadlineAfter { last }) if matches!(&**last, Error::Silent { remote: r } if *r == remote)),
        "{e:?}"
    );
    assert!(start.elapsed() < budget * 4);
}

/// Make a PKI with ovs-pki in `dir/NAME` and sign `certs` (in `dir`).
fn pki(dir: &Path, name: &str, certs: &[&str]) {
    let pki = dir.join(name);
    run(Command::new("ovs-pki").arg(format!("--dir={}", pki.display())).arg("init").current_dir(dir));
    for cert in certs {
        run(Command::new("ovs-pki")
            .arg(format!("--dir={}", pki.display()))
            .args(["req+sign", cert, "switch"])
            .current_dir(dir));
    }
}

#[test]
fn tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    pki(&d, "other", &["rogue"]);
    pki(&d, "pki", &["nb", "client"]);
    let ca = d.join("pki/switchca/cacert.pem");
    let server = Server::start_in(
        dir,
        &[
            "--remote=pssl:0:127.0.0.1".into(),
            format!("--private-key={}", d.join("nb-privkey.pem").display()),
            format!("--certificate={}", d.join("nb-cert.pem").display()),
            format!("--ca-cert={}", ca.display()),
        ],
    );
    let remote = format!("ssl:127.0.0.1:{}", server.port());
    let files = TlsFiles {
        private_key: Some(d.join("client-privkey.pem")),
        certificate: Some(d.join("client-cert.pem")),
        ca_cert: Some(ca),
    };

    // The server certificate names "nb id:…", not 127.0.0.1: the chain is
    // enough, as with OVS stream-ssl.
    let mut c = Client::connect(&remote, &files, deadline()).expect("TLS connect");
    c.transact(NB, &[insert_ls("over-tls", None)]).unwrap();

    let none = TlsFiles { ca_cert: Some("none".into()), ..files.clone() };
    Client::connect(&remote, &none, deadline()).expect("-C none").transact(NB, &[]).unwrap();

    let wrong_ca = TlsFiles { ca_cert: Some(d.join("other/switchca/cacert.pem")), ..files.clone() };
    // ovs-pki names its CA "OVS switchca CA Certificate (<time to the
    // second>)": two PKIs made within one second have the same CA name, and
    // webpki then reports the wrong CA as BadSignature instead of
    // UnknownIssuer. Either way the chain must not verify.
    match Client::connect(&remote, &wrong_ca, deadline()) {
        Err(Error::Tls(m)) => assert!(
            m.contains("certificate verify failed") && (m.contains("UnknownIssuer") || m.contains("BadSignature")),
            "{m}"
        ),
        other => panic!("expected a TLS verify failure, got {:?}", other.err()),
    }

    // A client certificate from another CA: the server refuses it.
    let rogue = TlsFiles {
        private_key: Some(d.join("rogue-privkey.pem")),
        certificate: Some(d.join("rogue-cert.pem")),
        ..files.clone()
    };
    let e = Client::connect(&remote, &rogue, deadline()).and_then(|mut c| c.transact(NB, &[]));
    assert!(matches!(e, Err(Error::Tls(_))), "{e:?}");

    let missing = d.join("missing-privkey.pem");
    let no_key = TlsFiles { private_key: Some(missing.clone()), ..files.clone() };
    match Client::connect(&remote, &no_key, deadline()) {
        Err(Error::Tls(m)) => assert!(m.contains(&missing.display().to_string()), "{m}"),
        other => panic!("expected a TLS file error, got {:?}", other.err()),
    }
    let e = Client::connect(&remote, &TlsFiles::default(), deadline()).err();
    assert!(matches!(e, Some(Error::Tls(_))), "{e:?}");
}
