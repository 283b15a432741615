//! Audit: find rows of ours that are orphaned, duplicated or not where our
//! naming model puts them, and rows that look like ours but are not.
//! Pure: the operator command reads the tables and applies the repairs.
//!
//! Every row we create has a UUID derived from its identity (owner, kind,
//! CloudStack ids), so "the row this identity should be" is computable:
//! - a row of ours at another UUID, while the right UUID exists, is a
//!   duplicate (repair: delete it);
//! - at another UUID with no row at the right one, it is misplaced (made by
//!   hand or by an older tool): reported only, since deleting it could cut
//!   running VMs off; the next CloudStack command for it recreates it;
//! - a network's DHCP, DNS, port group or router whose switch is gone, and a
//!   Load_Balancer whose router is gone, are orphans (repair: delete; OVN
//!   never garbage-collects these root rows);
//! - a public switch with no router left is an orphan too;
//! - switches and routers named like ours without our owner tag are
//!   foreign: reported, never touched.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::nb::ids::{expected_uuid, lb_router_uuid, network_switch_uuid, PublicNet};
use crate::nb::{key, table, Owner};
use crate::ovsdb::{Condition, Operation};

/// One row as the audit reads it: uuid, name (if the table has one),
/// external_ids, and the uuid sets that matter (`ports`).
#[derive(Clone, Debug)]
pub struct Row {
    pub table: &'static str,
    pub uuid: Uuid,
    pub name: String,
    pub external_ids: BTreeMap<String, String>,
    pub ports: Vec<Uuid>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Problem {
    Orphan,
    Duplicate,
    Misplaced,
    Foreign,
}

impl Problem {
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::Orphan => "orphan",
            Problem::Duplicate => "duplicate",
            Problem::Misplaced => "misplaced",
            Problem::Foreign => "foreign",
        }
    }

    /// Whether `--repair` deletes rows with this problem.
    pub fn repairable(self) -> bool {
        matches!(self, Problem::Orphan | Problem::Duplicate)
    }
}

#[derive(Clone, Debug)]
pub struct Finding {
    pub problem: Problem,
    pub table: &'static str,
    pub uuid: Uuid,
    pub name: String,
    pub detail: String,
}

fn looks_like_ours(row: &Row) -> bool {
    ["cs-net-", "cs-router-", "cs-vpc-", "cs-public-"].iter().any(|p| row.name.starts_with(p))
        || row.external_ids.keys().any(|k| k.starts_with("cloudstack:"))
}

/// Analyse every row read. `rows` holds, per table, the rows of ours and
/// (for switches and routers) the look-alikes.
pub fn audit(owner: &Owner, rows: &[Row]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let present: BTreeSet<Uuid> = rows.iter().map(|r| r.uuid).collect();
    let ours = |r: &Row| owner.owns(&r.external_ids);
    let switch_of = |n: &str| network_switch_uuid(owner, n);
    let mut find = |problem, r: &Row, detail: String| {
        findings.push(Finding { problem, table: r.table, uuid: r.uuid, name: r.name.clone(), detail });
    };
    for r in rows {
        if !ours(r) {
            if looks_like_ours(r) {
                find(
                    Problem::Foreign,
                    r,
                    "looks like a CloudStack row but has no cloudstack:owner of ours; left untouched".into(),
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
        if network_row && network_gone {
            find(
                Problem::Orphan,
                r,
                format!("network {} has no switch any more", net.map(String::as_str).unwrap_or("?")),
            );
            continue;
        }
        if let Some(expected) = expected_uuid(owner, &r.external_ids) {
            if expected != r.uuid {
                if present.contains(&expected) {
                    find(Problem::Duplicate, r, format!("the {kind} row of this identity is {expected}"));
                } else {
                    find(
                        Problem::Misplaced,
                        r,
                        format!("expected at {expected}; the next CloudStack command for it recreates it there"),
                    );
                }
                continue;
            }
        }
        match (r.table, kind) {
            (table::LOAD_BALANCER, _) => {
                let Some(router) = lb_router_uuid(owner, &r.external_ids) else { continue };
                if !present.contains(&router) {
                    find(Problem::Orphan, r, "its router is gone".into());
                }
            }
            (table::LOGICAL_SWITCH, "public-switch") => {
                // Only the localnet port left: no router uses this public network.
                let localnet = PublicNet::from_switch_ids(&r.external_ids).map(|p| p.localnet_uuid(owner));
                if r.ports.iter().all(|p| Some(*p) == localnet) {
                    find(Problem::Orphan, r, "no router uses this public switch".into());
                }
            }
            _ => {}
        }
    }
    findings.sort_by(|a, b| (a.problem, a.table, &a.name, a.uuid).cmp(&(b.problem, b.table, &b.name, b.uuid)));
    findings
}

/// Deletions repairing `findings`, in transactions of at most `batch` rows.
pub fn repairs(findings: &[Finding], batch: usize) -> Vec<Vec<Operation>> {
    let deletes: Vec<Operation> = findings
        .iter()
        .filter(|f| f.problem.repairable())
        .map(|f| Operation::Delete { table: f.table.into(), conditions: vec![Condition::uuid_is(f.uuid)] })
        .collect();
    deletes
        .chunks(batch.max(1))
        .map(|c| {
            let mut ops = c.to_vec();
            ops.push(Operation::Comment(format!("cloudstack-ovn audit --repair: {} rows", c.len())));
            ops
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
            ports: vec![],
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
        assert_eq!(ops[0].len(), 3, "two deletes and a comment; the foreign row is never touched");
    }
}
