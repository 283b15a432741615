//! `trace`: a packet through the network's logical pipeline, by
//! `ovn-trace` against the SB, with the verdict (delivered where, or
//! dropped by which ACL or policy) named from our own rows.
//!
//! The packet enters where it would in reality: a VM's port on the guest
//! switch (`from` = NIC uuid or one of the network's VM addresses), or the
//! public switch's localnet port of the router's gateway for any other
//! source (a client outside). TCP is traced as a SYN and every connection
//! as new (`--ct=new`), which is what filtering decides on.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::Target;
use crate::commands::Context;
use crate::error::{Error, Result};
use crate::nb::ids::PublicNet;
use crate::nb::rows::{all_rows, first_row, select_tagged, Port, RouterPort, Switch};
use crate::nb::{key, table, DB};
use crate::ovsdb::value::{string_map_of, uuid};
use crate::ovsdb::{Condition, Function, Operation};
use crate::payload::pbr::Params;
use crate::payload::types::{ipv4, nic_uuid};

/// Longest an `ovn-trace` run may take (it reads the whole SB first).
const TRACE_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of the raw trace returned with the verdict.
const MAX_LINES: usize = 200;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum From {
    Nic(String),
    Ip(Ipv4Addr),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Request {
    pub from: From,
    pub to: Ipv4Addr,
    pub protocol: &'static str,
    pub port: Option<u16>,
}

/// Validated before connecting.
pub(super) fn request(p: &Params) -> Result<Request> {
    let raw_from = p.require(&["from", "source", "src"])?;
    let from =
        if raw_from.contains('-') { From::Nic(nic_uuid("from", raw_from)?) } else { From::Ip(ipv4("from", raw_from)?) };
    let to = ipv4("to", p.require(&["to", "destination", "dst"])?)?;
    let protocol = match p.get(&["protocol", "proto"]).unwrap_or("tcp").to_ascii_lowercase().as_str() {
        "tcp" => "tcp",
        "udp" => "udp",
        "icmp" | "icmp4" => "icmp",
        other => return Err(Error::field("protocol", format!("expected tcp, udp or icmp, got {other:?}"))),
    };
    let port = match (protocol, p.get(&["port", "dport", "destination-port"])) {
        ("icmp", _) => None,
        (_, None) => return Err(Error::Missing("action parameter port".into())),
        (_, Some(raw)) => Some(
            raw.parse::<u16>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| Error::field("port", format!("expected 1-65535, got {raw:?}")))?,
        ),
    };
    Ok(Request { from, to, protocol, port })
}

/// A VPC-level call knows no tier: a VM source must be traced on its tier
/// network (a call on the tier), or it would be taken for an outside host.
pub(super) fn vpc_level(req: &Request, vpc_cidr: Option<crate::payload::types::Ipv4Cidr>) -> Result<()> {
    let inside = match &req.from {
        From::Nic(_) => true,
        From::Ip(ip) => vpc_cidr.is_some_and(|c| c.contains(*ip)),
    };
    if inside {
        return Err(Error::field("from", "a VM source is traced on its tier: run the action on the tier network"));
    }
    Ok(())
}

/// Where the packet enters and with which L2 addresses.
struct Entry {
    datapath: String,
    inport: String,
    eth_src: String,
    eth_dst: String,
    ip_src: Ipv4Addr,
}

fn first_ip(addresses: &[String]) -> Option<(String, Ipv4Addr)> {
    addresses.iter().find_map(|a| {
        let mut w = a.split_whitespace();
        let mac = w.next()?.to_string();
        w.find_map(|x| x.parse().ok()).map(|ip| (mac, ip))
    })
}

