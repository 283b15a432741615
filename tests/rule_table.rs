//! The CIDR/port/protocol table (issue 9 #2): firewall and network ACL rules
//! with every combination of `0.0.0.0/0`, `::/0`, several CIDRs, IPv4+IPv6
//! mixed lists, single ports, ranges, protocol names and numbers, allow and
//! deny, ingress and egress; each packet traced with `ovn-trace` through
//! ovn-northd's flows and compared with what CloudStack's rule set means
//! (an oracle written from CloudStack's semantics, not from our compiler).
//! One northd; each rule set applied once and probed with many traces.

mod common;

use std::net::IpAddr;

use common::scenario::*;
use common::*;
use serde_json::{json, Value};

/// The CIDR lists under test.
const LISTS: &[&[&str]] = &[
    &["0.0.0.0/0"],
    &["::/0"],
    &["0.0.0.0/0", "10.0.0.0/8"],
    &["10.0.0.0/8", "0.0.0.0/0"],
    &["198.51.100.0/24", "192.0.2.0/24"],
    &["198.51.100.0/24", "2001:db8::/32"],
    &["0.0.0.0/0", "::/0"],
    &["2001:db8::/32", "2001:db9::/32"],
    &["192.0.2.7"],
    &[],
];

/// Remote addresses probed: inside/outside each listed CIDR, both families.
const REMOTES_V4: &[&str] = &["198.51.100.10", "192.0.2.7", "192.0.2.9", "203.0.113.200"];
const REMOTES_V6: &[&str] = &["2001:db8::5", "2001:db9::5", "2001:dba::5"];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Proto {
    Tcp(u16, u16),
    Udp(u16, u16),
    Icmp(i32, i32),
    All,
    Number(u8),
}

#[derive(Clone, Debug)]
struct R {
    cidrs: &'static [&'static str],
    proto: Proto,
    allow: bool,
    ingress: bool,
}

#[derive(Clone, Copy, Debug)]
enum L4 {
    Tcp(u16),
    Udp(u16),
    Icmp(u8, u8),
    Number(u8),
}

fn contains(cidr: &str, ip: IpAddr) -> bool {
    let (a, p) = cidr.split_once('/').unwrap_or((cidr, if cidr.contains(':') { "128" } else { "32" }));
    let p: u32 = p.parse().unwrap();
    match (a.parse::<IpAddr>().unwrap(), ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let m = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            u32::from(n) & m == u32::from(i) & m
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let m = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            u128::from(n) & m == u128::from(i) & m
        }
        _ => false,
    }
}

/// CloudStack's meaning: the rule covers the packet when the remote address
/// is in one of its CIDRs (no CIDR = `0.0.0.0/0`) and the protocol, ports
/// and ICMP type/code match.
fn matches(r: &R, remote: IpAddr, l4: L4) -> bool {
    let addr_ok = if r.cidrs.is_empty() { remote.is_ipv4() } else { r.cidrs.iter().any(|c| contains(c, remote)) };
    let l4_ok = match (r.proto, l4) {
        (Proto::All, _) => true,
        (Proto::Tcp(a, b), L4::Tcp(p)) | (Proto::Udp(a, b), L4::Udp(p)) => (a..=b).contains(&p),
        (Proto::Icmp(t, c), L4::Icmp(pt, pc)) => (t == -1 || t == i32::from(pt)) && (c == -1 || c == i32::from(pc)),
        (Proto::Number(n), L4::Number(m)) => n == m,
        (Proto::Number(6), L4::Tcp(_)) | (Proto::Number(17), L4::Udp(_)) => true,
        _ => false,
    };
    addr_ok && l4_ok
}

fn rule_json(r: &R) -> Value {
    let mut v = match r.proto {
        Proto::Tcp(a, b) => json!({"protocol": "tcp", "portStart": a, "portEnd": b}),
        Proto::Udp(a, b) => json!({"protocol": "udp", "portStart": a, "portEnd": b}),
        Proto::Icmp(t, c) => json!({"protocol": "icmp", "icmpType": t, "icmpCode": c}),
        Proto::All => json!({"protocol": "all"}),
        Proto::Number(n) => json!({"protocol": n.to_string()}),
    };
    v["sourceCidrs"] = json!(r.cidrs);
    v
}

