//! Issue 9: ownership and leaks under concurrency. Rows of ours are never
//! left behind by a race, rows without our tag are never changed or
//! deleted, and a name held by someone else is refused naming the holder.

mod common;

use common::scenario::*;
use common::*;
use serde_json::{json, Value};

fn audit(nb: &Nb, args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = product(&nb.remote(), &dir.path().join("l")).arg("audit").arg("--json").args(args).output().unwrap();
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn problems(v: &Value) -> Vec<(String, String)> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["problem"].as_str().unwrap().to_string(), f["table"].as_str().unwrap().to_string()))
        .collect()
}

fn lb(id: u32, rule: u64, public_ip: &str) -> Value {
    with(
        network(id),
        json!({"lb_rules": [{"id": rule, "name": "web", "publicIp": public_ip, "publicPort": 80, "privatePort": 8080,
                             "protocol": "tcp", "algorithm": "roundrobin", "revoke": false,
                             "backends": [{"ip": "10.1.1.23", "port": 8080, "revoked": false}]}]}),
    )
}

/// #10: a Load_Balancer created while destroy-network ran outlives the
/// router; a later destroy must still find (by owner tag) and remove it.
#[test]
fn destroy_removes_a_balancer_whose_router_is_gone() {
    let nb = Nb::start();
    ok(cs(&nb, "implement-network", network(50)));
    ok(cs(&nb, "assign-ip", public(network(50), "203.0.113.13", true, "untagged")));
    ok(cs(&nb, "apply-lb-rules", lb(50, 9, "203.0.113.13")));
    assert_eq!(nb.count_rows("Load_Balancer"), 1);
    // What the race leaves: the router deleted, the balancer (a root row) kept.
    nb.nbctl(&["lr-del", "cs-router-50"]);
    ok(cs(&nb, "destroy-network", network(50)));
    assert_eq!(nb.count_rows("Load_Balancer"), 0, "the balancer is found by its tag and removed");
    // Idempotent.
    twice(&nb, "destroy-network", network(50));
}

/// #10: the race itself: apply-lb-rules and destroy-network at once, many
/// times; one destroy always leaves no balancer behind.
#[test]
fn balancer_racing_destroy_never_leaks() {
    let nb = Nb::start();
    for round in 0..8u32 {
        let id = 60 + round;
        ok(cs(&nb, "implement-network", network(id)));
        ok(cs(&nb, "assign-ip", public(network(id), "203.0.113.13", true, "untagged")));
        let remote = nb.remote();
        let creator =
            std::thread::spawn(move || run_cs(&remote, "apply-lb-rules", &registered(lb(id, 9, "203.0.113.13"))));
        ok(cs(&nb, "destroy-network", network(id)));
        // Whichever commits first, nothing of the network may remain:
        // a balancer attached after destroy's read fails its guard.
        let _ = creator.join().unwrap();
        assert_eq!(owned_rows(&nb), 0, "round {round}: {:?}", nb.rows("Load_Balancer"));
    }
}

/// #10: set-dhcp-options racing release-nic left a per-NIC DHCP row nothing
/// removes; audit flags such a row and repairs it.
#[test]
fn audit_flags_a_per_nic_dhcp_row_without_its_port() {
    let nb = Nb::start();
    ok(cs(&nb, "implement-network", network(13)));
    run_all(&nb, NIC_START, &vm1(13));
    ok(cs(&nb, "set-dhcp-options", with(vm1(13), json!({"options": {"15": "override.example"}}))));
    assert_eq!(nb.count_rows("DHCP_Options"), 3);
    // What the race leaves: the port gone, its own DHCP row kept.
    nb.nbctl(&["lsp-del", NIC1]);
    let v = audit(&nb, &[]);
    assert!(problems(&v).contains(&("orphan".into(), "DHCP_Options".into())), "{v}");
    let v = audit(&nb, &["--repair"]);
    assert_eq!(v["repaired"], 1, "{v}");
    assert_eq!(nb.count_rows("DHCP_Options"), 2);
    assert!(problems(&audit(&nb, &[])).is_empty());
}

