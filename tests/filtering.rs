//! Firewall, VPC network ACLs, load balancing and restore-network: the
//! CloudStack smoke suite's scenarios with real packets, driven only by
//! cloudstack-ovn commands with CloudStack's payloads; plus NB cross-checks,
//! idempotency and bad input.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::scenario::*;
use common::*;
use serde_json::{json, Value};

const FIRST: Duration = Duration::from_secs(5);
const INTERNET: &str = "198.51.100.10";
const MAC1: &str = "02:00:4c:3e:00:05";
const MAC2: &str = "02:00:4c:3e:00:06";

fn ingress(id: u64, public_ip: &str, port: u16, cidr: &str) -> Value {
    json!({"id": id, "type": "ingress", "protocol": "tcp", "portStart": port, "portEnd": port,
           "publicIp": public_ip, "sourceCidrs": [cidr], "destCidrs": []})
}

fn egress(id: u64, port: u16) -> Value {
    json!({"id": id, "type": "egress", "protocol": "tcp", "portStart": port, "portEnd": port, "sourceCidrs": ["10.1.1.0/24"], "destCidrs": []})
}

fn fw(id: u32, default_egress_allow: bool, rules: Vec<Value>) -> Value {
    with(
        network(id),
        json!({"fw_rules": {"default_egress_allow": default_egress_allow, "cidr": "10.1.1.0/24", "rules": rules}}),
    )
}

fn lb(id: u32, rule: u64, public_ip: &str, port: u16, backends: &[(&str, bool)], revoke: bool) -> Value {
    let backends: Vec<Value> =
        backends.iter().map(|(ip, revoked)| json!({"ip": ip, "port": 8080, "revoked": revoked})).collect();
    with(
        network(id),
        json!({"lb_rules": [{"id": rule, "name": "web", "publicIp": public_ip, "publicPort": port, "privatePort": 8080,
                             "protocol": "tcp", "algorithm": "roundrobin", "revoke": revoke, "backends": backends}]}),
    )
}

fn static_nat(id: u32, ip: &str, private: &str) -> Value {
    with(public(network(id), ip, false, "untagged"), json!({"private_ip": private}))
}

fn forward(id: u32, ip: &str, public_port: &str, private: &str, private_port: &str) -> Value {
    with(
        public(network(id), ip, false, "untagged"),
        json!({"private_ip": private, "public_port": public_port, "private_port": private_port, "protocol": "tcp"}),
    )
}

/// An isolated network with source NAT and two running VMs, as CloudStack builds it.
struct Lab {
    central: Central,
    hv: Chassis,
    outside: Outside,
    vm1: Vm,
    vm2: Vm,
}

impl Lab {
    fn start(id: u32) -> Lab {
        let central = Central::start();
        let hv = Chassis::start(&central, GATEWAY_CHASSIS);
        let outside = hv.add_public("public", None);
        let nb = central.nb();
        ok(cs(nb, "implement-network", network(id)));
        ok(cs(nb, "assign-ip", public(network(id), "203.0.113.10", true, "untagged")));
        run_all(nb, NIC_START, &vm1(id));
        run_all(nb, NIC_START, &nic(id, NIC2, MAC2, "10.1.1.24", "vm-2", true));
        let vm1 = hv.plug_vm("tap1", NIC1, MAC1);
        let vm2 = hv.plug_vm("tap2", NIC2, MAC2);
        vm1.dhcp();
        vm2.dhcp();
        Lab { central, hv, outside, vm1, vm2 }
    }

    fn nb(&self) -> &Nb {
        self.central.nb()
    }

    /// Connect from the outside "internet" host; the answering server's name, if any.
    fn reach(&self, ip: &str, port: u16, timeout: Duration) -> Option<String> {
        self.outside
            .connect_tcp(ip, port, Some(INTERNET), timeout)
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
    }

    /// [`Lab::reach`] for a path that must be closed: behind the
    /// `--wait=hv` barrier, with the short timeout.
    fn reach_blocked(&self, ip: &str, port: u16) -> Option<String> {
        self.central.blocked_probe(|t| self.reach(ip, port, t))
    }
}

