//! assign-ip, release-ip, add/delete-static-nat, add/delete-port-forward.
//!
//! A network's public side lives on its router: the isolated network's own
//! `cs-router-<id>`, or for a VPC tier the VPC's `cs-vpc-<id>`.

use std::net::Ipv4Addr;

use super::filter::{forwarding, refresh_firewall};
use super::{input, Context, Outcome, PublicLookup, RouterWant, Want};
use crate::error::{Error, Result};
use crate::nb::ids::Scope;
use crate::nb::{IP_ASSIGNED, IP_SOURCE_NAT};
use crate::observe::Observed;
use crate::plan::acl::{parse_endpoint, Endpoint, Forwarding, Vip};
use crate::plan::network::{ensure_switch, SwitchSpec};
use crate::plan::router::{self, Forward, Protocol, PublicIp, RouterOf, RouterScope};
use crate::plan::Plan;

/// What every public-IP command reads: the network, its router with the
/// gateway, the public switch of the IP's VLAN, and the NAT and forwarding
/// rows that can use `ip`.
pub(super) fn want_for_ip(
    ctx: &Context,
    scope: Option<&Scope>,
    rs: &RouterScope,
    public: PublicLookup,
    ip: Ipv4Addr,
) -> Result<Want> {
    let mut rw = RouterWant::new(rs.clone());
    rw.guest = scope.is_some() && rs.of == RouterOf::Network(scope.map(|s| s.network_id).unwrap_or_default());
    rw.public = public;
    rw.chassis = ctx.settings.gateway_chassis()?;
    rw.nats = vec![rs.snat_uuid(), rs.static_nat_uuid(ip)];
    rw.lbs = Protocol::ALL.iter().map(|p| rs.port_forward_uuid(ip, *p)).collect();
    // The guest switch with its ports: refreshing the firewall after a NAT
    // change recomputes the port group's members from them.
    Ok(Want { switch: scope.is_some(), scope: scope.cloned(), router: Some(rw), ..Want::default() })
}

/// The isolated network's router and its guest attachment, created on
/// first use (implement-network creates them when CloudStack names us the
/// network's gateway; an assign-ip must work either way).
pub(super) fn ensure_network_router(
    plan: &mut Plan,
    scope: &Scope,
    spec: &SwitchSpec,
    rs: &RouterScope,
    ctx: &Context,
    obs: &Observed,
) -> Result<()> {
    ensure_switch(plan, scope, spec, obs)?;
    router::ensure_router(plan, rs, None, obs)?;
    match input::guest_gateway(ctx)? {
        Some(gateway) => router::attach_network(plan, rs, scope, gateway, None, obs),
        // Legacy NAT commands carry no gateway/cidr: fine once attached.
        None if obs.guest_port().is_some() => Ok(()),
        None => Err(Error::Missing("gateway and cidr (the guest side of the router)".into())),
    }
}

/// The router side every public-IP command needs before its own rows.
fn ensure_public(
    plan: &mut Plan,
    ctx: &Context,
    net: &Option<(Scope, SwitchSpec)>,
    rs: &RouterScope,
    public: &PublicIp,
    role: &str,
    obs: &Observed,
) -> Result<()> {
    match (rs.of, net) {
        (RouterOf::Network(_), Some((scope, spec))) => ensure_network_router(plan, scope, spec, rs, ctx, obs)?,
        _ => router::ensure_router(plan, rs, None, obs)?,
    }
    router::ensure_public_ip(plan, rs, public, role, &input::gateway_spec(ctx)?, obs)
}

/// The network (with its switch spec) when the command is about one.
fn network(ctx: &Context) -> Result<Option<(Scope, SwitchSpec)>> {
    if ctx.payload().nonempty("network_id").is_none() {
        return Ok(None);
    }
    Ok(Some((input::scope(ctx)?, input::switch_spec(ctx)?)))
}

