//! Our identity model, in one place: which CloudStack object a row stands
//! for (the scope types), and from that its deterministic `_uuid`, its name,
//! its MAC and the `external_ids` it carries.
//!
//! Planners, `observe` and `audit` all derive identities here, so "the row
//! this object should be" has one definition. Every value these functions
//! produce is on disk in existing deployments: the `pinned` tests hold them
//! to literal vectors computed by the code that created those rows.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use uuid::Uuid;

use super::key;
use crate::error::{Error, Result};
use crate::payload::types::Ipv4Cidr;

/// Values of `cloudstack:kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The guest network's Logical_Switch.
    Network,
    /// A VM NIC's Logical_Switch_Port.
    Nic,
    /// The network's DHCPv4 options for default NICs (with a router).
    Dhcp4,
    /// The same options without `router`, for non-default NICs, as
    /// CloudStack's own DHCP server does for them.
    Dhcp4NoRouter,
    /// Per-NIC DHCPv4 options (`set-dhcp-options`).
    Dhcp4Nic,
    /// The network's DNS records.
    Dns,
    /// A network's or VPC's Logical_Router.
    Router,
    /// The router port holding a guest network's gateway address.
    GuestRouterPort,
    /// Its router-type peer on the guest switch.
    GuestRouterPeer,
    /// A router's gateway port on the public switch.
    GatewayPort,
    /// Its router-type peer on the public switch.
    GatewayPeer,
    /// The public switch of one physical network + VLAN (shared by routers).
    PublicSwitch,
    /// Its localnet port.
    Localnet,
    /// A router's default route to the public gateway.
    DefaultRoute,
    /// Source NAT of the guest (or VPC) CIDR.
    Snat,
    /// Static NAT (`dnat_and_snat`) of one public IP.
    StaticNat,
    /// Port forwarding of one public IP and protocol (a Load_Balancer).
    PortForward,
    /// A load-balancing rule (a Load_Balancer per CloudStack rule id).
    LoadBalancer,
    /// The Port_Group of a network's VM ports.
    PortGroup,
    /// A firewall ACL (isolated networks).
    Firewall,
    /// A network ACL (VPC tiers).
    NetworkAcl,
    /// A Logical_Router_Policy compiled from policy-based routing.
    PbrPolicy,
    /// A network's metadata localport (`cs-md-<network_id>`, UserData).
    MetadataPort,
    /// A NIC's VM data: an NB `DNS` row no switch references.
    VmData,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Network => "network",
            Kind::Nic => "nic",
            Kind::Dhcp4 => "dhcpv4",
            Kind::Dhcp4NoRouter => "dhcpv4-norouter",
            Kind::Dhcp4Nic => "dhcpv4-nic",
            Kind::Dns => "dns",
            Kind::Router => "router",
            Kind::GuestRouterPort => "guest-router-port",
            Kind::GuestRouterPeer => "guest-router-peer",
            Kind::GatewayPort => "gateway-port",
            Kind::GatewayPeer => "gateway-peer",
            Kind::PublicSwitch => "public-switch",
            Kind::Localnet => "localnet",
            Kind::DefaultRoute => "default-route",
            Kind::Snat => "snat",
            Kind::StaticNat => "static-nat",
            Kind::PortForward => "port-forward",
            Kind::LoadBalancer => "load-balancer",
            Kind::PortGroup => "port-group",
            Kind::Firewall => "firewall",
            Kind::NetworkAcl => "network-acl",
            Kind::PbrPolicy => "pbr-policy",
            Kind::MetadataPort => "metadata-port",
            Kind::VmData => "vm-data",
        }
    }
}

/// Who we are in `external_ids:cloudstack:owner` (config `ovn.owner`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner(pub String);

/// A fixed namespace for our UUIDv5 row ids. Never change it: existing rows
/// would no longer be found.
const ROW_NAMESPACE: Uuid = Uuid::from_u128(0x6c0b_1d7e_93a4_4f0e_8d2b_5a1c_0e7f_3b21);

impl Owner {
    /// Deterministic row UUID for a row without a unique index. Two racing
    /// inserts of the same row then collide on `duplicate uuid` instead of
    /// creating two rows, and lookups are by `_uuid`, which never scans.
    pub fn row_uuid(&self, kind: Kind, id: &str) -> Uuid {
        Uuid::new_v5(&ROW_NAMESPACE, format!("{}/{}/{}", self.0, kind.as_str(), id).as_bytes())
    }

    pub fn owns(&self, external_ids: &BTreeMap<String, String>) -> bool {
        external_ids.get(key::OWNER) == Some(&self.0)
    }

