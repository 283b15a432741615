//! The OVSDB client against a real `ovsdb-server` (the harness' `Nb` and
//! `TlsNb`, one per test). A missing `ovsdb-server` fails the tests.

mod common;

use std::time::{Duration, Instant};

use cloudstack_ovn::ovsdb::{
    value, Client, Condition, Deadline, Error, LeaderCheck, Mutation, Mutator, Operation, Remote, TlsFiles, WaitUntil,
};
use common::{Nb, SilentPeer, TlsNb};
use serde_json::{json, Map, Value};
use uuid::Uuid;

const NB: &str = "OVN_Northbound";

fn connect(nb: &Nb) -> Client {
    Client::connect(&nb.remote(), &TlsFiles::default(), deadline()).expect("connect")
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
    let server = Nb::start();
    let mut c = connect(&server);
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
    let server = Nb::start();
    let mut c = connect(&server);
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
    let server = Nb::start();
    let mut c = connect(&server);
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
    let server = Nb::start();
    let mut c = connect(&server);
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
    let server = Nb::start();
    let mut c = connect(&server);
    let e = c.transact("Nope_DB", &[Operation::Comment("x".into())]).unwrap_err();
    assert!(matches!(&e, Error::Rpc { error, .. } if error == "unknown database"), "{e:?}");
    // The connection stays usable after an RPC-level error.
    assert_eq!(c.call("echo", json!(["x"])).unwrap(), json!(["x"]));

    let status = c.database_status(NB).unwrap().expect("NB row in _Server");
    assert_eq!((status.model.as_str(), status.index), ("standalone", None));
    let check = LeaderCheck { database: NB.into(), leader_only: true };
    Client::connect_with(&server.remote(), &TlsFiles::default(), deadline(), &check).expect("standalone passes");
    let check = LeaderCheck { database: "Nope".into(), leader_only: true };
    let e = Client::connect_with(&server.remote(), &TlsFiles::default(), deadline(), &check).err();
    assert!(matches!(e, Some(Error::ServerRejected { .. })), "{e:?}");
}

#[test]
fn tcp_remote() {
    let server = Nb::start_with(&["--remote=ptcp:0:127.0.0.1".into()]);
    let remote = format!("tcp:127.0.0.1:{}", server.listening_port());
    let mut c = Client::connect(&remote, &TlsFiles::default(), deadline()).unwrap();
    assert_eq!(c.remote().to_string(), remote);
    c.transact(NB, &[insert_ls("over-tcp", None)]).unwrap();
    let dbs = c.call("list_dbs", json!([])).unwrap();
    assert!(dbs.as_array().is_some_and(|d| d.contains(&json!(NB))), "{dbs}");
}

