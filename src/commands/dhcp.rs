//! Native OVN DHCPv4: config-dhcp-subnet, remove-dhcp-subnet,
//! add-dhcp-entry, remove-dhcp-entry, set-dhcp-options.

use std::collections::BTreeMap;

use serde_json::Value;

use super::nic::{dhcp_link_for, release_port};
use super::{input, Context, Job};
use crate::error::{Error, Result};
use crate::nb::ids::Scope;
use crate::nb::{key, quoted, Kind};
use crate::observe::Want;
use crate::payload::types::{db_id, dns_name, ip_list, ipv4};
use crate::plan::network::{
    dhcp_nic_row, ensure_dhcp, ensure_port, ensure_switch, relink_port, remove_dhcp, DhcpLink, DhcpSubnet, Hostname,
    NicSpec, SwitchSpec,
};

pub fn config_subnet(ctx: &Context) -> Result<Job> {
    let scope = input::scope(ctx)?;
    let subnet = input::dhcp_subnet(ctx)?;
    let want = Want {
        dhcp: vec![scope.dhcp_uuid(subnet.cidr, true), scope.dhcp_uuid(subnet.cidr, false)],
        scope: Some(scope.clone()),
        ..Want::default()
    };
    Ok(Job::new(want, (scope, subnet), |(scope, subnet), obs, plan| ensure_dhcp(plan, scope, subnet, obs)))
}

/// Removes every DHCP row of the network (all subnets, per-NIC rows too).
pub fn remove_subnet(ctx: &Context) -> Result<Job> {
    let scope = input::scope(ctx)?;
    let want = Want { all_dhcp: true, scope: Some(scope.clone()), ..Want::default() };
    Ok(Job::new(want, scope, |scope, obs, plan| {
        remove_dhcp(plan, scope, obs);
        Ok(())
    }))
}

struct AddEntry {
    scope: Scope,
    spec: SwitchSpec,
    nic: NicSpec,
    subnet: DhcpSubnet,
    default_nic: bool,
    hostname: Hostname,
}

/// The subnet's DHCP rows (CloudStack only sends config-dhcp-subnet first
/// when the provider advertises `DhcpAccrossMultipleSubnets`), the port
/// (legacy CloudStack has no prepare-nic: this is the first per-NIC
/// command), and the link between them.
pub fn add_entry(ctx: &Context) -> Result<Job> {
    let scope = input::scope(ctx)?;
    let spec = input::switch_spec(ctx)?;
    let nic = input::nic_spec(ctx)?;
    let subnet = input::dhcp_subnet(ctx)?;
    let default_nic = input::default_nic(ctx)?;
    let hostname = input::hostname(ctx)?.map(Hostname::Set).unwrap_or(Hostname::Keep);
    let own = scope.dhcp_nic_uuid(&nic.nic_uuid);
    let want = Want {
        light: true,
        switch: true,
        port: Some(nic.nic_uuid.clone()),
        port_group: true,
        localnet: spec.physical.is_some(),
        dhcp: vec![scope.dhcp_uuid(subnet.cidr, true), scope.dhcp_uuid(subnet.cidr, false), own],
        scope: Some(scope.clone()),
        ..Want::default()
    };
    let intent = AddEntry { scope, spec, nic, subnet, default_nic, hostname };
    Ok(Job::new(want, intent, |i, obs, plan| {
        let scope = &i.scope;
        ensure_switch(plan, scope, &i.spec, obs)?;
        ensure_dhcp(plan, scope, &i.subnet, obs)?;
        let own = scope.dhcp_nic_uuid(&i.nic.nic_uuid);
        let link = match dhcp_link_for(scope, &i.nic.nic_uuid, i.default_nic, Some(i.subnet.cidr), obs) {
            DhcpLink::Keep if obs.port().and_then(|p| p.dhcpv4_options) == Some(own) => DhcpLink::Keep,
            // The rows may be inserted by this very plan.
            _ => DhcpLink::Link(scope.dhcp_uuid(i.subnet.cidr, i.default_nic)),
        };
        ensure_port(plan, scope, &i.nic, link, &i.hostname, obs)
    }))
}

/// Upstream: the port stays (release-nic removes it) but stops getting DHCP
/// answers. Legacy flag style: there is no release-nic, so the port goes.
pub fn remove_entry(ctx: &Context) -> Result<Job> {
    let scope = input::scope(ctx)?;
    let nic_uuid = input::nic_uuid_field(ctx)?;
    if ctx.legacy() {
        return Ok(release_port(scope, nic_uuid));
    }
    let want = Want { light: true, switch: true, port: Some(nic_uuid), scope: Some(scope.clone()), ..Want::default() };
    Ok(Job::new(want, scope, |scope, obs, plan| relink_port(plan, scope, DhcpLink::Unlink, &Hostname::Clear, obs)))
}

/// How a DHCP option code maps to OVN's option name and value syntax.
#[derive(Clone, Copy)]
enum Syntax {
    Ip,
    IpList,
    Str,
    Uint,
    /// Passed through verbatim (OVN's own `{a,b, c,d}` syntax).
    Raw,
}

