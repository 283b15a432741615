//! apply-fw-rules (isolated networks) and apply-network-acl (VPC tiers):
//! each a full snapshot that replaces the network's rules in one
//! transaction. See `plan::acl` for the OVN mapping and `docs/firewall.md`.

use serde_json::Value;

use super::{input, Context, Job};
use crate::error::{Error, Result};
use crate::nb::ids::Scope;
use crate::nb::ids::{RouterOf, RouterScope};
use crate::nb::Kind;
use crate::observe::Observed;
use crate::observe::{PublicLookup, RouterWant, Want};
use crate::payload::rules::{self, Rule};
use crate::payload::types::Ipv4Cidr;
use crate::plan::acl::{self, AclSpec, FirewallScope};
use crate::plan::after;
use crate::plan::Plan;

/// VM ports of the network: the switch's ports but its router peer.
fn vm_ports(scope: &Scope, obs: &Observed) -> Vec<uuid::Uuid> {
    let peer = scope.guest_peer_uuid();
    obs.switch().map(|sw| sw.ports.iter().filter(|p| **p != peer).copied().collect()).unwrap_or_default()
}

/// What an isolated network's firewall needs to see: the switch, its port
/// group, and the router's gateway, public switch and every NAT/LB row.
pub(super) fn firewall_want(scope: &Scope, rs: &RouterScope, public: PublicLookup) -> Want {
    let mut rw = RouterWant::new(rs.clone());
    rw.public = public;
    rw.all_rows = true;
    Want { switch: true, port_group: true, scope: Some(scope.clone()), router: Some(rw), ..Want::default() }
}

/// `fw_rules.cidr`, the network's CIDR the egress rules are relative to.
fn firewall_cidr(rules_doc: &Value) -> Result<Ipv4Cidr> {
    match rules_doc.get("cidr") {
        Some(Value::String(c)) => Ipv4Cidr::parse("fw_rules.cidr", c),
        None | Some(Value::Null) => Err(Error::Missing("fw_rules.cidr (the network's CIDR)".into())),
        Some(other) => Err(Error::field("fw_rules.cidr", format!("expected an IPv4 CIDR, got {other}"))),
    }
}

/// A firewall rule set as applied: validated rules, the network's CIDR,
/// and the document recorded on the port group (so NAT, forwarding and LB
/// changes can re-plan it).
pub(super) struct Firewall {
    default_egress_allow: bool,
    rules: Vec<Rule>,
    cidr: Ipv4Cidr,
    recorded: String,
}

impl Firewall {
    /// Validate a `fw_rules` document (from the payload, or as recorded).
    pub(super) fn parse(rules_doc: &Value) -> Result<Firewall> {
        let (default_egress_allow, rules) = rules::firewall(rules_doc)?;
        let cidr = firewall_cidr(rules_doc)?;
        Ok(Firewall { default_egress_allow, rules, cidr, recorded: rules_doc.to_string() })
    }
}

/// Plan the firewall `fw` over what the router forwards once the rest of
/// `plan` (a NAT, forwarding or load-balancer change) commits.
fn plan_firewall(plan: &mut Plan, scope: &Scope, rs: &RouterScope, fw: &Firewall, obs: &Observed) -> Result<()> {
    let fwd = &after::forwarding(plan, rs, obs);
    let fs = FirewallScope {
        port_group: scope.port_group_name(),
        router_peer: scope.guest_peer_name(),
        gateway_peer: fwd.gateway.map(|_| rs.gateway_peer_name()),
        guest_cidr: fw.cidr,
    };
    let desired = acl::firewall_acls(&fs, fw.default_egress_allow, &fw.rules, fwd);
    acl::ensure_port_group(plan, scope, &vm_ports(scope, obs), obs)?;
    // Where our public-side ACLs are (to add or to clean up): the gateway's
    // switch after this command, else the one observed.
    let public_switch = fwd.gateway.or(obs.public_switch().map(|s| s.uuid));
    acl::converge_acls(plan, scope, Kind::Firewall, &desired, public_switch, Some(&fw.recorded), obs)
}