    /// A stable, locally administered unicast MAC derived from `seed`
    /// (OVN's DHCP `server_mac`): the same network always answers from the
    /// same MAC, across restarts and management servers.
    pub fn stable_mac(&self, seed: &str) -> String {
        let b = Uuid::new_v5(&ROW_NAMESPACE, format!("{}/mac/{seed}", self.0).as_bytes()).into_bytes();
        // 0x0a: bit 1 set = locally administered, bit 0 clear = unicast.
        format!("0a:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4])
    }

    fn require(&self, what: String, external_ids: &BTreeMap<String, String>) -> Result<()> {
        if self.owns(external_ids) {
            Ok(())
        } else {
            Err(Error::NotOwned { what })
        }
    }
}

impl Owner {
    /// The prefix of every name we give: `cs-` for the default owner (the
    /// in-tree plugin's names, which existing deployments and CloudStack's
    /// stored broadcast URIs use), `cs-<owner>-` for any other, so two
    /// installations sharing one NB never want the same name (OVN indexes
    /// port, router port and port group names, and its tools look switches
    /// and routers up by name).
    pub fn name_prefix(&self) -> String {
        if self.0 == crate::config::DEFAULT_OWNER {
            "cs-".into()
        } else {
            format!("cs-{}-", self.0)
        }
    }
}

/// `cs-net-<network_id>` (default owner; `cs-<owner>-net-<id>` otherwise):
/// also the broadcast URI `ovn://<switch name>` CloudStack stores, and the
/// legacy in-tree plugin's convention.
pub fn switch_name(owner: &Owner, network_id: u64) -> String {
    format!("{}net-{network_id}", owner.name_prefix())
}

/// Port_Group and Address_Set names must be identifiers
/// (`[a-zA-Z_.][a-zA-Z_.0-9]*`): `cs_net_<id>`, `cs_<owner>_net_<id>` with
/// the owner's `-` as `_`.
pub fn port_group_name(owner: &Owner, network_id: u64) -> String {
    format!("{}net_{network_id}", owner.name_prefix().replace('-', "_"))
}

/// The localnet port of a shared or L2 network's switch (the port name
/// index is NB-wide: owner-aware like the switch name).
pub fn localnet_name(owner: &Owner, network_id: u64) -> String {
    format!("ln-{}", switch_name(owner, network_id))
}

/// Id of that port's row uuid (kind `localnet`). Public localnet ports use
/// `<network_name>/<vlan>`, which always holds a '/', so the two never meet.
/// Fixed text: the owner is already part of every row uuid.
pub fn localnet_id(network_id: u64) -> String {
    format!("cs-net-{network_id}")
}

pub fn broadcast_uri(owner: &Owner, network_id: u64) -> String {
    format!("ovn://{}", switch_name(owner, network_id))
}

// ------------------------------------------------------------ derivations
//
// The id strings rows hash. They take CloudStack's ids as text so that
// `audit` computes exactly what the planners computed from the same
// `external_ids` values.

fn network_row(owner: &Owner, kind: Kind, network_id: &str) -> Uuid {
    owner.row_uuid(kind, network_id)
}

fn dhcp_row(owner: &Owner, with_router: bool, network_id: &str, cidr: &str) -> Uuid {
    let kind = if with_router { Kind::Dhcp4 } else { Kind::Dhcp4NoRouter };
    owner.row_uuid(kind, &format!("{network_id}/{cidr}"))
}

fn router_id(of: &RouterOf) -> String {
    match of {
        RouterOf::Network(n) => format!("net-{n}"),
        RouterOf::Vpc(v) => format!("vpc-{v}"),
    }
}

fn public_id(network_name: &str, vlan: &str) -> String {
    format!("{network_name}/{vlan}")
}

// ------------------------------------------------------------ a network

/// Which network a command is about, and the ids every row of it carries.
#[derive(Clone, Debug)]
pub struct Scope {
    pub owner: Owner,
    pub network_id: u64,
    pub zone_id: Option<u64>,
    pub vpc_id: Option<u64>,
}

impl Scope {
    fn net(&self) -> String {
        self.network_id.to_string()
    }

    pub fn switch_uuid(&self) -> Uuid {
        network_row(&self.owner, Kind::Network, &self.net())
    }

    pub fn switch_name(&self) -> String {
        switch_name(&self.owner, self.network_id)
    }

    /// A VM port's row UUID, derived from the NIC uuid (its name), so the
    /// port is read by `_uuid`: ovsdb-server answers a select on the indexed
    /// `name` column by scanning the whole table.
    pub fn port_uuid(&self, nic_uuid: &str) -> Uuid {
        nic_port_uuid(&self.owner, nic_uuid)
    }

    /// One pair of DHCP rows per subnet: a shared network may span several
    /// subnets (`Dhcp.DhcpAccrossMultipleSubnets`).
    pub fn dhcp_uuid(&self, subnet: Ipv4Cidr, with_router: bool) -> Uuid {
        dhcp_row(&self.owner, with_router, &self.net(), &subnet.network().to_string())
    }

