//! Filtering: CloudStack's firewall (isolated networks) and network ACLs
//! (VPC tiers) as OVN ACLs, and the port group of a network's VM ports.
//!
//! OVN has no router ACLs, and a switch skips conntrack for traffic from/to
//! router and localnet ports, so stateful filtering of NATed traffic happens
//! on the VM ports (the *post*-NAT tuple) and the *public* port/CIDR of a
//! rule can only be checked statelessly on the public switch. The firewall is
//! therefore two layers (verified design "D7", `docs/firewall.md`):
//!
//! 1. stateless, on the shared public switch, `to-lport` to the router's
//!    gateway peer: per rule allow the public (ip, port, CIDR); drop TCP
//!    connection openers (SYN without ACK) to every public IP that forwards
//!    to a VM; drop anything addressed straight to the guest CIDR (routed
//!    bypass of NAT);
//! 2. stateful (`allow-related`), on the network's port group, `to-lport`
//!    from the router: per rule allow the private tuple(s) the public one
//!    translates to; drop the rest from the router. Replies of connections
//!    VMs open are conntrack-established in the VM's zone and pass.
//!
//! Egress rules are `from-lport` on the port group. Every ACL row's UUID is
//! derived from its content, so replacing a whole rule set needs no read of
//! the ACL rows: same content, same row; anything else is unlinked.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{merge_ids, Existing, Parent, Plan};
use crate::error::Result;
pub use crate::nb::ids::Place;
use crate::nb::ids::{AclKey, Protocol, Scope};
use crate::nb::rows::{LoadBalancer, Nat};
use crate::nb::{key, table, Kind};
use crate::observe::Observed;
use crate::ovsdb::value::{string_map, uuid_set};
use crate::payload::rules::{Rule, RuleProto};
use crate::payload::types::{IpCidr, Ipv4Cidr, Ipv6Cidr};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    /// Traffic leaving a VM (OVN `from-lport`).
    FromVm,
    /// Traffic towards a VM, or towards the router's gateway on the public switch (`to-lport`).
    ToPort,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::FromVm => "from-lport",
            Direction::ToPort => "to-lport",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    AllowRelated,
    AllowStateless,
    Drop,
}

impl AclSpec {
    /// The row's identity (see [`Scope::acl_uuid`]).
    fn key(&self) -> AclKey<'_> {
        AclKey {
            place: self.place,
            direction: self.direction.as_str(),
            priority: self.priority,
            action: self.action.as_str(),
            matches: &self.matches,
        }
    }
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::AllowRelated => "allow-related",
            Action::AllowStateless => "allow-stateless",
            Action::Drop => "drop",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AclSpec {
    pub place: Place,
    pub direction: Direction,
    pub priority: u16,
    pub matches: String,
    pub action: Action,
    pub rule_id: Option<u64>,
}

/// The address family a match is for: every ACL is for one family, and a
/// rule's CIDRs of the other family never widen it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn ip(self) -> &'static str {
        match self {
            Family::V4 => "ip4",
            Family::V6 => "ip6",
        }
    }
}

/// The part of a CIDR list for `family` as ` && ip4.src == {a, b}`:
/// `Some("")` when it covers every address of the family (a `/0` of that
/// family anywhere in the list, whatever else is listed), `None` when the
/// list has no CIDR of the family, so the rule matches no packet of it. An
/// empty list is CloudStack's default, `0.0.0.0/0`.
fn cidr_match(family: Family, side: &str, cidrs: &[IpCidr]) -> Option<String> {
    if cidrs.is_empty() {
        return (family == Family::V4).then(String::new);
    }
    let mut any = false;
    let mut list: Vec<String> = Vec::new();
    for c in cidrs {
        let (prefix, net) = match (family, c) {
            (Family::V4, IpCidr::V4(c)) => (c.prefix, c.network().to_string()),
            (Family::V6, IpCidr::V6(c)) => (c.prefix, c.network().to_string()),
            _ => continue,
        };
        any |= prefix == 0;
        if !list.contains(&net) {
            list.push(net);
        }
    }
    let field = format!("{}.{side}", family.ip());
    match list.len() {
        0 => None,
        _ if any => Some(String::new()),
        1 => Some(format!(" && {field} == {}", list[0])),
        _ => Some(format!(" && {field} == {{{}}}", list.join(", "))),
    }
}

/// Whether a destination CIDR list (empty = anywhere) holds `ip`.
fn covers(cidrs: &[IpCidr], ip: Ipv4Addr) -> bool {
    cidrs.is_empty() || cidrs.iter().any(|c| matches!(c, IpCidr::V4(c) if c.contains(ip)))
}