/// Smoke scenario 1: static NAT and its firewall rule.
#[test]
fn static_nat_follows_the_firewall() {
    let lab = Lab::start(42);
    let nb = lab.nb();
    let _ssh = lab.vm1.serve_tcp("0.0.0.0", 22, "vm1");
    // The router resolves the upstream gateway now (a cold path may lose a
    // first SYN), so the short probe for "closed" below is a fair one.
    let _out = lab.outside.serve_tcp(INTERNET, 8080, "outside");
    assert!(lab.vm1.connect_tcp(INTERNET, 8080, FIRST).is_some(), "egress works before any rule");
    ok(cs(nb, "assign-ip", public(network(42), "203.0.113.11", false, "untagged")));
    ok(cs(nb, "add-static-nat", static_nat(42, "203.0.113.11", "10.1.1.23")));
    ok(cs(nb, "apply-fw-rules", fw(42, true, vec![])));
    assert_eq!(lab.reach_blocked("203.0.113.11", 22), None, "no rule: closed");
    let rule = ingress(1, "203.0.113.11", 22, "0.0.0.0/0");
    twice(nb, "apply-fw-rules", fw(42, true, vec![rule.clone()]));
    assert_eq!(lab.reach("203.0.113.11", 22, FIRST).as_deref(), Some("vm1"), "TCP/22 rule: open");
    ok(cs(nb, "apply-fw-rules", fw(42, true, vec![])));
    assert_eq!(lab.reach_blocked("203.0.113.11", 22), None, "rule removed: closed");
    ok(cs(nb, "apply-fw-rules", fw(42, true, vec![rule])));
    assert_eq!(lab.reach("203.0.113.11", 22, FIRST).as_deref(), Some("vm1"), "rule re-added: open");
    // Replies of connections the VM opens keep working under the firewall.
    assert!(lab.vm1.connect_tcp(INTERNET, 8080, FIRST).is_some());
    ok(cs(nb, "delete-static-nat", static_nat(42, "203.0.113.11", "10.1.1.23")));
    assert_eq!(lab.reach_blocked("203.0.113.11", 22), None, "static NAT disabled: closed");
    lab.hv.assert_vswitchd_alive();
}

/// Smoke scenario 2 and the public-port rule: forward 2222 → 22, the
/// firewall rule names the public port.
#[test]
fn port_forward_with_its_firewall_rule() {
    let lab = Lab::start(43);
    let nb = lab.nb();
    let _ssh = lab.vm1.serve_tcp("0.0.0.0", 22, "vm1");
    ok(cs(nb, "assign-ip", public(network(43), "203.0.113.12", false, "untagged")));
    // CloudStack applies the forward, then the firewall rule it opened for it.
    ok(cs(nb, "add-port-forward", forward(43, "203.0.113.12", "2222", "10.1.1.23", "22")));
    ok(cs(nb, "apply-fw-rules", fw(43, true, vec![ingress(5, "203.0.113.12", 2222, "0.0.0.0/0")])));
    assert_eq!(lab.reach("203.0.113.12", 2222, FIRST).as_deref(), Some("vm1"));
    // A rule on the private port opens nothing on the public side.
    ok(cs(nb, "apply-fw-rules", fw(43, true, vec![ingress(6, "203.0.113.12", 22, "0.0.0.0/0")])));
    assert_eq!(lab.reach_blocked("203.0.113.12", 2222), None, "a rule on port 22 must not open 2222");
    // The opposite order (firewall first, then the forward) works as well.
    ok(cs(nb, "delete-port-forward", forward(43, "203.0.113.12", "2222", "10.1.1.23", "22")));
    ok(cs(nb, "apply-fw-rules", fw(43, true, vec![ingress(5, "203.0.113.12", 2222, "0.0.0.0/0")])));
    ok(cs(nb, "add-port-forward", forward(43, "203.0.113.12", "2222", "10.1.1.23", "22")));
    assert_eq!(lab.reach("203.0.113.12", 2222, FIRST).as_deref(), Some("vm1"));
    ok(cs(nb, "delete-port-forward", forward(43, "203.0.113.12", "2222", "10.1.1.23", "22")));
    assert_eq!(lab.reach_blocked("203.0.113.12", 2222), None, "forward deleted: closed");
    lab.hv.assert_vswitchd_alive();
}

