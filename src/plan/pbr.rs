//! Policy-based routing on OVN: the `pbr-*` custom actions change a
//! network's (or VPC's) [`PbrState`], and the state compiles onto the
//! router as Logical_Router_Policy rows.
//!
//! Linux evaluates `ip rule`s by ascending preference; a rule whose table
//! has no route for the destination falls through to the next rule, and
//! within a table the longest prefix wins. OVN evaluates policies by
//! descending priority after the routing stage (so after DNAT and before
//! SNAT, where Linux consults its rules too). Each rule × route of its
//! table becomes one policy `selector ∧ ip4.dst ∈ route` at priority
//! `TOP − rank·33 − (32 − prefix length)`: rule order first, longest prefix
//! within a rule, and no match means the packet falls through to lower
//! priorities exactly like an empty table lookup. Nothing else of ours uses
//! router policies; the band [`FLOOR`, `TOP`] is ours.
//!
//! Policy rows get content-derived uuids (as ACLs do): a row that exists
//! is right, and the rows to remove are computed from the previously
//! stored state, so nothing is read but the router row and the holder of
//! the state.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{map_mutations, Existing, Parent, Plan};
use crate::error::{Error, Result};
use crate::nb::ids::{Kind, RouterScope, Scope};
use crate::nb::rows::Port;
use crate::nb::{key, table};
use crate::observe::Observed;
use crate::ovsdb::value::{string_map, string_set};
use crate::payload::pbr::{
    PbrAction, PbrState, Route, Rule, StoredRule, Table, TableRef, Target, MAX_PREF, MAX_ROUTES, MAX_RULES, MAX_TABLES,
};
use crate::payload::types::Ipv4Cidr;

/// Highest priority of a compiled policy (OVN allows 0–32767).
pub const TOP: i64 = 30000;
/// Priorities one rule's routes may use (prefix lengths 0–32).
const PER_RULE: i64 = 33;
/// Lowest priority a compiled policy can get.
pub const FLOOR: i64 = TOP - (MAX_RULES as i64) * PER_RULE + 1;

/// Where the state of one network or VPC lives: an isolated network's on
/// its Logical_Switch (which survives shutdown-network, so a restart with
/// cleanup re-creates the policies with the router), a VPC's on its router.
#[derive(Clone, Debug)]
pub enum Holder {
    Switch(Scope),
    Router(RouterScope),
}

impl Holder {
    fn ids<'a>(&self, obs: &'a Observed) -> Option<(&'a std::collections::BTreeMap<String, String>, Uuid, String)> {
        match self {
            Holder::Switch(_) => obs.switch().map(|sw| (&sw.external_ids, sw.uuid, sw.name.clone())),
            Holder::Router(_) => obs.router().map(|r| (&r.external_ids, r.uuid, r.name.clone())),
        }
    }

    fn table(&self) -> &'static str {
        match self {
            Holder::Switch(_) => table::LOGICAL_SWITCH,
            Holder::Router(_) => table::LOGICAL_ROUTER,
        }
    }

    fn what(&self) -> String {
        match self {
            Holder::Switch(s) => format!("network {} (Logical_Switch {})", s.network_id, s.switch_name()),
            Holder::Router(r) => format!("VPC router {}", r.name()),
        }
    }
}

/// The state stored on the holder (empty when none is stored yet).
pub fn stored(holder: &Holder, obs: &Observed) -> Result<PbrState> {
    let (ids, _, _) = holder.ids(obs).ok_or_else(|| {
        Error::field(
            match holder {
                Holder::Switch(_) => "network_id",
                Holder::Router(_) => "vpc_id",
            },
            format!("{} does not exist in OVN (not implemented yet?)", holder.what()),
        )
    })?;
    match ids.get(key::PBR) {
        None => Ok(PbrState::default()),
        Some(raw) => PbrState::from_json(key::PBR, raw),
    }
}