/// The L4 part of a match for `proto` with destination ports `ports`.
fn l4_match(family: Family, proto: RuleProto, ports: Option<(u16, u16)>, icmp: (Option<u8>, Option<u8>)) -> String {
    let mut m = String::new();
    match proto {
        RuleProto::Tcp | RuleProto::Udp => {
            let p = if proto == RuleProto::Tcp { "tcp" } else { "udp" };
            m.push_str(&format!(" && {p}"));
            match ports {
                Some((a, b)) if a == b => m.push_str(&format!(" && {p}.dst == {a}")),
                Some((a, b)) => m.push_str(&format!(" && {p}.dst >= {a} && {p}.dst <= {b}")),
                None => {}
            }
        }
        RuleProto::Icmp => {
            // CloudStack's "icmp" is ICMPv6 on an IPv6 CIDR.
            let icmp_f = if family == Family::V4 { "icmp4" } else { "icmp6" };
            let _ = write!(m, " && {icmp_f}");
            if let Some(t) = icmp.0 {
                let _ = write!(m, " && {icmp_f}.type == {t}");
            }
            if let Some(c) = icmp.1 {
                let _ = write!(m, " && {icmp_f}.code == {c}");
            }
        }
        RuleProto::Number(n) => {
            let _ = write!(m, " && ip.proto == {n}");
        }
        RuleProto::All => {}
    }
    m
}

/// A forwarded public endpoint: (public IP, protocol, port).
pub type Vip = (Ipv4Addr, Protocol, u16);
/// A private endpoint: (IP, port).
pub type Endpoint = (Ipv4Addr, u16);

/// What the router forwards to VMs, from its NAT and Load_Balancer rows:
/// static NAT public → private, and VIPs (public, protocol, port) → backends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Forwarding {
    pub static_nat: BTreeMap<Ipv4Addr, Ipv4Addr>,
    pub vips: BTreeMap<Vip, BTreeSet<Endpoint>>,
    /// The router's public IPs (hairpin traffic arrives SNATed to them).
    pub router_ips: BTreeSet<Ipv4Addr>,
    /// The public switch the router's gateway is on, if it has one.
    pub gateway: Option<Uuid>,
}

/// `ip:port` as OVN writes VIPs and backends.
pub fn parse_endpoint(s: &str) -> Option<Endpoint> {
    let (ip, port) = s.trim().rsplit_once(':')?;
    Some((ip.parse().ok()?, port.parse().ok()?))
}

impl Forwarding {
    pub fn from_rows(nats: &[Nat], lbs: &[LoadBalancer]) -> Forwarding {
        let mut f = Forwarding::default();
        for n in nats.iter().filter(|n| n.kind == "dnat_and_snat") {
            if let (Ok(p), Ok(l)) = (n.external_ip.parse(), n.logical_ip.parse()) {
                f.static_nat.insert(p, l);
            }
        }
        for lb in lbs {
            f.add_lb(lb);
        }
        f
    }

    pub fn add_lb(&mut self, lb: &LoadBalancer) {
        let proto = if lb.protocol.as_deref() == Some("udp") { Protocol::Udp } else { Protocol::Tcp };
        for (vip, backends) in &lb.vips {
            let Some((ip, port)) = parse_endpoint(vip) else { continue };
            let set = self.vips.entry((ip, proto, port)).or_default();
            set.extend(backends.split(',').filter_map(parse_endpoint));
        }
    }

    /// Public IPs that lead to a VM.
    fn public_ips(&self) -> BTreeSet<Ipv4Addr> {
        self.static_nat.keys().copied().chain(self.vips.keys().map(|(ip, _, _)| *ip)).collect()
    }
}

/// The names a network's firewall matches on.
#[derive(Clone, Debug)]
pub struct FirewallScope {
    pub port_group: String,
    /// The guest switch's router-type port (traffic "from the router").
    pub router_peer: String,
    /// The router's peer on the public switch, if the router has a gateway.
    pub gateway_peer: Option<String>,
    pub guest_cidr: Ipv4Cidr,
}

/// Priorities: baseline allows above user rules above defaults.
const BASELINE: u16 = 1200;
const HAIRPIN: u16 = 1150;
const RULE: u16 = 1100;
const DEFAULT: u16 = 1000;

