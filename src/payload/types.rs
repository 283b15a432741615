//! Validated values: everything that reaches the planner has passed through
//! one of these parsers, so bad input fails before we touch the NB.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::{Error, Result};

/// A CloudStack database id (`network_id`, `zone_id`, `vpc_id`, `nic_id`):
/// the payload carries them as decimal strings.
pub fn db_id(field: &str, raw: &str) -> Result<u64> {
    if raw.is_empty() || raw.len() > 19 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::field(field, format!("expected a numeric id, got {raw:?}")));
    }
    raw.parse::<u64>().map_err(|_| Error::field(field, format!("expected a numeric id, got {raw:?}")))
}

/// An unsigned decimal number: ASCII digits only (`u32::from_str` would
/// also take a leading `+`), at most `u32::MAX`.
pub fn decimal(raw: &str) -> Option<u32> {
    if raw.is_empty() || raw.len() > 10 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

/// IPv4 prefix as CloudStack writes it, e.g. `10.1.1.0/24`. The host bits
/// may be set (the CLI era sent `ip/prefix`); [`Ipv4Cidr::network`] clears them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    pub fn parse(field: &str, raw: &str) -> Result<Ipv4Cidr> {
        let bad = || Error::field(field, format!("expected an IPv4 CIDR such as 10.1.1.0/24, got {raw:?}"));
        let (a, p) = raw.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if prefix > 32 || p.starts_with('+') {
            return Err(bad());
        }
        Ok(Ipv4Cidr { addr, prefix })
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    pub fn network(&self) -> Ipv4Cidr {
        Ipv4Cidr { addr: Ipv4Addr::from(u32::from(self.addr) & self.mask()), prefix: self.prefix }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }

    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask())
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// IPv6 prefix, e.g. `2001:db8:1:2::/64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Cidr {
    pub addr: Ipv6Addr,
    pub prefix: u8,
}

impl Ipv6Cidr {
    pub fn parse(field: &str, raw: &str) -> Result<Ipv6Cidr> {
        let bad = || Error::field(field, format!("expected an IPv6 CIDR such as 2001:db8:1:2::/64, got {raw:?}"));
        let (a, p) = raw.split_once('/').ok_or_else(bad)?;
        let addr: Ipv6Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if prefix > 128 || p.starts_with('+') {
            return Err(bad());
        }
        Ok(Ipv6Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - self.prefix) };
        u128::from(ip) & mask == u128::from(self.addr) & mask
    }
}

impl fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// One CIDR of a rule's address list, of either family. CloudStack mixes
/// IPv4 and IPv6 CIDRs in one list (`0.0.0.0/0, ::/0`); each family only
/// ever matches traffic of that family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpCidr {
    V4(Ipv4Cidr),
    V6(Ipv6Cidr),
}

impl IpCidr {
    /// `a.b.c.d/n`, `x::/n`, or a bare address (a /32 or /128).
    pub fn parse(field: &str, raw: &str) -> Result<IpCidr> {
        let bad = || Error::field(field, format!("expected an IPv4 or IPv6 CIDR, got {raw:?}"));
        let (addr, prefix) = match raw.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (raw, None),
        };
        let prefix = match prefix {
            // Digits only: `u8::from_str` would also take `+8`.
            Some(p) if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) => return Err(bad()),
            Some(p) => Some(p.parse::<u8>().map_err(|_| bad())?),
            None => None,
        };
        match addr.parse::<IpAddr>().map_err(|_| bad())? {
            IpAddr::V4(a) => {
                let prefix = prefix.unwrap_or(32);
                if prefix > 32 {
                    return Err(bad());
                }
                Ok(IpCidr::V4(Ipv4Cidr { addr: a, prefix }))
            }
            IpAddr::V6(a) => {
                let prefix = prefix.unwrap_or(128);
                if prefix > 128 {
                    return Err(bad());
                }
                Ok(IpCidr::V6(Ipv6Cidr { addr: a, prefix }))
            }
        }
    }
}