/// #10: shutdown-vpc with a tier still attached is refused (the tier's
/// router-type port would point at a deleted router port).
#[test]
fn shutdown_vpc_with_an_attached_tier_is_refused() {
    let nb = Nb::start();
    ok(cs(&nb, "implement-vpc", public(vpc(5), "203.0.113.20", true, "vlan://101")));
    ok(cs(&nb, "implement-network", tier(5, 71, 1)));
    let snap = nb.snapshot();
    let msg = fails(cs(&nb, "shutdown-vpc", vpc(5)), 2);
    assert!(msg.contains("cs-vpc-5") && msg.contains("tier") && msg.contains("destroy-network"), "{msg}");
    assert_eq!(snap, nb.snapshot(), "NB unchanged");
    ok(cs(&nb, "destroy-network", tier(5, 71, 1)));
    ok(cs(&nb, "shutdown-vpc", vpc(5)));
    assert_eq!(owned_rows(&nb), 0);
}

/// #10: a router-type port of ours whose router port is gone is reported
/// (dangling) and repaired.
#[test]
fn audit_reports_a_dangling_router_peer() {
    let nb = Nb::start();
    ok(cs(&nb, "implement-vpc", vpc(5)));
    ok(cs(&nb, "implement-network", tier(5, 71, 1)));
    nb.nbctl(&["lr-del", "cs-vpc-5"]);
    let v = audit(&nb, &[]);
    assert!(problems(&v).contains(&("dangling".into(), "Logical_Switch_Port".into())), "{v}");
    let v = audit(&nb, &["--repair"]);
    assert_eq!(v["repaired"], 1, "{v}");
    assert!(!nb.nbctl(&["lsp-list", "cs-net-71"]).contains("lrp"), "the peer left the switch");
    assert!(problems(&audit(&nb, &[])).is_empty());
}

fn fw(id: u32, rules: Vec<Value>) -> Value {
    with(network(id), json!({"fw_rules": {"default_egress_allow": true, "cidr": "10.1.1.0/24", "rules": rules}}))
}

fn ingress(id: u64, port: u16) -> Value {
    json!({"id": id, "type": "ingress", "protocol": "tcp", "portStart": port, "portEnd": port,
           "publicIp": "203.0.113.13", "sourceCidrs": ["0.0.0.0/0"], "destCidrs": []})
}

/// The operator's own ACL on our port group, as `ovn-nbctl` shows it.
fn foreign_acl(nb: &Nb, pg: &str, priority: u16) -> (String, Value) {
    let p = priority.to_string();
    nb.nbctl(&["--type=port-group", "acl-add", pg, "to-lport", &p, "ip4.src == 192.0.2.7", "drop"]);
    let uuid = nb.nbctl(&["--bare", "--columns=_uuid", "find", "ACL", &format!("priority={p}")]);
    let row = nb.snapshot()["ACL"][&uuid].clone();
    assert!(!row.is_null(), "{uuid:?}: {}", nb.nbctl(&["list", "ACL"]));
    (uuid, row)
}

/// #5: a rule-set replacement never removes an ACL without our tag that an
/// operator attached to our port group (firewall and network ACL).
#[test]
fn rule_sets_leave_foreign_acls_on_our_port_group() {
    let nb = Nb::start();
    ok(cs(&nb, "implement-network", network(44)));
    run_all(&nb, NIC_START, &vm1(44));
    ok(cs(&nb, "assign-ip", public(network(44), "203.0.113.13", true, "untagged")));
    ok(cs(&nb, "apply-fw-rules", fw(44, vec![ingress(1, 22)])));
    let (uuid, row) = foreign_acl(&nb, "cs_net_44", 1234);
    twice(&nb, "apply-fw-rules", fw(44, vec![ingress(2, 80)]));
    twice(&nb, "apply-fw-rules", fw(44, vec![]));
    assert_eq!(nb.snapshot()["ACL"][&uuid], row, "the operator's ACL is untouched");
    assert!(nb.nbctl(&["get", "Port_Group", "cs_net_44", "acls"]).contains(&uuid), "and still on the group");

    // A VPC tier's network ACL list, replaced and emptied.
    ok(cs(&nb, "implement-vpc", vpc(5)));
    ok(cs(&nb, "implement-network", tier(5, 71, 1)));
    let acl = |rules: Value| with(tier(5, 71, 1), json!({"acl_rules": rules}));
    let deny22 = json!([{"id": 1, "number": 1, "trafficType": "Ingress", "action": "Deny", "protocol": "tcp",
                         "portStart": 22, "portEnd": 22, "sourceCidrs": ["0.0.0.0/0"]}]);
    ok(cs(&nb, "apply-network-acl", acl(deny22)));
    let (uuid, row) = foreign_acl(&nb, "cs_net_71", 1235);
    twice(&nb, "apply-network-acl", acl(json!([])));
    assert_eq!(nb.snapshot()["ACL"][&uuid], row);
    assert!(nb.nbctl(&["get", "Port_Group", "cs_net_71", "acls"]).contains(&uuid));
}

