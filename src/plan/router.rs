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

/// Attach a guest network: a router port with the guest gateway address and
/// a stable MAC, and its router-type peer on the guest switch.
///
/// With an IPv6 gateway the port also gets that network and sends router
/// advertisements (SLAAC). Without one (commands whose payload carries no
/// IPv6 fields, such as assign-ip) the port's IPv6 networks and RA settings
/// are left as they are.
pub fn attach_network(
    plan: &mut Plan,
    rs: &RouterScope,
    net: &Scope,
    gateway: Ipv4Cidr,
    gateway6: Option<Ipv6Cidr>,
    obs: &Observed,
) -> Result<()> {
    let name = net.guest_port_name();
    let mut networks = vec![format!("{}/{}", gateway.addr, gateway.prefix)];
    match gateway6 {
        Some(g) => networks.push(g.to_string()),
        None => {
            let kept = obs.guest_port().into_iter().flat_map(|p| p.networks.iter()).filter(|n| n.contains(':'));
            networks.extend(kept.cloned());
        }
    }
    let ra = gateway6.map(|_| slaac_ra_configs());
    let mac = net.guest_port_mac();
    let mut ids = net.ids(Kind::GuestRouterPort);
    if let RouterOf::Vpc(v) = rs.of {
        ids.insert(key::VPC_ID.into(), v.to_string());
    }
    let port_uuid = net.guest_port_uuid();
    match obs.guest_port() {
        None => {
            let r = row(&[
                ("name", json!(name)),
                ("mac", json!(mac)),
                ("networks", string_set(networks.iter().map(String::as_str))),
                ("ipv6_ra_configs", string_map(ra.as_ref().unwrap_or(&BTreeMap::new()))),
                ("external_ids", string_map(&ids)),
            ]);
            insert_router_child(
                plan,
                rs,
                obs,
                table::LOGICAL_ROUTER_PORT,
                "ports",
                port_uuid,
                r,
                format!("router port {name}"),
            );
        }
        Some(p) => {
            net.require_owned(format!("port {}", p.name), &p.external_ids)?;
            let on_router = obs.router().is_some_and(|r| r.ports.contains(&p.uuid));
            if !on_router {
                return Err(Error::NotOwned {
                    what: format!("Logical_Router_Port {name} (it is attached to another router than {})", rs.name()),
                });
            }
            update_router_port(plan, p, &mac, &networks, &BTreeMap::new(), &ids);
            if let Some(ra) = &ra {
                let muts = map_mutations("ipv6_ra_configs", ra, &p.ipv6_ra_configs, |k| RA_KEYS.contains(&k));
                plan.mutate(table::LOGICAL_ROUTER_PORT, p.uuid, muts, format!("update router port {name} RA"));
            }
        }
    }
    let peer = RouterPeer {
        name: net.guest_peer_name(),
        uuid: net.guest_peer_uuid(),
        switch: net.switch_uuid(),
        switch_existing: Existing::of(obs.switch(), net.switch_name()),
        options: [("router-port".to_string(), name.clone())].into(),
        ids: net.ids(Kind::GuestRouterPeer),
    };
    ensure_router_peer(plan, &net.owner, &peer, obs.guest_peer())?;
    Ok(())
}

/// The `ipv6_ra_configs` keys we manage. `send_periodic` matters: a VM
/// that misses the answer to its router solicitation would otherwise wait
/// for the next one; 60 s keeps the stateless address fresh well within
/// the default 30-minute router lifetime.
const RA_KEYS: &[&str] = &["address_mode", "send_periodic", "max_interval", "min_interval"];

