//! Planning for a guest network's L2 rows: its Logical_Switch, the NIC
//! ports, native DHCPv4 and DNS.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{changed_columns, map_mutations, merge_ids, Existing, Parent, Plan};
use crate::error::{Error, Result};
use crate::nb::ids::Scope;
use crate::nb::rows::{DhcpOptions, Port};
use crate::nb::{key, quoted, table, Kind, Owner};
use crate::observe::Observed;
use crate::ovsdb::value::{string_map, string_set, uuid_set};
use crate::ovsdb::{Mutation, Mutator};
use crate::payload::types::{GuestType, Ipv4Cidr, Mac, Vlan};

/// Who holds a row, for "not owned" errors: its owner tag, or "not tagged".
pub fn held_by(external_ids: &BTreeMap<String, String>) -> String {
    match external_ids.get(key::OWNER) {
        Some(o) => format!("held by owner {o:?}"),
        None => "held by a row not tagged cloudstack:owner".into(),
    }
}

// ---------------------------------------------------------------- switch

#[derive(Clone, Debug, Default)]
pub struct SwitchSpec {
    pub cidr: Option<Ipv4Cidr>,
    pub gateway: Option<Ipv4Addr>,
    /// Shared and L2 networks: the switch is bridged onto the physical VLAN.
    pub physical: Option<Physical>,
}

/// How a shared or L2 network's switch reaches the physical network: a
/// localnet port (OVN's provider network, as Neutron maps its VLAN
/// segments) with `network_name` = the chassis' bridge-mapping key and
/// `tag_request` = the VLAN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Physical {
    pub guest_type: GuestType,
    pub network_name: String,
    /// From the payload; `None`: use the VLAN recorded on the switch.
    pub vlan: Option<Vlan>,
    /// implement-network fails when no VLAN is known; a NIC command then
    /// builds the switch without its localnet port (implement adds it).
    pub require_vlan: bool,
}

impl Physical {
    fn guest_type_id(&self) -> &'static str {
        match self.guest_type {
            GuestType::L2 { .. } => "l2",
            _ => "shared",
        }
    }
}

/// The VLAN a shared/L2 network is on: the payload's, else the one
/// recorded on its switch by an earlier command.
pub fn physical_vlan(physical: &Physical, obs: &Observed) -> Option<Vlan> {
    physical.vlan.or_else(|| {
        let recorded = obs.switch()?.external_ids.get(key::VLAN)?;
        Vlan::parse("vlan", recorded).ok().flatten()
    })
}

/// Why `command` (NAT, forwarding, firewall, load balancing, public IPs,
/// PBR) cannot run on a network of `guest_type`.
pub fn not_routed_reason(command: &str, guest_type: GuestType) -> String {
    format!(
        "{command} does not apply to a {} network: it is bridged onto the physical VLAN and its gateway is the \
         physical router, not an OVN router (offer only Dhcp, Dns and UserData with this provider)",
        guest_type.name()
    )
}

/// Refuse to plan `command` on a network whose switch records it is shared
/// or L2. The payload's `guest_type` is checked before connecting; this
/// catches payloads without it (legacy flags, older CloudStack), which
/// would otherwise build a router for a shared network.
pub fn require_routed(command: &str, scope: &Scope, obs: &Observed) -> Result<()> {
    match recorded_guest_type(obs) {
        Some(t) if t.on_physical() => Err(Error::field(
            "network_id",
            format!("{} (its switch {} records it)", not_routed_reason(command, t), scope.switch_name()),
        )),
        _ => Ok(()),
    }
}

/// The guest type implement-network recorded on the network's switch (a
/// shared or L2 network's; isolated switches record none).
pub fn recorded_guest_type(obs: &Observed) -> Option<GuestType> {
    let recorded = obs.switch()?.external_ids.get(key::GUEST_TYPE)?;
    GuestType::parse(Some(recorded), false, None).ok()
}

/// A localnet port: a switch's way onto the physical network
/// `network_name` (the chassis' `ovn-bridge-mappings` key), on VLAN `tag`.
pub(crate) struct Localnet {
    pub uuid: Uuid,
    pub name: String,
    pub switch: Uuid,
    /// Whether the switch was read (then linking guards it).
    pub switch_existing: Existing,
    pub network_name: String,
    pub tag: Option<u16>,
    pub ids: BTreeMap<String, String>,
}

