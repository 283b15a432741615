//! `fw_rules`, `acl_rules`, `lb_rules` and `restore_data` (§6 of the
//! protocol), validated into the intent types the planner takes. Numbers may arrive as JSON
//! numbers or strings; absent optional fields mean "any".

use std::net::Ipv4Addr;

use serde_json::Value;

use super::types::{host_ipv4, host_ipv6, ipv4, IpCidr, Mac};
use crate::error::{Error, Result};

/// IP protocol of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleProto {
    Tcp,
    Udp,
    Icmp,
    All,
    /// Any other IP protocol by number (`ip.proto`), no ports.
    Number(u8),
}

/// At most this many network ACL rules per tier: each gets its own OVN
/// priority between the tier's implicit deny and its own-traffic allows,
/// and order is the whole meaning of an ACL list.
pub const MAX_ACL_RULES: usize = 8000;

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
    /// The remote side, IPv4 and/or IPv6; empty = `0.0.0.0/0` (CloudStack's
    /// own default for a rule without CIDRs).
    pub source_cidrs: Vec<IpCidr>,
    pub dest_cidrs: Vec<IpCidr>,
    /// Network ACLs only: allow (true) or deny.
    pub allow: bool,
}

/// An integer as a JSON number or a decimal string: digits with an optional
/// `-`, nothing else (`i64::from_str` would also take `+5`).
fn num(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let t = s.trim();
            let digits = t.strip_prefix('-').unwrap_or(t);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            t.parse().ok()
        }
        _ => None,
    }
}

fn opt_num(field: &str, obj: &Value, key: &str) -> Result<Option<i64>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => num(v).map(Some).ok_or_else(|| Error::field(field, format!("{key} must be a number, got {v}"))),
    }
}

/// A rule or LB id: never negative (a cast would wrap it to a huge u64).
fn opt_id(field: &str, obj: &Value, key: &str) -> Result<Option<u64>> {
    match opt_num(field, obj, key)? {
        None => Ok(None),
        Some(n) => {
            u64::try_from(n).map(Some).map_err(|_| Error::field(field, format!("{key} must not be negative, got {n}")))
        }
    }
}

/// A scalar as text; absent or null is empty. A list or object where a
/// word belongs is refused rather than read as "not given" (which would
/// turn `"protocol": ["tcp"]` into "all protocols").
fn string(field: &str, obj: &Value, key: &str) -> Result<String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.trim().to_string()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::Bool(b)) => Ok(b.to_string()),
        Some(other) => Err(Error::field(field, format!("{key} must be a string, got {other}"))),
    }
}

/// `true`/`false` (or the strings); absent or null is `None`. Anything else
/// is refused: `"revoke": "yes"` must not silently mean "keep".
fn opt_bool(field: &str, obj: &Value, key: &str) -> Result<Option<bool>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(Error::field(field, format!("{key} must be true or false, got {other}"))),
    }
}

fn boolean(field: &str, obj: &Value, key: &str) -> Result<bool> {
    Ok(opt_bool(field, obj, key)?.unwrap_or(false))
}

/// A JSON list under `key` (absent or null = empty); anything else is refused.
fn list<'a>(field: &str, obj: &'a Value, key: &str) -> Result<&'a [Value]> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(Error::field(field, format!("{key} must be a list, got {other}"))),
    }
}

fn port(field: &str, v: i64) -> Result<u16> {
    u16::try_from(v)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| Error::field(field, format!("port {v} is not within 1-65535")))
}

/// A CIDR list, IPv4 and/or IPv6. Every item must be a CIDR (or a bare
/// address): an item that is not a string, empty or malformed fails the
/// command. Dropping it instead would widen the rule, at worst to
/// "from anywhere".
fn cidrs(field: &str, obj: &Value, key: &str) -> Result<Vec<IpCidr>> {
    let items: Vec<Value> = match obj.get(key) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a.clone(),
        Some(Value::String(s)) => s.split(',').map(|x| Value::String(x.to_string())).collect(),
        Some(other) => return Err(Error::field(field, format!("{key} must be a list of CIDRs, got {other}"))),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) if !s.trim().is_empty() => IpCidr::parse(&format!("{field}.{key}[{i}]"), s.trim()),
            other => Err(Error::field(field, format!("{key}[{i}] must be a CIDR, got {other}"))),
        })
        .collect()
}

