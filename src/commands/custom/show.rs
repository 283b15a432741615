//! Read-only diagnostics: `show` (the network's or VPC's OVN picture with
//! what is missing or drifted) and `list-firewall-rules`.
//!
//! One read-only NB transaction of rows found by `_uuid` or by our owner
//! tag plus the network's (or router's) id, and, when `ovn.sb.connection`
//! is configured, one SB transaction for the port bindings (`Port_Binding`
//! copies the port's `external_ids`, so the same tag finds them) and the
//! chassis names. Nothing is written.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::Target;
use crate::commands::Context;
use crate::error::Result;
use crate::nb::ids::RouterScope;
use crate::nb::ids::Scope;
use crate::nb::rows::{all_rows, first_row, select_tagged, DhcpOptions, Dns, Port, PortGroup, Router, Switch};
use crate::nb::{key, table, Kind, DB, SB_DB};
use crate::ovsdb::value::{as_uuid, optional_uuid, string_map_of};
use crate::ovsdb::Operation;
use crate::plan::pbr;

/// `show` lists at most this many ports and problems (every port is still
/// checked): the answer stays well under the message bound.
const MAX_PORTS: usize = 200;
const MAX_PROBLEMS: usize = 100;

/// The rows `show` reads, typed where rows.rs has a view.
#[derive(Default)]
struct Picture {
    switch: Option<Switch>,
    ports: Vec<(Port, Map<String, Value>)>,
    dhcp: Vec<DhcpOptions>,
    dns: Option<Dns>,
    port_group: Option<PortGroup>,
    acls: Vec<Map<String, Value>>,
    router: Option<Router>,
    router_ports: Vec<Map<String, Value>>,
    nats: Vec<Map<String, Value>>,
    lbs: Vec<Map<String, Value>>,
    policies: Vec<Map<String, Value>>,
}