pub fn assign(ctx: &Context) -> Result<Outcome> {
    let net = network(ctx)?;
    let rs = input::router_scope(ctx)?;
    let public = input::public_ip(ctx)?;
    let source_nat = input::source_nat(ctx)?;
    let tier = matches!(rs.of, RouterOf::Vpc(_));
    if tier && source_nat {
        // VPC source NAT is the VPC's (implement-vpc, update-vpc-source-nat-ip);
        // a tier's assign-ip of it must not add a tier SNAT.
        return Ok(Outcome::default());
    }
    let guest_cidr = if source_nat {
        Some(input::switch_spec(ctx)?.cidr.ok_or_else(|| Error::Missing("cidr (the network to source-NAT)".into()))?)
    } else {
        None
    };
    let scope = net.as_ref().map(|(s, _)| s.clone());
    let want = want_for_ip(ctx, scope.as_ref(), &rs, PublicLookup::Net(public.net.clone()), public.ip)?;
    let role = if source_nat { IP_SOURCE_NAT } else { IP_ASSIGNED };
    ctx.converge(&want, |obs| {
        let mut plan = Plan::default();
        ensure_public(&mut plan, ctx, &net, &rs, &public, role, obs)?;
        if let Some(cidr) = guest_cidr {
            router::ensure_snat(&mut plan, &rs, cidr, public.ip, obs)?;
        }
        Ok(plan)
    })
}

/// Also read what keeping an applied firewall in step needs (isolated
/// networks: the port group, every NAT/LB row of the router).
fn with_firewall(mut want: Want, ctx: &Context) -> Result<(Want, Option<Scope>)> {
    if ctx.payload().nonempty("network_id").is_none() {
        return Ok((want, None));
    }
    let scope = input::scope(ctx)?;
    want.switch = true;
    want.port_group = true;
    want.scope = Some(scope.clone());
    if let Some(rw) = want.router.as_mut() {
        rw.all_rows = true;
    }
    Ok((want, Some(scope)))
}

/// Refresh an applied firewall for the forwarding after `change`.
fn refresh(
    plan: &mut Plan,
    scope: &Option<Scope>,
    rs: &RouterScope,
    obs: &Observed,
    change: impl FnOnce(&mut Forwarding),
) -> Result<()> {
    let Some(scope) = scope else { return Ok(()) };
    let mut fwd = forwarding(obs);
    change(&mut fwd);
    refresh_firewall(plan, scope, rs, &fwd, obs)
}

pub fn release(ctx: &Context) -> Result<Outcome> {
    let rs = input::router_scope(ctx)?;
    let ip = input::public_address(ctx)?;
    let prefix = input::public_prefix(ctx)?;
    let (want, scope) = with_firewall(want_for_ip(ctx, None, &rs, PublicLookup::ByGatewayPeer, ip)?, ctx)?;
    ctx.converge(&want, |obs| {
        let mut plan = Plan::default();
        router::release_ip_rows(&mut plan, &rs, ip, prefix, obs)?;
        refresh(&mut plan, &scope, &rs, obs, |f| f.forget_ip(ip))?;
        Ok(plan)
    })
}

pub fn add_static_nat(ctx: &Context) -> Result<Outcome> {
    let net = network(ctx)?;
    let rs = input::router_scope(ctx)?;
    let public = input::public_ip(ctx)?;
    let private = input::private_ip(ctx)?;
    let scope = net.as_ref().map(|(s, _)| s.clone());
    let want = want_for_ip(ctx, scope.as_ref(), &rs, PublicLookup::Net(public.net.clone()), public.ip)?;
    let (want, scope) = with_firewall(want, ctx)?;
    ctx.converge(&want, |obs| {
        let mut plan = Plan::default();
        ensure_public(&mut plan, ctx, &net, &rs, &public, IP_ASSIGNED, obs)?;
        router::ensure_static_nat(&mut plan, &rs, public.ip, private, obs)?;
        refresh(&mut plan, &scope, &rs, obs, |f| {
            f.router_ips.insert(public.ip);
            f.gateway = Some(public.net.switch_uuid(&rs.owner));
            f.static_nat.insert(public.ip, private);
        })?;
        Ok(plan)
    })
}

