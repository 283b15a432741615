//! Self-test of the public-network harness (`Chassis::add_public`,
//! `Outside`, TCP endpoints): real OVN/OVS, configured with `ovn-nbctl`
//! only (the NB rows of ovnlab north-south.md §2-§4), no product code.

#![allow(clippy::print_stderr)]

mod common;

use std::time::{Duration, Instant};

use common::*;

/// VM LSPs are named by the NIC uuid, as the adapter does.
const VM5: &str = "6b1f4a52-5c3e-4a0b-9d0e-000000000005";
const VM6: &str = "6b1f4a52-5c3e-4a0b-9d0e-000000000006";
const MAC5: &str = "02:00:0a:05:00:05";
const MAC6: &str = "02:00:0a:05:00:06";
const SNAT_IP: &str = "203.0.113.10";
const STATIC_NAT_IP: &str = "203.0.113.11";
const PF_VIP: &str = "203.0.113.12";
const INTERNET: &str = INTERNET_HOSTS[0];

/// First connection through a fresh router: it may lose the first SYN
/// while it resolves its next hop (one retransmit = ~1 s).
const FIRST: Duration = Duration::from_secs(4);
/// Later connections (and negative probes).
const PROBE: Duration = Duration::from_secs(2);

fn ms(t: Instant) -> u128 {
    t.elapsed().as_millis()
}