/// The whole firewall of an isolated network.
pub fn firewall_acls(fs: &FirewallScope, default_egress_allow: bool, rules: &[Rule], fwd: &Forwarding) -> Vec<AclSpec> {
    let mut out = BTreeSet::new();
    let pg = &fs.port_group;
    let from_router = format!("outport == @{pg} && inport == \"{}\" && ip4", fs.router_peer);

    // Layer 1: the public side, stateless.
    if let Some(gwp) = &fs.gateway_peer {
        let to_gw = format!("outport == \"{gwp}\" && ip4");
        for r in rules.iter().filter(|r| r.ingress) {
            let Some(public) = r.public_ip else { continue };
            // The public IPs are IPv4: only the rule's IPv4 sources can reach them.
            let Some(src) = cidr_match(Family::V4, "src", &r.source_cidrs) else { continue };
            if !covers(&r.dest_cidrs, public) {
                continue;
            }
            let l4 = l4_match(Family::V4, r.protocol, r.ports, (r.icmp_type, r.icmp_code));
            let m = format!("{to_gw} && ip4.dst == {public}{src}{l4}");
            out.insert(AclSpec {
                place: Place::PublicSwitch,
                direction: Direction::ToPort,
                priority: RULE,
                matches: m,
                action: Action::AllowStateless,
                rule_id: r.id,
            });
        }
        for ip in fwd.public_ips() {
            // SYN set, ACK clear: only ever a new inbound connection, never a reply.
            let m = format!("{to_gw} && ip4.dst == {ip} && tcp && tcp.flags[1] == 1 && tcp.flags[4] == 0");
            out.insert(AclSpec {
                place: Place::PublicSwitch,
                direction: Direction::ToPort,
                priority: DEFAULT,
                matches: m,
                action: Action::Drop,
                rule_id: None,
            });
        }
        let m = format!("{to_gw} && ip4.dst == {}", fs.guest_cidr.network());
        out.insert(AclSpec {
            place: Place::PublicSwitch,
            direction: Direction::ToPort,
            priority: DEFAULT,
            matches: m,
            action: Action::Drop,
            rule_id: None,
        });
    }

    // Layer 2: towards the VMs from the router, stateful.
    for r in rules.iter().filter(|r| r.ingress) {
        let Some(public) = r.public_ip else { continue };
        let Some(src) = cidr_match(Family::V4, "src", &r.source_cidrs) else { continue };
        if !covers(&r.dest_cidrs, public) {
            continue;
        }
        if let Some(private) = fwd.static_nat.get(&public) {
            let l4 = l4_match(Family::V4, r.protocol, r.ports, (r.icmp_type, r.icmp_code));
            out.insert(AclSpec {
                place: Place::PortGroup,
                direction: Direction::ToPort,
                priority: RULE,
                matches: format!("{from_router} && ip4.dst == {private}{src}{l4}"),
                action: Action::AllowRelated,
                rule_id: r.id,
            });
        }
        for ((ip, proto, port), backends) in &fwd.vips {
            let proto_ok = matches!(
                (r.protocol, proto),
                (RuleProto::All, _)
                    | (RuleProto::Tcp, Protocol::Tcp)
                    | (RuleProto::Udp, Protocol::Udp)
                    | (RuleProto::Number(6), Protocol::Tcp)
                    | (RuleProto::Number(17), Protocol::Udp)
            );
            let port_ok = r.ports.is_none_or(|(a, b)| (a..=b).contains(port));
            if *ip != public || !proto_ok || !port_ok {
                continue;
            }
            for (bip, bport) in backends {
                let p = proto.as_str();
                out.insert(AclSpec {
                    place: Place::PortGroup,
                    direction: Direction::ToPort,
                    priority: RULE,
                    matches: format!("{from_router} && ip4.dst == {bip}{src} && {p} && {p}.dst == {bport}"),
                    action: Action::AllowRelated,
                    rule_id: r.id,
                });
            }
        }
    }
    let mut hairpin = vec![fs.guest_cidr.network().to_string()];
    hairpin.extend(fwd.router_ips.iter().map(|i| i.to_string()));
    out.insert(AclSpec {
        place: Place::PortGroup,
        direction: Direction::ToPort,
        priority: HAIRPIN,
        matches: format!("{from_router} && ip4.src == {{{}}}", hairpin.join(", ")),
        action: Action::AllowRelated,
        rule_id: None,
    });
    out.insert(AclSpec {
        place: Place::PortGroup,
        direction: Direction::ToPort,
        priority: DEFAULT,
        matches: from_router.clone(),
        action: Action::Drop,
        rule_id: None,
    });

    // Egress: traffic leaving the network (east-west stays unfiltered).
    let leaving = format!("inport == @{pg} && ip4 && ip4.dst != {}", fs.guest_cidr.network());
    for r in rules.iter().filter(|r| !r.ingress) {
        // Only IPv4 leaves an isolated network (its router has no IPv6 route
        // out), so a rule's IPv6 CIDRs select no traffic here.
        let (Some(src), Some(dst)) =
            (cidr_match(Family::V4, "src", &r.source_cidrs), cidr_match(Family::V4, "dst", &r.dest_cidrs))
        else {
            continue;
        };
        let l4 = l4_match(Family::V4, r.protocol, r.ports, (r.icmp_type, r.icmp_code));
        let m = format!("{leaving}{src}{dst}{l4}");
        let action = if default_egress_allow { Action::Drop } else { Action::AllowRelated };
        out.insert(AclSpec {
            place: Place::PortGroup,
            direction: Direction::FromVm,
            priority: RULE,
            matches: m,
            action,
            rule_id: r.id,
        });
    }
    if default_egress_allow && rules.iter().any(|r| !r.ingress) {
        // Deny rules must not catch the metadata service either.
        out.insert(metadata_allow(pg, BASELINE));
    }
    if !default_egress_allow {
        baseline(&mut out, pg);
        out.insert(AclSpec {
            place: Place::PortGroup,
            direction: Direction::FromVm,
            priority: DEFAULT,
            matches: leaving,
            action: Action::Drop,
            rule_id: None,
        });
    }
    out.into_iter().collect()
}

