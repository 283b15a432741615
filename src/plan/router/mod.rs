//! Planning for routing and the public side: a Logical_Router per isolated
//! network or per VPC, guest attachments, the gateway port on a shared
//! public switch, Source NAT, static NAT and port forwarding.
//!
//! OVN facts this relies on (verified on 23.03, `docs/routing.md`):
//! * `dnat_and_snat` needs a gateway: the gateway router port is a
//!   distributed gateway port pinned with Gateway_Chassis rows;
//! * the NAT table has no L4 ports, so port forwarding is a router
//!   Load_Balancer `public:port → private:port`; it is attached to the guest
//!   switch too, or a VM cannot reach its own network's forwarded ports;
//! * Load_Balancer is referenced weakly: deleting a router does not delete
//!   them, we do.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::network::{ensure_localnet, Localnet};
use super::{map_mutations, merge_ids, Existing, Parent, Plan};
use crate::error::{Error, Result};
use crate::nb::ids::Scope;
pub use crate::nb::ids::{Protocol, PublicNet, RouterOf, RouterScope};
use crate::nb::rows::{LoadBalancer, Port, RouterPort};
use crate::nb::{key, table, Kind, Owner, IP_ASSIGNED, IP_SOURCE_NAT};
use crate::observe::Observed;
use crate::ovsdb::value::{string_map, string_set, uuid_set};
use crate::ovsdb::{Condition, Mutation, Mutator, Operation, WaitUntil};
use crate::payload::types::{Ipv4Cidr, Ipv6Cidr};

mod attach;
mod forward;
mod nat;
mod public;
mod teardown;

pub use attach::{attach_network, detach_network};
pub use forward::{
    add_port_forward, ensure_balancer, forward_vips, port_range, remove_balancer, remove_port_forward, Balancer,
    Forward,
};
pub use nat::{ensure_snat, ensure_static_nat, remove_snat, remove_static_nat};
pub use public::{ensure_public_ip, release_public_ip, remove_gateway};
pub use teardown::{destroy_router, refuse_attached_tiers, release_ip_rows};

/// A public IP as CloudStack hands it over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicIp {
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub net: PublicNet,
}

/// Gateway placement and MTU (registration details `ovn.gateway.chassis`, `ovn.public.mtu`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewaySpec {
    pub chassis: Vec<String>,
    pub mtu: u32,
}

