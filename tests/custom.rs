//! `custom-action` against real OVN: the smoke suite's policy-based routing
//! scenarios (test_08 on an isolated network, test_10 on a VPC) through
//! payloads shaped as CloudStack sends them, cross-checked with
//! `ovn-nbctl lr-policy-list`; idempotency and bad input; packets through
//! compiled policies; the OVN diagnostics.

mod common;

use std::time::Duration;

use common::scenario::*;
use common::*;
use serde_json::{json, Value};

/// The flat custom-action payload (§6.6): the resource's fields at top
/// level plus `action`, `action-params` and the two details blobs.
fn custom_payload(base: &Value, action: &str, params: Value) -> Value {
    let mut flat = base.clone();
    flat["action"] = json!(action);
    flat["action-params"] = params;
    flat["physical-network-extension-details"] =
        json!({"physicalnetworkname": "pn1", "ovn.gateway.chassis": GATEWAY_CHASSIS});
    flat["network-extension-details"] = json!({});
    flat
}

fn custom(nb: &Nb, base: &Value, action: &str, params: Value) -> CsRun {
    run_cs_logged(&nb.remote(), "custom-action", &custom_payload(base, action, params))
}

/// A custom action with the SB registered too (`ovn.sb.connection`).
fn custom_sb(central: &Central, base: &Value, action: &str, params: Value) -> CsRun {
    let mut p = custom_payload(base, action, params);
    p["physical-network-extension-details"]["ovn.sb.connection"] = json!(central.sb_remote());
    run_cs_logged(&central.nb_remote(), "custom-action", &p)
}

/// The reference's answer: status success, printmessage "true", a message.
#[track_caller]
fn message(run: CsRun) -> Value {
    let out = ok(run.output);
    assert_eq!(out.lines().count(), 1, "one line: {out}");
    let v: Value = serde_json::from_str(&out).expect("custom-action prints JSON");
    assert_eq!(v["status"], "success", "{out}");
    assert_eq!(v["printmessage"], "true", "{out}");
    v["message"].clone()
}

/// Run an action twice: the second run must plan no write and leave the NB
/// as the first left it.
#[track_caller]
fn twice_action(nb: &Nb, base: &Value, action: &str, params: Value) -> Value {
    let first = message(custom(nb, base, action, params.clone()));
    let after = nb.snapshot();
    let second = custom(nb, base, action, params);
    let log = second.log.clone();
    message(second);
    assert!(after == nb.snapshot(), "{action}: second run changed the NB");
    assert!(
        log.lines().any(|l| l.contains("command=custom-action ") && l.contains(" rows_changed=0 ")),
        "{action}: the second run planned a write:\n{log}"
    );
    first
}

/// A bad call: exit 2, one-line JSON error, NB unchanged.
#[track_caller]
fn rejected(nb: &Nb, base: &Value, action: &str, params: Value) -> String {
    let before = nb.snapshot();
    let msg = fails(custom(nb, base, action, params).output, 2);
    let after = nb.snapshot();
    assert!(before == after, "{action}: a rejected call changed the NB\n{}", snapshot_diff(&before, &after));
    msg
}

/// `ovn-nbctl lr-policy-list` as (priority, match, action) triples.
fn nbctl_policies(nb: &Nb, router: &str) -> Vec<(i64, String, String)> {
    nb.nbctl(&["lr-policy-list", router])
        .lines()
        .skip(1)
        .filter_map(|l| {
            let l = l.trim();
            let (prio, rest) = l.split_once(char::is_whitespace)?;
            let rest = rest.trim();
            let (matches, action) = ["drop", "reroute", "allow"]
                .iter()
                .find_map(|a| rest.find(&format!(" {a}")).map(|i| (rest[..i].trim(), rest[i..].trim())))?;
            Some((prio.parse().ok()?, matches.to_string(), action.to_string()))
        })
        .collect()
}

const TABLE: &str = "app-123";
const CIDR: &str = "172.30.1.0/24";