    /// A NIC's own DHCP row (`set-dhcp-options`).
    pub fn dhcp_nic_uuid(&self, nic_uuid: &str) -> Uuid {
        self.owner.row_uuid(Kind::Dhcp4Nic, nic_uuid)
    }

    pub fn dns_uuid(&self) -> Uuid {
        network_row(&self.owner, Kind::Dns, &self.net())
    }

    /// The localnet port of a shared or L2 network's switch.
    pub fn localnet_uuid(&self) -> Uuid {
        self.owner.row_uuid(Kind::Localnet, &localnet_id(self.network_id))
    }

    pub fn localnet_name(&self) -> String {
        localnet_name(&self.owner, self.network_id)
    }

    /// DHCP `server_mac`, and the MAC of the network's metadata port
    /// (docs/metadata-design.md §6: DHCP answers from the metadata port).
    pub fn server_mac(&self) -> String {
        self.owner.stable_mac(&format!("dhcp/{}", self.network_id))
    }

    pub fn port_group_uuid(&self) -> Uuid {
        network_row(&self.owner, Kind::PortGroup, &self.net())
    }

    pub fn port_group_name(&self) -> String {
        port_group_name(&self.owner, self.network_id)
    }

    /// The router port holding the guest gateway address, and its MAC.
    pub fn guest_port_uuid(&self) -> Uuid {
        network_row(&self.owner, Kind::GuestRouterPort, &self.net())
    }

    pub fn guest_port_name(&self) -> String {
        format!("lrp-{}", self.switch_name())
    }

    pub fn guest_port_mac(&self) -> String {
        self.owner.stable_mac(&format!("router-port/{}", self.network_id))
    }

    /// Its router-type peer on the guest switch.
    pub fn guest_peer_uuid(&self) -> Uuid {
        network_row(&self.owner, Kind::GuestRouterPeer, &self.net())
    }

    pub fn guest_peer_name(&self) -> String {
        format!("rtr-{}", self.switch_name())
    }

    /// An ACL row of this network, keyed by its content: the same rule is
    /// the same row, so a rule set is replaced without reading the ACLs.
    pub fn acl_uuid(&self, kind: Kind, acl: &AclKey) -> Uuid {
        let content = format!(
            "{}/{}/{}/{}/{}/{}",
            self.network_id,
            acl.place.key(),
            acl.direction,
            acl.priority,
            acl.action,
            acl.matches
        );
        self.owner.row_uuid(kind, &content)
    }

    /// `external_ids` of a row of this network.
    pub fn ids(&self, kind: Kind) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert(key::OWNER.to_string(), self.owner.0.clone());
        m.insert(key::KIND.to_string(), kind.as_str().to_string());
        m.insert(key::NETWORK_ID.to_string(), self.network_id.to_string());
        if let Some(z) = self.zone_id {
            m.insert(key::ZONE_ID.to_string(), z.to_string());
        }
        if let Some(v) = self.vpc_id {
            m.insert(key::VPC_ID.to_string(), v.to_string());
        }
        m
    }

    pub fn require_owned(&self, what: String, external_ids: &BTreeMap<String, String>) -> Result<()> {
        self.owner.require(what, external_ids)
    }
}

/// Where an ACL hangs: the network's port group, or the shared public switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Place {
    PortGroup,
    PublicSwitch,
}

impl Place {
    /// Part of every ACL row's identity: frozen (these are the texts the
    /// first release hashed).
    pub fn key(self) -> &'static str {
        match self {
            Place::PortGroup => "PortGroup",
            Place::PublicSwitch => "PublicSwitch",
        }
    }
}

/// What identifies an ACL row: where it hangs and its OVN columns, as the
/// strings OVN stores.
pub struct AclKey<'a> {
    pub place: Place,
    pub direction: &'a str,
    pub priority: u16,
    pub action: &'a str,
    pub matches: &'a str,
}

// ------------------------------------------------------------ a router

/// Whose router: an isolated network's or a VPC's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouterOf {
    Network(u64),
    Vpc(u64),
}

#[derive(Clone, Debug)]
pub struct RouterScope {
    pub owner: Owner,
    pub of: RouterOf,
    pub zone_id: Option<u64>,
}

