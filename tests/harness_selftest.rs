//! Self-test of the integration-test harness (tests/common): real OVN
//! processes driven with ovn-nbctl only, no product code involved.

#![allow(clippy::print_stderr)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const LS: &str = "cs-net-1";
const LSP: &str = "3f0c0000-0000-4000-8000-000000000001";
const MAC: &str = "02:00:00:00:00:05";

/// LS `cs-net-1`, a UUID-named LSP and a DHCP_Options row linked to it,
/// created with ovn-nbctl; returns the DHCP_Options uuid.
fn create_dhcp_network(c: &Central) -> String {
    c.nbctl(&["ls-add", LS, "--", "lsp-add", LS, LSP, "--", "lsp-set-addresses", LSP, &format!("{MAC} 10.1.1.23")]);
    // ovn-nbctl strips one level of quotes: domain_name must reach the DB
    // as "\"cs.example\"" (ovn-notes §3.3).
    let dhcp = c.nbctl(&[
        "create",
        "DHCP_Options",
        "cidr=10.1.1.0/24",
        r#"options={server_id=10.1.1.1, server_mac="02:00:00:00:00:01", lease_time=3600, router=10.1.1.1, mtu=1442, dns_server="{10.1.1.53}", domain_name="\"cs.example\""}"#,
    ]);
    c.nbctl(&["--wait=sb", "lsp-set-dhcpv4-options", LSP, &dhcp]);
    dhcp
}

fn ms(t: Instant) -> u128 {
    t.elapsed().as_millis()
}

#[test]
fn nb_snapshot_detects_changes_only() {
    let t = Instant::now();
    let nb = Nb::start();
    let t_start = ms(t);
    assert!(nb.remote().starts_with("unix:/tmp/"), "{}", nb.remote());
    assert!(nb.dir().join("nb.db").is_file());
    assert_eq!(nb.count_rows("NB_Global"), 1, "ovn-nbctl init creates NB_Global");

    nb.nbctl(&["ls-add", "sw0", "--", "set", "Logical_Switch", "sw0", "external_ids:b=2", "external_ids:a=1"]);
    assert_eq!(nb.count_rows("Logical_Switch"), 1);
    assert_eq!(nb.count_rows("Logical_Switch_Port"), 0);

    let before = nb.snapshot();
    // every schema table is present, rows are keyed by uuid without _uuid/_version
    let tables = before.as_object().unwrap();
    assert!(tables.contains_key("Logical_Switch") && tables.contains_key("ACL"), "{before}");
    let ls = tables["Logical_Switch"].as_object().unwrap();
    assert_eq!(ls.len(), 1);
    let row = ls.values().next().unwrap();
    assert_eq!(row["name"], "sw0");
    assert_eq!(row["external_ids"], json!(["map", [["a", "1"], ["b", "2"]]]));
    assert!(row.get("_uuid").is_none() && row.get("_version").is_none());

    // No-ops: read-only commands and a write of identical values.
    nb.nbctl(&["show"]);
    nb.nbctl(&["set", "Logical_Switch", "sw0", "external_ids:a=1"]);
    nb.nbctl(&["--if-exists", "ls-del", "no-such-switch"]);
    assert_eq!(nb.snapshot(), before, "no-op changed the NB");

    nb.nbctl(&["set", "Logical_Switch", "sw0", "external_ids:a=3"]);
    let after = nb.snapshot();
    assert_ne!(after, before, "a change was not detected");
    nb.nbctl(&["set", "Logical_Switch", "sw0", "external_ids:a=1"]);
    assert_eq!(nb.snapshot(), before, "restoring the value restores the snapshot");
    nb.nbctl(&["lsp-add", "sw0", "p1"]);
    assert_ne!(nb.snapshot(), before, "a new row was not detected");
    assert_eq!(nb.count_rows("Logical_Switch_Port"), 1);

    // canonicalisation is order-independent
    assert_eq!(
        canonicalize(&json!(["map", [["b", "2"], ["a", ["set", [3, 1]]]]])),
        canonicalize(&json!(["map", [["a", ["set", [1, 3]]], ["b", "2"]]]))
    );
    let failed = nb.nbctl_result(&["ls-add", "sw0"]);
    assert!(!failed.status.success(), "duplicate ls-add must fail");
    drop(nb);
    eprintln!("TIME nb_start_ms={t_start} nb_test_total_ms={}", ms(t));
}