pub fn delete_static_nat(ctx: &Context) -> Result<Outcome> {
    let rs = input::router_scope(ctx)?;
    let ip = input::public_address(ctx)?;
    let (want, scope) = with_firewall(want_for_ip(ctx, None, &rs, PublicLookup::ByGatewayPeer, ip)?, ctx)?;
    ctx.converge(&want, |obs| {
        let mut plan = Plan::default();
        router::remove_static_nat(&mut plan, &rs, ip, obs)?;
        refresh(&mut plan, &scope, &rs, obs, |f| {
            f.static_nat.remove(&ip);
        })?;
        Ok(plan)
    })
}

/// The forwarding rule of the payload: protocol and `public:port → private:port` pairs.
fn forward_rule(ctx: &Context) -> Result<(Protocol, std::collections::BTreeMap<String, String>)> {
    let p = ctx.payload();
    let public = input::public_address(ctx)?;
    let private = input::private_ip(ctx)?;
    let max = crate::config::MAX_FORWARD_RANGE;
    let public_ports = router::port_range("public_port", &p.require("public_port")?, max)?;
    let private_ports = router::port_range("private_port", &p.require("private_port")?, max)?;
    Ok((input::protocol(ctx)?, router::forward_vips(public, public_ports, private, private_ports)?))
}

/// `public:port → private:port` pairs as forwarding-table entries.
fn vip_entries(vips: &std::collections::BTreeMap<String, String>, protocol: Protocol) -> Vec<(Vip, Endpoint)> {
    vips.iter()
        .filter_map(|(k, v)| {
            let (ip, port) = parse_endpoint(k)?;
            Some(((ip, protocol, port), parse_endpoint(v)?))
        })
        .collect()
}

pub fn add_port_forward(ctx: &Context) -> Result<Outcome> {
    let net = network(ctx)?.ok_or_else(|| Error::Missing("network_id".into()))?;
    let rs = input::router_scope(ctx)?;
    let public = input::public_ip(ctx)?;
    let (protocol, vips) = forward_rule(ctx)?;
    let want = want_for_ip(ctx, Some(&net.0), &rs, PublicLookup::Net(public.net.clone()), public.ip)?;
    let (want, scope) = with_firewall(want, ctx)?;
    let net = Some(net);
    ctx.converge(&want, |obs| {
        let mut plan = Plan::default();
        ensure_public(&mut plan, ctx, &net, &rs, &public, IP_ASSIGNED, obs)?;
        let guest_switch = net.as_ref().map(|(s, _)| s.switch_uuid()).unwrap_or_default();
        let fwd = Forward { public: public.ip, protocol, vips: &vips, guest_switch };
        router::add_port_forward(&mut plan, &rs, &fwd, obs)?;
        refresh(&mut plan, &scope, &rs, obs, |f| {
            f.router_ips.insert(public.ip);
            f.gateway = Some(public.net.switch_uuid(&rs.owner));
            for (vip, backend) in vip_entries(&vips, protocol) {
                f.vips.insert(vip, [backend].into());
            }
        })?;
        Ok(plan)
    })
}

pub fn delete_port_forward(ctx: &Context) -> Result<Outcome> {
    let rs = input::router_scope(ctx)?;
    let ip = input::public_address(ctx)?;
    let (protocol, vips) = forward_rule(ctx)?;
    let (want, scope) = with_firewall(want_for_ip(ctx, None, &rs, PublicLookup::ByGatewayPeer, ip)?, ctx)?;
    ctx.converge(&want, |obs| {
        let mut plan = Plan::default();
        router::remove_port_forward(&mut plan, &rs, ip, protocol, &vips, obs)?;
        refresh(&mut plan, &scope, &rs, obs, |f| {
            for (vip, _) in vip_entries(&vips, protocol) {
                f.vips.remove(&vip);
            }
        })?;
        Ok(plan)
    })
}