/// Smoke scenario 3: round robin over two VMs; revoke a backend; delete.
#[test]
fn load_balancer_round_robin_revoke_and_delete() {
    let lab = Lab::start(44);
    let nb = lab.nb();
    let _w1 = lab.vm1.serve_tcp("0.0.0.0", 8080, "vm1");
    let _w2 = lab.vm2.serve_tcp("0.0.0.0", 8080, "vm2");
    ok(cs(nb, "assign-ip", public(network(44), "203.0.113.13", false, "untagged")));
    twice(nb, "apply-lb-rules", lb(44, 9, "203.0.113.13", 80, &[("10.1.1.23", false), ("10.1.1.24", false)], false));
    ok(cs(nb, "apply-fw-rules", fw(44, true, vec![ingress(7, "203.0.113.13", 80, "0.0.0.0/0")])));
    let lbs = nb.nbctl(&["lb-list"]);
    assert!(lbs.contains("203.0.113.13:80") && lbs.contains("10.1.1.23:8080,10.1.1.24:8080"), "{lbs}");

    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    assert!(lab.reach("203.0.113.13", 80, FIRST).is_some(), "first connection");
    for _ in 0..20 {
        if let Some(who) = lab.reach("203.0.113.13", 80, FIRST) {
            *seen.entry(who).or_default() += 1;
        }
    }
    assert_eq!(seen.values().sum::<u32>(), 20, "{seen:?}");
    assert!(seen.contains_key("vm1") && seen.contains_key("vm2"), "both backends must answer: {seen:?}");

    ok(cs(nb, "apply-lb-rules", lb(44, 9, "203.0.113.13", 80, &[("10.1.1.23", false), ("10.1.1.24", true)], false)));
    // Flows installed first: a revoked backend answering is then a failure, not a race.
    lab.central.sync_hv();
    for _ in 0..6 {
        assert_eq!(lab.reach("203.0.113.13", 80, FIRST).as_deref(), Some("vm1"), "revoked backend gets nothing");
    }
    ok(cs(nb, "apply-lb-rules", lb(44, 9, "203.0.113.13", 80, &[], true)));
    assert_eq!(lab.reach_blocked("203.0.113.13", 80), None, "deleted rule: closed");
    assert_eq!(nb.count_rows("Load_Balancer"), 0);
    lab.hv.assert_vswitchd_alive();
}

/// Smoke scenario 4: restart with cleanup keeps forward + firewall working
/// and the VMs on their leases.
#[test]
fn restart_with_cleanup_restores_everything() {
    let lab = Lab::start(45);
    let nb = lab.nb();
    let _ssh = lab.vm1.serve_tcp("0.0.0.0", 22, "vm1");
    let pf = forward(45, "203.0.113.12", "2222", "10.1.1.23", "22");
    let rules = fw(45, true, vec![ingress(5, "203.0.113.12", 2222, "0.0.0.0/0")]);
    ok(cs(nb, "assign-ip", public(network(45), "203.0.113.12", false, "untagged")));
    ok(cs(nb, "add-port-forward", pf.clone()));
    ok(cs(nb, "apply-fw-rules", rules.clone()));
    assert_eq!(lab.reach("203.0.113.12", 2222, FIRST).as_deref(), Some("vm1"));

    let restore = with(
        network(45),
        json!({"dns": "10.1.1.53,8.8.8.8", "domain": "cs.example", "restore_data": {"dhcp_enabled": true, "dns_enabled": true, "userdata_enabled": false, "vms": [
            {"dns": "10.1.1.53,8.8.8.8", "domain": "cs.example", "ip": "10.1.1.23", "ip6_address": "", "mac": MAC1, "nic_uuid": NIC1, "hostname": "vm-1", "device_id": "0", "default_nic": true, "vm_data": []},
            {"dns": "10.1.1.53,8.8.8.8", "domain": "cs.example", "ip": "10.1.1.24", "ip6_address": "", "mac": MAC2, "nic_uuid": NIC2, "hostname": "vm-2", "device_id": "0", "default_nic": true, "vm_data": []}
        ]}}),
    );
    // restore-network on an already-correct network changes nothing.
    let before = nb.snapshot();
    ok(cs(nb, "restore-network", restore.clone()));
    let after = nb.snapshot();
    assert!(before == after, "{}", snapshot_diff(&before, &after));

    ok(cs(nb, "shutdown-network", network(45)));
    ok(cs(nb, "implement-network", network(45)));
    ok(cs(nb, "assign-ip", public(network(45), "203.0.113.10", true, "untagged")));
    ok(cs(nb, "assign-ip", public(network(45), "203.0.113.12", false, "untagged")));
    ok(cs(nb, "add-port-forward", pf));
    ok(cs(nb, "apply-fw-rules", rules));
    ok(cs(nb, "restore-network", restore));
    assert_eq!(lab.reach("203.0.113.12", 2222, FIRST).as_deref(), Some("vm1"), "forward + firewall after restart");
    assert_eq!(lab.vm1.dhcp().ip, "10.1.1.23", "the VM keeps its lease");
    assert_eq!(lab.vm2.dhcp().router.as_deref(), Some("10.1.1.1"));
    lab.hv.assert_vswitchd_alive();
}

