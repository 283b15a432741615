//! `fw_rules`, `acl_rules`, `lb_rules` and `restore_data` (§6 of the
//! protocol), validated into the intent types the planner takes. Numbers may arrive as JSON
//! numbers or strings; absent optional fields mean "any".

use std::net::Ipv4Addr;

use serde_json::Value;

use super::types::{ipv4, Ipv4Cidr, Mac};
use crate::error::{Error, Result};

/// IP protocol of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleProto {
    Tcp,
    Udp,
    Icmp,
    All,
}

/// One rule, as validated from `fw_rules` / `acl_rules`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub id: Option<u64>,
    pub ingress: bool,
    pub protocol: RuleProto,
    pub ports: Option<(u16, u16)>,
    /// ICMP type and code; `None` = any.
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    /// Firewall ingress: the public IP the rule is about.
    pub public_ip: Option<Ipv4Addr>,
    /// Firewall: the remote side; empty = anywhere.
    pub source_cidrs: Vec<Ipv4Cidr>,
    pub dest_cidrs: Vec<Ipv4Cidr>,
    /// Network ACLs only: allow (true) or deny.
    pub allow: bool,
}

fn num(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn opt_num(field: &str, obj: &Value, key: &str) -> Result<Option<i64>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => num(v).map(Some).ok_or_else(|| Error::field(field, format!("{key} must be a number, got {v}"))),
    }
}

fn string(obj: &Value, key: &str) -> String {
    match obj.get(key) {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

fn boolean(obj: &Value, key: &str) -> bool {
    match obj.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn port(field: &str, v: i64) -> Result<u16> {
    u16::try_from(v)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| Error::field(field, format!("port {v} is not within 1-65535")))
}

fn cidrs(field: &str, obj: &Value, key: &str) -> Result<Vec<Ipv4Cidr>> {
    let list = match obj.get(key) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a.clone(),
        Some(Value::String(s)) => s.split(',').map(|x| Value::String(x.trim().to_string())).collect(),
        Some(other) => return Err(Error::field(field, format!("{key} must be a list of CIDRs, got {other}"))),
    };
    list.iter()
        .filter_map(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(|s| {
            // A bare address is a /32.
            let s = if s.contains('/') { s.to_string() } else { format!("{s}/32") };
            Ipv4Cidr::parse(field, &s)
        })
        .collect()
}

/// Protocol, destination ports, ICMP type and code of a rule.
type L4 = (RuleProto, Option<(u16, u16)>, Option<u8>, Option<u8>);

/// The L4 fields shared by firewall and ACL rules.
fn l4(field: &str, r: &Value) -> Result<L4> {
    let proto = match string(r, "protocol").to_ascii_lowercase().as_str() {
        "tcp" => RuleProto::Tcp,
        "udp" => RuleProto::Udp,
        "icmp" => RuleProto::Icmp,
        "all" | "" => RuleProto::All,
        other => return Err(Error::field(field, format!("unknown protocol {other:?} (tcp, udp, icmp or all)"))),
    };
    let start = opt_num(field, r, "portStart")?;
    let end = opt_num(field, r, "portEnd")?;
    let ports = match (proto, start, end) {
        (RuleProto::Tcp | RuleProto::Udp, Some(a), b) => {
            let (a, b) = (port(field, a)?, port(field, b.unwrap_or(a))?);
            if b < a {
                return Err(Error::field(field, format!("port range {a}-{b} is reversed")));
            }
            Some((a, b))
        }
        _ => None,
    };
    let icmp = |key: &str| -> Result<Option<u8>> {
        match opt_num(field, r, key)? {
            None | Some(-1) => Ok(None),
            Some(v) => {
                u8::try_from(v).map(Some).map_err(|_| Error::field(field, format!("{key} {v} is not within -1..255")))
            }
        }
    };
    let (t, c) = if proto == RuleProto::Icmp { (icmp("icmpType")?, icmp("icmpCode")?) } else { (None, None) };
    Ok((proto, ports, t, c))
}

/// `fw_rules`: `{default_egress_allow, cidr, rules: [...]}`.
pub fn firewall(v: &Value) -> Result<(bool, Vec<Rule>)> {
    let default_egress_allow = match v.get("default_egress_allow") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => !s.eq_ignore_ascii_case("false"),
        Some(other) => {
            return Err(Error::field("fw_rules", format!("default_egress_allow must be a boolean, got {other}")))
        }
    };
    let list = match v.get("rules") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(Error::field("fw_rules", "rules must be a list")),
    };
    let mut rules = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let field = format!("fw_rules.rules[{i}]");
        let ingress = match string(r, "type").to_ascii_lowercase().as_str() {
            "ingress" | "" => true,
            "egress" => false,
            other => return Err(Error::field(&field, format!("type {other:?} is neither ingress nor egress"))),
        };
        let (protocol, ports, icmp_type, icmp_code) = l4(&field, r)?;
        let public_ip = match string(r, "publicIp") {
            s if s.is_empty() => None,
            s => Some(ipv4(&field, &s)?),
        };
        if ingress && public_ip.is_none() {
            return Err(Error::field(&field, "an ingress rule needs publicIp"));
        }
        rules.push(Rule {
            id: opt_num(&field, r, "id")?.map(|n| n as u64),
            ingress,
            protocol,
            ports,
            icmp_type,
            icmp_code,
            public_ip,
            source_cidrs: cidrs(&field, r, "sourceCidrs")?,
            dest_cidrs: cidrs(&field, r, "destCidrs")?,
            allow: true,
        });
    }
    Ok((default_egress_allow, rules))
}

