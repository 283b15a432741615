//! Policy-based routing as the reference extension offers it (`pbr-*`
//! custom actions, iproute2 syntax), validated into typed values before we
//! connect: routing tables, their routes, and the rules that send traffic
//! to a table. [`PbrState`] is also the form stored in the NB (one
//! `external_ids` value), re-read with the same parsers.
//!
//! Only what OVN's Logical_Router_Policy can express is accepted: a route
//! is a prefix that is dropped (`blackhole`, `unreachable`, `prohibit`) or
//! sent to a next hop (`via`); a rule selects by source and/or destination
//! prefix. Anything else (`dev`, `table`, `fwmark`, `iif`, `metric`, …) is
//! refused with the reason, so an operator never gets a silently different
//! behaviour from the Linux reference.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use serde_json::{json, Value};

use super::types::Ipv4Cidr;
use crate::error::{Error, Result};

/// iproute2's reserved tables (`unspec`, `default`, `main`, `local`).
const RESERVED_IDS: &[u32] = &[0, 253, 254, 255];
const RESERVED_NAMES: &[&str] = &["unspec", "default", "main", "local", "all"];
/// `ip rule` preferences: 0 is the local table's, 32766/32767 main's and default's.
pub const MAX_PREF: u32 = 32765;
/// Bounds that keep the stored value and the compiled policy set small.
pub const MAX_TABLES: usize = 64;
pub const MAX_ROUTES: usize = 256;
pub const MAX_RULES: usize = 128;

/// A table as the parameters name it: by number or by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableRef {
    Id(u32),
    Name(String),
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableRef::Id(i) => write!(f, "{i}"),
            TableRef::Name(n) => f.write_str(n),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Table {
    pub id: u32,
    pub name: String,
}

/// What a route does with the packets of its prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// `blackhole`, `unreachable`, `prohibit`: all become an OVN `drop`
    /// (OVN policies cannot answer with ICMP errors).
    Drop(DropKind),
    Via(Ipv4Addr),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DropKind {
    Blackhole,
    Unreachable,
    Prohibit,
}

impl DropKind {
    fn as_str(self) -> &'static str {
        match self {
            DropKind::Blackhole => "blackhole",
            DropKind::Unreachable => "unreachable",
            DropKind::Prohibit => "prohibit",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub prefix: Ipv4Cidr,
    pub target: Target,
}

fn cidr_text(c: &Ipv4Cidr) -> String {
    if c.prefix == 0 {
        "default".into()
    } else {
        format!("{}/{}", c.addr, c.prefix)
    }
}

impl fmt::Display for Route {
    /// As `ip route show table T` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.target {
            Target::Drop(k) => write!(f, "{} {}", k.as_str(), cidr_text(&self.prefix)),
            Target::Via(nh) => write!(f, "{} via {nh}", cidr_text(&self.prefix)),
        }
    }
}

/// A rule's selector (`from`/`to`, `None` = all) and optional preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub from: Option<Ipv4Cidr>,
    pub to: Option<Ipv4Cidr>,
    pub pref: Option<u32>,
}

impl Rule {
    /// `from all to 172.30.1.0/24`, as `ip rule show` prints the selector.
    pub fn selector(&self) -> String {
        let mut s = match &self.from {
            Some(c) => format!("from {}", host_or_cidr(c)),
            None => "from all".into(),
        };
        if let Some(c) = &self.to {
            s.push_str(&format!(" to {}", host_or_cidr(c)));
        }
        s
    }

    pub fn same_selector(&self, other: &Rule) -> bool {
        self.from == other.from && self.to == other.to
    }
}

fn host_or_cidr(c: &Ipv4Cidr) -> String {
    if c.prefix == 32 {
        c.addr.to_string()
    } else {
        format!("{}/{}", c.addr, c.prefix)
    }
}