/// Smoke scenario 6: egress default policy.
#[test]
fn egress_policy() {
    let lab = Lab::start(46);
    let nb = lab.nb();
    let _a = lab.outside.serve_tcp(INTERNET, 8080, "outside-8080");
    let _b = lab.outside.serve_tcp(INTERNET, 8081, "outside-8081");
    assert!(lab.vm1.connect_tcp(INTERNET, 8080, FIRST).is_some(), "open before any rule");

    ok(cs(nb, "apply-fw-rules", fw(46, false, vec![])));
    assert_eq!(lab.central.blocked_probe(|t| lab.vm1.connect_tcp(INTERNET, 8080, t)), None, "default deny");
    twice(nb, "apply-fw-rules", fw(46, false, vec![egress(3, 8080)]));
    assert!(lab.vm1.connect_tcp(INTERNET, 8080, FIRST).is_some(), "egress allow rule");
    assert_eq!(lab.central.blocked_probe(|t| lab.vm1.connect_tcp(INTERNET, 8081, t)), None, "only the allowed port");
    assert_eq!(lab.vm2.dhcp().ip, "10.1.1.24", "DHCP still answered under default deny");

    ok(cs(nb, "apply-fw-rules", fw(46, true, vec![egress(4, 8080)])));
    assert_eq!(lab.central.blocked_probe(|t| lab.vm1.connect_tcp(INTERNET, 8080, t)), None, "egress deny rule");
    assert!(lab.vm1.connect_tcp(INTERNET, 8081, FIRST).is_some(), "everything else allowed");
    // East-west traffic is not the firewall's business.
    let _w = lab.vm2.serve_tcp("0.0.0.0", 8080, "vm2");
    assert!(lab.vm1.connect_tcp("10.1.1.24", 8080, FIRST).is_some());
    lab.hv.assert_vswitchd_alive();
}

fn acl(number: u32, action: &str, traffic: &str, protocol: &str, port: Option<u16>) -> Value {
    let mut r = json!({"number": number, "action": action, "trafficType": traffic, "protocol": protocol, "sourceCidrs": ["0.0.0.0/0"]});
    if let Some(p) = port {
        r["portStart"] = json!(p);
        r["portEnd"] = json!(p);
    }
    if protocol == "icmp" {
        r["icmpType"] = json!(-1);
        r["icmpCode"] = json!(-1);
    }
    r
}

