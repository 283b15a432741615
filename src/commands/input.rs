//! Payload fields → validated planner inputs. Every check happens here,
//! before any connection to the NB, so bad input never changes anything.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Context;
use crate::error::{Error, Result};
use crate::nb::ids::Scope;
use crate::nb::METADATA_IP;
use crate::payload::types::{
    db_id, dns_name, host_in_subnet, host_ipv4, host_ipv6, ip_list, ipv4, ipv6, nic_uuid, GuestType, Ipv4Cidr,
    Ipv6Cidr, Mac, Vlan,
};
use crate::payload::Payload;
use crate::plan::network::{DhcpSubnet, DnsEntry, NicSpec, Physical, SwitchSpec};
use crate::plan::router::{GatewaySpec, Protocol, PublicIp, PublicNet, RouterOf, RouterScope};

fn optional_id(p: &Payload, field: &str) -> Result<Option<u64>> {
    p.nonempty(field).map(|v| db_id(field, &v)).transpose()
}

pub fn scope(ctx: &Context) -> Result<Scope> {
    let p = ctx.payload();
    Ok(Scope {
        owner: ctx.owner.clone(),
        network_id: db_id("network_id", &p.require("network_id")?)?,
        zone_id: optional_id(p, "zone_id")?,
        vpc_id: optional_id(p, "vpc_id")?,
    })
}

pub fn vpc_id(ctx: &Context) -> Result<Option<u64>> {
    optional_id(ctx.payload(), "vpc_id")
}

fn optional_v4(p: &Payload, field: &str) -> Result<Option<Ipv4Addr>> {
    p.nonempty(field).map(|v| ipv4(field, &v)).transpose()
}

fn optional_v6(p: &Payload) -> Result<Option<Ipv6Addr>> {
    p.nonempty("ip6_address").map(|v| ipv6("ip6_address", &v)).transpose()
}

/// A NIC's IPv4 address: a host address (not 0.0.0.0, multicast, ...).
fn optional_host_v4(p: &Payload, field: &str) -> Result<Option<Ipv4Addr>> {
    optional_v4(p, field)?.map(|ip| host_ipv4(field, ip)).transpose()
}

/// A NIC's IPv6 address: a host address (not `::`, `::1`, `ff02::1`, v4-mapped).
fn optional_host_v6(p: &Payload) -> Result<Option<Ipv6Addr>> {
    optional_v6(p)?.map(|ip| host_ipv6("ip6_address", ip)).transpose()
}

fn guest_gateway6_addr(p: &Payload) -> Result<Option<Ipv6Addr>> {
    p.nonempty("network_ip6_gateway").map(|v| ipv6("network_ip6_gateway", &v)).transpose()
}

/// The network's CIDR and gateway (in NIC payloads `gateway` is the NIC's,
/// which CloudStack writes over the network's under the same key).
pub fn switch_spec(ctx: &Context) -> Result<SwitchSpec> {
    let p = ctx.payload();
    let cidr = p.nonempty("cidr").map(|v| Ipv4Cidr::parse("cidr", &v)).transpose()?;
    let mut gateway = optional_v4(p, "gateway")?;
    if let (Some(c), Some(g)) = (cidr, gateway) {
        if !c.contains(g) {
            // A NIC of another IP range of a shared network: `gateway` is
            // its range's (CloudStack writes the NIC's over the network's),
            // not the network's, so it is no fact about the switch.
            if !subnet_of(ctx)?.is_some_and(|own| own.contains(g)) {
                return Err(Error::field("gateway", format!("{g} is outside cidr {}", c.network())));
            }
            gateway = None;
        }
    }
    Ok(SwitchSpec { cidr, gateway, physical: physical(ctx)? })
}

/// The network's type (`guest_type`, `vpc_id`; the VLAN of shared and L2
/// networks from `vlan`).
pub fn guest_type(ctx: &Context) -> Result<GuestType> {
    let p = ctx.payload();
    GuestType::parse(p.str("guest_type").as_deref(), vpc_id(ctx)?.is_some(), p.str("vlan").as_deref())
}

