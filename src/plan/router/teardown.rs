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
