//! The slice of the OVN Northbound schema we write, and our conventions on
//! top of it: names, ownership tags and deterministic row UUIDs.
//!
//! Knows OVSDB (values, rows) but nothing of CloudStack's wire format; the
//! mapping table lives in `docs/mapping.md`.

pub mod rows;

use std::collections::BTreeMap;

use uuid::Uuid;

pub const DB: &str = "OVN_Northbound";

pub mod table {
    pub const LOGICAL_SWITCH: &str = "Logical_Switch";
    pub const LOGICAL_SWITCH_PORT: &str = "Logical_Switch_Port";
    pub const DHCP_OPTIONS: &str = "DHCP_Options";
    pub const DNS: &str = "DNS";
    pub const LOGICAL_ROUTER: &str = "Logical_Router";
    pub const LOGICAL_ROUTER_PORT: &str = "Logical_Router_Port";
    pub const GATEWAY_CHASSIS: &str = "Gateway_Chassis";
    pub const NAT: &str = "NAT";
    pub const STATIC_ROUTE: &str = "Logical_Router_Static_Route";
    pub const LOAD_BALANCER: &str = "Load_Balancer";
    pub const ACL: &str = "ACL";
    pub const PORT_GROUP: &str = "Port_Group";
    pub const LOGICAL_ROUTER_POLICY: &str = "Logical_Router_Policy";
}

/// `external_ids` keys. Every row we create carries [`OWNER`]; we never
/// modify or delete a row whose `OWNER` is not ours.
pub mod key {
    pub const OWNER: &str = "cloudstack:owner";
    pub const KIND: &str = "cloudstack:kind";
    pub const ZONE_ID: &str = "cloudstack:zone_id";
    pub const NETWORK_ID: &str = "cloudstack:network_id";
    pub const VPC_ID: &str = "cloudstack:vpc_id";
    pub const NIC_ID: &str = "cloudstack:nic_id";
    pub const NIC_UUID: &str = "cloudstack:nic_uuid";
    pub const CIDR: &str = "cloudstack:cidr";
    pub const GATEWAY: &str = "cloudstack:gateway";
    /// On a per-NIC DHCP row: the subnet row it extends.
    pub const BASE_DHCP: &str = "cloudstack:base_dhcp";
    /// On a router: `cloudstack:public_ip:<ip>` = [`super::IP_SOURCE_NAT`] or
    /// [`super::IP_ASSIGNED`], one key per public IP CloudStack assigned to it.
    pub const PUBLIC_IP_PREFIX: &str = "cloudstack:public_ip:";
    /// On a router: the public switch its gateway port is on.
    pub const PUBLIC_SWITCH: &str = "cloudstack:public_switch";
    pub const VPC_CIDR: &str = "cloudstack:vpc_cidr";
    pub const PUBLIC_IP: &str = "cloudstack:public_ip";
    pub const PRIVATE_IP: &str = "cloudstack:private_ip";
    pub const PROTOCOL: &str = "cloudstack:protocol";
    pub const PUBLIC_VLAN: &str = "cloudstack:public_vlan";
    pub const NETWORK_NAME: &str = "cloudstack:network_name";
    /// On a shared or L2 network's switch: `shared` or `l2`.
    pub const GUEST_TYPE: &str = "cloudstack:guest_type";
    /// On a shared or L2 network's switch and localnet port: its VLAN
    /// (`3000` or `untagged`), for commands whose payload names none.
    pub const VLAN: &str = "cloudstack:vlan";
    /// On a network's port group: uuids of its firewall ACLs on the shared
    /// public switch (they cannot hang off the port group).
    pub const PUBLIC_ACLS: &str = "cloudstack:public_acls";
    /// On a network's port group: the last applied firewall rules (JSON), so
    /// NAT, forwarding and load-balancer changes can refresh the firewall.
    pub const FIREWALL: &str = "cloudstack:firewall";
    pub const RULE_ID: &str = "cloudstack:rule_id";
    /// On an isolated network's switch or a VPC's router: its policy-based
    /// routing tables, routes and rules (JSON, `payload::pbr::PbrState`).
    pub const PBR: &str = "cloudstack:pbr";
    /// On a compiled Logical_Router_Policy: where it comes from.
    pub const PBR_TABLE: &str = "cloudstack:pbr_table";
    pub const PBR_RULE: &str = "cloudstack:pbr_rule";
    pub const PBR_ROUTE: &str = "cloudstack:pbr_route";
}

pub const IP_SOURCE_NAT: &str = "source-nat";
pub const IP_ASSIGNED: &str = "assigned";

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

/// The address of the UserData design (docs/metadata-design.md): the DHCP
/// server id of networks whose `extension_ip` is not on the subnet.
pub const METADATA_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 169, 254);

pub fn broadcast_uri(owner: &Owner, network_id: u64) -> String {
    format!("ovn://{}", switch_name(owner, network_id))
}

/// OVN copies string-typed DHCP options verbatim into the logical flow's
/// `put_dhcp_opts(...)`; without literal double quotes the action fails to
/// parse and the port silently gets no DHCP answer (ovn-notes §3.3).
pub fn quoted(s: &str) -> String {
    format!("\"{s}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_uuids_are_stable_and_scoped() {
        let a = Owner("cloudstack".into());
        let b = Owner("other".into());
        assert_eq!(a.row_uuid(Kind::Network, "42"), a.row_uuid(Kind::Network, "42"));
        assert_ne!(a.row_uuid(Kind::Network, "42"), a.row_uuid(Kind::Network, "43"));
        assert_ne!(a.row_uuid(Kind::Network, "42"), a.row_uuid(Kind::Dns, "42"));
        assert_ne!(a.row_uuid(Kind::Network, "42"), b.row_uuid(Kind::Network, "42"));
        // Pinned: a change here would orphan every row in every deployment.
        assert_eq!(
            a.row_uuid(Kind::Network, "42").to_string(),
            a.row_uuid(Kind::Network, "42").hyphenated().to_string()
        );
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
    }

    #[test]
    fn stable_macs_are_local_unicast() {
        let m = Owner("cloudstack".into()).stable_mac("dhcp/42");
        assert!(m.starts_with("0a:"));
        assert_eq!(m.len(), 17);
        assert_eq!(m, Owner("cloudstack".into()).stable_mac("dhcp/42"));
    }
}