/// A shared or L2 network's localnet: `ovn.shared.network_name` and its VLAN.
fn physical(ctx: &Context) -> Result<Option<Physical>> {
    let guest_type = guest_type(ctx)?;
    let vlan = match guest_type {
        GuestType::Shared { vlan } | GuestType::L2 { vlan } => vlan,
        GuestType::Isolated | GuestType::Vpc => return Ok(None),
    };
    let network_name = ctx.config.shared_network_name.clone();
    Ok(Some(Physical { guest_type, network_name, vlan, require_vlan: false }))
}

/// NAT, forwarding, firewall, load balancing and public IPs live on our
/// router; a shared or L2 network has none (its gateway is the physical
/// router), so these commands are refused before anything is read.
pub fn require_routed(ctx: &Context) -> Result<()> {
    let guest_type = guest_type(ctx)?;
    if guest_type.on_physical() {
        return Err(Error::field("guest_type", crate::plan::network::not_routed_reason(&ctx.inv.command, guest_type)));
    }
    Ok(())
}

pub fn nic_uuid_field(ctx: &Context) -> Result<String> {
    let p = ctx.payload();
    match p.nonempty("nic_uuid") {
        Some(v) => nic_uuid("nic_uuid", &v),
        None if ctx.legacy() => Err(Error::Missing(
            "--nic-uuid (the extension needs the detail vif.binding=lswitch so CloudStack passes it)".into(),
        )),
        None => Err(Error::Missing("nic_uuid".into())),
    }
}

pub fn nic_spec(ctx: &Context) -> Result<NicSpec> {
    let p = ctx.payload();
    let nic_uuid = nic_uuid_field(ctx)?;
    let mac = Mac::parse("mac", &p.require("mac")?)?;
    let (ipv4, ipv6) = (optional_host_v4(p, "ip")?, optional_host_v6(p)?);
    if let (Some(ip), Some(gw)) = (ipv4, optional_v4(p, "gateway")?) {
        if ip == gw {
            return Err(Error::field("ip", format!("{ip} is the gateway's address")));
        }
    }
    if let Some(ip) = ipv4 {
        // Its own subnet when the payload has one (shared networks), else the network's.
        if let Some(subnet) = subnet_of(ctx)?.or(switch_spec(ctx)?.cidr) {
            host_in_subnet("ip", ip, subnet)?;
        }
    }
    if let (Some(ip), Some(gw)) = (ipv6, guest_gateway6_addr(p)?) {
        if ip == gw {
            return Err(Error::field("ip6_address", format!("{ip} is the IPv6 gateway's address")));
        }
    }
    if let (Some(ip), Some(c)) = (ipv4, switch_spec(ctx)?.cidr) {
        // A shared network may span several subnets: an address outside the
        // network's CIDR is fine only when it comes with its own netmask and a
        // gateway on that subnet.
        let own_subnet_ok = match (subnet_of(ctx)?, optional_v4(p, "gateway")?) {
            (Some(sub), Some(gw)) => sub.contains(gw),
            _ => false,
        };
        if !c.contains(ip) && !own_subnet_ok {
            return Err(Error::field(
                "ip",
                format!("{ip} is outside cidr {} and has no gateway on its own subnet", c.network()),
            ));
        }
    }
    let cidr6 = p.nonempty("network_ip6_cidr").map(|v| Ipv6Cidr::parse("network_ip6_cidr", &v)).transpose()?;
    if let (Some(ip), Some(c)) = (ipv6, cidr6) {
        if !c.contains(ip) {
            return Err(Error::field("ip6_address", format!("{ip} is outside network_ip6_cidr {c}")));
        }
    }
    // An L2 network's guest addresses are the guest's business (CloudStack
    // may not know them): port security pins the MAC only.
    let (ipv4, ipv6) = if matches!(guest_type(ctx)?, GuestType::L2 { .. }) { (None, None) } else { (ipv4, ipv6) };
    Ok(NicSpec { nic_uuid, nic_id: optional_id(p, "nic_id")?, mac, ipv4, ipv6 })
}

pub fn default_nic(ctx: &Context) -> Result<bool> {
    Ok(ctx.payload().bool("default_nic")?.unwrap_or(true))
}

pub fn hostname(ctx: &Context) -> Result<Option<String>> {
    ctx.payload().nonempty("hostname").map(|h| dns_name("hostname", &h)).transpose()
}