fn entry(ctx: &Context, target: &Target, req: &Request) -> Result<(Entry, Vec<Map<String, Value>>)> {
    let (scope, rs) = match target {
        Target::Network { scope, rs } => (Some(scope), rs),
        Target::Vpc { rs, network } => (network.as_ref(), rs),
    };
    let owner = &ctx.owner;
    let (rk, rv) = rs.tag();
    let mut ops = vec![
        RouterPort::select(rs.gateway_port_uuid()),
        // The public switch holding the gateway peer (a scan of
        // Logical_Switch, as teardown does; names only).
        Operation::Select {
            table: table::LOGICAL_SWITCH.into(),
            conditions: vec![Condition("ports".into(), Function::Includes, uuid(rs.gateway_peer_uuid()))],
            columns: Some(vec!["_uuid".into(), "name".into(), "external_ids".into()]),
        },
        select_tagged(
            table::ACL,
            owner,
            rk,
            &rv,
            &["_uuid", "priority", "direction", "match", "action", "external_ids"],
        ),
        select_tagged(
            table::LOGICAL_ROUTER_POLICY,
            owner,
            rk,
            &rv,
            &["_uuid", "priority", "match", "action", "external_ids"],
        ),
    ];
    if let Some(s) = scope {
        let id = s.network_id.to_string();
        ops.push(select_tagged(table::LOGICAL_SWITCH_PORT, owner, key::NETWORK_ID, &id, Port::COLUMNS));
        ops.push(RouterPort::select(s.guest_port_uuid()));
        ops.push(select_tagged(
            table::ACL,
            owner,
            key::NETWORK_ID,
            &id,
            &["_uuid", "priority", "direction", "match", "action", "external_ids"],
        ));
    }
    let mut client = ctx.connect()?;
    let r = client.transact(DB, &ops)?;
    let gateway = first_row(&r[0]).and_then(RouterPort::from_row);
    let public = first_row(&r[1]).and_then(Switch::from_row);
    let mut rules: Vec<Map<String, Value>> = all_rows(&r[2]).cloned().collect();
    rules.extend(all_rows(&r[3]).cloned());
    let ports: Vec<Port> = if scope.is_some() { all_rows(&r[4]).filter_map(Port::from_row).collect() } else { vec![] };
    let guest = if scope.is_some() { first_row(&r[5]).and_then(RouterPort::from_row) } else { None };
    if scope.is_some() {
        for a in all_rows(&r[6]) {
            if !rules.iter().any(|x| x.get("_uuid") == a.get("_uuid")) {
                rules.push(a.clone());
            }
        }
    }
    let nic = ports.iter().filter(|p| p.external_ids.get(key::KIND).map(String::as_str) == Some("nic"));
    let from_port = match &req.from {
        From::Nic(n) => Some(
            nic.clone()
                .find(|p| p.name == *n)
                .ok_or_else(|| Error::field("from", format!("NIC {n} has no port on this network")))?,
        ),
        From::Ip(ip) => nic.clone().find(|p| first_ip(&p.addresses).is_some_and(|(_, a)| a == *ip)),
    };
    let entry = match (from_port, scope) {
        (Some(p), Some(s)) => {
            let (mac, ip) = first_ip(&p.addresses)
                .ok_or_else(|| Error::field("from", format!("port {} has no IPv4 address", p.name)))?;
            // Same network: straight to the destination's MAC; else the router.
            let eth_dst = match ports.iter().find_map(|q| first_ip(&q.addresses).filter(|(_, a)| *a == req.to)) {
                Some((m, _)) => m,
                None => guest.as_ref().map(|g| g.mac.clone()).ok_or_else(|| {
                    Error::field("to", format!("{} is off the network and the network has no router", req.to))
                })?,
            };
            Entry { datapath: s.switch_name(), inport: p.name.clone(), eth_src: mac, eth_dst, ip_src: ip }
        }
        (Some(_), None) => return Err(Error::Internal("a VM port found without its network".into())),
        (None, _) => {
            let (Some(gw), Some(sw)) = (gateway, public) else {
                return Err(Error::field(
                    "from",
                    format!(
                        "{} is no VM of this network, and {} has no public gateway to enter from",
                        raw(&req.from),
                        rs.name()
                    ),
                ));
            };
            let net = PublicNet::from_switch_ids(&sw.external_ids)
                .ok_or_else(|| Error::Internal(format!("public switch {} lacks its network ids", sw.name)))?;
            let From::Ip(ip) = req.from else {
                return Err(Error::Internal("a NIC source is found or refused above".into()));
            };
            Entry {
                datapath: sw.name.clone(),
                inport: net.localnet_name(&rs.owner),
                eth_src: "02:00:00:00:00:01".into(),
                eth_dst: gw.mac.clone(),
                ip_src: ip,
            }
        }
    };
    Ok((entry, rules))
}

fn raw(f: &From) -> String {
    match f {
        From::Nic(n) => n.clone(),
        From::Ip(i) => i.to_string(),
    }
}

fn microflow(e: &Entry, req: &Request) -> String {
    let mut m = format!(
        "inport == \"{}\" && eth.src == {} && eth.dst == {} && ip4.src == {} && ip4.dst == {} && ip.ttl == 64",
        e.inport, e.eth_src, e.eth_dst, e.ip_src, req.to
    );
    match (req.protocol, req.port) {
        ("tcp", Some(p)) => m.push_str(&format!(" && tcp && tcp.src == 40000 && tcp.dst == {p} && tcp.flags == 2")),
        ("udp", Some(p)) => m.push_str(&format!(" && udp && udp.src == 40000 && udp.dst == {p}")),
        _ => m.push_str(" && icmp4 && icmp4.type == 8 && icmp4.code == 0"),
    }
    m
}

