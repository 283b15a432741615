//! North-south with real packets: a chassis with the userspace datapath and
//! `ovn-bridge-mappings=public:br-ex`, an "outside" namespace as upstream
//! router (203.0.113.1) with "internet" hosts, VMs plugged like libvirt does,
//! and only cloudstack-ovn commands, with CloudStack's payloads, in between.

mod common;

use std::time::Duration;

use common::scenario::*;
use common::*;
use serde_json::{json, Value};

/// The first connection through a new router may lose its SYN while the
/// router resolves its next hop (~1.1 s); later ones are fast.
const FIRST: Duration = Duration::from_secs(5);
const NEXT: Duration = Duration::from_secs(3);
const INTERNET: &str = "198.51.100.10";

fn peer_of(line: &Option<String>) -> String {
    let line = line.as_deref().unwrap_or_else(|| panic!("no answer"));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("peer="))
        .and_then(|p| p.rsplit_once(':'))
        .map(|(ip, _)| ip.to_string())
        .unwrap_or_else(|| panic!("no peer in {line:?}"))
}

fn tier_nic(vpc: u32, id: u32, octet: u8, uuid: &str, mac: &str, ip: &str, host: &str) -> Value {
    with(
        tier(vpc, id, octet),
        json!({"nic_id": "1", "nic_uuid": uuid, "mac": mac, "ip": ip, "netmask": "255.255.255.0",
               "default_nic": "true", "hostname": host, "dns": "8.8.8.8", "domain": "cs.example"}),
    )
}

#[test]
fn isolated_network_snat_static_nat_and_port_forwarding_over_vlan() {
    let central = Central::start();
    let hv = Chassis::start(&central, GATEWAY_CHASSIS);
    let outside = hv.add_public("public", Some(101));
    let nb = central.nb();
    let server = outside.serve_tcp(INTERNET, 8080, "outside");

    // First VM in an isolated network: implement → source NAT → NICs.
    ok(cs(nb, "implement-network", network(42)));
    ok(cs(nb, "assign-ip", public(network(42), "203.0.113.10", true, "vlan://101")));
    let vm2_payload = nic(42, NIC2, "02:00:4c:3e:00:06", "10.1.1.24", "vm-2", true);
    run_all(nb, NIC_START, &vm1(42));
    run_all(nb, NIC_START, &vm2_payload);
    let vm1 = hv.plug_vm("tap1", NIC1, "02:00:4c:3e:00:05");
    let vm2 = hv.plug_vm("tap2", NIC2, "02:00:4c:3e:00:06");
    assert_eq!(vm1.dhcp().router.as_deref(), Some("10.1.1.1"));
    assert_eq!(vm2.dhcp().router.as_deref(), Some("10.1.1.1"));

    // The outside server sees the source-NAT IP.
    let capture = outside.capture_vlans();
    assert_eq!(peer_of(&vm2.connect_tcp(INTERNET, 8080, FIRST)), "203.0.113.10");
    let vlans = capture.finish();
    assert!(
        vlans.get(&101).copied().unwrap_or(0) > 0 && vlans.keys().all(|v| *v == 101),
        "only VLAN 101 on the trunk: {vlans:?}"
    );

    // Associate an IP and enable static NAT: both directions use it.
    let _ssh1 = vm1.serve_tcp("0.0.0.0", 22, "vm1-ssh");
    ok(cs(nb, "assign-ip", public(network(42), "203.0.113.11", false, "vlan://101")));
    ok(cs(
        nb,
        "add-static-nat",
        with(public(network(42), "203.0.113.11", false, "vlan://101"), json!({"private_ip": "10.1.1.23"})),
    ));
    assert_eq!(peer_of(&vm1.connect_tcp(INTERNET, 8080, FIRST)), "203.0.113.11");
    let line = outside.connect_tcp("203.0.113.11", 22, Some(INTERNET), FIRST);
    assert!(line.as_deref().unwrap_or_default().starts_with("vm1-ssh"), "{line:?}");
    assert_eq!(peer_of(&line), INTERNET, "static NAT keeps the client address");

    // Port forwarding 2222 → 22 on a third IP.
    let pf = with(
        public(network(42), "203.0.113.12", false, "vlan://101"),
        json!({"private_ip": "10.1.1.23", "public_port": "2222", "private_port": "22", "protocol": "tcp"}),
    );
    ok(cs(nb, "assign-ip", public(network(42), "203.0.113.12", false, "vlan://101")));
    ok(cs(nb, "add-port-forward", pf.clone()));
    let line = outside.connect_tcp("203.0.113.12", 2222, Some(INTERNET), FIRST);
    assert!(line.as_deref().unwrap_or_default().starts_with("vm1-ssh"), "{line:?}");
    assert_eq!(
        central.blocked_probe(|t| outside.connect_tcp("203.0.113.12", 22, Some(INTERNET), t)),
        None,
        "only the forwarded port is open"
    );
    // Hairpin: a VM of the network reaches its own forwarded port.
    let line = vm2.connect_tcp("203.0.113.12", 2222, NEXT);
    assert!(line.as_deref().unwrap_or_default().starts_with("vm1-ssh"), "hairpin: {line:?}");

    // restartNetwork cleanup=true keeps the forward working and the VMs on their leases.
    ok(cs(nb, "shutdown-network", network(42)));
    ok(cs(nb, "implement-network", network(42)));
    for (ip, snat) in [("203.0.113.10", true), ("203.0.113.11", false), ("203.0.113.12", false)] {
        ok(cs(nb, "assign-ip", public(network(42), ip, snat, "vlan://101")));
    }
    ok(cs(
        nb,
        "add-static-nat",
        with(public(network(42), "203.0.113.11", false, "vlan://101"), json!({"private_ip": "10.1.1.23"})),
    ));
    ok(cs(nb, "add-port-forward", pf.clone()));
    let line = outside.connect_tcp("203.0.113.12", 2222, Some(INTERNET), FIRST);
    assert!(line.as_deref().unwrap_or_default().starts_with("vm1-ssh"), "after restart: {line:?}");
    assert_eq!(peer_of(&vm2.connect_tcp(INTERNET, 8080, FIRST)), "203.0.113.10");

    // Deleting the forward and releasing the static-NAT IP close them again.
    ok(cs(nb, "delete-port-forward", pf));
    assert_eq!(central.blocked_probe(|t| outside.connect_tcp("203.0.113.12", 2222, Some(INTERNET), t)), None);
    ok(cs(nb, "release-ip", public(network(42), "203.0.113.11", false, "vlan://101")));
    assert_eq!(central.blocked_probe(|t| outside.connect_tcp("203.0.113.11", 22, Some(INTERNET), t)), None);
    assert_eq!(peer_of(&vm1.connect_tcp(INTERNET, 8080, NEXT)), "203.0.113.10", "vm-1 falls back to the source-NAT IP");
    assert!(server.accepted().len() >= 4);
    hv.assert_vswitchd_alive();
}