/// test_08 / test_10: every PBR action with the smoke test's parameters and
/// assertions, each twice; `lr-policy-list` agrees at each step.
fn smoke_pbr(nb: &Nb, base: &Value, router: &str) {
    let m = twice_action(nb, base, "pbr-create-table", json!({"table-id": "100", "table-name": TABLE}));
    assert!(m.as_str().unwrap().contains(TABLE), "{m}");
    let tables = message(custom(nb, base, "pbr-list-tables", json!({})));
    assert!(tables.to_string().contains(TABLE), "{tables}");
    assert_eq!(tables, json!([{"id": "100", "name": TABLE}]));

    twice_action(nb, base, "pbr-add-route", json!({"table": TABLE, "route": format!("blackhole {CIDR}")}));
    let routes = message(custom(nb, base, "pbr-list-routes", json!({"table": TABLE})));
    assert!(routes.to_string().contains(CIDR), "{routes}");
    assert!(nbctl_policies(nb, router).is_empty(), "a route alone selects nothing");

    twice_action(nb, base, "pbr-add-rule", json!({"table": TABLE, "rule": format!("to {CIDR}")}));
    let rules = message(custom(nb, base, "pbr-list-rules", json!({"table": TABLE})));
    assert!(rules.to_string().contains(TABLE), "{rules}");
    assert_eq!(rules[0]["rule"], format!("32765: from all to {CIDR} lookup {TABLE}"));
    let policies = nbctl_policies(nb, router);
    assert_eq!(policies.len(), 1, "{policies:?}");
    assert_eq!((policies[0].1.as_str(), policies[0].2.as_str()), (format!("ip4.dst == {CIDR}").as_str(), "drop"));

    // A next hop in the same table, more specific: reroute above the drop.
    twice_action(nb, base, "pbr-add-route", json!({"table": "100", "route": "172.30.1.128/25 via 10.1.1.30"}));
    let policies = nbctl_policies(nb, router);
    assert_eq!(policies.len(), 2, "{policies:?}");
    assert_eq!(policies[0].1, "ip4.dst == 172.30.1.128/25");
    assert!(policies[0].2.starts_with("reroute") && policies[0].2.contains("10.1.1.30"), "{policies:?}");
    assert!(policies[0].0 > policies[1].0, "longest prefix first: {policies:?}");
    let routes = message(custom(nb, base, "pbr-list-routes", json!({})));
    assert_eq!(routes.as_array().unwrap().len(), 2, "{routes}");
    twice_action(nb, base, "pbr-delete-route", json!({"table": TABLE, "route": "172.30.1.128/25 via 10.1.1.30"}));

    // Bad parameters: clear errors, NB unchanged.
    let e = rejected(nb, base, "pbr-frobnicate", json!({}));
    assert!(e.contains("pbr-create-table") && e.contains("pbr-list-rules"), "{e}");
    let e = rejected(nb, base, "pbr-add-route", json!({"table": TABLE, "route": "172.30.2.0/24 dev eth0"}));
    assert!(e.contains("`dev` cannot be expressed on OVN"), "{e}");
    let e = rejected(nb, base, "pbr-add-route", json!({"table": TABLE, "route": "default via 10.1.1.30 table 5"}));
    assert!(e.contains("`table`"), "{e}");
    let e = rejected(nb, base, "pbr-add-rule", json!({"table": TABLE, "rule": "fwmark 0x1"}));
    assert!(e.contains("`fwmark`"), "{e}");
    let e = rejected(nb, base, "pbr-add-route", json!({"table": "nosuch", "route": "blackhole 10.0.0.0/8"}));
    assert!(e.contains("no routing table nosuch") && e.contains(TABLE), "{e}");
    rejected(nb, base, "pbr-create-table", json!({"table-id": "254", "table-name": "x"}));
    rejected(nb, base, "pbr-create-table", json!({"table-id": "100", "table-name": "other"}));
    rejected(nb, base, "pbr-add-route", json!({"table": TABLE}));
    rejected(nb, base, "pbr-delete-route", json!({"table": TABLE, "route": format!("unreachable {CIDR}")}));

    // Teardown in the smoke test's order.
    twice_action(nb, base, "pbr-delete-rule", json!({"table": TABLE, "rule": format!("to {CIDR}")}));
    assert!(nbctl_policies(nb, router).is_empty());
    twice_action(nb, base, "pbr-delete-route", json!({"table": TABLE, "route": format!("blackhole {CIDR}")}));
    twice_action(nb, base, "pbr-delete-table", json!({"table-name": TABLE}));
    assert_eq!(message(custom(nb, base, "pbr-list-tables", json!({}))), json!([]));
    assert_eq!(nb.count_rows("Logical_Router_Policy"), 0);
}