impl Ipv6Cidr {
    /// The prefix with its host bits cleared.
    pub fn network(&self) -> Ipv6Cidr {
        let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - self.prefix) };
        Ipv6Cidr { addr: Ipv6Addr::from(u128::from(self.addr) & mask), prefix: self.prefix }
    }
}

pub fn ipv4(field: &str, raw: &str) -> Result<Ipv4Addr> {
    raw.parse().map_err(|_| Error::field(field, format!("expected an IPv4 address, got {raw:?}")))
}

/// An address a NIC (or a backend, or a NAT target) can have: not
/// unspecified, loopback, multicast, class E or the limited broadcast;
/// OVN would install it and nothing could ever reach it (or everything
/// would).
pub fn host_ipv4(field: &str, ip: Ipv4Addr) -> Result<Ipv4Addr> {
    let why = if ip.is_unspecified() {
        "the unspecified address"
    } else if ip.is_loopback() {
        "a loopback address"
    } else if ip.is_multicast() {
        "a multicast address"
    } else if ip.is_broadcast() {
        "the broadcast address"
    } else if ip.octets()[0] >= 240 {
        "a reserved (class E) address"
    } else {
        return Ok(ip);
    };
    Err(Error::field(field, format!("{ip} is {why}, not a host address")))
}

/// [`host_ipv4`] for IPv6: not `::`, `::1`, multicast (`ff00::/8`) or an
/// IPv4-mapped address (`::ffff:a.b.c.d`, which is IPv4 traffic).
pub fn host_ipv6(field: &str, ip: Ipv6Addr) -> Result<Ipv6Addr> {
    let why = if ip.is_unspecified() {
        "the unspecified address"
    } else if ip.is_loopback() {
        "the loopback address"
    } else if ip.is_multicast() {
        "a multicast address"
    } else if ip.to_ipv4_mapped().is_some() {
        "an IPv4-mapped address"
    } else {
        return Ok(ip);
    };
    Err(Error::field(field, format!("{ip} is {why}, not a host address")))
}

/// A host address inside `subnet`: neither its network nor (below /31) its
/// broadcast address.
pub fn host_in_subnet(field: &str, ip: Ipv4Addr, subnet: Ipv4Cidr) -> Result<()> {
    let net = subnet.network();
    if subnet.prefix < 31 && subnet.contains(ip) {
        let broadcast = Ipv4Addr::from(u32::from(net.addr) | !u32::from(net.netmask()));
        if ip == net.addr {
            return Err(Error::field(field, format!("{ip} is the network address of {net}")));
        }
        if ip == broadcast {
            return Err(Error::field(field, format!("{ip} is the broadcast address of {net}")));
        }
    }
    Ok(())
}

pub fn ipv6(field: &str, raw: &str) -> Result<Ipv6Addr> {
    raw.parse().map_err(|_| Error::field(field, format!("expected an IPv6 address, got {raw:?}")))
}

/// `dns1[,dns2]`; IPv6 servers are accepted but only IPv4 ones go into DHCPv4.
pub fn ip_list(field: &str, raw: &str) -> Result<Vec<IpAddr>> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<IpAddr>().map_err(|_| Error::field(field, format!("expected IP addresses, got {s:?}"))))
        .collect()
}

/// A unicast Ethernet address, normalised to lower-case `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub fn parse(field: &str, raw: &str) -> Result<Mac> {
        let bad = |why: &str| Error::field(field, format!("{why}, got {raw:?}"));
        let parts: Vec<&str> = raw.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(bad("expected a MAC address such as 02:00:4c:3e:00:05"));
        }
        let mut b = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            // Two hex digits: `u8::from_str_radix` would also take `+a`.
            if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad("expected a MAC address such as 02:00:4c:3e:00:05"));
            }
            b[i] = u8::from_str_radix(p, 16).map_err(|_| bad("expected a MAC address such as 02:00:4c:3e:00:05"))?;
        }
        if b[0] & 1 == 1 {
            return Err(bad("a NIC MAC must be unicast"));
        }
        if b == [0; 6] {
            return Err(bad("the all-zero MAC is not a NIC address"));
        }
        Ok(Mac(b))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