/// `acl_rules`: a list sorted by `number`.
pub fn network_acl(v: &Value) -> Result<Vec<Rule>> {
    let list = v.as_array().ok_or_else(|| Error::field("acl_rules", "must be a list"))?;
    let mut rules: Vec<(i64, Rule)> = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let field = format!("acl_rules[{i}]");
        let number = opt_num(&field, r, "number")?.unwrap_or(i as i64);
        let allow = match string(r, "action").to_ascii_lowercase().as_str() {
            "allow" => true,
            "deny" => false,
            other => return Err(Error::field(&field, format!("action {other:?} is neither allow nor deny"))),
        };
        let ingress = match string(r, "trafficType").to_ascii_lowercase().as_str() {
            "ingress" => true,
            "egress" => false,
            other => return Err(Error::field(&field, format!("trafficType {other:?} is neither ingress nor egress"))),
        };
        let (protocol, ports, icmp_type, icmp_code) = l4(&field, r)?;
        let rule = Rule {
            id: Some(number as u64),
            ingress,
            protocol,
            ports,
            icmp_type,
            icmp_code,
            public_ip: None,
            source_cidrs: cidrs(&field, r, "sourceCidrs")?,
            dest_cidrs: Vec::new(),
            allow,
        };
        rules.push((number, rule));
    }
    // CloudStack sends them sorted; sort anyway, stably, so order is never ours to guess.
    rules.sort_by_key(|(n, _)| *n);
    Ok(rules.into_iter().map(|(_, r)| r).collect())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    RoundRobin,
    Source,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LbRule {
    pub id: u64,
    pub public_ip: Ipv4Addr,
    pub public_port: u16,
    pub udp: bool,
    pub algorithm: Algorithm,
    pub revoke: bool,
    /// Live backends (revoked ones left out).
    pub backends: Vec<(Ipv4Addr, u16)>,
}

/// `lb_rules`: the rules that changed (not the full state).
pub fn load_balancers(v: &Value) -> Result<Vec<LbRule>> {
    let list = v.as_array().ok_or_else(|| Error::field("lb_rules", "must be a list"))?;
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let field = format!("lb_rules[{i}]");
        let id = opt_num(&field, r, "id")?.ok_or_else(|| Error::field(&field, "id is required"))? as u64;
        let public_ip = ipv4(&field, &string(r, "publicIp"))?;
        let public_port = port(
            &field,
            opt_num(&field, r, "publicPort")?.ok_or_else(|| Error::field(&field, "publicPort is required"))?,
        )?;
        let revoke = boolean(r, "revoke");
        let udp = match string(r, "protocol").to_ascii_lowercase().as_str() {
            "tcp" | "" => false,
            "udp" => true,
            other => {
                return Err(Error::Unsupported(format!(
                    "load balancing protocol {other:?} (tcp and udp are supported)"
                )))
            }
        };
        let algorithm = match string(r, "algorithm").to_ascii_lowercase().as_str() {
            "roundrobin" | "" => Algorithm::RoundRobin,
            "source" => Algorithm::Source,
            other => {
                return Err(Error::Unsupported(format!(
                    "load balancing algorithm {other:?} (roundrobin and source are supported)"
                )))
            }
        };
        let private_port = opt_num(&field, r, "privatePort")?;
        let mut backends = Vec::new();
        for (j, b) in r.get("backends").and_then(Value::as_array).into_iter().flatten().enumerate() {
            if boolean(b, "revoked") {
                continue;
            }
            let bf = format!("{field}.backends[{j}]");
            let ip = ipv4(&bf, &string(b, "ip"))?;
            let p = opt_num(&bf, b, "port")?.or(private_port).ok_or_else(|| Error::field(&bf, "port is required"))?;
            backends.push((ip, port(&bf, p)?));
        }
        out.push(LbRule { id, public_ip, public_port, udp, algorithm, revoke, backends });
    }
    Ok(out)
}

/// One VM NIC of `restore_data`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreVm {
    pub nic_uuid: String,
    pub mac: Mac,
    pub ip: Ipv4Addr,
    pub ip6: Option<std::net::Ipv6Addr>,
    pub hostname: Option<String>,
    pub default_nic: bool,
    pub dns: String,
    pub domain: String,
}