/// #5 sibling: an operator's own Gateway_Chassis pin on our gateway port
/// survives our re-convergence of the configured chassis.
#[test]
fn foreign_gateway_chassis_pin_is_kept() {
    let nb = Nb::start();
    ok(cs(&nb, "implement-network", network(50)));
    ok(cs(&nb, "assign-ip", public(network(50), "203.0.113.13", true, "untagged")));
    nb.nbctl(&["lrp-set-gateway-chassis", "lrp-cs-router-50-pub", "hv-operator", "5"]);
    let before = nb.nbctl(&["lrp-get-gateway-chassis", "lrp-cs-router-50-pub"]);
    assert!(before.contains("hv-operator"), "{before}");
    twice(&nb, "assign-ip", public(network(50), "203.0.113.14", false, "untagged"));
    assert_eq!(nb.nbctl(&["lrp-get-gateway-chassis", "lrp-cs-router-50-pub"]), before);
}

/// #9: a foreign switch `cs-net-N` makes every command that would create
/// the network's switch refuse with "not owned", naming who holds it; no
/// second switch of that name appears.
#[test]
fn foreign_switch_name_is_refused_by_every_creator() {
    let nb = Nb::start();
    nb.nbctl(&["ls-add", "cs-net-9"]);
    let snap = nb.snapshot();
    for command in ["implement-network", "prepare-nic", "add-dhcp-entry"] {
        let msg = fails(cs(&nb, command, vm1(9)), 5);
        assert!(
            msg.contains("not owned") && msg.contains("cs-net-9") && msg.contains("not tagged"),
            "{command}: {msg}"
        );
        assert_eq!(snap, nb.snapshot(), "{command}: NB unchanged");
    }
    // Another installation's switch: its owner is named.
    nb.nbctl(&[
        "ls-add",
        "cs-net-10",
        "--",
        "set",
        "Logical_Switch",
        "cs-net-10",
        "external_ids:cloudstack\\:owner=other",
    ]);
    let msg = fails(cs(&nb, "prepare-nic", vm1(10)), 5);
    assert!(msg.contains("not owned") && msg.contains("\"other\""), "{msg}");
}

/// #9: a foreign port group `cs_net_N` is "not owned" (it used to be "gave
/// up after 8 attempts"), naming who holds it.
#[test]
fn foreign_port_group_name_is_not_owned() {
    let nb = Nb::start();
    nb.nbctl(&["pg-add", "cs_net_9"]);
    ok(cs(&nb, "implement-network", network(9)));
    let snap = nb.snapshot();
    let msg = fails(cs(&nb, "prepare-nic", vm1(9)), 5);
    assert!(msg.contains("not owned") && msg.contains("cs_net_9") && msg.contains("not tagged"), "{msg}");
    assert!(!msg.contains("gave up"), "{msg}");
    assert_eq!(snap, nb.snapshot());
}

/// #9 siblings: a foreign router port holding our guest router port's name.
#[test]
fn foreign_router_port_name_is_not_owned() {
    let nb = Nb::start();
    nb.nbctl(&["lr-add", "someone"]);
    nb.nbctl(&["lrp-add", "someone", "lrp-cs-net-9", "02:00:00:00:00:99", "192.0.2.1/24"]);
    let msg = fails(cs(&nb, "implement-network", network(9)), 5);
    assert!(msg.contains("not owned") && msg.contains("lrp-cs-net-9") && msg.contains("not tagged"), "{msg}");
}