const OPTION_CODES: &[(u8, &str, Syntax)] = &[
    (3, "router", Syntax::Ip),
    (6, "dns_server", Syntax::IpList),
    (12, "hostname", Syntax::Str),
    (15, "domain_name", Syntax::Str),
    (26, "mtu", Syntax::Uint),
    (28, "broadcast_address", Syntax::Ip),
    (42, "ntp_server", Syntax::IpList),
    (66, "tftp_server", Syntax::Str),
    (67, "bootfile_name", Syntax::Str),
    (119, "domain_search_list", Syntax::Str),
    (121, "classless_static_route", Syntax::Raw),
    (150, "tftp_server_address", Syntax::Ip),
    (252, "wpad", Syntax::Str),
];

/// `{"15":"example.com","119":"a.example,b.example"}` → OVN option pairs.
fn extra_options(raw: &Value) -> Result<BTreeMap<String, String>> {
    let obj =
        raw.as_object().ok_or_else(|| Error::field("options", "expected a JSON object of DHCP option code → value"))?;
    let mut out = BTreeMap::new();
    for (code, value) in obj {
        let value = match value {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            _ => return Err(Error::field("options", format!("option {code}: expected a string value"))),
        };
        let n: u8 =
            code.trim().parse().map_err(|_| Error::field("options", format!("{code:?} is not a DHCP option code")))?;
        let (_, name, syntax) = OPTION_CODES
            .iter()
            .find(|(c, _, _)| *c == n)
            .ok_or_else(|| Error::Unsupported(format!("set-dhcp-options: DHCP option {n}")))?;
        let field = format!("options[{n}]");
        let encoded = match syntax {
            Syntax::Ip => ipv4(&field, &value)?.to_string(),
            Syntax::IpList => {
                let ips = ip_list(&field, &value)?;
                if ips.iter().any(|i| i.is_ipv6()) || ips.is_empty() {
                    return Err(Error::field(&field, "expected IPv4 addresses"));
                }
                format!("{{{}}}", ips.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", "))
            }
            Syntax::Str => {
                if n == 119 {
                    let names: Result<Vec<String>> = value.split(',').map(|d| dns_name(&field, d.trim())).collect();
                    quoted(&names?.join(","))
                } else if value.is_empty() || value.contains(['"', '\\']) || value.chars().any(char::is_control) {
                    return Err(Error::field(&field, "expected a non-empty string without quotes or backslashes"));
                } else {
                    quoted(&value)
                }
            }
            Syntax::Uint => value.parse::<u32>().map_err(|_| Error::field(&field, "expected a number"))?.to_string(),
            Syntax::Raw => {
                if !(value.starts_with('{') && value.ends_with('}')) || value.contains(['"', '\\', ';']) {
                    return Err(Error::field(&field, "expected OVN's {prefix,nexthop, …} syntax"));
                }
                value
            }
        };
        out.insert(name.to_string(), encoded);
    }
    Ok(out)
}

/// Legacy only (`updateNicExtraDhcpOption`): give one NIC its own DHCP row,
/// a copy of its subnet row with the extra options on top.
pub fn set_options(ctx: &Context) -> Result<Job> {
    let scope = input::scope(ctx)?;
    let p = ctx.payload();
    let extras = extra_options(&p.nested("options")?.ok_or_else(|| Error::Missing("options".into()))?)?;
    let (port_name, nic_id) = match p.nonempty("nic_uuid") {
        Some(_) => (Some(input::nic_uuid_field(ctx)?), None),
        None => (None, Some(db_id("nic_id", &p.require("nic_id")?)?)),
    };
    let want = Want {
        switch: true,
        port: port_name,
        port_by_nic_id: nic_id,
        all_dhcp: true,
        scope: Some(scope.clone()),
        ..Want::default()
    };
    Ok(Job::new(want, (scope, extras), |(scope, extras), obs, plan| {
        let port = obs.port().ok_or_else(|| Error::field("nic_id", "no port of ours for this NIC in the network"))?;
        let linked = port.dhcpv4_options.and_then(|u| obs.dhcp().iter().find(|d| d.uuid == u));
        let base = match linked {
            Some(d) if d.external_ids.get(key::KIND).map(String::as_str) == Some(Kind::Dhcp4Nic.as_str()) => {
                d.external_ids.get(key::BASE_DHCP).and_then(|b| obs.dhcp().iter().find(|x| x.uuid.to_string() == *b))
            }
            other => other,
        }
        .ok_or_else(|| Error::field("nic_id", "the NIC has no DHCP options to extend yet (add-dhcp-entry first)"))?;
        let own = dhcp_nic_row(plan, scope, port, base, extras, obs)?;
        relink_port(plan, scope, DhcpLink::Link(own), &Hostname::Keep, obs)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn option_codes_encode() {
        let o = extra_options(
            &json!({"15": "example.com", "6": "10.0.0.1,10.0.0.2", "26": "1400", "119": "a.example,b.example"}),
        )
        .unwrap();
        assert_eq!(o["domain_name"], "\"example.com\"");
        assert_eq!(o["dns_server"], "{10.0.0.1, 10.0.0.2}");
        assert_eq!(o["mtu"], "1400");
        assert_eq!(o["domain_search_list"], "\"a.example,b.example\"");
        assert!(matches!(extra_options(&json!({"43": "x"})), Err(Error::Unsupported(_))));
        assert!(extra_options(&json!({"15": "bad\"quote"})).is_err());
        assert!(extra_options(&json!({"3": "not-an-ip"})).is_err());
        assert!(extra_options(&json!(["15"])).is_err());
    }
}