/// The NIC uuid, which libvirt writes as `iface-id` and which therefore *is*
/// the Logical_Switch_Port name. Kept in CloudStack's lower-case hyphenated form.
pub fn nic_uuid(field: &str, raw: &str) -> Result<String> {
    let u = uuid::Uuid::try_parse(raw).map_err(|_| Error::field(field, format!("expected a UUID, got {raw:?}")))?;
    let canonical = u.hyphenated().to_string();
    if raw.len() != canonical.len() {
        // Braced / URN / simple forms would never match libvirt's iface-id.
        return Err(Error::field(field, format!("expected a hyphenated UUID, got {raw:?}")));
    }
    Ok(canonical)
}

/// A DNS host or domain name (RFC 1123 labels). Because these end up inside
/// OVN's quoted DHCP options and DNS records, anything else is refused
/// rather than escaped.
pub fn dns_name(field: &str, raw: &str) -> Result<String> {
    let name = raw.trim_end_matches('.').to_ascii_lowercase();
    let bad = || Error::field(field, format!("expected a DNS name (letters, digits, '-', '.'), got {raw:?}"));
    if name.is_empty() || name.len() > 253 {
        return Err(bad());
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(bad());
        }
    }
    Ok(name)
}

/// A VLAN on the physical network: `vlan://N` or `vlan://untagged`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vlan {
    Tag(u16),
    Untagged,
}

impl Vlan {
    /// `101`, `vlan://101`, `untagged` or `vlan://untagged` (CloudStack
    /// writes VLANs in all these forms, §4.2/§4.4). `None` for an empty
    /// value.
    pub fn parse(field: &str, raw: &str) -> Result<Option<Vlan>> {
        let v = raw.trim();
        let v = v.strip_prefix("vlan://").unwrap_or(v);
        if v.is_empty() {
            return Ok(None);
        }
        if v.eq_ignore_ascii_case("untagged") {
            return Ok(Some(Vlan::Untagged));
        }
        decimal(v)
            .filter(|n| (1..=4094).contains(n))
            .map(|n| Some(Vlan::Tag(n as u16)))
            .ok_or_else(|| Error::field(field, format!("expected a VLAN id 1-4094, vlan://N or untagged, got {raw:?}")))
    }

    /// The 802.1Q id, `None` untagged (the localnet port's `tag_request`).
    pub fn tag(self) -> Option<u16> {
        match self {
            Vlan::Tag(n) => Some(n),
            Vlan::Untagged => None,
        }
    }

    /// `3000` or `untagged`, as recorded in `external_ids`; [`Vlan::parse`] reads it back.
    pub fn id(self) -> String {
        match self {
            Vlan::Tag(n) => n.to_string(),
            Vlan::Untagged => "untagged".into(),
        }
    }

    /// CloudStack's broadcast URI of the VLAN.
    pub fn uri(self) -> String {
        format!("vlan://{}", self.id())
    }
}

/// What kind of guest network a command is about (payload `guest_type`,
/// `vpc_id`, and for networks on the physical VLAN the `vlan` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestType {
    /// Our overlay switch, routed (if at all) by its own router.
    Isolated,
    /// A VPC tier: our overlay switch, routed by the VPC's router.
    Vpc,
    /// CloudStack's Shared network: VMs bridged onto the physical VLAN, the
    /// physical router is the gateway; we give DHCP, DNS and UserData.
    /// `vlan` is `None` when the payload names no VLAN (see [`GuestType::parse`]).
    Shared { vlan: Option<Vlan> },
    /// An L2 network: bridged onto the physical VLAN, no IP services.
    L2 { vlan: Option<Vlan> },
}

