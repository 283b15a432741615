//! `custom-action`: CloudStack's `runNetworkCustomAction` on a network or a
//! VPC. The payload is flat (`action`, `action-params`, the network or VPC
//! fields); the answer is one JSON object
//! `{"status":"success","printmessage":"true","message":…}` that CloudStack
//! hands to the API caller.
//!
//! Actions: the reference extension's policy-based routing (`pbr-*`, see
//! `plan::pbr`), and read-only OVN diagnostics.

mod pbr;
mod show;
mod trace;

use serde_json::{json, Value};

use super::{input, Context, Job};
use crate::error::{Error, Result};
use crate::nb::ids::{RouterOf, RouterScope, Scope};
use crate::observe::Observed;
use crate::payload::pbr::{Params, PbrAction};
use crate::plan::pbr::PbrIntent;

/// One parameter of a custom action, as `addCustomAction` registers it.
pub struct Param {
    pub name: &'static str,
    pub required: bool,
}

/// A custom action we implement.
pub struct Action {
    pub name: &'static str,
    pub about: &'static str,
    pub params: &'static [Param],
}

const fn p(name: &'static str, required: bool) -> Param {
    Param { name, required }
}

/// Every action, in the order `extension-details` lists them.
pub const ACTIONS: &[Action] = &[
    Action {
        name: "pbr-create-table",
        about: "Create a policy-routing table",
        params: &[p("table-id", true), p("table-name", true)],
    },
    Action {
        name: "pbr-delete-table",
        about: "Delete a policy-routing table with its routes and rules",
        params: &[p("table-name", true)],
    },
    Action { name: "pbr-list-tables", about: "List the policy-routing tables", params: &[] },
    Action {
        name: "pbr-add-route",
        about: "Add a route (blackhole|unreachable|prohibit <cidr>, <cidr> via <ip>, default via <ip>) to a table",
        params: &[p("table", true), p("route", true)],
    },
    Action {
        name: "pbr-delete-route",
        about: "Delete a route from a table",
        params: &[p("table", true), p("route", true)],
    },
    Action { name: "pbr-list-routes", about: "List the routes of a table (or of all)", params: &[p("table", false)] },
    Action {
        name: "pbr-add-rule",
        about: "Send traffic (from <cidr> and/or to <cidr> [priority N]) to a table",
        params: &[p("table", true), p("rule", true)],
    },
    Action { name: "pbr-delete-rule", about: "Delete a rule", params: &[p("table", true), p("rule", true)] },
    Action { name: "pbr-list-rules", about: "List the rules (of a table, or all)", params: &[p("table", false)] },
    Action {
        name: "show",
        about: "The network's (or VPC's) OVN picture: ports and their chassis, router, NAT, LB, ACLs, DHCP, DNS; drift flagged",
        params: &[],
    },
    Action {
        name: "trace",
        about: "Trace a packet (from a NIC uuid or VM IP, or an outside IP) through OVN with ovn-trace: delivered, or dropped by which ACL or policy",
        params: &[p("from", true), p("to", true), p("protocol", false), p("port", false)],
    },
    Action {
        name: "list-firewall-rules",
        about: "The firewall rules as applied, and their OVN ACLs per direction",
        params: &[],
    },
];

/// What the action applies to: an isolated network (its own router) or a
/// VPC (a VPC-level call, or a call on one of its tiers).
#[derive(Clone, Debug)]
pub(crate) enum Target {
    Network { scope: Scope, rs: RouterScope },
    Vpc { rs: RouterScope, network: Option<Scope> },
}

fn target(ctx: &Context) -> Result<Target> {
    let p = ctx.payload();
    let rs = input::router_scope(ctx).map_err(|e| match e {
        Error::Missing(_) => Error::Missing("network_id or vpc_id".into()),
        e => e,
    })?;
    let network = p.nonempty("network_id").map(|_| input::scope(ctx)).transpose()?;
    Ok(match (rs.of, network) {
        (RouterOf::Vpc(_), network) => Target::Vpc { rs, network },
        (RouterOf::Network(_), Some(scope)) => Target::Network { scope, rs },
        (RouterOf::Network(_), None) => return Err(Error::Missing("network_id or vpc_id".into())),
    })
}

/// `action-params` (hyphenated upstream, `action_params` from the legacy
/// flags and the reference wrapper's alias).
fn params(ctx: &Context) -> Result<Params> {
    let p = ctx.payload();
    for k in ["action-params", "action_params"] {
        match p.fields.get(k) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) if s.trim().is_empty() => continue,
            Some(_) => return Params::from_value(p.nested(k)?.as_ref()),
        }
    }
    Ok(Params::default())
}