/// The whole north-south config in one ovn-nbctl transaction: guest LS
/// with two UUID-named VM LSPs (10.5.0.5 gets static NAT and the port
/// forward, 10.5.0.6 only SNAT), LR with the guest LRP + router-type LSP,
/// the shared public LS `cs-public` with a localnet port
/// (network_name=public, optional tag_request), the gateway LRP
/// 203.0.113.10/24 on `chassis`, default route via 203.0.113.1, SNAT
/// 203.0.113.10 <- 10.5.0.0/24, dnat_and_snat 203.0.113.11 <-> 10.5.0.5,
/// and LB 203.0.113.12:2222 -> 10.5.0.5:22 on the LR and the guest LS.
fn nb_config(c: &Central, chassis: &str, tag: Option<u16>) {
    let vm5_addr = format!("{MAC5} 10.5.0.5");
    let vm6_addr = format!("{MAC6} 10.5.0.6");
    let mut args: Vec<String> = [
        "--wait=hv",
        "--",
        "ls-add",
        "cs-net-50",
        "--",
        "lsp-add",
        "cs-net-50",
        VM5,
        "--",
        "lsp-set-addresses",
        VM5,
        &vm5_addr,
        "--",
        "lsp-add",
        "cs-net-50",
        VM6,
        "--",
        "lsp-set-addresses",
        VM6,
        &vm6_addr,
        "--",
        "lr-add",
        "cs-router-50",
        "--",
        "lrp-add",
        "cs-router-50",
        "lrp-cs-net-50",
        "0a:00:0a:05:00:01",
        "10.5.0.1/24",
        "--",
        "lsp-add",
        "cs-net-50",
        "lsp-cs-net-50-rtr",
        "--",
        "lsp-set-type",
        "lsp-cs-net-50-rtr",
        "router",
        "--",
        "lsp-set-addresses",
        "lsp-cs-net-50-rtr",
        "router",
        "--",
        "lsp-set-options",
        "lsp-cs-net-50-rtr",
        "router-port=lrp-cs-net-50",
        "--",
        "ls-add",
        "cs-public",
        "--",
        "lsp-add",
        "cs-public",
        "ln-cs-public",
        "--",
        "lsp-set-type",
        "ln-cs-public",
        "localnet",
        "--",
        "lsp-set-addresses",
        "ln-cs-public",
        "unknown",
        "--",
        "lsp-set-options",
        "ln-cs-public",
        "network_name=public",
        "--",
        "lrp-add",
        "cs-router-50",
        "lrp-cs-router-50-pub",
        "0a:00:cb:00:71:0a",
        "203.0.113.10/24",
        "--",
        "lsp-add",
        "cs-public",
        "lsp-cs-router-50-pub",
        "--",
        "lsp-set-type",
        "lsp-cs-router-50-pub",
        "router",
        "--",
        "lsp-set-addresses",
        "lsp-cs-router-50-pub",
        "router",
        "--",
        "lsp-set-options",
        "lsp-cs-router-50-pub",
        "router-port=lrp-cs-router-50-pub",
        "nat-addresses=router",
        "--",
        "lrp-set-gateway-chassis",
        "lrp-cs-router-50-pub",
        chassis,
        "10",
        "--",
        "lr-route-add",
        "cs-router-50",
        "0.0.0.0/0",
        OUTSIDE_GW,
        "--",
        "lr-nat-add",
        "cs-router-50",
        "snat",
        SNAT_IP,
        "10.5.0.0/24",
        "--",
        "lr-nat-add",
        "cs-router-50",
        "dnat_and_snat",
        STATIC_NAT_IP,
        "10.5.0.5",
        "--",
        "lb-add",
        "cs-pf-50",
        "203.0.113.12:2222",
        "10.5.0.5:22",
        "tcp",
        "--",
        "lr-lb-add",
        "cs-router-50",
        "cs-pf-50",
        "--",
        "ls-lb-add",
        "cs-net-50",
        "cs-pf-50",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(t) = tag {
        args.extend(
            ["--", "set", "Logical_Switch_Port", "ln-cs-public", &format!("tag_request={t}")].map(String::from),
        );
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    c.nbctl(&args);
}

fn set_tag(c: &Central, tag: u16) {
    c.nbctl(&["--wait=hv", "set", "Logical_Switch_Port", "ln-cs-public", &format!("tag_request={tag}")]);
}

/// `line` is "<name> peer=<peer_ip>:<port> local=<local>" (any client port).
#[track_caller]
fn assert_answer(line: Option<String>, name: &str, peer_ip: &str, local: &str, what: &str) {
    let line = line.unwrap_or_else(|| panic!("{what}: no answer"));
    let prefix = format!("{name} peer={peer_ip}:");
    let suffix = format!(" local={local}");
    assert!(
        line.starts_with(&prefix) && line.ends_with(&suffix),
        "{what}: expected `{prefix}* local={local}`, got `{line}`"
    );
}

#[test]
fn untagged_snat_static_nat_and_port_forward() {
    let t = Instant::now();
    let central = Central::start();
    let hv = Chassis::start(&central, "hv1");
    let t_labs = ms(t);
    let t0 = Instant::now();
    let out = hv.add_public("public", None);
    let t_public = ms(t0);
    assert_eq!(out.gateway(), "203.0.113.1");
    assert_eq!(hv.vsctl(&["get", "Open_vSwitch", ".", "external_ids:ovn-bridge-mappings"]), "\"public:br-ex\"");
    let t0 = Instant::now();
    nb_config(&central, hv.name(), None);
    let t_nb = ms(t0);
    let t0 = Instant::now();
    let vm5 = hv.plug_vm("vnet5", VM5, MAC5);
    let vm6 = hv.plug_vm("vnet6", VM6, MAC6);
    vm5.configure("10.5.0.5/24", Some("10.5.0.1"));
    vm6.configure("10.5.0.6/24", Some("10.5.0.1"));
    let t_vms = ms(t0);
    // ovn-controller made the patch pair br-int <-> br-ex for the localnet port
    assert!(
        wait_until(Duration::from_secs(5), || hv
            .vsctl(&["list-ports", PUBLIC_BRIDGE])
            .contains("patch-ln-cs-public-to-br-int")),
        "no patch port on br-ex: {}",
        hv.vsctl(&["show"])
    );

    let t0 = Instant::now();
    let _internet = out.serve_tcp(INTERNET, 8080, "outside");
    let ssh5 = vm5.serve_tcp("0.0.0.0", 22, "vm5");
    let t_servers = ms(t0);

    let cap = out.capture_vlans();
    // SNAT: VM6 (no static NAT) is seen as the gateway LRP address.
    let t0 = Instant::now();
    assert_answer(
        vm6.connect_tcp(INTERNET, 8080, FIRST),
        "outside",
        SNAT_IP,
        "198.51.100.10:8080",
        "VM6 -> internet (SNAT)",
    );
    let t_first = ms(t0);
    // Static NAT: VM5 leaves as .11 ...
    let t0 = Instant::now();
    assert_answer(
        vm5.connect_tcp(INTERNET, 8080, PROBE),
        "outside",
        STATIC_NAT_IP,
        "198.51.100.10:8080",
        "VM5 -> internet (static NAT)",
    );
    let t_second = ms(t0);
    // ... and is reachable on .11 with the client address kept.
    assert_answer(
        out.connect_tcp(STATIC_NAT_IP, 22, Some(INTERNET), PROBE),
        "vm5",
        INTERNET,
        "10.5.0.5:22",
        "internet -> .11:22 (static NAT)",
    );
    // Port forward: .12:2222 -> VM5:22.
    assert_answer(
        out.connect_tcp(PF_VIP, 2222, Some(INTERNET), PROBE),
        "vm5",
        INTERNET,
        "10.5.0.5:22",
        "internet -> .12:2222 (port forward)",
    );
    // The on-link gateway address works as a client too.
    assert_answer(
        out.connect_tcp(PF_VIP, 2222, None, PROBE),
        "vm5",
        OUTSIDE_GW,
        "10.5.0.5:22",
        "203.0.113.1 -> .12:2222",
    );
    // VM6 -> the PF VIP (hairpin, needs the LB on the guest LS too)
    assert_answer(vm6.connect_tcp(PF_VIP, 2222, PROBE), "vm5", "10.5.0.6", "10.5.0.5:22", "VM6 -> .12:2222 (hairpin)");
    let frames = cap.finish();
    eprintln!("frames on {}: {frames:?}", out.uplink_if());
    assert!(
        frames.get(&0).copied().unwrap_or(0) > 0 && frames.keys().all(|&v| v == 0),
        "untagged mode: expected only untagged frames on the uplink, got {frames:?}"
    );
    assert_eq!(ssh5.accepted().len(), 4, "{:?}", ssh5.accepted());
    hv.assert_vswitchd_alive();
    eprintln!(
        "TIME central+chassis_ms={t_labs} add_public_ms={t_public} nb_ms={t_nb} vms_ms={t_vms} \
         servers_ms={t_servers} first_connect_ms={t_first} second_connect_ms={t_second} total_ms={}",
        ms(t)
    );
}

#[test]
fn vlan_tag_request_must_match_the_access_vlan() {
    let t = Instant::now();
    let central = Central::start();
    let hv = Chassis::start(&central, "hv1");
    let t_labs = ms(t);
    let t0 = Instant::now();
    let out = hv.add_public("public", Some(101));
    let t_public = ms(t0);
    assert_eq!(out.vlan(), Some(101));
    assert_eq!(hv.vsctl(&["get", "Port", "ac-public", "tag"]), "101", "access port of the upstream switch");
    nb_config(&central, hv.name(), Some(101));
    assert_eq!(central.nbctl(&["get", "Logical_Switch_Port", "ln-cs-public", "tag"]), "101");
    let vm6 = hv.plug_vm("vnet6", VM6, MAC6);
    vm6.configure("10.5.0.6/24", Some("10.5.0.1"));
    let _internet = out.serve_tcp(INTERNET, 8080, "outside");

    let cap = out.capture_vlans();
    let t0 = Instant::now();
    assert_answer(
        vm6.connect_tcp(INTERNET, 8080, FIRST),
        "outside",
        SNAT_IP,
        "198.51.100.10:8080",
        "VM6 -> internet over VLAN 101",
    );
    let t_first = ms(t0);
    let frames = cap.finish();
    eprintln!("frames on trunk {:?}: {frames:?}", out.trunk_if());
    assert!(
        frames.get(&101).copied().unwrap_or(0) > 0 && frames.keys().all(|&v| v == 101),
        "expected only VLAN 101 frames on the trunk, got {frames:?}"
    );

    // Wrong VLAN: the upstream switch drops it.
    let t0 = Instant::now();
    set_tag(&central, 102);
    let t_retag = ms(t0);
    let cap = out.capture_vlans();
    let t0 = Instant::now();
    let r = vm6.try_connect_tcp(INTERNET, 8080, PROBE);
    let t_neg = ms(t0);
    let frames = cap.finish();
    assert_eq!(r, Err("TIMEOUT".to_string()), "tag_request=102 against access VLAN 101 must not pass");
    eprintln!("frames on trunk with tag_request=102: {frames:?}");
    assert!(frames.get(&102).copied().unwrap_or(0) > 0, "expected the SYNs tagged 102 on the trunk, got {frames:?}");

    // And back.
    set_tag(&central, 101);
    let t0 = Instant::now();
    assert_answer(
        vm6.connect_tcp(INTERNET, 8080, FIRST),
        "outside",
        SNAT_IP,
        "198.51.100.10:8080",
        "VM6 -> internet over VLAN 101 again",
    );
    let t_back = ms(t0);
    hv.assert_vswitchd_alive();
    eprintln!(
        "TIME central+chassis_ms={t_labs} add_public_vlan_ms={t_public} first_connect_ms={t_first} \
         retag_ms={t_retag} negative_probe_ms={t_neg} connect_after_retag_ms={t_back} total_ms={}",
        ms(t)
    );
}

/// Switching modes on one chassis, a leaked `Outside`, and cleanup: no
/// namespace or server survives the chassis.
#[test]
fn outside_rebuild_and_cleanup() {
    let t = Instant::now();
    let central = Central::start();
    let hv = Chassis::start(&central, "hv1");
    let out = hv.add_public("public", Some(101));
    let srv = out.serve_tcp("0.0.0.0", 8080, "outside");
    let (ns, pid) = (out.netns().to_string(), srv.pid());
    assert_eq!(
        out.connect_tcp(OUTSIDE_GW, 8080, None, PROBE).map(|l| l.starts_with("outside peer=203.0.113.1:")),
        Some(true)
    );
    // idle trunk: nothing untagged (IPv6 is off on the bridge-port veths)
    let idle = out.frames_per_vlan(0.3);
    assert!(idle.keys().all(|&v| v == 101), "{idle:?}");
    drop(out); // stops the server even though `srv` is still alive
    assert!(!srv.is_running() && !pid_running(pid), "server survived its namespace");
    assert!(!netns_exists(&ns), "{ns} survived its Outside");
    assert!(!hv.vsctl(&["list-br"]).contains(UPSTREAM_BRIDGE));
    assert!(!hv.vsctl(&["list-ports", PUBLIC_BRIDGE]).contains("ex-public"));
    drop(srv);

    // rebuild untagged on the same chassis, then leak the handle
    let out = hv.add_public("public", None);
    let srv = out.serve_tcp(OUTSIDE_GW, 8080, "again");
    assert!(hv.vsctl(&["list-ports", PUBLIC_BRIDGE]).contains("ex-public"));
    let (ns, pid) = (out.netns().to_string(), srv.pid());
    std::mem::forget(out);
    std::mem::forget(srv);
    drop(hv);
    assert!(!pid_running(pid), "server survived the chassis");
    assert!(!netns_exists(&ns), "{ns} survived the chassis");
    eprintln!("TIME rebuild_total_ms={}", ms(t));
}

fn netns_exists(ns: &str) -> bool {
    std::path::Path::new("/run/netns").join(ns).exists()
}
