//! Shared and L2 networks: the guest switch bridged onto the physical VLAN
//! through a localnet port, OVN answering DHCP and DNS with the physical
//! router as gateway. NB behaviour with `ovn-nbctl` cross-checks, then real
//! packets on a userspace-datapath chassis whose `br-ex` carries the VLANs
//! to an upstream router namespace (tests/common/public.rs).

mod common;

use std::time::Duration;

use common::scenario::*;
use common::*;
use serde_json::{json, Value};

const GW: &str = "172.31.0.1";
const EXT_IP: &str = "172.31.0.2";

/// A shared network as CloudStack sends it (§4.2): its VLAN in `vlan`, the
/// physical gateway, and the extension_ip CloudStack allocated from its range.
fn shared(id: u32, vlan: &str) -> Value {
    json!({"network_id": id.to_string(), "vlan": vlan, "zone_id": "1", "guest_type": "shared",
           "network_state": "implementing", "gateway": GW, "cidr": "172.31.0.0/24", "extension_ip": EXT_IP})
}

fn shared_nic(id: u32, vlan: &str, uuid: &str, mac: &str, ip: &str, host: &str, default_nic: bool) -> Value {
    with(
        shared(id, vlan),
        json!({"nic_id": "77", "nic_uuid": uuid, "mac": mac, "ip": ip, "netmask": "255.255.255.0",
               "default_nic": default_nic.to_string(), "device_id": "0", "hostname": host,
               "dns": "172.31.0.53,8.8.8.8", "domain": "shared.example"}),
    )
}

fn l2(id: u32, vlan: &str) -> Value {
    json!({"network_id": id.to_string(), "vlan": vlan, "zone_id": "1", "guest_type": "l2",
           "network_state": "implementing"})
}

fn broadcast(out: &str) -> String {
    let v: Value = serde_json::from_str(out).unwrap_or_else(|e| panic!("{out}: {e}"));
    assert_eq!(v["network.broadcast_domain_type"], "Lswitch", "{out}");
    v["network.broadcast_uri"].as_str().unwrap().to_string()
}

/// The DHCP_Options row of `cidr` with (or without) `router`.
fn dhcp_options(nb: &Nb, cidr: &str, with_router: bool) -> String {
    let rows = nb.nbctl(&["--bare", "--columns=_uuid", "find", "DHCP_Options", &format!("cidr=\"{cidr}\"")]);
    let all: Vec<String> =
        rows.split_whitespace().map(|u| nb.nbctl(&["dhcp-options-get-options", u]).replace('\n', " ")).collect();
    all.into_iter()
        .find(|o| o.contains("router=") == with_router)
        .unwrap_or_else(|| panic!("no DHCP_Options for {cidr} (router: {with_router}): {rows}"))
}

#[test]
fn implement_network_bridges_a_shared_network_onto_its_vlan() {
    let nb = Nb::start();
    for (id, vlan) in [(50, "3000"), (51, "vlan://3000")] {
        let out = twice(&nb, "implement-network", shared(id, vlan));
        assert_eq!(broadcast(&out), "vlan://3000", "{vlan}");
        let ln = format!("ln-cs-net-{id}");
        assert_eq!(nb.nbctl(&["lsp-get-type", &ln]), "localnet");
        assert_eq!(nb.nbctl(&["get", "Logical_Switch_Port", &ln, "tag_request"]), "3000");
        assert_eq!(nb.nbctl(&["lsp-get-addresses", &ln]), "unknown");
        assert_eq!(nb.nbctl(&["get", "Logical_Switch_Port", &ln, "options:network_name"]), "public");
        let sw = format!("cs-net-{id}");
        assert_eq!(nb.nbctl(&["get", "Logical_Switch", &sw, "external_ids:\"cloudstack:vlan\""]), "\"3000\"");
        assert_eq!(nb.nbctl(&["get", "Logical_Switch", &sw, "external_ids:\"cloudstack:guest_type\""]), "shared");
    }
    // No router, no NAT: the gateway is the physical router.
    assert_eq!(nb.nbctl(&["lr-list"]), "");

    // Later payloads whose `vlan` names no VLAN (our own earlier ovn:// URI,
    // or empty) converge on the recorded tag and write nothing.
    for vlan in ["cs-net-50", ""] {
        let out = twice(&nb, "implement-network", shared(50, vlan));
        assert_eq!(broadcast(&out), "vlan://3000", "{vlan:?}");
        assert_eq!(nb.nbctl(&["get", "Logical_Switch_Port", "ln-cs-net-50", "tag_request"]), "3000");
    }
    // A changed VLAN retags the localnet port in place.
    assert_eq!(broadcast(&twice(&nb, "implement-network", shared(50, "3001"))), "vlan://3001");
    assert_eq!(nb.nbctl(&["get", "Logical_Switch_Port", "ln-cs-net-50", "tag_request"]), "3001");

    // Untagged, in both spellings: no tag at all.
    for (id, vlan) in [(52, "untagged"), (53, "vlan://untagged")] {
        let out = twice(&nb, "implement-network", shared(id, vlan));
        assert_eq!(broadcast(&out), "vlan://untagged");
        let ln = format!("ln-cs-net-{id}");
        assert_eq!(nb.nbctl(&["lsp-get-type", &ln]), "localnet");
        assert_eq!(nb.nbctl(&["get", "Logical_Switch_Port", &ln, "tag_request"]), "[]");
    }
    // Isolated networks keep the overlay URI.
    assert_eq!(broadcast(&twice(&nb, "implement-network", network(42))), "ovn://cs-net-42");
    assert_eq!(
        nb.nbctl(&["--bare", "--columns=name", "find", "Logical_Switch_Port", "type=localnet"])
            .split_whitespace()
            .count(),
        4
    );
}