/// Forwarding protocol (part of a port-forwarding row's identity).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub const ALL: &'static [Protocol] = &[Protocol::Tcp, Protocol::Udp];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl RouterScope {
    /// `cs-router-<network_id>` or `cs-vpc-<vpc_id>` (the in-tree plugin's
    /// names; owner-aware like every name, see [`Owner::name_prefix`]).
    pub fn name(&self) -> String {
        match self.of {
            RouterOf::Network(n) => format!("{}router-{n}", self.owner.name_prefix()),
            RouterOf::Vpc(v) => format!("{}vpc-{v}", self.owner.name_prefix()),
        }
    }

    fn row(&self, kind: Kind, suffix: &str) -> Uuid {
        self.owner.row_uuid(kind, &format!("{}{suffix}", router_id(&self.of)))
    }

    pub fn uuid(&self) -> Uuid {
        self.row(Kind::Router, "")
    }

    pub fn gateway_port_name(&self) -> String {
        format!("lrp-{}-pub", self.name())
    }

    pub fn gateway_port_uuid(&self) -> Uuid {
        self.row(Kind::GatewayPort, "")
    }

    pub fn gateway_port_mac(&self) -> String {
        self.owner.stable_mac(&format!("gateway-port/{}", self.name()))
    }

    pub fn gateway_peer_name(&self) -> String {
        format!("lsp-{}-pub", self.name())
    }

    pub fn gateway_peer_uuid(&self) -> Uuid {
        self.row(Kind::GatewayPeer, "")
    }

    pub fn route_uuid(&self) -> Uuid {
        self.row(Kind::DefaultRoute, "")
    }

    pub fn snat_uuid(&self) -> Uuid {
        self.row(Kind::Snat, "")
    }

    pub fn static_nat_uuid(&self, ip: Ipv4Addr) -> Uuid {
        self.row(Kind::StaticNat, &format!("/{ip}"))
    }

    pub fn port_forward_uuid(&self, ip: Ipv4Addr, protocol: Protocol) -> Uuid {
        self.row(Kind::PortForward, &format!("/{ip}/{}", protocol.as_str()))
    }

    pub fn port_forward_name(&self, ip: Ipv4Addr, protocol: Protocol) -> String {
        format!("cs-pf-{}-{ip}-{}", self.name(), protocol.as_str())
    }

    /// Every port-forwarding row this router can have for `ips`.
    pub fn port_forward_uuids<'a>(
        &'a self,
        ips: impl IntoIterator<Item = Ipv4Addr> + 'a,
    ) -> impl Iterator<Item = Uuid> + 'a {
        ips.into_iter().flat_map(move |ip| Protocol::ALL.iter().map(move |p| self.port_forward_uuid(ip, *p)))
    }

    pub fn gateway_chassis_uuid(&self, chassis: &str) -> Uuid {
        self.row(Kind::GatewayPort, &format!("/chassis/{chassis}"))
    }

    pub fn gateway_chassis_name(&self, chassis: &str) -> String {
        format!("{}_{chassis}", self.gateway_port_name())
    }

    pub fn balancer_uuid(&self, id: u64) -> Uuid {
        self.row(Kind::LoadBalancer, &format!("/{id}"))
    }

    pub fn balancer_name(&self, id: u64) -> String {
        format!("cs-lb-{}-{id}", self.name())
    }

    /// A policy compiled from policy-based routing (`plan::pbr`): derived
    /// from its content, as ACLs are, so a row that exists is right and any
    /// change of the policy is a new row.
    pub fn pbr_policy_uuid(&self, priority: i64, matches: &str, action: &str, nexthop: Option<Ipv4Addr>) -> Uuid {
        let nh = nexthop.map(|n| n.to_string()).unwrap_or_default();
        self.row(Kind::PbrPolicy, &format!("/policy/{priority}/{matches}/{action}/{nh}"))
    }

    /// The `external_ids` pair every row of this router carries.
    pub fn tag(&self) -> (&'static str, String) {
        match self.of {
            RouterOf::Network(n) => (key::NETWORK_ID, n.to_string()),
            RouterOf::Vpc(v) => (key::VPC_ID, v.to_string()),
        }
    }

    pub fn ids(&self, kind: Kind) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert(key::OWNER.to_string(), self.owner.0.clone());
        m.insert(key::KIND.to_string(), kind.as_str().to_string());
        match self.of {
            RouterOf::Network(n) => m.insert(key::NETWORK_ID.to_string(), n.to_string()),
            RouterOf::Vpc(v) => m.insert(key::VPC_ID.to_string(), v.to_string()),
        };
        if let Some(z) = self.zone_id {
            m.insert(key::ZONE_ID.to_string(), z.to_string());
        }
        m
    }

    pub fn require_owned(&self, what: String, external_ids: &BTreeMap<String, String>) -> Result<()> {
        self.owner.require(what, external_ids)
    }
}

// ------------------------------------------------------------ the public side

/// One public L2 domain: an OVN `network_name` (bridge mapping) and a VLAN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicNet {
    pub network_name: String,
    pub vlan: Option<u16>,
}

impl PublicNet {
    /// `cloudstack:public_vlan`: the VLAN id or `untagged`.
    pub fn vlan_key(&self) -> String {
        self.vlan.map(|v| v.to_string()).unwrap_or_else(|| "untagged".into())
    }

