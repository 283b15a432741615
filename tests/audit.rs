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

/// The rows of ours in `snap`, as (table, kind, network id).
fn our_rows(snap: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (table, rows) in snap.as_object().unwrap() {
        for row in rows.as_object().unwrap().values() {
            let Some(pairs) = row["external_ids"][1].as_array() else { continue };
            let get = |k: &str| pairs.iter().find(|p| p[0] == k).and_then(|p| p[1].as_str()).map(str::to_string);
            if get("cloudstack:owner").as_deref() != Some("cloudstack") {
                continue;
            }
            out.push((
                table.clone(),
                get("cloudstack:kind").unwrap_or_default(),
                get("cloudstack:network_id").unwrap_or_default(),
            ));
        }
    }
    out
}

/// Issue 9 #1: `audit --repair` running in a loop while CloudStack creates
/// and deletes networks and NICs must never delete a row of a live network.
#[test]
fn repair_during_activity_never_harms_live_networks() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    let nb = Nb::start();
    let remote = nb.remote();
    let stop = Arc::new(AtomicBool::new(false));
    let run_for = Duration::from_secs(40);
    let workers: Vec<_> = (0..3u32)
        .map(|w| {
            let remote = remote.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                // (network id, NIC still attached)
                let mut live: Vec<(u32, bool)> = Vec::new();
                let mut i = 0u32;
                let run = |command: &str, payload: Value| ok(run_cs(&remote, command, &registered(payload)));
                while started.elapsed() < run_for {
                    i += 1;
                    let id = 1000 * (w + 1) + i;
                    let nic_payload = nic(
                        id,
                        &format!("3f0c0000-0000-4000-8000-{id:012x}"),
                        "02:00:00:00:10:01",
                        "10.1.1.23",
                        "vm",
                        true,
                    );
                    run("implement-network", network(id));
                    for c in NIC_START {
                        run(c, nic_payload.clone());
                    }
                    match i % 4 {
                        // Deleted again: the network's rows all go.
                        0 => {
                            run("destroy-network", network(id));
                        }
                        // The VM stops: the network stays, without the NIC.
                        1 => {
                            for c in NIC_STOP {
                                run(c, nic_payload.clone());
                            }
                            live.push((id, false));
                        }
                        _ => live.push((id, true)),
                    };
                }
                live
            })
        })
        .collect();
    let auditor = {
        let (remote, stop) = (remote.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut runs = 0;
            while !stop.load(Ordering::Relaxed) {
                let dir = tempfile::tempdir().unwrap();
                let out =
                    product(&remote, &dir.path().join("l")).args(["audit", "--json", "--repair"]).output().unwrap();
                assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
                let v: Value = serde_json::from_slice(&out.stdout)
                    .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
                assert!(v["findings"].is_array(), "{v}");
                runs += 1;
            }
            runs
        })
    };
    let live: Vec<(u32, bool)> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    let audits = auditor.join().unwrap();
    assert!(audits >= 10, "only {audits} audits ran");
    assert!(live.len() >= 10, "only {} networks were created", live.len());

    // Every live network is complete.
    let rows = our_rows(&nb.snapshot());
    let mut damaged = Vec::new();
    for (id, nic_up) in &live {
        let id_s = id.to_string();
        let count = |t: &str, k: &str| rows.iter().filter(|(rt, rk, n)| rt == t && rk == k && *n == id_s).count();
        let mut expected = vec![
            ("Logical_Switch", "network", 1),
            ("Port_Group", "port-group", 1),
            ("DHCP_Options", "dhcpv4", 1),
            ("DHCP_Options", "dhcpv4-norouter", 1),
            ("DNS", "dns", 1),
            ("Logical_Router", "router", 1),
            ("Logical_Router_Port", "guest-router-port", 1),
            ("Logical_Switch_Port", "guest-router-peer", 1),
        ];
        if *nic_up {
            expected.push(("Logical_Switch_Port", "nic", 1));
        }
        for (t, k, n) in expected {
            if count(t, k) != n {
                damaged.push(format!("network {id}: {t} {k}: {} rows, expected {n}", count(t, k)));
            }
        }
    }
    assert!(damaged.is_empty(), "{audits} audits damaged live networks:\n{}", damaged.join("\n"));

    let (out, v) = audit(&nb, &[]);
    assert!(out.status.success(), "the final audit is clean: {v}");
    assert!(findings(&v).is_empty(), "{v}");

    for (id, _) in &live {
        ok(run_cs(&remote, "destroy-network", &registered(network(*id))));
    }
    let left: Vec<_> = our_rows(&nb.snapshot());
    assert!(left.is_empty(), "destroy left rows of ours: {left:?}");
}

/// Issue 9 #1: the guard. Orphans judged from a snapshot are not deleted
/// when their network comes back before the repair commits.
#[test]
fn repair_is_skipped_when_the_orphan_s_network_came_back() {
    use cloudstack_ovn::nb::Owner;
    use cloudstack_ovn::ovsdb::{Client, Deadline, TlsFiles};
    use cloudstack_ovn::plan::audit as plan;

    let nb = Nb::start();
    let payload = nic(7, NIC1, "02:00:00:00:00:07", "10.1.1.23", "vm", true);
    ok(cs(&nb, "implement-network", network(7)));
    run_all(&nb, NIC_START, &payload);
    nb.nbctl(&["ls-del", "cs-net-7"]);

    // The audit's judgement of the NB as it is now...
    let mut rows = Vec::new();
    for t in ["Logical_Switch", "Logical_Switch_Port", "Logical_Router", "DHCP_Options", "DNS", "Port_Group"] {
        let t: &'static str = Box::leak(t.to_string().into_boxed_str());
        rows.extend(nb.rows(t).iter().filter_map(|r| plan::row_from(t, r.as_object().unwrap())));
    }
    let owner = Owner("cloudstack".into());
    let found = plan::audit(&owner, &rows);
    let orphans = found.iter().filter(|f| f.problem == plan::Problem::Orphan).count();
    assert_eq!(orphans, 5, "2 DHCP, DNS, port group, router: {found:#?}");

    // ...then CloudStack implements the network again before the repair commits.
    ok(cs(&nb, "implement-network", network(7)));
    run_all(&nb, NIC_START, &payload);
    let before = nb.snapshot();
    let mut client =
        Client::connect(&nb.remote(), &TlsFiles::default(), Deadline::after(std::time::Duration::from_secs(10)))
            .unwrap();
    for (fixes, ops) in plan::repairs(&found, 1) {
        let e = client.transact("OVN_Northbound", &ops).expect_err("the guard must fail");
        assert!(e.is_conflict(), "{e}: {fixes:?}");
    }
    assert_eq!(before, nb.snapshot(), "no repair was applied to the live network");
    let (out, v) = audit(&nb, &["--repair"]);
    assert!(out.status.success() && findings(&v).is_empty(), "{v}");
}