fn slaac_ra_configs() -> BTreeMap<String, String> {
    [("address_mode", "slaac"), ("send_periodic", "true"), ("max_interval", "60"), ("min_interval", "20")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
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

/// Undo [`attach_network`] (the guest switch and its VMs stay).
pub fn detach_network(plan: &mut Plan, rs: &RouterScope, net: &Scope, obs: &Observed) -> Result<()> {
    if let (Some(p), Some(r)) = (obs.guest_port(), obs.router()) {
        net.require_owned(format!("port {}", p.name), &p.external_ids)?;
        if r.ports.contains(&p.uuid) {
            plan.unlink(Parent::router(r.uuid, "ports"), &[p.uuid], format!("detach {} from {}", p.name, rs.name()));
        }
    }
    if let (Some(p), Some(sw)) = (obs.guest_peer(), obs.switch()) {
        net.require_owned(format!("port {}", p.name), &p.external_ids)?;
        if sw.ports.contains(&p.uuid) {
            plan.unlink(Parent::switch_ports(sw.uuid), &[p.uuid], format!("remove router peer {}", p.name));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- public side

/// Which address the gateway port carries: the source-NAT IP if there is
/// one, else the address it already has if still assigned, else the lowest.
fn primary_ip(ips: &BTreeMap<Ipv4Addr, String>, current: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
    ips.iter()
        .find(|(_, role)| role.as_str() == IP_SOURCE_NAT)
        .map(|(ip, _)| *ip)
        .or(current.filter(|c| ips.contains_key(c)))
        .or_else(|| ips.keys().next().copied())
}

fn current_primary(obs: &Observed) -> Option<Ipv4Addr> {
    obs.gateway_port()?.networks.first()?.split('/').next()?.parse().ok()
}

/// Record `ip` with `role` on the router and make sure the router has its
/// gateway: the public switch (+ localnet port) of the IP's VLAN, the
/// gateway port pinned to the gateway chassis, its peer, the default route.
pub fn ensure_public_ip(
    plan: &mut Plan,
    rs: &RouterScope,
    public: &PublicIp,
    role: &str,
    gw: &GatewaySpec,
    obs: &Observed,
) -> Result<()> {
    let mut ips = recorded_ips(obs);
    let switch_uuid = public.net.switch_uuid(&rs.owner);
    if let Some(r) = obs.router() {
        if let Some(other) = r.external_ids.get(key::PUBLIC_SWITCH).filter(|s| **s != switch_uuid.to_string()) {
            if !ips.is_empty() {
                return Err(Error::Unsupported(format!(
                    "public IP {} is on {}, but router {} already has its gateway on another public network ({other}); one public VLAN per router",
                    public.ip,
                    public.net.switch_name(),
                    rs.name()
                )));
            }
        }
    }
    // A source-NAT IP demotes any previous one (update-vpc-source-nat-ip).
    if role == IP_SOURCE_NAT {
        for v in ips.values_mut() {
            if v == IP_SOURCE_NAT {
                *v = IP_ASSIGNED.to_string();
            }
        }
    }
    // An IP keeps its source-NAT role when it is assigned again without it.
    let role = if ips.get(&public.ip).map(String::as_str) == Some(IP_SOURCE_NAT) && role == IP_ASSIGNED {
        IP_SOURCE_NAT
    } else {
        role
    };
    ips.insert(public.ip, role.to_string());
    let mut ids = BTreeMap::new();
    for (ip, r) in &ips {
        ids.insert(format!("{}{ip}", key::PUBLIC_IP_PREFIX), r.clone());
    }
    ids.insert(key::PUBLIC_SWITCH.to_string(), switch_uuid.to_string());
    let observed_ids = obs.router().map(|r| r.external_ids.clone()).unwrap_or_default();
    plan.mutate(
        table::LOGICAL_ROUTER,
        rs.uuid(),
        map_mutations("external_ids", &ids, &observed_ids, |k| {
            k.starts_with(key::PUBLIC_IP_PREFIX) || k == key::PUBLIC_SWITCH
        }),
        format!("record public IP {} on {}", public.ip, rs.name()),
    );
    let primary = primary_ip(&ips, current_primary(obs)).unwrap_or(public.ip);
    ensure_gateway(plan, rs, public, primary, gw, obs)
}

fn ensure_gateway(
    plan: &mut Plan,
    rs: &RouterScope,
    public: &PublicIp,
    primary: Ipv4Addr,
    gw: &GatewaySpec,
    obs: &Observed,
) -> Result<()> {
    let owner = &rs.owner;
    let sw_uuid = public.net.switch_uuid(owner);
    let sw_name = public.net.switch_name();
    let mut sw_ids = BTreeMap::new();
    sw_ids.insert(key::OWNER.to_string(), owner.0.clone());
    sw_ids.insert(key::KIND.to_string(), Kind::PublicSwitch.as_str().to_string());
    sw_ids.insert(key::PUBLIC_VLAN.to_string(), public.net.vlan_key());
    sw_ids.insert(key::NETWORK_NAME.to_string(), public.net.network_name.clone());
    match obs.public_switch() {
        None => {
            let r = row(&[("name", json!(sw_name)), ("external_ids", string_map(&sw_ids))]);
            plan.insert(table::LOGICAL_SWITCH, Some(sw_uuid), None, r, format!("insert public switch {sw_name}"));
        }
        Some(sw) => {
            rs.require_owned(format!("Logical_Switch {sw_name}"), &sw.external_ids)?;
            plan.require_row(table::LOGICAL_SWITCH, sw_uuid, &sw_name);
        }
    }
    // The localnet port: the switch's way onto the physical network.
    let ln_uuid = public.net.localnet_uuid(owner);
    let ln_name = public.net.localnet_name();
    let ln_opts: BTreeMap<String, String> = [("network_name".to_string(), public.net.network_name.clone())].into();
    let mut ln_ids = sw_ids.clone();
    ln_ids.insert(key::KIND.to_string(), Kind::Localnet.as_str().to_string());
    match obs.localnet() {
        None => {
            let mut r = row(&[
                ("name", json!(ln_name)),
                ("type", json!("localnet")),
                ("addresses", string_set(["unknown"])),
                ("options", string_map(&ln_opts)),
                ("external_ids", string_map(&ln_ids)),
            ]);
            if let Some(v) = public.net.vlan {
                r.insert("tag_request".into(), json!(v));
            }
            plan.insert_child(
                table::LOGICAL_SWITCH_PORT,
                ln_uuid,
                r,
                Parent::switch_ports(sw_uuid),
                Existing::of(obs.public_switch(), sw_name.clone()),
                format!("localnet port {ln_name}"),
            );
        }
        Some(p) => {
            rs.require_owned(format!("Logical_Switch_Port {ln_name}"), &p.external_ids)?;
            let muts = map_mutations("options", &ln_opts, &p.options, |k| k == "network_name");
            plan.mutate(table::LOGICAL_SWITCH_PORT, p.uuid, muts, format!("update localnet port {ln_name}"));
            if p.tag_request != public.net.vlan.map(i64::from) {
                let tag = match public.net.vlan {
                    Some(v) => json!(v),
                    None => json!(["set", []]),
                };
                plan.update(
                    table::LOGICAL_SWITCH_PORT,
                    p.uuid,
                    row(&[("tag_request", tag)]),
                    format!("retag {ln_name}"),
                );
            }
        }
    }

    // The gateway port and its placement.
    let port_name = rs.gateway_port_name();
    let port_uuid = rs.gateway_port_uuid();
    let mac = rs.gateway_port_mac();
    let networks = vec![format!("{primary}/{}", public.prefix)];
    let options: BTreeMap<String, String> = [("gateway_mtu".to_string(), gw.mtu.to_string())].into();
    let ids = rs.ids(Kind::GatewayPort);
    match obs.gateway_port() {
        None => {
            let r = row(&[
                ("name", json!(port_name)),
                ("mac", json!(mac)),
                ("networks", string_set(networks.iter().map(String::as_str))),
                ("options", string_map(&options)),
                ("external_ids", string_map(&ids)),
            ]);
            insert_router_child(
                plan,
                rs,
                obs,
                table::LOGICAL_ROUTER_PORT,
                "ports",
                port_uuid,
                r,
                format!("gateway port {port_name}"),
            );
        }
        Some(p) => {
            rs.require_owned(format!("Logical_Router_Port {port_name}"), &p.external_ids)?;
            update_router_port(plan, p, &mac, &networks, &options, &ids);
        }
    }
    ensure_gateway_chassis(plan, rs, gw, obs);

    // The gateway port's peer on the public switch. `nat-addresses=router`
    // makes the active gateway chassis announce the NAT addresses (GARP)
    // when it takes over.
    let peer = RouterPeer {
        name: rs.gateway_peer_name(),
        uuid: rs.gateway_peer_uuid(),
        switch: sw_uuid,
        switch_existing: Existing::of(obs.public_switch(), sw_name.clone()),
        options: [("router-port".to_string(), port_name.clone()), ("nat-addresses".to_string(), "router".to_string())]
            .into(),
        ids: rs.ids(Kind::GatewayPeer),
    };
    ensure_router_peer(plan, owner, &peer, obs.gateway_peer())?;

    // Default route to the public gateway.
    const DEFAULT_ROUTE: &str = "0.0.0.0/0";
    let route_uuid = rs.route_uuid();
    let nexthop = public.gateway.to_string();
    match obs.route() {
        None => {
            let r = row(&[
                ("ip_prefix", json!(DEFAULT_ROUTE)),
                ("nexthop", json!(nexthop)),
                ("output_port", json!(port_name)),
                ("external_ids", string_map(&rs.ids(Kind::DefaultRoute))),
            ]);
            insert_router_child(
                plan,
                rs,
                obs,
                table::STATIC_ROUTE,
                "static_routes",
                route_uuid,
                r,
                format!("default route via {nexthop}"),
            );
        }
        Some(r) => {
            let mut u = Map::new();
            if r.ip_prefix != DEFAULT_ROUTE {
                u.insert("ip_prefix".into(), json!(DEFAULT_ROUTE));
            }
            if r.nexthop != nexthop {
                u.insert("nexthop".into(), json!(nexthop));
            }
            if r.output_port.as_deref() != Some(port_name.as_str()) {
                u.insert("output_port".into(), json!(port_name));
            }
            plan.update(table::STATIC_ROUTE, r.uuid, u, format!("update default route via {nexthop}"));
        }
    }
    Ok(())
}

/// Gateway_Chassis rows `<port>_<chassis>`, highest priority first, as
/// configured; rows for chassis no longer configured are unlinked.
fn ensure_gateway_chassis(plan: &mut Plan, rs: &RouterScope, gw: &GatewaySpec, obs: &Observed) {
    let port_uuid = rs.gateway_port_uuid();
    let mut keep = Vec::new();
    for (i, chassis) in gw.chassis.iter().enumerate() {
        let name = rs.gateway_chassis_name(chassis);
        let priority = 32767 - i as i64;
        match obs.gateway_chassis().iter().find(|g| g.name == name) {
            Some(g) => {
                keep.push(g.uuid);
                if g.priority != priority || g.chassis_name != *chassis {
                    plan.update(
                        table::GATEWAY_CHASSIS,
                        g.uuid,
                        row(&[("priority", json!(priority)), ("chassis_name", json!(chassis))]),
                        format!("reprioritise {name}"),
                    );
                }
            }
            None => {
                let uuid = rs.gateway_chassis_uuid(chassis);
                let r = row(&[
                    ("name", json!(name)),
                    ("chassis_name", json!(chassis)),
                    ("priority", json!(priority)),
                    ("external_ids", string_map(&rs.ids(Kind::GatewayPort))),
                ]);
                plan.insert_child(
                    table::GATEWAY_CHASSIS,
                    uuid,
                    r,
                    Parent::router_port(port_uuid, "gateway_chassis"),
                    Existing::of(obs.gateway_port(), rs.gateway_port_name()),
                    format!("gateway chassis {name}"),
                );
            }
        }
    }
    if let Some(p) = obs.gateway_port() {
        let stale: Vec<Uuid> = p.gateway_chassis.iter().filter(|u| !keep.contains(u)).copied().collect();
        if !stale.is_empty() {
            plan.unlink(Parent::router_port(p.uuid, "gateway_chassis"), &stale, "unpin stale gateway chassis".into());
        }
    }
}

/// Forget `ip`; when it was the router's last public IP, take the gateway
/// down (port, peer, route, and the public switch if no router is left on it).
pub fn release_public_ip(
    plan: &mut Plan,
    rs: &RouterScope,
    ip: Ipv4Addr,
    prefix: Option<u8>,
    obs: &Observed,
) -> Result<()> {
    let Some(r) = obs.router() else { return Ok(()) };
    rs.require_owned(format!("Logical_Router {}", r.uuid), &r.external_ids)?;
    let mut ips = recorded_ips(obs);
    let keyname = format!("{}{ip}", key::PUBLIC_IP_PREFIX);
    if ips.remove(&ip).is_some() {
        plan.mutate(
            table::LOGICAL_ROUTER,
            r.uuid,
            vec![Mutation("external_ids".into(), Mutator::Delete, string_set([keyname.as_str()]))],
            format!("forget public IP {ip}"),
        );
    }
    if ips.is_empty() {
        return remove_gateway(plan, rs, obs);
    }
    // The gateway port carried this address: move it to another one.
    if current_primary(obs) == Some(ip) {
        if let (Some(p), Some(next), Some(prefix)) = (obs.gateway_port(), primary_ip(&ips, None), prefix) {
            let networks = [format!("{next}/{prefix}")];
            plan.update(
                table::LOGICAL_ROUTER_PORT,
                p.uuid,
                row(&[("networks", string_set(networks.iter().map(String::as_str)))]),
                format!("move {} to {next}", p.name),
            );
        }
    }
    Ok(())
}

/// Remove the router's gateway: port (its Gateway_Chassis rows go with it),
/// peer, default route; then the public switch if only its localnet port
/// would be left. A guard on the switch's `ports` makes us re-plan if another
/// router joins it meanwhile.
pub fn remove_gateway(plan: &mut Plan, rs: &RouterScope, obs: &Observed) -> Result<()> {
    if let (Some(p), Some(r)) = (obs.gateway_port(), obs.router()) {
        rs.require_owned(format!("Logical_Router_Port {}", p.name), &p.external_ids)?;
        if r.ports.contains(&p.uuid) {
            plan.unlink(Parent::router(r.uuid, "ports"), &[p.uuid], format!("remove gateway port {}", p.name));
        }
    }
    if let (Some(route), Some(r)) = (obs.route(), obs.router()) {
        if r.static_routes.contains(&route.uuid) {
            plan.unlink(Parent::router(r.uuid, "static_routes"), &[route.uuid], "remove default route".into());
        }
    }
    if let Some(r) = obs.router() {
        if r.external_ids.contains_key(key::PUBLIC_SWITCH) {
            plan.mutate(
                table::LOGICAL_ROUTER,
                r.uuid,
                vec![Mutation("external_ids".into(), Mutator::Delete, string_set([key::PUBLIC_SWITCH]))],
                "forget public switch".into(),
            );
        }
    }
    let Some(sw) = obs.public_switch() else {
        return Ok(());
    };
    let peer = obs.gateway_peer().filter(|p| sw.ports.contains(&p.uuid));
    if let Some(p) = peer {
        rs.require_owned(format!("Logical_Switch_Port {}", p.name), &p.external_ids)?;
    }
    // Found by the switch when the command names no public network (teardown).
    let ln = obs
        .localnet_if_read()
        .map(|p| p.uuid)
        .or_else(|| PublicNet::from_switch_ids(&sw.external_ids).map(|n| n.localnet_uuid(&rs.owner)));
    let others = sw.ports.iter().filter(|u| Some(**u) != ln && Some(**u) != peer.map(|p| p.uuid)).count();
    if others == 0 && rs.owner.owns(&sw.external_ids) {
        guard_ports(plan, sw.uuid, &sw.ports);
        plan.delete(table::LOGICAL_SWITCH, sw.uuid, format!("delete public switch {} (no router left)", sw.name));
    } else if let Some(p) = peer {
        plan.unlink(Parent::switch_ports(sw.uuid), &[p.uuid], format!("remove gateway peer {}", p.name));
    }
    Ok(())
}

/// Fail unless the switch's `ports` are still exactly `ports`.
fn guard_ports(plan: &mut Plan, switch: Uuid, ports: &[Uuid]) {
    let mut r = Map::new();
    r.insert("ports".into(), uuid_set(ports.iter().copied()));
    plan.guard(Operation::Wait {
        table: table::LOGICAL_SWITCH.into(),
        conditions: vec![Condition::uuid_is(switch)],
        columns: vec!["ports".into()],
        until: WaitUntil::Equal,
        rows: vec![r],
        timeout_ms: Some(0),
    });
}

// ---------------------------------------------------------------- NAT

/// One NAT row as we want it.
struct NatRow {
    uuid: Uuid,
    kind: &'static str,
    external: Ipv4Addr,
    logical: String,
    ids: BTreeMap<String, String>,
}

fn ensure_nat(plan: &mut Plan, rs: &RouterScope, nat: NatRow, obs: &Observed) -> Result<()> {
    let NatRow { uuid, kind, external, logical, ids } = nat;
    let logical = logical.as_str();
    match obs.nat(uuid) {
        None => {
            let r = row(&[
                ("type", json!(kind)),
                ("external_ip", json!(external.to_string())),
                ("logical_ip", json!(logical)),
                ("external_ids", string_map(&ids)),
            ]);
            insert_router_child(plan, rs, obs, table::NAT, "nat", uuid, r, format!("{kind} {external} ↔ {logical}"));
        }
        Some(n) => {
            rs.require_owned(format!("NAT {}", n.uuid), &n.external_ids)?;
            let mut u = Map::new();
            if n.external_ip != external.to_string() {
                u.insert("external_ip".into(), json!(external.to_string()));
            }
            if n.logical_ip != logical {
                u.insert("logical_ip".into(), json!(logical));
            }
            plan.update(table::NAT, n.uuid, u, format!("update {kind} {external} ↔ {logical}"));
            plan.mutate(table::NAT, n.uuid, merge_ids(&ids, &n.external_ids), format!("update {kind} ids"));
        }
    }
    Ok(())
}

/// Source NAT of `logical` (guest or VPC CIDR) to `ip`: one row per router,
/// moved in place (update) when the source-NAT IP changes.
pub fn ensure_snat(plan: &mut Plan, rs: &RouterScope, logical: Ipv4Cidr, ip: Ipv4Addr, obs: &Observed) -> Result<()> {
    let mut ids = rs.ids(Kind::Snat);
    ids.insert(key::PUBLIC_IP.into(), ip.to_string());
    let nat = NatRow { uuid: rs.snat_uuid(), kind: "snat", external: ip, logical: logical.network().to_string(), ids };
    ensure_nat(plan, rs, nat, obs)
}

pub fn ensure_static_nat(
    plan: &mut Plan,
    rs: &RouterScope,
    public: Ipv4Addr,
    private: Ipv4Addr,
    obs: &Observed,
) -> Result<()> {
    let mut ids = rs.ids(Kind::StaticNat);
    ids.insert(key::PUBLIC_IP.into(), public.to_string());
    ids.insert(key::PRIVATE_IP.into(), private.to_string());
    let nat = NatRow {
        uuid: rs.static_nat_uuid(public),
        kind: "dnat_and_snat",
        external: public,
        logical: private.to_string(),
        ids,
    };
    ensure_nat(plan, rs, nat, obs)
}

fn remove_nat(plan: &mut Plan, rs: &RouterScope, uuid: Uuid, obs: &Observed) -> Result<()> {
    if let (Some(n), Some(r)) = (obs.nat(uuid), obs.router()) {
        rs.require_owned(format!("NAT {}", n.uuid), &n.external_ids)?;
        if r.nat.contains(&n.uuid) {
            plan.unlink(Parent::router(r.uuid, "nat"), &[n.uuid], format!("remove {} {}", n.kind, n.external_ip));
        }
    }
    Ok(())
}

pub fn remove_static_nat(plan: &mut Plan, rs: &RouterScope, public: Ipv4Addr, obs: &Observed) -> Result<()> {
    remove_nat(plan, rs, rs.static_nat_uuid(public), obs)
}

/// Remove the source NAT if it translates to `ip` (or any IP when `None`).
pub fn remove_snat(plan: &mut Plan, rs: &RouterScope, ip: Option<Ipv4Addr>, obs: &Observed) -> Result<()> {
    let uuid = rs.snat_uuid();
    let matches = obs.nats().iter().any(|n| n.uuid == uuid && ip.is_none_or(|ip| n.external_ip == ip.to_string()));
    if matches {
        remove_nat(plan, rs, uuid, obs)?;
    }
    Ok(())
}

// ---------------------------------------------------------------- port forwarding

/// A port range `a` or `a-b`, validated.
pub fn port_range(field: &str, raw: &str, max_len: u32) -> Result<(u16, u16)> {
    let bad = || Error::field(field, format!("expected a port or a range a-b within 1-65535, got {raw:?}"));
    let (a, b) = match raw.split_once(['-', ':']) {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (raw.trim(), raw.trim()),
    };
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if a == 0 || b < a {
        return Err(bad());
    }
    if u32::from(b - a) + 1 > max_len {
        return Err(Error::field(
            field,
            format!("range {raw} has {} ports; at most {max_len} are forwarded per rule", u32::from(b - a) + 1),
        ));
    }
    Ok((a, b))
}

/// `public:port → private:port` pairs of a forwarding rule (port for port).
pub fn forward_vips(
    public: Ipv4Addr,
    public_ports: (u16, u16),
    private: Ipv4Addr,
    private_ports: (u16, u16),
) -> Result<BTreeMap<String, String>> {
    let len = public_ports.1 - public_ports.0;
    if private_ports.1 - private_ports.0 != len {
        return Err(Error::field(
            "private_port",
            format!(
                "range {}-{} does not match the public range {}-{}",
                private_ports.0, private_ports.1, public_ports.0, public_ports.1
            ),
        ));
    }
    Ok((0..=len)
        .map(|i| (format!("{public}:{}", public_ports.0 + i), format!("{private}:{}", private_ports.0 + i)))
        .collect())
}

pub struct Forward<'a> {
    pub public: Ipv4Addr,
    pub protocol: Protocol,
    pub vips: &'a BTreeMap<String, String>,
    /// The guest network behind the private address (its switch gets the
    /// Load_Balancer too, for hairpin).
    pub guest: &'a Scope,
}

fn lb_of(obs: &Observed, uuid: Uuid) -> Option<&LoadBalancer> {
    obs.lb(uuid)
}

/// Add the VIPs to the router's forwarding Load_Balancer for this public IP
/// and protocol, creating it (attached to the router and the guest switch)
/// if needed. A VIP already forwarding elsewhere is re-pointed.
pub fn add_port_forward(plan: &mut Plan, rs: &RouterScope, fwd: &Forward, obs: &Observed) -> Result<()> {
    let uuid = rs.port_forward_uuid(fwd.public, fwd.protocol);
    let name = rs.port_forward_name(fwd.public, fwd.protocol);
    let mut ids = rs.ids(Kind::PortForward);
    ids.insert(key::PUBLIC_IP.into(), fwd.public.to_string());
    ids.insert(key::PROTOCOL.into(), fwd.protocol.as_str().into());
    match lb_of(obs, uuid) {
        None => {
            let r = row(&[
                ("name", json!(name)),
                ("protocol", json!(fwd.protocol.as_str())),
                ("vips", string_map(fwd.vips)),
                ("external_ids", string_map(&ids)),
            ]);
            plan.insert(table::LOAD_BALANCER, Some(uuid), None, r, format!("insert port forwarding {name}"));
        }
        Some(lb) => {
            rs.require_owned(format!("Load_Balancer {}", lb.uuid), &lb.external_ids)?;
            let muts = map_mutations("vips", fwd.vips, &lb.vips, |k| fwd.vips.contains_key(k));
            plan.mutate(table::LOAD_BALANCER, lb.uuid, muts, format!("update port forwarding {name}"));
        }
    }
    attach_lb(plan, rs, fwd.guest, uuid, &name, obs);
    Ok(())
}

/// Remove the VIPs (exact pairs); delete the Load_Balancer when none is left
/// (its weak references from router and switch disappear with it).
pub fn remove_port_forward(
    plan: &mut Plan,
    rs: &RouterScope,
    public: Ipv4Addr,
    protocol: Protocol,
    vips: &BTreeMap<String, String>,
    obs: &Observed,
) -> Result<()> {
    let uuid = rs.port_forward_uuid(public, protocol);
    let Some(lb) = lb_of(obs, uuid) else {
        return Ok(());
    };
    rs.require_owned(format!("Load_Balancer {}", lb.uuid), &lb.external_ids)?;
    let gone: BTreeMap<String, String> =
        vips.iter().filter(|(k, v)| lb.vips.get(*k) == Some(v)).map(|(k, v)| (k.clone(), v.clone())).collect();
    if gone.len() == lb.vips.len() {
        plan.delete(table::LOAD_BALANCER, lb.uuid, format!("delete port forwarding {}", lb.name));
    } else if !gone.is_empty() {
        plan.mutate(
            table::LOAD_BALANCER,
            lb.uuid,
            vec![Mutation("vips".into(), Mutator::Delete, string_map(&gone))],
            format!("remove {} forwarded ports from {}", gone.len(), lb.name),
        );
    }
    Ok(())
}

/// Every row that uses `ip`: its static NAT, its forwarding, the source NAT
/// if it translates to it, and the IP itself.
pub fn release_ip_rows(
    plan: &mut Plan,
    rs: &RouterScope,
    ip: Ipv4Addr,
    prefix: Option<u8>,
    obs: &Observed,
) -> Result<()> {
    remove_static_nat(plan, rs, ip, obs)?;
    remove_snat(plan, rs, Some(ip), obs)?;
    // Port forwarding and load-balancing rows on this IP.
    let ip_text = ip.to_string();
    for lb in obs.lbs().iter().filter(|l| l.external_ids.get(key::PUBLIC_IP) == Some(&ip_text)) {
        rs.require_owned(format!("Load_Balancer {}", lb.uuid), &lb.external_ids)?;
        plan.delete(table::LOAD_BALANCER, lb.uuid, format!("delete {}", lb.name));
    }
    release_public_ip(plan, rs, ip, prefix, obs)
}

/// Everything of the router: its forwarding Load_Balancers (weakly
/// referenced, so deleted explicitly), its gateway presence on the public
/// switch, and the router itself with all its children (ports, NAT, routes).
pub fn destroy_router(plan: &mut Plan, rs: &RouterScope, obs: &Observed) -> Result<()> {
    let Some(r) = obs.router() else { return Ok(()) };
    rs.require_owned(format!("Logical_Router {}", r.uuid), &r.external_ids)?;
    let candidates: BTreeSet<Uuid> = rs.port_forward_uuids(recorded_ips(obs).into_keys().collect::<Vec<_>>()).collect();
    for lb in &r.load_balancer {
        if candidates.contains(lb) || obs.lbs().iter().any(|l| l.uuid == *lb && rs.owner.owns(&l.external_ids)) {
            plan.delete(table::LOAD_BALANCER, *lb, format!("delete port forwarding {lb}"));
        }
    }
    remove_gateway(plan, rs, obs)?;
    plan.delete(table::LOGICAL_ROUTER, r.uuid, format!("delete router {} and its ports, NAT and routes", r.name));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_prefers_source_nat_then_current() {
        let a: Ipv4Addr = "203.0.113.10".parse().unwrap();
        let b: Ipv4Addr = "203.0.113.11".parse().unwrap();
        let mut ips = BTreeMap::new();
        ips.insert(a, IP_ASSIGNED.to_string());
        ips.insert(b, IP_ASSIGNED.to_string());
        assert_eq!(primary_ip(&ips, Some(b)), Some(b));
        assert_eq!(primary_ip(&ips, None), Some(a));
        ips.insert(b, IP_SOURCE_NAT.to_string());
        assert_eq!(primary_ip(&ips, Some(a)), Some(b));
    }

    #[test]
    fn port_ranges() {
        assert_eq!(port_range("p", "22", 256).unwrap(), (22, 22));
        assert_eq!(port_range("p", "2000-2010", 256).unwrap(), (2000, 2010));
        assert_eq!(port_range("p", "2000:2001", 256).unwrap(), (2000, 2001));
        for bad in ["0", "65536", "10-5", "x", "1-", ""] {
            assert!(port_range("p", bad, 256).is_err(), "{bad}");
        }
        assert!(port_range("p", "1-65535", 256).unwrap_err().to_string().contains("at most 256"));
        let v =
            forward_vips("203.0.113.12".parse().unwrap(), (2222, 2223), "10.1.1.5".parse().unwrap(), (22, 23)).unwrap();
        assert_eq!(v["203.0.113.12:2223"], "10.1.1.5:23");
        assert!(forward_vips("203.0.113.12".parse().unwrap(), (1, 2), "10.1.1.5".parse().unwrap(), (1, 1)).is_err());
    }

    #[test]
    fn names_are_the_in_tree_plugins() {
        let rs = RouterScope { owner: Owner("cloudstack".into()), of: RouterOf::Network(42), zone_id: None };
        assert_eq!(rs.name(), "cs-router-42");
        assert_eq!(rs.gateway_port_name(), "lrp-cs-router-42-pub");
        let v = RouterScope { of: RouterOf::Vpc(5), ..rs.clone() };
        assert_eq!(v.name(), "cs-vpc-5");
        assert_ne!(v.uuid(), rs.uuid());
        let p = PublicNet { network_name: "public".into(), vlan: Some(101) };
        assert_eq!(p.switch_name(), "cs-public-public-101");
        assert_eq!(PublicNet { vlan: None, ..p }.switch_name(), "cs-public-public-untagged");
    }
}

// ---------------------------------------------------------------- load balancing

/// A load-balancing rule as the router serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Balancer {
    pub id: u64,
    pub public: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
    /// Hash on the client address (CloudStack's `source` algorithm); else
    /// OVN's default spread over the backends (`roundrobin`).
    pub source_affinity: bool,
    pub backends: Vec<(Ipv4Addr, u16)>,
}

/// Create or update the rule's Load_Balancer (one per CloudStack rule id),
/// attached to the router and to the guest switch (so VMs reach it too).
pub fn ensure_balancer(plan: &mut Plan, rs: &RouterScope, lb: &Balancer, guest: &Scope, obs: &Observed) -> Result<()> {
    let uuid = rs.balancer_uuid(lb.id);
    let name = rs.balancer_name(lb.id);
    let backends: Vec<String> = lb.backends.iter().map(|(ip, p)| format!("{ip}:{p}")).collect();
    let vips: BTreeMap<String, String> = [(format!("{}:{}", lb.public, lb.port), backends.join(","))].into();
    let selection: Vec<&str> = if lb.source_affinity { vec!["ip_src"] } else { vec![] };
    let mut ids = rs.ids(Kind::LoadBalancer);
    ids.insert(key::RULE_ID.into(), lb.id.to_string());
    ids.insert(key::PUBLIC_IP.into(), lb.public.to_string());
    let row_now = row(&[
        ("name", json!(name)),
        ("protocol", json!(lb.protocol.as_str())),
        ("vips", string_map(&vips)),
        ("selection_fields", string_set(selection.iter().copied())),
        ("external_ids", string_map(&ids)),
    ]);
    match lb_of(obs, uuid) {
        None => plan.insert(table::LOAD_BALANCER, Some(uuid), None, row_now, format!("insert load balancer {name}")),
        Some(existing) => {
            rs.require_owned(format!("Load_Balancer {}", existing.uuid), &existing.external_ids)?;
            // The row is ours entirely: write it whole when anything differs.
            let same = existing.vips == vips
                && existing.protocol.as_deref() == Some(lb.protocol.as_str())
                && existing.selection_fields == selection.iter().map(|s| s.to_string()).collect::<Vec<_>>()
                && existing.name == name;
            if !same {
                let mut r = row_now.clone();
                r.remove("external_ids");
                plan.update(table::LOAD_BALANCER, uuid, r, format!("update load balancer {name}"));
            }
            plan.mutate(
                table::LOAD_BALANCER,
                uuid,
                merge_ids(&ids, &existing.external_ids),
                format!("update {name} ids"),
            );
        }
    }
    attach_lb(plan, rs, guest, uuid, &name, obs);
    Ok(())
}

/// A Load_Balancer serves on the router (traffic from outside) and on the
/// guest switch (VMs reaching the public address of their own network).
fn attach_lb(plan: &mut Plan, rs: &RouterScope, guest: &Scope, uuid: Uuid, name: &str, obs: &Observed) {
    if !obs.router().is_some_and(|r| r.load_balancer.contains(&uuid)) {
        let what = format!("attach {name} to {}", rs.name());
        plan.link(Parent::router(rs.uuid(), "load_balancer"), router_existing(rs, obs), &[uuid], what);
    }
    let guest_switch = guest.switch_uuid();
    let observed = obs.switch().filter(|sw| sw.uuid == guest_switch);
    if !observed.is_some_and(|sw| sw.load_balancer.contains(&uuid)) {
        plan.link(
            Parent::switch(guest_switch, "load_balancer"),
            Existing::of(observed, guest.switch_name()),
            &[uuid],
            format!("attach {name} to the guest switch"),
        );
    }
}

/// Delete the rule's Load_Balancer (its weak references go with it).
pub fn remove_balancer(plan: &mut Plan, rs: &RouterScope, id: u64, obs: &Observed) -> Result<()> {
    if let Some(lb) = lb_of(obs, rs.balancer_uuid(id)) {
        rs.require_owned(format!("Load_Balancer {}", lb.uuid), &lb.external_ids)?;
        plan.delete(table::LOAD_BALANCER, lb.uuid, format!("delete load balancer {}", lb.name));
    }
    Ok(())
}