/// The UserData service on the metadata localport (docs/metadata.md): the
/// virtual router answered it from itself, outside its own egress rules.
fn metadata_allow(pg: &str, priority: u16) -> AclSpec {
    AclSpec {
        place: Place::PortGroup,
        direction: Direction::FromVm,
        priority,
        matches: format!(
            "inport == @{pg} && ip4.dst == {} && tcp && tcp.dst == {{80, 8080}}",
            crate::metadata::MD_ADDRESS
        ),
        action: Action::AllowRelated,
        rule_id: None,
    }
}

/// What a VM always needs from OVN whatever the rules: DHCP, DNS (OVN
/// answers both on the hypervisor; DHCP requests still pass from-lport ACLs)
/// and the metadata service.
fn baseline(out: &mut BTreeSet<AclSpec>, pg: &str) {
    out.insert(metadata_allow(pg, BASELINE));
    for m in [
        format!("inport == @{pg} && udp && udp.dst == 67"),
        format!("inport == @{pg} && (udp.dst == 53 || tcp.dst == 53)"),
    ] {
        out.insert(AclSpec {
            place: Place::PortGroup,
            direction: Direction::FromVm,
            priority: BASELINE,
            matches: m,
            action: Action::AllowRelated,
            rule_id: None,
        });
    }
}

/// A VPC tier's network ACL: rules in order (the list arrives sorted by
/// `number`; earlier = higher priority), implicit deny after the last in
/// both families, the tier's own traffic unfiltered, DHCP/DNS always
/// allowed. IPv6 on the tier's link (link-local, multicast out) stays
/// open: northd passes ND and RA itself, and without link-local a VM
/// cannot even reach its router.
pub fn network_acls(
    port_group: &str,
    tier_cidr: Ipv4Cidr,
    tier_cidr6: Option<Ipv6Cidr>,
    rules: &[Rule],
) -> Vec<AclSpec> {
    let mut out = BTreeSet::new();
    let tier = tier_cidr.network();
    let to_vm = format!("outport == @{port_group} && ip4");
    let from_vm = format!("inport == @{port_group} && ip4");
    // rules::network_acl caps the list so that every rule keeps its own
    // priority, above the implicit deny and below the tier's own traffic.
    debug_assert!(rules.len() <= crate::payload::rules::MAX_ACL_RULES);
    for (i, r) in rules.iter().enumerate() {
        let priority = RULE + 8000 - i.min(7999) as u16;
        let action = if r.allow { Action::AllowRelated } else { Action::Drop };
        // A rule with IPv4 and IPv6 CIDRs is one ACL per family.
        for family in [Family::V4, Family::V6] {
            let ip = family.ip();
            let (direction, base, side) = if r.ingress {
                (Direction::ToPort, format!("outport == @{port_group} && {ip}"), "src")
            } else {
                // CloudStack hands egress ACL CIDRs in sourceCidrs; they are destinations.
                (Direction::FromVm, format!("inport == @{port_group} && {ip}"), "dst")
            };
            let Some(addr) = cidr_match(family, side, &r.source_cidrs) else { continue };
            let l4 = l4_match(family, r.protocol, r.ports, (r.icmp_type, r.icmp_code));
            let m = format!("{base}{addr}{l4}");
            out.insert(AclSpec { place: Place::PortGroup, direction, priority, matches: m, action, rule_id: r.id });
        }
    }
    let top = RULE + 9000;
    out.insert(metadata_allow(port_group, top));
    let to_vm6 = format!("outport == @{port_group} && ip6");
    let from_vm6 = format!("inport == @{port_group} && ip6");
    let mut own = vec![
        (Direction::ToPort, format!("{to_vm} && ip4.src == {tier}")),
        (Direction::FromVm, format!("{from_vm} && ip4.dst == {tier}")),
        (Direction::FromVm, format!("inport == @{port_group} && udp && udp.dst == 67")),
        (Direction::FromVm, format!("inport == @{port_group} && (udp.dst == 53 || tcp.dst == 53)")),
        (Direction::ToPort, format!("{to_vm6} && ip6.src == fe80::/10")),
        (Direction::FromVm, format!("{from_vm6} && ip6.dst == {{fe80::/10, ff00::/8}}")),
    ];
    if let Some(c6) = tier_cidr6 {
        let c6 = c6.network();
        own.push((Direction::ToPort, format!("{to_vm6} && ip6.src == {c6}")));
        own.push((Direction::FromVm, format!("{from_vm6} && ip6.dst == {c6}")));
    }
    for (direction, matches) in own {
        out.insert(AclSpec {
            place: Place::PortGroup,
            direction,
            priority: top,
            matches,
            action: Action::AllowRelated,
            rule_id: None,
        });
    }
    for (direction, matches) in [
        (Direction::ToPort, to_vm),
        (Direction::FromVm, from_vm),
        (Direction::ToPort, to_vm6),
        (Direction::FromVm, from_vm6),
    ] {
        out.insert(AclSpec {
            place: Place::PortGroup,
            direction,
            priority: DEFAULT,
            matches,
            action: Action::Drop,
            rule_id: None,
        });
    }
    out.into_iter().collect()
}