fn l4_flow(l4: L4, v6: bool) -> String {
    match l4 {
        L4::Tcp(p) => format!("tcp && tcp.src == 40000 && tcp.dst == {p} && tcp.flags == 2"),
        L4::Udp(p) => format!("udp && udp.src == 40000 && udp.dst == {p}"),
        L4::Icmp(t, c) if v6 => format!("icmp6 && icmp6.type == {t} && icmp6.code == {c}"),
        L4::Icmp(t, c) => format!("icmp4 && icmp4.type == {t} && icmp4.code == {c}"),
        L4::Number(n) => format!("ip.proto == {n}"),
    }
}

/// Rule k of a set gets its own ports / ICMP type so that every list is
/// probed on its own, while the oracle still judges the whole set.
fn rule_set(ingress: bool, allow: impl Fn(usize) -> bool) -> Vec<R> {
    let mut rules = Vec::new();
    for (k, cidrs) in LISTS.iter().enumerate() {
        let base = 1000 + 100 * k as u16;
        for (j, proto) in [Proto::Tcp(base, base), Proto::Udp(base + 10, base + 20), Proto::Tcp(base + 30, base + 40)]
            .iter()
            .enumerate()
        {
            rules.push(R { cidrs, proto: *proto, allow: allow(3 * k + j), ingress });
        }
    }
    // Protocols without ports, on lists that leave most remotes out.
    rules.push(R { cidrs: LISTS[4], proto: Proto::Icmp(8, -1), allow: allow(1), ingress });
    rules.push(R { cidrs: LISTS[5], proto: Proto::Icmp(13, 0), allow: allow(2), ingress });
    rules.push(R { cidrs: LISTS[8], proto: Proto::All, allow: allow(3), ingress });
    rules.push(R { cidrs: LISTS[5], proto: Proto::Number(47), allow: allow(4), ingress });
    rules
}

/// Every probe: each remote against each rule's ports (inside, at the edges,
/// just outside), ICMP types and protocol numbers.
fn probes(rules: &[R], v6: bool) -> Vec<(IpAddr, L4)> {
    let remotes: Vec<IpAddr> = if v6 { REMOTES_V6 } else { REMOTES_V4 }.iter().map(|r| r.parse().unwrap()).collect();
    let mut l4s = Vec::new();
    for r in rules {
        match r.proto {
            // A single port and the next; inside a range, its ends, just past it.
            Proto::Tcp(a, b) if a == b => l4s.extend([L4::Tcp(a), L4::Tcp(a + 1)]),
            Proto::Tcp(a, b) => l4s.push(L4::Tcp((a + b) / 2)),
            Proto::Udp(a, b) => l4s.extend([L4::Udp(a), L4::Udp(b), L4::Udp(b + 1), L4::Tcp(a)]),
            _ => {}
        }
    }
    l4s.sort_by_key(|l| format!("{l:?}"));
    l4s.dedup_by_key(|l| format!("{l:?}"));
    l4s.extend([L4::Icmp(8, 0), L4::Icmp(13, 0), L4::Icmp(13, 1), L4::Number(47), L4::Number(50), L4::Tcp(5)]);
    let mut out = Vec::new();
    for remote in &remotes {
        for l4 in &l4s {
            if v6 && matches!(l4, L4::Icmp(..)) {
                continue; // ICMPv6 types are not CloudStack's ICMP numbers; checked in unit tests
            }
            out.push((*remote, *l4));
        }
    }
    out
}

/// Disagreements, and how many probes CloudStack means to deliver / drop
/// (both must occur, or the table proves nothing).
struct Mismatch(Vec<String>, [usize; 2]);

impl Mismatch {
    fn check(&mut self, what: &str, want: bool, got: bool, trace: &str) {
        self.1[usize::from(want)] += 1;
        if want != got {
            let tail: String = trace.lines().filter(|l| l.contains("acl") || l.contains("drop")).take(6).collect();
            self.0.push(format!("{what}: CloudStack means {}, OVN {} [{tail}]", verdict(want), verdict(got)));
        }
    }

    fn assert_none(self, total: usize) {
        assert!(self.0.is_empty(), "{} of {total} probes disagree:\n{}", self.0.len(), self.0.join("\n"));
        assert!(self.1[0] > 50 && self.1[1] > 50, "too few drops or deliveries to mean anything: {:?}", self.1);
    }
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "deliver"
    } else {
        "drop"
    }
}

fn mac_of(nb: &Nb, lrp: &str) -> String {
    nb.nbctl(&["get", "Logical_Router_Port", lrp, "mac"]).trim().trim_matches('"').to_string()
}

