//! RFC 7047 §5.2 database operations, serialised to the exact wire JSON.
//!
//! Operations are plain data: building them sends nothing, so callers can
//! collect the operations of a whole command into one atomic `transact`.

use serde::{Serialize, Serializer};
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// §5.1 `<function>` of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Includes,
    Excludes,
}

impl Function {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Function::Eq => "==",
            Function::Ne => "!=",
            Function::Lt => "<",
            Function::Le => "<=",
            Function::Gt => ">",
            Function::Ge => ">=",
            Function::Includes => "includes",
            Function::Excludes => "excludes",
        }
    }
}

/// §5.1 `<condition>`: `[column, function, value]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition(pub String, pub Function, pub Value);

impl Condition {
    /// `["_uuid","==",["uuid",…]]`: a lookup that needs no table scan.
    pub fn uuid_is(uuid: Uuid) -> Condition {
        Condition("_uuid".into(), Function::Eq, super::value::uuid(uuid))
    }

    /// `[column,"==",value]`.
    pub fn eq(column: &str, v: impl Into<Value>) -> Condition {
        Condition(column.into(), Function::Eq, v.into())
    }

    fn to_json(&self) -> Value {
        json!([self.0, self.1.as_str(), self.2])
    }
}

/// §5.1 `<mutator>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutator {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Insert,
    Delete,
}

impl Mutator {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mutator::Add => "+=",
            Mutator::Sub => "-=",
            Mutator::Mul => "*=",
            Mutator::Div => "/=",
            Mutator::Mod => "%=",
            Mutator::Insert => "insert",
            Mutator::Delete => "delete",
        }
    }
}

/// §5.1 `<mutation>`: `[column, mutator, value]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Mutation(pub String, pub Mutator, pub Value);

/// §5.2.6 `until` of a `wait`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitUntil {
    Equal,
    NotEqual,
}

/// One §5.2 operation of a transaction.
#[derive(Clone, Debug, PartialEq)]
pub enum Operation {
    /// §5.2.1. `uuid` is the OVS extension (ovsdb-server(7) §5.2.1, OVS
    /// ≥ 2.13) that lets the client
    /// choose the row UUID; a second insert with it fails with
    /// "duplicate uuid", which makes creates idempotent.
    Insert { table: String, row: Map<String, Value>, uuid_name: Option<String>, uuid: Option<Uuid> },
    /// §5.2.2. `columns: None` selects all columns.
    Select { table: String, conditions: Vec<Condition>, columns: Option<Vec<String>> },
    /// §5.2.3: changes only the columns in `row`.
    Update { table: String, conditions: Vec<Condition>, row: Map<String, Value> },
    /// §5.2.4.
    Mutate { table: String, conditions: Vec<Condition>, mutations: Vec<Mutation> },
    /// §5.2.5.
    Delete { table: String, conditions: Vec<Condition> },
    /// §5.2.6: with `timeout_ms: Some(0)` an optimistic-concurrency guard
    /// that fails at once with "timed out" when the rows differ.
    Wait {
        table: String,
        conditions: Vec<Condition>,
        columns: Vec<String>,
        until: WaitUntil,
        rows: Vec<Map<String, Value>>,
        timeout_ms: Option<u64>,
    },
    /// §5.2.9: recorded with the transaction in the database log.
    Comment(String),
    /// §5.2.8: makes the transaction fail with "aborted" (a dry run).
    Abort,
}

fn where_json(conditions: &[Condition]) -> Value {
    Value::Array(conditions.iter().map(Condition::to_json).collect())
}

impl Operation {
    /// The table the operation works on, if any.
    pub fn table(&self) -> Option<&str> {
        match self {
            Operation::Insert { table, .. }
            | Operation::Select { table, .. }
            | Operation::Update { table, .. }
            | Operation::Mutate { table, .. }
            | Operation::Delete { table, .. }
            | Operation::Wait { table, .. } => Some(table),
            Operation::Comment(_) | Operation::Abort => None,
        }
    }

    /// The `"op"` member.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Insert { .. } => "insert",
            Operation::Select { .. } => "select",
            Operation::Update { .. } => "update",
            Operation::Mutate { .. } => "mutate",
            Operation::Delete { .. } => "delete",
            Operation::Wait { .. } => "wait",
            Operation::Comment(_) => "comment",
            Operation::Abort => "abort",
        }
    }

    /// The wire JSON object.
    pub fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("op".into(), self.name().into());
        if let Some(t) = self.table() {
            o.insert("table".into(), t.into());
        }
        match self {
            Operation::Insert { row, uuid_name, uuid, .. } => {
                o.insert("row".into(), Value::Object(row.clone()));
                if let Some(n) = uuid_name {
                    o.insert("uuid-name".into(), n.as_str().into());
                }
                // The OVS extension takes the bare UUID string, not ["uuid",…].
                if let Some(u) = uuid {
                    o.insert("uuid".into(), u.hyphenated().to_string().into());
                }
            }
            Operation::Select { conditions, columns, .. } => {
                // §5.2.2 makes "where" required; an empty list selects all rows.
                o.insert("where".into(), where_json(conditions));
                if let Some(c) = columns {
                    o.insert("columns".into(), json!(c));
                }
            }
            Operation::Update { conditions, row, .. } => {
                o.insert("where".into(), where_json(conditions));
                o.insert("row".into(), Value::Object(row.clone()));
            }
            Operation::Mutate { conditions, mutations, .. } => {
                o.insert("where".into(), where_json(conditions));
                let m = mutations.iter().map(|Mutation(c, m, v)| json!([c, m.as_str(), v]));
                o.insert("mutations".into(), Value::Array(m.collect()));
            }
            Operation::Delete { conditions, .. } => {
                o.insert("where".into(), where_json(conditions));
            }
            Operation::Wait { conditions, columns, until, rows, timeout_ms, .. } => {
                o.insert("where".into(), where_json(conditions));
                o.insert("columns".into(), json!(columns));
                let until = match until {
                    WaitUntil::Equal => "==",
                    WaitUntil::NotEqual => "!=",
                };
                o.insert("until".into(), until.into());
                o.insert("rows".into(), json!(rows));
                if let Some(t) = timeout_ms {
                    o.insert("timeout".into(), (*t).into());
                }
            }
            Operation::Comment(text) => {
                o.insert("comment".into(), text.as_str().into());
            }
            Operation::Abort => {}
        }
        Value::Object(o)
    }
}