#[test]
fn vpc_tiers_route_and_share_the_vpc_source_nat() {
    let central = Central::start();
    let hv = Chassis::start(&central, GATEWAY_CHASSIS);
    let outside = hv.add_public("public", None);
    let nb = central.nb();
    let _server = outside.serve_tcp(INTERNET, 8080, "outside");

    // VPC create with its source-NAT IP, then two tiers and one VM in each.
    ok(cs(nb, "implement-vpc", public(vpc(5), "203.0.113.20", true, "untagged")));
    let a = tier_nic(5, 71, 1, NIC1, "02:00:0a:07:01:0a", "10.7.1.10", "web");
    let b = tier_nic(5, 72, 2, NIC2, "02:00:0a:07:02:0a", "10.7.2.10", "db");
    for (id, octet, payload) in [(71, 1, &a), (72, 2, &b)] {
        ok(cs(nb, "implement-network", tier(5, id, octet)));
        ok(cs(nb, "assign-ip", public(tier(5, id, octet), "203.0.113.20", true, "untagged")));
        run_all(nb, NIC_START, payload);
    }
    let web = hv.plug_vm("tap1", NIC1, "02:00:0a:07:01:0a");
    let db = hv.plug_vm("tap2", NIC2, "02:00:0a:07:02:0a");
    assert_eq!(web.dhcp().router.as_deref(), Some("10.7.1.1"));
    assert_eq!(db.dhcp().router.as_deref(), Some("10.7.2.1"));

    // Tiers reach each other directly, without NAT.
    let _db_srv = db.serve_tcp("0.0.0.0", 5432, "db");
    assert_eq!(peer_of(&web.connect_tcp("10.7.2.10", 5432, FIRST)), "10.7.1.10");
    // Both reach the outside through the VPC source NAT.
    assert_eq!(peer_of(&web.connect_tcp(INTERNET, 8080, FIRST)), "203.0.113.20");
    assert_eq!(peer_of(&db.connect_tcp(INTERNET, 8080, NEXT)), "203.0.113.20");

    // updateVPC sourcenatipaddress: the outside now sees the new IP.
    ok(cs(nb, "update-vpc-source-nat-ip", public(vpc(5), "203.0.113.21", true, "untagged")));
    assert_eq!(peer_of(&web.connect_tcp(INTERNET, 8080, FIRST)), "203.0.113.21");
    assert_eq!(peer_of(&db.connect_tcp(INTERNET, 8080, NEXT)), "203.0.113.21");

    // Deleting one tier leaves the other working.
    run_all(nb, NIC_STOP, &a);
    web.unplug();
    ok(cs(nb, "destroy-network", tier(5, 71, 1)));
    assert_eq!(peer_of(&db.connect_tcp(INTERNET, 8080, NEXT)), "203.0.113.21");

    // Delete the VPC: nothing of ours remains.
    run_all(nb, NIC_STOP, &b);
    ok(cs(nb, "destroy-network", tier(5, 72, 2)));
    ok(cs(nb, "shutdown-vpc", vpc(5)));
    for table in [
        "Logical_Switch",
        "Logical_Router",
        "NAT",
        "Load_Balancer",
        "Gateway_Chassis",
        "DHCP_Options",
        "DNS",
        "Port_Group",
    ] {
        assert_eq!(nb.count_rows(table), 0, "{table}");
    }
    hv.assert_vswitchd_alive();
}