fn find_table(state: &PbrState, r: &TableRef) -> Result<Table> {
    state.table(r).cloned().ok_or_else(|| {
        let known: Vec<&str> = state.tables.iter().map(|t| t.name.as_str()).collect();
        Error::field(
            "table",
            format!("no routing table {r} (known: {}); create it with pbr-create-table", list_or_none(&known)),
        )
    })
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// The preference `ip rule add` picks without one: just before the
/// highest-precedence existing rule (32765 for the first).
fn default_pref(state: &PbrState) -> Result<u32> {
    let lowest = state.rules.iter().map(|r| r.pref).min().unwrap_or(MAX_PREF + 1);
    if lowest <= 1 {
        return Err(Error::field("rule", "no free rule priority left below the existing rules; give a priority"));
    }
    Ok(lowest - 1)
}

/// Apply a PBR action to the state: the new state and the message for
/// CloudStack. List actions return the state unchanged.
pub fn apply(state: &PbrState, action: &PbrAction) -> Result<(PbrState, Value)> {
    let mut s = state.clone();
    let msg = match action {
        PbrAction::ListTables => return Ok((s.clone(), s.list_tables())),
        PbrAction::ListRoutes(t) => {
            let only = t.as_ref().map(|t| find_table(state, t)).transpose()?.map(|t| t.id);
            return Ok((s.clone(), s.list_routes(only)));
        }
        PbrAction::ListRules(t) => {
            let only = t.as_ref().map(|t| find_table(state, t)).transpose()?.map(|t| t.id);
            return Ok((s.clone(), s.list_rules(only)));
        }
        PbrAction::CreateTable(t) => {
            if s.tables.contains(t) {
                format!("routing table {} ({}) already exists", t.name, t.id)
            } else {
                if let Some(o) = s.tables.iter().find(|o| o.id == t.id) {
                    return Err(Error::field("table-id", format!("table {} is already named {}", t.id, o.name)));
                }
                if let Some(o) = s.tables.iter().find(|o| o.name == t.name) {
                    return Err(Error::field(
                        "table-name",
                        format!("table {} already has the number {}", t.name, o.id),
                    ));
                }
                if s.tables.len() >= MAX_TABLES {
                    return Err(Error::field("table-id", format!("at most {MAX_TABLES} routing tables")));
                }
                s.tables.push(t.clone());
                s.tables.sort();
                format!("routing table {} ({}) created", t.name, t.id)
            }
        }
        PbrAction::DeleteTable(r) => match state.table(r) {
            None => format!("routing table {r} does not exist"),
            Some(t) => {
                let id = t.id;
                s.tables.retain(|x| x.id != id);
                s.routes.retain(|(x, _)| *x != id);
                s.rules.retain(|x| x.table != id);
                format!("routing table {} ({}) deleted with its routes and rules", t.name, t.id)
            }
        },
        PbrAction::AddRoute(r, route) => {
            let t = find_table(state, r)?;
            match s.routes.iter_mut().find(|(x, o)| *x == t.id && o.prefix == route.prefix) {
                Some((_, o)) if o == route => format!("route {route} already in table {}", t.name),
                Some((_, o)) => {
                    let old = *o;
                    *o = *route;
                    format!("route {old} replaced by {route} in table {}", t.name)
                }
                None => {
                    if s.routes.len() >= MAX_ROUTES {
                        return Err(Error::field("route", format!("at most {MAX_ROUTES} routes")));
                    }
                    s.routes.push((t.id, *route));
                    s.routes.sort();
                    format!("route {route} added to table {}", t.name)
                }
            }
        }
        PbrAction::DeleteRoute(r, route) => {
            let t = find_table(state, r)?;
            match s.routes.iter().position(|(x, o)| *x == t.id && o.prefix == route.prefix) {
                None => format!("no route for {} in table {}", Ipv4CidrText(route.prefix), t.name),
                Some(i) if s.routes[i].1 != *route => {
                    return Err(Error::field("route", format!("table {} has {}, not {route}", t.name, s.routes[i].1)));
                }
                Some(i) => {
                    s.routes.remove(i);
                    format!("route {route} deleted from table {}", t.name)
                }
            }
        }
        PbrAction::AddRule(r, rule) => {
            let t = find_table(state, r)?;
            match s.rules.iter().position(|x| x.table == t.id && x.rule.same_selector(rule)) {
                Some(i) if rule.pref.is_none_or(|p| p == s.rules[i].pref) => {
                    format!("rule {}: {} lookup {} already exists", s.rules[i].pref, rule.selector(), t.name)
                }
                found => {
                    if let Some(i) = found {
                        s.rules.remove(i);
                    } else if s.rules.len() >= MAX_RULES {
                        return Err(Error::field("rule", format!("at most {MAX_RULES} rules")));
                    }
                    let pref = match rule.pref {
                        Some(p) => p,
                        None => default_pref(&s)?,
                    };
                    s.rules.push(StoredRule { pref, table: t.id, rule: Rule { pref: Some(pref), ..*rule } });
                    // Stable: equal preferences keep the order they were added in.
                    s.rules.sort_by_key(|x| x.pref);
                    format!("rule {pref}: {} lookup {} added", rule.selector(), t.name)
                }
            }
        }
        PbrAction::DeleteRule(r, rule) => {
            let t = find_table(state, r)?;
            let before = s.rules.len();
            s.rules
                .retain(|x| !(x.table == t.id && x.rule.same_selector(rule) && rule.pref.is_none_or(|p| p == x.pref)));
            if s.rules.len() == before {
                format!("no rule {} lookup {}", rule.selector(), t.name)
            } else {
                format!("rule {} lookup {} deleted", rule.selector(), t.name)
            }
        }
    };
    Ok((s, Value::String(msg)))
}

struct Ipv4CidrText(Ipv4Cidr);

impl std::fmt::Display for Ipv4CidrText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.0.addr, self.0.prefix)
    }
}

