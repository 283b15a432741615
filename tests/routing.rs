//! Routing, the public network, NAT, port forwarding and VPCs against a real
//! NB: `ovn-nbctl` cross-checks, idempotency, CloudStack's call sequences,
//! exact cleanup, bad input; and `ovn-trace` through ovn-northd's flows.

mod common;

use common::scenario::*;
use common::*;
use serde_json::{json, Value};

const SNAT_IP: &str = "203.0.113.10";
const STATIC_IP: &str = "203.0.113.11";
const PF_IP: &str = "203.0.113.12";

fn static_nat(id: u32, ip: &str, private: &str) -> Value {
    with(public(network(id), ip, false, "vlan://101"), json!({"private_ip": private}))
}

fn port_forward(id: u32, ip: &str, public_port: &str, private: &str, private_port: &str, protocol: &str) -> Value {
    with(
        public(network(id), ip, false, "vlan://101"),
        json!({"private_ip": private, "public_port": public_port, "private_port": private_port, "protocol": protocol}),
    )
}

/// implement → assign-ip (source NAT) as CloudStack's implement() does;
/// associate an IP → enable static NAT; another IP → port forward.
/// `run` is `twice` (idempotency checked) or a single run.
fn isolated_with_nat(nb: &Nb, id: u32, run: fn(&Nb, &str, Value) -> String) {
    run(nb, "implement-network", network(id));
    run(nb, "assign-ip", public(network(id), SNAT_IP, true, "vlan://101"));
    run(nb, "assign-ip", public(network(id), STATIC_IP, false, "101"));
    run(nb, "add-static-nat", static_nat(id, STATIC_IP, "10.1.1.23"));
    run(nb, "assign-ip", public(network(id), PF_IP, false, "vlan://101"));
    run(nb, "add-port-forward", port_forward(id, PF_IP, "2222", "10.1.1.23", "22", "tcp"));
}

fn once(nb: &Nb, command: &str, payload: Value) -> String {
    ok(cs(nb, command, payload))
}

fn nat_rows(nb: &Nb, router: &str) -> Vec<String> {
    let mut rows: Vec<String> = nb
        .nbctl(&["lr-nat-list", router])
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    rows.sort();
    rows
}