pub fn domain(ctx: &Context) -> Result<Option<String>> {
    ctx.payload().nonempty("domain").map(|d| dns_name("domain", &d)).transpose()
}

fn prefix_of(netmask: &str) -> Result<u8> {
    let m = u32::from(ipv4("netmask", netmask)?);
    let prefix = m.leading_ones();
    if m.checked_shl(prefix).unwrap_or(0) != 0 {
        return Err(Error::field("netmask", format!("{netmask} is not a contiguous netmask")));
    }
    Ok(prefix as u8)
}

/// The NIC's own subnet when the payload has its IP and netmask (a shared
/// network can span several subnets); `None` otherwise.
fn subnet_of(ctx: &Context) -> Result<Option<Ipv4Cidr>> {
    let p = ctx.payload();
    match (optional_v4(p, "ip")?, p.nonempty("netmask")) {
        (Some(ip), Some(mask)) => Ok(Some(Ipv4Cidr { addr: ip, prefix: prefix_of(&mask)? }.network())),
        _ => Ok(None),
    }
}

/// The subnet whose DHCP rows a NIC uses: its own, else the network's.
pub fn dhcp_cidr(ctx: &Context) -> Result<Option<Ipv4Cidr>> {
    Ok(subnet_of(ctx)?.or(switch_spec(ctx)?.cidr.map(|c| c.network())))
}

/// Native DHCPv4 settings for the subnet in the payload.
pub fn dhcp_subnet(ctx: &Context) -> Result<DhcpSubnet> {
    let p = ctx.payload();
    let cidr = dhcp_cidr(ctx)?.ok_or_else(|| Error::Missing("cidr (or ip and netmask)".into()))?;
    let router = optional_host_v4(p, "gateway")?;
    if let Some(r) = router.filter(|r| !cidr.contains(*r)) {
        return Err(Error::field("gateway", format!("{r} is outside the DHCP subnet {cidr}")));
    }
    let extension_ip = optional_v4(p, "extension_ip")?.filter(|ip| cidr.contains(*ip));
    let server_id = match guest_type(ctx)? {
        GuestType::L2 { .. } => {
            return Err(Error::field("guest_type", "an L2 network has no DHCP: its addresses are the guests' own"))
        }
        // The gateway is the physical router: answering DHCP in its name
        // would point guests' renewals (and metadata clients, which use the
        // server id) at a box that serves neither. CloudStack's
        // extension_ip (the metadata port's address) or the metadata
        // address of the UserData design.
        GuestType::Shared { .. } => extension_ip.filter(|e| Some(*e) != router).unwrap_or(METADATA_IP),
        GuestType::Isolated | GuestType::Vpc => extension_ip
            .or(router)
            .ok_or_else(|| Error::Missing("gateway or extension_ip (the DHCP server address)".into()))?,
    };
    let dns_servers: Vec<Ipv4Addr> = match p.nonempty("dns") {
        Some(list) => ip_list("dns", &list)?
            .into_iter()
            .filter_map(|ip| match ip {
                IpAddr::V4(v4) => Some(host_ipv4("dns", v4)),
                IpAddr::V6(_) => None,
            })
            .collect::<Result<_>>()?,
        None => Vec::new(),
    };
    // One DHCP option holds at most 255 bytes, 63 addresses.
    if dns_servers.len() > 63 {
        return Err(Error::field("dns", format!("{} servers do not fit in a DHCP option", dns_servers.len())));
    }
    Ok(DhcpSubnet {
        cidr,
        server_id,
        router,
        dns_servers,
        domain: domain(ctx)?,
        mtu: ctx.config.mtu,
        lease_time: ctx.config.lease_time,
    })
}

pub fn dns_entry(ctx: &Context) -> Result<DnsEntry> {
    let hostname = hostname(ctx)?.ok_or_else(|| Error::Missing("hostname".into()))?;
    let (ipv4, ipv6) = nic_addresses(ctx)?;
    Ok(DnsEntry { hostname, domain: domain(ctx)?, ipv4, ipv6 })
}