#[test]
fn the_shared_physical_network_name_is_a_registration_detail() {
    let nb = Nb::start();
    let mut env = registered(shared(50, "3000"));
    env["physical-network-extension-details"]["ovn.shared.network_name"] = json!("guest-phys");
    ok(run_cs(&nb.remote(), "implement-network", &env));
    assert_eq!(nb.nbctl(&["get", "Logical_Switch_Port", "ln-cs-net-50", "options:network_name"]), "guest-phys");
    env["physical-network-extension-details"]["ovn.shared.network_name"] = json!("bad name");
    let msg = fails(run_cs(&nb.remote(), "implement-network", &env), 3);
    assert!(msg.contains("ovn.shared.network_name"), "{msg}");
}

#[test]
fn implementing_a_shared_network_without_its_vlan_is_refused() {
    let nb = Nb::start();
    let before = nb.snapshot();
    for vlan in ["", "cs-net-50"] {
        let msg = fails(cs(&nb, "implement-network", shared(50, vlan)), 2);
        assert!(msg.contains("vlan") && msg.contains("shared"), "{msg}");
    }
    for vlan in ["vlan://5000", "lswitch://x"] {
        let msg = fails(cs(&nb, "implement-network", shared(50, vlan)), 2);
        assert!(msg.contains("vlan"), "{msg}");
    }
    assert_eq!(before, nb.snapshot());
}

