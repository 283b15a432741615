//! implement-vpc, shutdown-vpc (and destroy-vpc), update-vpc-source-nat-ip:
//! one Logical_Router per VPC, `cs-vpc-<vpc_id>`, with the VPC's source NAT
//! of its whole CIDR.

use super::ip::want_for_ip;
use super::{input, Context, Job};
use crate::error::{Error, Result};
use crate::nb::ids::{RouterOf, RouterScope};
use crate::nb::{key, IP_SOURCE_NAT};
use crate::observe::{PublicLookup, RouterWant, Want};
use crate::payload::types::Ipv4Cidr;
use crate::plan::router::{self, GatewaySpec, PublicIp};

fn vpc_router(ctx: &Context) -> Result<RouterScope> {
    let rs = input::router_scope(ctx)?;
    match rs.of {
        RouterOf::Vpc(_) => Ok(rs),
        RouterOf::Network(_) => Err(Error::Missing("vpc_id".into())),
    }
}

struct Implement {
    rs: RouterScope,
    cidr: Option<Ipv4Cidr>,
    /// The source-NAT IP, the gateway placement and the CIDR to translate.
    snat: Option<(PublicIp, GatewaySpec, Ipv4Cidr)>,
}

/// The router, and with a source-NAT IP in the payload its gateway and the
/// SNAT of `vpc_cidr`.
pub fn implement(ctx: &Context) -> Result<Job> {
    let rs = vpc_router(ctx)?;
    let cidr = input::vpc_cidr(ctx)?;
    let snat = if ctx.payload().nonempty("public_ip").is_some() && input::source_nat(ctx)? {
        Some(input::public_ip(ctx)?)
    } else {
        None
    };
    let snat = match (snat, cidr) {
        (None, _) => None,
        (Some(_), None) => return Err(Error::Missing("vpc_cidr (the VPC to source-NAT)".into())),
        (Some(public), Some(c)) => {
            let want = want_for_ip(ctx, None, &rs, PublicLookup::Net(public.net.clone()), public.ip)?;
            Some((want, (public, input::gateway_spec(ctx)?, c)))
        }
    };
    let (want, snat) = match snat {
        Some((want, s)) => (want, Some(s)),
        None => (Want { router: Some(RouterWant::new(rs.clone())), ..Want::default() }, None),
    };
    Ok(Job::new(want, Implement { rs, cidr, snat }, |i, obs, plan| {
        router::ensure_router(plan, &i.rs, i.cidr, obs)?;
        if let Some((public, gw, cidr)) = &i.snat {
            router::ensure_public_ip(plan, &i.rs, public, IP_SOURCE_NAT, gw, obs)?;
            router::ensure_snat(plan, &i.rs, *cidr, public.ip, obs)?;
        }
        Ok(())
    }))
}

struct UpdateSourceNat {
    rs: RouterScope,
    public: PublicIp,
    gw: GatewaySpec,
    payload_cidr: Option<Ipv4Cidr>,
}

/// Move the VPC's source NAT to the payload's IP in one transaction: the
/// SNAT row is updated in place, the gateway port takes the new address, the
/// old IP stays assigned to the VPC (its static NAT and forwarding keep working).
pub fn update_source_nat(ctx: &Context) -> Result<Job> {
    let rs = vpc_router(ctx)?;
    let public = input::public_ip(ctx)?;
    let gw = input::gateway_spec(ctx)?;
    let payload_cidr = input::vpc_cidr(ctx)?;
    let want = want_for_ip(ctx, None, &rs, PublicLookup::Net(public.net.clone()), public.ip)?;
    Ok(Job::new(want, UpdateSourceNat { rs, public, gw, payload_cidr }, |i, obs, plan| {
        // Without vpc_cidr in the payload: the CIDR implement-vpc recorded.
        let recorded = obs
            .router()
            .and_then(|r| r.external_ids.get(key::VPC_CIDR))
            .map(|c| Ipv4Cidr::parse(key::VPC_CIDR, c))
            .transpose()?;
        let cidr = i.payload_cidr.or(recorded).ok_or_else(|| Error::Missing("vpc_cidr".into()))?;
        router::ensure_router(plan, &i.rs, Some(cidr), obs)?;
        router::ensure_public_ip(plan, &i.rs, &i.public, IP_SOURCE_NAT, &i.gw, obs)?;
        router::ensure_snat(plan, &i.rs, cidr, i.public.ip, obs)
    }))
}

/// Everything of the VPC: its router (ports, NAT, routes), its forwarding
/// Load_Balancers and its place on the public switch. CloudStack has
/// destroyed every tier before.
pub fn shutdown(ctx: &Context) -> Result<Job> {
    let rs = vpc_router(ctx)?;
    let mut rw = RouterWant::new(rs.clone());
    rw.public = PublicLookup::ByGatewayPeer;
    rw.all_rows = true;
    let want = Want { router: Some(rw), ..Want::default() };
    Ok(Job::new(want, rs, |rs, obs, plan| {
        router::refuse_attached_tiers(rs, obs)?;
        router::destroy_router(plan, rs, obs)
    }))
}