/// After a NAT, forwarding or load-balancer change planned in `plan`:
/// bring an applied firewall in line with what the router will forward.
pub(super) fn refresh_firewall(plan: &mut Plan, scope: &Scope, rs: &RouterScope, obs: &Observed) -> Result<()> {
    match acl::recorded_firewall(obs) {
        Some(doc) if matches!(rs.of, RouterOf::Network(_)) => {
            plan_firewall(plan, scope, rs, &Firewall::parse(&doc)?, obs)
        }
        _ => Ok(()),
    }
}

struct ApplyFirewall {
    scope: Scope,
    rs: RouterScope,
    fw: Firewall,
}

pub fn apply_firewall(ctx: &Context) -> Result<Job> {
    input::require_routed(ctx)?;
    let scope = input::scope(ctx)?;
    let rs = input::router_scope(ctx)?;
    if let RouterOf::Vpc(_) = rs.of {
        return Err(Error::Unsupported("apply-fw-rules on a VPC tier (VPC tiers are filtered by network ACLs)".into()));
    }
    let mut doc = ctx.payload().nested("fw_rules")?.ok_or_else(|| Error::Missing("fw_rules".into()))?;
    if !doc.is_object() {
        return Err(Error::field("fw_rules", "must be a JSON object"));
    }
    // Absent or empty: the network's CIDR from the payload. Anything else is
    // validated as given (a list or number is an error, not "absent").
    if matches!(doc.get("cidr"), None | Some(Value::Null)) || doc.get("cidr").and_then(Value::as_str) == Some("") {
        if let Some(c) = input::switch_spec(ctx)?.cidr {
            doc["cidr"] = Value::String(c.network().to_string());
        }
    }
    // Validate everything before touching the NB.
    let fw = Firewall::parse(&doc)?;
    let want = firewall_want(&scope, &rs, PublicLookup::ByGatewayPeer);
    Ok(Job::new(want, ApplyFirewall { scope, rs, fw }, |i, obs, plan| plan_firewall(plan, &i.scope, &i.rs, &i.fw, obs))
        .routed_only(&ctx.inv.command))
}

struct NetworkAcl {
    scope: Scope,
    desired: Vec<AclSpec>,
}

pub fn apply_network_acl(ctx: &Context) -> Result<Job> {
    input::require_routed(ctx)?;
    let scope = input::scope(ctx)?;
    let doc = ctx.payload().nested("acl_rules")?.unwrap_or(Value::Array(Vec::new()));
    let rules = rules::network_acl(&doc)?;
    let cidr = input::switch_spec(ctx)?.cidr.ok_or_else(|| Error::Missing("cidr (the tier's CIDR)".into()))?;
    if scope.vpc_id.is_none() && !ctx.legacy() {
        return Err(not_a_tier(scope.network_id));
    }
    let want = Want { switch: true, port_group: true, scope: Some(scope.clone()), ..Want::default() };
    let cidr6 = input::guest_cidr6(ctx)?;
    let desired = acl::network_acls(&scope.port_group_name(), cidr, cidr6, &rules);
    Ok(Job::new(want, NetworkAcl { scope, desired }, |i, obs, plan| {
        // Filtering a network we never implemented, or an isolated one
        // (legacy payloads carry no vpc id), would leave a port group that
        // nothing uses or bypass its firewall: say so instead.
        let sw = obs.switch().ok_or_else(|| {
            Error::field("network_id", format!("network {} has no switch: implement-network first", i.scope.network_id))
        })?;
        if !sw.external_ids.contains_key(crate::nb::key::VPC_ID) {
            return Err(not_a_tier(i.scope.network_id));
        }
        acl::ensure_port_group(plan, &i.scope, &vm_ports(&i.scope, obs), obs)?;
        acl::converge_acls(plan, &i.scope, Kind::NetworkAcl, &i.desired, None, None, obs)
    })
    .routed_only(&ctx.inv.command))
}

fn not_a_tier(network_id: u64) -> Error {
    Error::Unsupported(format!(
        "apply-network-acl on network {network_id}, which is not a VPC tier (isolated networks are filtered by apply-fw-rules)"
    ))
}