/// One compiled Logical_Router_Policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub priority: i64,
    pub matches: String,
    pub action: &'static str,
    pub nexthop: Option<std::net::Ipv4Addr>,
    pub table: String,
    pub rule: String,
    pub route: String,
}

impl Policy {
    /// Content-derived: any change of the policy is a new row.
    pub fn uuid(&self, rs: &RouterScope) -> Uuid {
        let nh = self.nexthop.map(|n| n.to_string()).unwrap_or_default();
        rs.owner.row_uuid(
            Kind::PbrPolicy,
            &format!("{}/{}/{}/{}/{nh}", rs.name(), self.priority, self.matches, self.action),
        )
    }
}

/// The intersection of two prefixes (`None` = everything); `Err(())` when
/// they are disjoint.
fn narrower(a: Option<Ipv4Cidr>, b: Option<Ipv4Cidr>) -> std::result::Result<Option<Ipv4Cidr>, ()> {
    match (a, b) {
        (None, x) | (x, None) => Ok(x),
        (Some(a), Some(b)) if a.prefix >= b.prefix && b.contains(a.addr) => Ok(Some(a)),
        (Some(a), Some(b)) if b.prefix >= a.prefix && a.contains(b.addr) => Ok(Some(b)),
        _ => Err(()),
    }
}

fn some_prefix(c: Ipv4Cidr) -> Option<Ipv4Cidr> {
    (c.prefix > 0).then_some(c)
}

/// Every policy the state asks for, highest priority first.
pub fn compile(state: &PbrState) -> Vec<Policy> {
    let mut out = Vec::new();
    for (rank, r) in state.rules.iter().enumerate() {
        let table = state.table_name(r.table);
        for (_, route) in state.routes.iter().filter(|(t, _)| *t == r.table) {
            let Ok(dst) = narrower(r.rule.to, some_prefix(route.prefix)) else { continue };
            out.push(policy(rank, r, route, dst, &table));
        }
    }
    out.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.matches.cmp(&b.matches)));
    out
}

fn policy(rank: usize, r: &StoredRule, route: &Route, dst: Option<Ipv4Cidr>, table: &str) -> Policy {
    let mut clauses = Vec::new();
    if let Some(c) = r.rule.from {
        clauses.push(format!("ip4.src == {}", Ipv4CidrText(c)));
    }
    if let Some(c) = dst {
        clauses.push(format!("ip4.dst == {}", Ipv4CidrText(c)));
    }
    let matches = if clauses.is_empty() { "ip4".to_string() } else { clauses.join(" && ") };
    let (action, nexthop) = match route.target {
        Target::Drop(_) => ("drop", None),
        Target::Via(nh) => ("reroute", Some(nh)),
    };
    Policy {
        priority: TOP - rank as i64 * PER_RULE - (32 - i64::from(route.prefix.prefix)),
        matches,
        action,
        nexthop,
        table: table.to_string(),
        rule: format!("{}: {} lookup {table}", r.pref, r.rule.selector()),
        route: route.to_string(),
    }
}