impl GuestType {
    /// From `guest_type` (case-insensitive; absent = isolated, as legacy
    /// payloads are), whether the payload has a `vpc_id`, and `vlan`. Once
    /// implemented, the network's broadcast URI is what we printed, so a
    /// shared network's `vlan` is its VLAN again; an empty value or the host
    /// of an `ovn://cs-net-<id>` URI (printed by earlier versions, or set by
    /// the `vif.binding=lswitch` fork) names no VLAN: `vlan: None`, and the
    /// planner uses the one recorded on the switch.
    pub fn parse(guest_type: Option<&str>, vpc: bool, vlan: Option<&str>) -> Result<GuestType> {
        let physical_vlan = || -> Result<Option<Vlan>> {
            match vlan.map(str::trim) {
                Some(v) if v.starts_with("cs-net-") => Ok(None),
                Some(v) => Vlan::parse("vlan", v),
                None => Ok(None),
            }
        };
        match guest_type.map(|g| g.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("isolated") if vpc => Ok(GuestType::Vpc),
            None | Some("") | Some("isolated") => Ok(GuestType::Isolated),
            Some("shared") if !vpc => Ok(GuestType::Shared { vlan: physical_vlan()? }),
            Some("l2") if !vpc => Ok(GuestType::L2 { vlan: physical_vlan()? }),
            Some(g @ ("shared" | "l2")) => {
                Err(Error::field("guest_type", format!("a {g} network cannot be a VPC tier")))
            }
            Some(other) => Err(Error::field("guest_type", format!("expected isolated, shared or l2, got {other:?}"))),
        }
    }