// ---------------------------------------------------------------- rows

/// The network's port group exists and holds `vm_ports` (every VM port of
/// the switch for the filter commands; the one NIC's port, possibly inserted
/// earlier in this very transaction, for NIC commands, so rules cover VMs
/// started after they were applied). The router peer is not a VM.
/// Membership is a weak set: deleted ports leave it by themselves.
pub fn ensure_port_group(plan: &mut Plan, scope: &Scope, vm_ports: &[Uuid], obs: &Observed) -> Result<()> {
    let uuid = scope.port_group_uuid();
    let ids = scope.ids(Kind::PortGroup);
    match obs.port_group() {
        None => {
            let mut row = Map::new();
            row.insert("name".into(), json!(scope.port_group_name()));
            row.insert("ports".into(), uuid_set(vm_ports.iter().copied()));
            row.insert("external_ids".into(), string_map(&ids));
            plan.insert(
                table::PORT_GROUP,
                Some(uuid),
                None,
                row,
                format!("insert port group {}", scope.port_group_name()),
            );
        }
        Some(pg) => {
            scope.require_owned(format!("Port_Group {}", pg.name), &pg.external_ids)?;
            let missing: Vec<Uuid> = vm_ports.iter().filter(|p| !obs.group_holds(**p)).copied().collect();
            if !missing.is_empty() {
                plan.link(
                    Parent::port_group(uuid, "ports"),
                    Existing::Read(scope.port_group_name()),
                    &missing,
                    format!("add {} ports to {}", missing.len(), pg.name),
                );
            }
            plan.mutate(table::PORT_GROUP, uuid, merge_ids(&ids, &pg.external_ids), format!("update {} ids", pg.name));
        }
    }
    Ok(())
}

