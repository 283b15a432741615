//! assign-ip, release-ip, add/delete-static-nat, add/delete-port-forward.
//!
//! A network's public side lives on its router: the isolated network's own
//! `cs-router-<id>`, or for a VPC tier the VPC's `cs-vpc-<id>`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::filter::refresh_firewall;
use super::{input, Context, Job};
use crate::error::{Error, Result};
use crate::nb::ids::Scope;
use crate::nb::{IP_ASSIGNED, IP_SOURCE_NAT};
use crate::observe::{Observed, PublicLookup, RouterWant, Want};
use crate::payload::types::Ipv4Cidr;
use crate::plan::network::{ensure_switch, SwitchSpec};
use crate::plan::router::{self, Forward, GatewaySpec, Protocol, PublicIp, RouterOf, RouterScope};
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
    rw.chassis = ctx.config.gateway_chassis.clone();
    rw.nats = vec![rs.snat_uuid(), rs.static_nat_uuid(ip)];
    rw.lbs = Protocol::ALL.iter().map(|p| rs.port_forward_uuid(ip, *p)).collect();
    // The guest switch with its ports: refreshing the firewall after a NAT
    // change recomputes the port group's members from them.
    Ok(Want { switch: scope.is_some(), scope: scope.cloned(), router: Some(rw), ..Want::default() })
}

/// The guest side of an isolated network's router, for the commands that
/// may be the first to need the router.
struct Guest {
    scope: Scope,
    spec: SwitchSpec,
    /// The guest gateway with the network's prefix, when the payload has it.
    gateway: Option<Ipv4Cidr>,
}

/// The network (with its switch spec and guest gateway) when the command is
/// about one.
fn guest(ctx: &Context) -> Result<Option<Guest>> {
    if ctx.payload().nonempty("network_id").is_none() {
        return Ok(None);
    }
    Ok(Some(Guest { scope: input::scope(ctx)?, spec: input::switch_spec(ctx)?, gateway: input::guest_gateway(ctx)? }))
}

/// The isolated network's router and its guest attachment, created on
/// first use (implement-network creates them when CloudStack names us the
/// network's gateway; an assign-ip must work either way).
fn ensure_network_router(plan: &mut Plan, net: &Guest, rs: &RouterScope, obs: &Observed) -> Result<()> {
    ensure_switch(plan, &net.scope, &net.spec, obs)?;
    router::ensure_router(plan, rs, None, obs)?;
    crate::plan::pbr::restore_network_policies(plan, rs, obs)?;
    match net.gateway {
        Some(gateway) => router::attach_network(plan, rs, &net.scope, gateway, None, obs),
        // Legacy NAT commands carry no gateway/cidr: fine once attached.
        None if obs.guest_port().is_some() => Ok(()),
        None => Err(Error::Missing("gateway and cidr (the guest side of the router)".into())),
    }
}

/// The router side every public-IP command needs before its own rows.
struct Public {
    net: Option<Guest>,
    rs: RouterScope,
    ip: PublicIp,
    gw: GatewaySpec,
}

impl Public {
    fn ensure(&self, plan: &mut Plan, role: &str, obs: &Observed) -> Result<()> {
        match (self.rs.of, &self.net) {
            (RouterOf::Network(_), Some(net)) => ensure_network_router(plan, net, &self.rs, obs)?,
            _ => router::ensure_router(plan, &self.rs, None, obs)?,
        }
        router::ensure_public_ip(plan, &self.rs, &self.ip, role, &self.gw, obs)
    }
}

struct Assign {
    public: Public,
    role: &'static str,
    /// The guest CIDR to source-NAT to the IP.
    snat: Option<Ipv4Cidr>,
}

