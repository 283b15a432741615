//! implement-vpc, shutdown-vpc (and destroy-vpc), update-vpc-source-nat-ip:
//! one Logical_Router per VPC, `cs-vpc-<vpc_id>`, with the VPC's source NAT
//! of its whole CIDR.

use super::ip::want_for_ip;
use super::{input, Context, Outcome, PublicLookup, RouterWant, Want};
use crate::error::{Error, Result};
use crate::nb::{key, IP_SOURCE_NAT};
use crate::payload::types::Ipv4Cidr;
use crate::plan::router::{self, RouterOf, RouterScope};
use crate::plan::Plan;

fn vpc_router(ctx: &Context) -> Result<RouterScope> {
    let rs = input::router_scope(ctx)?;
    match rs.of {
        RouterOf::Vpc(_) => Ok(rs),
        RouterOf::Network(_) => Err(Error::Missing("vpc_id".into())),
    }
}

/// The router, and with a source-NAT IP in the payload its gateway and the
/// SNAT of `vpc_cidr`.
pub fn implement(ctx: &Context) -> Result<Outcome> {
    let rs = vpc_router(ctx)?;
    let cidr = input::vpc_cidr(ctx)?;
    let snat = if ctx.payload().nonempty("public_ip").is_some() && input::source_nat(ctx)? {
        Some(input::public_ip(ctx)?)
    } else {
        None
    };
    if snat.is_some() && cidr.is_none() {
        return Err(Error::Missing("vpc_cidr (the VPC to source-NAT)".into()));
    }
    let want = match &snat {
        Some(p) => want_for_ip(ctx, None, &rs, PublicLookup::Net(p.net.clone()), p.ip)?,
        None => Want { router: Some(RouterWant::new(rs.clone())), ..Want::default() },
    };
    let gw = match &snat {
        Some(_) => Some(input::gateway_spec(ctx)?),
        None => None,
    };
    ctx.converge(&want, |obs| {
        let mut plan = Plan::default();
        router::ensure_router(&mut plan, &rs, cidr, obs)?;
        if let (Some(public), Some(gw), Some(cidr)) = (&snat, &gw, cidr) {
            router::ensure_public_ip(&mut plan, &rs, public, IP_SOURCE_NAT, gw, obs)?;
            router::ensure_snat(&mut plan, &rs, cidr, public.ip, obs)?;
        }
        Ok(plan)
    })
}

/// Move the VPC's source NAT to the payload's IP in one transaction: the
/// SNAT row is updated in place, the gateway port takes the new address, the
/// old IP stays assigned to the VPC (its static NAT and forwarding keep working).
pub fn update_source_nat(ctx: &Context) -> Result<Outcome> {
    let rs = vpc_router(ctx)?;
    let public = input::public_ip(ctx)?;
    let gw = input::gateway_spec(ctx)?;
    let payload_cidr = input::vpc_cidr(ctx)?;
    let want = want_for_ip(ctx, None, &rs, PublicLookup::Net(public.net.clone()), public.ip)?;
    ctx.converge(&want, |obs| {
        let recorded = obs
            .router()
            .and_then(|r| r.external_ids.get(key::VPC_CIDR))
            .map(|c| Ipv4Cidr::parse(key::VPC_CIDR, c))
            .transpose()?;
        let cidr = payload_cidr.or(recorded).ok_or_else(|| Error::Missing("vpc_cidr".into()))?;
        let mut plan = Plan::default();
        router::ensure_router(&mut plan, &rs, Some(cidr), obs)?;
        router::ensure_public_ip(&mut plan, &rs, &public, IP_SOURCE_NAT, &gw, obs)?;
        router::ensure_snat(&mut plan, &rs, cidr, public.ip, obs)?;
        Ok(plan)
    })
}

/// Everything of the VPC: its router (ports, NAT, routes), its forwarding
/// Load_Balancers and its place on the public switch. CloudStack has
/// destroyed every tier before.
pub fn shutdown(ctx: &Context) -> Result<Outcome> {
    let rs = vpc_router(ctx)?;
    let mut rw = RouterWant::new(rs.clone());
    rw.public = PublicLookup::ByGatewayPeer;
    rw.all_rows = true;
    let want = Want { router: Some(rw), ..Want::default() };
    ctx.converge(&want, |obs| {
        let mut plan = Plan::default();
        router::destroy_router(&mut plan, &rs, obs)?;
        Ok(plan)
    })
}