/// Create the localnet port (linked to its switch, which is in the plan or
/// observed), or converge ours: `options:network_name`, `tag_request`, our ids.
pub(crate) fn ensure_localnet(plan: &mut Plan, owner: &Owner, ln: &Localnet, observed: Option<&Port>) -> Result<()> {
    let opts: BTreeMap<String, String> = [("network_name".to_string(), ln.network_name.clone())].into();
    match observed {
        None => {
            let mut row = Map::new();
            row.insert("name".into(), json!(ln.name));
            row.insert("type".into(), json!("localnet"));
            // Frames to MACs OVN does not know go out to the physical network.
            row.insert("addresses".into(), string_set(["unknown"]));
            row.insert("options".into(), string_map(&opts));
            row.insert("external_ids".into(), string_map(&ln.ids));
            if let Some(v) = ln.tag {
                row.insert("tag_request".into(), json!(v));
            }
            plan.insert_child(
                table::LOGICAL_SWITCH_PORT,
                ln.uuid,
                row,
                Parent::switch_ports(ln.switch),
                ln.switch_existing.clone(),
                format!("localnet port {}", ln.name),
            );
        }
        Some(p) => {
            if !owner.owns(&p.external_ids) {
                return Err(Error::NotOwned { what: format!("Logical_Switch_Port {}", ln.name) });
            }
            let mut muts = map_mutations("options", &opts, &p.options, |k| k == "network_name");
            muts.extend(merge_ids(&ln.ids, &p.external_ids));
            plan.mutate(table::LOGICAL_SWITCH_PORT, p.uuid, muts, format!("update localnet port {}", ln.name));
            if p.tag_request != ln.tag.map(i64::from) {
                let tag = match ln.tag {
                    Some(v) => json!(v),
                    None => json!(["set", []]),
                };
                let mut row = Map::new();
                row.insert("tag_request".into(), tag);
                plan.update(table::LOGICAL_SWITCH_PORT, p.uuid, row, format!("retag {}", ln.name));
            }
        }
    }
    Ok(())
}

/// Create `cs-net-<id>` with its deterministic UUID, or bring our
/// `external_ids` up to date. Values the spec leaves out are kept, so a NIC
/// command that lazily creates the switch never erases what
/// `implement-network` recorded.
pub fn ensure_switch(plan: &mut Plan, scope: &Scope, spec: &SwitchSpec, obs: &Observed) -> Result<()> {
    let mut ids = scope.ids(Kind::Network);
    if let Some(c) = spec.cidr {
        ids.insert(key::CIDR.into(), c.network().to_string());
    }
    if let Some(g) = spec.gateway {
        ids.insert(key::GATEWAY.into(), g.to_string());
    }
    let vlan = spec.physical.as_ref().and_then(|p| physical_vlan(p, obs));
    if let Some(p) = &spec.physical {
        ids.insert(key::GUEST_TYPE.into(), p.guest_type_id().into());
        ids.insert(key::NETWORK_NAME.into(), p.network_name.clone());
        match vlan {
            Some(v) => {
                ids.insert(key::VLAN.into(), v.id());
            }
            None if p.require_vlan => {
                return Err(Error::Missing(format!(
                    "vlan: a {} network needs its VLAN (3000, vlan://3000, untagged or vlan://untagged) and none is recorded for {}",
                    p.guest_type.name(),
                    scope.switch_name()
                )))
            }
            None => {}
        }
    }
    let name = scope.switch_name();
    if let Some(other) = obs.same_name.iter().find(|sw| sw.uuid != scope.switch_uuid()) {
        return Err(Error::NotOwned {
            what: format!(
                "the name {name}: Logical_Switch {} ({}) already uses it and is not this network's",
                other.uuid,
                held_by(&other.external_ids)
            ),
        });
    }
    match obs.switch() {
        None => {
            // Logical_Switch names have no unique index: without this guard
            // a NIC command (which does not scan names) would create a
            // second switch of that name next to someone else's. A failed
            // guard makes the retry look the name up and refuse.
            plan.require_name_free(table::LOGICAL_SWITCH, &name);
            let mut row = Map::new();
            row.insert("name".into(), json!(name));
            row.insert("external_ids".into(), string_map(&ids));
            plan.insert(table::LOGICAL_SWITCH, Some(scope.switch_uuid()), None, row, format!("insert switch {name}"));
        }
        Some(sw) => {
            scope.require_owned(format!("Logical_Switch {}", sw.uuid), &sw.external_ids)?;
            if sw.name != name {
                let mut row = Map::new();
                row.insert("name".into(), json!(name));
                plan.update(table::LOGICAL_SWITCH, sw.uuid, row, format!("rename switch {} to {name}", sw.name));
            }
            let muts = merge_ids(&ids, &sw.external_ids);
            plan.mutate(table::LOGICAL_SWITCH, sw.uuid, muts, format!("update switch {name} external_ids"));
        }
    }
    if let (Some(p), Some(v)) = (&spec.physical, vlan) {
        let mut ln_ids = scope.ids(Kind::Localnet);
        ln_ids.insert(key::NETWORK_NAME.into(), p.network_name.clone());
        ln_ids.insert(key::VLAN.into(), v.id());
        let ln = Localnet {
            uuid: scope.localnet_uuid(),
            name: scope.localnet_name(),
            switch: scope.switch_uuid(),
            switch_existing: switch_existing(scope, obs),
            network_name: p.network_name.clone(),
            tag: v.tag(),
            ids: ln_ids,
        };
        ensure_localnet(plan, &scope.owner, &ln, obs.guest_localnet())?;
    }
    Ok(())
}