#[test]
fn test_08_pbr_actions_on_an_isolated_network() {
    let nb = Nb::start();
    ok(cs(&nb, "implement-network", network(42)));
    smoke_pbr(&nb, &network(42), "cs-router-42");
    // Nothing of the state is left on the switch.
    let ids = nb.nbctl(&["get", "Logical_Switch", "cs-net-42", "external_ids"]);
    assert!(!ids.contains("cloudstack:pbr"), "{ids}");

    // The legacy flag style (`--action`, `--action-params <json>`).
    let o = run_cs_flags(
        &nb.remote(),
        "custom-action",
        &[
            "--network-id",
            "42",
            "--action",
            "pbr-create-table",
            "--action-params",
            r#"{"table-id":"9","table-name":"legacy"}"#,
        ],
    );
    ok(o);
    let o = run_cs_flags(&nb.remote(), "custom-action", &["--network-id", "42", "--action", "pbr-list-tables"]);
    let v: Value = serde_json::from_str(&ok(o)).unwrap();
    assert_eq!(v["message"], json!([{"id": "9", "name": "legacy"}]));
}

#[test]
fn test_10_pbr_actions_on_a_vpc() {
    let nb = Nb::start();
    ok(cs(&nb, "implement-vpc", vpc(5)));
    ok(cs(&nb, "implement-network", tier(5, 71, 1)));
    smoke_pbr(&nb, &vpc(5), "cs-vpc-5");
    // A call on a tier (a Network resource in the VPC) sees the VPC's tables.
    message(custom(&nb, &vpc(5), "pbr-create-table", json!({"table_id": 7, "table_name": "steer"})));
    let tables = message(custom(&nb, &tier(5, 71, 1), "pbr-list-tables", json!({})));
    assert_eq!(tables, json!([{"id": "7", "name": "steer"}]));
    // The next hop is a VM of tier 71: its port becomes MAC-only.
    let appliance = with(
        tier(5, 71, 1),
        json!({"nic_id": "9", "nic_uuid": APPLIANCE_NIC, "mac": APPLIANCE_MAC, "ip": "10.7.1.30",
               "netmask": "255.255.255.0", "default_nic": "true", "hostname": "fw", "dns": "8.8.8.8", "domain": "cs.example"}),
    );
    run_all(&nb, NIC_START, &appliance);
    assert_eq!(nb.nbctl(&["lsp-get-port-security", APPLIANCE_NIC]), format!("{APPLIANCE_MAC} 10.7.1.30"));
    message(custom(&nb, &vpc(5), "pbr-add-route", json!({"table": "steer", "route": "default via 10.7.1.30"})));
    assert_eq!(nb.nbctl(&["lsp-get-port-security", APPLIANCE_NIC]), APPLIANCE_MAC);
    message(custom(&nb, &vpc(5), "pbr-add-rule", json!({"table": "steer", "rule": "from 10.7.1.0/24"})));
    assert_eq!(nb.count_rows("Logical_Router_Policy"), 1);
    // show on the VPC: its router with the compiled policy, nothing flagged.
    let show = message(custom(&nb, &vpc(5), "show", json!({})));
    assert_eq!(show["router"]["name"], "cs-vpc-5", "{show:#}");
    assert_eq!(show["router"]["policies"][0]["action"], "reroute", "{show:#}");
    assert_eq!(show["healthy"], true, "{show:#}");
    // A VM source at VPC level: traced on its tier, says the error.
    let e = rejected(&nb, &vpc(5), "trace", json!({"from": "10.7.1.10", "to": "8.8.8.8", "port": 53}));
    assert!(e.contains("tier"), "{e}");
    // A policy deleted behind our back is flagged, and re-adding the rule repairs it.
    let policy = nb.nbctl(&["--bare", "--columns=_uuid", "list", "Logical_Router_Policy"]);
    nb.nbctl(&["lr-policy-del", "cs-vpc-5", policy.trim()]);
    let show = message(custom(&nb, &vpc(5), "show", json!({})));
    assert!(show["problems"].to_string().contains("is missing"), "{show:#}");
    message(custom(&nb, &vpc(5), "pbr-add-rule", json!({"table": "steer", "rule": "from 10.7.1.0/24"})));
    assert_eq!(nb.count_rows("Logical_Router_Policy"), 1);
    // shutdown-vpc removes the router, its policies and the stored state.
    run_all(&nb, NIC_STOP, &appliance);
    ok(cs(&nb, "destroy-network", tier(5, 71, 1)));
    ok(cs(&nb, "shutdown-vpc", vpc(5)));
    assert_eq!(nb.count_rows("Logical_Router_Policy"), 0);
    assert_eq!(nb.count_rows("Logical_Router"), 0);
}