    fn id(&self) -> String {
        public_id(&self.network_name, &self.vlan_key())
    }

    pub fn switch_name(&self, owner: &Owner) -> String {
        format!("{}public-{}-{}", owner.name_prefix(), self.network_name, self.vlan_key())
    }

    pub fn switch_uuid(&self, owner: &Owner) -> Uuid {
        owner.row_uuid(Kind::PublicSwitch, &self.id())
    }

    pub fn localnet_name(&self, owner: &Owner) -> String {
        format!("ln-{}", self.switch_name(owner))
    }

    pub fn localnet_uuid(&self, owner: &Owner) -> Uuid {
        owner.row_uuid(Kind::Localnet, &self.id())
    }

    /// Read back from a public switch's `external_ids`.
    pub fn from_switch_ids(ids: &BTreeMap<String, String>) -> Option<PublicNet> {
        let vlan = match ids.get(key::PUBLIC_VLAN)?.as_str() {
            "untagged" => None,
            v => Some(v.parse().ok()?),
        };
        Some(PublicNet { network_name: ids.get(key::NETWORK_NAME)?.clone(), vlan })
    }
}

// ------------------------------------------------------------ back from a row

/// The UUID our identity model gives a row of ours, from the ids in its
/// `external_ids` (what `audit` compares a row's actual uuid with). `None`
/// for kinds keyed by more than their ids (ACLs: content; NAT, LB:
/// addresses) or rows lacking an id.
pub fn expected_uuid(owner: &Owner, ids: &BTreeMap<String, String>) -> Option<Uuid> {
    let kind = ids.get(key::KIND)?.as_str();
    let net = ids.get(key::NETWORK_ID);
    Some(match kind {
        "network" => network_row(owner, Kind::Network, net?),
        "dns" => network_row(owner, Kind::Dns, net?),
        "port-group" => network_row(owner, Kind::PortGroup, net?),
        "nic" => owner.row_uuid(Kind::Nic, ids.get(key::NIC_UUID)?),
        "dhcpv4" => dhcp_row(owner, true, net?, ids.get(key::CIDR)?),
        "dhcpv4-norouter" => dhcp_row(owner, false, net?, ids.get(key::CIDR)?),
        "dhcpv4-nic" => owner.row_uuid(Kind::Dhcp4Nic, ids.get(key::NIC_UUID)?),
        // A VPC router carries only its vpc_id; an isolated network's its network_id.
        "router" => owner.row_uuid(Kind::Router, &router_key(ids, net.is_none())?),
        // A shared or L2 network's localnet port (public ones carry no network id).
        "localnet" => owner.row_uuid(Kind::Localnet, &localnet_id(net?.parse().ok()?)),
        "public-switch" => {
            owner.row_uuid(Kind::PublicSwitch, &public_id(ids.get(key::NETWORK_NAME)?, ids.get(key::PUBLIC_VLAN)?))
        }
        _ => return None,
    })
}

/// The router id string of a row's ids: `vpc-<id>` when `vpc_first` (or no
/// network id), else `net-<id>`.
fn router_key(ids: &BTreeMap<String, String>, vpc_first: bool) -> Option<String> {
    match (ids.get(key::NETWORK_ID), ids.get(key::VPC_ID)) {
        (_, Some(v)) if vpc_first => Some(format!("vpc-{v}")),
        (Some(n), _) => Some(format!("net-{n}")),
        (None, Some(v)) => Some(format!("vpc-{v}")),
        _ => None,
    }
}

/// The router a Load_Balancer row of ours belongs to: the VPC's when it
/// carries a vpc_id, else its network's.
pub fn lb_router_uuid(owner: &Owner, ids: &BTreeMap<String, String>) -> Option<Uuid> {
    Some(owner.row_uuid(Kind::Router, &router_key(ids, true)?))
}

/// A VM port's row uuid from its NIC uuid alone (the network is not part
/// of it: a port is found wherever the NIC is).
pub fn nic_port_uuid(owner: &Owner, nic_uuid: &str) -> Uuid {
    owner.row_uuid(Kind::Nic, nic_uuid)
}