fn unknown(action: &str) -> Error {
    let names: Vec<&str> = ACTIONS.iter().map(|a| a.name).collect();
    Error::field("action", format!("unknown custom action {action:?}; available: {}", names.join(", ")))
}

/// Messages larger than this are cut (CloudStack stores and shows them).
const MAX_MESSAGE: usize = 60_000;

/// Keep the answer bounded: long lists keep their head and say how many
/// entries were left out.
fn bounded(message: Value) -> Value {
    if message.to_string().len() <= MAX_MESSAGE {
        return message;
    }
    match message {
        Value::Array(items) => {
            let total = items.len();
            let mut kept = Vec::new();
            let mut size = 0;
            for it in items {
                size += it.to_string().len() + 1;
                if size > MAX_MESSAGE - 100 {
                    break;
                }
                kept.push(it);
            }
            let left = total - kept.len();
            kept.push(json!({"truncated": format!("{left} more entries not shown")}));
            Value::Array(kept)
        }
        other => {
            let s = other.to_string();
            let mut cut = MAX_MESSAGE - 40;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            Value::String(format!("{}… (truncated)", &s[..cut]))
        }
    }
}

fn success(message: Value) -> Value {
    json!({"status": "success", "printmessage": "true", "message": bounded(message)})
}

/// What a read-only action works on, validated before connecting.
struct Diagnosis {
    target: Target,
    kind: DiagnosisKind,
}

enum DiagnosisKind {
    Show,
    ListFirewallRules,
    Trace(trace::Request),
}

/// Validate the action and its parameters (before any connection) into a
/// job: a PBR action plans against the rows it reads and reports from
/// them; a diagnostic reads by itself and writes nothing.
pub fn prepare(ctx: &Context) -> Result<Job> {
    let action = ctx.payload().require("action")?;
    if !ACTIONS.iter().any(|a| a.name == action) {
        return Err(unknown(&action));
    }
    let params = params(ctx)?;
    if let Some(parsed) = PbrAction::parse(&action, &params) {
        let parsed = parsed?;
        let target = target(ctx)?;
        // Shared and L2 networks have no router of ours to steer with.
        input::require_routed(ctx)?;
        let (intent, want) = pbr::prepare(&target, parsed);
        return Ok(Job::reporting(want, intent, crate::plan::pbr::plan, pbr_report).routed_only(&ctx.inv.command));
    }
    let kind = match action.as_str() {
        "show" => DiagnosisKind::Show,
        "list-firewall-rules" => DiagnosisKind::ListFirewallRules,
        "trace" => DiagnosisKind::Trace(trace::request(&params)?),
        _ => return Err(unknown(&action)),
    };
    let target = target(ctx)?;
    if let (DiagnosisKind::Trace(r), Target::Vpc { network: None, .. }) = (&kind, &target) {
        trace::vpc_level(r, input::vpc_cidr(ctx)?)?;
    }
    Ok(Job::diagnostic(Diagnosis { target, kind }, diagnose))
}

fn pbr_report(intent: &PbrIntent, obs: &Observed) -> Result<Value> {
    Ok(success(crate::plan::pbr::answer(intent, obs)?))
}

fn diagnose(d: &Diagnosis, ctx: &Context) -> Result<Value> {
    let message = match &d.kind {
        DiagnosisKind::Show => show::show(ctx, &d.target)?,
        DiagnosisKind::ListFirewallRules => show::list_firewall_rules(ctx, &d.target)?,
        DiagnosisKind::Trace(r) => trace::trace(ctx, &d.target, r)?,
    };
    Ok(success(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_stay_bounded() {
        let big: Vec<Value> = (0..20_000).map(|i| json!({"route": format!("blackhole 10.{i}.0.0/16")})).collect();
        let out = success(Value::Array(big));
        assert!(out.to_string().len() < MAX_MESSAGE + 200);
        assert!(out["message"].as_array().unwrap().last().unwrap()["truncated"].is_string());
        assert_eq!(success(json!("ok"))["message"], "ok");
    }

    #[test]
    fn actions_are_unique() {
        for (i, a) in ACTIONS.iter().enumerate() {
            assert!(ACTIONS[i + 1..].iter().all(|b| b.name != a.name), "{}", a.name);
        }
        assert!(unknown("x").to_string().contains("pbr-create-table"));
    }
}