#[test]
fn dhcp_lease_through_real_data_plane() {
    let t = Instant::now();
    let central = Central::start();
    let t_central = ms(t);
    create_dhcp_network(&central);
    let t0 = Instant::now();
    let hv = Chassis::start(&central, "hv1");
    let t_chassis = ms(t0);
    let t0 = Instant::now();
    let vm = hv.plug_vm("vnet0", LSP, MAC);
    let t_plug = ms(t0);
    assert!(central.wait_lsp_up(LSP, Duration::from_secs(10)), "LSP never up in NB");
    assert_eq!(central.nbctl(&["get", "Logical_Switch_Port", LSP, "up"]), "true");
    assert_eq!(central.sbctl(&["--bare", "--columns=name", "find", "Chassis", "name=hv1"]), "hv1");

    let t0 = Instant::now();
    let lease = vm.dhcp();
    let t_dhcp = ms(t0);
    eprintln!("lease: {lease:?}");
    assert_eq!(lease.ip, "10.1.1.23");
    assert_eq!(lease.mask, "24");
    assert_eq!(lease.router.as_deref(), Some("10.1.1.1"));
    assert_eq!(lease.mtu, Some(1442));
    assert_eq!(lease.dns, vec!["10.1.1.53".to_string()]);
    assert_eq!(lease.domain.as_deref(), Some("cs.example"));
    assert_eq!(lease.lease, Some(3600));
    assert_eq!(lease.server_id.as_deref(), Some("10.1.1.1"));
    // the script applied the lease like a real client
    let addr = vm.exec(&["ip", "-4", "addr", "show", "dev", "eth0"]);
    let addr = String::from_utf8_lossy(&addr.stdout);
    assert!(addr.contains("10.1.1.23/24") && addr.contains("mtu 1442"), "{addr}");
    let route = vm.exec(&["ip", "route", "show", "default"]);
    assert!(String::from_utf8_lossy(&route.stdout).contains("via 10.1.1.1"));

    let t0 = Instant::now();
    drop(vm);
    drop(hv);
    let t_stop_hv = ms(t0);
    drop(central);
    eprintln!(
        "TIME central_ms={t_central} chassis_ms={t_chassis} plug_up_ms={t_plug} dhcp_ms={t_dhcp} \
         stop_chassis_ms={t_stop_hv} total_ms={}",
        ms(t)
    );
}

#[test]
fn trace_dhcp_discover_offers_configured_options() {
    let t = Instant::now();
    let central = Central::start();
    create_dhcp_network(&central);
    let flow = format!(
        r#"inport == "{LSP}" && eth.src == {MAC} && eth.dst == ff:ff:ff:ff:ff:ff && ip4.src == 0.0.0.0 && ip4.dst == 255.255.255.255 && udp.src == 68 && udp.dst == 67"#
    );
    let out = central.trace(LS, &flow);
    let put = out
        .lines()
        .find(|l| l.contains("put_dhcp_opts("))
        .unwrap_or_else(|| panic!("no put_dhcp_opts in trace:\n{out}"));
    for want in [
        "offerip = 10.1.1.23",
        "router = 10.1.1.1",
        "mtu = 1442",
        "dns_server = {10.1.1.53}",
        "domain_name = \"cs.example\"",
        "lease_time = 3600",
        "server_id = 10.1.1.1",
    ] {
        assert!(put.contains(want), "missing `{want}` in {put}");
    }
    assert!(out.contains(&format!("output to \"{LSP}\"")), "reply not sent back:\n{out}");
    let raw = central.trace_output(LS, &flow);
    assert!(!String::from_utf8_lossy(&raw.stderr).contains("parsing actions failed"));
    eprintln!("TIME trace_test_total_ms={}", ms(t));
}