fn str_of(row: &Map<String, Value>, col: &str) -> String {
    row.get(col).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn ids_of(row: &Map<String, Value>) -> BTreeMap<String, String> {
    row.get("external_ids").map(string_map_of).unwrap_or_default()
}

fn bool_of(row: &Map<String, Value>, col: &str) -> Option<bool> {
    match row.get(col)? {
        Value::Bool(b) => Some(*b),
        v => crate::ovsdb::value::set_items(v).first().and_then(|x| x.as_bool()),
    }
}

/// Which rows to read for the target; `(scope, router)`.
fn subjects(target: &Target) -> (Option<&Scope>, &RouterScope) {
    match target {
        Target::Network { scope, rs } => (Some(scope), rs),
        Target::Vpc { rs, network } => (network.as_ref(), rs),
    }
}

fn read_nb(ctx: &Context, target: &Target) -> Result<Picture> {
    let (scope, rs) = subjects(target);
    let owner = &ctx.owner;
    let (rk, rv) = rs.tag();
    let mut ops: Vec<Operation> = Vec::new();
    if let Some(s) = scope {
        let id = s.network_id.to_string();
        let mut port_cols = Port::COLUMNS.to_vec();
        port_cols.extend(["up", "type"]);
        ops.push(Switch::select(s.switch_uuid()));
        ops.push(select_tagged(table::LOGICAL_SWITCH_PORT, owner, key::NETWORK_ID, &id, &port_cols));
        ops.push(DhcpOptions::select_by_network(owner, s.network_id));
        ops.push(Dns::select(s.dns_uuid()));
        ops.push(PortGroup::select(s.port_group_uuid()));
        ops.push(select_tagged(
            table::ACL,
            owner,
            key::NETWORK_ID,
            &id,
            &["_uuid", "direction", "priority", "match", "action", "external_ids"],
        ));
    }
    let base = ops.len();
    ops.push(Router::select(rs.uuid()));
    ops.push(select_tagged(table::LOGICAL_ROUTER_PORT, owner, rk, &rv, &["_uuid", "name", "networks", "external_ids"]));
    ops.push(select_tagged(
        table::NAT,
        owner,
        rk,
        &rv,
        &["_uuid", "type", "external_ip", "logical_ip", "external_ids"],
    ));
    ops.push(select_tagged(
        table::LOAD_BALANCER,
        owner,
        rk,
        &rv,
        &["_uuid", "name", "protocol", "vips", "external_ids"],
    ));
    ops.push(select_tagged(
        table::LOGICAL_ROUTER_POLICY,
        owner,
        rk,
        &rv,
        &["_uuid", "priority", "match", "action", "nexthops", "external_ids"],
    ));
    let mut client = ctx.connect()?;
    let r = client.transact(DB, &ops)?;
    let rows = |i: usize| all_rows(&r[i]).cloned().collect::<Vec<_>>();
    let mut p = Picture::default();
    if scope.is_some() {
        p.switch = first_row(&r[0]).and_then(Switch::from_row);
        p.ports = all_rows(&r[1]).filter_map(|row| Some((Port::from_row(row)?, row.clone()))).collect();
        p.dhcp = all_rows(&r[2]).filter_map(DhcpOptions::from_row).collect();
        p.dns = first_row(&r[3]).and_then(Dns::from_row);
        p.port_group = first_row(&r[4]).and_then(PortGroup::from_row);
        p.acls = rows(5);
    }
    p.router = first_row(&r[base]).and_then(Router::from_row);
    p.router_ports = rows(base + 1);
    p.nats = rows(base + 2);
    p.lbs = rows(base + 3);
    p.policies = rows(base + 4);
    Ok(p)
}

/// Port name → (up, chassis name) from the SB, or why it could not be read.
type Bindings = std::result::Result<BTreeMap<String, (Option<bool>, Option<String>)>, String>;

fn read_sb(ctx: &Context, scope: &Scope) -> Bindings {
    let Some(remote) = ctx.config.sb.clone() else {
        return Err("ovn.sb.connection is not configured: chassis unknown (NB `up` shown)".into());
    };
    let run = || -> crate::error::Result<_> {
        let mut client = ctx.connect_sb(std::time::Duration::from_secs(10))?;
        let ops = [
            select_tagged(
                "Port_Binding",
                &ctx.owner,
                key::NETWORK_ID,
                &scope.network_id.to_string(),
                &["logical_port", "chassis", "up"],
            ),
            Operation::Select {
                table: "Chassis".into(),
                conditions: vec![],
                columns: Some(vec!["_uuid".into(), "name".into(), "hostname".into()]),
            },
        ];
        Ok(client.transact(SB_DB, &ops)?)
    };
    let r = run().map_err(|e| format!("OVN Southbound ({remote}) unreadable: {e}"))?;
    let chassis: BTreeMap<Uuid, String> =
        all_rows(&r[1]).filter_map(|row| Some((row.get("_uuid").and_then(as_uuid)?, str_of(row, "name")))).collect();
    Ok(all_rows(&r[0])
        .map(|row| {
            let ch =
                row.get("chassis").and_then(optional_uuid).map(|u| chassis.get(&u).cloned().unwrap_or(u.to_string()));
            (str_of(row, "logical_port"), (bool_of(row, "up"), ch))
        })
        .collect())
}

fn vips(lb: &Map<String, Value>) -> Value {
    let v = lb.get("vips").map(string_map_of).unwrap_or_default();
    json!({"name": str_of(lb, "name"), "protocol": lb.get("protocol").and_then(crate::ovsdb::value::optional_string),
           "vips": v})
}

pub(super) fn show(ctx: &Context, target: &Target) -> Result<Value> {
    let p = read_nb(ctx, target)?;
    let (scope, rs) = subjects(target);
    let mut problems: Vec<String> = Vec::new();
    let mut out = Map::new();

    if let Some(s) = scope {
        let bindings = read_sb(ctx, s);
        if let Err(why) = &bindings {
            out.insert("southbound".into(), json!(why));
        }
        match &p.switch {
            None => problems.push(format!("Logical_Switch {} is missing", s.switch_name())),
            Some(sw) => {
                out.insert(
                    "switch".into(),
                    json!({"name": sw.name, "uuid": sw.uuid.to_string(), "ports": sw.ports.len()}),
                );
            }
        }
        let on_switch: BTreeSet<Uuid> = p.switch.iter().flat_map(|sw| sw.ports.iter().copied()).collect();
        let in_group: Option<BTreeSet<Uuid>> = p.port_group.as_ref().map(|g| g.ports.iter().copied().collect());
        let dhcp_uuids: BTreeSet<Uuid> = p.dhcp.iter().map(|d| d.uuid).collect();
        let mut port_ips: BTreeSet<String> = BTreeSet::new();
        let mut ports = Vec::new();
        for (port, row) in &p.ports {
            let kind = port.external_ids.get(key::KIND).cloned().unwrap_or_default();
            let mut item = Map::new();
            item.insert("name".into(), json!(port.name));
            item.insert("kind".into(), json!(kind));
            item.insert("addresses".into(), json!(port.addresses));
            for a in &port.addresses {
                port_ips.extend(a.split_whitespace().skip(1).map(str::to_string));
            }
            // A router's gateway peer carries the network's id but sits on the public switch.
            if kind != Kind::GatewayPeer.as_str() && !on_switch.contains(&port.uuid) {
                problems.push(format!("port {} is not on switch {}", port.name, s.switch_name()));
            }
            if kind == Kind::Nic.as_str() {
                let nb_up = bool_of(row, "up");
                let (up, chassis) = match &bindings {
                    Ok(b) => b.get(&port.name).cloned().map(|(u, c)| (u.or(nb_up), c)).unwrap_or((nb_up, None)),
                    Err(_) => (nb_up, None),
                };
                item.insert("up".into(), json!(up.unwrap_or(false)));
                if let Some(c) = &chassis {
                    item.insert("chassis".into(), json!(c));
                }
                let bound = if bindings.is_ok() { chassis.is_some() } else { up == Some(true) };
                if !bound || up != Some(true) {
                    problems.push(format!("port {} is not up on any chassis (VM stopped or not plugged?)", port.name));
                }
                if let Some(g) = &in_group {
                    if !g.contains(&port.uuid) {
                        problems.push(format!(
                            "port {} is missing from port group {}",
                            port.name,
                            p.port_group.as_ref().map(|g| g.name.as_str()).unwrap_or("")
                        ));
                    }
                }
                match port.dhcpv4_options {
                    Some(d) if !dhcp_uuids.contains(&d) => {
                        problems.push(format!("port {} points to DHCP options {d} that are not ours", port.name))
                    }
                    None if !p.dhcp.is_empty() => problems
                        .push(format!("port {} has no DHCP options although the network serves DHCP", port.name)),
                    _ => {}
                }
                if let Some(d) = port.dhcpv4_options {
                    item.insert("dhcpv4_options".into(), json!(d.to_string()));
                }
            }
            ports.push(Value::Object(item));
        }
        let total = ports.len();
        ports.truncate(MAX_PORTS);
        if total > MAX_PORTS {
            out.insert("ports_shown".into(), json!(format!("{MAX_PORTS} of {total}")));
        }
        out.insert("ports".into(), Value::Array(ports));
        out.insert(
            "dhcp".into(),
            Value::Array(
                p.dhcp
                    .iter()
                    .map(|d| {
                        json!({"uuid": d.uuid.to_string(), "cidr": d.cidr,
                            "kind": d.external_ids.get(key::KIND), "router": d.options.get("router")})
                    })
                    .collect(),
            ),
        );
        match (&p.dns, &p.switch) {
            (Some(dns), Some(sw)) => {
                if !sw.dns_records.contains(&dns.uuid) {
                    problems.push(format!("DNS row {} is not linked from {}", dns.uuid, sw.name));
                }
                for (name, ip) in &dns.records {
                    if !name.ends_with(".arpa") && !ip.split_whitespace().any(|i| port_ips.contains(i)) {
                        problems.push(format!("DNS record {name} → {ip} matches no port of the network"));
                    }
                }
                out.insert("dns".into(), json!({"uuid": dns.uuid.to_string(), "records": dns.records.len()}));
            }
            (Some(dns), None) => {
                out.insert("dns".into(), json!({"uuid": dns.uuid.to_string()})).map(|_| ()).unwrap_or(())
            }
            _ => {}
        }
        if let Some(g) = &p.port_group {
            out.insert("port_group".into(), json!({"name": g.name, "ports": g.ports.len(), "acls": g.acls.len()}));
            let linked: BTreeSet<Uuid> = g.acls.iter().copied().collect();
            let public: BTreeSet<Uuid> = g
                .external_ids
                .get(key::PUBLIC_ACLS)
                .map(|l| l.split(',').filter_map(|u| u.parse().ok()).collect())
                .unwrap_or_default();
            for a in &p.acls {
                let u = a.get("_uuid").and_then(as_uuid).unwrap_or_default();
                if !linked.contains(&u) && !public.contains(&u) {
                    problems.push(format!("ACL {u} ({}) is linked nowhere", str_of(a, "match")));
                }
            }
        }
        let mut dirs: BTreeMap<String, usize> = BTreeMap::new();
        for a in &p.acls {
            *dirs.entry(str_of(a, "direction")).or_default() += 1;
        }
        out.insert("acls".into(), json!(dirs));
    }

    // The router: an isolated network's own, or the VPC's.
    match &p.router {
        None if matches!(target, Target::Vpc { .. }) => {
            problems.push(format!("Logical_Router {} is missing", rs.name()))
        }
        None => {
            out.insert("router".into(), Value::Null);
        }
        Some(r) => {
            let ports: Vec<Value> = p
                .router_ports
                .iter()
                .map(|lrp| {
                    let u = lrp.get("_uuid").and_then(as_uuid).unwrap_or_default();
                    if !r.ports.contains(&u) {
                        problems.push(format!("router port {} is not on {}", str_of(lrp, "name"), r.name));
                    }
                    json!({"name": str_of(lrp, "name"),
                           "networks": lrp.get("networks").map(crate::ovsdb::value::string_set_of)})
                })
                .collect();
            let nats: Vec<Value> = p
                .nats
                .iter()
                .map(|n| {
                    let u = n.get("_uuid").and_then(as_uuid).unwrap_or_default();
                    if !r.nat.contains(&u) {
                        problems.push(format!("NAT {} {} is not on {}", str_of(n, "type"), str_of(n, "external_ip"), r.name));
                    }
                    json!({"type": str_of(n, "type"), "external_ip": str_of(n, "external_ip"), "logical_ip": str_of(n, "logical_ip")})
                })
                .collect();
            let stored = match scope {
                Some(_) if matches!(target, Target::Network { .. }) => {
                    p.switch.as_ref().and_then(|sw| sw.external_ids.get(key::PBR))
                }
                _ => r.external_ids.get(key::PBR),
            };
            let expected = stored.map(|raw| crate::payload::pbr::PbrState::from_json(key::PBR, raw)).transpose()?;
            let present: BTreeSet<Uuid> = r.policies.iter().copied().collect();
            // A VM next hop must take packets for other addresses: OVN's
            // IP port security on its port drops them (docs/routing.md).
            for pol in expected.as_ref().map(pbr::compile).unwrap_or_default() {
                let Some(nh) = pol.nexthop else { continue };
                let nh = nh.to_string();
                let port = p
                    .ports
                    .iter()
                    .map(|(port, _)| port)
                    .find(|port| port.addresses.iter().any(|a| a.split_whitespace().skip(1).any(|ip| ip == nh)));
                if let Some(port) = port {
                    if port.port_security.iter().any(|ps| ps.split_whitespace().skip(1).any(|ip| ip == nh)) {
                        problems.push(format!(
                            "next hop {nh} (port {}) has IP port security: OVN drops the packets rerouted to it",
                            port.name
                        ));
                    }
                }
            }
            for pol in expected.as_ref().map(pbr::compile).unwrap_or_default() {
                if !present.contains(&pol.uuid(rs)) {
                    problems.push(format!(
                        "policy {} {} {} ({}) is missing",
                        pol.priority, pol.matches, pol.action, pol.rule
                    ));
                }
            }
            let policies: Vec<Value> = p
                .policies
                .iter()
                .map(|x| {
                    json!({"priority": x.get("priority"), "match": str_of(x, "match"), "action": str_of(x, "action"),
                           "nexthops": x.get("nexthops").map(crate::ovsdb::value::string_set_of),
                           "rule": ids_of(x).get(key::PBR_RULE)})
                })
                .collect();
            let lbs: Vec<Value> = p.lbs.iter().map(vips).collect();
            let public_ips: BTreeMap<&str, &String> =
                r.external_ids.iter().filter_map(|(k, v)| Some((k.strip_prefix(key::PUBLIC_IP_PREFIX)?, v))).collect();
            out.insert(
                "router".into(),
                json!({"name": r.name, "uuid": r.uuid.to_string(), "ports": ports, "public_ips": public_ips,
                       "nat": nats, "load_balancers": lbs, "policies": policies}),
            );
        }
    }
    out.insert("healthy".into(), json!(problems.is_empty()));
    if problems.len() > MAX_PROBLEMS {
        let more = problems.len() - MAX_PROBLEMS;
        problems.truncate(MAX_PROBLEMS);
        problems.push(format!("… and {more} more"));
    }
    out.insert("problems".into(), json!(problems));
    Ok(Value::Object(out))
}

/// The firewall as applied: CloudStack's rules recorded on the port group
/// and the ACL rows they compiled to, per direction.
pub(super) fn list_firewall_rules(ctx: &Context, target: &Target) -> Result<Value> {
    let p = read_nb(ctx, target)?;
    let recorded = p
        .port_group
        .as_ref()
        .and_then(|g| g.external_ids.get(key::FIREWALL))
        .and_then(|raw| serde_json::from_str::<Value>(raw).ok());
    let mut by_dir: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut acls = p.acls.clone();
    acls.sort_by_key(|a| std::cmp::Reverse(a.get("priority").and_then(Value::as_i64).unwrap_or_default()));
    for a in &acls {
        let ids = ids_of(a);
        by_dir.entry(str_of(a, "direction")).or_default().push(json!({
            "priority": a.get("priority"), "match": str_of(a, "match"), "action": str_of(a, "action"),
            "kind": ids.get(key::KIND), "rule_id": ids.get(key::RULE_ID)}));
    }
    Ok(json!({"firewall_rules": recorded, "acls": by_dir}))
}