/// The network switch as a parent of new children: guarded if it was read.
pub(crate) fn switch_existing(scope: &Scope, obs: &Observed) -> Existing {
    Existing::of(obs.switch(), scope.switch_name())
}

// ---------------------------------------------------------------- ports

#[derive(Clone, Debug)]
pub struct NicSpec {
    pub nic_uuid: String,
    pub nic_id: Option<u64>,
    pub mac: Mac,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

impl NicSpec {
    /// `"MAC [IPv4] [IPv6]"`: drives OVN's ARP/ND responder and, as
    /// `port_security`, what the VM may send and receive.
    pub fn address(&self) -> String {
        let mut s = self.mac.to_string();
        if let Some(ip) = self.ipv4 {
            s.push(' ');
            s.push_str(&ip.to_string());
        }
        if let Some(ip) = self.ipv6 {
            s.push(' ');
            s.push_str(&ip.to_string());
        }
        s
    }
}

/// What to do with the port's `dhcpv4_options` reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DhcpLink {
    Keep,
    Link(Uuid),
    Unlink,
}

/// What to do with the port's `options:hostname` (DHCP option 12).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hostname {
    Keep,
    Set(String),
    Clear,
}

/// Create or update the NIC's port. The switch must already be in the plan
/// (existing, or inserted by [`ensure_switch`] earlier in the same plan).
pub fn ensure_port(
    plan: &mut Plan,
    scope: &Scope,
    nic: &NicSpec,
    dhcp: DhcpLink,
    hostname: &Hostname,
    obs: &Observed,
) -> Result<()> {
    let mut ids = scope.ids(Kind::Nic);
    ids.insert(key::NIC_UUID.into(), nic.nic_uuid.clone());
    if let Some(id) = nic.nic_id {
        ids.insert(key::NIC_ID.into(), id.to_string());
    }
    // An L2 network's guest addresses are the guest's own (CloudStack may
    // not know them): MAC-only, also for a payload without `guest_type`.
    let mac_only;
    let nic = match recorded_guest_type(obs) {
        Some(GuestType::L2 { .. }) => {
            mac_only = NicSpec { ipv4: None, ipv6: None, ..nic.clone() };
            &mac_only
        }
        _ => nic,
    };
    let address = nic.address();
    match obs.port() {
        None => {
            let mut row = Map::new();
            row.insert("name".into(), json!(nic.nic_uuid));
            row.insert("addresses".into(), string_set([address.as_str()]));
            row.insert("port_security".into(), string_set([address.as_str()]));
            row.insert("external_ids".into(), string_map(&ids));
            if let DhcpLink::Link(u) = dhcp {
                row.insert("dhcpv4_options".into(), uuid_set([u]));
            }
            if let Hostname::Set(h) = hostname {
                let opts: BTreeMap<String, String> = [("hostname".to_string(), quoted(h))].into();
                row.insert("options".into(), string_map(&opts));
            }
            let uuid = scope.port_uuid(&nic.nic_uuid);
            plan.insert_child(
                table::LOGICAL_SWITCH_PORT,
                uuid,
                row,
                Parent::switch_ports(scope.switch_uuid()),
                switch_existing(scope, obs),
                format!("port {} on {}", nic.nic_uuid, scope.switch_name()),
            );
            super::acl::ensure_port_group(plan, scope, &[uuid], obs)?;
        }
        Some(port) => {
            let mut desired = Map::new();
            desired.insert("addresses".into(), string_set([address.as_str()]));
            // A policy-routing next hop (an appliance) receives packets for
            // other addresses: MAC-only port security (plan::pbr).
            let mac = nic.mac.to_string();
            let security = match port.external_ids.get(key::PBR_NEXTHOP).map(String::as_str) {
                Some("true") => mac.as_str(),
                _ => address.as_str(),
            };
            desired.insert("port_security".into(), string_set([security]));
            let want_ids = ids;
            update_port(plan, scope, port, Some(desired), want_ids, dhcp, hostname, obs)?;
            super::acl::ensure_port_group(plan, scope, &[port.uuid], obs)?;
        }
    }
    Ok(())
}

/// Change an existing port's DHCP link and host name only (used when no
/// MAC/IP is at hand, e.g. `remove-dhcp-entry`). A missing port is fine.
pub fn relink_port(plan: &mut Plan, scope: &Scope, dhcp: DhcpLink, hostname: &Hostname, obs: &Observed) -> Result<()> {
    let Some(port) = obs.port() else { return Ok(()) };
    let ids = port.external_ids.clone();
    update_port(plan, scope, port, None, ids, dhcp, hostname, obs)
}

