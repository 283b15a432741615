//! Removing what a public IP or a whole router owns.

use super::*;

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

/// A VPC router still routing tiers cannot go: each tier's router-type
/// port would be left pointing at a deleted router port (its switch is
/// not ours to find from here). CloudStack destroys the tiers first.
pub fn refuse_attached_tiers(rs: &RouterScope, obs: &Observed) -> Result<()> {
    let Some(r) = obs.router() else { return Ok(()) };
    let tiers: Vec<String> = r.ports.iter().filter(|p| **p != rs.gateway_port_uuid()).map(Uuid::to_string).collect();
    if tiers.is_empty() {
        return Ok(());
    }
    Err(Error::field(
        "vpc_id",
        format!(
            "{} still routes {} tier(s) (router ports {}); destroy-network each tier first",
            rs.name(),
            tiers.len(),
            tiers.join(", ")
        ),
    ))
}

/// Everything of the router: its forwarding Load_Balancers (weakly
/// referenced, so deleted explicitly), its gateway presence on the public
/// switch, and the router itself with all its children (ports, NAT, routes).
pub fn destroy_router(plan: &mut Plan, rs: &RouterScope, obs: &Observed) -> Result<()> {
    // Load_Balancers are root rows: nothing deletes them with the router.
    // Every one of ours found by the owner-tag scan goes, even when the
    // router is already gone (one created while an earlier destroy ran).
    let mut gone = BTreeSet::new();
    for l in obs.lbs().iter().filter(|l| rs.owner.owns(&l.external_ids)) {
        plan.delete(table::LOAD_BALANCER, l.uuid, format!("delete load balancer {}", l.name));
        gone.insert(l.uuid);
    }
    let Some(r) = obs.router() else { return Ok(()) };
    rs.require_owned(format!("Logical_Router {}", r.uuid), &r.external_ids)?;
    // Deleting the router deletes its ports, NAT rows and routes with it:
    // refuse while one of them is not ours (an operator's), naming it.
    let mut ours: BTreeSet<Uuid> = [rs.gateway_port_uuid(), rs.route_uuid()].into();
    if let RouterOf::Network(n) = rs.of {
        let net = Scope { owner: rs.owner.clone(), network_id: n, zone_id: None, vpc_id: None };
        ours.insert(net.guest_port_uuid());
    }
    ours.extend(obs.nats().iter().filter(|n| rs.owner.owns(&n.external_ids)).map(|n| n.uuid));
    let foreign: Vec<String> = [("port", &r.ports), ("NAT", &r.nat), ("route", &r.static_routes)]
        .iter()
        .flat_map(|(what, list)| list.iter().filter(|u| !ours.contains(u)).map(move |u| format!("{what} {u}")))
        .collect();
    if !foreign.is_empty() {
        return Err(Error::NotOwned {
            what: format!(
                "{} holds rows not tagged as ours ({}); remove them before it can be deleted",
                rs.name(),
                foreign.join(", ")
            ),
        });
    }
    // A balancer attached after our read would outlive the router: fail
    // and re-plan instead (the re-read finds it).
    plan.require_column(table::LOGICAL_ROUTER, r.uuid, "load_balancer", uuid_set(r.load_balancer.iter().copied()));
    let candidates: BTreeSet<Uuid> = rs.port_forward_uuids(recorded_ips(obs).into_keys().collect::<Vec<_>>()).collect();
    for lb in r.load_balancer.iter().filter(|lb| candidates.contains(lb) && !gone.contains(lb)) {
        plan.delete(table::LOAD_BALANCER, *lb, format!("delete port forwarding {lb}"));
    }
    remove_gateway(plan, rs, obs)?;
    plan.delete(table::LOGICAL_ROUTER, r.uuid, format!("delete router {} and its ports, NAT and routes", r.name));
    Ok(())
}
