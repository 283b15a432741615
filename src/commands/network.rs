//! ensure-network-device, implement-network, shutdown-network, destroy-network.

use std::cell::Cell;

use serde_json::json;

use super::{input, Context, Outcome, PublicLookup, RouterWant, Want};
use crate::error::{Error, Result};
use crate::nb::{broadcast_uri, switch_name};
use crate::plan::network::{destroy as destroy_l2, ensure_switch, physical_vlan, Observed, Scope, SwitchSpec};
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
        json!({"provider": "ovn", "logical_switch": switch_name(&scope.owner, scope.network_id)})
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
    let mut spec = input::switch_spec(ctx)?;
    if let Some(p) = spec.physical.as_mut() {
        p.require_vlan = true;
        return implement_physical(ctx, scope, spec);
    }
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
            if matches!(rs.of, RouterOf::Network(_)) {
                crate::plan::pbr::restore_network_policies(&mut plan, rs, obs)?;
            }
        }
        Ok(plan)
    })?;
    outcome.output = Some(json!({
        "network.broadcast_domain_type": "Lswitch",
        "network.broadcast_uri": broadcast_uri(&scope.owner, scope.network_id),
    }));
    Ok(outcome)
}

/// A shared or L2 network: the switch with its localnet port on the
/// physical VLAN; no router (the gateway is the physical router). The
/// output keeps the network's real broadcast domain, `vlan://<tag>`, so
/// `listNetworks` stays truthful and later payloads carry the VLAN in
/// `vlan`. CloudStack still binds NICs the Lswitch way (libvirt
/// `interfaceid` = NIC uuid on the integration bridge).
fn implement_physical(ctx: &Context, scope: Scope, spec: SwitchSpec) -> Result<Outcome> {
    let want = Want {
        switch: true,
        switch_by_name: true,
        light: true,
        localnet: true,
        scope: Some(scope.clone()),
        ..Want::default()
    };
    let vlan = Cell::new(None);
    let mut outcome = ctx.converge(&want, |obs| {
        let mut plan = Plan::default();
        ensure_switch(&mut plan, &scope, &spec, obs)?;
        vlan.set(spec.physical.as_ref().and_then(|p| physical_vlan(p, obs)));
        Ok(plan)
    })?;
    let vlan = vlan.get().ok_or_else(|| Error::Internal("planned a shared network without its VLAN".into()))?;
    outcome.output = Some(json!({
        "network.broadcast_domain_type": "Lswitch",
        "network.broadcast_uri": vlan.uri(),
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
    if input::guest_type(ctx)?.on_physical() {
        // Nothing beyond L2: the switch and its localnet port stay.
        return Ok(Outcome::default());
    }
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
    // A shared or L2 network has no router; its localnet port goes with
    // the switch (a strong child).
    let rw = if input::guest_type(ctx)?.on_physical() { None } else { Some(routing_want(ctx)?) };
    let rs = rw.as_ref().map(|rw| rw.rs.clone());
    let want = Want {
        switch: true,
        dns: true,
        all_dhcp: true,
        port_group: true,
        our_ports: true,
        scope: Some(scope.clone()),
        router: rw,
        ..Want::default()
    };
    ctx.converge(&want, |obs| {
        let mut plan = Plan::default();
        if let Some(rs) = &rs {
            teardown_routing(&mut plan, &scope, rs, obs)?;
        }
        destroy_l2(&mut plan, &scope, obs)?;
        Ok(plan)
    })
}
