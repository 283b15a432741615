//! Every in-scope command against a real OVN Northbound ovsdb-server, in
//! both argv styles, cross-checked with `ovn-nbctl`; idempotency; the call
//! sequences CloudStack sends; bad input; ownership; concurrency; deadline.

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::scenario::*;
use common::*;
use serde_json::{json, Value};

fn first_vm_sequence(nb: &Nb, id: u32) {
    let out = twice(nb, "implement-network", network(id));
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({"network.broadcast_domain_type": "Lswitch", "network.broadcast_uri": format!("ovn://cs-net-{id}")})
    );
    for c in ["prepare-nic", "config-dhcp-subnet", "add-dhcp-entry", "config-dns-subnet", "add-dns-entry"] {
        twice(nb, c, vm1(id));
    }
}

#[test]
fn first_vm_in_isolated_network_matches_nbctl() {
    let nb = Nb::start();
    first_vm_sequence(&nb, 42);

    assert!(nb.nbctl(&["ls-list"]).contains("(cs-net-42)"));
    assert!(nb.nbctl(&["lsp-list", "cs-net-42"]).contains(NIC1));
    assert_eq!(nb.nbctl(&["lsp-get-addresses", NIC1]), "02:00:4c:3e:00:05 10.1.1.23");
    assert_eq!(nb.nbctl(&["lsp-get-port-security", NIC1]), "02:00:4c:3e:00:05 10.1.1.23");
    assert_eq!(nb.nbctl(&["get", "Logical_Switch_Port", NIC1, "options:hostname"]), r#""\"vm-1\"""#);

    let dhcp = nb.nbctl(&["lsp-get-dhcpv4-options", NIC1]);
    let dhcp_uuid = dhcp.split_whitespace().next().expect("port linked to DHCP options").to_string();
    assert!(dhcp.contains("10.1.1.0/24"), "{dhcp}");
    let opts = nb.nbctl(&["dhcp-options-get-options", &dhcp_uuid]);
    for expected in [
        "server_id=10.1.1.1",
        "router=10.1.1.1",
        "lease_time=86400",
        "mtu=1442",
        "dns_server={10.1.1.53, 8.8.8.8}",
        r#"domain_name="cs.example""#,
    ] {
        assert!(opts.lines().any(|l| l == expected), "missing {expected} in\n{opts}");
    }
    assert!(opts.lines().any(|l| l.starts_with("server_mac=0a:")), "{opts}");

    let records = nb.nbctl(&["get", "Logical_Switch", "cs-net-42", "dns_records"]);
    let dns_uuid = records.trim_matches(|c| c == '[' || c == ']').to_string();
    let recs = nb.nbctl(&["get", "DNS", &dns_uuid, "records"]);
    assert!(recs.contains(r#"vm-1="10.1.1.23""#) && recs.contains(r#"vm-1.cs.example="10.1.1.23""#), "{recs}");
    assert!(recs.contains(r#""23.1.1.10.in-addr.arpa"=vm-1.cs.example"#), "{recs}");

    // Every row we made carries our tag and the CloudStack ids.
    let ids = nb.nbctl(&["get", "Logical_Switch_Port", NIC1, "external_ids"]);
    for k in [
        "\"cloudstack:owner\"=cloudstack",
        "\"cloudstack:network_id\"=\"42\"",
        "\"cloudstack:zone_id\"=\"1\"",
        "\"cloudstack:nic_id\"=\"77\"",
    ] {
        assert!(ids.contains(k), "{k} missing from {ids}");
    }
}

#[test]
fn non_default_nic_gets_no_default_route() {
    let nb = Nb::start();
    first_vm_sequence(&nb, 5);
    let second = nic(5, NIC2, "02:00:4c:3e:00:06", "10.1.1.24", "vm-2", false);
    for c in ["prepare-nic", "config-dhcp-subnet", "add-dhcp-entry"] {
        twice(&nb, c, second.clone());
    }
    let dhcp = nb.nbctl(&["lsp-get-dhcpv4-options", NIC2]);
    let opts = nb.nbctl(&["dhcp-options-get-options", dhcp.split_whitespace().next().unwrap()]);
    assert!(!opts.contains("router="), "{opts}");
    assert!(opts.contains("server_id=10.1.1.1"), "{opts}");
    let first = nb.nbctl(&["lsp-get-dhcpv4-options", NIC1]);
    assert_ne!(first, dhcp);
}

#[test]
fn vm_stop_start_and_restart_with_cleanup() {
    let nb = Nb::start();
    first_vm_sequence(&nb, 7);
    let converged = nb.snapshot();

    // VM stop: release-nic removes the port; start brings back the same state.
    twice(&nb, "release-nic", vm1(7));
    assert!(!nb.nbctl(&["lsp-list", "cs-net-7"]).contains(NIC1));
    for c in ["prepare-nic", "config-dhcp-subnet", "add-dhcp-entry", "config-dns-subnet", "add-dns-entry"] {
        ok(cs(&nb, c, vm1(7)));
    }
    assert_eq!(nb.nbctl(&["lsp-get-addresses", NIC1]), "02:00:4c:3e:00:05 10.1.1.23");
    assert!(nb.nbctl(&["lsp-get-dhcpv4-options", NIC1]).contains("10.1.1.0/24"));

    // restartNetwork cleanup=true: shutdown removes routing but keeps L2, so
    // running VMs keep working; implement brings back exactly what was there.
    let before = nb.snapshot();
    twice(&nb, "shutdown-network", network(7));
    let after = nb.snapshot();
    for l2 in ["DHCP_Options", "DNS"] {
        assert_eq!(before[l2], after[l2], "shutdown must keep {l2}");
    }
    assert!(nb.nbctl(&["lsp-list", "cs-net-7"]).contains(NIC1), "shutdown must keep the VM port");
    assert_eq!(nb.count_rows("Logical_Router"), 0, "shutdown removes the router");
    twice(&nb, "implement-network", network(7));
    assert_eq!(before, nb.snapshot());
    let _ = converged;
}

#[test]
fn delete_network_leaves_no_row_of_ours() {
    let nb = Nb::start();
    first_vm_sequence(&nb, 9);
    ok(cs(&nb, "add-dhcp-entry", nic(9, NIC2, "02:00:4c:3e:00:06", "10.1.1.24", "vm-2", false)));
    // A foreign row in the same NB must survive everything we do.
    nb.nbctl(&[
        "ls-add",
        "foreign-sw",
        "--",
        "set",
        "Logical_Switch",
        "foreign-sw",
        "external_ids:\"cloudstack:owner\"=someone-else",
    ]);
    nb.nbctl(&["dhcp-options-create", "10.9.9.0/24", "\"cloudstack:network_id\"=9"]);
    assert!(owned_rows(&nb) >= 6);

    for c in ["release-nic", "remove-dhcp-entry", "remove-dns-entry"] {
        ok(cs(&nb, c, vm1(9)));
    }
    twice(&nb, "shutdown-network", network(9));
    twice(&nb, "destroy-network", network(9));
    assert_eq!(owned_rows(&nb), 0, "{}", nb.nbctl(&["show"]));
    assert!(nb.nbctl(&["ls-list"]).contains("foreign-sw"));
    assert_eq!(nb.count_rows("DHCP_Options"), 1, "the foreign DHCP row stays");
    assert_eq!(nb.count_rows("DNS"), 0);
}

#[test]
fn remove_commands_undo_their_add() {
    let nb = Nb::start();
    first_vm_sequence(&nb, 11);
    twice(&nb, "remove-dns-entry", vm1(11));
    let dns = nb.nbctl(&["get", "Logical_Switch", "cs-net-11", "dns_records"]);
    let recs = nb.nbctl(&["get", "DNS", dns.trim_matches(|c| c == '[' || c == ']'), "records"]);
    assert_eq!(recs, "{}");
    twice(&nb, "remove-dns-subnet", network(11));
    assert_eq!(nb.count_rows("DNS"), 0);
    assert_eq!(nb.nbctl(&["get", "Logical_Switch", "cs-net-11", "dns_records"]), "[]");

    twice(&nb, "remove-dhcp-entry", vm1(11));
    assert_eq!(nb.nbctl(&["lsp-get-dhcpv4-options", NIC1]), "");
    assert!(nb.nbctl(&["lsp-list", "cs-net-11"]).contains(NIC1), "upstream remove-dhcp-entry keeps the port");
    twice(&nb, "remove-dhcp-subnet", network(11));
    assert_eq!(nb.count_rows("DHCP_Options"), 0);
}

fn legacy(nb: &Nb, command: &str, args: &[&str]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend([
        "--physical-network-extension-details",
        r#"{"physicalnetworkname":"pn1"}"#,
        "--network-extension-details",
        "{}",
    ]);
    run_cs_flags(&nb.remote(), command, &all)
}

/// [`legacy`] run twice: both succeed and the second changes nothing.
#[track_caller]
fn legacy_twice(nb: &Nb, command: &str, args: &[&str]) {
    ok(legacy(nb, command, args));
    let snap = nb.snapshot();
    ok(legacy(nb, command, args));
    assert_eq!(snap, nb.snapshot(), "{command}: second run changed the NB");
}

#[test]
fn legacy_flag_style_lswitch_variant() {
    let nb = Nb::start();
    let out = ok(legacy(
        &nb,
        "ensure-network-device",
        &["--network-id", "3", "--vlan", "100", "--zone-id", "1", "--current-details", "{}"],
    ));
    assert!(serde_json::from_str::<Value>(&out).unwrap().is_object());
    // Old alias, and an argument no CloudStack version sends yet.
    let implement = [
        "--network-id",
        "3",
        "--vlan",
        "100",
        "--gateway",
        "10.3.0.1",
        "--cidr",
        "10.3.0.0/24",
        "--extension-ip",
        "10.3.0.1",
        "--from-the-future",
        "x",
    ];
    ok(legacy(&nb, "implement", &implement));
    let snap = nb.snapshot();
    ok(legacy(&nb, "implement-network", &implement));
    assert_eq!(snap, nb.snapshot());

    // add-dhcp-entry is the first per-NIC command in this style: it creates the port.
    let entry = [
        "--network-id",
        "3",
        "--mac",
        "02:00:00:00:03:09",
        "--ip",
        "10.3.0.9",
        "--hostname",
        "vm-9",
        "--gateway",
        "10.3.0.1",
        "--cidr",
        "10.3.0.0/24",
        "--dns",
        "10.3.0.1",
        "--default-nic",
        "true",
        "--domain",
        "x.example",
        "--extension-ip",
        "10.3.0.1",
        "--nic-uuid",
        NIC1,
    ];
    legacy_twice(&nb, "add-dhcp-entry", &entry);
    assert_eq!(nb.nbctl(&["lsp-get-addresses", NIC1]), "02:00:00:00:03:09 10.3.0.9");
    let dhcp = nb.nbctl(&["lsp-get-dhcpv4-options", NIC1]);
    assert!(dhcp.contains("10.3.0.0/24"), "{dhcp}");

    ok(legacy(
        &nb,
        "add-dns-entry",
        &[
            "--network-id",
            "3",
            "--ip",
            "10.3.0.9",
            "--hostname",
            "vm-9",
            "--extension-ip",
            "10.3.0.1",
            "--nic-uuid",
            NIC1,
        ],
    ));
    assert_eq!(nb.count_rows("DNS"), 1);

    // Legacy add-dhcp-entry carries no --nic-id, so set-dhcp-options (which
    // names the NIC only by id) cannot find this port: a clear error.
    let snap = nb.snapshot();
    let msg = fails(
        legacy(&nb, "set-dhcp-options", &["--network-id", "3", "--nic-id", "5", "--options", r#"{"15":"y.example"}"#]),
        2,
    );
    assert!(msg.contains("nic_id"), "{msg}");
    assert_eq!(snap, nb.snapshot());

    // Without --nic-uuid the port cannot be named: a clear error, NB unchanged.
    let snap = nb.snapshot();
    let msg = fails(legacy(&nb, "add-dhcp-entry", &entry[..entry.len() - 2]), 2);
    assert!(msg.contains("nic-uuid"), "{msg}");
    assert_eq!(snap, nb.snapshot());

    ok(legacy(
        &nb,
        "remove-dhcp-entry",
        &[
            "--network-id",
            "3",
            "--mac",
            "02:00:00:00:03:09",
            "--ip",
            "10.3.0.9",
            "--extension-ip",
            "10.3.0.1",
            "--nic-uuid",
            NIC1,
        ],
    ));
    assert!(!nb.nbctl(&["lsp-list", "cs-net-3"]).contains(NIC1), "legacy remove-dhcp-entry removes the port");
    ok(legacy(&nb, "destroy", &["--network-id", "3", "--vlan", "100"]));
    assert_eq!(owned_rows(&nb), 0);
}

#[test]
fn set_dhcp_options_gives_the_nic_its_own_row() {
    let nb = Nb::start();
    first_vm_sequence(&nb, 13);
    let args = [
        "--network-id",
        "13",
        "--nic-id",
        "77",
        "--options",
        r#"{"15":"override.example","42":"10.1.1.5"}"#,
        "--extension-ip",
        "10.1.1.1",
    ];
    legacy_twice(&nb, "set-dhcp-options", &args);
    let dhcp = nb.nbctl(&["lsp-get-dhcpv4-options", NIC1]);
    let opts = nb.nbctl(&["dhcp-options-get-options", dhcp.split_whitespace().next().unwrap()]);
    assert!(opts.contains(r#"domain_name="override.example""#) && opts.contains("ntp_server={10.1.1.5}"), "{opts}");
    assert!(opts.contains("router=10.1.1.1") && opts.contains("server_id=10.1.1.1"), "{opts}");
    assert_eq!(nb.count_rows("DHCP_Options"), 3);
    // A later VM start keeps the NIC on its own row; release deletes it (weak reference).
    ok(cs(&nb, "prepare-nic", vm1(13)));
    assert_eq!(nb.nbctl(&["lsp-get-dhcpv4-options", NIC1]), dhcp);
    ok(cs(&nb, "release-nic", vm1(13)));
    assert_eq!(nb.count_rows("DHCP_Options"), 2);
    // Unsupported option codes are refused, not ignored.
    fails(legacy(&nb, "set-dhcp-options", &["--network-id", "13", "--nic-id", "77", "--options", r#"{"43":"x"}"#]), 6);
}

#[test]
fn bad_input_is_refused_and_nb_unchanged() {
    let nb = Nb::start();
    first_vm_sequence(&nb, 21);
    let snap = nb.snapshot();
    let with = |k: &str, v: &str| {
        let mut p = vm1(21);
        p[k] = json!(v);
        p
    };
    let without = |k: &str| {
        let mut p = vm1(21);
        p.as_object_mut().unwrap().remove(k);
        p
    };
    let v6 = |gateway: &str, cidr: &str| {
        let mut p = vm1(21);
        p["network_ip6_gateway"] = json!(gateway);
        p["network_ip6_cidr"] = json!(cidr);
        p
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        ("prepare-nic", with("mac", "02:00:4c:3e:00"), "mac"),
        ("prepare-nic", with("mac", "01:00:5e:00:00:01"), "mac"),
        ("prepare-nic", with("ip", "10.1.1.300"), "ip"),
        ("prepare-nic", with("ip", "192.168.9.9"), "ip"),
        ("prepare-nic", with("nic_uuid", "not-a-uuid"), "nic_uuid"),
        ("prepare-nic", without("nic_uuid"), "nic_uuid"),
        ("prepare-nic", without("mac"), "mac"),
        ("prepare-nic", with("hostname", "bad\"name"), "hostname"),
        ("implement-network", with("cidr", "10.1.1.0/33"), "cidr"),
        ("implement-network", with("gateway", "10.9.9.1"), "gateway"),
        ("implement-network", with("network_id", "cs-net-21"), "network_id"),
        ("implement-network", without("network_id"), "network_id"),
        ("config-dhcp-subnet", with("dns", "10.1.1.53,nope"), "dns"),
        ("add-dhcp-entry", with("domain", "a..b"), "domain"),
        ("add-dns-entry", without("hostname"), "hostname"),
        ("destroy-network", with("zone_id", "zone-1"), "zone_id"),
        ("implement-network", with("network_ip6_gateway", "fd00:21::1"), "network_ip6_cidr"),
        ("prepare-nic", with("ip6_address", "fd00:21::5::1"), "ip6_address"),
        (
            "prepare-nic",
            {
                let mut p = v6("fd00:21::1", "fd00:21::/64");
                p["ip6_address"] = json!("fd00:99::5");
                p
            },
            "ip6_address",
        ),
        ("implement-network", v6("fd00:99::1", "fd00:21::/64"), "network_ip6_gateway"),
        ("implement-network", v6("fd00:21::1", "fd00:21::/129"), "network_ip6_cidr"),
    ];
    for (command, payload, field) in cases {
        let msg = fails(run_cs(&nb.remote(), command, &envelope(payload)), 2);
        assert!(msg.contains(field), "{command}: {msg} should name {field}");
        assert_eq!(snap, nb.snapshot(), "{command} with bad {field} changed the NB");
    }
    // Malformed and missing payload files, unknown and unsupported commands.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.payload");
    std::fs::write(&bad, "{\"payload\": {").unwrap();
    for (args, code) in [
        (vec!["prepare-nic", bad.to_str().unwrap(), "60"], 2),
        (vec!["prepare-nic", "/nonexistent/x.payload", "60"], 2),
        (vec!["prepare-nic", bad.to_str().unwrap(), "sixty"], 2),
        (vec![], 2),
    ] {
        let o = product(&nb.remote(), &dir.path().join("l")).args(&args).output().unwrap();
        fails(o, code);
    }
    let msg = fails(run_cs(&nb.remote(), "frobnicate-network", &envelope(network(21))), 2);
    assert!(msg.contains("unknown command"), "{msg}");
    // UserData commands (tests/userdata.rs) validate their input first.
    for userdata in ["save-vm-data", "save-password", "save-userdata", "save-sshkey", "save-hypervisor-hostname"] {
        let msg = fails(run_cs(&nb.remote(), userdata, &envelope(network(21))), 2);
        assert!(msg.starts_with("missing required field"), "{msg}");
    }
    let msg = fails(run_cs(&nb.remote(), "custom-action", &envelope(network(21))), 2);
    assert_eq!(msg, "missing required field action");
    // SLAAC cannot produce CloudStack's EUI-64 addresses outside a /64.
    let msg = fails(run_cs(&nb.remote(), "implement-network", &envelope(v6("fd00:21::1", "fd00:21::/56"))), 6);
    assert!(msg.contains("/64"), "{msg}");
    assert_eq!(snap, nb.snapshot());
}

#[test]
fn rows_that_are_not_ours_are_never_touched() {
    let nb = Nb::start();
    // Someone else's port already has the NIC's name.
    nb.nbctl(&[
        "ls-add",
        "other",
        "--",
        "lsp-add",
        "other",
        NIC1,
        "--",
        "lsp-set-addresses",
        NIC1,
        "02:00:00:00:99:99 10.9.9.9",
    ]);
    ok(cs(&nb, "implement-network", network(31)));
    let snap = nb.snapshot();
    let msg = fails(cs(&nb, "prepare-nic", vm1(31)), 5);
    assert!(msg.contains(NIC1) && msg.contains("not owned"), "{msg}");
    // Releasing is about our port, which does not exist: nothing to do, and
    // the foreign port stays untouched.
    ok(cs(&nb, "release-nic", vm1(31)));
    assert_eq!(snap, nb.snapshot());

    // A foreign switch with our name: implement-network refuses instead of duplicating it.
    nb.nbctl(&["ls-add", "cs-net-32"]);
    let snap = nb.snapshot();
    let msg = fails(cs(&nb, "implement-network", network(32)), 5);
    assert!(msg.contains("cs-net-32"), "{msg}");
    assert_eq!(snap, nb.snapshot());
}

#[test]
fn concurrent_commands_converge_without_duplicates() {
    let nb = Nb::start();
    let remote = nb.remote();
    let handles: Vec<_> = (0..32)
        .map(|_| {
            let r = remote.clone();
            std::thread::spawn(move || run_cs(&r, "implement-network", &envelope(network(40))))
        })
        .collect();
    for h in handles {
        ok(h.join().unwrap());
    }
    assert_eq!(nb.nbctl(&["--bare", "--columns=name", "find", "Logical_Switch", "name=cs-net-40"]).lines().count(), 1);

    let handles: Vec<_> = (0..32)
        .map(|i| {
            let r = remote.clone();
            let payload = nic(
                40,
                &format!("3f0c0000-0000-4000-8000-000000000{i:03}"),
                &format!("02:00:00:00:40:{i:02x}"),
                &format!("10.1.1.{}", 100 + i),
                &format!("vm-{i}"),
                true,
            );
            std::thread::spawn(move || {
                let a = run_cs(&r, "prepare-nic", &envelope(payload.clone()));
                let b = run_cs(&r, "add-dhcp-entry", &envelope(payload.clone()));
                let c = run_cs(&r, "add-dns-entry", &envelope(payload));
                (a, b, c)
            })
        })
        .collect();
    for h in handles {
        let (a, b, c) = h.join().unwrap();
        ok(a);
        ok(b);
        ok(c);
    }
    let ports = nb.nbctl(&["lsp-list", "cs-net-40"]);
    assert_eq!(ports.lines().filter(|l| l.contains("3f0c0000-")).count(), 32, "{ports}");
    // 32 VM ports plus the router's peer: implement-network made us the gateway.
    assert_eq!(nb.count_rows("Logical_Switch_Port"), 33);
    assert_eq!(nb.count_rows("Logical_Router"), 1);
    assert_eq!(nb.count_rows("DHCP_Options"), 2);
    assert_eq!(nb.count_rows("DNS"), 1);
    let dns = nb.nbctl(&["get", "Logical_Switch", "cs-net-40", "dns_records"]);
    let recs = nb.nbctl(&["get", "DNS", dns.trim_matches(|c| c == '[' || c == ']'), "records"]);
    assert_eq!(recs.matches("in-addr.arpa").count(), 32, "{recs}");
}

#[test]
fn settings_precedence_and_logging() {
    let nb = Nb::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("cs.log");
    let payload = dir.path().join("p.payload");
    // The registration detail wins over a broken OVN_NB_DB; secrets never reach the log.
    let doc = json!({"physical-network-extension-details": {"ovn.nb.connection": nb.remote(), "password": "hunter2", "sshkey": "-----BEGIN KEY-----"},
                     "network-extension-details": {}, "payload": network(50)});
    std::fs::write(&payload, doc.to_string()).unwrap();
    let o = product("unix:/nonexistent/nb.sock", &log)
        .args(["implement-network", payload.to_str().unwrap(), "30"])
        .env("CLOUDSTACK_OVN_LOG_LEVEL", "debug")
        .output()
        .unwrap();
    ok(o);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("hunter2") && !text.contains("BEGIN KEY"), "{text}");
    let line = text.lines().find(|l| l.contains("outcome=ok")).expect("a summary line");
    for k in ["command=implement-network", "network_id=50", "rows_changed=", "latency_ms="] {
        assert!(line.contains(k), "{k} missing from {line}");
    }

    // Config file is the last resort; a missing NB connection is a configuration error.
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, format!("[ovn.nb]\nconnection = \"{}\"\n[ovn]\nmtu = 1400\n", nb.remote())).unwrap();
    let doc = json!({"payload": vm1(50)});
    std::fs::write(&payload, doc.to_string()).unwrap();
    let run = |cfg: &std::path::Path| {
        product("", &log)
            .args(["config-dhcp-subnet", payload.to_str().unwrap(), "30"])
            .env_remove("OVN_NB_DB")
            .env("CLOUDSTACK_OVN_CONFIG", cfg)
            .output()
            .unwrap()
    };
    ok(run(&cfg));
    let dhcp = nb.nbctl(&["--bare", "--columns=options", "find", "DHCP_Options", "cidr=10.1.1.0/24"]);
    assert!(dhcp.contains("mtu=1400"), "{dhcp}");
    let msg = fails(run(std::path::Path::new("/nonexistent")), 3);
    assert!(msg.contains("ovn.nb.connection") && msg.contains("OVN_NB_DB"), "{msg}");
}

#[test]
fn deadline_is_enforced_against_a_silent_nb() {
    let dir = tempfile::tempdir().unwrap();
    let silent = SilentPeer::start();
    ends_at_a_two_second_deadline(product(silent.remote(), &dir.path().join("l")), dir.path(), 60);
}

/// Runs `implement-network` with a 2 s timeout; it must fail with a deadline
/// error (exit 4) close to 2 s, neither early nor hanging.
#[track_caller]
fn ends_at_a_two_second_deadline(mut product: std::process::Command, dir: &std::path::Path, network_id: u32) {
    let payload = dir.join("p.payload");
    std::fs::write(&payload, json!({"payload": network(network_id)}).to_string()).unwrap();
    let started = Instant::now();
    let o = product.args(["implement-network", payload.to_str().unwrap(), "2"]).output().unwrap();
    let took = started.elapsed();
    let msg = fails(o, 4);
    assert!(msg.contains("deadline"), "{msg}");
    assert!(took >= Duration::from_millis(1900) && took < Duration::from_secs(5), "took {took:?}");
}

/// A resolver that never answers must not hang a command either: the NB is
/// named by a host name, the namespace's only DNS server swallows queries
/// (glibc would wait 2 × 5 s), and the 2 s deadline still ends the run.
#[test]
fn deadline_covers_host_name_resolution() {
    let ns = Netns::create('d');
    ns.set_resolv_conf("nameserver 127.0.0.1\noptions timeout:5 attempts:2\n");
    let mut dns = ns.command("python3");
    dns.args([
        "-c",
        "import socket,sys,time\n\
         s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('127.0.0.1',53))\n\
         print('ready',flush=True); time.sleep(120)",
    ])
    .stdout(std::process::Stdio::piped());
    let mut dns = KillOnDrop(dns.spawn().expect("start the silent DNS server"));
    let mut ready = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(dns.0.stdout.as_mut().unwrap()), &mut ready).unwrap();
    assert_eq!(ready.trim(), "ready");

    let dir = tempfile::tempdir().unwrap();
    let mut product = ns.command(bin());
    product
        .env("OVN_NB_DB", "tcp:nb.cloudstack-ovn-test.invalid:6641")
        .env("CLOUDSTACK_OVN_LOG", dir.path().join("l"))
        .env("CLOUDSTACK_OVN_CONFIG", "/nonexistent");
    ends_at_a_two_second_deadline(product, dir.path(), 61);
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The shipped examples are real: each payload file runs as CloudStack would
/// run it (the registration detail pointed at the test NB), in lifecycle order.
#[test]
fn shipped_examples_work() {
    let nb = Nb::start();
    let dir = tempfile::tempdir().unwrap();
    let order = [
        "ensure-network-device",
        "ensure-network-device-vpc",
        "implement-network",
        "assign-ip",
        "prepare-nic",
        "config-dhcp-subnet",
        "add-dhcp-entry",
        "config-dns-subnet",
        "add-dns-entry",
        "assign-ip-static",
        "add-static-nat",
        "add-port-forward",
        "apply-fw-rules",
        "apply-lb-rules",
        "restore-network",
        "delete-port-forward",
        "delete-static-nat",
        "release-ip",
        "implement-vpc",
        "implement-network-tier",
        "apply-network-acl",
        "update-vpc-source-nat-ip",
        "shutdown-vpc",
        "remove-dns-entry",
        "remove-dhcp-entry",
        "release-nic",
        "remove-dns-subnet",
        "remove-dhcp-subnet",
        "shutdown-network",
        "destroy-network",
    ];
    let listed: std::collections::BTreeSet<String> = std::fs::read_dir("examples")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".json").map(str::to_string))
        .collect();
    assert_eq!(listed, order.iter().map(|s| s.to_string()).collect(), "every example is exercised");
    for name in order {
        let text = std::fs::read_to_string(format!("examples/{name}.json")).unwrap();
        let mut doc: Value = serde_json::from_str(&text).unwrap();
        doc["physical-network-extension-details"]["ovn.nb.connection"] = json!(nb.remote());
        if name == "shutdown-vpc" {
            // The ACL example is about VPC tier 71: CloudStack destroys a
            // VPC's tiers before the VPC (shutdown-vpc refuses while a tier
            // is still attached).
            ok(run_cs(&nb.remote(), "destroy-network", &registered(json!({"network_id": "71", "vpc_id": "5"}))));
        }
        let command = name.trim_end_matches("-static").trim_end_matches("-tier");
        let command = if command == "ensure-network-device-vpc" { "ensure-network-device" } else { command };
        let out = ok(run_cs(&nb.remote(), command, &doc));
        if command == "ensure-network-device" || command == "implement-network" {
            assert!(serde_json::from_str::<Value>(&out).unwrap().is_object(), "{out}");
        }
        if name == "add-dns-entry" {
            assert!(nb.nbctl(&["lsp-list", "cs-net-42"]).contains("3f0c0000-0000-4000-8000-000000000001"));
        }
    }
    assert_eq!(owned_rows(&nb), 0);

    let o = std::process::Command::new("bash")
        .args(["examples/legacy-flags.sh", bin()])
        .env("OVN_NB_DB", nb.remote())
        .env("CLOUDSTACK_OVN_LOG", dir.path().join("l"))
        .env("CLOUDSTACK_OVN_CONFIG", "/nonexistent")
        .output()
        .unwrap();
    ok(o);
    assert!(nb.nbctl(&["lsp-list", "cs-net-43"]).contains("3f0c0000-0000-4000-8000-000000000009"));
}