/// Pids (from every pidfile) of a lab dir.
/// The barrier in front of every "blocked" probe is real: `--wait=hv`
/// returns once the chassis reported the NB's `nb_cfg` (flows installed),
/// and does not return while its ovn-controller is gone.
#[test]
fn wait_hv_barrier_waits_for_the_chassis() {
    let central = Central::start();
    let hv = Chassis::start(&central, "hv1");
    create_dhcp_network(&central);
    let t = Instant::now();
    central.sync_hv();
    eprintln!("--wait=hv sync: {} ms", ms(t));
    let nb_cfg = central.nbctl(&["get", "NB_Global", ".", "nb_cfg"]);
    assert_ne!(nb_cfg, "0");
    assert_eq!(central.nbctl(&["get", "NB_Global", ".", "hv_cfg"]), nb_cfg, "northd aggregated the chassis' nb_cfg");
    assert_eq!(central.sbctl(&["--bare", "--columns=nb_cfg", "list", "Chassis_Private"]), nb_cfg);

    hv.kill_controller();
    let o = central.nbctl_result(&["--timeout=3", "--wait=hv", "sync"]);
    assert!(!o.status.success(), "--wait=hv returned although no ovn-controller could have installed anything");
}

fn pids_in(dir: &std::path::Path) -> Vec<u32> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
        .collect()
}

fn netns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

#[test]
fn teardown_after_panic_leaves_nothing_behind() {
    let t = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let central = Central::start();
        create_dhcp_network(&central);
        let hv = Chassis::start(&central, "hv-panic");
        let vm = hv.plug_vm("vnet9", LSP, MAC);
        let mut pids = pids_in(central.dir());
        pids.extend(pids_in(hv.dir()));
        tx.send((
            pids,
            vec![hv.netns().to_string(), vm.netns().to_string()],
            vec![central.dir().to_path_buf(), hv.dir().to_path_buf()],
        ))
        .unwrap();
        panic!("deliberate panic with a full stack running");
    });
    assert!(h.join().is_err(), "the thread should have panicked");
    let (pids, netns, dirs) = rx.recv().unwrap();
    assert_eq!(pids.len(), 6, "nb, sb, northd, ovsdb, vswitchd, controller: {pids:?}");
    assert!(netns.iter().all(|n| n.len() <= 15));
    for p in &pids {
        assert!(!pid_running(*p), "pid {p} still running after drop");
    }
    for n in &netns {
        assert!(!netns_exists(n), "netns {n} still exists after drop");
    }
    for d in dirs.iter().filter(|_| std::env::var_os("CSOVN_KEEP_TMP").is_none()) {
        assert!(!d.exists(), "{} still exists after drop", d.display());
    }
    eprintln!("TIME teardown_test_total_ms={}", ms(t));
}

/// OVS 3.1.0's userspace conntrack aborts now and then (an assertion in
/// `conn_update_state`); the chassis runs ovs-vswitchd under `--monitor`,
/// so a crash costs seconds, not the rest of the test. A crash by SIGABRT:
/// a new vswitchd comes up, ovn-controller reinstalls the flows, the VM gets
/// a DHCP lease through OVN again; stopping the chassis stops both the
/// daemon and its monitor.
#[test]
fn vswitchd_crash_is_restarted_and_the_data_plane_comes_back() {
    let central = Central::start();
    create_dhcp_network(&central);
    let hv = Chassis::start(&central, "hv1");
    let vm = hv.plug_vm("vnet0", LSP, MAC);
    assert!(central.wait_lsp_up(LSP, Duration::from_secs(10)), "LSP never up in NB");
    assert_eq!(vm.dhcp().ip, "10.1.1.23");
    let first = hv.vswitchd_pid().expect("vswitchd running");
    hv.abort_vswitchd();
    let back = wait_until(Duration::from_secs(30), || hv.vswitchd_pid().is_some_and(|p| p != first));
    assert!(back, "ovs-vswitchd was not restarted after SIGABRT");
    let mut leased = false;
    for _ in 0..10 {
        if vm.try_dhcp().is_some_and(|l| l.ip == "10.1.1.23") {
            leased = true;
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(leased, "no DHCP lease through the restarted vswitchd");
    let vswitchd = hv.vswitchd_pid().unwrap();
    let monitor = monitor_of(vswitchd).expect("vswitchd runs under its --monitor");
    drop(vm);
    drop(hv);
    assert!(!pid_running(vswitchd), "vswitchd outlived the chassis");
    assert!(
        !pid_running(monitor),
        "vswitchd's monitor outlived the chassis: {}",
        std::fs::read_to_string(format!("/proc/{monitor}/stat")).unwrap_or_default()
    );
}
