//! Audit: find rows of ours that are orphaned, duplicated or not where our
//! naming model puts them, and rows that look like ours but are not.
//! Pure: the operator command reads the tables (all in one read-only
//! transaction, so the rows form one consistent snapshot) and applies the
//! repairs.
//!
//! Every row we create has a UUID derived from its identity (owner, kind,
//! CloudStack ids), so "the row this identity should be" is computable:
//! - a row of ours at another UUID, while the right UUID exists, is a
//!   duplicate (repair: delete it);
//! - at another UUID with no row at the right one, it is misplaced (made by
//!   hand or by an older tool): reported only, since deleting it could cut
//!   running VMs off; the next CloudStack command for it recreates it;
//! - a network's DHCP, DNS, port group or router whose switch is gone, a
//!   per-NIC DHCP row whose NIC port is gone, and a Load_Balancer whose
//!   router is gone, are orphans (repair: delete; OVN never
//!   garbage-collects these root rows);
//! - a public switch with no router left is an orphan too;
//! - a router-type switch port of ours whose router port is gone is
//!   dangling (repair: unlink it from its switch);
//! - switches and routers named like ours without our owner tag are
//!   foreign: reported, never touched.
//!
//! Every repair carries `wait` guards (RFC 7047 §5.2.6) that the reason it
//! was found still holds when it commits: the missing parent is still
//! missing, the row is unchanged. A network created between the read and
//! the repair makes the guard fail, and the repair is skipped (the caller
//! re-audits) instead of deleting a live row.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::nb::ids::{expected_uuid, lb_router_uuid, network_switch_uuid, nic_port_uuid, PublicNet};
use crate::nb::{key, table, Owner};
use crate::ovsdb::value::{string_map, uuid_set};
use crate::ovsdb::{Condition, Mutation, Mutator, Operation, WaitUntil};

/// One row as the audit reads it: uuid, name (if the table has one),
/// external_ids, and the columns that matter (`ports`; a switch port's
/// `type` and `options`).
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub table: &'static str,
    pub uuid: Uuid,
    pub name: String,
    pub external_ids: BTreeMap<String, String>,
    pub ports: Vec<Uuid>,
    pub lsp_type: String,
    pub options: BTreeMap<String, String>,
    /// Rows it holds that go with it when it is deleted, by column
    /// (`ports`, `acls`, `nat`, `static_routes`), where read.
    pub children: BTreeMap<&'static str, Vec<Uuid>>,
}

/// Columns holding rows that a delete of their parent takes along.
pub const CHILD_COLUMNS: &[&str] = &["ports", "acls", "nat", "static_routes"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Problem {
    Orphan,
    Duplicate,
    Dangling,
    Misplaced,
    Foreign,
}

impl Problem {
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::Orphan => "orphan",
            Problem::Duplicate => "duplicate",
            Problem::Dangling => "dangling",
            Problem::Misplaced => "misplaced",
            Problem::Foreign => "foreign",
        }
    }

    /// Whether `--repair` repairs rows with this problem.
    pub fn repairable(self) -> bool {
        matches!(self, Problem::Orphan | Problem::Duplicate | Problem::Dangling)
    }
}

#[derive(Clone, Debug)]
pub struct Finding {
    pub problem: Problem,
    pub table: &'static str,
    pub uuid: Uuid,
    pub name: String,
    pub detail: String,
    /// The guarded repair: `wait`s that the finding still holds, then the
    /// change. Empty when the problem is not repaired.
    pub repair: Vec<Operation>,
}

fn wait(table: &str, conditions: Vec<Condition>, until: WaitUntil, rows: Vec<Map<String, Value>>) -> Operation {
    Operation::Wait {
        table: table.into(),
        conditions,
        columns: vec!["external_ids".into()],
        until,
        rows,
        timeout_ms: Some(0),
    }
}

/// Fail unless the row `uuid` of `table` is still absent.
fn still_absent(table: &str, uuid: Uuid) -> Operation {
    wait(table, vec![Condition::uuid_is(uuid)], WaitUntil::Equal, vec![])
}