#[test]
fn shared_network_sequence_converges_with_the_physical_gateway_in_dhcp() {
    let nb = Nb::start();
    twice(&nb, "implement-network", shared(50, "vlan://3000"));
    // After implement CloudStack's payloads carry the VLAN we printed.
    let vm = shared_nic(50, "3000", NIC1, "02:00:ac:1f:00:0a", "172.31.0.10", "vm-1", true);
    for c in NIC_START {
        twice(&nb, c, vm.clone());
    }
    assert_eq!(nb.nbctl(&["lsp-get-port-security", NIC1]), "02:00:ac:1f:00:0a 172.31.0.10");
    let with_router = dhcp_options(&nb, "172.31.0.0/24", true);
    for want in ["router=172.31.0.1", "server_id=172.31.0.2", "dns_server={172.31.0.53, 8.8.8.8}"] {
        assert!(with_router.contains(want), "{want} in {with_router}");
    }
    assert!(with_router.contains("domain_name=\"shared.example\""), "{with_router}");
    assert!(!dhcp_options(&nb, "172.31.0.0/24", false).contains("router="));
    assert_eq!(nb.nbctl(&["lsp-get-dhcpv4-options", NIC1]).split_whitespace().nth(1), Some("(172.31.0.0/24)"));
    assert!(nb.nbctl(&["list", "DNS"]).contains("vm-1.shared.example"));

    // A second IP range of the same shared network: its own subnet, its own
    // gateway (the NIC's), and its own DHCP rows; the extension_ip is not on
    // it, so the DHCP server id is the metadata address.
    let vm2 = with(
        shared_nic(50, "3000", NIC2, "02:00:ac:1f:01:0a", "172.31.1.10", "vm-2", true),
        json!({"gateway": "172.31.1.1"}),
    );
    for c in NIC_START {
        twice(&nb, c, vm2.clone());
    }
    let second = dhcp_options(&nb, "172.31.1.0/24", true);
    assert!(second.contains("router=172.31.1.1") && second.contains("server_id=169.254.169.254"), "{second}");
    assert_eq!(nb.nbctl(&["lsp-get-dhcpv4-options", NIC2]).split_whitespace().nth(1), Some("(172.31.1.0/24)"));
    // The first subnet's rows are untouched.
    assert_eq!(dhcp_options(&nb, "172.31.0.0/24", true), with_router);

    // restore-network (restart with cleanup) knows both subnets.
    let restore = with(
        shared(50, "3000"),
        json!({"restore_data": {"dhcp_enabled": true, "dns_enabled": true, "userdata_enabled": true, "vms": [
            {"nic_uuid": NIC1, "mac": "02:00:ac:1f:00:0a", "ip": "172.31.0.10", "hostname": "vm-1", "default_nic": true},
            {"nic_uuid": NIC2, "mac": "02:00:ac:1f:01:0a", "ip": "172.31.1.10", "hostname": "vm-2", "default_nic": true}
        ]}, "dns": "172.31.0.53,8.8.8.8", "domain": "shared.example"}),
    );
    let before = nb.snapshot();
    twice(&nb, "restore-network", restore);
    assert_eq!(snapshot_diff(&before, &nb.snapshot()), "");

    // The audit knows the new rows: nothing to report.
    let dir = tempfile::tempdir().unwrap();
    let out = product(&nb.remote(), &dir.path().join("audit.log")).args(["audit", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));

    // Without an extension_ip (network.allocate.extension.ip=false) the
    // server id is the metadata address, never the physical gateway.
    let no_ext = shared_nic(51, "3001", NIC1, "02:00:ac:1f:00:0b", "172.31.0.11", "vm-3", true);
    let no_ext = {
        let mut v = no_ext;
        v.as_object_mut().unwrap().remove("extension_ip");
        v
    };
    twice(&nb, "config-dhcp-subnet", no_ext);
    let rows =
        nb.nbctl(&["--bare", "--columns=options", "find", "DHCP_Options", "external_ids:\"cloudstack:network_id\"=51"]);
    assert!(rows.contains("server_id=169.254.169.254") && rows.contains("router=172.31.0.1"), "{rows}");
}

/// What CloudStack sends for NAT, forwarding, firewall and LB, on `net`.
fn routing_commands(net: Value) -> Vec<(&'static str, Value)> {
    let pubip = public(net.clone(), "203.0.113.10", true, "vlan://101");
    vec![
        ("assign-ip", pubip.clone()),
        ("release-ip", pubip.clone()),
        ("add-static-nat", with(pubip.clone(), json!({"private_ip": "172.31.0.10"}))),
        ("delete-static-nat", with(pubip.clone(), json!({"private_ip": "172.31.0.10"}))),
        (
            "add-port-forward",
            with(
                pubip.clone(),
                json!({"private_ip": "172.31.0.10", "public_port": "2222", "private_port": "22", "protocol": "tcp"}),
            ),
        ),
        (
            "delete-port-forward",
            with(
                pubip,
                json!({"private_ip": "172.31.0.10", "public_port": "2222", "private_port": "22", "protocol": "tcp"}),
            ),
        ),
        ("apply-fw-rules", with(net.clone(), json!({"fw_rules": {"default_egress_policy": "allow", "rules": []}}))),
        ("apply-network-acl", with(net.clone(), json!({"acl_rules": []}))),
        ("apply-lb-rules", with(net, json!({"lb_rules": []}))),
    ]
}

#[test]
fn routing_commands_on_shared_and_l2_networks_are_refused() {
    let nb = Nb::start();
    ok(cs(&nb, "implement-network", shared(50, "3000")));
    run_all(&nb, NIC_START, &shared_nic(50, "3000", NIC1, "02:00:ac:1f:00:0a", "172.31.0.10", "vm-1", true));
    ok(cs(&nb, "implement-network", l2(60, "3005")));
    let before = nb.snapshot();
    for (net, kind) in [(shared(50, "3000"), "shared network"), (l2(60, "3005"), "L2 network")] {
        for (command, payload) in routing_commands(net) {
            let msg = fails(cs(&nb, command, payload), 2);
            assert!(msg.contains(kind) && msg.contains(command), "{command}: {msg}");
        }
    }
    assert_eq!(snapshot_diff(&before, &nb.snapshot()), "");
    assert_eq!(nb.nbctl(&["lr-list"]), "");
}