/// The NIC's port must be ours and on this network's switch: a port of ours
/// on another switch means the NIC moved without CloudStack telling us.
fn require_our_port_on_switch(scope: &Scope, port: &Port, obs: &Observed) -> Result<()> {
    scope.require_owned(format!("Logical_Switch_Port {}", port.name), &port.external_ids)?;
    if !obs.switch_holds(port.uuid) {
        return Err(Error::NotOwned {
            what: format!(
                "Logical_Switch_Port {} (it is attached to another switch than {})",
                port.name,
                scope.switch_name()
            ),
        });
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn update_port(
    plan: &mut Plan,
    scope: &Scope,
    port: &Port,
    columns: Option<Map<String, Value>>,
    ids: BTreeMap<String, String>,
    dhcp: DhcpLink,
    hostname: &Hostname,
    obs: &Observed,
) -> Result<()> {
    require_our_port_on_switch(scope, port, obs)?;
    let mut desired = columns.unwrap_or_default();
    match dhcp {
        DhcpLink::Keep => {}
        DhcpLink::Link(u) => {
            desired.insert("dhcpv4_options".into(), uuid_set([u]));
        }
        DhcpLink::Unlink => {
            desired.insert("dhcpv4_options".into(), uuid_set([]));
        }
    }
    let changed = changed_columns(&desired, |col| match col {
        "addresses" => Some(&port.addresses) != desired_strings(&desired, col).as_ref(),
        "port_security" => Some(&port.port_security) != desired_strings(&desired, col).as_ref(),
        "dhcpv4_options" => match dhcp {
            DhcpLink::Link(u) => port.dhcpv4_options != Some(u),
            DhcpLink::Unlink => port.dhcpv4_options.is_some(),
            DhcpLink::Keep => false,
        },
        _ => true,
    });
    plan.update(table::LOGICAL_SWITCH_PORT, port.uuid, changed, format!("update port {}", port.name));

    let mut muts = merge_ids(&ids, &port.external_ids);
    let opts_desired: BTreeMap<String, String> = match hostname {
        Hostname::Set(h) => [("hostname".to_string(), quoted(h))].into(),
        Hostname::Clear | Hostname::Keep => BTreeMap::new(),
    };
    if *hostname != Hostname::Keep {
        muts.extend(map_mutations("options", &opts_desired, &port.options, |k| k == "hostname"));
    }
    plan.mutate(table::LOGICAL_SWITCH_PORT, port.uuid, muts, format!("update port {} options", port.name));
    Ok(())
}

fn desired_strings(row: &Map<String, Value>, col: &str) -> Option<Vec<String>> {
    row.get(col).map(crate::ovsdb::value::string_set_of)
}

/// Unlink the NIC's port from its switch (OVN garbage-collects the
/// unreferenced row) and delete its per-NIC DHCP row, which is only weakly
/// referenced and would otherwise leak.
pub fn remove_port(plan: &mut Plan, scope: &Scope, obs: &Observed) -> Result<()> {
    let Some(port) = obs.port() else { return Ok(()) };
    require_our_port_on_switch(scope, port, obs)?;
    plan.unlink(Parent::switch_ports(scope.switch_uuid()), &[port.uuid], format!("remove port {}", port.name));
    if let Some(d) = port.dhcpv4_options.and_then(|u| obs.dhcp_row(u)) {
        if scope.owner.owns(&d.external_ids)
            && d.external_ids.get(key::KIND).map(String::as_str) == Some(Kind::Dhcp4Nic.as_str())
        {
            plan.delete(table::DHCP_OPTIONS, d.uuid, format!("delete per-NIC DHCP options of {}", port.name));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- DHCP

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpSubnet {
    pub cidr: Ipv4Cidr,
    pub server_id: Ipv4Addr,
    pub router: Option<Ipv4Addr>,
    pub dns_servers: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub mtu: u32,
    pub lease_time: u32,
}

impl DhcpSubnet {
    /// The `options` map. OVN needs `server_id`, `server_mac` and
    /// `lease_time` or it silently stops answering; string options carry
    /// literal quotes; IP lists use OVN's `{a, b}` syntax.
    pub fn options(&self, server_mac: &str, with_router: bool) -> BTreeMap<String, String> {
        let mut o = BTreeMap::new();
        o.insert("server_id".to_string(), self.server_id.to_string());
        o.insert("server_mac".to_string(), server_mac.to_string());
        o.insert("lease_time".to_string(), self.lease_time.to_string());
        o.insert("mtu".to_string(), self.mtu.to_string());
        if with_router {
            if let Some(r) = self.router {
                o.insert("router".to_string(), r.to_string());
            }
        }
        if !self.dns_servers.is_empty() {
            let list: Vec<String> = self.dns_servers.iter().map(|d| d.to_string()).collect();
            o.insert("dns_server".to_string(), format!("{{{}}}", list.join(", ")));
        }
        if let Some(d) = &self.domain {
            o.insert("domain_name".to_string(), quoted(d));
        }
        o
    }
}

/// Both DHCP rows of the subnet: with `router` for default NICs, without for
/// the others. The rows are ours entirely, so `options` is written whole.
pub fn ensure_dhcp(plan: &mut Plan, scope: &Scope, subnet: &DhcpSubnet, obs: &Observed) -> Result<()> {
    let cidr = subnet.cidr.network().to_string();
    for with_router in [true, false] {
        let uuid = scope.dhcp_uuid(subnet.cidr, with_router);
        let kind = if with_router { Kind::Dhcp4 } else { Kind::Dhcp4NoRouter };
        let mut ids = scope.ids(kind);
        ids.insert(key::CIDR.into(), cidr.clone());
        let mut options = subnet.options(&scope.server_mac(), with_router);
        if let Some((md, on_link)) = super::metadata::dhcp_metadata(obs) {
            super::metadata::add_dhcp_options(&mut options, md, on_link, with_router);
        }
        let what = format!("{} for {cidr}", kind.as_str());
        upsert_dhcp(plan, scope, uuid, &cidr, &options, &ids, &what, obs)?;
    }
    Ok(())
}

/// Insert a DHCP_Options row with its deterministic uuid, or bring an
/// existing one of ours to exactly `cidr` and `options` (the row is ours
/// entirely) and our `external_ids` keys.
#[allow(clippy::too_many_arguments)]
fn upsert_dhcp(
    plan: &mut Plan,
    scope: &Scope,
    uuid: Uuid,
    cidr: &str,
    options: &BTreeMap<String, String>,
    ids: &BTreeMap<String, String>,
    what: &str,
    obs: &Observed,
) -> Result<()> {
    match obs.dhcp_row(uuid) {
        None => {
            let mut row = Map::new();
            row.insert("cidr".into(), json!(cidr));
            row.insert("options".into(), string_map(options));
            row.insert("external_ids".into(), string_map(ids));
            plan.insert(table::DHCP_OPTIONS, Some(uuid), None, row, format!("insert {what}"));
        }
        Some(d) => {
            scope.require_owned(format!("DHCP_Options {}", d.uuid), &d.external_ids)?;
            let mut row = Map::new();
            if d.cidr != cidr {
                row.insert("cidr".into(), json!(cidr));
            }
            if d.options != *options {
                row.insert("options".into(), string_map(options));
            }
            plan.update(table::DHCP_OPTIONS, d.uuid, row, format!("update {what}"));
            let muts = merge_ids(ids, &d.external_ids);
            plan.mutate(table::DHCP_OPTIONS, d.uuid, muts, format!("update {what} external_ids"));
        }
    }
    Ok(())
}

/// Delete every observed DHCP row of ours (the caller observed the
/// network's rows). Ports referencing them lose the reference
/// automatically: `dhcpv4_options` is a weak reference.
pub fn remove_dhcp(plan: &mut Plan, scope: &Scope, obs: &Observed) {
    for d in obs.dhcp() {
        if scope.owner.owns(&d.external_ids)
            && d.external_ids.get(key::NETWORK_ID) == Some(&scope.network_id.to_string())
        {
            plan.delete(table::DHCP_OPTIONS, d.uuid, format!("delete DHCP options {} ({})", d.cidr, d.uuid));
        }
    }
}

/// The NIC's own DHCP row: `base`'s options with `extras` on top. Returns
/// its uuid (deterministic from the NIC uuid).
pub fn dhcp_nic_row(
    plan: &mut Plan,
    scope: &Scope,
    port: &Port,
    base: &DhcpOptions,
    extras: &BTreeMap<String, String>,
    obs: &Observed,
) -> Result<Uuid> {
    let uuid = scope.dhcp_nic_uuid(&port.name);
    let mut options = base.options.clone();
    options.extend(extras.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut ids = scope.ids(Kind::Dhcp4Nic);
    ids.insert(key::NIC_UUID.into(), port.name.clone());
    ids.insert(key::BASE_DHCP.into(), base.uuid.to_string());
    ids.insert(key::CIDR.into(), base.cidr.clone());
    let what = format!("per-NIC DHCP options of {}", port.name);
    // A root row nothing else removes: if release-nic deleted the port
    // since we read it, this row would leak. Fail and re-plan instead.
    plan.require_row(table::LOGICAL_SWITCH_PORT, port.uuid, &port.name);
    upsert_dhcp(plan, scope, uuid, &base.cidr, &options, &ids, &what, obs)?;
    Ok(uuid)
}

// ---------------------------------------------------------------- DNS

#[derive(Clone, Debug)]
pub struct DnsEntry {
    pub hostname: String,
    pub domain: Option<String>,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

impl DnsEntry {
    /// Host name, FQDN and PTR records, as OVN's `dns_lookup()` answers them.
    pub fn records(&self) -> BTreeMap<String, String> {
        let ips: Vec<String> =
            self.ipv4.map(|i| i.to_string()).into_iter().chain(self.ipv6.map(|i| i.to_string())).collect();
        let mut r = BTreeMap::new();
        if ips.is_empty() {
            return r;
        }
        let value = ips.join(" ");
        r.insert(self.hostname.clone(), value.clone());
        let fqdn = match &self.domain {
            Some(d) if !self.hostname.ends_with(&format!(".{d}")) => {
                let f = format!("{}.{d}", self.hostname);
                r.insert(f.clone(), value);
                f
            }
            _ => self.hostname.clone(),
        };
        if let Some(ip) = self.ipv4 {
            r.insert(ptr_v4(ip), fqdn.clone());
        }
        if let Some(ip) = self.ipv6 {
            r.insert(ptr_v6(ip), fqdn);
        }
        r
    }
}

pub fn ptr_v4(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
}

pub fn ptr_v6(ip: Ipv6Addr) -> String {
    let mut s = String::new();
    for byte in ip.octets().iter().rev() {
        s.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
    }
    s + "ip6.arpa"
}

/// The network's DNS row, linked from the switch's `dns_records`, holding
/// at least `add`. Existing records with other values are replaced.
pub fn ensure_dns(plan: &mut Plan, scope: &Scope, add: &BTreeMap<String, String>, obs: &Observed) -> Result<()> {
    let uuid = scope.dns_uuid();
    let ids = scope.ids(Kind::Dns);
    match obs.dns() {
        None => {
            let mut row = Map::new();
            row.insert("records".into(), string_map(add));
            row.insert("external_ids".into(), string_map(&ids));
            plan.insert(table::DNS, Some(uuid), None, row, format!("insert DNS records of {}", scope.switch_name()));
        }
        Some(d) => {
            scope.require_owned(format!("DNS {}", d.uuid), &d.external_ids)?;
            let mut muts = map_mutations("records", add, &d.records, |k| add.contains_key(k));
            muts.extend(merge_ids(&ids, &d.external_ids));
            plan.mutate(table::DNS, d.uuid, muts, format!("update DNS records of {}", scope.switch_name()));
        }
    }
    let linked = obs.switch().is_some_and(|sw| sw.dns_records.contains(&uuid));
    if !linked {
        let parent = Parent::switch(scope.switch_uuid(), "dns_records");
        plan.link(parent, switch_existing(scope, obs), &[uuid], format!("link DNS records to {}", scope.switch_name()));
    }
    Ok(())
}

/// Remove the records that point at `ipv4`/`ipv6` (by value) and their PTR
/// records. Deleting exact key/value pairs means a record that meanwhile
/// points at another VM is left alone.
pub fn remove_dns_records(
    plan: &mut Plan,
    scope: &Scope,
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
    obs: &Observed,
) -> Result<()> {
    let Some(d) = obs.dns() else { return Ok(()) };
    scope.require_owned(format!("DNS {}", d.uuid), &d.external_ids)?;
    let addrs: Vec<String> = ipv4.map(|i| i.to_string()).into_iter().chain(ipv6.map(|i| i.to_string())).collect();
    let ptrs: Vec<String> = ipv4.map(ptr_v4).into_iter().chain(ipv6.map(ptr_v6)).collect();
    let gone: BTreeMap<String, String> = d
        .records
        .iter()
        .filter(|(k, v)| ptrs.contains(k) || v.split_whitespace().any(|a| addrs.iter().any(|x| x == a)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !gone.is_empty() {
        plan.mutate(
            table::DNS,
            d.uuid,
            vec![Mutation("records".into(), Mutator::Delete, string_map(&gone))],
            format!("remove {} DNS records from {}", gone.len(), scope.switch_name()),
        );
    }
    Ok(())
}

/// Delete the network's DNS row; the switch's weak `dns_records` reference
/// disappears with it.
pub fn remove_dns(plan: &mut Plan, scope: &Scope, obs: &Observed) -> Result<()> {
    if let Some(d) = obs.dns() {
        scope.require_owned(format!("DNS {}", d.uuid), &d.external_ids)?;
        plan.delete(table::DNS, d.uuid, format!("delete DNS records of {}", scope.switch_name()));
    }
    Ok(())
}

// ---------------------------------------------------------------- destroy

/// Everything the network owns: the switch (its ports go with it: they are
/// strong children) and the weakly referenced DHCP and DNS rows, which OVN
/// would otherwise keep forever.
pub fn destroy(plan: &mut Plan, scope: &Scope, obs: &Observed) -> Result<()> {
    // Deleting our switch or port group would delete rows hanging off them
    // that are not ours (an operator's port or ACL): refuse instead, naming
    // them. Unknown ownership (not read) counts as foreign.
    let not_ours = |items: &[Uuid], ours: &Option<std::collections::BTreeSet<Uuid>>| -> Vec<String> {
        items.iter().filter(|u| !ours.as_ref().is_some_and(|o| o.contains(u))).map(Uuid::to_string).collect()
    };
    if let Some(sw) = obs.switch() {
        scope.require_owned(format!("Logical_Switch {}", sw.uuid), &sw.external_ids)?;
        let foreign = not_ours(&sw.ports, &obs.our_ports);
        if !foreign.is_empty() {
            return Err(Error::NotOwned {
                what: format!(
                    "Logical_Switch_Port {} on {} (not tagged as ours; remove them before destroying the network)",
                    foreign.join(", "),
                    sw.name
                ),
            });
        }
        // The ports we judged are the ports we delete (the router peer may
        // have left earlier in this transaction: a wait sees that state).
        let peer = obs.guest_peer_if_read().map(|p| p.uuid);
        let judged = uuid_set(sw.ports.iter().copied().filter(|p| Some(*p) != peer));
        plan.require_column(table::LOGICAL_SWITCH, sw.uuid, "ports", judged);
        plan.delete(
            table::LOGICAL_SWITCH,
            sw.uuid,
            format!("delete switch {} and its {} ports", sw.name, sw.ports.len()),
        );
    }
    remove_dhcp(plan, scope, obs);
    // A root table: nothing garbage-collects it (its ACLs go with it).
    if let Some(pg) = obs.port_group() {
        scope.require_owned(format!("Port_Group {}", pg.name), &pg.external_ids)?;
        let foreign = not_ours(&pg.acls, &obs.our_acls);
        if !foreign.is_empty() {
            return Err(Error::NotOwned {
                what: format!(
                    "ACL {} on {} (not tagged as ours; remove them before destroying the network)",
                    foreign.join(", "),
                    pg.name
                ),
            });
        }
        plan.delete(table::PORT_GROUP, pg.uuid, format!("delete port group {} and its ACLs", pg.name));
    }
    remove_dns(plan, scope, obs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nb::rows::{PortGroup, Switch};
    use crate::nb::Owner;
    use crate::observe::Read;

    fn scope() -> Scope {
        Scope { owner: Owner("cloudstack".into()), network_id: 42, zone_id: Some(1), vpc_id: None }
    }

    fn nic() -> NicSpec {
        NicSpec {
            nic_uuid: "3f0c0000-0000-4000-8000-000000000001".into(),
            nic_id: Some(77),
            mac: Mac::parse("mac", "02:00:4c:3e:00:05").unwrap(),
            ipv4: Some("10.1.1.23".parse().unwrap()),
            ipv6: None,
        }
    }

    #[test]
    fn new_network_and_port_in_one_plan() {
        let s = scope();
        let obs = Observed::nothing_exists();
        let mut p = Plan::default();
        ensure_switch(&mut p, &s, &SwitchSpec::default(), &obs).unwrap();
        ensure_port(&mut p, &s, &nic(), DhcpLink::Keep, &Hostname::Set("vm-1".into()), &obs).unwrap();
        let all: Vec<Value> = p.ops.iter().map(|o| o.to_json()).collect();
        // First the guard that no foreign switch holds the name (no index).
        assert_eq!(all[0]["op"], "wait");
        assert_eq!(all[0]["where"], json!([["name", "==", "cs-net-42"]]));
        assert_eq!(all[0]["rows"], json!([]));
        let ops = &all[1..];
        assert_eq!(ops.len(), 4, "{ops:#?}");
        assert_eq!(ops[0]["op"], "insert");
        assert_eq!(ops[0]["uuid"], s.switch_uuid().to_string());
        assert_eq!(ops[1]["row"]["addresses"], json!(["set", ["02:00:4c:3e:00:05 10.1.1.23"]]));
        assert_eq!(ops[1]["row"]["options"], json!(["map", [["hostname", "\"vm-1\""]]]));
        assert_eq!(ops[2]["op"], "mutate");
    }

    #[test]
    fn converged_state_plans_nothing() {
        let s = scope();
        let sw = Switch {
            uuid: s.switch_uuid(),
            name: "cs-net-42".into(),
            ports: vec![Uuid::from_u128(7)],
            dns_records: vec![],
            load_balancer: vec![],
            external_ids: s.ids(Kind::Network),
        };
        let mut ids = s.ids(Kind::Nic);
        ids.insert(key::NIC_UUID.into(), nic().nic_uuid);
        ids.insert(key::NIC_ID.into(), "77".into());
        let port = Port {
            uuid: Uuid::from_u128(7),
            name: nic().nic_uuid,
            tag_request: None,
            addresses: vec![nic().address()],
            port_security: vec![nic().address()],
            dhcpv4_options: None,
            options: [("hostname".to_string(), "\"vm-1\"".to_string()), ("foreign".into(), "x".into())].into(),
            external_ids: ids,
        };
        let pg = PortGroup {
            uuid: s.port_group_uuid(),
            name: "cs_net_42".into(),
            ports: vec![Uuid::from_u128(7)],
            acls: vec![],
            external_ids: s.ids(Kind::PortGroup),
        };
        let obs = Observed {
            switch: Read::found(sw),
            port: Read::found(port),
            port_group: Read::found(pg),
            ..Observed::nothing_exists()
        };
        let mut p = Plan::default();
        ensure_switch(&mut p, &s, &SwitchSpec::default(), &obs).unwrap();
        ensure_port(&mut p, &s, &nic(), DhcpLink::Keep, &Hostname::Set("vm-1".into()), &obs).unwrap();
        assert!(p.is_empty(), "{:?}", p.changes);
    }

    #[test]
    fn ids_a_command_lacks_are_kept() {
        let s = scope();
        let mut recorded = s.ids(Kind::Network);
        recorded.insert(key::CIDR.into(), "10.1.1.0/24".into());
        recorded.insert("other-tool".into(), "x".into());
        let sw = Switch {
            uuid: s.switch_uuid(),
            name: "cs-net-42".into(),
            ports: vec![],
            dns_records: vec![],
            load_balancer: vec![],
            external_ids: recorded,
        };
        let obs = Observed { switch: Read::found(sw), ..Observed::nothing_exists() };
        // A legacy NIC command: no zone, no cidr.
        let bare = Scope { zone_id: None, ..scope() };
        let mut p = Plan::default();
        ensure_switch(&mut p, &bare, &SwitchSpec::default(), &obs).unwrap();
        assert!(p.is_empty(), "{:?}", p.changes);
        // A changed value is corrected.
        let moved = Scope { zone_id: Some(2), ..scope() };
        let mut p = Plan::default();
        ensure_switch(&mut p, &moved, &SwitchSpec::default(), &obs).unwrap();
        assert_eq!(p.changes.len(), 1);
    }

    #[test]
    fn foreign_rows_are_refused() {
        let s = scope();
        let sw = Switch {
            uuid: s.switch_uuid(),
            name: "cs-net-42".into(),
            ports: vec![],
            dns_records: vec![],
            load_balancer: vec![],
            external_ids: BTreeMap::new(),
        };
        let obs = Observed { switch: Read::found(sw), ..Observed::nothing_exists() };
        let e = ensure_switch(&mut Plan::default(), &s, &SwitchSpec::default(), &obs).unwrap_err();
        assert!(matches!(e, Error::NotOwned { .. }));
    }

    #[test]
    fn per_nic_dhcp_row_requires_its_port() {
        // release-nic racing set-dhcp-options must not leave the row behind.
        let s = scope();
        let port = Port {
            uuid: s.port_uuid(&nic().nic_uuid),
            name: nic().nic_uuid,
            tag_request: None,
            addresses: vec![],
            port_security: vec![],
            dhcpv4_options: None,
            options: BTreeMap::new(),
            external_ids: s.ids(Kind::Nic),
        };
        let base = DhcpOptions {
            uuid: Uuid::from_u128(9),
            cidr: "10.1.1.0/24".into(),
            options: BTreeMap::new(),
            external_ids: s.ids(Kind::Dhcp4),
        };
        let mut p = Plan::default();
        dhcp_nic_row(&mut p, &s, &port, &base, &BTreeMap::new(), &Observed::default()).unwrap();
        let ops: Vec<Value> = p.ops.iter().map(|o| o.to_json()).collect();
        assert!(
            ops.iter().any(|o| o["op"] == "wait"
                && o["table"] == "Logical_Switch_Port"
                && o["where"][0][2][1] == port.uuid.to_string()),
            "{ops:#?}"
        );
    }

    #[test]
    fn dhcp_options_are_quoted_and_router_optional() {
        let sub = DhcpSubnet {
            cidr: Ipv4Cidr::parse("c", "10.1.1.0/24").unwrap(),
            server_id: "10.1.1.1".parse().unwrap(),
            router: Some("10.1.1.1".parse().unwrap()),
            dns_servers: vec!["10.1.1.53".parse().unwrap(), "8.8.8.8".parse().unwrap()],
            domain: Some("cs.example".into()),
            mtu: 1442,
            lease_time: 86400,
        };
        let o = sub.options("0a:00:00:00:00:01", true);
        assert_eq!(o["dns_server"], "{10.1.1.53, 8.8.8.8}");
        assert_eq!(o["domain_name"], "\"cs.example\"");
        assert_eq!(o["router"], "10.1.1.1");
        assert!(!sub.options("0a:00:00:00:00:01", false).contains_key("router"));
    }

    #[test]
    fn dns_records_and_ptr() {
        let e = DnsEntry {
            hostname: "vm-1".into(),
            domain: Some("cs.example".into()),
            ipv4: Some("10.1.1.23".parse().unwrap()),
            ipv6: Some("fd00::5".parse().unwrap()),
        };
        let r = e.records();
        assert_eq!(r["vm-1"], "10.1.1.23 fd00::5");
        assert_eq!(r["vm-1.cs.example"], "10.1.1.23 fd00::5");
        assert_eq!(r["23.1.1.10.in-addr.arpa"], "vm-1.cs.example");
        assert!(r.keys().any(|k| k.starts_with("5.0.0.0.") && k.ends_with(".d.f.ip6.arpa")), "{r:?}");
    }
}
