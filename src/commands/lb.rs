//! apply-lb-rules: CloudStack sends only the rules that changed (revoked
//! ones with `revoke:true`); each rule is one Load_Balancer, keyed by the
//! rule id, on the router and the guest switch.

use super::filter::{firewall_want, forwarding, refresh_firewall};
use super::{input, Context, Outcome, PublicLookup};
use crate::error::{Error, Result};
use crate::payload::rules::{self, Algorithm};
use crate::plan::router::{self, recorded_ips, Balancer, Protocol};
use crate::plan::Plan;

pub fn apply(ctx: &Context) -> Result<Outcome> {
    let scope = input::scope(ctx)?;
    let rs = input::router_scope(ctx)?;
    let doc = ctx.payload().nested("lb_rules")?.ok_or_else(|| Error::Missing("lb_rules".into()))?;
    let rules = rules::load_balancers(&doc)?;
    let want = firewall_want(&scope, &rs, PublicLookup::ByGatewayPeer);
    ctx.converge(&want, |obs| {
        let mut plan = Plan::default();
        let mut fwd = forwarding(obs);
        let assigned = recorded_ips(obs);
        for r in &rules {
            if let Some(old) = obs.lbs().iter().find(|l| l.uuid == rs.balancer_uuid(r.id)) {
                fwd.remove_lb(old);
            }
            if r.revoke {
                router::remove_balancer(&mut plan, &rs, r.id, obs)?;
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
            router::ensure_balancer(&mut plan, &rs, &lb, scope.switch_uuid(), obs)?;
            let vip = (lb.public, lb.protocol, lb.port);
            fwd.vips.insert(vip, lb.backends.iter().copied().collect());
        }
        refresh_firewall(&mut plan, &scope, &rs, &fwd, obs)?;
        Ok(plan)
    })
}
