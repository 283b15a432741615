//! ensure-network-device, implement-network, shutdown-network, destroy-network.

use serde_json::json;

use super::{input, Context, Job};
use crate::error::{Error, Result};
use crate::nb::ids::{RouterOf, RouterScope, Scope};
use crate::nb::{broadcast_uri, switch_name};
use crate::observe::{Observed, PublicLookup, RouterWant, Want};
use crate::payload::types::{Ipv4Cidr, Ipv6Cidr};
use crate::plan::network::{destroy as destroy_l2, ensure_switch, physical_vlan, SwitchSpec};
use crate::plan::router;
use crate::plan::Plan;

/// Runs before every command; CloudStack stores whatever we print as the
/// network's (or VPC's) details and parses it on every later call, so it
/// must be one JSON object. OVN has no device to choose, so this does no
/// I/O: it names the OVN object the network or VPC maps to.
pub fn ensure_network_device(ctx: &Context) -> Result<Job> {
    let p = ctx.payload();
    let output = if p.nonempty("network_id").is_some() {
        let scope = input::scope(ctx)?;
        json!({"provider": "ovn", "logical_switch": switch_name(&scope.owner, scope.network_id)})
    } else if let Some(vpc) = input::vpc_id(ctx)? {
        json!({"provider": "ovn", "vpc_id": vpc.to_string()})
    } else {
        return Err(Error::Missing("network_id or vpc_id".into()));
    };
    Ok(Job::nothing().with_output(output))
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

struct Implement {
    scope: Scope,
    spec: SwitchSpec,
    /// The router and the guest gateway (IPv4, optional IPv6), when we route it.
    routed: Option<(RouterScope, Ipv4Cidr, Option<Ipv6Cidr>)>,
}

/// Create (or converge) `cs-net-<id>`, its router attachment when we route
/// it, and tell CloudStack to bind NICs to the switch: broadcast type
/// `Lswitch`, URI `ovn://cs-net-<id>`.
pub fn implement(ctx: &Context) -> Result<Job> {
    let scope = input::scope(ctx)?;
    let mut spec = input::switch_spec(ctx)?;
    if let Some(p) = spec.physical.as_mut() {
        p.require_vlan = true;
        return Ok(implement_physical(scope, spec));
    }
    let routed = routed_by(ctx)?;
    let gateway = input::guest_gateway(ctx)?;
    let gateway6 = input::guest_gateway6(ctx)?;
    let routed = match (routed, gateway) {
        (Some(rs), Some(gw)) => Some((rs, gw, gateway6)),
        (Some(_), None) => return Err(Error::Missing("gateway and cidr (the network is routed by its VPC)".into())),
        (None, _) => None,
    };
    let want = Want {
        switch: true,
        switch_by_name: true,
        light: true,
        scope: Some(scope.clone()),
        router: routed.as_ref().map(|(rs, _, _)| RouterWant { guest: true, ..RouterWant::new(rs.clone()) }),
        ..Want::default()
    };
    let output = json!({
        "network.broadcast_domain_type": "Lswitch",
        "network.broadcast_uri": broadcast_uri(&scope.owner, scope.network_id),
    });
    Ok(Job::new(want, Implement { scope, spec, routed }, plan_implement).with_output(output))
}

fn plan_implement(i: &Implement, obs: &Observed, plan: &mut Plan) -> Result<()> {
    ensure_switch(plan, &i.scope, &i.spec, obs)?;
    if let Some((rs, gw, gw6)) = &i.routed {
        router::ensure_router(plan, rs, None, obs)?;
        router::attach_network(plan, rs, &i.scope, *gw, *gw6, obs)?;
        if matches!(rs.of, RouterOf::Network(_)) {
            crate::plan::pbr::restore_network_policies(plan, rs, obs)?;
        }
    }
    Ok(())
}

/// A shared or L2 network: the switch with its localnet port on the
/// physical VLAN; no router (the gateway is the physical router). The
/// output keeps the network's real broadcast domain, `vlan://<tag>`, so
/// `listNetworks` stays truthful and later payloads carry the VLAN in
/// `vlan`. CloudStack still binds NICs the Lswitch way (libvirt
/// `interfaceid` = NIC uuid on the integration bridge).
fn implement_physical(scope: Scope, spec: SwitchSpec) -> Job {
    let want = Want {
        switch: true,
        switch_by_name: true,
        light: true,
        localnet: true,
        scope: Some(scope.clone()),
        ..Want::default()
    };
    Job::reporting(
        want,
        (scope, spec),
        |(scope, spec), obs, plan| ensure_switch(plan, scope, spec, obs),
        |(_, spec), obs| {
            // The VLAN of the payload, else the one recorded on the switch
            // (ensure_switch refused to plan without one).
            let vlan = spec
                .physical
                .as_ref()
                .and_then(|p| physical_vlan(p, obs))
                .ok_or_else(|| Error::Internal("planned a shared network without its VLAN".into()))?;
            Ok(json!({
                "network.broadcast_domain_type": "Lswitch",
                "network.broadcast_uri": vlan.uri(),
            }))
        },
    )
}

/// The network and its router (an isolated network's own, or its VPC's).
struct Teardown {
    scope: Scope,
    rs: RouterScope,
}

/// What the network has beyond L2: an isolated network's router (with its
/// NAT, forwarding and gateway), or a tier's attachment to its VPC router.
fn teardown_routing(t: &Teardown, obs: &Observed, plan: &mut Plan) -> Result<()> {
    router::detach_network(plan, &t.rs, &t.scope, obs)?;
    if matches!(t.rs.of, RouterOf::Network(_)) {
        router::destroy_router(plan, &t.rs, obs)?;
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
pub fn shutdown(ctx: &Context) -> Result<Job> {
    let scope = input::scope(ctx)?;
    if input::guest_type(ctx)?.on_physical() {
        // Nothing beyond L2: the switch and its localnet port stay.
        return Ok(Job::nothing());
    }
    let rw = routing_want(ctx)?;
    let rs = rw.rs.clone();
    let want = Want { switch: true, scope: Some(scope.clone()), router: Some(rw), ..Want::default() };
    Ok(Job::new(want, Teardown { scope, rs }, teardown_routing))
}

/// Remove every row the network owns, including the weakly referenced
/// DHCP_Options, DNS and Load_Balancer rows OVN would keep forever.
pub fn destroy(ctx: &Context) -> Result<Job> {
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
        all_vm_data: true,
        scope: Some(scope.clone()),
        router: rw,
        ..Want::default()
    };
    Ok(Job::new(want, (scope, rs), |(scope, rs), obs, plan| {
        if let Some(rs) = rs {
            teardown_routing(&Teardown { scope: scope.clone(), rs: rs.clone() }, obs, plan)?;
        }
        destroy_l2(plan, scope, obs)?;
        // Root rows (UserData): nothing else would ever delete them.
        crate::plan::metadata::remove_vm_data(plan, scope, obs.vm_data());
        Ok(())
    }))
}
