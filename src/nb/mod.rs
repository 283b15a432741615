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
    /// On a network's port group: uuids of its firewall ACLs on the shared
    /// public switch (they cannot hang off the port group).
    pub const PUBLIC_ACLS: &str = "cloudstack:public_acls";
    /// On a network's port group: the last applied firewall rules (JSON), so
    /// NAT, forwarding and load-balancer changes can refresh the firewall.
    pub const FIREWALL: &str = "cloudstack:firewall";
    pub const RULE_ID: &str = "cloudstack:rule_id";
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

/// `cs-net-<network_id>`: fixed by the broadcast URI `ovn://cs-net-<id>` that
/// CloudStack stores and by the legacy in-tree plugin's convention.
pub fn switch_name(network_id: u64) -> String {
    format!("cs-net-{network_id}")
}

/// Port_Group and Address_Set names must be identifiers (`[a-zA-Z_.][a-zA-Z_.0-9]*`).
pub fn port_group_name(network_id: u64) -> String {
    format!("cs_net_{network_id}")
}

pub fn broadcast_uri(network_id: u64) -> String {
    format!("ovn://{}", switch_name(network_id))
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
    fn row_uuids_are_scoped() {
        let a = Owner("cloudstack".into());
        let b = Owner("other".into());
        assert_ne!(a.row_uuid(Kind::Network, "42"), a.row_uuid(Kind::Network, "43"));
        assert_ne!(a.row_uuid(Kind::Network, "42"), a.row_uuid(Kind::Dns, "42"));
        assert_ne!(a.row_uuid(Kind::Network, "42"), b.row_uuid(Kind::Network, "42"));
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

    use crate::nb::{Kind, Owner};
    use crate::payload::types::Ipv4Cidr;
    use crate::plan::network::Scope;
    use crate::plan::router::{
        guest_peer_name, guest_peer_uuid, guest_port_name, guest_port_uuid, Protocol, PublicNet, RouterOf, RouterScope,
    };

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
        assert_eq!(crate::nb::broadcast_uri(42), "ovn://cs-net-42");
        assert_eq!(s(sc.port_uuid(NIC)), "a0514f7d-a256-5b6a-956a-5ea0c5c46a4e");
        assert_eq!(s(sc.dhcp_uuid(cidr, true)), "6f9288e0-dc27-538c-92f7-712f71ef393a");
        assert_eq!(s(sc.dhcp_uuid(cidr, false)), "ce10fbb0-2bc4-5425-85a3-5b1faa305b5a");
        assert_eq!(s(owner().row_uuid(Kind::Dhcp4Nic, NIC)), "1834f27b-b2fe-5b82-b299-e89338986c9e");
        assert_eq!(s(sc.dns_uuid()), "536674f9-da9a-5a68-a7b5-a0a3cc0e021c");
        assert_eq!(sc.server_mac(), "0a:6e:c4:7d:27:ef");
        assert_eq!(s(crate::plan::acl::port_group_uuid(&sc)), "0e46aaa6-61c7-5718-8594-71c7cf9908be");
        assert_eq!(crate::nb::port_group_name(42), "cs_net_42");
    }

    #[test]
    fn guest_attachment() {
        let sc = scope();
        assert_eq!(s(guest_port_uuid(&sc)), "6573f57d-9547-5bfb-8ebe-2a47716b528e");
        assert_eq!(s(guest_peer_uuid(&sc)), "fc207151-6c1d-5721-82e9-adb8fc0a41bd");
        assert_eq!(guest_port_name(42), "lrp-cs-net-42");
        assert_eq!(guest_peer_name(42), "rtr-cs-net-42");
        assert_eq!(owner().stable_mac("router-port/42"), "0a:ce:76:c7:20:93");
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
            assert_eq!(owner().stable_mac(&format!("gateway-port/{name}")), mac);
        }
    }

    #[test]
    fn public_switches() {
        let o = owner();
        let tagged = PublicNet { network_name: "public".into(), vlan: Some(101) };
        assert_eq!(s(tagged.switch_uuid(&o)), "116990b5-4434-5f58-94ec-d7dcf859a652");
        assert_eq!(s(tagged.localnet_uuid(&o)), "83fb09ce-0c6b-5cb1-8c47-6214256649cb");
        assert_eq!(tagged.switch_name(), "cs-public-public-101");
        assert_eq!(tagged.localnet_name(), "ln-cs-public-public-101");
        let untagged = PublicNet { network_name: "public".into(), vlan: None };
        assert_eq!(s(untagged.switch_uuid(&o)), "71ff9ed6-ddfc-5577-ac59-a6a533d35c14");
        assert_eq!(s(untagged.localnet_uuid(&o)), "c3c49da3-59e2-57f2-a023-ff5d2f5c5d14");
        assert_eq!(untagged.switch_name(), "cs-public-public-untagged");
        assert_eq!(untagged.localnet_name(), "ln-cs-public-public-untagged");
    }

    /// ACL rows are keyed by their content: network, place, direction,
    /// priority, action, match.
    #[test]
    fn acl_rows() {
        let o = owner();
        let m = "outport == @cs_net_42 && inport == \"rtr-cs-net-42\" && ip4";
        assert_eq!(
            s(o.row_uuid(Kind::Firewall, &format!("42/PortGroup/to-lport/1000/drop/{m}"))),
            "c0aa70f0-679b-519f-b90d-06e83e2bee64"
        );
        let m = "outport == \"lsp-cs-router-42-pub\" && ip4 && ip4.dst == 10.1.1.0/24";
        assert_eq!(
            s(o.row_uuid(Kind::Firewall, &format!("42/PublicSwitch/to-lport/1000/drop/{m}"))),
            "482a4fde-4ca8-5ac0-8d2d-c67eeae6fb6a"
        );
        let m = "inport == @cs_net_42 && ip4";
        assert_eq!(
            s(o.row_uuid(Kind::NetworkAcl, &format!("42/PortGroup/from-lport/1000/drop/{m}"))),
            "fd497fdb-9b54-56b4-aa67-f68d17f40c42"
        );
    }
}