#[test]
fn pbr_survives_restart_and_restore_and_goes_with_destroy() {
    let nb = Nb::start();
    let net = network(43);
    ok(cs(&nb, "implement-network", net.clone()));
    message(custom(&nb, &net, "pbr-create-table", json!({"id": "100", "name": TABLE})));
    message(custom(&nb, &net, "pbr-add-route", json!({"table": TABLE, "route": format!("blackhole {CIDR}")})));
    message(custom(&nb, &net, "pbr-add-rule", json!({"table": TABLE, "rule": format!("from 10.1.1.0/24 to {CIDR}")})));
    let before = nbctl_policies(&nb, "cs-router-43");
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].1, format!("ip4.src == 10.1.1.0/24 && ip4.dst == {CIDR}"));

    // restartNetwork cleanup=true: the router goes and comes back with its policies.
    ok(cs(&nb, "shutdown-network", net.clone()));
    assert_eq!(nb.count_rows("Logical_Router_Policy"), 0);
    let tables = message(custom(&nb, &net, "pbr-list-tables", json!({})));
    assert_eq!(tables[0]["name"], TABLE, "the tables outlive the router");
    twice(&nb, "implement-network", net.clone());
    assert_eq!(nbctl_policies(&nb, "cs-router-43"), before);

    // The same through assign-ip creating the router.
    ok(cs(&nb, "shutdown-network", net.clone()));
    let no_gateway = with(net.clone(), json!({"extension_ip": ""}));
    ok(cs(&nb, "implement-network", no_gateway));
    assert_eq!(nb.count_rows("Logical_Router"), 0);
    ok(cs(&nb, "assign-ip", public(net.clone(), "203.0.113.10", true, "untagged")));
    assert_eq!(nbctl_policies(&nb, "cs-router-43"), before);

    // restore-network leaves them alone.
    let restore = with(
        net.clone(),
        json!({"restore_data": {"dhcp_enabled": true, "dns_enabled": false, "userdata_enabled": false, "vms": []}}),
    );
    ok(cs(&nb, "restore-network", restore));
    assert_eq!(nbctl_policies(&nb, "cs-router-43"), before);

    ok(cs(&nb, "destroy-network", net));
    assert_eq!(nb.count_rows("Logical_Router_Policy"), 0);
    assert_eq!(nb.count_rows("Logical_Switch"), 0, "the public switch went with the last router");
}

#[test]
fn concurrent_pbr_actions_never_lose_each_others_changes() {
    let nb = Nb::start();
    ok(cs(&nb, "implement-vpc", vpc(8)));
    message(custom(&nb, &vpc(8), "pbr-create-table", json!({"table-id": "100", "table-name": TABLE})));
    message(custom(&nb, &vpc(8), "pbr-add-route", json!({"table": TABLE, "route": "blackhole default"})));
    std::thread::scope(|s| {
        for i in 1..=8 {
            let nb = &nb;
            s.spawn(move || {
                let rule = format!("from 10.7.{i}.0/24 priority {}", 100 + i);
                message(custom(nb, &vpc(8), "pbr-add-rule", json!({"table": TABLE, "rule": rule})));
            });
        }
    });
    let rules = message(custom(&nb, &vpc(8), "pbr-list-rules", json!({})));
    assert_eq!(rules.as_array().unwrap().len(), 8, "{rules}");
    let policies = nbctl_policies(&nb, "cs-vpc-8");
    assert_eq!(policies.len(), 8, "{policies:?}");
    // Priority 101 first: the highest OVN priority, as `ip rule` evaluates it.
    assert_eq!(policies[0].1, "ip4.src == 10.7.1.0/24", "{policies:?}");
}