/// Fail unless the row `uuid` of `table` still exists.
fn still_present(table: &str, uuid: Uuid) -> Operation {
    wait(table, vec![Condition::uuid_is(uuid)], WaitUntil::NotEqual, vec![])
}

/// Fail unless the row is exactly as read (the columns the audit judged).
fn unchanged(r: &Row) -> Operation {
    let mut row = Map::new();
    let mut columns = vec!["external_ids".to_string()];
    row.insert("external_ids".into(), string_map(&r.external_ids));
    for (column, uuids) in &r.children {
        columns.push(column.to_string());
        row.insert(column.to_string(), uuid_set(uuids.iter().copied()));
    }
    if r.table == table::LOGICAL_SWITCH_PORT {
        columns.push("options".into());
        row.insert("options".into(), string_map(&r.options));
    }
    Operation::Wait {
        table: r.table.into(),
        conditions: vec![Condition::uuid_is(r.uuid)],
        columns,
        until: WaitUntil::Equal,
        rows: vec![row],
        timeout_ms: Some(0),
    }
}

fn delete(r: &Row) -> Operation {
    Operation::Delete { table: r.table.into(), conditions: vec![Condition::uuid_is(r.uuid)] }
}

fn looks_like_ours(owner: &Owner, row: &Row) -> bool {
    // Another installation's rows (another `cloudstack:owner`, names
    // `cs-<owner>-…`) share the NB by design: not look-alikes.
    if row.external_ids.contains_key(key::OWNER) {
        return false;
    }
    let prefix = owner.name_prefix();
    ["net-", "router-", "vpc-", "public-"].iter().any(|p| row.name.starts_with(&format!("{prefix}{p}")))
        || row.external_ids.keys().any(|k| k.starts_with("cloudstack:"))
}

