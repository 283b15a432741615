//! `cloudstack-ovn audit`: drift injected behind our back with ovn-nbctl is
//! reported; `--repair` converges; a second audit is clean; a foreign row
//! that looks like ours is reported and left untouched.

mod common;

use std::process::Output;

use common::scenario::*;
use common::*;
use serde_json::Value;

fn audit(nb: &Nb, args: &[&str]) -> (Output, Value) {
    let dir = tempfile::tempdir().unwrap();
    let out = product(&nb.remote(), &dir.path().join("l")).arg("audit").arg("--json").args(args).output().unwrap();
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out, v)
}

fn findings(v: &Value) -> Vec<(String, String, String)> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["problem"].as_str().unwrap().into(),
                f["table"].as_str().unwrap().into(),
                f["uuid"].as_str().unwrap().into(),
            )
        })
        .collect()
}

#[test]
fn drift_is_reported_repaired_and_foreign_rows_are_untouched() {
    let nb = Nb::start();
    for id in [5, 6] {
        ok(cs(&nb, "implement-network", network(id)));
        run_all(
            &nb,
            NIC_START,
            &nic(
                id,
                &format!("3f0c0000-0000-4000-8000-00000000000{id}"),
                &format!("02:00:00:00:00:0{id}"),
                "10.1.1.23",
                "vm",
                true,
            ),
        );
    }
    let (out, v) = audit(&nb, &[]);
    assert!(out.status.success(), "a fresh NB is clean: {v}");
    assert!(findings(&v).is_empty(), "{v}");

    // 1. An orphaned DHCP_Options row (its network never existed).
    let orphan = nb.nbctl(&[
        "dhcp-options-create",
        "10.99.0.0/24",
        "cloudstack:owner=cloudstack",
        "cloudstack:kind=dhcpv4",
        "cloudstack:network_id=999",
        "cloudstack:cidr=10.99.0.0/24",
    ]);
    let orphan = if orphan.is_empty() {
        nb.nbctl(&["--bare", "--columns=_uuid", "find", "DHCP_Options", "cidr=10.99.0.0/24"])
    } else {
        orphan
    };
    // 2. A switch deleted behind our back: its DHCP, DNS, port group and router stay behind.
    nb.nbctl(&["ls-del", "cs-net-6"]);
    // 3. A duplicate of network 5's switch, tagged as ours.
    let dup = nb.nbctl(&[
        "create",
        "Logical_Switch",
        "name=cs-net-5",
        "external_ids:\"cloudstack:owner\"=cloudstack",
        "external_ids:\"cloudstack:kind\"=network",
        "external_ids:\"cloudstack:network_id\"=5",
    ]);
    // 4. A foreign row that looks like ours but lacks our tag.
    let foreign =
        nb.nbctl(&["create", "Logical_Switch", "name=cs-net-77", "external_ids:\"cloudstack:network_id\"=77"]);
    let foreign_before = nb.snapshot()["Logical_Switch"][&foreign].clone();

    let (out, v) = audit(&nb, &[]);
    assert_eq!(out.status.code(), Some(1), "{v}");
    let f = findings(&v);
    let has = |p: &str, t: &str, u: &str| f.iter().any(|(fp, ft, fu)| fp == p && ft == t && (u.is_empty() || fu == u));
    assert!(has("orphan", "DHCP_Options", orphan.trim()), "{f:#?}");
    for t in ["DNS", "Port_Group", "Logical_Router"] {
        assert!(has("orphan", t, ""), "orphan {t} of network 6: {f:#?}");
    }
    assert_eq!(
        f.iter().filter(|(p, t, _)| p == "orphan" && t == "DHCP_Options").count(),
        3,
        "999 and both rows of network 6"
    );
    assert!(has("duplicate", "Logical_Switch", &dup), "{f:#?}");
    assert!(has("foreign", "Logical_Switch", &foreign), "{f:#?}");

    let (out, v) = audit(&nb, &["--repair"]);
    assert!(out.status.success(), "{v}");
    assert!(v["repaired"].as_u64().unwrap() >= 7, "{v}");

    let (out, v) = audit(&nb, &[]);
    assert!(out.status.success(), "{v}");
    let f = findings(&v);
    assert_eq!(f.len(), 1, "only the foreign row is left to report: {f:#?}");
    assert_eq!(f[0].0, "foreign");
    assert_eq!(nb.snapshot()["Logical_Switch"][&foreign], foreign_before, "the foreign row is untouched");

    // Network 5 itself was never harmed: its switch and VM port are intact.
    assert!(nb.nbctl(&["lsp-list", "cs-net-5"]).contains("3f0c0000-0000-4000-8000-000000000005"));
    assert_eq!(nb.count_rows("DHCP_Options"), 2);
}