#[test]
fn remote_list_skips_dead_remotes() {
    let server = Nb::start();
    let dead = format!("unix:{}", server.dir().join("dead.sock").display());
    let list = format!("{dead}, {}", server.remote());
    let mut c = Client::connect(&list, &TlsFiles::default(), deadline()).unwrap();
    assert_eq!(c.remote(), &Remote::parse(&server.remote()).unwrap());
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
    // Accepts connections but never answers.
    let peer = SilentPeer::start();
    let remote = peer.remote().to_string();
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

/// A stalled first member of a list (it accepts, never answers: a SIGSTOPped
/// Raft leader) gets only its share of the deadline; the next member is
/// used within the same budget. It used to take the whole budget and fail.
#[test]
fn stalled_first_remote_leaves_time_for_the_next() {
    let peer = SilentPeer::start();
    let server = Nb::start();
    let list = format!("{},{}", peer.remote(), server.remote());
    let budget = Duration::from_secs(3);
    let check = LeaderCheck { database: NB.into(), leader_only: false };
    let start = Instant::now();
    let mut c = Client::connect_with(&list, &TlsFiles::default(), Deadline::after(budget), &check)
        .expect("the second remote within the budget");
    let took = start.elapsed();
    assert_eq!(c.remote(), &Remote::parse(&server.remote()).unwrap());
    // Half the budget went to the stalled member, not all of it.
    assert!(took >= budget / 2 - Duration::from_millis(50) && took < budget, "{took:?}");
    // The connection has the rest of the whole budget, not the member's share.
    c.transact(NB, &[Operation::Comment("after".into())]).unwrap();

    // Both stalled: the deadline names the last one tried.
    let peer2 = SilentPeer::start();
    let list = format!("{},{}", peer.remote(), peer2.remote());
    let e =
        Client::connect_with(&list, &TlsFiles::default(), Deadline::after(Duration::from_millis(400)), &check).err();
    assert!(
        matches!(&e, Some(Error::DeadlineAfter { last }) if matches!(&**last, Error::Silent { remote } if remote == peer2.remote())),
        "{e:?}"
    );
}

#[test]
fn tls() {
    let server = TlsNb::start();
    let remote = server.remote();
    let files = TlsFiles {
        private_key: Some(server.client_key()),
        certificate: Some(server.client_cert()),
        ca_cert: Some(server.ca()),
    };

    // The server certificate names "nb id:…", not 127.0.0.1: the chain is
    // enough, as with OVS stream-ssl.
    let mut c = Client::connect(&remote, &files, deadline()).expect("TLS connect");
    c.transact(NB, &[insert_ls("over-tls", None)]).unwrap();

    let none = TlsFiles { ca_cert: Some("none".into()), ..files.clone() };
    Client::connect(&remote, &none, deadline()).expect("-C none").transact(NB, &[]).unwrap();

    let wrong_ca = TlsFiles { ca_cert: Some(server.other_ca()), ..files.clone() };
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
    let rogue =
        TlsFiles { private_key: Some(server.rogue_key()), certificate: Some(server.rogue_cert()), ..files.clone() };
    let e = Client::connect(&remote, &rogue, deadline()).and_then(|mut c| c.transact(NB, &[]));
    assert!(matches!(e, Err(Error::Tls(_))), "{e:?}");

    let missing = std::path::PathBuf::from("/nonexistent/missing-privkey.pem");
    let no_key = TlsFiles { private_key: Some(missing.clone()), ..files.clone() };
    match Client::connect(&remote, &no_key, deadline()) {
        Err(Error::Tls(m)) => assert!(m.contains(&missing.display().to_string()), "{m}"),
        other => panic!("expected a TLS file error, got {:?}", other.err()),
    }
    let e = Client::connect(&remote, &TlsFiles::default(), deadline()).err();
    assert!(matches!(e, Some(Error::Tls(_))), "{e:?}");
}

#[test]
fn monitor_cond_reports_only_matching_rows_and_follows_condition_changes() {
    let nb = Nb::start();
    let mut mon = connect(&nb);
    let mut writer = connect(&nb);
    let cond = |name: &str| json!({"Logical_Switch": [{"columns": ["name"], "where": [["name", "==", name]]}]});
    let initial = mon.monitor_cond(NB, "m", cond("a")).expect("monitor_cond");
    assert_eq!(initial, json!({}), "nothing matches yet");
    // Idle: nothing arrives, and the stream stays usable.
    assert!(mon.wait_updates(Duration::from_millis(200)).unwrap().is_empty());
    writer.transact(NB, &[insert_ls("b", None)]).unwrap();
    assert!(mon.wait_updates(Duration::from_millis(300)).unwrap().is_empty(), "b is not monitored");
    writer.transact(NB, &[insert_ls("a", None)]).unwrap();
    let got = mon.wait_updates(Duration::from_secs(5)).unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].to_string().contains("\"a\""), "{got:?}");
    // A transaction on the monitoring connection still works in between.
    mon.transact(NB, &[Operation::Select { table: "Logical_Switch".into(), conditions: vec![], columns: None }])
        .unwrap();
    // New condition: b enters (reported right away), a leaves.
    mon.monitor_cond_change("m", json!({"Logical_Switch": [{"where": [["name", "==", "b"]]}]})).unwrap();
    let got = mon.wait_updates(Duration::from_secs(5)).unwrap();
    assert!(got.iter().any(|u| u.to_string().contains("\"b\"")), "{got:?}");
    writer.transact(NB, &[insert_ls("a2", None)]).unwrap();
    assert!(mon.wait_updates(Duration::from_millis(300)).unwrap().is_empty());
}