/// Smoke scenario 5: VPC network ACLs decide a forward to port 22.
#[test]
fn vpc_network_acls() {
    let central = Central::start();
    let hv = Chassis::start(&central, GATEWAY_CHASSIS);
    let outside = hv.add_public("public", None);
    let nb = central.nb();
    ok(cs(nb, "implement-vpc", public(vpc(5), "203.0.113.20", true, "untagged")));
    let tier_nic = |id: u32, octet: u8, uuid: &str, mac: &str, ip: &str| {
        with(
            tier(5, id, octet),
            json!({"nic_id": "1", "nic_uuid": uuid, "mac": mac, "ip": ip, "netmask": "255.255.255.0", "default_nic": "true", "hostname": format!("vm{id}")}),
        )
    };
    let t1 = tier_nic(71, 1, NIC1, "02:00:0a:07:01:0a", "10.7.1.10");
    let t2 = tier_nic(72, 2, NIC2, "02:00:0a:07:02:0a", "10.7.2.10");
    for (id, octet, payload) in [(71, 1, &t1), (72, 2, &t2)] {
        ok(cs(nb, "implement-network", tier(5, id, octet)));
        run_all(nb, NIC_START, payload);
    }
    let acl1 = vec![
        acl(10, "allow", "ingress", "icmp", None),
        acl(20, "deny", "ingress", "tcp", Some(22)),
        acl(30, "allow", "egress", "all", None),
    ];
    let acl2 = vec![
        acl(10, "allow", "ingress", "icmp", None),
        acl(20, "allow", "ingress", "tcp", Some(22)),
        acl(30, "allow", "egress", "all", None),
    ];
    twice(nb, "apply-network-acl", with(tier(5, 71, 1), json!({"acl_rules": acl1})));
    twice(nb, "apply-network-acl", with(tier(5, 72, 2), json!({"acl_rules": acl2})));
    let vm1 = hv.plug_vm("tap1", NIC1, "02:00:0a:07:01:0a");
    let vm2 = hv.plug_vm("tap2", NIC2, "02:00:0a:07:02:0a");
    assert_eq!(vm1.dhcp().ip, "10.7.1.10", "DHCP answered under the ACL");
    assert_eq!(vm2.dhcp().ip, "10.7.2.10");
    let _s1 = vm1.serve_tcp("0.0.0.0", 22, "vm1");
    let _s2 = vm2.serve_tcp("0.0.0.0", 22, "vm2");
    for (id, octet, ip, private) in [(71, 1, "203.0.113.31", "10.7.1.10"), (72, 2, "203.0.113.32", "10.7.2.10")] {
        ok(cs(nb, "assign-ip", public(tier(5, id, octet), ip, false, "untagged")));
        let pf = with(
            public(tier(5, id, octet), ip, false, "untagged"),
            json!({"private_ip": private, "public_port": "22", "private_port": "22", "protocol": "tcp"}),
        );
        ok(cs(nb, "add-port-forward", pf));
    }
    let reach = |ip: &str, t: Duration| outside.connect_tcp(ip, 22, Some(INTERNET), t);
    assert!(reach("203.0.113.32", FIRST).is_some_and(|l| l.starts_with("vm2")), "tier 2 allows TCP 22");
    assert_eq!(central.blocked_probe(|t| reach("203.0.113.31", t)), None, "tier 1 denies TCP 22");
    // Egress "all" is allowed, so tier 1 still reaches outside, and replies come back.
    let _o = outside.serve_tcp(INTERNET, 8080, "outside");
    assert!(vm1.connect_tcp(INTERNET, 8080, FIRST).is_some());
    // An empty list denies everything new.
    ok(cs(nb, "apply-network-acl", with(tier(5, 72, 2), json!({"acl_rules": []}))));
    assert_eq!(central.blocked_probe(|t| reach("203.0.113.32", t)), None);
    hv.assert_vswitchd_alive();
}