pub fn assign(ctx: &Context) -> Result<Job> {
    input::require_routed(ctx)?;
    let net = guest(ctx)?;
    let rs = input::router_scope(ctx)?;
    let ip = input::public_ip(ctx)?;
    let source_nat = input::source_nat(ctx)?;
    let tier = matches!(rs.of, RouterOf::Vpc(_));
    if tier && source_nat {
        // VPC source NAT is the VPC's (implement-vpc, update-vpc-source-nat-ip);
        // a tier's assign-ip of it must not add a tier SNAT.
        return Ok(Job::nothing());
    }
    let snat = if source_nat {
        Some(input::switch_spec(ctx)?.cidr.ok_or_else(|| Error::Missing("cidr (the network to source-NAT)".into()))?)
    } else {
        None
    };
    let want = want_for_ip(ctx, net.as_ref().map(|n| &n.scope), &rs, PublicLookup::Net(ip.net.clone()), ip.ip)?;
    let public = Public { net, rs, ip, gw: input::gateway_spec(ctx)? };
    let role = if source_nat { IP_SOURCE_NAT } else { IP_ASSIGNED };
    Ok(Job::new(want, Assign { public, role, snat }, |i, obs, plan| {
        i.public.ensure(plan, i.role, obs)?;
        if let Some(cidr) = i.snat {
            router::ensure_snat(plan, &i.public.rs, cidr, i.public.ip.ip, obs)?;
        }
        Ok(())
    })
    .routed_only(&ctx.inv.command))
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

/// Refresh an applied firewall of the network for what the router forwards
/// once `plan` commits.
fn refresh(plan: &mut Plan, scope: &Option<Scope>, rs: &RouterScope, obs: &Observed) -> Result<()> {
    match scope {
        Some(scope) => refresh_firewall(plan, scope, rs, obs),
        None => Ok(()),
    }
}

/// A command about one public IP of a router, keeping an applied firewall
/// of the network (`scope`) in step.
struct OnIp {
    rs: RouterScope,
    ip: Ipv4Addr,
    scope: Option<Scope>,
}

/// What a command about `ip` of `rs` reads, found by the router's gateway.
fn on_ip(ctx: &Context, rs: RouterScope, ip: Ipv4Addr) -> Result<(Want, OnIp)> {
    let (want, scope) = with_firewall(want_for_ip(ctx, None, &rs, PublicLookup::ByGatewayPeer, ip)?, ctx)?;
    Ok((want, OnIp { rs, ip, scope }))
}

pub fn release(ctx: &Context) -> Result<Job> {
    input::require_routed(ctx)?;
    let rs = input::router_scope(ctx)?;
    let ip = input::public_address(ctx)?;
    let prefix = input::public_prefix(ctx)?;
    let (want, on) = on_ip(ctx, rs, ip)?;
    Ok(Job::new(want, (on, prefix), |(on, prefix), obs, plan| {
        router::release_ip_rows(plan, &on.rs, on.ip, *prefix, obs)?;
        refresh(plan, &on.scope, &on.rs, obs)
    })
    .routed_only(&ctx.inv.command))
}

struct StaticNat {
    public: Public,
    private: Ipv4Addr,
    scope: Option<Scope>,
}

pub fn add_static_nat(ctx: &Context) -> Result<Job> {
    input::require_routed(ctx)?;
    let net = guest(ctx)?;
    let rs = input::router_scope(ctx)?;
    let ip = input::public_ip(ctx)?;
    let private = input::private_ip(ctx)?;
    let want = want_for_ip(ctx, net.as_ref().map(|n| &n.scope), &rs, PublicLookup::Net(ip.net.clone()), ip.ip)?;
    let (want, scope) = with_firewall(want, ctx)?;
    let public = Public { net, rs, ip, gw: input::gateway_spec(ctx)? };
    Ok(Job::new(want, StaticNat { public, private, scope }, |i, obs, plan| {
        let (rs, ip) = (&i.public.rs, &i.public.ip);
        i.public.ensure(plan, IP_ASSIGNED, obs)?;
        router::ensure_static_nat(plan, rs, ip.ip, i.private, obs)?;
        refresh(plan, &i.scope, rs, obs)
    })
    .routed_only(&ctx.inv.command))
}

pub fn delete_static_nat(ctx: &Context) -> Result<Job> {
    input::require_routed(ctx)?;
    let rs = input::router_scope(ctx)?;
    let ip = input::public_address(ctx)?;
    let (want, on) = on_ip(ctx, rs, ip)?;
    Ok(Job::new(want, on, |on, obs, plan| {
        router::remove_static_nat(plan, &on.rs, on.ip, obs)?;
        refresh(plan, &on.scope, &on.rs, obs)
    })
    .routed_only(&ctx.inv.command))
}

/// The forwarding rule of the payload: protocol and `public:port → private:port` pairs.
fn forward_rule(ctx: &Context) -> Result<(Protocol, BTreeMap<String, String>)> {
    let p = ctx.payload();
    let public = input::public_address(ctx)?;
    let private = input::private_ip(ctx)?;
    let max = crate::config::MAX_FORWARD_RANGE;
    let public_ports = router::port_range("public_port", &p.require("public_port")?, max)?;
    let private_ports = router::port_range("private_port", &p.require("private_port")?, max)?;
    Ok((input::protocol(ctx)?, router::forward_vips(public, public_ports, private, private_ports)?))
}

struct PortForward {
    public: Public,
    /// The guest network of the private address.
    guest: Scope,
    protocol: Protocol,
    vips: BTreeMap<String, String>,
    scope: Option<Scope>,
}

pub fn add_port_forward(ctx: &Context) -> Result<Job> {
    input::require_routed(ctx)?;
    let net = guest(ctx)?.ok_or_else(|| Error::Missing("network_id".into()))?;
    let rs = input::router_scope(ctx)?;
    let ip = input::public_ip(ctx)?;
    let (protocol, vips) = forward_rule(ctx)?;
    let want = want_for_ip(ctx, Some(&net.scope), &rs, PublicLookup::Net(ip.net.clone()), ip.ip)?;
    let (want, scope) = with_firewall(want, ctx)?;
    let guest = net.scope.clone();
    let public = Public { net: Some(net), rs, ip, gw: input::gateway_spec(ctx)? };
    Ok(Job::new(want, PortForward { public, guest, protocol, vips, scope }, |i, obs, plan| {
        let (rs, ip) = (&i.public.rs, &i.public.ip);
        i.public.ensure(plan, IP_ASSIGNED, obs)?;
        let fwd = Forward { public: ip.ip, protocol: i.protocol, vips: &i.vips, guest: &i.guest };
        router::add_port_forward(plan, rs, &fwd, obs)?;
        refresh(plan, &i.scope, rs, obs)
    })
    .routed_only(&ctx.inv.command))
}

pub fn delete_port_forward(ctx: &Context) -> Result<Job> {
    input::require_routed(ctx)?;
    let rs = input::router_scope(ctx)?;
    let ip = input::public_address(ctx)?;
    let (protocol, vips) = forward_rule(ctx)?;
    let (want, on) = on_ip(ctx, rs, ip)?;
    Ok(Job::new(want, (on, protocol, vips), |(on, protocol, vips), obs, plan| {
        router::remove_port_forward(plan, &on.rs, on.ip, *protocol, vips, obs)?;
        refresh(plan, &on.scope, &on.rs, obs)
    })
    .routed_only(&ctx.inv.command))
}