#[test]
fn pbr_on_a_network_that_is_not_implemented_is_a_clear_error() {
    let nb = Nb::start();
    let e = rejected(&nb, &network(44), "pbr-create-table", json!({"table-id": "100", "table-name": TABLE}));
    assert!(e.contains("does not exist in OVN"), "{e}");
    let e = rejected(&nb, &vpc(6), "pbr-list-tables", json!({}));
    assert!(e.contains("does not exist in OVN"), "{e}");
    let shared = with(network(45), json!({"guest_type": "shared", "vlan": "vlan://3000"}));
    let e = rejected(&nb, &shared, "pbr-create-table", json!({"table-id": "100", "table-name": TABLE}));
    assert!(e.contains("shared"), "{e}");
    let e = fails(custom(&nb, &json!({"zone_id": "1"}), "pbr-list-tables", json!({})).output, 2);
    assert!(e.contains("network_id or vpc_id"), "{e}");
}

// ---------------------------------------------------------------- packets

const FIRST: Duration = Duration::from_secs(5);
const NEXT: Duration = Duration::from_secs(3);
const INTERNET: &str = "198.51.100.10";
const BLOCKED: &str = "172.30.1.10";
const APPLIANCE: &str = "10.1.1.30";
const APPLIANCE_NIC: &str = "3f0c0000-0000-4000-8000-0000000000a1";
const APPLIANCE_MAC: &str = "02:00:4c:3e:00:1e";