impl Serialize for Operation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ovsdb::value;

    const U: &str = "11111111-2222-3333-4444-555555555555";

    fn row(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn golden_json() {
        let u = Uuid::parse_str(U).unwrap();
        let cases = [
            (
                Operation::Insert {
                    table: "Logical_Switch".into(),
                    row: row(json!({"name": "cs-net-42"})),
                    uuid_name: Some("new_ls".into()),
                    uuid: Some(u),
                },
                json!({"op":"insert","table":"Logical_Switch","uuid-name":"new_ls","uuid":U,
                       "row":{"name":"cs-net-42"}}),
            ),
            (
                Operation::Insert { table: "NAT".into(), row: Map::new(), uuid_name: None, uuid: None },
                json!({"op":"insert","table":"NAT","row":{}}),
            ),
            (
                Operation::Select {
                    table: "Logical_Switch".into(),
                    conditions: vec![Condition::uuid_is(u)],
                    columns: Some(vec!["name".into(), "ports".into()]),
                },
                json!({"op":"select","table":"Logical_Switch","where":[["_uuid","==",["uuid",U]]],
                       "columns":["name","ports"]}),
            ),
            (
                Operation::Select { table: "NB_Global".into(), conditions: vec![], columns: None },
                json!({"op":"select","table":"NB_Global","where":[]}),
            ),
            (
                Operation::Update {
                    table: "Logical_Switch".into(),
                    conditions: vec![Condition::eq("name", "net-42")],
                    row: row(json!({"other_config": ["map", [["subnet", "10.1.0.0/24"]]]})),
                },
                json!({"op":"update","table":"Logical_Switch","where":[["name","==","net-42"]],
                       "row":{"other_config":["map",[["subnet","10.1.0.0/24"]]]}}),
            ),
            (
                Operation::Mutate {
                    table: "Logical_Switch".into(),
                    conditions: vec![Condition::uuid_is(u)],
                    mutations: vec![
                        Mutation("ports".into(), Mutator::Insert, value::set(vec![value::named_uuid("p1")])),
                        Mutation("n".into(), Mutator::Add, json!(1)),
                    ],
                },
                json!({"op":"mutate","table":"Logical_Switch","where":[["_uuid","==",["uuid",U]]],
                       "mutations":[["ports","insert",["set",[["named-uuid","p1"]]]],["n","+=",1]]}),
            ),
            (
                Operation::Delete {
                    table: "ACL".into(),
                    conditions: vec![Condition("priority".into(), Function::Ge, json!(1000))],
                },
                json!({"op":"delete","table":"ACL","where":[["priority",">=",1000]]}),
            ),
            (
                Operation::Wait {
                    table: "Logical_Switch".into(),
                    conditions: vec![Condition::eq("name", "net-42")],
                    columns: vec!["name".into()],
                    until: WaitUntil::Equal,
                    rows: vec![],
                    timeout_ms: Some(0),
                },
                json!({"op":"wait","table":"Logical_Switch","timeout":0,"where":[["name","==","net-42"]],
                       "columns":["name"],"until":"==","rows":[]}),
            ),
            (
                Operation::Wait {
                    table: "Logical_Router".into(),
                    conditions: vec![],
                    columns: vec!["nat".into()],
                    until: WaitUntil::NotEqual,
                    rows: vec![row(json!({"nat": ["set", []]}))],
                    timeout_ms: None,
                },
                json!({"op":"wait","table":"Logical_Router","where":[],"columns":["nat"],
                       "until":"!=","rows":[{"nat":["set",[]]}]}),
            ),
            (Operation::Comment("cloudstack: x".into()), json!({"op":"comment","comment":"cloudstack: x"})),
            (Operation::Abort, json!({"op":"abort"})),
        ];
        for (op, want) in cases {
            assert_eq!(op.to_json(), want, "{}", op.name());
            assert_eq!(serde_json::to_value(&op).unwrap(), want);
        }
    }

    #[test]
    fn all_function_and_mutator_spellings() {
        use Function::*;
        let f: Vec<_> = [Eq, Ne, Lt, Le, Gt, Ge, Includes, Excludes].iter().map(|f| f.as_str()).collect();
        assert_eq!(f, ["==", "!=", "<", "<=", ">", ">=", "includes", "excludes"]);
        use Mutator::*;
        let m: Vec<_> = [Add, Sub, Mul, Div, Mod, Insert, Delete].iter().map(|m| m.as_str()).collect();
        assert_eq!(m, ["+=", "-=", "*=", "/=", "%=", "insert", "delete"]);
        assert_eq!(Operation::Abort.table(), None);
    }
}
