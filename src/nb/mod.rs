//! The slice of the OVN Northbound schema we write, and our conventions on
//! top of it: names, ownership tags and deterministic row UUIDs.
//!
//! Knows OVSDB (values, rows) but nothing of CloudStack's wire format; the
//! mapping table lives in `docs/mapping.md`.

pub mod ids;
pub mod rows;

pub use ids::{broadcast_uri, localnet_id, localnet_name, port_group_name, switch_name, Kind, Owner};

pub const DB: &str = "OVN_Northbound";
/// The Southbound database: read by the diagnostics and for password
/// acknowledgements; only the host agent writes there (its own
/// `Chassis_Private` row).
pub const SB_DB: &str = "OVN_Southbound";

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
    /// On a VM port: it is a PBR next hop (an appliance), so its port
    /// security is MAC-only; the NIC commands keep it so.
    pub const PBR_NEXTHOP: &str = "cloudstack:pbr_nexthop";
}

pub const IP_SOURCE_NAT: &str = "source-nat";
pub const IP_ASSIGNED: &str = "assigned";

/// The address of the UserData design (docs/metadata-design.md): the DHCP
/// server id of networks whose `extension_ip` is not on the subnet.
pub const METADATA_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 169, 254);

/// OVN copies string-typed DHCP options verbatim into the logical flow's
/// `put_dhcp_opts(...)`; without literal double quotes the action fails to
/// parse and the port silently gets no DHCP answer (ovn-notes §3.3).
pub fn quoted(s: &str) -> String {
    format!("\"{s}\"")
}