/// TCP segments the appliance's kernel received for local sockets
/// (`Tcp: InSegs` of its namespace).
fn tcp_in_segs(vm: &Vm) -> u64 {
    let out = vm.exec(&["cat", "/proc/net/snmp"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap_or_default(), tcp.next().unwrap_or_default());
    let i = names.split_whitespace().position(|w| w == "InSegs").expect("InSegs in /proc/net/snmp");
    values.split_whitespace().nth(i).and_then(|v| v.parse().ok()).expect("InSegs value")
}

#[test]
fn blackhole_and_reroute_through_an_appliance_with_real_packets() {
    let central = Central::start();
    let hv = Chassis::start(&central, GATEWAY_CHASSIS);
    let outside = hv.add_public("public", None);
    let nb = central.nb();
    // An outside host in the PBR range, next to an "internet" host.
    let o = outside.exec(&["ip", "addr", "add", &format!("{BLOCKED}/32"), "dev", "lo"]);
    assert!(o.status.success(), "{o:?}");
    let _blocked_srv = outside.serve_tcp(BLOCKED, 8080, "blocked-host");
    let _internet_srv = outside.serve_tcp(INTERNET, 8080, "internet");

    let net = network(42);
    ok(cs(nb, "implement-network", net.clone()));
    ok(cs(nb, "assign-ip", public(net.clone(), "203.0.113.10", true, "untagged")));
    run_all(nb, NIC_START, &vm1(42));
    let appliance_payload = nic(42, APPLIANCE_NIC, APPLIANCE_MAC, APPLIANCE, "appliance", true);
    run_all(nb, NIC_START, &appliance_payload);
    let vm = hv.plug_vm("tap1", NIC1, "02:00:4c:3e:00:05");
    let appliance = hv.plug_vm("tap2", APPLIANCE_NIC, APPLIANCE_MAC);
    vm.dhcp();
    appliance.dhcp();
    // The appliance takes the steered range as local, so its kernel counts
    // the segments that reach it.
    let o = appliance.exec(&["ip", "route", "add", "local", CIDR, "dev", "lo"]);
    assert!(o.status.success(), "{o:?}");

    assert!(
        vm.connect_tcp(BLOCKED, 8080, FIRST).is_some_and(|l| l.starts_with("blocked-host")),
        "reachable before PBR"
    );

    // Blackhole 172.30.1.0/24 for traffic to it: dropped; others pass.
    message(custom(nb, &net, "pbr-create-table", json!({"table-id": "100", "table-name": TABLE})));
    message(custom(nb, &net, "pbr-add-route", json!({"table": TABLE, "route": format!("blackhole {CIDR}")})));
    message(custom(nb, &net, "pbr-add-rule", json!({"table": TABLE, "rule": format!("to {CIDR}")})));
    central.nbctl(&["--wait=hv", "sync"]);
    assert_eq!(vm.try_connect_tcp(BLOCKED, 8080, NEXT).err().as_deref(), Some("TIMEOUT"), "dropped by the policy");
    assert!(
        vm.connect_tcp(INTERNET, 8080, FIRST).is_some_and(|l| l.starts_with("internet")),
        "other destinations pass"
    );

    // Steer the range through the appliance instead: seen there, not outside.
    // The appliance receives packets for addresses that are not its own, so
    // its port becomes MAC-only (OVN's IP port security would drop them),
    // and stays so when CloudStack prepares its NIC again.
    message(custom(nb, &net, "pbr-add-route", json!({"table": TABLE, "route": format!("{CIDR} via {APPLIANCE}")})));
    assert_eq!(nb.nbctl(&["lsp-get-port-security", APPLIANCE_NIC]), APPLIANCE_MAC);
    twice(nb, "prepare-nic", appliance_payload.clone());
    assert_eq!(nb.nbctl(&["lsp-get-port-security", APPLIANCE_NIC]), APPLIANCE_MAC);
    assert_eq!(nb.nbctl(&["lsp-get-port-security", NIC1]), "02:00:4c:3e:00:05 10.1.1.23", "other VMs keep theirs");
    let show = message(custom(nb, &net, "show", json!({})));
    assert!(!show["problems"].to_string().contains("next hop"), "{show:#}");
    central.nbctl(&["--wait=hv", "sync"]);
    let seen = tcp_in_segs(&appliance);
    let served = _blocked_srv.accepted().len();
    let _ = vm.try_connect_tcp(BLOCKED, 8080, NEXT);
    assert!(tcp_in_segs(&appliance) > seen, "the SYN reached the appliance");
    assert_eq!(_blocked_srv.accepted().len(), served, "and not the outside host");

    // Deleting the rule restores the original path.
    message(custom(nb, &net, "pbr-delete-rule", json!({"table": TABLE, "rule": format!("to {CIDR}")})));
    central.nbctl(&["--wait=hv", "sync"]);
    assert!(vm.connect_tcp(BLOCKED, 8080, FIRST).is_some_and(|l| l.starts_with("blocked-host")), "path restored");
    // No route through the appliance left: its port security is its address again.
    twice_action(nb, &net, "pbr-delete-route", json!({"table": TABLE, "route": format!("{CIDR} via {APPLIANCE}")}));
    assert_eq!(nb.nbctl(&["lsp-get-port-security", APPLIANCE_NIC]), format!("{APPLIANCE_MAC} {APPLIANCE}"));
    hv.assert_vswitchd_alive();
}

// ---------------------------------------------------------------- diagnostics

#[test]
fn show_reports_bindings_and_flags_drift() {
    let central = Central::start();
    let hv = Chassis::start(&central, GATEWAY_CHASSIS);
    let _outside = hv.add_public("public", None);
    let nb = central.nb();
    let net = network(42);
    ok(cs(nb, "implement-network", net.clone()));
    ok(cs(nb, "assign-ip", public(net.clone(), "203.0.113.10", true, "untagged")));
    let vm2_payload = nic(42, NIC2, "02:00:4c:3e:00:06", "10.1.1.24", "vm-2", true);
    run_all(nb, NIC_START, &vm1(42));
    run_all(nb, NIC_START, &vm2_payload);
    let vm1 = hv.plug_vm("tap1", NIC1, "02:00:4c:3e:00:05");
    let vm2 = hv.plug_vm("tap2", NIC2, "02:00:4c:3e:00:06");
    vm1.dhcp();
    vm2.dhcp();
    assert!(central.wait_lsp_up(NIC1, Duration::from_secs(10)) && central.wait_lsp_up(NIC2, Duration::from_secs(10)));

    // Healthy: every NIC up on hv1, the router with its source NAT.
    let before = nb.snapshot();
    let show = message(custom_sb(&central, &net, "show", json!({})));
    assert!(before == nb.snapshot(), "show is read-only");
    assert_eq!(show["healthy"], true, "{show:#}");
    assert_eq!(show["switch"]["name"], "cs-net-42");
    let nics: Vec<&Value> = show["ports"].as_array().unwrap().iter().filter(|p| p["kind"] == "nic").collect();
    assert_eq!(nics.len(), 2, "{show:#}");
    for p in &nics {
        assert_eq!(p["up"], true, "{p}");
        assert_eq!(p["chassis"], GATEWAY_CHASSIS, "{p}");
    }
    assert!(nics.iter().any(|p| p["addresses"][0] == "02:00:4c:3e:00:05 10.1.1.23"), "{show:#}");
    assert_eq!(show["router"]["name"], "cs-router-42");
    assert!(show["router"]["nat"].to_string().contains("203.0.113.10"), "{show:#}");
    assert!(!show["dhcp"].as_array().unwrap().is_empty(), "{show:#}");

    // Unplugged VM: flagged. A DHCP row deleted behind our back: flagged.
    vm2.unplug();
    assert!(wait_until(Duration::from_secs(10), || {
        let s = message(custom_sb(&central, &net, "show", json!({})));
        s["problems"].to_string().contains(&format!("port {NIC2} is not up"))
    }));
    let dhcp =
        nb.nbctl(&["--bare", "--columns=_uuid", "find", "DHCP_Options", "external_ids:\"cloudstack:kind\"=dhcpv4"]);
    assert!(!dhcp.is_empty());
    for u in dhcp.split_whitespace() {
        nb.nbctl(&["dhcp-options-del", u]);
    }
    let show = message(custom_sb(&central, &net, "show", json!({})));
    assert_eq!(show["healthy"], false);
    let problems = show["problems"].to_string();
    assert!(problems.contains(&format!("port {NIC1} has no DHCP options")), "{problems}");
    assert!(problems.contains(&format!("port {NIC2} is not up")), "{problems}");

    // Without the SB the NB's `up` is shown and the reason said.
    let show = message(custom(nb, &net, "show", json!({})));
    assert!(show["southbound"].as_str().unwrap().contains("ovn.sb.connection"), "{show:#}");

    // list-firewall-rules: the applied rules and their ACLs.
    let rules = json!({"fw_rules": {"default_egress_allow": true, "cidr": "10.1.1.0/24", "rules": []}});
    ok(cs(nb, "apply-fw-rules", with(net.clone(), rules)));
    let fw = message(custom(nb, &net, "list-firewall-rules", json!({})));
    assert!(fw["acls"].as_object().is_some_and(|m| !m.is_empty()), "{fw:#}");
    hv.assert_vswitchd_alive();
}

#[test]
fn trace_names_the_dropping_acl_and_policy_and_says_delivered() {
    let central = Central::start();
    let nb = central.nb();
    let net = network(42);
    ok(cs(nb, "implement-network", net.clone()));
    ok(cs(nb, "assign-ip", public(net.clone(), "203.0.113.10", true, "untagged")));
    run_all(nb, NIC_START, &vm1(42));
    let snat_ip = public(net.clone(), "203.0.113.11", false, "untagged");
    ok(cs(nb, "assign-ip", snat_ip.clone()));
    ok(cs(nb, "add-static-nat", with(snat_ip, json!({"private_ip": "10.1.1.23"}))));
    let fw = |rules: Value| {
        with(net.clone(), json!({"fw_rules": {"default_egress_allow": true, "cidr": "10.1.1.0/24", "rules": rules}}))
    };
    ok(cs(nb, "apply-fw-rules", fw(json!([]))));
    central.sync();

    // A SYN from outside to the static-NAT IP without a firewall rule.
    let syn = json!({"from": "198.51.100.10", "to": "203.0.113.11", "protocol": "tcp", "port": "22"});
    let before = nb.snapshot();
    let t = message(custom_sb(&central, &net, "trace", syn.clone()));
    assert!(before == nb.snapshot(), "trace is read-only");
    assert_eq!(t["verdict"], "dropped", "{t:#}");
    assert_eq!(t["by"], "ACL", "{t:#}");
    assert_eq!(t["rule"]["kind"], "firewall", "{t:#}");
    assert!(t["rule"]["match"].as_str().unwrap().contains("ip4.dst == 203.0.113.11"), "{t:#}");

    // With the rule: delivered to the VM's port.
    let rule = json!({"id": 5, "type": "ingress", "protocol": "tcp", "portStart": 22, "portEnd": 22,
                      "publicIp": "203.0.113.11", "sourceCidrs": ["0.0.0.0/0"], "destCidrs": []});
    ok(cs(nb, "apply-fw-rules", fw(json!([rule]))));
    central.sync();
    let t = message(custom_sb(&central, &net, "trace", syn.clone()));
    assert_eq!(t["verdict"], "delivered", "{t:#}");
    assert_eq!(t["to_port"], NIC1, "{t:#}");
    assert!(t["summary"].to_string().contains("ct_dnat"), "{t:#}");

    // From the VM (by NIC uuid) into a blackholed range: the policy is named.
    message(custom(nb, &net, "pbr-create-table", json!({"table-id": "100", "table-name": TABLE})));
    message(custom(nb, &net, "pbr-add-route", json!({"table": TABLE, "route": format!("blackhole {CIDR}")})));
    message(custom(nb, &net, "pbr-add-rule", json!({"table": TABLE, "rule": format!("to {CIDR}")})));
    central.sync();
    let t = message(custom_sb(&central, &net, "trace", json!({"from": NIC1, "to": BLOCKED, "port": 80})));
    assert_eq!(t["verdict"], "dropped", "{t:#}");
    assert_eq!(t["by"], "policy", "{t:#}");
    assert_eq!(t["rule"]["pbr_rule"], format!("32765: from all to {CIDR} lookup {TABLE}"), "{t:#}");
    // The same VM by its address, to a host of its own network: delivered.
    let t =
        message(custom_sb(&central, &net, "trace", json!({"from": "10.1.1.23", "to": "10.1.1.1", "protocol": "icmp"})));
    assert_ne!(t["verdict"], "dropped", "{t:#}");

    // Without the SB, or with bad parameters: clear errors.
    let e = fails(custom(nb, &net, "trace", syn).output, 3);
    assert!(e.contains("ovn.sb.connection"), "{e}");
    let e = fails(custom_sb(&central, &net, "trace", json!({"from": "10.1.1.23", "to": "1.2.3.4"})).output, 2);
    assert!(e.contains("port"), "{e}");
    let e = fails(custom_sb(&central, &net, "trace", json!({"from": NIC2, "to": "1.2.3.4", "port": 1})).output, 2);
    assert!(e.contains("no port on this network"), "{e}");

    // An SB that accepts and never answers: ovn-trace is killed at the deadline.
    let silent = SilentPeer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut payload = custom_payload(&net, "trace", json!({"from": "198.51.100.10", "to": "203.0.113.11", "port": 22}));
    payload["physical-network-extension-details"]["ovn.sb.connection"] = json!(silent.remote());
    let file = dir.path().join("trace.payload");
    std::fs::write(&file, payload.to_string()).unwrap();
    let started = std::time::Instant::now();
    let o = product(&central.nb_remote(), &dir.path().join("log"))
        .args(["custom-action", file.to_str().unwrap(), "3"])
        .output()
        .unwrap();
    let e = fails(o, 4);
    assert!(started.elapsed() < Duration::from_secs(10), "bounded by the deadline: {:?}", started.elapsed());
    assert!(e.contains("deadline") || e.contains("timed out"), "{e}");
}

#[test]
fn extension_details_advertise_custom_action_and_its_actions() {
    let run = |args: &[&str]| {
        let o = std::process::Command::new(bin())
            .args(args)
            .env("CLOUDSTACK_OVN_CONFIG", "/nonexistent")
            .env("CLOUDSTACK_OVN_LOG", "/dev/null")
            .output()
            .unwrap();
        assert!(o.status.success() && o.stderr.is_empty());
        String::from_utf8(o.stdout).unwrap()
    };
    let v: Value = serde_json::from_str(&run(&["extension-details", "--json"])).unwrap();
    assert!(v["services"].as_array().unwrap().contains(&json!("CustomAction")), "{v}");
    assert_eq!(v["capabilities"]["CustomAction"]["Supported"], "true");
    let actions = v["custom_actions"].as_array().unwrap();
    let create = actions.iter().find(|a| a["name"] == "pbr-create-table").expect("pbr-create-table");
    assert_eq!(
        create["parameters"],
        json!([{"name": "table-id", "type": "STRING", "required": true},
                                             {"name": "table-name", "type": "STRING", "required": true}])
    );
    for name in ["pbr-list-rules", "show", "trace", "list-firewall-rules"] {
        assert!(actions.iter().any(|a| a["name"] == name), "{name}");
    }
    let text = run(&["extension-details"]);
    assert!(text.contains("cmk addCustomAction extensionid=\"$EXTENSION_ID\" \\\n  name=pbr-add-route"), "{text}");
}