/// Words iproute2 knows that OVN policies cannot honour, with why.
fn unsupported(word: &str) -> Option<&'static str> {
    Some(match word {
        "dev" | "oif" | "iif" | "oifname" | "iifname" => "interfaces do not exist on OVN: name a next hop with via",
        "table" | "lookup" => "the table is the separate parameter `table`; nested table lookups are not supported",
        "fwmark" | "mark" => "OVN has no packet marks",
        "tos" | "dsfield" => "TOS selectors are not supported",
        "metric" => "route metrics are not supported: one route per prefix and table",
        "src" | "proto" | "protocol" | "scope" | "onlink" | "mtu" | "realm" | "realms" | "nat" => {
            "this route attribute has no OVN equivalent"
        }
        "throw" | "local" | "broadcast" | "multicast" | "anycast" | "nat-rule" => {
            "this route type has no OVN equivalent"
        }
        "sport"
        | "dport"
        | "ipproto"
        | "uidrange"
        | "l3mdev"
        | "suppress_prefixlength"
        | "suppress_ifgroup"
        | "goto"
        | "not" => "this rule selector is not supported",
        _ => return None,
    })
}

fn route_error(raw: &str, why: impl Into<String>) -> Error {
    Error::field("route", format!("{raw:?}: {}", why.into()))
}

fn rule_error(raw: &str, why: impl Into<String>) -> Error {
    Error::field("rule", format!("{raw:?}: {}", why.into()))
}

/// `default`, `a.b.c.d/n` (host bits must be clear, as `ip route` demands)
/// or a bare address (/32).
fn prefix(raw_route: &str, word: &str) -> Result<Ipv4Cidr> {
    if word == "default" || word == "0/0" {
        return Ok(Ipv4Cidr { addr: Ipv4Addr::UNSPECIFIED, prefix: 0 });
    }
    let c = if word.contains('/') {
        Ipv4Cidr::parse("route", word).map_err(|_| route_error(raw_route, format!("{word:?} is not an IPv4 prefix")))?
    } else {
        let addr: Ipv4Addr =
            word.parse().map_err(|_| route_error(raw_route, format!("{word:?} is not an IPv4 prefix")))?;
        Ipv4Cidr { addr, prefix: 32 }
    };
    if c.network() != c {
        return Err(route_error(raw_route, format!("{word} has host bits set (did you mean {}?)", c.network())));
    }
    Ok(c)
}

/// `blackhole|unreachable|prohibit <prefix>`, `<prefix> via <ip>`,
/// `default via <ip>`.
pub fn parse_route(raw: &str) -> Result<Route> {
    let words: Vec<&str> = raw.split_whitespace().collect();
    if words.is_empty() {
        return Err(Error::field("route", "empty route"));
    }
    if let Some(why) = words.iter().find_map(|w| unsupported(w).map(|why| (w, why))) {
        return Err(route_error(raw, format!("`{}` cannot be expressed on OVN ({})", why.0, why.1)));
    }
    let kind = match words[0] {
        "blackhole" => Some(DropKind::Blackhole),
        "unreachable" => Some(DropKind::Unreachable),
        "prohibit" => Some(DropKind::Prohibit),
        _ => None,
    };
    match (kind, words.as_slice()) {
        (Some(k), [_, p]) => Ok(Route { prefix: prefix(raw, p)?, target: Target::Drop(k) }),
        (Some(_), _) => Err(route_error(raw, "expected `<type> <prefix>`")),
        (None, [p, "via", nh]) => {
            let nh = nh.strip_prefix("inet ").unwrap_or(nh);
            let nexthop: Ipv4Addr =
                nh.parse().map_err(|_| route_error(raw, format!("next hop {nh:?} is not an IPv4 address")))?;
            if nexthop.is_unspecified() || nexthop.is_broadcast() || nexthop.is_multicast() {
                return Err(route_error(raw, format!("next hop {nexthop} is not a unicast address")));
            }
            Ok(Route { prefix: prefix(raw, p)?, target: Target::Via(nexthop) })
        }
        _ => Err(route_error(
            raw,
            "expected `blackhole|unreachable|prohibit <prefix>`, `<prefix> via <ip>` or `default via <ip>`",
        )),
    }
}

