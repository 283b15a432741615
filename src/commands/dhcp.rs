//! Native OVN DHCPv4: config-dhcp-subnet, remove-dhcp-subnet,
//! add-dhcp-entry, remove-dhcp-entry, set-dhcp-options.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde_json::Value;

use super::nic::{dhcp_link_for, release_port};
use super::{input, Context, Job};
use crate::error::{Error, Result};
use crate::nb::ids::Scope;
use crate::nb::{key, quoted, Kind};
use crate::observe::Want;
use crate::payload::types::{db_id, decimal, dns_name, host_ipv4, ipv4, Ipv4Cidr};
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

/// How a DHCP option code maps to OVN's option name and value type (the
/// types of ovn-northd's DHCP option table, `lib/ovn-l7.h`). northd copies
/// the value into the logical flow's `put_dhcp_opts(...)` as-is: a value
/// that is not exactly of its type breaks the whole action (the NIC gets no
/// DHCP answer at all), and one with OVN syntax in it can add options of
/// its own (`router`, `server_id`, ...). So every value is parsed by its
/// type and re-encoded; nothing passes through raw.
#[derive(Clone, Copy)]
enum Syntax {
    /// `ipv4`: one host address.
    Ip,
    /// `ipv4` holding several: `{a, b}`.
    IpList,
    /// `str`: a quoted string of printable ASCII.
    Str,
    /// `str` that is a DNS name (host name, domain name).
    Name,
    /// `domains`: a quoted comma-separated list of DNS names.
    Domains,
    /// `uint16` with DHCP's own minimum (RFC 2132: MTU >= 68).
    Mtu,
    /// `static_routes`: `{prefix,nexthop, prefix,nexthop}`.
    StaticRoutes,
}

const OPTION_CODES: &[(u8, &str, Syntax)] = &[
    (3, "router", Syntax::Ip),
    (6, "dns_server", Syntax::IpList),
    (12, "hostname", Syntax::Name),
    (15, "domain_name", Syntax::Name),
    (26, "mtu", Syntax::Mtu),
    (28, "broadcast_address", Syntax::Ip),
    (42, "ntp_server", Syntax::IpList),
    // `host_id` in OVN: a name or an address, quoted either way.
    (66, "tftp_server", Syntax::Str),
    (67, "bootfile_name", Syntax::Str),
    (119, "domain_search_list", Syntax::Domains),
    (121, "classless_static_route", Syntax::StaticRoutes),
    (150, "tftp_server_address", Syntax::Ip),
    (252, "wpad", Syntax::Str),
];

/// A DHCP option carries at most 255 bytes.
const MAX_OPTION_LEN: usize = 255;