#[test]
fn rules_match_nbctl_and_bad_rules_are_refused() {
    let nb = Nb::start();
    ok(cs(&nb, "implement-network", network(50)));
    ok(cs(&nb, "assign-ip", public(network(50), "203.0.113.10", true, "untagged")));
    ok(cs(&nb, "assign-ip", public(network(50), "203.0.113.11", false, "untagged")));
    ok(cs(&nb, "add-static-nat", static_nat(50, "203.0.113.11", "10.1.1.23")));
    run_all(&nb, NIC_START, &vm1(50));
    twice(
        &nb,
        "apply-fw-rules",
        fw(50, false, vec![ingress(1, "203.0.113.11", 22, "198.51.100.0/28"), egress(2, 443)]),
    );
    let pg = nb.nbctl(&["acl-list", "cs_net_50"]);
    for want in [
        r#"to-lport  1100 (outport == @cs_net_50 && inport == "rtr-cs-net-50" && ip4 && ip4.dst == 10.1.1.23 && ip4.src == 198.51.100.0/28 && tcp && tcp.dst == 22) allow-related"#,
        r#"to-lport  1000 (outport == @cs_net_50 && inport == "rtr-cs-net-50" && ip4) drop"#,
        "from-lport  1100 (inport == @cs_net_50 && ip4 && ip4.dst != 10.1.1.0/24 && ip4.src == 10.1.1.0/24 && tcp && tcp.dst == 443) allow-related",
        "from-lport  1000 (inport == @cs_net_50 && ip4 && ip4.dst != 10.1.1.0/24) drop",
    ] {
        assert!(pg.contains(want), "missing\n{want}\nin\n{pg}");
    }
    let public_side = nb.nbctl(&["acl-list", "cs-public-public-untagged"]);
    assert!(
        public_side.contains(
            r#"ip4.dst == 203.0.113.11 && ip4.src == 198.51.100.0/28 && tcp && tcp.dst == 22) allow-stateless"#
        ),
        "{public_side}"
    );
    assert!(public_side.contains("tcp.flags[1] == 1 && tcp.flags[4] == 0) drop"), "{public_side}");
    assert!(nb.nbctl(&["get", "Port_Group", "cs_net_50", "ports"]).contains('-'), "the VM port is in the port group");

    let snap = nb.snapshot();
    for (rules, what) in [
        (
            json!({"rules": [{"id": 1, "type": "ingress", "protocol": "tcp", "portStart": 22, "portEnd": 22, "publicIp": "203.0.113.11", "sourceCidrs": ["10.0.0.0/33"]}]}),
            "CIDR",
        ),
        (
            json!({"rules": [{"id": 1, "type": "ingress", "protocol": "tcp", "portStart": 70000, "portEnd": 70000, "publicIp": "203.0.113.11"}]}),
            "port",
        ),
        (json!({"rules": [{"id": 1, "type": "ingress", "protocol": "gre", "publicIp": "203.0.113.11"}]}), "protocol"),
    ] {
        let msg = fails(
            run_cs(&nb.remote(), "apply-fw-rules", &registered(with(network(50), json!({"fw_rules": rules})))),
            2,
        );
        assert!(msg.contains(what), "{msg} should mention the {what}");
        assert_eq!(snap, nb.snapshot());
    }
    let bad_acl = json!({"acl_rules": [{"number": 1, "action": "allow", "trafficType": "ingress", "protocol": "tcp", "portStart": 0, "portEnd": 99999}]});
    fails(run_cs(&nb.remote(), "apply-network-acl", &registered(with(network(50), bad_acl))), 2);
    let leastconn = with(
        network(50),
        json!({"lb_rules": [{"id": 1, "publicIp": "203.0.113.11", "publicPort": 80, "privatePort": 80, "protocol": "tcp", "algorithm": "leastconn", "revoke": false, "backends": []}]}),
    );
    let msg = fails(run_cs(&nb.remote(), "apply-lb-rules", &registered(leastconn)), 6);
    assert!(msg.contains("leastconn"), "{msg}");
    assert_eq!(snap, nb.snapshot());

    // Deleting the network takes the port group, every ACL and the public-side rows.
    run_all(&nb, NIC_STOP, &vm1(50));
    ok(cs(&nb, "destroy-network", network(50)));
    assert_eq!(owned_rows(&nb), 0, "{}", nb.nbctl(&["show"]));
    assert_eq!(nb.count_rows("ACL"), 0);
}