fn rule_prefix(raw: &str, word: &str) -> Result<Option<Ipv4Cidr>> {
    if word == "all" || word == "0/0" || word == "0.0.0.0/0" || word == "default" {
        return Ok(None);
    }
    let c = if word.contains('/') {
        Ipv4Cidr::parse("rule", word).map_err(|_| rule_error(raw, format!("{word:?} is not an IPv4 prefix")))?
    } else {
        let addr: Ipv4Addr = word.parse().map_err(|_| rule_error(raw, format!("{word:?} is not an IPv4 prefix")))?;
        Ipv4Cidr { addr, prefix: 32 }
    };
    // `ip rule` masks host bits itself.
    Ok(Some(c.network()))
}

fn pref(field: &str, raw: &str) -> Result<u32> {
    raw.parse::<u32>()
        .ok()
        .filter(|p| (1..=MAX_PREF).contains(p))
        .ok_or_else(|| Error::field(field, format!("priority must be 1-{MAX_PREF}, got {raw:?}")))
}

/// `[from <prefix|all>] [to <prefix|all>] [priority|pref|preference <n>]`.
pub fn parse_rule(raw: &str) -> Result<Rule> {
    let words: Vec<&str> = raw.split_whitespace().collect();
    if words.is_empty() {
        return Err(Error::field("rule", "empty rule"));
    }
    let mut rule = Rule { from: None, to: None, pref: None };
    let (mut seen_from, mut seen_to) = (false, false);
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        if let Some(why) = unsupported(w) {
            return Err(rule_error(raw, format!("`{w}` cannot be expressed on OVN ({why})")));
        }
        let arg = words.get(i + 1).ok_or_else(|| rule_error(raw, format!("`{w}` needs a value")))?;
        match w {
            "from" if !seen_from => (rule.from, seen_from) = (rule_prefix(raw, arg)?, true),
            "to" if !seen_to => (rule.to, seen_to) = (rule_prefix(raw, arg)?, true),
            "priority" | "pref" | "order" if rule.pref.is_none() => rule.pref = Some(pref("rule", arg)?),
            _ => return Err(rule_error(raw, format!("unexpected `{w}`; expected from, to or priority"))),
        }
        i += 2;
    }
    if !seen_from && !seen_to {
        return Err(rule_error(raw, "a rule needs `from <prefix>` and/or `to <prefix>`"));
    }
    Ok(rule)
}

fn table_name(field: &str, raw: &str) -> Result<String> {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !raw.bytes().all(|b| b.is_ascii_digit());
    if !ok {
        return Err(Error::field(
            field,
            format!("expected a table name of letters, digits, - _ . (not only digits), got {raw:?}"),
        ));
    }
    if RESERVED_NAMES.contains(&raw) {
        return Err(Error::field(field, format!("{raw:?} is a reserved iproute2 table")));
    }
    Ok(raw.to_string())
}

fn table_id(field: &str, raw: &str) -> Result<u32> {
    let id = raw
        .parse::<u32>()
        .ok()
        .filter(|n| *n >= 1 && *n <= i32::MAX as u32)
        .ok_or_else(|| Error::field(field, format!("expected a table number 1-{}, got {raw:?}", i32::MAX)))?;
    if RESERVED_IDS.contains(&id) {
        return Err(Error::field(
            field,
            format!("table {id} is reserved by iproute2 (253 default, 254 main, 255 local)"),
        ));
    }
    Ok(id)
}

fn table_ref(field: &str, raw: &str) -> Result<TableRef> {
    if raw.bytes().all(|b| b.is_ascii_digit()) && !raw.is_empty() {
        Ok(TableRef::Id(table_id(field, raw)?))
    } else {
        Ok(TableRef::Name(table_name(field, raw)?))
    }
}

/// A validated `pbr-*` action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PbrAction {
    CreateTable(Table),
    DeleteTable(TableRef),
    ListTables,
    AddRoute(TableRef, Route),
    DeleteRoute(TableRef, Route),
    ListRoutes(Option<TableRef>),
    AddRule(TableRef, Rule),
    DeleteRule(TableRef, Rule),
    ListRules(Option<TableRef>),
}

impl PbrAction {
    pub fn writes(&self) -> bool {
        !matches!(self, PbrAction::ListTables | PbrAction::ListRoutes(_) | PbrAction::ListRules(_))
    }
}