/// Analyse one consistent snapshot of the rows. `rows` holds, per table,
/// the rows of ours and (for switches and routers) the look-alikes, and
/// the names of every Logical_Router_Port (to judge router-type ports).
pub fn audit(owner: &Owner, rows: &[Row]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let present: BTreeSet<Uuid> = rows.iter().map(|r| r.uuid).collect();
    let router_ports: BTreeSet<&str> =
        rows.iter().filter(|r| r.table == table::LOGICAL_ROUTER_PORT).map(|r| r.name.as_str()).collect();
    let ours = |r: &Row| owner.owns(&r.external_ids);
    let our_rows: BTreeSet<Uuid> = rows.iter().filter(|r| ours(r)).map(|r| r.uuid).collect();
    let switch_of = |n: &str| network_switch_uuid(owner, n);
    let mut find = |problem, r: &Row, mut detail: String, guards: Vec<Operation>, change: Option<Operation>| {
        let mut repair = Vec::new();
        // Deleting a row takes the rows it holds along: never one not ours.
        let foreign: Vec<String> =
            r.children.values().flatten().filter(|u| !our_rows.contains(u)).map(Uuid::to_string).collect();
        let deletes = matches!(change, Some(Operation::Delete { .. }));
        if deletes && !foreign.is_empty() {
            detail.push_str(&format!(
                "; not repaired: it holds rows not ours ({}), remove them first",
                foreign.join(", ")
            ));
        } else if let (true, Some(change)) = (Problem::repairable(problem), change) {
            repair = guards;
            repair.push(unchanged(r));
            repair.push(change);
        }
        findings.push(Finding { problem, table: r.table, uuid: r.uuid, name: r.name.clone(), detail, repair });
    };
    for r in rows {
        // Read only to know which children are ours (and router port names).
        if matches!(r.table, table::LOGICAL_ROUTER_PORT | table::ACL | table::NAT | table::STATIC_ROUTE) {
            continue;
        }
        if !ours(r) {
            if looks_like_ours(owner, r) {
                find(
                    Problem::Foreign,
                    r,
                    "looks like a CloudStack row but has no cloudstack:owner of ours; left untouched".into(),
                    vec![],
                    None,
                );
            }
            continue;
        }
        let kind = r.external_ids.get(key::KIND).map(String::as_str).unwrap_or_default();
        let net = r.external_ids.get(key::NETWORK_ID);
        let network_gone = net.is_some_and(|n| !present.contains(&switch_of(n)));
        let network_row = matches!(r.table, table::DHCP_OPTIONS | table::DNS | table::PORT_GROUP)
            || (r.table == table::LOGICAL_ROUTER && !r.external_ids.contains_key(key::VPC_ID));
        // Whatever its uuid, a row of a network that no longer exists is an orphan.
        if let (true, true, Some(n)) = (network_row, network_gone, net) {
            find(
                Problem::Orphan,
                r,
                format!("network {n} has no switch any more"),
                vec![still_absent(table::LOGICAL_SWITCH, switch_of(n))],
                Some(delete(r)),
            );
            continue;
        }
        if let Some(expected) = expected_uuid(owner, &r.external_ids) {
            if expected != r.uuid {
                if present.contains(&expected) {
                    find(
                        Problem::Duplicate,
                        r,
                        format!("the {kind} row of this identity is {expected}"),
                        vec![still_present(r.table, expected)],
                        Some(delete(r)),
                    );
                } else {
                    find(
                        Problem::Misplaced,
                        r,
                        format!("expected at {expected}; the next CloudStack command for it recreates it there"),
                        vec![],
                        None,
                    );
                }
                continue;
            }
        }
        match (r.table, kind) {
            (table::DHCP_OPTIONS, "dhcpv4-nic") => {
                let Some(nic) = r.external_ids.get(key::NIC_UUID) else { continue };
                let port = nic_port_uuid(owner, nic);
                if !present.contains(&port) {
                    find(
                        Problem::Orphan,
                        r,
                        format!("the port of NIC {nic} is gone"),
                        vec![still_absent(table::LOGICAL_SWITCH_PORT, port)],
                        Some(delete(r)),
                    );
                }
            }
            (table::LOAD_BALANCER, _) => {
                let Some(router) = lb_router_uuid(owner, &r.external_ids) else { continue };
                if !present.contains(&router) {
                    find(
                        Problem::Orphan,
                        r,
                        "its router is gone".into(),
                        vec![still_absent(table::LOGICAL_ROUTER, router)],
                        Some(delete(r)),
                    );
                }
            }
            (table::LOGICAL_SWITCH, "public-switch") => {
                // Only the localnet port left: no router uses this public network.
                let localnet = PublicNet::from_switch_ids(&r.external_ids).map(|p| p.localnet_uuid(owner));
                if r.ports.iter().all(|p| Some(*p) == localnet) {
                    // The unchanged-row guard includes `ports`: a router
                    // attaching meanwhile makes the repair fail.
                    find(Problem::Orphan, r, "no router uses this public switch".into(), vec![], Some(delete(r)));
                }
            }
            (table::LOGICAL_SWITCH_PORT, _) if r.lsp_type == "router" => {
                let Some(peer) = r.options.get("router-port") else { continue };
                if router_ports.contains(peer.as_str()) {
                    continue;
                }
                // A switch port is not a root row: it goes by leaving its switch.
                let holder = rows.iter().find(|s| s.table == table::LOGICAL_SWITCH && s.ports.contains(&r.uuid));
                let gone = wait(
                    table::LOGICAL_ROUTER_PORT,
                    vec![Condition::eq("name", peer.as_str())],
                    WaitUntil::Equal,
                    vec![],
                );
                let unlink = holder.filter(|s| ours(s)).map(|s| Operation::Mutate {
                    table: table::LOGICAL_SWITCH.into(),
                    conditions: vec![Condition::uuid_is(s.uuid)],
                    mutations: vec![Mutation("ports".into(), Mutator::Delete, uuid_set([r.uuid]))],
                });
                let problem = if unlink.is_some() { Problem::Dangling } else { Problem::Misplaced };
                find(problem, r, format!("router-type port whose router port {peer} is gone"), vec![gone], unlink);
            }
            _ => {}
        }
    }
    findings.sort_by(|a, b| (a.problem, a.table, &a.name, a.uuid).cmp(&(b.problem, b.table, &b.name, b.uuid)));
    findings
}