/// Replace the network's ACLs of `kind` by `desired`: insert what is new,
/// unlink what is no longer wanted (OVSDB deletes unreferenced ACLs), keep
/// the rest untouched. `firewall` is recorded on the port group so later
/// NAT/forwarding/LB changes can recompute the firewall.
pub fn converge_acls(
    plan: &mut Plan,
    scope: &Scope,
    kind: Kind,
    desired: &[AclSpec],
    public_switch: Option<Uuid>,
    firewall: Option<&str>,
    obs: &Observed,
) -> Result<()> {
    let pg_uuid = scope.port_group_uuid();
    // A rule set replaces what we read: if another command changed the
    // group's ACLs or bookkeeping meanwhile, fail and re-plan rather than
    // leave the union of both rule sets.
    if let Some(pg) = obs.port_group() {
        let mut row = Map::new();
        row.insert("acls".into(), uuid_set(pg.acls.iter().copied()));
        row.insert("external_ids".into(), string_map(&pg.external_ids));
        plan.guard(crate::ovsdb::Operation::Wait {
            table: table::PORT_GROUP.into(),
            conditions: vec![crate::ovsdb::Condition::uuid_is(pg_uuid)],
            columns: vec!["acls".into(), "external_ids".into()],
            until: crate::ovsdb::WaitUntil::Equal,
            rows: vec![row],
            timeout_ms: Some(0),
        });
    }
    let current_pg: BTreeSet<Uuid> = obs.port_group().map(|pg| pg.acls.iter().copied().collect()).unwrap_or_default();
    let recorded_public: BTreeSet<Uuid> = obs
        .port_group()
        .and_then(|pg| pg.external_ids.get(key::PUBLIC_ACLS))
        .map(|s| s.split(',').filter_map(|u| u.parse().ok()).collect())
        .unwrap_or_default();
    let mut want_pg = BTreeSet::new();
    let mut want_public = BTreeSet::new();
    for spec in desired {
        let uuid = scope.acl_uuid(kind, &spec.key());
        let (wanted, current, parent, existing) = match spec.place {
            Place::PortGroup => (
                &mut want_pg,
                &current_pg,
                Parent::port_group(pg_uuid, "acls"),
                Existing::of(obs.port_group(), scope.port_group_name()),
            ),
            Place::PublicSwitch => {
                let Some(sw) = public_switch else { continue };
                // The observed public switch, or one this plan inserts.
                let read = obs.public_switch().filter(|p| p.uuid == sw);
                (
                    &mut want_public,
                    &recorded_public,
                    Parent::switch(sw, "acls"),
                    Existing::of(read, read.map(|p| p.name.clone()).unwrap_or_default()),
                )
            }
        };
        if !wanted.insert(uuid) || current.contains(&uuid) {
            continue;
        }
        let mut ids = scope.ids(kind);
        if let Some(id) = spec.rule_id {
            ids.insert(key::RULE_ID.into(), id.to_string());
        }
        let mut row = Map::new();
        row.insert("priority".into(), json!(spec.priority));
        row.insert("direction".into(), json!(spec.direction.as_str()));
        row.insert("match".into(), json!(spec.matches));
        row.insert("action".into(), json!(spec.action.as_str()));
        row.insert("external_ids".into(), string_map(&ids));
        plan.insert_child(
            table::ACL,
            uuid,
            row,
            parent,
            existing,
            format!("{} ACL {} {}", spec.direction.as_str(), spec.priority, spec.matches),
        );
    }
    // Only ACLs of ours leave the group: one an operator attached to it
    // (no owner tag of ours) is not part of any rule set we replace.
    let ours = |u: &&Uuid| obs.our_acls.as_ref().is_some_and(|o| o.contains(*u));
    let stale_pg: Vec<Uuid> = current_pg.difference(&want_pg).filter(ours).copied().collect();
    if !stale_pg.is_empty() && obs.port_group().is_some() {
        plan.unlink(Parent::port_group(pg_uuid, "acls"), &stale_pg, format!("remove {} ACLs", stale_pg.len()));
    }
    let stale_public: Vec<Uuid> = recorded_public.difference(&want_public).copied().collect();
    if let (false, Some(sw)) = (stale_public.is_empty(), public_switch) {
        plan.unlink(
            Parent::switch(sw, "acls"),
            &stale_public,
            format!("remove {} public-switch ACLs", stale_public.len()),
        );
    }
    // Bookkeeping on the port group: which public ACLs are ours, and the rules.
    let mut desired_ids: BTreeMap<String, String> = BTreeMap::new();
    let observed_ids = obs.port_group().map(|pg| pg.external_ids.clone()).unwrap_or_default();
    let list: Vec<String> = want_public.iter().map(Uuid::to_string).collect();
    desired_ids.insert(key::PUBLIC_ACLS.into(), list.join(","));
    if let Some(fw) = firewall {
        desired_ids.insert(key::FIREWALL.into(), fw.to_string());
    }
    let muts = super::map_mutations("external_ids", &desired_ids, &observed_ids, |k| {
        desired_ids.contains_key(k) || k == key::PUBLIC_ACLS
    });
    plan.mutate(table::PORT_GROUP, pg_uuid, muts, "record firewall state".into());
    Ok(())
}