/// `action-params` with keys normalised (`table_id` = `table-id`, any
/// case) and scalar values as strings (CloudStack sends strings; numbers
/// and booleans are accepted too).
#[derive(Clone, Debug, Default)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    pub fn from_value(v: Option<&Value>) -> Result<Params> {
        let mut out = BTreeMap::new();
        match v {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let text = match v {
                        Value::String(s) => s.trim().to_string(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Null => continue,
                        _ => {
                            return Err(Error::field(
                                "action-params",
                                format!("{k}: expected a string, number or boolean"),
                            ))
                        }
                    };
                    out.insert(k.trim().to_ascii_lowercase().replace('_', "-"), text);
                }
            }
            Some(_) => return Err(Error::field("action-params", "expected a JSON object")),
        }
        Ok(Params(out))
    }

    /// The first non-empty value among `keys` (aliases, preferred first).
    pub fn get(&self, keys: &[&str]) -> Option<&str> {
        keys.iter().find_map(|k| self.0.get(*k).map(String::as_str).filter(|s| !s.is_empty()))
    }

    pub fn require(&self, keys: &[&str]) -> Result<&str> {
        self.get(keys).ok_or_else(|| Error::Missing(format!("action parameter {}", keys[0])))
    }
}

const TABLE_KEYS: &[&str] = &["table", "table-name", "table-id", "name", "id"];

impl PbrAction {
    /// `None` when `action` is not a PBR action.
    pub fn parse(action: &str, p: &Params) -> Option<Result<PbrAction>> {
        let table = |keys: &[&str]| -> Result<TableRef> {
            let raw = p.require(keys)?;
            table_ref(keys[0], raw)
        };
        let optional_table =
            || -> Result<Option<TableRef>> { p.get(TABLE_KEYS).map(|raw| table_ref("table", raw)).transpose() };
        let route = || parse_route(p.require(&["route"])?);
        let rule = || -> Result<Rule> {
            let mut r = parse_rule(p.require(&["rule"])?)?;
            if let Some(raw) = p.get(&["priority", "pref", "preference"]) {
                let given = pref("priority", raw)?;
                if r.pref.is_some_and(|x| x != given) {
                    return Err(Error::field("priority", "differs from the priority inside the rule"));
                }
                r.pref = Some(given);
            }
            Ok(r)
        };
        let parsed = match action {
            "pbr-create-table" => (|| {
                Ok(PbrAction::CreateTable(Table {
                    id: table_id("table-id", p.require(&["table-id", "id", "table"])?)?,
                    name: table_name("table-name", p.require(&["table-name", "name"])?)?,
                }))
            })(),
            "pbr-delete-table" => table(&["table-name", "name", "table", "table-id", "id"]).map(PbrAction::DeleteTable),
            "pbr-list-tables" => Ok(PbrAction::ListTables),
            "pbr-add-route" => (|| Ok(PbrAction::AddRoute(table(TABLE_KEYS)?, route()?)))(),
            "pbr-delete-route" => (|| Ok(PbrAction::DeleteRoute(table(TABLE_KEYS)?, route()?)))(),
            "pbr-list-routes" => optional_table().map(PbrAction::ListRoutes),
            "pbr-add-rule" => (|| Ok(PbrAction::AddRule(table(TABLE_KEYS)?, rule()?)))(),
            "pbr-delete-rule" => (|| Ok(PbrAction::DeleteRule(table(TABLE_KEYS)?, rule()?)))(),
            "pbr-list-rules" => optional_table().map(PbrAction::ListRules),
            _ => return None,
        };
        Some(parsed)
    }
}

/// A rule as stored: its preference is always set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredRule {
    pub pref: u32,
    pub table: u32,
    pub rule: Rule,
}

/// Every table, route and rule of one network or VPC. Stored as compact
/// JSON in one `external_ids` value; ordered so equal states serialise
/// equally (idempotency compares them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PbrState {
    pub tables: Vec<Table>,
    /// (table id, route), sorted.
    pub routes: Vec<(u32, Route)>,
    /// Highest precedence (lowest preference) first; equal preferences in
    /// the order they were added, as the kernel evaluates them.
    pub rules: Vec<StoredRule>,
}