/// `restore_data`: `{dhcp_enabled, dns_enabled, userdata_enabled, vms: [...]}`.
pub fn restore(v: &Value) -> Result<(bool, bool, Vec<RestoreVm>)> {
    let mut vms = Vec::new();
    for (i, vm) in v.get("vms").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let field = format!("restore_data.vms[{i}]");
        let nic = string(vm, "nic_uuid");
        if nic.is_empty() {
            // Without the NIC uuid the port cannot be named (libvirt's iface-id).
            return Err(Error::field(&field, "nic_uuid is required"));
        }
        let ip6 = match string(vm, "ip6_address") {
            s if s.is_empty() => None,
            s => Some(super::types::ipv6(&field, &s)?),
        };
        let hostname = match string(vm, "hostname") {
            s if s.is_empty() => None,
            s => Some(super::types::dns_name(&field, &s)?),
        };
        vms.push(RestoreVm {
            nic_uuid: super::types::nic_uuid(&field, &nic)?,
            mac: Mac::parse(&field, &string(vm, "mac"))?,
            ip: ipv4(&field, &string(vm, "ip"))?,
            ip6,
            hostname,
            default_nic: match vm.get("default_nic") {
                None => true,
                Some(_) => boolean(vm, "default_nic"),
            },
            dns: string(vm, "dns"),
            domain: string(vm, "domain"),
        });
    }
    Ok((
        v.get("dhcp_enabled").map(|_| boolean(v, "dhcp_enabled")).unwrap_or(true),
        v.get("dns_enabled").map(|_| boolean(v, "dns_enabled")).unwrap_or(true),
        vms,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn firewall_rules_parse_and_validate() {
        let (egress, rules) = firewall(&json!({"default_egress_allow": false, "cidr": "10.1.1.0/24", "rules": [
            {"id": 7, "type": "ingress", "protocol": "tcp", "portStart": 22, "portEnd": 22, "publicIp": "203.0.113.11", "sourceCidrs": ["0.0.0.0/0"]},
            {"id": 8, "type": "egress", "protocol": "icmp", "icmpType": -1, "icmpCode": -1, "destCidrs": ["198.51.100.0/24"]},
            {"id": 9, "type": "ingress", "protocol": "all", "publicIp": "203.0.113.12", "sourceCidrs": ["198.51.100.10"]}
        ]}))
        .unwrap();
        assert!(!egress);
        assert_eq!(rules[0].ports, Some((22, 22)));
        assert_eq!(rules[1].icmp_type, None);
        assert_eq!(rules[2].source_cidrs[0].prefix, 32);
        for bad in [
            json!({"rules": [{"type": "ingress", "protocol": "tcp", "portStart": 70000, "publicIp": "203.0.113.1"}]}),
            json!({"rules": [{"type": "ingress", "protocol": "gre", "publicIp": "203.0.113.1"}]}),
            json!({"rules": [{"type": "ingress", "protocol": "tcp", "portStart": 22, "publicIp": "203.0.113.1", "sourceCidrs": ["10.0.0.0/33"]}]}),
            json!({"rules": [{"type": "ingress", "protocol": "tcp", "portStart": 30, "portEnd": 20, "publicIp": "203.0.113.1"}]}),
            json!({"rules": [{"type": "ingress", "protocol": "tcp", "portStart": 22}]}),
        ] {
            assert!(firewall(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn acl_rules_sort_by_number() {
        let rules = network_acl(&json!([
            {"number": 20, "action": "deny", "trafficType": "ingress", "protocol": "tcp", "portStart": 22, "portEnd": 22, "sourceCidrs": ["0.0.0.0/0"]},
            {"number": 10, "action": "allow", "trafficType": "ingress", "protocol": "icmp", "icmpType": -1, "icmpCode": -1, "sourceCidrs": ["0.0.0.0/0"]}
        ]))
        .unwrap();
        assert_eq!(rules[0].protocol, RuleProto::Icmp);
        assert!(!rules[1].allow);
        assert!(network_acl(&json!([{"number": 1, "action": "maybe", "trafficType": "ingress"}])).is_err());
    }

    #[test]
    fn lb_rules_parse() {
        let rules = load_balancers(&json!([{"id": 3, "name": "web", "publicIp": "203.0.113.13", "publicPort": 80, "privatePort": 8080,
            "protocol": "tcp", "algorithm": "source", "revoke": false,
            "backends": [{"ip": "10.1.1.23", "port": 8080, "revoked": false}, {"ip": "10.1.1.24", "port": 8080, "revoked": true}]}]))
        .unwrap();
        assert_eq!(rules[0].backends, vec![("10.1.1.23".parse().unwrap(), 8080)]);
        assert_eq!(rules[0].algorithm, Algorithm::Source);
        let bad = json!([{"id": 3, "publicIp": "203.0.113.13", "publicPort": 80, "algorithm": "leastconn"}]);
        assert!(matches!(load_balancers(&bad), Err(Error::Unsupported(_))));
        let bad = json!([{"id": 3, "publicIp": "203.0.113.13", "publicPort": 80, "protocol": "tcp-proxy"}]);
        assert!(matches!(load_balancers(&bad), Err(Error::Unsupported(_))));
    }
}