/// Isolated network firewall: ingress to a static-NAT IP (both layers) and
/// egress with the default policy allow (rules deny) and deny (rules allow).
#[test]
fn firewall_table_matches_cloudstack() {
    let central = Central::start();
    let nb = central.nb();
    ok(cs(nb, "implement-network", network(42)));
    ok(cs(nb, "assign-ip", public(network(42), "203.0.113.10", true, "101")));
    run_all(nb, NIC_START, &vm1(42));
    ok(cs(nb, "assign-ip", public(network(42), "203.0.113.11", false, "101")));
    ok(cs(
        nb,
        "add-static-nat",
        with(public(network(42), "203.0.113.11", false, "101"), json!({"private_ip": "10.1.1.23"})),
    ));
    let router_mac = mac_of(nb, "lrp-cs-net-42");
    let gw_mac = mac_of(nb, "lrp-cs-router-42-pub");
    let vm_mac = "02:00:4c:3e:00:05";

    let ingress = rule_set(true, |_| true);
    let mut doc: Vec<Value> = ingress
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut v = rule_json(r);
            v["id"] = json!(i + 1);
            v["type"] = json!("ingress");
            v["publicIp"] = json!("203.0.113.11");
            v["destCidrs"] = json!([]);
            v
        })
        .collect();
    // Port forwarding 203.0.113.12:2200+k → 10.1.1.23:3200+k, one firewall
    // rule per list on its public port: the same lists through the
    // forwarding path (the VIP's backends on the port group).
    ok(cs(nb, "assign-ip", public(network(42), "203.0.113.12", false, "101")));
    let pf = json!({"private_ip": "10.1.1.23", "public_port": format!("2200-{}", 2199 + LISTS.len()),
                    "private_port": format!("3200-{}", 3199 + LISTS.len()), "protocol": "tcp"});
    ok(cs(nb, "add-port-forward", with(public(network(42), "203.0.113.12", false, "101"), pf)));
    for (k, cidrs) in LISTS.iter().enumerate() {
        doc.push(json!({"id": 500 + k, "type": "ingress", "protocol": "tcp", "portStart": 2200 + k,
                        "portEnd": 2200 + k, "publicIp": "203.0.113.12", "sourceCidrs": cidrs}));
    }
    // A rule for another public IP must not open this one.
    doc.push(json!({"id": 999, "type": "ingress", "protocol": "all", "publicIp": "203.0.113.10", "sourceCidrs": ["0.0.0.0/0"]}));
    let fw = |egress_allow: bool, rules: &[Value]| {
        with(
            network(42),
            json!({"fw_rules": {"default_egress_allow": egress_allow, "cidr": "10.1.1.0/24", "rules": rules}}),
        )
    };
    ok(cs(nb, "apply-fw-rules", fw(true, &doc)));
    central.sync();
    let mut bad = Mismatch(Vec::new(), [0, 0]);
    let mut total = 0;
    for (remote, l4) in probes(&ingress, false) {
        total += 1;
        let want = ingress.iter().any(|r| matches(r, remote, l4));
        let flow = l4_flow(l4, false);
        let l1 = central.trace_opts(
            &["--ct=new"],
            "cs-public-public-101",
            &format!(r#"inport == "ln-cs-public-public-101" && eth.src == 02:00:cb:00:71:01 && eth.dst == {gw_mac} && ip4.src == {remote} && ip4.dst == 203.0.113.11 && ip.ttl == 64 && {flow}"#),
        );
        let l1_pass = l1.contains("output to \"lsp-cs-router-42-pub\"");
        if !l1_pass && !want {
            continue;
        }
        let l2 = central.trace_opts(
            &["--ct=new"],
            "cs-net-42",
            &format!(r#"inport == "rtr-cs-net-42" && eth.src == {router_mac} && eth.dst == {vm_mac} && ip4.src == {remote} && ip4.dst == 10.1.1.23 && ip.ttl == 64 && {flow}"#),
        );
        let l2_pass = l2.contains(&format!("output to \"{NIC1}\""));
        bad.check(&format!("ingress {remote} {l4:?}"), want, l1_pass && l2_pass, &format!("{l1}\n{l2}"));
        if let L4::Tcp(_) = l4 {
            // A new TCP connection is already refused on the public side.
            bad.check(&format!("ingress SYN public side {remote} {l4:?}"), want, l1_pass, &l1);
        }
    }
    for remote in REMOTES_V4 {
        for (k, cidrs) in LISTS.iter().enumerate() {
            total += 1;
            let r = R { cidrs, proto: Proto::Tcp(2200, 2200), allow: true, ingress: true };
            let want = matches(&r, remote.parse().unwrap(), L4::Tcp(2200));
            let l1 = central.trace_opts(
                &["--ct=new"],
                "cs-public-public-101",
                &format!(r#"inport == "ln-cs-public-public-101" && eth.src == 02:00:cb:00:71:01 && eth.dst == {gw_mac} && ip4.src == {remote} && ip4.dst == 203.0.113.12 && ip.ttl == 64 && tcp && tcp.src == 40000 && tcp.dst == {} && tcp.flags == 2"#, 2200 + k),
            );
            let l2 = central.trace_opts(
                &["--ct=new"],
                "cs-net-42",
                &format!(r#"inport == "rtr-cs-net-42" && eth.src == {router_mac} && eth.dst == {vm_mac} && ip4.src == {remote} && ip4.dst == 10.1.1.23 && ip.ttl == 64 && tcp && tcp.src == 40000 && tcp.dst == {} && tcp.flags == 2"#, 3200 + k),
            );
            let got =
                l1.contains("output to \"lsp-cs-router-42-pub\"") && l2.contains(&format!("output to \"{NIC1}\""));
            bad.check(&format!("forwarded {remote} list {cidrs:?}"), want, got, &format!("{l1}\n{l2}"));
        }
    }

    for egress_allow in [true, false] {
        // With default allow the rules are denies, with default deny allows.
        let rules = rule_set(false, |_| !egress_allow);
        let doc: Vec<Value> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut v = rule_json(r);
                v["id"] = json!(i + 1);
                v["type"] = json!("egress");
                // Egress CIDRs are the destinations; the sources are the guest network.
                v["destCidrs"] = v["sourceCidrs"].take();
                v["sourceCidrs"] = json!(["10.1.1.0/24"]);
                v
            })
            .collect();
        ok(cs(nb, "apply-fw-rules", fw(egress_allow, &doc)));
        central.sync();
        for (remote, l4) in probes(&rules, false) {
            total += 1;
            let hit = rules.iter().any(|r| matches(r, remote, l4));
            let want = if egress_allow { !hit } else { hit };
            let flow = l4_flow(l4, false);
            let out = central.trace_opts(
                &["--ct=new"],
                "cs-net-42",
                &format!(r#"inport == "{NIC1}" && eth.src == {vm_mac} && eth.dst == {router_mac} && ip4.src == 10.1.1.23 && ip4.dst == {remote} && ip.ttl == 64 && {flow}"#),
            );
            let got = out.contains("output to \"rtr-cs-net-42\"");
            bad.check(&format!("egress default_allow={egress_allow} {remote} {l4:?}"), want, got, &out);
        }
    }
    bad.assert_none(total);
}

/// VPC tier network ACL: ordered allow/deny rules, ingress and egress, IPv4
/// and IPv6 traffic on a dual-stack tier.
#[test]
fn network_acl_table_matches_cloudstack() {
    let central = Central::start();
    let nb = central.nb();
    ok(cs(nb, "implement-vpc", vpc(5)));
    let v6 = json!({"network_ip6_gateway": "fd00:7:1::1", "network_ip6_cidr": "fd00:7:1::/64"});
    let t = with(tier(5, 71, 1), v6.clone());
    ok(cs(nb, "implement-network", t.clone()));
    let vm_mac = "02:00:0a:07:01:0a";
    let vm6 = "fd00:7:1::aff:fe07:10a";
    let nic = with(
        t.clone(),
        json!({"nic_id": "77", "nic_uuid": NIC1, "mac": vm_mac, "ip": "10.7.1.10", "ip6_address": vm6,
               "netmask": "255.255.255.0", "default_nic": "true", "device_id": "0", "hostname": "vm-1",
               "dns": "10.7.1.1", "domain": "cs.example"}),
    );
    run_all(nb, NIC_START, &nic);
    let router_mac = mac_of(nb, "lrp-cs-net-71");
    // Ingress and egress in one list; allow and deny interleaved so that
    // order decides (a deny before an allow on the same ports, and after).
    let mut rules = rule_set(true, |i| i % 2 == 0);
    rules.extend(rule_set(false, |i| i % 3 != 0));
    // Same ports as the first rules, opposite action, later number: must lose.
    let shadow: Vec<R> = rules.iter().take(6).map(|r| R { allow: !r.allow, cidrs: LISTS[6], ..r.clone() }).collect();
    rules.extend(shadow);
    let doc: Vec<Value> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut v = rule_json(r);
            v["number"] = json!(10 * (i + 1));
            v["action"] = json!(if r.allow { "allow" } else { "deny" });
            v["trafficType"] = json!(if r.ingress { "ingress" } else { "egress" });
            v
        })
        .collect();
    ok(cs(nb, "apply-network-acl", with(t.clone(), json!({"acl_rules": doc}))));
    central.sync();
    let mut bad = Mismatch(Vec::new(), [0, 0]);
    let mut total = 0;
    for ingress in [true, false] {
        let set: Vec<R> = rules.iter().filter(|r| r.ingress == ingress).cloned().collect();
        for v6 in [false, true] {
            for (remote, l4) in probes(&set, v6) {
                total += 1;
                // First match by number decides; no match: implicit deny.
                let want = set.iter().find(|r| matches(r, remote, l4)).is_some_and(|r| r.allow);
                let flow = l4_flow(l4, v6);
                let (ip, me) = if v6 { ("ip6", vm6) } else { ("ip4", "10.7.1.10") };
                let hop = "ip.ttl == 64";
                let out = if ingress {
                    central.trace_opts(
                        &["--ct=new"],
                        "cs-net-71",
                        &format!(r#"inport == "rtr-cs-net-71" && eth.src == {router_mac} && eth.dst == {vm_mac} && {ip}.src == {remote} && {ip}.dst == {me} && {hop} && {flow}"#),
                    )
                } else {
                    central.trace_opts(
                        &["--ct=new"],
                        "cs-net-71",
                        &format!(r#"inport == "{NIC1}" && eth.src == {vm_mac} && eth.dst == {router_mac} && {ip}.src == {me} && {ip}.dst == {remote} && {hop} && {flow}"#),
                    )
                };
                let got = if ingress {
                    out.contains(&format!("output to \"{NIC1}\""))
                } else {
                    out.contains("output to \"rtr-cs-net-71\"")
                };
                let dir = if ingress { "ingress" } else { "egress" };
                bad.check(&format!("acl {dir} {remote} {l4:?}"), want, got, &out);
            }
        }
    }
    // The tier's own link stays open whatever the rules: router
    // advertisements, neighbour discovery, link-local, its own prefix.
    let v6flow = |from_vm: bool, src: &str, dst: &str, eth_dst: &str, rest: &str| {
        let (inport, eth_src) = if from_vm { (NIC1, vm_mac) } else { ("rtr-cs-net-71", router_mac.as_str()) };
        central.trace_opts(
            &["--ct=new"],
            "cs-net-71",
            &format!(r#"inport == "{inport}" && eth.src == {eth_src} && eth.dst == {eth_dst} && ip6.src == {src} && ip6.dst == {dst} && ip.ttl == 255 && {rest}"#),
        )
    };
    let to_vm = format!("output to \"{NIC1}\"");
    let to_router = "output to \"rtr-cs-net-71\"";
    for (what, trace, want) in [
        (
            "RA",
            v6flow(false, "fe80::1", "ff02::1", "33:33:00:00:00:01", "icmp6 && icmp6.type == 134 && icmp6.code == 0"),
            &to_vm,
        ),
        (
            "link-local ping",
            v6flow(false, "fe80::1", vm6, vm_mac, "icmp6 && icmp6.type == 128 && icmp6.code == 0"),
            &to_vm,
        ),
        (
            "ping from the tier",
            v6flow(false, "fd00:7:1::99", vm6, vm_mac, "icmp6 && icmp6.type == 128 && icmp6.code == 0"),
            &to_vm,
        ),
        (
            "ping the gateway",
            v6flow(true, vm6, "fd00:7:1::1", &router_mac, "icmp6 && icmp6.type == 128 && icmp6.code == 0"),
            &to_router.to_string(),
        ),
        // For a neighbour OVN does not answer itself (ovn-trace 23.03 aborts on nd_na).
        (
            "NS",
            v6flow(
                true,
                vm6,
                "ff02::1:ff00:77",
                "33:33:ff:00:00:77",
                "icmp6 && icmp6.type == 135 && icmp6.code == 0 && nd.target == fd00:7:1::77",
            ),
            &to_router.to_string(),
        ),
    ] {
        assert!(trace.contains(want.as_str()), "{what} must pass the tier's ACLs:\n{trace}");
    }
    bad.assert_none(total);
}