fn find_in_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Run `ovn-trace`, killed at the deadline.
fn run_trace(ctx: &Context, e: &Entry, flow: &str) -> Result<String> {
    let sb = ctx
        .config
        .sb
        .clone()
        .ok_or_else(|| Error::Config("trace needs the SB: set the registration detail ovn.sb.connection".into()))?;
    let bin = find_in_path("ovn-trace").ok_or_else(|| {
        Error::Config("ovn-trace is not installed on this management server (package ovn-common)".into())
    })?;
    let tls = ctx.config.sb_tls.clone();
    let mut c = Command::new(bin);
    c.arg(format!("--db={sb}"));
    if let Some(k) = &tls.private_key {
        c.arg(format!("--private-key={}", k.display()));
    }
    if let Some(k) = &tls.certificate {
        c.arg(format!("--certificate={}", k.display()));
    }
    if let Some(k) = &tls.ca_cert {
        c.arg(format!("--ca-cert={}", k.display()));
    }
    // One --ct per conntrack lookup on the way (switch, router, switch, ...).
    c.arg("--no-friendly-names").args(["--ct=new"; 6]).arg(&e.datapath).arg(flow);
    let limit = ctx.deadline.remaining()?.min(TRACE_TIMEOUT);
    let run = crate::output::run_captured(c, limit).map_err(|e| Error::Config(format!("cannot run ovn-trace: {e}")))?;
    if run.status.is_none() {
        return Err(Error::Ovsdb(crate::ovsdb::Error::DeadlineExceeded));
    }
    let (text, complaints) = (run.out, run.err);
    // ovn-trace exits 0 even when it cannot parse the flow.
    if text.trim().is_empty() || complaints.contains("error parsing flow") || complaints.contains("connection failed") {
        let why = complaints.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output").to_string();
        return Err(Error::Config(format!("ovn-trace against {sb} failed: {why}")));
    }
    Ok(text)
}

/// One logical flow ovn-trace printed: stage, match, priority, actions.
struct Step {
    stage: String,
    matches: String,
    priority: i64,
    actions: Vec<String>,
}

fn steps(trace: &str) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    for line in trace.lines() {
        let t = line.trim();
        // ` 4. ls_out_acl (northd.c:6588): <match>, priority 2000, uuid 23682d65`
        let header = t.split_once(". ").filter(|(n, _)| n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty());
        if let Some((_, rest)) = header {
            if let (Some((stage, tail)), true) = (rest.split_once(" ("), rest.contains(", priority ")) {
                let body = tail.split_once("): ").map(|(_, b)| b).unwrap_or(tail);
                let (m, prio) = body.rsplit_once(", priority ").unwrap_or((body, "0"));
                let priority = prio.split(',').next().and_then(|p| p.trim().parse().ok()).unwrap_or(0);
                out.push(Step { stage: stage.to_string(), matches: m.to_string(), priority, actions: Vec::new() });
                continue;
            }
        }
        if let Some(s) = out.last_mut() {
            if !t.is_empty() && !t.starts_with("---") && !t.starts_with("ingress(") && !t.starts_with("egress(") {
                s.actions.push(t.to_string());
            }
        }
    }
    out
}

/// Ours among the ACL/policy rows whose match the flow embeds.
fn culprit(step: &Step, rows: &[Map<String, Value>], offset: i64) -> Option<Value> {
    rows.iter()
        .filter(|r| {
            let m = r.get("match").and_then(Value::as_str).unwrap_or_default();
            let p = r.get("priority").and_then(Value::as_i64).unwrap_or(-1);
            !m.is_empty() && step.matches.contains(m) && p + offset == step.priority
        })
        .max_by_key(|r| r.get("match").and_then(Value::as_str).map(str::len))
        .map(|r| {
            let ids = r.get("external_ids").map(string_map_of).unwrap_or_default();
            json!({"uuid": r.get("_uuid").and_then(crate::ovsdb::value::as_uuid).map(|u| u.to_string()),
                   "priority": r.get("priority"), "direction": r.get("direction").and_then(Value::as_str),
                   "match": r.get("match"), "action": r.get("action"),
                   "kind": ids.get(key::KIND), "rule_id": ids.get(key::RULE_ID), "pbr_rule": ids.get(key::PBR_RULE)})
        })
}

