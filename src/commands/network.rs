//! ensure-network-device, implement-network, shutdown-network, destroy-network.

use serde_json::json;

use super::{input, Context, Outcome, PublicLookup, RouterWant, Want};
use crate::error::{Error, Result};
use crate::nb::ids::Scope;
use crate::nb::{broadcast_uri, switch_name};
use crate::observe::Observed;
use crate::plan::network::{destroy as destroy_l2, ensure_switch};
use crate::plan::router::{self, RouterOf, RouterScope};
use crate::plan::Plan;

/// Runs before every command; CloudStack stores whatever we print as the
/// network's (or VPC's) details and parses it on every later call, so it
/// must be one JSON object. OVN has no device to choose, so this does no
/// I/O: it names the OVN object the network or VPC maps to.
pub fn ensure_network_device(ctx: &Context) -> Result<Outcome> {
    let p = ctx.payload();
    let output = if p.nonempty("network_id").is_some() {
        let scope = input::scope(ctx)?;
        json!({"provider": "ovn", "logical_switch": switch_name(scope.network_id)})
    } else if let Some(vpc) = input::vpc_id(ctx)? {
        json!({"provider": "ovn", "vpc_id": vpc.to_string()})
    } else {
        return Err(Error::Missing("network_id or vpc_id".into()));
    };
    Ok(Outcome { output: Some(output), ..Outcome::default() })
}

/// The router that routes this network, if we are its gateway: always the
/// VPC's for a tier; for an isolated network its own when CloudStack names
/// us the gateway (`extension_ip` = gateway, §11 of the protocol). Otherwise
/// the router appears with the first public IP (`assign-ip`).
fn routed_by(ctx: &Context) -> Result<Option<RouterScope>> {
    let rs = input::router_scope(ctx)?;
    if matches!(rs.of, RouterOf::Vpc(_)) {
        return Ok(Some(rs));
    }
    let p = ctx.payload();
    let we_are_gateway = match (p.nonempty("extension_ip"), p.nonempty("gateway")) {
        (Some(e), Some(g)) => e == g,
        _ => false,
    };
    Ok(we_are_gateway.then_some(rs))
}

/// Create (or converge) `cs-net-<id>`, its router attachment when we route
/// it, and tell CloudStack to bind NICs to the switch: broadcast type
/// `Lswitch`, URI `ovn://cs-net-<id>`.
pub fn implement(ctx: &Context) -> Result<Outcome> {
    let scope = input::scope(ctx)?;
    let spec = input::switch_spec(ctx)?;
    let routed = routed_by(ctx)?;
    let gateway = input::guest_gateway(ctx)?;
    let gateway6 = input::guest_gateway6(ctx)?;
    if routed.is_some() && gateway.is_none() {
        return Err(Error::Missing("gateway and cidr (the network is routed by its VPC)".into()));
    }
    let want = Want {
        switch: true,
        switch_by_name: true,
        light: true,
        scope: Some(scope.clone()),
        router: routed.clone().map(|rs| RouterWant { guest: true, ..RouterWant::new(rs) }),
        ..Want::default()
    };
    let mut outcome = ctx.converge(&want, |obs| {
        let mut plan = Plan::default();
        ensure_switch(&mut plan, &scope, &spec, obs)?;
        if let (Some(rs), Some(gw)) = (&routed, gateway) {
            router::ensure_router(&mut plan, rs, None, obs)?;
            router::attach_network(&mut plan, rs, &scope, gw, gateway6, obs)?;
        }
        Ok(plan)
    })?;
    outcome.output = Some(json!({
        "network.broadcast_domain_type": "Lswitch",
        "network.broadcast_uri": broadcast_uri(scope.network_id),
    }));
    Ok(outcome)
}

/// What the network has beyond L2: an isolated network's router (with its
/// NAT, forwarding and gateway), or a tier's attachment to its VPC router.
fn teardown_routing(plan: &mut Plan, scope: &Scope, rs: &RouterScope, obs: &Observed) -> Result<()> {
    router::detach_network(plan, rs, scope, obs)?;
    if matches!(rs.of, RouterOf::Network(_)) {
        router::destroy_router(plan, rs, obs)?;
    }
    Ok(())
}

fn routing_want(ctx: &Context) -> Result<RouterWant> {
    let rs = input::router_scope(ctx)?;
    let public = match rs.of {
        RouterOf::Network(_) => PublicLookup::ByGatewayPeer,
        RouterOf::Vpc(_) => PublicLookup::None,
    };
    Ok(RouterWant { guest: true, public, all_rows: true, ..RouterWant::new(rs) })
}

/// CloudStack shuts a network down on garbage collection and on restart
/// with cleanup. Running VMs must keep working on their L2 network, so the
/// switch, its ports, DHCP and DNS stay; routing goes (and comes back with
/// implement-network, assign-ip and the re-applied rules).
pub fn shutdown(ctx: &Context) -> Result<Outcome> {
    let scope = input::scope(ctx)?;
    let rw = routing_want(ctx)?;
    let rs = rw.rs.clone();
    let want = Want { switch: true, scope: Some(scope.clone()), router: Some(rw), ..Want::default() };
    ctx.converge(&want, |obs| {
        let mut plan = Plan::default();
        teardown_routing(&mut plan, &scope, &rs, obs)?;
        Ok(plan)
    })
}

/// Remove every row the network owns, including the weakly referenced
/// DHCP_Options, DNS and Load_Balancer rows OVN would keep forever.
pub fn destroy(ctx: &Context) -> Result<Outcome> {
    let scope = input::scope(ctx)?;
    let rw = routing_want(ctx)?;
    let rs = rw.rs.clone();
    let want = Want {
        switch: true,
        dns: true,
        all_dhcp: true,
        port_group: true,
        scope: Some(scope.clone()),
        router: Some(rw),
        ..Want::default()
    };
    ctx.converge(&want, |obs| {
        let mut plan = Plan::default();
        teardown_routing(&mut plan, &scope, &rs, obs)?;
        destroy_l2(&mut plan, &scope, obs)?;
        Ok(plan)
    })
}