/// #9 siblings: a foreign router `cs-router-N` (router names have no unique
/// index) is refused, naming who holds it; no second router appears.
#[test]
fn foreign_router_name_is_not_owned() {
    let nb = Nb::start();
    nb.nbctl(&["lr-add", "cs-router-9"]);
    let snap = nb.snapshot();
    let msg = fails(cs(&nb, "implement-network", network(9)), 5);
    assert!(msg.contains("not owned") && msg.contains("cs-router-9") && msg.contains("not tagged"), "{msg}");
    assert_eq!(snap, nb.snapshot());
}

/// #8: two installations (owners) share one NB and use the same CloudStack
/// ids: each gets its own names (the default owner keeps `cs-net-N`), both
/// work, neither sees the other's rows as its own or as look-alikes, and
/// destroying one leaves the other intact.
#[test]
fn two_owners_share_one_nb_with_the_same_ids() {
    let nb = Nb::start();
    let as_owner = |owner: Option<&str>, command: &str, payload: Value| {
        let mut env = registered(payload);
        if let Some(o) = owner {
            env["physical-network-extension-details"]["ovn.owner"] = json!(o);
        }
        ok(run_cs(&nb.remote(), command, &env))
    };
    for (owner, nic_uuid, ip) in [
        (None, "3f0c0000-0000-4000-8000-0000000000a1", "203.0.113.13"),
        (Some("dc-2"), "3f0c0000-0000-4000-8000-0000000000b1", "203.0.113.14"),
    ] {
        let out = as_owner(owner, "implement-network", network(5));
        let sw = if owner.is_some() { "cs-dc-2-net-5" } else { "cs-net-5" };
        assert!(out.contains(&format!("ovn://{sw}")), "{out}");
        let payload = nic(5, nic_uuid, "02:00:00:00:00:05", "10.1.1.23", "vm", true);
        for c in NIC_START {
            as_owner(owner, c, payload.clone());
        }
        as_owner(owner, "assign-ip", public(network(5), ip, true, "untagged"));
        as_owner(owner, "apply-fw-rules", fw(5, vec![ingress(1, 22)]));
        assert!(nb.nbctl(&["lsp-list", sw]).contains(nic_uuid));
    }
    let switches = nb.nbctl(&["ls-list"]);
    for name in ["(cs-net-5)", "(cs-dc-2-net-5)", "(cs-public-public-untagged)", "(cs-dc-2-public-public-untagged)"] {
        assert!(switches.contains(name), "{name} in {switches}");
    }
    let routers = nb.nbctl(&["lr-list"]);
    assert!(routers.contains("(cs-router-5)") && routers.contains("(cs-dc-2-router-5)"), "{routers}");
    assert!(nb.nbctl(&["--bare", "--columns=name", "list", "Port_Group"]).contains("cs_dc_2_net_5"));

    // Each installation's audit is clean (the other's rows are not look-alikes).
    assert!(problems(&audit(&nb, &[])).is_empty());
    let dir = tempfile::tempdir().unwrap();
    let out = product(&nb.remote(), &dir.path().join("l"))
        .env("CLOUDSTACK_OVN_OWNER", "dc-2")
        .args(["audit", "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success() && problems(&v).is_empty() && v["owner"] == "dc-2", "{v}");
    assert!(v["scanned"]["Logical_Switch"].as_u64().unwrap() >= 2, "it sees its own rows: {v}");

    // Destroying the default owner's network leaves the other's intact.
    let before = nb.nbctl(&["lsp-list", "cs-dc-2-net-5"]);
    as_owner(None, "destroy-network", network(5));
    assert!(!nb.nbctl(&["ls-list"]).contains("(cs-net-5)"));
    assert_eq!(nb.nbctl(&["lsp-list", "cs-dc-2-net-5"]), before);
    as_owner(Some("dc-2"), "destroy-network", network(5));
    assert_eq!(nb.count_rows("Logical_Switch") + nb.count_rows("Logical_Router") + nb.count_rows("ACL"), 0);
}

/// #5 siblings: destroying our switch or port group would delete an
/// operator's port or ACL hanging off it: refused, naming them, NB unchanged.
#[test]
fn destroy_refuses_to_take_foreign_children_along() {
    let nb = Nb::start();
    ok(cs(&nb, "implement-network", network(44)));
    run_all(&nb, NIC_START, &vm1(44));
    nb.nbctl(&["lsp-add", "cs-net-44", "operator-port"]);
    let snap = nb.snapshot();
    let msg = fails(cs(&nb, "destroy-network", network(44)), 5);
    assert!(msg.contains("not owned") && msg.contains("cs-net-44"), "{msg}");
    assert_eq!(snap, nb.snapshot());
    nb.nbctl(&["lsp-del", "operator-port"]);

    let (_, _) = foreign_acl(&nb, "cs_net_44", 1236);
    let snap = nb.snapshot();
    let msg = fails(cs(&nb, "destroy-network", network(44)), 5);
    assert!(msg.contains("not owned") && msg.contains("cs_net_44"), "{msg}");
    assert_eq!(snap, nb.snapshot());
    nb.nbctl(&["--type=port-group", "acl-del", "cs_net_44"]);

    ok(cs(&nb, "destroy-network", network(44)));
    assert_eq!(owned_rows(&nb), 0);
}

/// #5 siblings: the same for our router: an operator's NAT rule or route on
/// it would be deleted with it.
#[test]
fn router_teardown_refuses_to_take_foreign_rows_along() {
    let nb = Nb::start();
    ok(cs(&nb, "implement-network", network(50)));
    ok(cs(&nb, "assign-ip", public(network(50), "203.0.113.13", true, "untagged")));
    nb.nbctl(&["lr-nat-add", "cs-router-50", "dnat_and_snat", "203.0.113.99", "10.1.1.99"]);
    let snap = nb.snapshot();
    let msg = fails(cs(&nb, "destroy-network", network(50)), 5);
    assert!(msg.contains("not owned") && msg.contains("cs-router-50") && msg.contains("NAT"), "{msg}");
    assert_eq!(snap, nb.snapshot());
    nb.nbctl(&["lr-nat-del", "cs-router-50", "dnat_and_snat", "203.0.113.99"]);

    nb.nbctl(&["lr-route-add", "cs-router-50", "192.0.2.0/24", "10.1.1.254"]);
    let msg = fails(cs(&nb, "destroy-network", network(50)), 5);
    assert!(msg.contains("route"), "{msg}");
    nb.nbctl(&["lr-route-del", "cs-router-50", "192.0.2.0/24"]);

    ok(cs(&nb, "destroy-network", network(50)));
    assert_eq!(owned_rows(&nb), 0);
}

/// #5 sibling in `audit --repair`: an orphan holding a row not ours (an
/// operator's ACL on an orphaned port group) is reported, not deleted.
#[test]
fn audit_never_deletes_an_orphan_holding_foreign_rows() {
    let nb = Nb::start();
    ok(cs(&nb, "implement-network", network(44)));
    run_all(&nb, NIC_START, &vm1(44));
    let (uuid, row) = foreign_acl(&nb, "cs_net_44", 1237);
    nb.nbctl(&["ls-del", "cs-net-44"]);
    let v = audit(&nb, &["--repair"]);
    let pg = v["findings"].as_array().unwrap().iter().find(|f| f["table"] == "Port_Group").cloned();
    let pg = pg.unwrap_or_else(|| panic!("{v}"));
    assert_eq!(pg["problem"], "orphan");
    assert_eq!(pg["repaired"], false, "{v}");
    assert!(pg["detail"].as_str().unwrap().contains(&uuid), "{v}");
    assert_eq!(nb.snapshot()["ACL"][&uuid], row, "the operator's ACL is untouched");
    assert!(nb.nbctl(&["--bare", "--columns=name", "list", "Port_Group"]).contains("cs_net_44"));
    // The other orphans of the network were repaired.
    assert_eq!(nb.count_rows("DHCP_Options") + nb.count_rows("DNS") + nb.count_rows("Logical_Router"), 0, "{v}");
}