/// The firewall rules recorded on the port group, if a firewall was applied.
pub fn recorded_firewall(obs: &Observed) -> Option<Value> {
    let raw = obs.port_group()?.external_ids.get(key::FIREWALL)?;
    serde_json::from_str(raw).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        Ipv4Cidr::parse("c", s).unwrap()
    }

    fn any(s: &str) -> IpCidr {
        IpCidr::parse("c", s).unwrap()
    }

    fn rule(ingress: bool, proto: RuleProto, ports: Option<(u16, u16)>, public: Option<&str>, src: &[&str]) -> Rule {
        Rule {
            id: Some(1),
            ingress,
            protocol: proto,
            ports,
            icmp_type: None,
            icmp_code: None,
            public_ip: public.map(|p| p.parse().unwrap()),
            source_cidrs: src.iter().map(|c| any(c)).collect(),
            dest_cidrs: vec![],
            allow: true,
        }
    }

    fn scope() -> FirewallScope {
        FirewallScope {
            port_group: "cs_net_42".into(),
            router_peer: "rtr-cs-net-42".into(),
            gateway_peer: Some("lsp-cs-router-42-pub".into()),
            guest_cidr: cidr("10.1.1.0/24"),
        }
    }

    #[test]
    fn ingress_rule_maps_public_to_private_through_forwarding() {
        let mut fwd = Forwarding::default();
        fwd.static_nat.insert("203.0.113.11".parse().unwrap(), "10.1.1.23".parse().unwrap());
        fwd.vips.insert(
            ("203.0.113.12".parse().unwrap(), Protocol::Tcp, 2222),
            [("10.1.1.23".parse().unwrap(), 22)].into(),
        );
        let rules = [
            rule(true, RuleProto::Tcp, Some((22, 22)), Some("203.0.113.11"), &["198.51.100.0/28"]),
            rule(true, RuleProto::Tcp, Some((2222, 2222)), Some("203.0.113.12"), &["0.0.0.0/0"]),
        ];
        let acls = firewall_acls(&scope(), true, &rules, &fwd);
        let text: Vec<String> =
            acls.iter().map(|a| format!("{:?} {} {:?} {}", a.place, a.priority, a.action, a.matches)).collect();
        let has = |s: &str| text.iter().any(|t| t.contains(s));
        assert!(has("PublicSwitch 1100 AllowStateless outport == \"lsp-cs-router-42-pub\" && ip4 && ip4.dst == 203.0.113.11 && ip4.src == 198.51.100.0/28 && tcp && tcp.dst == 22"), "{text:#?}");
        assert!(has("PublicSwitch 1100 AllowStateless outport == \"lsp-cs-router-42-pub\" && ip4 && ip4.dst == 203.0.113.12 && tcp && tcp.dst == 2222"), "{text:#?}");
        assert!(has("ip4.dst == 203.0.113.12 && tcp && tcp.flags[1] == 1 && tcp.flags[4] == 0"));
        assert!(has("PortGroup 1100 AllowRelated outport == @cs_net_42 && inport == \"rtr-cs-net-42\" && ip4 && ip4.dst == 10.1.1.23 && ip4.src == 198.51.100.0/28 && tcp && tcp.dst == 22"));
        assert!(has("ip4.dst == 10.1.1.23 && tcp && tcp.dst == 22"), "the forward's private port is allowed");
        assert!(has("PortGroup 1000 Drop outport == @cs_net_42 && inport == \"rtr-cs-net-42\" && ip4"));
        assert!(!has("FromVm"), "default allow with no egress rules: no egress ACL");
    }

    #[test]
    fn egress_default_deny_keeps_dhcp_and_dns() {
        let rules = [rule(false, RuleProto::Tcp, Some((80, 80)), None, &[])];
        let acls = firewall_acls(&scope(), false, &rules, &Forwarding::default());
        let text: Vec<String> = acls.iter().map(|a| format!("{} {:?} {}", a.priority, a.action, a.matches)).collect();
        assert!(
            text.iter().any(|t| t.starts_with(
                "1100 AllowRelated inport == @cs_net_42 && ip4 && ip4.dst != 10.1.1.0/24 && tcp && tcp.dst == 80"
            )),
            "{text:#?}"
        );
        assert!(text.iter().any(|t| t.starts_with("1000 Drop inport == @cs_net_42 && ip4 && ip4.dst != 10.1.1.0/24")));
        assert!(text.iter().any(|t| t.contains("udp.dst == 67")));
        assert!(text.iter().any(|t| t.contains("1200 AllowRelated") && t.contains("ip4.dst == 169.254.169.254")));
        let allow = firewall_acls(&scope(), true, &rules, &Forwarding::default());
        assert!(allow.iter().any(|a| a.direction == Direction::FromVm
            && a.action == Action::Drop
            && a.matches.contains("tcp.dst == 80")));
    }

    #[test]
    fn network_acl_order_and_implicit_deny() {
        let mut deny22 = rule(true, RuleProto::Tcp, Some((22, 22)), None, &[]);
        deny22.allow = false;
        let icmp = rule(true, RuleProto::Icmp, None, None, &["0.0.0.0/0"]);
        let acls = network_acls("cs_net_71", cidr("10.7.1.0/24"), None, &[icmp, deny22]);
        let prio = |needle: &str| acls.iter().find(|a| a.matches.contains(needle)).map(|a| a.priority).unwrap();
        assert!(prio("icmp4") > prio("tcp.dst == 22"), "lower number first");
        assert!(acls
            .iter()
            .any(|a| a.priority == DEFAULT && a.action == Action::Drop && a.direction == Direction::ToPort));
        assert!(acls.iter().any(|a| a.matches.contains("ip4.src == 10.7.1.0/24") && a.action == Action::AllowRelated));
    }

    /// Issue 9 #2: a `/0` next to other CIDRs keeps the rule "from anywhere"
    /// of its family; the other family's CIDRs neither widen nor empty it.
    #[test]
    fn cidr_lists_mean_what_they_say() {
        let l = |v: &[&str]| v.iter().map(|c| any(c)).collect::<Vec<_>>();
        assert_eq!(cidr_match(Family::V4, "src", &l(&["0.0.0.0/0", "10.0.0.0/8"])), Some(String::new()));
        assert_eq!(cidr_match(Family::V4, "src", &l(&["10.0.0.0/8", "0.0.0.0/0"])), Some(String::new()));
        assert_eq!(cidr_match(Family::V4, "src", &l(&["::/0"])), None, "IPv6 only: no IPv4 packet");
        assert_eq!(cidr_match(Family::V6, "src", &l(&["::/0", "10.0.0.0/8"])), Some(String::new()));
        assert_eq!(
            cidr_match(Family::V4, "dst", &l(&["10.0.0.5/8", "2001:db8::/32", "192.0.2.1"])),
            Some(" && ip4.dst == {10.0.0.0/8, 192.0.2.1/32}".into())
        );
        assert_eq!(cidr_match(Family::V6, "src", &l(&["2001:db8::5/32"])), Some(" && ip6.src == 2001:db8::/32".into()));
        assert_eq!(cidr_match(Family::V4, "src", &[]), Some(String::new()), "no CIDR is 0.0.0.0/0");
        assert_eq!(cidr_match(Family::V6, "src", &[]), None);

        let mut deny = rule(true, RuleProto::Tcp, Some((22, 22)), None, &["0.0.0.0/0", "10.0.0.0/8"]);
        deny.allow = false;
        let v6only = rule(true, RuleProto::Icmp, None, None, &["2001:db8::/32"]);
        let acls = network_acls("cs_net_71", cidr("10.7.1.0/24"), None, &[deny, v6only]);
        assert!(
            acls.iter().any(
                |a| a.action == Action::Drop && a.matches == "outport == @cs_net_71 && ip4 && tcp && tcp.dst == 22"
            ),
            "{acls:#?}"
        );
        assert!(
            acls.iter().any(|a| a.matches == "outport == @cs_net_71 && ip6 && ip6.src == 2001:db8::/32 && icmp6"),
            "{acls:#?}"
        );
        assert!(!acls.iter().any(|a| a.matches.contains("icmp4")), "an IPv6-only rule matches no IPv4: {acls:#?}");

        // IPv6 has an implicit deny too, with the tier's own link open.
        let c6 = Ipv6Cidr::parse("c", "fd00:7:1::/64").ok();
        let acls = network_acls("cs_net_71", cidr("10.7.1.0/24"), c6, &[]);
        let has = |p: u16, a: Action, m: &str| acls.iter().any(|x| x.priority == p && x.action == a && x.matches == m);
        assert!(has(DEFAULT, Action::Drop, "outport == @cs_net_71 && ip6"), "{acls:#?}");
        assert!(has(DEFAULT, Action::Drop, "inport == @cs_net_71 && ip6"), "{acls:#?}");
        assert!(has(RULE + 9000, Action::AllowRelated, "outport == @cs_net_71 && ip6 && ip6.src == fd00:7:1::/64"));
        assert!(has(
            RULE + 9000,
            Action::AllowRelated,
            "inport == @cs_net_71 && ip6 && ip6.dst == {fe80::/10, ff00::/8}"
        ));

        // Firewall: an IPv6-only source list opens nothing on an IPv4 public IP.
        let mut fwd = Forwarding::default();
        fwd.static_nat.insert("203.0.113.11".parse().unwrap(), "10.1.1.23".parse().unwrap());
        let r = rule(true, RuleProto::Tcp, Some((22, 22)), Some("203.0.113.11"), &["::/0"]);
        let acls = firewall_acls(&scope(), true, &[r], &fwd);
        assert!(!acls.iter().any(|a| a.matches.contains("tcp.dst == 22")), "{acls:#?}");
    }
}