/// The verdict from the detailed trace.
fn verdict(trace: &str, rows: &[Map<String, Value>]) -> Value {
    let steps = steps(trace);
    let drop = steps.iter().find(|s| s.actions.iter().any(|a| a == "drop;" || a.starts_with("drop;")));
    if let Some(s) = drop {
        let acl = s.stage.contains("_acl");
        // northd places ACLs 1000 above their own priority.
        let by = if acl {
            culprit(s, rows, 1000)
        } else if s.stage.contains("policy") {
            culprit(s, rows, 0)
        } else {
            None
        };
        let what = if acl {
            "ACL"
        } else if s.stage.contains("policy") {
            "policy"
        } else {
            "stage"
        };
        return json!({"verdict": "dropped", "by": what, "stage": s.stage, "flow": s.matches,
                      "flow_priority": s.priority, "rule": by});
    }
    let outputs: Vec<(String, String)> = trace
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("/* output to \"")?;
            let (port, tail) = rest.split_once('"')?;
            let kind = tail.split('"').nth(1).unwrap_or_default().to_string();
            Some((port.to_string(), kind))
        })
        .collect();
    match outputs.iter().rev().find(|(_, kind)| kind != "patch") {
        Some((port, kind)) => json!({"verdict": "delivered", "to_port": port, "port_type": kind}),
        None => {
            json!({"verdict": "not delivered", "reason": "the trace ends without output (unresolved next hop or no route)"})
        }
    }
}

/// What was done to the packet on the way: NAT, reroutes, datapaths.
fn summary(trace: &str) -> Vec<String> {
    trace
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with("ingress(")
                || l.starts_with("egress(")
                || l.starts_with("ct_dnat")
                || l.starts_with("ct_snat")
                || l.starts_with("ct_lb")
                || l.starts_with("/* output to")
                || l.starts_with("drop;")
                || l.contains("reroute")
        })
        .map(str::to_string)
        .collect()
}

pub(super) fn trace(ctx: &Context, target: &Target, req: &Request) -> Result<Value> {
    let (e, rows) = entry(ctx, target, req)?;
    let flow = microflow(&e, req);
    let out = run_trace(ctx, &e, &flow)?;
    let mut v = verdict(&out, &rows);
    let lines: Vec<&str> = out.lines().collect();
    let shown = lines.len().min(MAX_LINES);
    v["datapath"] = json!(e.datapath);
    v["microflow"] = json!(flow);
    v["summary"] = json!(summary(&out));
    v["trace"] = json!(lines[..shown].join("\n"));
    if lines.len() > shown {
        v["trace_truncated"] = json!(format!("{} of {} lines shown", shown, lines.len()));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DROP: &str = r#"
egress(dp="71ff", inport="ln-x", outport="lsp-cs-router-42-pub")
------------------------------------------------------------------
 1. ls_out_pre_lb (northd.c:5809): ip && outport == "lsp-cs-router-42-pub", priority 110, uuid f70bf516
    ct_clear;
    next;
 4. ls_out_acl (northd.c:6588): outport == "lsp-cs-router-42-pub" && ip4 && ip4.dst == 203.0.113.11 && tcp && tcp.flags[1] == 1 && tcp.flags[4] == 0, priority 2000, uuid 23682d65
    drop;
"#;

    #[test]
    fn verdicts_name_the_acl_and_the_port() {
        let acl: Map<String, Value> = serde_json::from_value(json!({
            "_uuid": ["uuid", "6c0b1d7e-93a4-4f0e-8d2b-5a1c0e7f3b21"], "priority": 1000, "direction": "to-lport",
            "match": "outport == \"lsp-cs-router-42-pub\" && ip4 && ip4.dst == 203.0.113.11 && tcp && tcp.flags[1] == 1 && tcp.flags[4] == 0",
            "action": "drop", "external_ids": ["map", [["cloudstack:kind", "firewall"]]]}))
        .unwrap();
        let v = verdict(DROP, &[acl]);
        assert_eq!(v["verdict"], "dropped");
        assert_eq!(v["by"], "ACL");
        assert_eq!(v["rule"]["kind"], "firewall");
        let ok =
            "    output;\n    /* output to \"lrp-x\", type \"patch\" */\n    /* output to \"3f0c\", type \"\" */\n";
        assert_eq!(verdict(ok, &[])["to_port"], "3f0c");
    }

    #[test]
    fn requests_are_validated() {
        let p = |v: Value| Params::from_value(Some(&v)).unwrap();
        let r = request(&p(json!({"from": "10.1.1.23", "to": "203.0.113.11", "protocol": "TCP", "port": 22}))).unwrap();
        assert_eq!((r.protocol, r.port), ("tcp", Some(22)));
        assert!(request(&p(json!({"from": "10.1.1.23", "to": "x", "port": 22}))).is_err());
        assert!(request(&p(json!({"from": "10.1.1.23", "to": "1.2.3.4"}))).is_err());
        assert!(request(&p(json!({"from": "10.1.1.23", "to": "1.2.3.4", "protocol": "icmp"}))).is_ok());
        assert!(request(&p(json!({"from": "10.1.1.23", "to": "1.2.3.4", "protocol": "gre", "port": 1}))).is_err());
    }
}