fn policy_row(rs: &RouterScope, p: &Policy) -> Map<String, Value> {
    let mut ids = rs.ids(Kind::PbrPolicy);
    ids.insert(key::PBR_TABLE.into(), p.table.clone());
    ids.insert(key::PBR_RULE.into(), p.rule.clone());
    ids.insert(key::PBR_ROUTE.into(), p.route.clone());
    let mut row = Map::new();
    row.insert("priority".into(), json!(p.priority));
    row.insert("match".into(), json!(p.matches));
    row.insert("action".into(), json!(p.action));
    let nexthops: Vec<String> = p.nexthop.iter().map(|n| n.to_string()).collect();
    row.insert("nexthops".into(), string_set(nexthops.iter().map(String::as_str)));
    row.insert("external_ids".into(), string_map(&ids));
    row
}

/// Make the router's policies those of `new`, removing what `old` had
/// compiled to. Without the router (an isolated network not routed by us
/// yet) nothing is compiled; the router gets them when it is created.
pub fn converge_policies(
    plan: &mut Plan,
    rs: &RouterScope,
    old: &PbrState,
    new: &PbrState,
    obs: &Observed,
) -> Result<()> {
    let Some(router) = obs.router() else { return Ok(()) };
    if !rs.owner.owns(&router.external_ids) {
        return Err(Error::NotOwned { what: format!("Logical_Router {}", router.name) });
    }
    let want = compile(new);
    let want_uuids: Vec<Uuid> = want.iter().map(|p| p.uuid(rs)).collect();
    let stale: Vec<Uuid> = compile(old)
        .iter()
        .map(|p| p.uuid(rs))
        .filter(|u| router.policies.contains(u) && !want_uuids.contains(u))
        .collect();
    if !stale.is_empty() {
        plan.unlink(
            Parent::router(router.uuid, "policies"),
            &stale,
            format!("remove {} policy-routing policies from {}", stale.len(), router.name),
        );
    }
    let missing = want.iter().zip(want_uuids.iter().copied()).filter(|(_, u)| !router.policies.contains(u));
    for (p, u) in missing {
        plan.insert_child(
            table::LOGICAL_ROUTER_POLICY,
            u,
            policy_row(rs, p),
            Parent::router(router.uuid, "policies"),
            Existing::Read(router.name.clone()),
            format!("policy {} {} {} ({})", p.priority, p.matches, p.action, p.rule),
        );
    }
    Ok(())
}

/// Store `new` on the holder when it differs from `old`; the write is
/// guarded on the holder's `external_ids` as read, so two concurrent
/// actions never merge into a state neither asked for.
pub fn store(plan: &mut Plan, holder: &Holder, old: &PbrState, new: &PbrState, obs: &Observed) -> Result<()> {
    if old == new {
        return Ok(());
    }
    let (ids, uuid, name) = holder.ids(obs).ok_or_else(|| Error::Internal("PBR holder vanished".into()))?;
    let owner = match holder {
        Holder::Switch(s) => &s.owner,
        Holder::Router(r) => &r.owner,
    };
    if !owner.owns(ids) {
        return Err(Error::NotOwned { what: format!("{} {name}", holder.table()) });
    }
    plan.require_column(holder.table(), uuid, "external_ids", string_map(ids));
    let mut desired = std::collections::BTreeMap::new();
    if !new.is_empty() {
        desired.insert(key::PBR.to_string(), new.to_json());
    }
    let muts = map_mutations("external_ids", &desired, ids, |k| k == key::PBR);
    plan.mutate(holder.table(), uuid, muts, format!("store policy routing of {name}"));
    Ok(())
}

