//! A guest network on its router: the router port with the guest gateway
//! address (and IPv6 SLAAC), its peer on the guest switch, and undoing it.

use super::*;

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
