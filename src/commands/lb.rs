//! apply-lb-rules: CloudStack sends only the rules that changed (revoked
//! ones with `revoke:true`); each rule is one Load_Balancer, keyed by the
//! rule id, on the router and the guest switch.

use super::filter::{firewall_want, refresh_firewall};
use super::{input, Context, Job};
use crate::error::{Error, Result};
use crate::nb::ids::{RouterScope, Scope};
use crate::observe::{Observed, PublicLookup};
use crate::payload::rules::{self, Algorithm, LbRule};
use crate::plan::router::{self, recorded_ips, Balancer, Protocol};
use crate::plan::Plan;

struct ApplyLb {
    scope: Scope,
    rs: RouterScope,
    rules: Vec<LbRule>,
}

pub fn apply(ctx: &Context) -> Result<Job> {
    input::require_routed(ctx)?;
    let scope = input::scope(ctx)?;
    let rs = input::router_scope(ctx)?;
    let doc = ctx.payload().nested("lb_rules")?.ok_or_else(|| Error::Missing("lb_rules".into()))?;
    let rules = rules::load_balancers(&doc)?;
    let want = firewall_want(&scope, &rs, PublicLookup::ByGatewayPeer);
    Ok(Job::new(want, ApplyLb { scope, rs, rules }, plan_lb).routed_only(&ctx.inv.command))
}

fn plan_lb(i: &ApplyLb, obs: &Observed, plan: &mut Plan) -> Result<()> {
    let ApplyLb { scope, rs, rules } = i;
    let assigned = recorded_ips(obs);
    for r in rules {
        if r.revoke {
            router::remove_balancer(plan, rs, r.id, obs)?;
            continue;
        }
        if !assigned.contains_key(&r.public_ip) {
            return Err(Error::field(
                "lb_rules",
                format!(
                    "public IP {} of rule {} is not assigned to {} (assign-ip first)",
                    r.public_ip,
                    r.id,
                    rs.name()
                ),
            ));
        }
        let lb = Balancer {
            id: r.id,
            public: r.public_ip,
            port: r.public_port,
            protocol: if r.udp { Protocol::Udp } else { Protocol::Tcp },
            source_affinity: r.algorithm == Algorithm::Source,
            backends: r.backends.clone(),
        };
        router::ensure_balancer(plan, rs, &lb, scope, obs)?;
    }
    refresh_firewall(plan, scope, rs, obs)
}