/// `payload` without its `guest_type`: legacy payloads and CloudStack
/// versions that do not send it.
fn untyped(mut payload: Value) -> Value {
    payload.as_object_mut().unwrap().remove("guest_type");
    payload
}

/// The legacy `--flag value` form, registered with our gateway chassis.
fn legacy(nb: &Nb, command: &str, args: &[&str]) -> std::process::Output {
    let mut all: Vec<&str> = args.to_vec();
    let details = format!(r#"{{"physicalnetworkname":"pn1","ovn.gateway.chassis":"{GATEWAY_CHASSIS}"}}"#);
    all.extend(["--physical-network-extension-details", &details, "--network-extension-details", "{}"]);
    run_cs_flags(&nb.remote(), command, &all)
}

/// A payload without `guest_type` on a network whose switch records it is
/// shared or L2: the recorded type decides, and the command is refused with
/// the same error, before any write (no router for a shared network).
#[test]
fn routing_commands_without_guest_type_on_shared_and_l2_networks_are_refused() {
    let nb = Nb::start();
    ok(cs(&nb, "implement-network", shared(50, "3000")));
    run_all(&nb, NIC_START, &shared_nic(50, "3000", NIC1, "02:00:ac:1f:00:0a", "172.31.0.10", "vm-1", true));
    ok(cs(&nb, "implement-network", l2(60, "3005")));
    let before = nb.snapshot();
    // The L2 payload gets a CIDR so that source NAT's own validation passes
    // and the NB is consulted.
    let l2_net = with(untyped(l2(60, "3005")), json!({"cidr": "172.31.0.0/24"}));
    for (net, kind) in [(untyped(shared(50, "3000")), "shared network"), (l2_net, "L2 network")] {
        for (command, payload) in routing_commands(net.clone()) {
            if command == "apply-network-acl" {
                // Without a vpc_id the payload names no tier: refused
                // before connecting (the legacy form below reaches the NB).
                let msg = fails(cs(&nb, command, payload), 6);
                assert!(msg.contains("not a VPC tier"), "{command}: {msg}");
                continue;
            }
            let msg = fails(cs(&nb, command, payload), 2);
            assert!(msg.contains(kind) && msg.contains(command), "{command}: {msg}");
        }
        for action in ["pbr-create-table", "pbr-list-tables"] {
            let mut p = net.clone();
            p["action"] = json!(action);
            p["action-params"] = json!({"table-id": "100", "table-name": "t100"});
            p["physical-network-extension-details"] = json!({"physicalnetworkname": "pn1"});
            p["network-extension-details"] = json!({});
            let msg = fails(run_cs(&nb.remote(), "custom-action", &p), 2);
            assert!(msg.contains(kind) && msg.contains("custom-action"), "{action}: {msg}");
        }
        // The legacy flag form carries no guest type at all.
        let id = net["network_id"].as_str().unwrap();
        let acl = ["--network-id", id, "--cidr", "172.31.0.0/24", "--acl-rules", "[]"];
        let msg = fails(legacy(&nb, "apply-network-acl", &acl), 2);
        assert!(msg.contains(kind) && msg.contains("apply-network-acl"), "legacy apply-network-acl: {msg}");
        let nat = [
            "--network-id",
            id,
            "--public-ip",
            "203.0.113.10",
            "--public-cidr",
            "203.0.113.0/24",
            "--public-gateway",
            "203.0.113.1",
            "--public-vlan",
            "vlan://101",
            "--private-ip",
            "172.31.0.10",
        ];
        let msg = fails(legacy(&nb, "add-static-nat", &nat), 2);
        assert!(msg.contains(kind) && msg.contains("add-static-nat"), "legacy add-static-nat: {msg}");
    }
    assert_eq!(snapshot_diff(&before, &nb.snapshot()), "");
    assert_eq!(nb.nbctl(&["lr-list"]), "");

    // An isolated network, with and without guest_type, still gets its router.
    ok(cs(&nb, "implement-network", network(42)));
    ok(cs(&nb, "assign-ip", public(untyped(network(42)), "203.0.113.20", true, "vlan://101")));
    ok(cs(
        &nb,
        "add-static-nat",
        with(public(network(42), "203.0.113.21", false, "vlan://101"), json!({"private_ip": "10.1.1.23"})),
    ));
    assert_eq!(nb.nbctl(&["lr-list"]).lines().count(), 1, "{}", nb.nbctl(&["lr-list"]));
    assert!(nb.nbctl(&["lr-nat-list", "cs-router-42"]).contains("203.0.113.21"));
}

#[test]
fn l2_network_pins_macs_and_has_no_dhcp() {
    let nb = Nb::start();
    assert_eq!(broadcast(&twice(&nb, "implement-network", l2(60, "vlan://3005"))), "vlan://3005");
    assert_eq!(nb.nbctl(&["lsp-get-type", "ln-cs-net-60"]), "localnet");
    assert_eq!(nb.nbctl(&["get", "Logical_Switch_Port", "ln-cs-net-60", "tag_request"]), "3005");
    assert_eq!(nb.nbctl(&["get", "Logical_Switch", "cs-net-60", "external_ids:\"cloudstack:guest_type\""]), "l2");
    // CloudStack may know an address for the NIC; the guest decides.
    let nic = with(
        l2(60, "3005"),
        json!({"nic_id": "9", "nic_uuid": NIC1, "mac": "02:00:ac:1f:00:0a", "ip": "192.0.2.7",
               "netmask": "255.255.255.0", "default_nic": "true", "hostname": "vm-1"}),
    );
    twice(&nb, "prepare-nic", nic.clone());
    assert_eq!(nb.nbctl(&["lsp-get-port-security", NIC1]), "02:00:ac:1f:00:0a");
    assert_eq!(nb.nbctl(&["lsp-get-addresses", NIC1]), "02:00:ac:1f:00:0a");
    assert_eq!(nb.nbctl(&["lsp-get-dhcpv4-options", NIC1]), "");
    let before = nb.snapshot();
    for c in ["config-dhcp-subnet", "add-dhcp-entry"] {
        let msg = fails(cs(&nb, c, with(nic.clone(), json!({"cidr": "192.0.2.0/24", "gateway": "192.0.2.1"}))), 2);
        assert!(msg.contains("L2"), "{c}: {msg}");
    }
    assert_eq!(snapshot_diff(&before, &nb.snapshot()), "");
    assert_eq!(nb.count_rows("DHCP_Options"), 0);
}

#[test]
fn shutdown_keeps_the_vlan_and_destroy_leaves_nothing() {
    let nb = Nb::start();
    for (net, vm) in [
        (shared(50, "3000"), shared_nic(50, "3000", NIC1, "02:00:ac:1f:00:0a", "172.31.0.10", "vm-1", true)),
        (l2(60, "untagged"), with(l2(60, "untagged"), json!({"nic_uuid": NIC2, "mac": "02:00:ac:1f:00:0b"}))),
    ] {
        let id = net["network_id"].as_str().unwrap().to_string();
        ok(cs(&nb, "implement-network", net.clone()));
        // L2: no Dhcp or Dns service, CloudStack only plugs and unplugs.
        let (starts, stops): (&[&str], &[&str]) =
            if vm["guest_type"] == "l2" { (&["prepare-nic"], &["release-nic"]) } else { (NIC_START, NIC_STOP) };
        run_all(&nb, starts, &vm);
        let before = nb.snapshot();
        // Restart with cleanup / GC: running VMs keep their VLAN.
        twice(&nb, "shutdown-network", net.clone());
        assert_eq!(snapshot_diff(&before, &nb.snapshot()), "");
        assert_eq!(nb.nbctl(&["lsp-get-type", &format!("ln-cs-net-{id}")]), "localnet");
        run_all(&nb, stops, &vm);
        twice(&nb, "destroy-network", net);
        assert_eq!(nb.nbctl(&["--if-exists", "get", "Logical_Switch", &format!("cs-net-{id}"), "name"]), "");
    }
    assert_eq!(owned_rows(&nb), 0, "{}", serde_json::to_string_pretty(&nb.snapshot()).unwrap());
}

/// shutdown-network and destroy-network without `guest_type` (legacy
/// payloads): shutdown keeps the switch and its localnet port, destroy
/// removes every row, as with the typed payload.
#[test]
fn shutdown_and_destroy_without_guest_type_keep_then_remove_the_vlan() {
    let nb = Nb::start();
    for (net, vm) in [
        (shared(50, "3000"), shared_nic(50, "3000", NIC1, "02:00:ac:1f:00:0a", "172.31.0.10", "vm-1", true)),
        (l2(60, "3005"), with(l2(60, "3005"), json!({"nic_uuid": NIC2, "mac": "02:00:ac:1f:00:0b"}))),
    ] {
        let id = net["network_id"].as_str().unwrap().to_string();
        ok(cs(&nb, "implement-network", net.clone()));
        let starts: &[&str] = if vm["guest_type"] == "l2" { &["prepare-nic"] } else { NIC_START };
        run_all(&nb, starts, &vm);
        let before = nb.snapshot();
        twice(&nb, "shutdown-network", untyped(net.clone()));
        assert_eq!(snapshot_diff(&before, &nb.snapshot()), "");
        assert_eq!(nb.nbctl(&["lsp-get-type", &format!("ln-cs-net-{id}")]), "localnet");
        twice(&nb, "destroy-network", untyped(net));
        assert_eq!(nb.nbctl(&["--if-exists", "get", "Logical_Switch", &format!("cs-net-{id}"), "name"]), "");
    }
    assert_eq!(owned_rows(&nb), 0, "{}", serde_json::to_string_pretty(&nb.snapshot()).unwrap());
    assert_eq!(nb.nbctl(&["lr-list"]), "");
}

/// restore-network and prepare-nic without `guest_type` on converged shared
/// and L2 networks write nothing: an L2 NIC keeps its MAC-only port security
/// (the guest's address is its own), a shared network its DHCP rows.
#[test]
fn restore_and_prepare_nic_without_guest_type_on_shared_and_l2_networks_write_nothing() {
    let nb = Nb::start();
    ok(cs(&nb, "implement-network", shared(50, "3000")));
    run_all(&nb, NIC_START, &shared_nic(50, "3000", NIC1, "02:00:ac:1f:00:0a", "172.31.0.10", "vm-1", true));
    ok(cs(&nb, "implement-network", l2(60, "3005")));
    let l2_nic = with(l2(60, "3005"), json!({"nic_uuid": NIC2, "mac": "02:00:ac:1f:00:0b", "ip": "172.31.0.11"}));
    ok(cs(&nb, "prepare-nic", l2_nic));
    assert_eq!(nb.nbctl(&["lsp-get-port-security", NIC2]), "02:00:ac:1f:00:0b");
    let before = nb.snapshot();
    let shared_restore = with(
        untyped(shared(50, "3000")),
        json!({"restore_data": {"dhcp_enabled": true, "dns_enabled": true, "vms": [
            {"nic_uuid": NIC1, "mac": "02:00:ac:1f:00:0a", "ip": "172.31.0.10", "hostname": "vm-1", "default_nic": true}
        ]}, "dns": "172.31.0.53,8.8.8.8", "domain": "shared.example"}),
    );
    twice(&nb, "restore-network", shared_restore);
    let l2_restore = with(
        untyped(l2(60, "3005")),
        json!({"restore_data": {"dhcp_enabled": false, "dns_enabled": false, "vms": [
            {"nic_uuid": NIC2, "mac": "02:00:ac:1f:00:0b", "ip": "172.31.0.11", "default_nic": true}
        ]}}),
    );
    twice(&nb, "restore-network", l2_restore);
    assert_eq!(nb.nbctl(&["lsp-get-port-security", NIC2]), "02:00:ac:1f:00:0b");
    // prepare-nic too (the same port planner).
    let untyped_nic =
        with(untyped(l2(60, "3005")), json!({"nic_uuid": NIC2, "mac": "02:00:ac:1f:00:0b", "ip": "172.31.0.11"}));
    twice(&nb, "prepare-nic", untyped_nic);
    assert_eq!(nb.nbctl(&["lsp-get-port-security", NIC2]), "02:00:ac:1f:00:0b");
    assert_eq!(snapshot_diff(&before, &nb.snapshot()), "");
}

// ------------------------------------------------------------ data plane

const MAC1: &str = "02:00:ac:1f:00:0a";
const VM_IP: &str = "172.31.0.10";
const NIC3: &str = "3f0c0000-0000-4000-8000-000000000003";
const NIC4: &str = "3f0c0000-0000-4000-8000-000000000004";

/// A chassis whose `br-ex` trunk leads (through the emulated upstream
/// switch, access port `vlan`) to the upstream router namespace, which also
/// gets the shared network's gateway address.
fn lab(vlan: Option<u16>) -> (Central, Chassis, Outside) {
    let central = Central::start();
    let hv = Chassis::start(&central, GATEWAY_CHASSIS);
    let outside = hv.add_public("public", vlan);
    let o = outside.exec(&["ip", "addr", "add", &format!("{GW}/24"), "dev", "eth0"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (central, hv, outside)
}

/// The CloudStack sequence for the first VM of a shared network.
fn start_shared_vm(nb: &Nb, id: u32, vlan: &str, nic: &Value) -> String {
    let out = ok(cs(nb, "implement-network", shared(id, vlan)));
    run_all(nb, NIC_START, nic);
    broadcast(&out)
}

fn only_vlan(counts: &std::collections::BTreeMap<u16, u64>, vlan: u16) {
    assert!(counts.get(&vlan).copied().unwrap_or(0) >= 4, "too few frames on VLAN {vlan}: {counts:?}");
    assert!(counts.keys().all(|v| *v == vlan), "frames outside VLAN {vlan} on the physical side: {counts:?}");
}

#[test]
fn a_shared_network_vm_lives_on_vlan_3000_with_the_physical_router_as_gateway() {
    let (central, hv, outside) = lab(Some(3000));
    let nb = central.nb();
    let nic = shared_nic(50, "3000", NIC1, MAC1, VM_IP, "vm-1", true);
    assert_eq!(start_shared_vm(nb, 50, "3000", &nic), "vlan://3000");
    central.sync_hv();
    // northd turned the request into the port's tag.
    assert_eq!(central.nbctl(&["lsp-get-type", "ln-cs-net-50"]), "localnet");
    assert_eq!(central.nbctl(&["lsp-get-tag", "ln-cs-net-50"]), "3000");

    let vm = hv.plug_vm("tap1", NIC1, MAC1);
    let server = outside.serve_tcp(GW, 8080, "upstream");
    let capture = outside.capture_vlans();
    // The lease comes from OVN on this chassis, with the physical gateway.
    let lease = vm.dhcp();
    assert_eq!(lease.ip, VM_IP);
    assert_eq!(lease.router.as_deref(), Some(GW));
    assert_eq!(lease.server_id.as_deref(), Some(EXT_IP));
    assert_eq!(lease.dns, ["172.31.0.53", "8.8.8.8"]);
    assert_eq!(lease.domain.as_deref(), Some("shared.example"));
    assert!(vm.ping(GW, Duration::from_secs(10)), "the VM cannot ping the physical gateway");
    let line = vm.connect_tcp(GW, 8080, Duration::from_secs(5)).expect("TCP to the upstream router");
    assert!(line.contains(&format!("peer={VM_IP}:")), "{line}");
    assert_eq!(server.accepted().len(), 1);
    // The upstream router reaches the VM by its address: its ARP crosses
    // the localnet port and the VM itself answers.
    assert!(outside.ping(VM_IP, Duration::from_secs(10)), "the upstream router cannot reach the VM");
    only_vlan(&capture.finish(), 3000);
    hv.assert_vswitchd_alive();
}

#[test]
fn an_untagged_shared_network_sends_untagged_frames() {
    let (central, hv, outside) = lab(None);
    let nb = central.nb();
    let nic = shared_nic(51, "untagged", NIC1, MAC1, VM_IP, "vm-1", true);
    assert_eq!(start_shared_vm(nb, 51, "vlan://untagged", &nic), "vlan://untagged");
    central.sync_hv();
    assert_eq!(central.nbctl(&["lsp-get-tag", "ln-cs-net-51"]), "");
    let vm = hv.plug_vm("tap1", NIC1, MAC1);
    let capture = outside.capture_vlans();
    assert_eq!(vm.dhcp().router.as_deref(), Some(GW));
    assert!(vm.ping(GW, Duration::from_secs(10)), "the VM cannot ping the physical gateway");
    assert!(outside.ping(VM_IP, Duration::from_secs(10)), "the upstream router cannot reach the VM");
    only_vlan(&capture.finish(), 0);
}

#[test]
fn shared_networks_on_vlans_3000_and_3001_are_apart_at_l2() {
    let (central, hv, outside) = lab(Some(3000));
    let nb = central.nb();
    // Same subnet on purpose: only L2 could join them.
    start_shared_vm(nb, 50, "3000", &shared_nic(50, "3000", NIC1, MAC1, VM_IP, "vm-1", true));
    start_shared_vm(nb, 51, "3001", &shared_nic(51, "3001", NIC2, "02:00:ac:1f:00:0b", "172.31.0.11", "vm-2", true));
    let a = hv.plug_vm("tap1", NIC1, MAC1);
    let b = hv.plug_vm("tap2", NIC2, "02:00:ac:1f:00:0b");
    assert_eq!(a.dhcp().ip, VM_IP);
    assert_eq!(b.dhcp().ip, "172.31.0.11");
    assert!(a.ping(GW, Duration::from_secs(10)), "VLAN 3000 reaches its gateway");
    let capture = outside.capture_vlans();
    // Blocked probes: behind the --wait=hv barrier, then a short timeout.
    assert!(!central.blocked_probe(|t| b.ping(GW, t)), "VLAN 3001 reached the VLAN 3000 router");
    assert!(!central.blocked_probe(|t| a.ping("172.31.0.11", t)), "VLAN 3000 reached a VM on VLAN 3001");
    assert!(!central.blocked_probe(|t| b.ping(VM_IP, t)), "VLAN 3001 reached a VM on VLAN 3000");
    let counts = capture.finish();
    // B's ARPs leave tagged 3001 (and the upstream switch drops them).
    assert!(counts.get(&3001).copied().unwrap_or(0) > 0, "{counts:?}");
    assert!(!counts.contains_key(&0), "untagged frames: {counts:?}");
}

#[test]
fn a_vm_on_an_isolated_and_a_shared_network_uses_its_default_nics_gateway() {
    let (central, hv, outside) = lab(Some(3000));
    let nb = central.nb();
    ok(cs(nb, "implement-network", network(42)));
    ok(cs(nb, "implement-network", shared(50, "3000")));
    // VM 1: default NIC on the shared network; VM 2: default NIC on the
    // isolated one. One namespace per NIC: each lease is that NIC's view.
    let nics = [
        (nic(42, NIC1, "02:00:4c:3e:00:05", "10.1.1.23", "vm-1", false), NIC1, "02:00:4c:3e:00:05"),
        (shared_nic(50, "3000", NIC2, "02:00:ac:1f:00:0b", "172.31.0.11", "vm-1", true), NIC2, "02:00:ac:1f:00:0b"),
        (nic(42, NIC3, "02:00:4c:3e:00:06", "10.1.1.24", "vm-2", true), NIC3, "02:00:4c:3e:00:06"),
        (shared_nic(50, "3000", NIC4, "02:00:ac:1f:00:0c", "172.31.0.12", "vm-2", false), NIC4, "02:00:ac:1f:00:0c"),
    ];
    for (payload, _, _) in &nics {
        run_all(nb, NIC_START, payload);
    }
    let vms: Vec<Vm> =
        nics.iter().enumerate().map(|(i, (_, uuid, mac))| hv.plug_vm(&format!("tap{i}"), uuid, mac)).collect();
    let routers: Vec<Option<String>> = vms.iter().map(|v| v.dhcp().router).collect();
    assert_eq!(routers, [None, Some(GW.to_string()), Some("10.1.1.1".to_string()), None]);
    // VM 1's default route is the physical router, through VLAN 3000.
    assert!(vms[1].ping(GW, Duration::from_secs(10)));
    assert!(outside.ping("172.31.0.11", Duration::from_secs(10)));
    // And its isolated NIC still reaches its neighbours on-link.
    assert!(vms[0].ping("10.1.1.24", Duration::from_secs(10)));
}

/// Dual stack: the upstream router advertises the shared network's /64
/// through the localnet port; the VM's kernel configures the EUI-64 address
/// CloudStack allocated, port security lets it through, and the router
/// answers over IPv6.
#[test]
fn shared_network_vms_take_their_ipv6_address_from_the_upstream_router() {
    let (central, hv, outside) = lab(Some(3000));
    let nb = central.nb();
    let v6 = json!({"network_ip6_gateway": "fd00:3000::1", "network_ip6_cidr": "fd00:3000::/64"});
    // 02:00:ac:1f:00:0a → interface id 0000:acff:fe1f:000a (U/L bit flipped).
    let expected = "fd00:3000::acff:fe1f:a";
    let nic = with(
        with(shared_nic(50, "3000", NIC1, MAC1, VM_IP, "vm-1", true), v6.clone()),
        json!({"ip6_address": expected}),
    );
    ok(cs(nb, "implement-network", with(shared(50, "3000"), v6)));
    run_all(nb, NIC_START, &nic);
    assert!(central.nbctl(&["lsp-get-port-security", NIC1]).contains(expected));
    outside.advertise_ipv6("fd00:3000::1/64");
    let vm = hv.plug_vm("tap1", NIC1, MAC1);
    assert_eq!(vm.dhcp().router.as_deref(), Some(GW));
    let global = || {
        let out = vm.exec(&["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        wait_until(Duration::from_secs(30), || global().contains(&format!("{expected}/64"))),
        "no SLAAC address {expected}/64 on the VM: {}",
        global()
    );
    assert!(vm.ping("fd00:3000::1", Duration::from_secs(15)), "the upstream IPv6 router does not answer");
    assert!(outside.ping(expected, Duration::from_secs(15)), "the upstream router cannot reach the VM over IPv6");
}