/// Protocol, destination ports, ICMP type and code of a rule.
type L4 = (RuleProto, Option<(u16, u16)>, Option<u8>, Option<u8>);

/// The L4 fields shared by firewall and ACL rules. A field that does not
/// apply to the protocol (ports on ICMP, an ICMP type on TCP, an end port
/// without a start) is refused: ignoring it would widen the rule.
fn l4(field: &str, r: &Value) -> Result<L4> {
    let raw = string(field, r, "protocol")?.to_ascii_lowercase();
    let proto = match raw.as_str() {
        "tcp" | "6" => RuleProto::Tcp,
        "udp" | "17" => RuleProto::Udp,
        "icmp" => RuleProto::Icmp,
        "all" | "" => RuleProto::All,
        n if !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()) => match n.parse::<u8>() {
            Ok(p) => RuleProto::Number(p),
            Err(_) => return Err(Error::field(field, format!("protocol number {n} is not within 0-255"))),
        },
        other => {
            return Err(Error::field(
                field,
                format!("unknown protocol {other:?} (tcp, udp, icmp, all or a protocol number)"),
            ))
        }
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
        (_, None, None) => None,
        (RuleProto::Tcp | RuleProto::Udp, None, Some(b)) => {
            return Err(Error::field(field, format!("portEnd {b} without portStart")))
        }
        (_, _, _) => return Err(Error::field(field, format!("ports do not apply to protocol {raw:?}"))),
    };
    let icmp = |key: &str| -> Result<Option<u8>> {
        match opt_num(field, r, key)? {
            None | Some(-1) => Ok(None),
            Some(v) if proto == RuleProto::Icmp => {
                u8::try_from(v).map(Some).map_err(|_| Error::field(field, format!("{key} {v} is not within -1..255")))
            }
            Some(v) => Err(Error::field(field, format!("{key} {v} does not apply to protocol {raw:?}"))),
        }
    };
    let (t, c) = (icmp("icmpType")?, icmp("icmpCode")?);
    Ok((proto, ports, t, c))
}

