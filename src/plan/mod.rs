//! Pure planning: CloudStack intent + observed NB rows → OVSDB operations.
//!
//! No I/O, no clock, no environment: the same inputs always give the same
//! operations. An empty plan means the NB already holds what the command
//! asks for, which is how every command is idempotent.

pub mod acl;
pub mod after;
pub mod audit;
pub mod metadata;
pub mod network;
pub mod pbr;
pub mod router;

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::ovsdb::value::{string_map, string_set, uuid_set};
use crate::ovsdb::{Condition, Mutation, Mutator, Operation, WaitUntil};

#[derive(Debug, Default)]
pub struct Plan {
    pub ops: Vec<Operation>,
    /// One line per row changed, for the log.
    pub changes: Vec<String>,
    /// Rows already guarded by a `wait` (one guard per row is enough).
    guarded: std::collections::BTreeSet<Uuid>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    fn change(&mut self, op: Operation, what: String) {
        self.ops.push(op);
        self.changes.push(what);
    }

    /// A guard changes nothing; it makes the transaction fail (and be
    /// re-planned) if what we read changed underneath us.
    fn guard(&mut self, op: Operation) {
        self.ops.push(op);
    }

    /// Operations to send, ending with a comment that `ovsdb-tool show-log`
    /// displays next to the transaction.
    pub fn into_ops(mut self, comment: String) -> Vec<Operation> {
        self.ops.push(Operation::Comment(comment));
        self.ops
    }

    fn insert(
        &mut self,
        table: &str,
        uuid: Option<Uuid>,
        uuid_name: Option<&str>,
        row: Map<String, Value>,
        what: String,
    ) {
        self.change(
            Operation::Insert { table: table.into(), row, uuid_name: uuid_name.map(str::to_string), uuid },
            what,
        );
    }

    fn update(&mut self, table: &str, uuid: Uuid, row: Map<String, Value>, what: String) {
        if !row.is_empty() {
            self.change(
                Operation::Update { table: table.into(), conditions: vec![Condition::uuid_is(uuid)], row },
                what,
            );
        }
    }

    fn mutate(&mut self, table: &str, uuid: Uuid, mutations: Vec<Mutation>, what: String) {
        if !mutations.is_empty() {
            self.change(
                Operation::Mutate { table: table.into(), conditions: vec![Condition::uuid_is(uuid)], mutations },
                what,
            );
        }
    }

    fn delete(&mut self, table: &str, uuid: Uuid, what: String) {
        self.change(Operation::Delete { table: table.into(), conditions: vec![Condition::uuid_is(uuid)] }, what);
    }

    /// Fail the transaction unless the row still exists with this `name`.
    /// Needed before linking a new child: a mutate on a row deleted
    /// concurrently matches nothing, and the unreferenced child would be
    /// garbage-collected at commit while the transaction "succeeds".
    fn require_row(&mut self, table: &str, uuid: Uuid, name: &str) {
        if !self.guarded.insert(uuid) {
            return;
        }
        let mut row = Map::new();
        row.insert("name".into(), Value::String(name.into()));
        self.guard(Operation::Wait {
            table: table.into(),
            conditions: vec![Condition::uuid_is(uuid)],
            columns: vec!["name".into()],
            until: WaitUntil::Equal,
            rows: vec![row],
            timeout_ms: Some(0),
        });
    }

    /// Remove children from a parent's set column.
    fn unlink(&mut self, parent: Parent, children: &[Uuid], what: String) {
        self.change(parent.mutate(Mutator::Delete, children.iter().copied()), what);
    }
}

/// Whether a parent row is there before the transaction: inserted by this
/// plan, or read by the command (then linking to it adds a guard that it
/// still exists, under the name it has when the link runs).
#[derive(Clone, Debug)]
pub(crate) enum Existing {
    New,
    Read(String),
}

impl Existing {
    /// `Read(name)` if the parent was observed, else `New`.
    pub fn of<T>(observed: Option<&T>, name: impl Into<String>) -> Existing {
        match observed {
            Some(_) => Existing::Read(name.into()),
            None => Existing::New,
        }
    }
}

impl Plan {
    /// Fail the transaction if any row of `table` is named `name`: for
    /// tables without a unique name index (Logical_Switch, Logical_Router),
    /// so we never add a second row of a name someone else holds.
    fn require_name_free(&mut self, table: &str, name: &str) {
        self.guard(Operation::Wait {
            table: table.into(),
            conditions: vec![Condition::eq("name", name)],
            columns: vec!["name".into()],
            until: WaitUntil::Equal,
            rows: vec![],
            timeout_ms: Some(0),
        });
    }

    /// Fail the transaction unless `column` of the row still holds `value`
    /// (as read, or as this transaction left it so far).
    fn require_column(&mut self, table: &str, uuid: Uuid, column: &str, value: Value) {
        let mut row = Map::new();
        row.insert(column.into(), value);
        self.guard(Operation::Wait {
            table: table.into(),
            conditions: vec![Condition::uuid_is(uuid)],
            columns: vec![column.into()],
            until: WaitUntil::Equal,
            rows: vec![row],
            timeout_ms: Some(0),
        });
    }
}

/// Where a child row hangs: a set column of a parent row.
#[derive(Clone, Copy)]
pub(crate) struct Parent<'a> {
    pub table: &'a str,
    pub uuid: Uuid,
    pub column: &'a str,
}