/// An isolated network's router was (re)created or converged: give it the
/// policies stored on the network's switch (restart with cleanup drops the
/// router, not the switch). Nothing to do for a VPC tier (its state lives
/// on the VPC router) or a network without PBR.
pub fn restore_network_policies(plan: &mut Plan, rs: &RouterScope, obs: &Observed) -> Result<()> {
    let Some(raw) = obs.switch().and_then(|sw| sw.external_ids.get(key::PBR)) else { return Ok(()) };
    let state = PbrState::from_json(key::PBR, raw)?;
    if obs.router().is_none() {
        // Created in this same plan: every policy is missing.
        let want = compile(&state);
        for p in &want {
            plan.insert_child(
                table::LOGICAL_ROUTER_POLICY,
                p.uuid(rs),
                policy_row(rs, p),
                Parent::router(rs.uuid(), "policies"),
                Existing::New,
                format!("restore policy {} {} {} ({})", p.priority, p.matches, p.action, p.rule),
            );
        }
        return Ok(());
    }
    converge_policies(plan, rs, &state, &state, obs)
}

/// One validated `pbr-*` action on one network or VPC: what `prepare`
/// makes of the payload before anything is read.
#[derive(Clone, Debug)]
pub struct PbrIntent {
    pub holder: Holder,
    pub rs: RouterScope,
    pub action: PbrAction,
}

/// Plan the action: the new state stored on the holder and compiled onto
/// the router, in one transaction (nothing for a list, or for an action
/// whose result is already there).
pub fn plan(intent: &PbrIntent, obs: &Observed, plan: &mut Plan) -> Result<()> {
    let old = stored(&intent.holder, obs)?;
    let (new, _) = apply(&old, &intent.action)?;
    store(plan, &intent.holder, &old, &new, obs)?;
    converge_policies(plan, &intent.rs, &old, &new, obs)?;
    next_hop_ports(plan, &intent.rs, &nexthops(&old), &nexthops(&new), obs)
}

/// Whether an action can change the set of next hops (and so needs the
/// network's VM ports read, see [`next_hop_ports`]).
pub fn may_change_next_hops(action: &PbrAction) -> bool {
    matches!(action, PbrAction::AddRoute(..) | PbrAction::DeleteRoute(..) | PbrAction::DeleteTable(_))
}

fn nexthops(state: &PbrState) -> BTreeSet<Ipv4Addr> {
    state
        .routes
        .iter()
        .filter_map(|(_, r)| match r.target {
            Target::Via(nh) => Some(nh),
            Target::Drop(_) => None,
        })
        .collect()
}

fn ipv4_of(port: &Port) -> Option<Ipv4Addr> {
    port.addresses.iter().find_map(|a| a.split_whitespace().skip(1).find_map(|w| w.parse().ok()))
}

/// A rerouted packet reaches the next hop with its original destination,
/// which OVN's IP port security (`"MAC IP"`) on a VM port drops. A VM of
/// ours that becomes a next hop (an appliance) gets MAC-only port security
/// and a marker the NIC commands honour; when it stops being one, its port
/// security is its address again. Only when the set of next hops changes.
fn next_hop_ports(
    plan: &mut Plan,
    rs: &RouterScope,
    old: &BTreeSet<Ipv4Addr>,
    new: &BTreeSet<Ipv4Addr>,
    obs: &Observed,
) -> Result<()> {
    if old == new {
        return Ok(());
    }
    let vms = obs.ports().iter().filter(|p| {
        rs.owner.owns(&p.external_ids) && p.external_ids.get(key::KIND).map(String::as_str) == Some(Kind::Nic.as_str())
    });
    for port in vms {
        let Some(ip) = ipv4_of(port) else { continue };
        let marked = port.external_ids.get(key::PBR_NEXTHOP).map(String::as_str) == Some("true");
        if new.contains(&ip) && !marked {
            let mac: Vec<&str> = port.addresses.iter().filter_map(|a| a.split_whitespace().next()).collect();
            let mut row = Map::new();
            row.insert("port_security".into(), string_set(mac));
            plan.update(
                table::LOGICAL_SWITCH_PORT,
                port.uuid,
                row,
                format!("next hop {ip}: port {} MAC-only", port.name),
            );
            let marker: BTreeMap<String, String> = [(key::PBR_NEXTHOP.to_string(), "true".to_string())].into();
            let muts = map_mutations("external_ids", &marker, &port.external_ids, |k| k == key::PBR_NEXTHOP);
            plan.mutate(table::LOGICAL_SWITCH_PORT, port.uuid, muts, format!("mark {} a next hop", port.name));
        } else if !new.contains(&ip) && marked {
            let mut row = Map::new();
            row.insert("port_security".into(), string_set(port.addresses.iter().map(String::as_str)));
            plan.update(
                table::LOGICAL_SWITCH_PORT,
                port.uuid,
                row,
                format!("port {} no next hop any more: port security back to its address", port.name),
            );
            let muts = map_mutations("external_ids", &BTreeMap::new(), &port.external_ids, |k| k == key::PBR_NEXTHOP);
            plan.mutate(table::LOGICAL_SWITCH_PORT, port.uuid, muts, format!("unmark {}", port.name));
        }
    }
    Ok(())
}