impl PbrState {
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty() && self.routes.is_empty() && self.rules.is_empty()
    }

    pub fn table(&self, r: &TableRef) -> Option<&Table> {
        self.tables.iter().find(|t| match r {
            TableRef::Id(i) => t.id == *i,
            TableRef::Name(n) => t.name == *n,
        })
    }

    pub fn table_name(&self, id: u32) -> String {
        self.tables.iter().find(|t| t.id == id).map(|t| t.name.clone()).unwrap_or_else(|| id.to_string())
    }

    pub fn to_json(&self) -> String {
        let routes: Vec<Value> = self.routes.iter().map(|(t, r)| json!([t, r.to_string()])).collect();
        let rules: Vec<Value> = self.rules.iter().map(|r| json!([r.pref, r.table, r.rule.selector()])).collect();
        let tables: Vec<Value> = self.tables.iter().map(|t| json!([t.id, t.name])).collect();
        json!({"v": 1, "tables": tables, "routes": routes, "rules": rules}).to_string()
    }

    /// Parse what [`PbrState::to_json`] stored (`key` names it in errors).
    pub fn from_json(key: &str, raw: &str) -> Result<PbrState> {
        let bad = |why: &str| Error::Internal(format!("stored {key} is unreadable ({why}): {raw}"));
        let v: Value = serde_json::from_str(raw).map_err(|_| bad("not JSON"))?;
        let list = |k: &str| v.get(k).and_then(Value::as_array).cloned().unwrap_or_default();
        let mut s = PbrState::default();
        for t in list("tables") {
            let id = t.get(0).and_then(Value::as_u64).ok_or_else(|| bad("table id"))? as u32;
            let name = t.get(1).and_then(Value::as_str).ok_or_else(|| bad("table name"))?.to_string();
            s.tables.push(Table { id, name });
        }
        for r in list("routes") {
            let t = r.get(0).and_then(Value::as_u64).ok_or_else(|| bad("route table"))? as u32;
            let route = parse_route(r.get(1).and_then(Value::as_str).ok_or_else(|| bad("route"))?)?;
            s.routes.push((t, route));
        }
        for r in list("rules") {
            let pref = r.get(0).and_then(Value::as_u64).ok_or_else(|| bad("rule priority"))? as u32;
            let table = r.get(1).and_then(Value::as_u64).ok_or_else(|| bad("rule table"))? as u32;
            let rule = parse_rule(r.get(2).and_then(Value::as_str).ok_or_else(|| bad("rule"))?)?;
            s.rules.push(StoredRule { pref, table, rule: Rule { pref: Some(pref), ..rule } });
        }
        Ok(s)
    }

    /// `[{id, name}]`.
    pub fn list_tables(&self) -> Value {
        Value::Array(self.tables.iter().map(|t| json!({"id": t.id.to_string(), "name": t.name})).collect())
    }

    /// `[{table, route}]`, as `ip route show table T` lines.
    pub fn list_routes(&self, only: Option<u32>) -> Value {
        let items = self
            .routes
            .iter()
            .filter(|(t, _)| only.is_none_or(|o| o == *t))
            .map(|(t, r)| json!({"table": self.table_name(*t), "route": r.to_string()}));
        Value::Array(items.collect())
    }

    /// `[{priority, table, rule}]`, `rule` as `ip rule show` prints it.
    pub fn list_rules(&self, only: Option<u32>) -> Value {
        let items = self.rules.iter().filter(|r| only.is_none_or(|o| o == r.table)).map(|r| {
            let table = self.table_name(r.table);
            json!({"priority": r.pref, "table": table,
                   "rule": format!("{}: {} lookup {table}", r.pref, r.rule.selector())})
        });
        Value::Array(items.collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_in_iproute2_syntax() {
        let r = parse_route("blackhole 172.30.1.0/24").unwrap();
        assert_eq!(r.to_string(), "blackhole 172.30.1.0/24");
        assert_eq!(parse_route("default via 10.1.1.30").unwrap().to_string(), "default via 10.1.1.30");
        assert_eq!(parse_route("0.0.0.0/0 via 10.1.1.30").unwrap().to_string(), "default via 10.1.1.30");
        assert_eq!(parse_route("172.30.1.0/24  via 10.1.1.30").unwrap().to_string(), "172.30.1.0/24 via 10.1.1.30");
        assert_eq!(parse_route("unreachable 10.9.9.9").unwrap().prefix.prefix, 32);
        for bad in [
            "172.30.1.0/24 dev eth0",
            "172.30.1.0/24 via 10.1.1.1 dev eth1",
            "default via 10.1.1.1 table 100",
            "blackhole 172.30.1.5/24",
            "throw 10.0.0.0/8",
            "10.0.0.0/8",
            "blackhole",
            "2001:db8::/32 via fe80::1",
            "10.0.0.0/8 via 224.0.0.1",
            "10.0.0.0/8 via 10.1.1.1 metric 5",
        ] {
            assert!(parse_route(bad).is_err(), "{bad}");
        }
        let e = parse_route("172.30.1.0/24 dev eth0").unwrap_err().to_string();
        assert!(e.contains("`dev` cannot be expressed on OVN"), "{e}");
    }

    #[test]
    fn rules_in_iproute2_syntax() {
        let r = parse_rule("to 172.30.1.0/24").unwrap();
        assert_eq!(r.selector(), "from all to 172.30.1.0/24");
        let r = parse_rule("from 10.1.1.23 to 172.30.1.7/24 priority 100").unwrap();
        assert_eq!(r.selector(), "from 10.1.1.23 to 172.30.1.0/24");
        assert_eq!(r.pref, Some(100));
        assert_eq!(parse_rule("from all").unwrap().selector(), "from all");
        for bad in [
            "fwmark 1",
            "from 10.0.0.0/8 iif eth0",
            "to 1.2.3.0/24 lookup 100",
            "priority 5",
            "to",
            "from x",
            "to 1.2.3.4 pref 0",
            "from 1.1.1.1 from 2.2.2.2",
        ] {
            assert!(parse_rule(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parameters_and_aliases() {
        let p = Params::from_value(Some(&json!({"table_id": 100, "Table_Name": "app-1"}))).unwrap();
        assert_eq!(
            PbrAction::parse("pbr-create-table", &p).unwrap().unwrap(),
            PbrAction::CreateTable(Table { id: 100, name: "app-1".into() })
        );
        let p = Params::from_value(Some(&json!({"id": "7", "name": "x"}))).unwrap();
        assert!(matches!(PbrAction::parse("pbr-create-table", &p), Some(Ok(_))));
        let p = Params::from_value(Some(&json!({"table-id": "254", "table-name": "x"}))).unwrap();
        assert!(PbrAction::parse("pbr-create-table", &p).unwrap().is_err());
        let p = Params::from_value(Some(&json!({"table-id": "5", "table-name": "main"}))).unwrap();
        assert!(PbrAction::parse("pbr-create-table", &p).unwrap().is_err());
        let p = Params::from_value(Some(&json!({"table": "100", "route": "blackhole 10.0.0.0/8"}))).unwrap();
        assert!(matches!(PbrAction::parse("pbr-add-route", &p), Some(Ok(PbrAction::AddRoute(TableRef::Id(100), _)))));
        assert!(PbrAction::parse("reboot-device", &p).is_none());
        assert!(Params::from_value(Some(&json!({"a": [1]}))).is_err());
        let p = Params::from_value(None).unwrap();
        assert!(PbrAction::parse("pbr-add-rule", &p).unwrap().is_err());
        assert_eq!(PbrAction::parse("pbr-list-rules", &p).unwrap().unwrap(), PbrAction::ListRules(None));
    }

    #[test]
    fn state_round_trips() {
        let mut s = PbrState::default();
        s.tables.push(Table { id: 100, name: "app".into() });
        s.routes.push((100, parse_route("blackhole 172.30.1.0/24").unwrap()));
        let rule = parse_rule("to 172.30.1.0/24").unwrap();
        s.rules.push(StoredRule { pref: 32765, table: 100, rule: Rule { pref: Some(32765), ..rule } });
        let back = PbrState::from_json("k", &s.to_json()).unwrap();
        assert_eq!(back, s);
        assert_eq!(s.list_rules(None)[0]["rule"], "32765: from all to 172.30.1.0/24 lookup app");
        assert_eq!(s.list_routes(Some(100))[0]["route"], "blackhole 172.30.1.0/24");
        assert_eq!(s.list_tables()[0]["name"], "app");
    }
}