/// One option value of `syntax`, encoded the way OVN parses it.
fn encode_option(field: &str, syntax: Syntax, value: &str) -> Result<String> {
    let host = |s: &str| -> Result<Ipv4Addr> { host_ipv4(field, ipv4(field, s.trim())?) };
    match syntax {
        Syntax::Ip => Ok(host(value)?.to_string()),
        Syntax::IpList => {
            let ips: Vec<String> = value.split(',').map(|s| host(s).map(|ip| ip.to_string())).collect::<Result<_>>()?;
            if ips.len() * 4 > MAX_OPTION_LEN {
                return Err(Error::field(field, format!("{} addresses do not fit in a DHCP option", ips.len())));
            }
            Ok(format!("{{{}}}", ips.join(", ")))
        }
        Syntax::Str => {
            let printable = value.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
            if value.is_empty() || value.len() > MAX_OPTION_LEN || !printable {
                return Err(Error::field(
                    field,
                    "expected 1-255 printable ASCII characters without quotes or backslashes",
                ));
            }
            Ok(quoted(value))
        }
        Syntax::Name => Ok(quoted(&dns_name(field, value)?)),
        Syntax::Domains => {
            let names: Vec<String> = value.split(',').map(|d| dns_name(field, d.trim())).collect::<Result<_>>()?;
            let joined = names.join(",");
            if joined.len() > MAX_OPTION_LEN {
                return Err(Error::field(field, "the search list does not fit in a DHCP option"));
            }
            Ok(quoted(&joined))
        }
        Syntax::Mtu => {
            let mtu = decimal(value)
                .filter(|m| (68..=65535).contains(m))
                .ok_or_else(|| Error::field(field, format!("expected an MTU within 68-65535, got {value:?}")))?;
            Ok(mtu.to_string())
        }
        Syntax::StaticRoutes => {
            let bad = || Error::field(field, "expected {prefix,nexthop, prefix,nexthop, ...} with IPv4 prefixes");
            let inner = value.trim().strip_prefix('{').and_then(|v| v.strip_suffix('}')).ok_or_else(bad)?;
            let items: Vec<&str> = inner.split(',').map(str::trim).collect();
            if items.len() < 2 || items.len() % 2 != 0 {
                return Err(bad());
            }
            let mut routes = Vec::new();
            for pair in items.chunks(2) {
                let prefix = Ipv4Cidr::parse(field, pair[0]).map_err(|_| bad())?.network();
                // RFC 3442: a 0.0.0.0 router means "on the link".
                let hop = ipv4(field, pair[1]).map_err(|_| bad())?;
                if !hop.is_unspecified() {
                    host_ipv4(field, hop)?;
                }
                routes.push(format!("{prefix},{hop}"));
            }
            Ok(format!("{{{}}}", routes.join(", ")))
        }
    }
}

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
        let n = decimal(code.trim())
            .and_then(|n| u8::try_from(n).ok())
            .ok_or_else(|| Error::field("options", format!("{code:?} is not a DHCP option code")))?;
        let (_, name, syntax) = OPTION_CODES
            .iter()
            .find(|(c, _, _)| *c == n)
            .ok_or_else(|| Error::Unsupported(format!("set-dhcp-options: DHCP option {n}")))?;
        let encoded = encode_option(&format!("options[{n}]"), *syntax, &value)?;
        if out.insert(name.to_string(), encoded).is_some() {
            return Err(Error::field("options", format!("option {n} is given twice")));
        }
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

    /// Issue 9 #6: every value is parsed by its OVN type; OVN syntax inside
    /// a value (which could add `router`, `server_id`, ... to the NIC's
    /// `put_dhcp_opts`) and out-of-range numbers are refused.
    #[test]
    fn option_values_are_typed() {
        let o = extra_options(&json!({"121": "{10.9.0.5/16,10.1.1.1, 0.0.0.0/0,10.1.1.1}", "26": 1400})).unwrap();
        assert_eq!(o["classless_static_route"], "{10.9.0.0/16,10.1.1.1, 0.0.0.0/0,10.1.1.1}");
        assert_eq!(o["mtu"], "1400");
        for bad in [
            json!({"121": "{10.0.0.0/8,10.1.1.1}, router = 6.6.6.6"}),
            json!({"121": "{10.0.0.0/8,10.1.1.1}, server_id = 6.6.6.6, x = {1}"}),
            json!({"121": "{10.0.0.0/8,10.1.1.1, lease_time=1}"}),
            json!({"121": "{a b c}"}),
            json!({"121": "{}"}),
            json!({"121": "{10.0.0.0/8}"}),
            json!({"121": "{10.0.0.0/8,224.0.0.1}"}),
            json!({"26": "4294967295"}),
            json!({"26": "65536"}),
            json!({"26": "+1400"}),
            json!({"26": "0"}),
            json!({"26": -1}),
            json!({"3": "0.0.0.0"}),
            json!({"3": "10.1.1.1, 10.1.1.2"}),
            json!({"6": "10.0.0.1,,10.0.0.2"}),
            json!({"6": "10.0.0.1, 2001:db8::1"}),
            json!({"12": "a b"}),
            json!({"15": "x\"), router=(1"}),
            json!({"67": "pxe\u{7f}"}),
            json!({"67": "x".repeat(256)}),
            json!({"119": "a.example,,b.example"}),
            json!({"+15": "example.com"}),
            json!({"015": "example.com", "15": "b.example"}),
        ] {
            assert!(extra_options(&bad).is_err(), "{bad}");
        }
    }
}