    /// For messages: what the network is.
    pub fn name(self) -> &'static str {
        match self {
            GuestType::Isolated => "isolated",
            GuestType::Vpc => "VPC tier",
            GuestType::Shared { .. } => "shared",
            GuestType::L2 { .. } => "L2",
        }
    }

    /// Bridged onto the physical network (shared, L2)?
    pub fn on_physical(self) -> bool {
        matches!(self, GuestType::Shared { .. } | GuestType::L2 { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_prefixes() {
        let c = Ipv6Cidr::parse("c", "fd00:42::/64").unwrap();
        assert_eq!(c.to_string(), "fd00:42::/64");
        assert!(c.contains("fd00:42::4cff:fe3e:5".parse().unwrap()));
        assert!(!c.contains("fd00:43::1".parse().unwrap()));
        for bad in ["fd00:42::", "fd00:42::/129", "fd00:42::/+64", "10.0.0.0/8", "fd00::/x"] {
            assert!(Ipv6Cidr::parse("c", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidrs() {
        let c = Ipv4Cidr::parse("cidr", "10.1.1.7/24").unwrap();
        assert_eq!(c.network().to_string(), "10.1.1.0/24");
        assert!(c.contains("10.1.1.200".parse().unwrap()));
        assert!(!c.contains("10.1.2.1".parse().unwrap()));
        assert_eq!(c.netmask().to_string(), "255.255.255.0");
        for bad in ["10.1.1.0", "10.1.1.0/33", "10.1.1/24", "x/24", "10.1.1.0/+8", ""] {
            assert!(Ipv4Cidr::parse("cidr", bad).is_err(), "{bad}");
        }
        assert_eq!(Ipv4Cidr::parse("c", "0.0.0.0/0").unwrap().network().to_string(), "0.0.0.0/0");
    }

    #[test]
    fn macs() {
        assert_eq!(Mac::parse("mac", "02:00:4C:3E:00:05").unwrap().to_string(), "02:00:4c:3e:00:05");
        assert_eq!(Mac::parse("mac", "02-00-4c-3e-00-05").unwrap().to_string(), "02:00:4c:3e:00:05");
        for bad in [
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
            "02:00:4c:3e:00",
            "02:00:4c:3e:00:0g",
            "020:0:4c:3e:00:05",
            "02:00:4c:3e:00:+a",
            "02:00:4c:3e:00:-0",
            "02:+0:4c:3e:00:05",
        ] {
            assert!(Mac::parse("mac", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_and_uuids() {
        assert_eq!(db_id("network_id", "42").unwrap(), 42);
        for bad in ["", "-1", "4 2", "cs-net-42", "99999999999999999999"] {
            assert!(db_id("network_id", bad).is_err(), "{bad}");
        }
        assert_eq!(
            nic_uuid("nic_uuid", "3F0C0000-0000-4000-8000-000000000001").unwrap(),
            "3f0c0000-0000-4000-8000-000000000001"
        );
        assert!(nic_uuid("nic_uuid", "not-a-uuid").is_err());
        assert!(nic_uuid("nic_uuid", "{3f0c0000-0000-4000-8000-000000000001}").is_err());
    }

    #[test]
    fn names() {
        assert_eq!(dns_name("hostname", "VM-1").unwrap(), "vm-1");
        assert_eq!(dns_name("domain", "cs.example.").unwrap(), "cs.example");
        for bad in ["", "a\"b", "-a", "a..b", "a b", "x\\y"] {
            assert!(dns_name("hostname", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ip_lists() {
        let v = ip_list("dns", "10.0.0.1, 8.8.8.8,,2001:db8::1").unwrap();
        assert_eq!(v.len(), 3);
        assert!(ip_list("dns", "10.0.0.1,nope").is_err());
    }
    #[test]
    fn vlans_in_every_form() {
        for raw in ["3000", "vlan://3000", " 3000 "] {
            assert_eq!(Vlan::parse("vlan", raw).unwrap(), Some(Vlan::Tag(3000)), "{raw}");
        }
        for raw in ["untagged", "vlan://untagged", "UNTAGGED"] {
            assert_eq!(Vlan::parse("vlan", raw).unwrap(), Some(Vlan::Untagged), "{raw}");
        }
        assert_eq!(Vlan::parse("vlan", "").unwrap(), None);
        for bad in ["0", "4095", "vlan://x", "lswitch://1", "cs-net-42", "+101", "vlan://+7"] {
            assert!(Vlan::parse("vlan", bad).is_err(), "{bad}");
        }
        assert_eq!(Vlan::Tag(3000).uri(), "vlan://3000");
        assert_eq!(Vlan::Untagged.uri(), "vlan://untagged");
        assert_eq!(Vlan::parse("v", &Vlan::Untagged.id()).unwrap(), Some(Vlan::Untagged));
    }

    #[test]
    fn guest_types() {
        let shared = |v| GuestType::Shared { vlan: v };
        assert_eq!(GuestType::parse(None, false, Some("1910")).unwrap(), GuestType::Isolated);
        assert_eq!(GuestType::parse(Some("Isolated"), true, Some("cs-net-4")).unwrap(), GuestType::Vpc);
        assert_eq!(
            GuestType::parse(Some("Shared"), false, Some("vlan://3000")).unwrap(),
            shared(Some(Vlan::Tag(3000)))
        );
        assert_eq!(GuestType::parse(Some("shared"), false, Some("cs-net-42")).unwrap(), shared(None));
        assert_eq!(GuestType::parse(Some("shared"), false, None).unwrap(), shared(None));
        assert_eq!(
            GuestType::parse(Some("L2"), false, Some("untagged")).unwrap(),
            GuestType::L2 { vlan: Some(Vlan::Untagged) }
        );
        assert!(GuestType::parse(Some("shared"), false, Some("vlan://9999")).is_err());
        assert!(GuestType::parse(Some("shared"), true, Some("3000")).is_err());
        assert!(GuestType::parse(Some("elastic"), false, None).is_err());
    }

    #[test]
    fn host_addresses() {
        for bad in ["0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255", "240.0.0.1"] {
            assert!(host_ipv4("ip", bad.parse().unwrap()).is_err(), "{bad}");
        }
        assert!(host_ipv4("ip", "10.1.1.23".parse().unwrap()).is_ok());
        for bad in ["::", "::1", "ff02::1", "::ffff:10.1.1.23"] {
            assert!(host_ipv6("ip6", bad.parse().unwrap()).is_err(), "{bad}");
        }
        assert!(host_ipv6("ip6", "fd00:42::5".parse().unwrap()).is_ok());
        let net = Ipv4Cidr::parse("c", "10.1.1.0/24").unwrap();
        for bad in ["10.1.1.0", "10.1.1.255"] {
            assert!(host_in_subnet("ip", bad.parse().unwrap(), net).is_err(), "{bad}");
        }
        assert!(host_in_subnet("ip", "10.1.1.1".parse().unwrap(), net).is_ok());
        let p2p = Ipv4Cidr::parse("c", "10.1.1.0/31").unwrap();
        assert!(host_in_subnet("ip", "10.1.1.0".parse().unwrap(), p2p).is_ok());
    }
}