/// `fw_rules`: `{default_egress_allow, cidr, rules: [...]}`.
pub fn firewall(v: &Value) -> Result<(bool, Vec<Rule>)> {
    // Absent: CloudStack's own default (allow, when the offering is gone).
    // Anything but true/false is refused: "no" must not mean "allow all".
    let default_egress_allow = opt_bool("fw_rules", v, "default_egress_allow")?.unwrap_or(true);
    let mut rules = Vec::new();
    for (i, r) in list("fw_rules", v, "rules")?.iter().enumerate() {
        let field = format!("fw_rules.rules[{i}]");
        let ingress = match string(&field, r, "type")?.to_ascii_lowercase().as_str() {
            "ingress" | "" => true,
            "egress" => false,
            other => return Err(Error::field(&field, format!("type {other:?} is neither ingress nor egress"))),
        };
        let (protocol, ports, icmp_type, icmp_code) = l4(&field, r)?;
        let public_ip = match string(&field, r, "publicIp")? {
            s if s.is_empty() => None,
            s => Some(host_ipv4(&field, ipv4(&field, &s)?)?),
        };
        if ingress && public_ip.is_none() {
            return Err(Error::field(&field, "an ingress rule needs publicIp"));
        }
        rules.push(Rule {
            id: opt_id(&field, r, "id")?,
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
    let all = v.as_array().ok_or_else(|| Error::field("acl_rules", "must be a list"))?;
    if all.len() > MAX_ACL_RULES {
        // Each rule needs its own OVN priority to keep CloudStack's order.
        return Err(Error::field(
            "acl_rules",
            format!("{} rules; at most {MAX_ACL_RULES} network ACL rules per tier are supported", all.len()),
        ));
    }
    let mut rules: Vec<(u64, Rule)> = Vec::new();
    for (i, r) in all.iter().enumerate() {
        let field = format!("acl_rules[{i}]");
        let number = opt_id(&field, r, "number")?.unwrap_or(i as u64);
        let allow = match string(&field, r, "action")?.to_ascii_lowercase().as_str() {
            "allow" => true,
            "deny" => false,
            other => return Err(Error::field(&field, format!("action {other:?} is neither allow nor deny"))),
        };
        let ingress = match string(&field, r, "trafficType")?.to_ascii_lowercase().as_str() {
            "ingress" => true,
            "egress" => false,
            other => return Err(Error::field(&field, format!("trafficType {other:?} is neither ingress nor egress"))),
        };
        let (protocol, ports, icmp_type, icmp_code) = l4(&field, r)?;
        // CloudStack sends no destCidrs for ACL items (the egress side is in
        // sourceCidrs); one we cannot honour must not be dropped silently.
        if !cidrs(&field, r, "destCidrs")?.is_empty() {
            return Err(Error::field(&field, "destCidrs is not part of a network ACL item (use sourceCidrs)"));
        }
        let rule = Rule {
            id: Some(number),
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
    let all = v.as_array().ok_or_else(|| Error::field("lb_rules", "must be a list"))?;
    let mut out = Vec::new();
    for (i, r) in all.iter().enumerate() {
        let field = format!("lb_rules[{i}]");
        let id = opt_id(&field, r, "id")?.ok_or_else(|| Error::field(&field, "id is required"))?;
        let public_ip = host_ipv4(&field, ipv4(&field, &string(&field, r, "publicIp")?)?)?;
        let public_port = port(
            &field,
            opt_num(&field, r, "publicPort")?.ok_or_else(|| Error::field(&field, "publicPort is required"))?,
        )?;
        let revoke = boolean(&field, r, "revoke")?;
        let udp = match string(&field, r, "protocol")?.to_ascii_lowercase().as_str() {
            "tcp" | "" => false,
            "udp" => true,
            other => {
                return Err(Error::Unsupported(format!(
                    "load balancing protocol {other:?} (tcp and udp are supported)"
                )))
            }
        };
        let algorithm = match string(&field, r, "algorithm")?.to_ascii_lowercase().as_str() {
            "roundrobin" | "" => Algorithm::RoundRobin,
            "source" => Algorithm::Source,
            other => {
                return Err(Error::Unsupported(format!(
                    "load balancing algorithm {other:?} (roundrobin and source are supported)"
                )))
            }
        };
        // CloudStack's LB rules can carry a source CIDR list (API `cidrlist`);
        // the payload has none today, and one we cannot enforce must not be
        // dropped silently: anything narrower than "anywhere" is refused.
        for key in ["sourceCidrs", "cidrList", "cidrlist"] {
            let list = cidrs(&field, r, key)?;
            let anywhere = list.iter().any(|c| matches!(c, IpCidr::V4(c) if c.prefix == 0));
            if !list.is_empty() && !anywhere {
                return Err(Error::Unsupported(format!("{field}: source CIDRs on load balancer rules ({key})")));
            }
        }
        let private_port = opt_num(&field, r, "privatePort")?;
        let mut backends = Vec::new();
        for (j, b) in list(&field, r, "backends")?.iter().enumerate() {
            let bf = format!("{field}.backends[{j}]");
            if boolean(&bf, b, "revoked")? {
                continue;
            }
            let ip = host_ipv4(&bf, ipv4(&bf, &string(&bf, b, "ip")?)?)?;
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
    for (i, vm) in list("restore_data", v, "vms")?.iter().enumerate() {
        let field = format!("restore_data.vms[{i}]");
        let nic = string(&field, vm, "nic_uuid")?;
        if nic.is_empty() {
            // Without the NIC uuid the port cannot be named (libvirt's iface-id).
            return Err(Error::field(&field, "nic_uuid is required"));
        }
        let ip6 = match string(&field, vm, "ip6_address")? {
            s if s.is_empty() => None,
            s => Some(host_ipv6(&field, super::types::ipv6(&field, &s)?)?),
        };
        let hostname = match string(&field, vm, "hostname")? {
            s if s.is_empty() => None,
            s => Some(super::types::dns_name(&field, &s)?),
        };
        vms.push(RestoreVm {
            nic_uuid: super::types::nic_uuid(&field, &nic)?,
            mac: Mac::parse(&field, &string(&field, vm, "mac")?)?,
            ip: host_ipv4(&field, ipv4(&field, &string(&field, vm, "ip")?)?)?,
            ip6,
            hostname,
            default_nic: opt_bool(&field, vm, "default_nic")?.unwrap_or(true),
            dns: string(&field, vm, "dns")?,
            domain: string(&field, vm, "domain")?,
        });
    }
    Ok((
        opt_bool("restore_data", v, "dhcp_enabled")?.unwrap_or(true),
        opt_bool("restore_data", v, "dns_enabled")?.unwrap_or(true),
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
        assert!(matches!(rules[2].source_cidrs[0], IpCidr::V4(c) if c.prefix == 32));
        for bad in [
            json!({"rules": [{"type": "ingress", "protocol": "tcp", "portStart": 70000, "publicIp": "203.0.113.1"}]}),
            json!({"rules": [{"type": "ingress", "protocol": "gre", "publicIp": "203.0.113.1"}]}),
            json!({"rules": [{"type": "ingress", "protocol": "tcp", "portStart": 22, "publicIp": "203.0.113.1", "sourceCidrs": ["10.0.0.0/33"]}]}),
            json!({"rules": [{"type": "ingress", "protocol": "tcp", "portStart": 30, "portEnd": 20, "publicIp": "203.0.113.1"}]}),
            json!({"rules": [{"type": "ingress", "protocol": "tcp", "portStart": 22}]}),
            json!({"default_egress_allow": "no", "rules": []}),
            json!({"default_egress_allow": "", "rules": []}),
            json!({"default_egress_allow": 0, "rules": []}),
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

    fn fw_rule(extra: serde_json::Value) -> serde_json::Value {
        let mut r = json!({"id": 1, "type": "ingress", "protocol": "tcp", "portStart": 22, "portEnd": 22,
                           "publicIp": "203.0.113.1", "sourceCidrs": ["0.0.0.0/0"]});
        r.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({"rules": [r]})
    }

    /// Issue 9 #2: an item that is not a CIDR must fail the rule, never be
    /// dropped (which widened "from X" to "from anywhere").
    #[test]
    fn cidr_lists_refuse_every_bad_item() {
        for bad in [
            json!({"sourceCidrs": ["10.0.0.0/8", 42]}),
            json!({"sourceCidrs": ["10.0.0.0/8", ""]}),
            json!({"sourceCidrs": [""]}),
            json!({"sourceCidrs": [null]}),
            json!({"sourceCidrs": [["10.0.0.0/8"]]}),
            json!({"sourceCidrs": "10.0.0.0/8,,192.0.2.0/24"}),
            json!({"sourceCidrs": ""}),
            json!({"sourceCidrs": {"a": 1}}),
            json!({"sourceCidrs": ["10.0.0.0/+8"]}),
            json!({"sourceCidrs": ["::/129"]}),
            json!({"destCidrs": ["10.0.0.0/8", 7]}),
        ] {
            assert!(firewall(&fw_rule(bad.clone())).is_err(), "{bad}");
            let mut acl = json!({"number": 1, "action": "deny", "trafficType": "ingress", "protocol": "tcp",
                                 "portStart": 22});
            acl.as_object_mut().unwrap().extend(bad.as_object().unwrap().clone());
            assert!(network_acl(&json!([acl])).is_err(), "{bad}");
        }
        let (_, r) =
            firewall(&fw_rule(json!({"sourceCidrs": ["0.0.0.0/0", "10.0.0.0/8", "::/0", "2001:db8::1"]}))).unwrap();
        assert_eq!(r[0].source_cidrs.len(), 4);
        assert!(matches!(r[0].source_cidrs[3], IpCidr::V6(c) if c.prefix == 128));
    }

    /// Fields that do not apply to a protocol, or numbers with a sign or out
    /// of range, fail instead of being ignored.
    #[test]
    fn protocol_ports_and_numbers_are_exact() {
        for bad in [
            json!({"protocol": ["tcp"]}),
            json!({"protocol": "all", "portStart": 22}),
            json!({"protocol": "icmp", "portStart": 22, "portEnd": 22}),
            json!({"protocol": "tcp", "portStart": null, "portEnd": 80}),
            json!({"protocol": "tcp", "icmpType": 8}),
            json!({"protocol": "tcp", "portStart": 0, "portEnd": 0}),
            json!({"protocol": "tcp", "portStart": 1, "portEnd": 65536}),
            json!({"protocol": "tcp", "portStart": "+22", "portEnd": 22}),
            json!({"protocol": "icmp", "portStart": null, "portEnd": null, "icmpType": 256}),
            json!({"protocol": "256", "portStart": null, "portEnd": null}),
            json!({"protocol": "47", "portStart": 1, "portEnd": 2}),
            json!({"id": -1}),
            json!({"id": "-5"}),
            json!({"type": {"x": 1}}),
        ] {
            assert!(firewall(&fw_rule(bad.clone())).is_err(), "{bad}");
        }
        let (_, r) = firewall(&fw_rule(json!({"protocol": "47", "portStart": null, "portEnd": null}))).unwrap();
        assert_eq!(r[0].protocol, RuleProto::Number(47));
        let (_, r) = firewall(&fw_rule(json!({"protocol": "6"}))).unwrap();
        assert_eq!((r[0].protocol, r[0].ports), (RuleProto::Tcp, Some((22, 22))));
        assert!(network_acl(&json!([{"number": -3, "action": "allow", "trafficType": "ingress"}])).is_err());
        assert!(network_acl(
            &json!([{"number": 1, "action": "allow", "trafficType": "ingress", "destCidrs": ["10.0.0.0/8"]}])
        )
        .is_err());
    }

    /// Issue 9 #12: more ACL rules than distinct priorities is an error.
    #[test]
    fn acl_rule_count_is_capped() {
        let rule = |n: usize| json!({"number": n, "action": "allow", "trafficType": "ingress", "protocol": "all"});
        let ok: Vec<_> = (1..=MAX_ACL_RULES).map(rule).collect();
        assert_eq!(network_acl(&json!(ok)).unwrap().len(), MAX_ACL_RULES);
        let too_many: Vec<_> = (1..=MAX_ACL_RULES + 1).map(rule).collect();
        let e = network_acl(&json!(too_many)).unwrap_err().to_string();
        assert!(e.contains("at most 8000"), "{e}");
    }

    /// Issue 9 #13: LB ids never wrap; a malformed flag or backend list fails.
    #[test]
    fn lb_ids_and_flags_are_exact() {
        let lb = |extra: serde_json::Value| {
            let mut r = json!({"id": 3, "publicIp": "203.0.113.13", "publicPort": 80, "privatePort": 8080,
                               "backends": [{"ip": "10.1.1.23", "port": 8080}]});
            r.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            load_balancers(&json!([r]))
        };
        assert!(lb(json!({})).is_ok());
        for bad in [
            json!({"id": -1}),
            json!({"id": "-1"}),
            json!({"id": "+3"}),
            json!({"revoke": "yes"}),
            json!({"backends": {"ip": "10.1.1.23"}}),
            json!({"backends": [{"ip": "10.1.1.23", "port": 8080, "revoked": "no"}]}),
            json!({"publicPort": "+80"}),
            json!({"sourceCidrs": ["198.51.100.0/24"]}),
            json!({"cidrList": "198.51.100.0/24,192.0.2.0/24"}),
            json!({"sourceCidrs": ["198.51.100.0/24", ""]}),
        ] {
            assert!(lb(bad.clone()).is_err(), "{bad}");
        }
        assert!(lb(json!({"sourceCidrs": ["0.0.0.0/0"]})).is_ok());
    }
}