impl Parent<'static> {
    pub fn switch_ports(switch: Uuid) -> Self {
        Parent { table: crate::nb::table::LOGICAL_SWITCH, uuid: switch, column: "ports" }
    }

    pub fn switch(switch: Uuid, column: &'static str) -> Self {
        Parent { table: crate::nb::table::LOGICAL_SWITCH, uuid: switch, column }
    }

    pub fn router(router: Uuid, column: &'static str) -> Self {
        Parent { table: crate::nb::table::LOGICAL_ROUTER, uuid: router, column }
    }

    pub fn router_port(port: Uuid, column: &'static str) -> Self {
        Parent { table: crate::nb::table::LOGICAL_ROUTER_PORT, uuid: port, column }
    }

    pub fn port_group(group: Uuid, column: &'static str) -> Self {
        Parent { table: crate::nb::table::PORT_GROUP, uuid: group, column }
    }
}

impl Parent<'_> {
    fn mutate(&self, mutator: Mutator, children: impl IntoIterator<Item = Uuid>) -> Operation {
        Operation::Mutate {
            table: self.table.into(),
            conditions: vec![Condition::uuid_is(self.uuid)],
            mutations: vec![Mutation(self.column.into(), mutator, uuid_set(children))],
        }
    }
}

/// Linking children is only possible here, and only with the parent's
/// [`Existing`]: the guard on an observed parent cannot be forgotten.
mod link {
    use serde_json::{Map, Value};
    use uuid::Uuid;

    use super::{Existing, Parent, Plan};
    use crate::ovsdb::{Mutator, Operation};

    impl Plan {
        /// Add `children` to the parent's set column; guard an observed
        /// parent (once per transaction).
        pub(crate) fn link(&mut self, parent: Parent, existing: Existing, children: &[Uuid], what: String) {
            if let Existing::Read(name) = &existing {
                self.require_row(parent.table, parent.uuid, name);
            }
            self.change(parent.mutate(Mutator::Insert, children.iter().copied()), what);
        }

        /// Insert a non-root row with its deterministic uuid and link it from
        /// its parent in the same transaction: OVSDB silently drops an
        /// unreferenced non-root row at commit.
        pub(crate) fn insert_child(
            &mut self,
            table: &str,
            uuid: Uuid,
            row: Map<String, Value>,
            parent: Parent,
            existing: Existing,
            what: String,
        ) {
            self.change(
                Operation::Insert { table: table.into(), row, uuid_name: None, uuid: Some(uuid) },
                format!("insert {what}"),
            );
            self.link(parent, existing, &[uuid], format!("link {what}"));
        }
    }
}

/// Mutations turning the keys of `observed` selected by `managed` into
/// `desired`, leaving every other key alone (ovn-northd, operators and other
/// tools may own keys in the same map). OVSDB's map `insert` never replaces
/// an existing key, so a changed value is a delete of the key followed by an
/// insert of the pair, in that order.
pub fn map_mutations(
    column: &str,
    desired: &BTreeMap<String, String>,
    observed: &BTreeMap<String, String>,
    managed: impl Fn(&str) -> bool,
) -> Vec<Mutation> {
    let stale: Vec<&String> =
        observed.iter().filter(|(k, v)| managed(k) && desired.get(*k) != Some(v)).map(|(k, _)| k).collect();
    let missing: BTreeMap<String, String> =
        desired.iter().filter(|(k, v)| observed.get(*k) != Some(v)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut out = Vec::new();
    if !stale.is_empty() {
        out.push(Mutation(column.into(), Mutator::Delete, string_set(stale.iter().map(|s| s.as_str()))));
    }
    if !missing.is_empty() {
        out.push(Mutation(column.into(), Mutator::Insert, string_map(&missing)));
    }
    out
}

/// Add or correct our ids in `external_ids`; never drop one. Commands carry
/// different subsets of the ids (a legacy `add-dhcp-entry` has no zone, a
/// NIC command no cidr), and an id one command recorded must survive the
/// others. Keys of other tools are left alone.
pub fn merge_ids(desired: &BTreeMap<String, String>, observed: &BTreeMap<String, String>) -> Vec<Mutation> {
    map_mutations("external_ids", desired, observed, |k| desired.contains_key(k))
}

/// Columns of a desired row whose values differ from what was observed.
fn changed_columns(desired: &Map<String, Value>, differs: impl Fn(&str) -> bool) -> Map<String, Value> {
    desired.iter().filter(|(k, _)| differs(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn map_mutations_touch_only_managed_keys() {
        let observed =
            m(&[("cloudstack:a", "1"), ("cloudstack:b", "old"), ("cloudstack:gone", "x"), ("foreign", "keep")]);
        let desired = m(&[("cloudstack:a", "1"), ("cloudstack:b", "new"), ("cloudstack:c", "3")]);
        let muts = map_mutations("external_ids", &desired, &observed, |k| k.starts_with("cloudstack:"));
        let json: Vec<Value> = muts.iter().map(|x| serde_json::json!([x.0, format!("{:?}", x.1), x.2])).collect();
        let text = serde_json::to_string(&json).unwrap();
        assert!(text.contains("cloudstack:b") && text.contains("cloudstack:gone") && text.contains("cloudstack:c"));
        assert!(!text.contains("foreign") && !text.contains("\"cloudstack:a\""), "{text}");
        assert!(map_mutations("x", &desired, &desired, |_| true).is_empty());
    }
}

#[cfg(test)]
mod guards;