/// The NIC's IPv4 and/or IPv6 address; at least one is required.
pub fn nic_addresses(ctx: &Context) -> Result<(Option<Ipv4Addr>, Option<Ipv6Addr>)> {
    let p = ctx.payload();
    let ipv4 = optional_host_v4(p, "ip")?;
    let ipv6 = optional_host_v6(p)?;
    if ipv4.is_none() && ipv6.is_none() {
        return Err(Error::Missing("ip (or ip6_address)".into()));
    }
    Ok((ipv4, ipv6))
}

/// The router a command concerns: the VPC's for a tier (or VPC command),
/// else the isolated network's.
pub fn router_scope(ctx: &Context) -> Result<RouterScope> {
    let p = ctx.payload();
    let of = match vpc_id(ctx)? {
        Some(v) => RouterOf::Vpc(v),
        None => RouterOf::Network(db_id("network_id", &p.require("network_id")?)?),
    };
    Ok(RouterScope { owner: ctx.owner.clone(), of, zone_id: optional_id(p, "zone_id")? })
}

/// `public_vlan` arrives as `101`, `vlan://101` or `untagged` (§4.4).
pub fn vlan(field: &str, raw: &str) -> Result<Option<u16>> {
    Ok(Vlan::parse(field, raw)?.and_then(Vlan::tag))
}

/// The public IP of the payload with its subnet, gateway and VLAN.
pub fn public_ip(ctx: &Context) -> Result<PublicIp> {
    let p = ctx.payload();
    let ip = host_ipv4("public_ip", ipv4("public_ip", &p.require("public_ip")?)?)?;
    // Newer CloudStack sends network/prefix, the CLI era ip/prefix: only the prefix counts.
    let cidr = Ipv4Cidr::parse("public_cidr", &p.require("public_cidr")?)?;
    let subnet = Ipv4Cidr { addr: ip, prefix: cidr.prefix }.network();
    host_in_subnet("public_ip", ip, subnet)?;
    let gateway = host_ipv4("public_gateway", ipv4("public_gateway", &p.require("public_gateway")?)?)?;
    host_in_subnet("public_gateway", gateway, subnet)?;
    if !subnet.contains(gateway) {
        return Err(Error::field("public_gateway", format!("{gateway} is not on the public IP's subnet {subnet}")));
    }
    if gateway == ip {
        return Err(Error::field("public_ip", format!("{ip} is the public gateway itself")));
    }
    let net = PublicNet {
        network_name: ctx.config.public_network_name.clone(),
        vlan: vlan("public_vlan", &p.str("public_vlan").unwrap_or_default())?,
    };
    Ok(PublicIp { ip, prefix: cidr.prefix, gateway, net })
}

/// Just the address, for commands that only name it (release, NAT deletes).
pub fn public_address(ctx: &Context) -> Result<Ipv4Addr> {
    host_ipv4("public_ip", ipv4("public_ip", &ctx.payload().require("public_ip")?)?)
}

/// The prefix of `public_cidr`, when given.
pub fn public_prefix(ctx: &Context) -> Result<Option<u8>> {
    Ok(ctx.payload().nonempty("public_cidr").map(|c| Ipv4Cidr::parse("public_cidr", &c)).transpose()?.map(|c| c.prefix))
}

pub fn source_nat(ctx: &Context) -> Result<bool> {
    Ok(ctx.payload().bool("source_nat")?.unwrap_or(false))
}

/// Where the gateway runs: needed by every command that may create a
/// router's gateway (`dnat_and_snat` needs a gateway chassis), so a missing
/// `ovn.gateway.chassis` is a configuration error before connecting.
pub fn gateway_spec(ctx: &Context) -> Result<GatewaySpec> {
    let chassis = ctx.config.gateway_chassis.clone();
    if chassis.is_empty() {
        return Err(Error::Config(
            "no gateway chassis: set the registration detail ovn.gateway.chassis (ordered chassis names) so OVN can place NAT".into(),
        ));
    }
    Ok(GatewaySpec { chassis, mtu: ctx.config.public_mtu })
}

/// `private_ip`, which must be on the network when its CIDR is known.
pub fn private_ip(ctx: &Context) -> Result<Ipv4Addr> {
    let ip = host_ipv4("private_ip", ipv4("private_ip", &ctx.payload().require("private_ip")?)?)?;
    if let Some(c) = switch_spec(ctx)?.cidr {
        if !c.contains(ip) {
            return Err(Error::field("private_ip", format!("{ip} is outside the network's cidr {}", c.network())));
        }
        host_in_subnet("private_ip", ip, c)?;
    }
    Ok(ip)
}