#[test]
fn isolated_network_nat_matches_nbctl() {
    let nb = Nb::start();
    isolated_with_nat(&nb, 42, twice);

    assert_eq!(
        nat_rows(&nb, "cs-router-42"),
        vec!["dnat_and_snat 203.0.113.11 10.1.1.23", "snat 203.0.113.10 10.1.1.0/24"]
    );
    let routes = nb.nbctl(&["lr-route-list", "cs-router-42"]);
    assert!(
        routes.contains("0.0.0.0/0") && routes.contains("203.0.113.1") && routes.contains("lrp-cs-router-42-pub"),
        "{routes}"
    );
    let lbs = nb.nbctl(&["lr-lb-list", "cs-router-42"]);
    assert!(lbs.contains("203.0.113.12:2222") && lbs.contains("10.1.1.23:22") && lbs.contains("tcp"), "{lbs}");
    assert_eq!(nb.nbctl(&["ls-lb-list", "cs-net-42"]), lbs, "the forwarding is on the guest switch too (hairpin)");
    assert_eq!(nb.nbctl(&["lrp-get-gateway-chassis", "lrp-cs-router-42-pub"]), "lrp-cs-router-42-pub_hv1 32767");
    assert_eq!(nb.nbctl(&["get", "Logical_Router_Port", "lrp-cs-router-42-pub", "networks"]), r#"["203.0.113.10/24"]"#);
    assert_eq!(nb.nbctl(&["get", "Logical_Router_Port", "lrp-cs-router-42-pub", "options:gateway_mtu"]), r#""1500""#);
    assert_eq!(nb.nbctl(&["get", "Logical_Router_Port", "lrp-cs-net-42", "networks"]), r#"["10.1.1.1/24"]"#);
    // The public switch of VLAN 101: a localnet port with the bridge-mapping name and the tag.
    assert_eq!(nb.nbctl(&["get", "Logical_Switch_Port", "ln-cs-public-public-101", "tag_request"]), "101");
    assert_eq!(nb.nbctl(&["get", "Logical_Switch_Port", "ln-cs-public-public-101", "options:network_name"]), "public");
    assert_eq!(nb.nbctl(&["get", "Logical_Switch_Port", "lsp-cs-router-42-pub", "options:nat-addresses"]), "router");

    // Port ranges forward port for port; absurd ranges are refused.
    twice(&nb, "add-port-forward", port_forward(42, PF_IP, "3000-3004", "10.1.1.24", "4000-4004", "udp"));
    let lbs = nb.nbctl(&["lr-lb-list", "cs-router-42"]);
    assert!(lbs.contains("203.0.113.12:3004") && lbs.contains("10.1.1.24:4004") && lbs.contains("udp"), "{lbs}");
    let snap = nb.snapshot();
    let msg = fails(cs(&nb, "add-port-forward", port_forward(42, PF_IP, "1-10000", "10.1.1.24", "1-10000", "tcp")), 2);
    assert!(msg.contains("at most 256"), "{msg}");
    assert_eq!(snap, nb.snapshot());

    // Delete the forward and the static NAT: exactly their rows go.
    twice(&nb, "delete-port-forward", port_forward(42, PF_IP, "3000-3004", "10.1.1.24", "4000-4004", "udp"));
    twice(&nb, "delete-static-nat", static_nat(42, STATIC_IP, "10.1.1.23"));
    assert_eq!(nat_rows(&nb, "cs-router-42"), vec!["snat 203.0.113.10 10.1.1.0/24"]);
    assert!(!nb.nbctl(&["lr-lb-list", "cs-router-42"]).contains("udp"));
    assert_eq!(nb.count_rows("Load_Balancer"), 1);
}

#[test]
fn release_ip_removes_everything_that_uses_it() {
    let nb = Nb::start();
    isolated_with_nat(&nb, 43, twice);
    twice(&nb, "release-ip", public(network(43), PF_IP, false, "vlan://101"));
    assert_eq!(nb.count_rows("Load_Balancer"), 0);
    twice(&nb, "release-ip", public(network(43), STATIC_IP, false, "vlan://101"));
    assert_eq!(nat_rows(&nb, "cs-router-43"), vec!["snat 203.0.113.10 10.1.1.0/24"]);
    // The last IP takes the gateway, its placement, the route and the public switch with it.
    twice(&nb, "release-ip", public(network(43), SNAT_IP, true, "vlan://101"));
    assert!(nat_rows(&nb, "cs-router-43").is_empty());
    for table in ["Gateway_Chassis", "Logical_Router_Static_Route", "Load_Balancer"] {
        assert_eq!(nb.count_rows(table), 0, "{table}");
    }
    assert!(!nb.nbctl(&["ls-list"]).contains("cs-public"), "{}", nb.nbctl(&["show"]));
    assert_eq!(nb.nbctl(&["lrp-list", "cs-router-43"]).lines().count(), 1, "only the guest port is left");
}

#[test]
fn restart_with_cleanup_then_delete() {
    let nb = Nb::start();
    isolated_with_nat(&nb, 44, twice);
    run_all(&nb, NIC_START, &vm1(44));
    let before = nb.snapshot();

    // restartNetwork cleanup=true, as CloudStack sends it.
    twice(&nb, "shutdown-network", network(44));
    assert_eq!(nb.count_rows("Logical_Router"), 0);
    assert_eq!(nb.count_rows("Load_Balancer"), 0, "weakly referenced forwarding rows are deleted, not leaked");
    assert!(!nb.nbctl(&["ls-list"]).contains("cs-public"));
    assert!(nb.nbctl(&["lsp-list", "cs-net-44"]).contains(NIC1), "the VM keeps its port");
    ok(cs(&nb, "implement-network", network(44)));
    ok(cs(&nb, "assign-ip", public(network(44), SNAT_IP, true, "vlan://101")));
    ok(cs(&nb, "assign-ip", public(network(44), STATIC_IP, false, "vlan://101")));
    ok(cs(&nb, "assign-ip", public(network(44), PF_IP, false, "vlan://101")));
    ok(cs(&nb, "add-static-nat", static_nat(44, STATIC_IP, "10.1.1.23")));
    ok(cs(&nb, "add-port-forward", port_forward(44, PF_IP, "2222", "10.1.1.23", "22", "tcp")));
    let after = nb.snapshot();
    assert!(before == after, "restart with cleanup must converge to the same NB:\n{}", snapshot_diff(&before, &after));

    // deleteNetwork.
    run_all(&nb, NIC_STOP, &vm1(44));
    twice(&nb, "shutdown-network", network(44));
    twice(&nb, "destroy-network", network(44));
    let show = nb.nbctl(&["show"]);
    assert!(show.is_empty(), "nothing of ours may remain:\n{show}");
    for table in [
        "NAT",
        "Load_Balancer",
        "Gateway_Chassis",
        "Logical_Router_Static_Route",
        "DHCP_Options",
        "DNS",
        "Port_Group",
        "ACL",
    ] {
        assert_eq!(nb.count_rows(table), 0, "{table}");
    }
}

#[test]
fn public_switch_is_shared_per_vlan_and_removed_with_its_last_router() {
    let nb = Nb::start();
    for id in [50, 51] {
        ok(cs(&nb, "implement-network", network(id)));
    }
    ok(cs(&nb, "assign-ip", public(network(50), "203.0.113.50", true, "vlan://101")));
    ok(cs(&nb, "assign-ip", public(network(51), "203.0.113.51", true, "101")));
    let switches: Vec<String> =
        nb.nbctl(&["ls-list"]).lines().filter(|l| l.contains("cs-public")).map(String::from).collect();
    assert_eq!(switches.len(), 1, "two routers on VLAN 101 share one public switch: {switches:?}");
    assert_eq!(nb.nbctl(&["lsp-list", "cs-public-public-101"]).lines().count(), 3, "localnet + 2 routers");

    ok(cs(&nb, "destroy-network", network(50)));
    assert!(nb.nbctl(&["ls-list"]).contains("cs-public-public-101"), "network 51 still uses it");
    ok(cs(&nb, "destroy-network", network(51)));
    assert!(!nb.nbctl(&["ls-list"]).contains("cs-public"), "{}", nb.nbctl(&["show"]));
}

#[test]
fn vpc_lifecycle() {
    let nb = Nb::start();
    let snat1 = public(vpc(5), "203.0.113.20", true, "vlan://101");
    twice(&nb, "implement-vpc", snat1.clone());
    for (id, octet) in [(71, 1), (72, 2)] {
        twice(&nb, "implement-network", tier(5, id, octet));
        // implement() of a tier also assigns the VPC's source-NAT IP: no tier SNAT.
        twice(&nb, "assign-ip", public(tier(5, id, octet), "203.0.113.20", true, "vlan://101"));
    }
    assert_eq!(nb.nbctl(&["lrp-list", "cs-vpc-5"]).lines().count(), 3, "two tiers + gateway");
    assert_eq!(nat_rows(&nb, "cs-vpc-5"), vec!["snat 203.0.113.20 10.7.0.0/16"]);

    // Static NAT and port forwarding on tier IPs, then move the source NAT.
    twice(&nb, "assign-ip", public(tier(5, 71, 1), "203.0.113.22", false, "vlan://101"));
    twice(
        &nb,
        "add-static-nat",
        with(public(tier(5, 71, 1), "203.0.113.22", false, "vlan://101"), json!({"private_ip": "10.7.1.10"})),
    );
    let pf = with(
        public(tier(5, 72, 2), "203.0.113.23", false, "vlan://101"),
        json!({"private_ip": "10.7.2.10", "public_port": "2222", "private_port": "22", "protocol": "tcp"}),
    );
    twice(&nb, "add-port-forward", pf.clone());
    twice(&nb, "update-vpc-source-nat-ip", public(vpc(5), "203.0.113.21", true, "vlan://101"));
    assert_eq!(
        nat_rows(&nb, "cs-vpc-5"),
        vec!["dnat_and_snat 203.0.113.22 10.7.1.10", "snat 203.0.113.21 10.7.0.0/16"]
    );
    assert_eq!(nb.nbctl(&["get", "Logical_Router_Port", "lrp-cs-vpc-5-pub", "networks"]), r#"["203.0.113.21/24"]"#);
    assert!(nb.nbctl(&["lr-lb-list", "cs-vpc-5"]).contains("203.0.113.23:2222"));

    // restartVPC cleanup=true: tiers destroyed, VPC shut down, everything re-implemented.
    let before = nb.snapshot();
    ok(cs(&nb, "destroy-network", tier(5, 71, 1)));
    ok(cs(&nb, "destroy-network", tier(5, 72, 2)));
    twice(&nb, "shutdown-vpc", vpc(5));
    let show = nb.nbctl(&["show"]);
    assert!(show.is_empty(), "nothing of the VPC may remain:\n{show}");
    ok(cs(&nb, "implement-vpc", public(vpc(5), "203.0.113.21", true, "vlan://101")));
    for (id, octet) in [(71, 1), (72, 2)] {
        ok(cs(&nb, "implement-network", tier(5, id, octet)));
    }
    ok(cs(&nb, "assign-ip", public(tier(5, 71, 1), "203.0.113.20", false, "vlan://101")));
    ok(cs(&nb, "assign-ip", public(tier(5, 71, 1), "203.0.113.22", false, "vlan://101")));
    ok(cs(
        &nb,
        "add-static-nat",
        with(public(tier(5, 71, 1), "203.0.113.22", false, "vlan://101"), json!({"private_ip": "10.7.1.10"})),
    ));
    ok(cs(&nb, "add-port-forward", pf));
    assert_eq!(
        nat_rows(&nb, "cs-vpc-5"),
        vec!["dnat_and_snat 203.0.113.22 10.7.1.10", "snat 203.0.113.21 10.7.0.0/16"]
    );
    let after = nb.snapshot();
    for t in ["NAT", "Load_Balancer", "Logical_Router_Port", "Logical_Router_Static_Route", "Gateway_Chassis"] {
        assert_eq!(before[t], after[t], "{t} after restartVPC");
    }

    // Delete one tier: the other stays attached and routed.
    ok(cs(&nb, "destroy-network", tier(5, 71, 1)));
    let ports = nb.nbctl(&["lrp-list", "cs-vpc-5"]);
    assert!(ports.contains("lrp-cs-net-72") && !ports.contains("lrp-cs-net-71"), "{ports}");
    assert_eq!(nat_rows(&nb, "cs-vpc-5").len(), 2);

    // Delete the VPC.
    ok(cs(&nb, "destroy-network", tier(5, 72, 2)));
    twice(&nb, "shutdown-vpc", vpc(5));
    let show = nb.nbctl(&["show"]);
    assert!(show.is_empty(), "{show}");
    for table in ["NAT", "Load_Balancer", "Gateway_Chassis", "Logical_Router_Static_Route"] {
        assert_eq!(nb.count_rows(table), 0, "{table}");
    }
}

#[test]
fn bad_public_input_is_refused_and_nb_unchanged() {
    let nb = Nb::start();
    isolated_with_nat(&nb, 60, once);
    let snap = nb.snapshot();
    let base = public(network(60), "203.0.113.30", false, "vlan://101");
    let cases: Vec<(&str, Value, &str)> = vec![
        ("assign-ip", with(base.clone(), json!({"public_vlan": "vlan://5000"})), "public_vlan"),
        ("assign-ip", with(base.clone(), json!({"public_ip": "203.0.113.300"})), "public_ip"),
        ("assign-ip", with(base.clone(), json!({"public_gateway": "198.51.100.1"})), "public_gateway"),
        ("assign-ip", with(base.clone(), json!({"public_cidr": "203.0.113.0/40"})), "public_cidr"),
        ("assign-ip", with(base.clone(), json!({"source_nat": "perhaps"})), "source_nat"),
        ("add-static-nat", with(base.clone(), json!({"private_ip": "192.168.1.1"})), "private_ip"),
        ("add-port-forward", port_forward(60, PF_IP, "70000", "10.1.1.23", "22", "tcp"), "public_port"),
        ("add-port-forward", port_forward(60, PF_IP, "2222", "10.1.1.23", "22", "icmp"), "protocol"),
        ("add-port-forward", port_forward(60, PF_IP, "2222-2223", "10.1.1.23", "22", "tcp"), "private_port"),
        ("implement-vpc", with(vpc(6), json!({"vpc_cidr": "10.7.0.0/99"})), "vpc_cidr"),
    ];
    for (command, payload, field) in cases {
        let msg = fails(run_cs(&nb.remote(), command, &registered(payload)), 2);
        assert!(msg.contains(field), "{command}: {msg} should name {field}");
        assert_eq!(snap, nb.snapshot(), "{command} with bad {field} changed the NB");
    }
    // Without a gateway chassis NAT cannot be placed: a configuration error.
    let msg = fails(run_cs(&nb.remote(), "assign-ip", &envelope(base.clone())), 3);
    assert!(msg.contains("ovn.gateway.chassis"), "{msg}");
    // A second public VLAN on one router is not supported (yet): said loudly.
    let msg = fails(run_cs(&nb.remote(), "assign-ip", &registered(with(base, json!({"public_vlan": "102"})))), 6);
    assert!(msg.contains("one public VLAN per router"), "{msg}");
    assert_eq!(snap, nb.snapshot());
}

/// ovn-northd compiles what we wrote into flows that do what CloudStack means.
#[test]
fn ovn_trace_snat_static_nat_and_port_forwarding() {
    let central = Central::start();
    let nb = central.nb();
    isolated_with_nat(nb, 42, once);
    run_all(nb, NIC_START, &vm1(42));
    let second = nic(42, NIC2, "02:00:4c:3e:00:06", "10.1.1.24", "vm-2", true);
    run_all(nb, NIC_START, &second);
    // As if the router had already resolved the upstream gateway (a real
    // first packet triggers an ARP request instead, which ovn-trace follows).
    // ovn-trace's get_arp() reads SB MAC_Binding, which ovn-controller fills.
    central.sync();
    let dp =
        central.sbctl(&["--bare", "--columns=_uuid", "find", "Datapath_Binding", "external_ids:name=cs-router-42"]);
    central.sbctl(&[
        "create",
        "MAC_Binding",
        "logical_port=lrp-cs-router-42-pub",
        "ip=203.0.113.1",
        "mac=\"02:00:cb:00:71:01\"",
        &format!("datapath={dp}"),
    ]);
    let router_mac = nb.nbctl(&["get", "Logical_Router_Port", "lrp-cs-net-42", "mac"]).trim_matches('"').to_string();
    let gw_mac = nb.nbctl(&["get", "Logical_Router_Port", "lrp-cs-router-42-pub", "mac"]).trim_matches('"').to_string();

    // VM without static NAT → outside: source-NATed to the source-NAT IP.
    let out = central.trace(
        "cs-net-42",
        &format!(r#"inport == "{NIC2}" && eth.src == 02:00:4c:3e:00:06 && eth.dst == {router_mac} && ip4.src == 10.1.1.24 && ip4.dst == 198.51.100.10 && ip.ttl == 64 && tcp && tcp.dst == 80"#),
    );
    assert!(
        out.contains("ct_snat(203.0.113.10)") || out.contains("ct_snat_in_czone(203.0.113.10)"),
        "no SNAT to the source-NAT IP:\n{out}"
    );
    assert!(out.contains("output to \"ln-cs-public-public-101\"") || out.contains("lrp-cs-router-42-pub"), "{out}");

    // VM with static NAT → outside: leaves as its static-NAT IP.
    let out = central.trace(
        "cs-net-42",
        &format!(r#"inport == "{NIC1}" && eth.src == 02:00:4c:3e:00:05 && eth.dst == {router_mac} && ip4.src == 10.1.1.23 && ip4.dst == 198.51.100.10 && ip.ttl == 64 && tcp && tcp.dst == 80"#),
    );
    assert!(out.contains("203.0.113.11"), "no static NAT on the way out:\n{out}");

    // Outside → static-NAT IP: DNATed to the VM.
    let out = central.trace(
        "cs-public-public-101",
        &format!(r#"inport == "ln-cs-public-public-101" && eth.src == 02:00:cb:00:71:01 && eth.dst == {gw_mac} && ip4.src == 198.51.100.10 && ip4.dst == 203.0.113.11 && ip.ttl == 64 && tcp && tcp.dst == 22"#),
    );
    assert!(
        out.contains("ct_dnat(10.1.1.23)") || out.contains("ct_dnat_in_czone(10.1.1.23)"),
        "no DNAT to the VM:\n{out}"
    );

    // Outside → forwarded public port: load-balanced to the private port.
    let out = central.trace_opts(
        &["--ct=new"],
        "cs-public-public-101",
        &format!(r#"inport == "ln-cs-public-public-101" && eth.src == 02:00:cb:00:71:01 && eth.dst == {gw_mac} && ip4.src == 198.51.100.10 && ip4.dst == 203.0.113.12 && ip.ttl == 64 && tcp && tcp.src == 40000 && tcp.dst == 2222"#),
    );
    assert!(out.contains("10.1.1.23:22"), "port 2222 is not forwarded to 22:\n{out}");
}