/// The message CloudStack shows for the action, from the same observed
/// state the plan was made against.
pub fn answer(intent: &PbrIntent, obs: &Observed) -> Result<Value> {
    let old = stored(&intent.holder, obs)?;
    Ok(apply(&old, &intent.action)?.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::pbr::{parse_route, parse_rule};

    fn state() -> PbrState {
        let mut s = PbrState::default();
        for a in [
            PbrAction::CreateTable(Table { id: 100, name: "app".into() }),
            PbrAction::AddRoute(TableRef::Name("app".into()), parse_route("blackhole 172.30.1.0/24").unwrap()),
            PbrAction::AddRoute(TableRef::Id(100), parse_route("172.30.1.128/25 via 10.1.1.30").unwrap()),
            PbrAction::AddRule(TableRef::Name("app".into()), parse_rule("to 172.30.0.0/16").unwrap()),
        ] {
            s = apply(&s, &a).unwrap().0;
        }
        s
    }

    #[test]
    fn rule_times_route_with_longest_prefix_first() {
        let p = compile(&state());
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].matches, "ip4.dst == 172.30.1.128/25");
        assert_eq!(p[0].action, "reroute");
        assert_eq!(p[1].matches, "ip4.dst == 172.30.1.0/24");
        assert!(p[0].priority > p[1].priority && p[0].priority <= TOP && p[1].priority >= FLOOR);
    }

    #[test]
    fn later_rules_without_priority_take_precedence_like_ip_rule() {
        let mut s = state();
        s = apply(&s, &PbrAction::AddRule(TableRef::Id(100), parse_rule("from 10.1.1.23").unwrap())).unwrap().0;
        assert_eq!(s.rules[0].pref, 32764);
        assert_eq!(s.rules[1].pref, 32765);
        let p = compile(&s);
        assert!(p[0].matches.starts_with("ip4.src == 10.1.1.23/32"), "{p:?}");
        // Disjoint selector and route compile to nothing.
        let mut d = PbrState::default();
        d.tables.push(Table { id: 1, name: "t".into() });
        d = apply(&d, &PbrAction::AddRoute(TableRef::Id(1), parse_route("blackhole 10.0.0.0/8").unwrap())).unwrap().0;
        d = apply(&d, &PbrAction::AddRule(TableRef::Id(1), parse_rule("to 192.168.0.0/16").unwrap())).unwrap().0;
        assert!(compile(&d).is_empty());
    }

    #[test]
    fn actions_are_idempotent_and_validated() {
        let s = state();
        for a in [
            PbrAction::CreateTable(Table { id: 100, name: "app".into() }),
            PbrAction::AddRoute(TableRef::Id(100), parse_route("blackhole 172.30.1.0/24").unwrap()),
            PbrAction::AddRule(TableRef::Id(100), parse_rule("to 172.30.0.0/16").unwrap()),
            PbrAction::DeleteRule(TableRef::Id(100), parse_rule("to 10.0.0.0/8").unwrap()),
        ] {
            assert_eq!(apply(&s, &a).unwrap().0, s, "{a:?}");
        }
        assert!(apply(&s, &PbrAction::CreateTable(Table { id: 100, name: "other".into() })).is_err());
        assert!(apply(&s, &PbrAction::CreateTable(Table { id: 101, name: "app".into() })).is_err());
        assert!(apply(
            &s,
            &PbrAction::AddRoute(TableRef::Name("nope".into()), parse_route("blackhole 1.0.0.0/8").unwrap())
        )
        .is_err());
        let e =
            apply(&s, &PbrAction::DeleteRoute(TableRef::Id(100), parse_route("unreachable 172.30.1.0/24").unwrap()));
        assert!(e.is_err());
        let (gone, _) = apply(&s, &PbrAction::DeleteTable(TableRef::Name("app".into()))).unwrap();
        assert!(gone.is_empty());
    }

    /// Planned against hand-built rows: the first run writes state and
    /// policy, the converged NB plans nothing, a foreign router is refused.
    #[test]
    fn plans_against_observed_rows() {
        use crate::nb::ids::{Owner, RouterOf};
        use crate::nb::rows::{Router, Switch};
        use crate::observe::Read;
        let owner = Owner("cloudstack".into());
        let scope = Scope { owner: owner.clone(), network_id: 42, zone_id: None, vpc_id: None };
        let rs = RouterScope { owner: owner.clone(), of: RouterOf::Network(42), zone_id: None };
        let ours: std::collections::BTreeMap<String, String> =
            [(key::OWNER.to_string(), "cloudstack".to_string())].into();
        let full = state();
        let observed = |policies: Vec<Uuid>, router_ids: std::collections::BTreeMap<String, String>| {
            let mut switch_ids = ours.clone();
            switch_ids.insert(key::PBR.into(), full.to_json());
            Observed {
                switch: Read::found(Switch {
                    uuid: scope.switch_uuid(),
                    name: scope.switch_name(),
                    ports: vec![],
                    dns_records: vec![],
                    load_balancer: vec![],
                    external_ids: switch_ids,
                }),
                router: Read::found(Router {
                    uuid: rs.uuid(),
                    name: rs.name(),
                    ports: vec![],
                    nat: vec![],
                    static_routes: vec![],
                    load_balancer: vec![],
                    policies,
                    options: Default::default(),
                    external_ids: router_ids,
                }),
                ..Observed::default()
            }
        };
        let intent = |action| PbrIntent { holder: Holder::Switch(scope.clone()), rs: rs.clone(), action };
        // Stored but not compiled yet (router re-created): the add re-creates the policies.
        let add = intent(PbrAction::AddRule(TableRef::Id(100), parse_rule("to 172.30.0.0/16").unwrap()));
        let obs = observed(vec![], ours.clone());
        let mut p = Plan::default();
        plan(&add, &obs, &mut p).unwrap();
        assert_eq!(p.changes.iter().filter(|c| c.starts_with("insert policy")).count(), 2, "{:?}", p.changes);
        // Converged: nothing to do, and the answer says it exists.
        let compiled: Vec<Uuid> = compile(&full).iter().map(|x| x.uuid(&rs)).collect();
        let obs = observed(compiled.clone(), ours.clone());
        let mut p = Plan::default();
        plan(&add, &obs, &mut p).unwrap();
        assert!(p.is_empty(), "{:?}", p.changes);
        assert!(answer(&add, &obs).unwrap().as_str().unwrap().contains("already exists"));
        // Deleting the rule removes both policies and rewrites the state.
        let del = intent(PbrAction::DeleteRule(TableRef::Id(100), parse_rule("to 172.30.0.0/16").unwrap()));
        let mut p = Plan::default();
        plan(&del, &obs, &mut p).unwrap();
        assert!(p.changes.iter().any(|c| c.contains("remove 2 policy-routing policies")), "{:?}", p.changes);
        // A router that is not ours is never touched.
        let obs = observed(compiled, Default::default());
        assert!(matches!(plan(&del, &obs, &mut Plan::default()), Err(Error::NotOwned { .. })));
    }
}