/// The guarded repairs of `findings`, in transactions of at most `batch`
/// findings; each transaction with the findings it repairs.
pub fn repairs(findings: &[Finding], batch: usize) -> Vec<(Vec<&Finding>, Vec<Operation>)> {
    let todo: Vec<&Finding> = findings.iter().filter(|f| !f.repair.is_empty()).collect();
    todo.chunks(batch.max(1))
        .map(|c| {
            let mut ops: Vec<Operation> = c.iter().flat_map(|f| f.repair.iter().cloned()).collect();
            ops.push(Operation::Comment(format!("cloudstack-ovn audit --repair: {} rows", c.len())));
            (c.to_vec(), ops)
        })
        .collect()
}

/// Parse a row of `table` as returned by a select of `_uuid`, `name`,
/// `external_ids` (and `ports` where the table has it).
pub fn row_from(table: &'static str, v: &Map<String, Value>) -> Option<Row> {
    use crate::ovsdb::value::{as_uuid, string_map_of, uuid_set_of};
    Some(Row {
        table,
        uuid: v.get("_uuid").and_then(as_uuid)?,
        name: v.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
        external_ids: v.get("external_ids").map(string_map_of).unwrap_or_default(),
        ports: v.get("ports").map(uuid_set_of).unwrap_or_default(),
        children: CHILD_COLUMNS.iter().filter_map(|c| Some((*c, uuid_set_of(v.get(*c)?)))).collect(),
        lsp_type: v.get("type").and_then(Value::as_str).unwrap_or_default().to_string(),
        options: v.get("options").map(string_map_of).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nb::Kind;

    fn owner() -> Owner {
        Owner("cloudstack".into())
    }

    fn row(table: &'static str, uuid: Uuid, name: &str, ids: &[(&str, &str)]) -> Row {
        Row {
            table,
            uuid,
            name: name.into(),
            external_ids: ids.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Row::default()
        }
    }

    #[test]
    fn orphans_duplicates_and_foreign_rows() {
        let o = owner();
        let ours = [(key::OWNER, "cloudstack")];
        let sw5 = row(
            table::LOGICAL_SWITCH,
            o.row_uuid(Kind::Network, "5"),
            "cs-net-5",
            &[ours[0], (key::KIND, "network"), (key::NETWORK_ID, "5")],
        );
        let dup5 = row(
            table::LOGICAL_SWITCH,
            Uuid::from_u128(1),
            "cs-net-5",
            &[ours[0], (key::KIND, "network"), (key::NETWORK_ID, "5")],
        );
        let dns6 =
            row(table::DNS, o.row_uuid(Kind::Dns, "6"), "", &[ours[0], (key::KIND, "dns"), (key::NETWORK_ID, "6")]);
        let foreign = row(table::LOGICAL_SWITCH, Uuid::from_u128(2), "cs-net-77", &[(key::NETWORK_ID, "77")]);
        let unrelated = row(table::LOGICAL_SWITCH, Uuid::from_u128(3), "sw0", &[]);
        let found = audit(&o, &[sw5, dup5, dns6, foreign, unrelated]);
        let kinds: Vec<(Problem, String)> = found.iter().map(|f| (f.problem, f.name.clone())).collect();
        assert_eq!(kinds.len(), 3, "{found:#?}");
        assert!(kinds.contains(&(Problem::Duplicate, "cs-net-5".into())));
        assert!(kinds.contains(&(Problem::Orphan, String::new())));
        assert!(kinds.contains(&(Problem::Foreign, "cs-net-77".into())));
        let ops = repairs(&found, 100);
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].0.len(), 2, "the foreign row is never touched");
        let deletes = ops[0].1.iter().filter(|o| matches!(o, Operation::Delete { .. })).count();
        assert_eq!(deletes, 2);
        // Every delete is guarded: the reason still holds and the row is unchanged.
        let waits = ops[0].1.iter().filter(|o| matches!(o, Operation::Wait { .. })).count();
        assert_eq!(waits, 4, "{:#?}", ops[0].1);
    }
}