/// The switch of the network a row of ours names in `cloudstack:network_id`.
pub fn network_switch_uuid(owner: &Owner, network_id: &str) -> Uuid {
    network_row(owner, Kind::Network, network_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_uuids_are_scoped() {
        let a = Owner("cloudstack".into());
        let b = Owner("other".into());
        assert_ne!(a.row_uuid(Kind::Network, "42"), a.row_uuid(Kind::Network, "43"));
        assert_ne!(a.row_uuid(Kind::Network, "42"), a.row_uuid(Kind::Dns, "42"));
        assert_ne!(a.row_uuid(Kind::Network, "42"), b.row_uuid(Kind::Network, "42"));
    }

    #[test]
    fn names_are_owner_aware_but_the_default_owner_keeps_its_names() {
        let d = Owner(crate::config::DEFAULT_OWNER.into());
        assert_eq!(switch_name(&d, 42), "cs-net-42");
        assert_eq!(port_group_name(&d, 42), "cs_net_42");
        assert_eq!(broadcast_uri(&d, 42), "ovn://cs-net-42");
        let o = Owner("dc-2".into());
        assert_eq!(switch_name(&o, 42), "cs-dc-2-net-42");
        assert_eq!(port_group_name(&o, 42), "cs_dc_2_net_42");
        assert_eq!(broadcast_uri(&o, 42), "ovn://cs-dc-2-net-42");
        let rs = RouterScope { owner: Owner("dc2".into()), of: RouterOf::Network(42), zone_id: None };
        assert_eq!(rs.name(), "cs-dc2-router-42");
        assert_eq!(rs.gateway_port_name(), "lrp-cs-dc2-router-42-pub");
        let p = PublicNet { network_name: "public".into(), vlan: Some(101) };
        assert_eq!(p.switch_name(&rs.owner), "cs-dc2-public-public-101");
        assert_eq!(p.localnet_name(&rs.owner), "ln-cs-dc2-public-public-101");
    }

    #[test]
    fn stable_macs_are_local_unicast() {
        let m = Owner("cloudstack".into()).stable_mac("dhcp/42");
        assert!(m.starts_with("0a:"));
        assert_eq!(m.len(), 17);
        assert_eq!(m, Owner("cloudstack".into()).stable_mac("dhcp/42"));
    }
}

/// On-disk identity, pinned: every value below was computed by the code
/// that created the rows of existing deployments. A failure here means a
/// derivation changed and every deployment's rows would be orphaned (the
/// next command would create duplicates next to them). Never update a
/// vector to make this pass; restore the derivation instead.
#[cfg(test)]
mod pinned {
    use std::net::Ipv4Addr;

    use super::*;

    const NIC: &str = "3f0c0000-0000-4000-8000-000000000001";

    fn owner() -> Owner {
        Owner("cloudstack".into())
    }

    fn scope() -> Scope {
        Scope { owner: owner(), network_id: 42, zone_id: Some(1), vpc_id: None }
    }

    fn s(u: uuid::Uuid) -> String {
        u.to_string()
    }

    #[test]
    fn network_rows() {
        let sc = scope();
        let cidr = Ipv4Cidr::parse("c", "10.1.1.0/24").unwrap();
        assert_eq!(s(sc.switch_uuid()), "869fd636-a0c4-5b82-895f-8380226a994b");
        assert_eq!(sc.switch_name(), "cs-net-42");
        assert_eq!(broadcast_uri(&owner(), 42), "ovn://cs-net-42");
        assert_eq!(s(sc.port_uuid(NIC)), "a0514f7d-a256-5b6a-956a-5ea0c5c46a4e");
        assert_eq!(s(sc.dhcp_uuid(cidr, true)), "6f9288e0-dc27-538c-92f7-712f71ef393a");
        assert_eq!(s(sc.dhcp_uuid(cidr, false)), "ce10fbb0-2bc4-5425-85a3-5b1faa305b5a");
        assert_eq!(s(sc.dhcp_nic_uuid(NIC)), "1834f27b-b2fe-5b82-b299-e89338986c9e");
        assert_eq!(s(sc.dns_uuid()), "536674f9-da9a-5a68-a7b5-a0a3cc0e021c");
        assert_eq!(sc.server_mac(), "0a:6e:c4:7d:27:ef");
        assert_eq!(s(sc.port_group_uuid()), "0e46aaa6-61c7-5718-8594-71c7cf9908be");
        assert_eq!(sc.port_group_name(), "cs_net_42");
        // A shared or L2 network's localnet port (computed by the code that
        // introduced it, main at dfac170).
        assert_eq!(s(sc.localnet_uuid()), "0eb445c6-607c-5add-ad3d-d9df2fab9e4c");
        assert_eq!(sc.localnet_name(), "ln-cs-net-42");
    }

    #[test]
    fn guest_attachment() {
        let sc = scope();
        assert_eq!(s(sc.guest_port_uuid()), "6573f57d-9547-5bfb-8ebe-2a47716b528e");
        assert_eq!(s(sc.guest_peer_uuid()), "fc207151-6c1d-5721-82e9-adb8fc0a41bd");
        assert_eq!(sc.guest_port_name(), "lrp-cs-net-42");
        assert_eq!(sc.guest_peer_name(), "rtr-cs-net-42");
        assert_eq!(sc.guest_port_mac(), "0a:ce:76:c7:20:93");
    }

    /// (router, gateway port, gateway peer, route, snat, static NAT, pf tcp,
    /// pf udp, gateway chassis, load balancer 7, gateway MAC)
    #[test]
    fn router_rows() {
        let ip: Ipv4Addr = "203.0.113.10".parse().unwrap();
        let cases = [
            (
                RouterOf::Network(42),
                "cs-router-42",
                [
                    "5d7b0f10-6fb1-521e-b267-39512e554830",
                    "55360afb-101d-5b08-8ea6-4c12c4671b15",
                    "856a3e5b-787a-5d86-9722-b0c555e8909f",
                    "71a19f43-a206-5a4f-ac30-bbb7d56d89b4",
                    "ad8c0ea1-3674-581f-af82-18fad3b4cbcd",
                    "174638fe-dea0-5940-9ca0-b8e20118ecf3",
                    "9f6d197e-50a0-5147-ba26-aa611a0d74ff",
                    "708225d6-7d37-5b5a-9a2e-c26e5e3a28e2",
                    "e9af6d78-89ea-5e92-aa61-622327f28e97",
                    "7353991f-11f0-51bb-8c48-af803f205e16",
                ],
                "0a:19:06:2c:28:9a",
            ),
            (
                RouterOf::Vpc(5),
                "cs-vpc-5",
                [
                    "134e12ff-b33e-5daf-957a-98bf502799ab",
                    "110a96c9-a564-57ef-bdb1-ac7590c2ede1",
                    "e5de9b24-0c9b-5d96-87a9-15ab74b0dae5",
                    "e078d566-1569-5cc4-b7cd-7d0f243df70c",
                    "7e5107e1-befd-5274-9413-6c42155dc273",
                    "64bd336e-51cf-52a6-8e36-c18d405d2ea0",
                    "a03866ac-dcd4-5c08-ae34-2594437e61db",
                    "0d0bcf70-1917-5a56-9e7e-bf15a189fc09",
                    "6a4394aa-bb2b-545e-a8db-e1a54a53e27b",
                    "cf1f742f-bef6-5bee-a0d6-463e20e48d43",
                ],
                "0a:75:84:36:53:bc",
            ),
        ];
        for (of, name, uuids, mac) in cases {
            let rs = RouterScope { owner: owner(), of, zone_id: Some(1) };
            let got = [
                rs.uuid(),
                rs.gateway_port_uuid(),
                rs.gateway_peer_uuid(),
                rs.route_uuid(),
                rs.snat_uuid(),
                rs.static_nat_uuid(ip),
                rs.port_forward_uuid(ip, Protocol::Tcp),
                rs.port_forward_uuid(ip, Protocol::Udp),
                rs.gateway_chassis_uuid("gw1"),
                rs.balancer_uuid(7),
            ]
            .map(s);
            assert_eq!(got, uuids, "{name}");
            assert_eq!(rs.name(), name);
            assert_eq!(rs.gateway_port_name(), format!("lrp-{name}-pub"));
            assert_eq!(rs.gateway_peer_name(), format!("lsp-{name}-pub"));
            assert_eq!(rs.gateway_chassis_name("gw1"), format!("lrp-{name}-pub_gw1"));
            assert_eq!(rs.balancer_name(7), format!("cs-lb-{name}-7"));
            assert_eq!(rs.gateway_port_mac(), mac);
            assert_eq!(rs.port_forward_name(ip, Protocol::Udp), format!("cs-pf-{name}-203.0.113.10-udp"));
        }
    }

    #[test]
    fn policy_routing_policies() {
        let net = RouterScope { owner: owner(), of: RouterOf::Network(42), zone_id: Some(1) };
        let vpc = RouterScope { owner: owner(), of: RouterOf::Vpc(5), zone_id: None };
        let nh: Ipv4Addr = "10.1.1.30".parse().unwrap();
        let got = [
            net.pbr_policy_uuid(29992, "ip4.dst == 172.30.1.0/24", "drop", None),
            net.pbr_policy_uuid(29992, "ip4.dst == 172.30.1.0/24", "reroute", Some(nh)),
            vpc.pbr_policy_uuid(29968, "ip4.src == 10.7.1.0/24", "reroute", Some(nh)),
        ]
        .map(s);
        assert_eq!(
            got,
            [
                "1ea92ee1-d5e5-529f-9171-639ffaa32b2d",
                "de4584af-9920-5443-93c2-a783b5487592",
                "ef59aa8f-e544-5997-9350-28d3160b5181"
            ]
        );
    }

    #[test]
    fn public_switches_and_audit_agree() {
        let o = owner();
        let tagged = PublicNet { network_name: "public".into(), vlan: Some(101) };
        assert_eq!(s(tagged.switch_uuid(&o)), "116990b5-4434-5f58-94ec-d7dcf859a652");
        assert_eq!(s(tagged.localnet_uuid(&o)), "83fb09ce-0c6b-5cb1-8c47-6214256649cb");
        assert_eq!(tagged.switch_name(&o), "cs-public-public-101");
        assert_eq!(tagged.localnet_name(&o), "ln-cs-public-public-101");
        let untagged = PublicNet { network_name: "public".into(), vlan: None };
        assert_eq!(s(untagged.switch_uuid(&o)), "71ff9ed6-ddfc-5577-ac59-a6a533d35c14");
        assert_eq!(s(untagged.localnet_uuid(&o)), "c3c49da3-59e2-57f2-a023-ff5d2f5c5d14");
        assert_eq!(untagged.switch_name(&o), "cs-public-public-untagged");
        assert_eq!(untagged.localnet_name(&o), "ln-cs-public-public-untagged");
        // audit derives the same uuids from what the rows carry.
        let ids: BTreeMap<String, String> = [
            (key::KIND.to_string(), "public-switch".to_string()),
            (key::NETWORK_NAME.to_string(), "public".to_string()),
            (key::PUBLIC_VLAN.to_string(), untagged.vlan_key()),
        ]
        .into();
        assert_eq!(expected_uuid(&o, &ids), Some(untagged.switch_uuid(&o)));
    }

    #[test]
    fn audit_derives_what_the_planners_derive() {
        let o = owner();
        let sc = scope();
        let cidr = Ipv4Cidr::parse("c", "10.1.1.0/24").unwrap();
        let with = |kind: Kind, extra: &[(&str, &str)]| {
            let mut ids = sc.ids(kind);
            ids.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            expected_uuid(&o, &ids)
        };
        assert_eq!(with(Kind::Network, &[]), Some(sc.switch_uuid()));
        assert_eq!(with(Kind::Dns, &[]), Some(sc.dns_uuid()));
        assert_eq!(with(Kind::PortGroup, &[]), Some(sc.port_group_uuid()));
        assert_eq!(with(Kind::Localnet, &[]), Some(sc.localnet_uuid()));
        assert_eq!(with(Kind::Nic, &[(key::NIC_UUID, NIC)]), Some(sc.port_uuid(NIC)));
        assert_eq!(with(Kind::Dhcp4Nic, &[(key::NIC_UUID, NIC)]), Some(sc.dhcp_nic_uuid(NIC)));
        assert_eq!(with(Kind::Dhcp4, &[(key::CIDR, "10.1.1.0/24")]), Some(sc.dhcp_uuid(cidr, true)));
        assert_eq!(with(Kind::Dhcp4NoRouter, &[(key::CIDR, "10.1.1.0/24")]), Some(sc.dhcp_uuid(cidr, false)));
        for of in [RouterOf::Network(42), RouterOf::Vpc(5)] {
            let rs = RouterScope { owner: o.clone(), of, zone_id: Some(1) };
            assert_eq!(expected_uuid(&o, &rs.ids(Kind::Router)), Some(rs.uuid()));
            assert_eq!(lb_router_uuid(&o, &rs.ids(Kind::LoadBalancer)), Some(rs.uuid()));
        }
        // A VPC tier's load balancer carries both ids: it is the VPC router's.
        let tier = Scope { vpc_id: Some(5), ..scope() };
        let vpc = RouterScope { owner: o.clone(), of: RouterOf::Vpc(5), zone_id: None };
        assert_eq!(lb_router_uuid(&o, &tier.ids(Kind::LoadBalancer)), Some(vpc.uuid()));
        assert_eq!(network_switch_uuid(&o, "42"), sc.switch_uuid());
    }

    /// ACL rows are keyed by their content: network, place, direction,
    /// priority, action, match.
    #[test]
    fn acl_rows() {
        let sc = scope();
        let acl = |place, direction, matches| AclKey { place, direction, priority: 1000, action: "drop", matches };
        let m = "outport == @cs_net_42 && inport == \"rtr-cs-net-42\" && ip4";
        assert_eq!(
            s(sc.acl_uuid(Kind::Firewall, &acl(Place::PortGroup, "to-lport", m))),
            "c0aa70f0-679b-519f-b90d-06e83e2bee64"
        );
        let m = "outport == \"lsp-cs-router-42-pub\" && ip4 && ip4.dst == 10.1.1.0/24";
        assert_eq!(
            s(sc.acl_uuid(Kind::Firewall, &acl(Place::PublicSwitch, "to-lport", m))),
            "482a4fde-4ca8-5ac0-8d2d-c67eeae6fb6a"
        );
        let m = "inport == @cs_net_42 && ip4";
        assert_eq!(
            s(sc.acl_uuid(Kind::NetworkAcl, &acl(Place::PortGroup, "from-lport", m))),
            "fd497fdb-9b54-56b4-aa67-f68d17f40c42"
        );
    }
}