/// Concurrent full snapshots never merge: the port group ends with exactly
/// one applied rule set and exactly its ACLs.
#[test]
fn concurrent_firewall_snapshots_do_not_merge() {
    let nb = Nb::start();
    ok(cs(&nb, "implement-network", network(70)));
    ok(cs(&nb, "assign-ip", public(network(70), "203.0.113.10", true, "untagged")));
    run_all(&nb, NIC_START, &vm1(70));
    let remote = nb.remote();
    let handles: Vec<_> = (0..8u16)
        .map(|i| {
            let r = remote.clone();
            std::thread::spawn(move || {
                run_cs(&r, "apply-fw-rules", &registered(fw(70, false, vec![egress(u64::from(i), 1000 + i)])))
            })
        })
        .collect();
    for h in handles {
        ok(h.join().unwrap());
    }
    let acls = nb.nbctl(&["acl-list", "cs_net_70"]);
    let ports: Vec<&str> = acls.lines().filter(|l| l.contains("tcp.dst == 10")).collect();
    assert_eq!(ports.len(), 1, "exactly one snapshot's egress rule survives:\n{acls}");
    let recorded = nb.nbctl(&["get", "Port_Group", "cs_net_70", "external_ids:\"cloudstack:firewall\""]);
    let port = ports[0].split("tcp.dst == ").nth(1).unwrap().split(')').next().unwrap();
    assert!(
        recorded.contains(&format!("portStart\\\":{port}")),
        "the ACLs are the recorded snapshot's: {recorded} vs {port}"
    );
}

/// ACL rows of ours at other uuids than today's derivation gives (what a
/// change of the ACL identity would leave behind) converge with one
/// `apply-fw-rules`: one write transaction that links the rows at their
/// derived uuids and unlinks the others, so no committed state lacks the
/// rules; a second run writes nothing.
#[test]
fn acls_keyed_differently_converge_in_one_transaction() {
    let nb = Nb::start();
    ok(cs(&nb, "implement-network", network(61)));
    run_all(&nb, NIC_START, &nic(61, NIC1, MAC1, "10.1.1.23", "vm-1", true));
    let rules = fw(61, false, vec![egress(1, 80), egress(2, 443)]);
    ok(cs(&nb, "apply-fw-rules", rules.clone()));
    let acls = |nb: &Nb| -> Vec<String> {
        let mut v: Vec<String> = nb
            .nbctl(&["--bare", "--columns=acls", "list", "Port_Group", "cs_net_61"])
            .split_whitespace()
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    let derived = acls(&nb);
    assert!(derived.len() >= 4, "{derived:?}");

    // Re-key: every ACL row of the group replaced by a copy at a fresh uuid
    // (same columns, our tags), in one transaction.
    let rows: Vec<Value> =
        nb.rows("ACL").into_iter().filter(|r| derived.contains(&r["_uuid"][1].as_str().unwrap().to_string())).collect();
    let mut ops = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let mut row = r.as_object().unwrap().clone();
        row.remove("_uuid");
        row.remove("_version");
        ops.push(json!({"op": "insert", "table": "ACL", "row": row, "uuid-name": format!("old{i}")}));
        ops.push(json!({"op": "mutate", "table": "Port_Group", "where": [["name", "==", "cs_net_61"]],
                        "mutations": [["acls", "insert", ["named-uuid", format!("old{i}")]]]}));
    }
    let gone: Vec<Value> = derived.iter().map(|u| json!(["uuid", u])).collect();
    ops.push(json!({"op": "mutate", "table": "Port_Group", "where": [["name", "==", "cs_net_61"]],
                    "mutations": [["acls", "delete", ["set", gone]]]}));
    nb.transact(&ops);
    let old = acls(&nb);
    assert_eq!(old.len(), derived.len());
    assert!(old.iter().all(|u| !derived.contains(u)), "re-keyed rows have other uuids");

    let run = cs_logged(&nb, "apply-fw-rules", rules.clone());
    ok(run.output);
    let line = run.log.lines().find(|l| l.contains("command=apply-fw-rules ") && l.contains("outcome=ok")).unwrap();
    assert!(line.contains(" attempts=1 ") && !line.contains(" rows_changed=0 "), "one write transaction: {line}");
    assert_eq!(acls(&nb), derived, "the derived rows are back, the others gone");
    assert_eq!(nb.count_rows("ACL"), derived.len(), "unlinked rows were dropped by OVSDB");
    twice(&nb, "apply-fw-rules", rules);
}