/// Forwarding protocol: tcp (the default) or udp.
pub fn protocol(ctx: &Context) -> Result<Protocol> {
    match ctx.payload().nonempty("protocol").map(|p| p.to_ascii_lowercase()).as_deref() {
        None | Some("tcp") => Ok(Protocol::Tcp),
        Some("udp") => Ok(Protocol::Udp),
        Some(other) => Err(Error::field("protocol", format!("port forwarding supports tcp and udp, got {other:?}"))),
    }
}

/// The guest network's gateway address with the network's prefix.
pub fn guest_gateway(ctx: &Context) -> Result<Option<Ipv4Cidr>> {
    let spec = switch_spec(ctx)?;
    Ok(match (spec.gateway, spec.cidr) {
        (Some(g), Some(c)) => Some(Ipv4Cidr { addr: g, prefix: c.prefix }),
        _ => None,
    })
}

/// The guest network's IPv6 gateway as a router-port network
/// (`network_ip6_gateway` + the prefix of `network_ip6_cidr`), for the
/// router advertisements that let VMs configure the address CloudStack
/// allocated (EUI-64 from the NIC's MAC, so SLAAC needs a /64).
pub fn guest_gateway6(ctx: &Context) -> Result<Option<Ipv6Cidr>> {
    let p = ctx.payload();
    let gateway = p.nonempty("network_ip6_gateway").map(|v| ipv6("network_ip6_gateway", &v)).transpose()?;
    let cidr = p.nonempty("network_ip6_cidr").map(|v| Ipv6Cidr::parse("network_ip6_cidr", &v)).transpose()?;
    match (gateway, cidr) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(Error::Missing("network_ip6_cidr (network_ip6_gateway is set)".into())),
        (None, Some(_)) => Err(Error::Missing("network_ip6_gateway (network_ip6_cidr is set)".into())),
        (Some(g), Some(c)) if !c.contains(g) => {
            Err(Error::field("network_ip6_gateway", format!("{g} is outside network_ip6_cidr {c}")))
        }
        (Some(_), Some(c)) if c.prefix != 64 => Err(Error::Unsupported(format!(
            "IPv6 guest prefix {c}: CloudStack's addresses are EUI-64 (SLAAC), which needs a /64"
        ))),
        (Some(g), Some(c)) => Ok(Some(Ipv6Cidr { addr: g, prefix: c.prefix })),
    }
}

/// The guest network's IPv6 prefix (`network_ip6_cidr`), if it has one.
pub fn guest_cidr6(ctx: &Context) -> Result<Option<Ipv6Cidr>> {
    ctx.payload().nonempty("network_ip6_cidr").map(|v| Ipv6Cidr::parse("network_ip6_cidr", &v)).transpose()
}

/// The VPC's super-CIDR (`vpc_cidr`; README-era payloads call it `cidr`).
pub fn vpc_cidr(ctx: &Context) -> Result<Option<Ipv4Cidr>> {
    let p = ctx.payload();
    let raw =
        p.nonempty("vpc_cidr").or_else(|| p.nonempty("network_id").is_none().then(|| p.nonempty("cidr")).flatten());
    raw.map(|c| Ipv4Cidr::parse("vpc_cidr", &c)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlans() {
        assert_eq!(vlan("v", "101").unwrap(), Some(101));
        assert_eq!(vlan("v", "vlan://101").unwrap(), Some(101));
        assert_eq!(vlan("v", "untagged").unwrap(), None);
        assert_eq!(vlan("v", "vlan://untagged").unwrap(), None);
        assert_eq!(vlan("v", "").unwrap(), None);
        for bad in ["0", "4095", "vlan://x", "lswitch://1", "+101", "vlan://+7"] {
            assert!(vlan("v", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn netmasks() {
        assert_eq!(prefix_of("255.255.255.0").unwrap(), 24);
        assert_eq!(prefix_of("255.255.254.0").unwrap(), 23);
        assert_eq!(prefix_of("0.0.0.0").unwrap(), 0);
        assert!(prefix_of("255.0.255.0").is_err());
        assert!(prefix_of("nope").is_err());
    }
}