fn row(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

/// The public IPs recorded on the router: ip → role.
pub fn recorded_ips(obs: &Observed) -> BTreeMap<Ipv4Addr, String> {
    obs.router()
        .as_ref()
        .map(|r| {
            r.external_ids
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix(key::PUBLIC_IP_PREFIX)?.parse().ok()?, v.clone())))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------- router

/// The router row. `vpc_cidr` is recorded for VPC routers.
pub fn ensure_router(plan: &mut Plan, rs: &RouterScope, vpc_cidr: Option<Ipv4Cidr>, obs: &Observed) -> Result<()> {
    let mut ids = rs.ids(Kind::Router);
    if let Some(c) = vpc_cidr {
        ids.insert(key::VPC_CIDR.into(), c.network().to_string());
    }
    // Neutron's and ovn-kubernetes' settings: do not learn every ARP
    // request's sender (MAC_Binding growth on big public L2 domains), and
    // resolve neighbour OVN routers dynamically.
    let options: BTreeMap<String, String> = [
        ("always_learn_from_arp_request".to_string(), "false".to_string()),
        ("dynamic_neigh_routers".to_string(), "true".to_string()),
    ]
    .into();
    match obs.router() {
        None => {
            let r = row(&[
                ("name", json!(rs.name())),
                ("options", string_map(&options)),
                ("external_ids", string_map(&ids)),
            ]);
            // No name index on Logical_Router: refuse to add a second
            // router of this name next to someone else's (the retry after
            // a failed guard looks the name up and says whose it is).
            plan.require_name_free(table::LOGICAL_ROUTER, &rs.name());
            plan.insert(table::LOGICAL_ROUTER, Some(rs.uuid()), None, r, format!("insert router {}", rs.name()));
        }
        Some(r) => {
            rs.require_owned(format!("Logical_Router {}", r.uuid), &r.external_ids)?;
            let mut muts = merge_ids(&ids, &r.external_ids);
            muts.extend(map_mutations("options", &options, &r.options, |k| options.contains_key(k)));
            plan.mutate(table::LOGICAL_ROUTER, r.uuid, muts, format!("update router {}", rs.name()));
        }
    }
    Ok(())
}

/// The router as a parent of new children: guarded if it was read.
fn router_existing(rs: &RouterScope, obs: &Observed) -> Existing {
    Existing::of(obs.router(), rs.name())
}

/// Insert a row referenced from the router's `column`, guarded on the
/// router still existing.
#[allow(clippy::too_many_arguments)]
fn insert_router_child(
    plan: &mut Plan,
    rs: &RouterScope,
    obs: &Observed,
    table: &'static str,
    column: &'static str,
    uuid: Uuid,
    row: Map<String, Value>,
    what: String,
) {
    plan.insert_child(table, uuid, row, Parent::router(rs.uuid(), column), router_existing(rs, obs), what);
}

fn update_router_port(
    plan: &mut Plan,
    p: &RouterPort,
    mac: &str,
    networks: &[String],
    options: &BTreeMap<String, String>,
    ids: &BTreeMap<String, String>,
) {
    let mut r = Map::new();
    if p.mac != mac {
        r.insert("mac".into(), json!(mac));
    }
    let mut have = p.networks.clone();
    have.sort();
    let mut want = networks.to_vec();
    want.sort();
    if have != want {
        r.insert("networks".into(), string_set(networks.iter().map(String::as_str)));
    }
    plan.update(table::LOGICAL_ROUTER_PORT, p.uuid, r, format!("update router port {}", p.name));
    let mut muts = merge_ids(ids, &p.external_ids);
    muts.extend(map_mutations("options", options, &p.options, |k| options.contains_key(k)));
    plan.mutate(table::LOGICAL_ROUTER_PORT, p.uuid, muts, format!("update router port {} options", p.name));
}

/// A router-type switch port: the switch side of a router port.
struct RouterPeer {
    name: String,
    uuid: Uuid,
    switch: Uuid,
    switch_existing: Existing,
    options: BTreeMap<String, String>,
    ids: BTreeMap<String, String>,
}

fn ensure_router_peer(plan: &mut Plan, owner: &Owner, peer: &RouterPeer, observed: Option<&Port>) -> Result<()> {
    match observed {
        None => {
            let r = row(&[
                ("name", json!(peer.name)),
                ("type", json!("router")),
                ("addresses", string_set(["router"])),
                ("options", string_map(&peer.options)),
                ("external_ids", string_map(&peer.ids)),
            ]);
            let parent = Parent::switch_ports(peer.switch);
            let what = format!("router peer {}", peer.name);
            plan.insert_child(table::LOGICAL_SWITCH_PORT, peer.uuid, r, parent, peer.switch_existing.clone(), what);
        }
        Some(p) => {
            if !owner.owns(&p.external_ids) {
                return Err(Error::NotOwned { what: format!("Logical_Switch_Port {}", p.name) });
            }
            let muts = map_mutations("options", &peer.options, &p.options, |k| peer.options.contains_key(k));
            plan.mutate(table::LOGICAL_SWITCH_PORT, p.uuid, muts, format!("update router peer {}", peer.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_in_tree_plugins() {
        let rs = RouterScope { owner: Owner("cloudstack".into()), of: RouterOf::Network(42), zone_id: None };
        assert_eq!(rs.name(), "cs-router-42");
        assert_eq!(rs.gateway_port_name(), "lrp-cs-router-42-pub");
        let v = RouterScope { of: RouterOf::Vpc(5), ..rs.clone() };
        assert_eq!(v.name(), "cs-vpc-5");
        assert_ne!(v.uuid(), rs.uuid());
        let p = PublicNet { network_name: "public".into(), vlan: Some(101) };
        assert_eq!(p.switch_name(&rs.owner), "cs-public-public-101");
        assert_eq!(PublicNet { vlan: None, ..p }.switch_name(&rs.owner), "cs-public-public-untagged");
    }
}
