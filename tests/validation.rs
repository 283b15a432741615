//! Input validation found missing by issue 9 (#6, #13): bad values are
//! refused with one JSON line, the documented exit code and the NB
//! unchanged, before any connection; good values compile in ovn-northd.

mod common;

use std::process::Output;

use common::scenario::*;
use common::*;
use serde_json::{json, Value};

fn legacy(nb_remote: &str, command: &str, args: &[&str]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--physical-network-extension-details", r#"{"physicalnetworkname":"pn1"}"#]);
    all.extend(["--network-extension-details", "{}"]);
    run_cs_flags(nb_remote, command, &all)
}

fn set_options(nb_remote: &str, options: &Value) -> Output {
    let options = options.to_string();
    legacy(nb_remote, "set-dhcp-options", &["--network-id", "13", "--nic-id", "77", "--options", &options])
}

/// #6: option values are typed. Malformed or injected values fail and leave
/// the NB alone; the accepted encodings are what OVN parses (ovn-trace shows
/// the NIC's DHCP answer carrying them).
#[test]
fn set_dhcp_options_values_are_typed() {
    let central = Central::start();
    let nb = central.nb();
    ok(cs(nb, "implement-network", network(13)));
    run_all(nb, &["prepare-nic", "config-dhcp-subnet", "add-dhcp-entry"], &vm1(13));
    let snap = nb.snapshot();
    for bad in [
        json!({"121": "{10.0.0.0/8,10.1.1.1}, server_id = 6.6.6.6, x = {1}"}),
        json!({"121": "{10.0.0.0/8,10.1.1.1, router=6.6.6.6}"}),
        json!({"121": "{a b c}"}),
        json!({"26": "4294967295"}),
        json!({"26": "+1400"}),
        json!({"3": "0.0.0.0"}),
        json!({"15": "x\"), router = (1"}),
    ] {
        let msg = fails(set_options(&nb.remote(), &bad), 2);
        assert!(msg.contains("options"), "{bad}: {msg}");
        assert_eq!(snap, nb.snapshot(), "{bad}: the NB changed");
    }
    let good = json!({"121": "{10.9.0.0/16,10.1.1.1, 0.0.0.0/0,10.1.1.1}", "26": "1400", "66": "tftp.example",
                      "119": "a.example,b.example", "42": "10.1.1.5, 10.1.1.6"});
    ok(set_options(&nb.remote(), &good));
    central.sync();
    let flow = format!(
        r#"inport == "{NIC1}" && eth.src == 02:00:4c:3e:00:05 && eth.dst == ff:ff:ff:ff:ff:ff && ip4.src == 0.0.0.0 && ip4.dst == 255.255.255.255 && udp.src == 68 && udp.dst == 67"#
    );
    let out = central.trace_output("cs-net-13", &flow);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("parsing actions failed") && !text.contains("Syntax error"), "{text}");
    let put = text.lines().find(|l| l.contains("put_dhcp_opts(")).unwrap_or_else(|| panic!("no DHCP answer:\n{text}"));
    for want in [
        "classless_static_route = {10.9.0.0/16, 10.1.1.1, 0.0.0.0/0, 10.1.1.1}",
        "mtu = 1400",
        "tftp_server = \"tftp.example\"",
        "domain_search_list = \"a.example,b.example\"",
        "ntp_server = {10.1.1.5, 10.1.1.6}",
    ] {
        assert!(put.contains(want), "{want} missing in {put}");
    }
}

/// #13: NIC addresses that no NIC can have, MACs with a sign, and network
/// ACLs for what is not a VPC tier.
#[test]
fn nic_addresses_macs_and_acl_targets_are_checked() {
    let nb = Nb::start();
    ok(cs(&nb, "implement-network", network(21)));
    let snap = nb.snapshot();
    for (field, value, code) in [
        ("ip", "10.1.1.1", 2),   // the gateway
        ("ip", "10.1.1.0", 2),   // the network address
        ("ip", "10.1.1.255", 2), // the broadcast address
        ("ip", "0.0.0.0", 2),
        ("ip", "224.0.0.5", 2),
        ("ip6_address", "::", 2),
        ("ip6_address", "::1", 2),
        ("ip6_address", "ff02::1", 2),
        ("ip6_address", "::ffff:10.1.1.23", 2),
        ("mac", "02:00:4c:3e:00:+a", 2),
    ] {
        let payload = with(vm1(21), json!({ field: value }));
        let msg = fails(cs(&nb, "prepare-nic", payload), code);
        assert!(msg.contains(field), "{field}={value}: {msg}");
        assert_eq!(snap, nb.snapshot(), "{field}={value}: the NB changed");
    }
    // Public addresses too: not the public subnet's network or broadcast
    // address, not unspecified or multicast.
    for (ip, gw) in [
        ("203.0.113.0", "203.0.113.1"),
        ("203.0.113.255", "203.0.113.1"),
        ("0.0.0.0", "203.0.113.1"),
        ("203.0.113.10", "224.0.0.1"),
        ("203.0.113.10", "203.0.113.255"),
    ] {
        let payload = with(public(network(21), ip, true, "101"), json!({ "public_gateway": gw }));
        let msg = fails(cs(&nb, "assign-ip", payload), 2);
        assert!(msg.contains("public_"), "{ip} via {gw}: {msg}");
        assert_eq!(snap, nb.snapshot(), "{ip} via {gw}: the NB changed");
    }
    let acl = json!({"acl_rules": [{"number": 1, "action": "allow", "trafficType": "ingress", "protocol": "all"}]});
    // An isolated network is filtered by apply-fw-rules, not by network ACLs.
    let msg = fails(cs(&nb, "apply-network-acl", with(network(21), acl.clone())), 6);
    assert!(msg.contains("not a VPC tier"), "{msg}");
    // A tier that was never implemented has no switch to filter.
    let msg = fails(cs(&nb, "apply-network-acl", with(tier(5, 71, 1), acl)), 2);
    assert!(msg.contains("no switch"), "{msg}");
    assert_eq!(snap, nb.snapshot());
}

/// #13: `fw_rules.cidr` and every rule are validated before connecting: with
/// no NB at all, bad input is still exit 2, not "unavailable" (4).
#[test]
fn firewall_input_is_validated_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = format!("unix:{}", dir.path().join("no-nb.sock").display());
    let fw = |doc: Value| registered(with(network(42), json!({ "fw_rules": doc })));
    for doc in [
        json!({"default_egress_allow": true, "cidr": "10.1.1.0/33", "rules": []}),
        json!({"default_egress_allow": true, "cidr": ["10.1.1.0/24"], "rules": []}),
        json!({"cidr": "10.1.1.0/24", "rules": [{"id": 1, "type": "ingress", "protocol": "tcp", "portStart": 22,
               "publicIp": "203.0.113.11", "sourceCidrs": ["0.0.0.0/0", 42]}]}),
        json!({"cidr": "10.1.1.0/24", "rules": [{"id": 1, "type": "ingress", "protocol": "tcp", "portStart": 22,
               "publicIp": "203.0.113.11", "sourceCidrs": ["10.0.0.0/8", ""]}]}),
    ] {
        fails(run_cs(&nowhere, "apply-fw-rules", &fw(doc)), 2);
    }
    let lb = json!({"lb_rules": [{"id": -1, "publicIp": "203.0.113.13", "publicPort": 80, "backends": []}]});
    fails(run_cs(&nowhere, "apply-lb-rules", &registered(with(network(42), lb))), 2);
}
