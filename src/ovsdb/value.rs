//! RFC 7047 §5.1 notation over `serde_json::Value`.
//!
//! Builders always emit the explicit `["set",[...]]` / `["map",[...]]`
//! forms. Decoders are tolerant: RFC 7047 §5.1 lets a one-element set be
//! sent as a bare atom (ovsdb-server does so for e.g. a one-port switch's
//! `ports`), and an empty optional column arrives as `["set",[]]`.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use uuid::Uuid;

/// `["uuid","…"]` (§5.1 `<uuid>`).
pub fn uuid(u: Uuid) -> Value {
    json!(["uuid", u.hyphenated().to_string()])
}

/// `["named-uuid","…"]` (§5.1 `<named-uuid>`): refers to a row inserted with
/// this `uuid-name` in the same transaction.
pub fn named_uuid(name: &str) -> Value {
    json!(["named-uuid", name])
}

/// `["set",[…]]` (§5.1 `<set>`).
pub fn set(items: Vec<Value>) -> Value {
    json!(["set", items])
}

/// `["map",[[k,v],…]]` (§5.1 `<map>`).
pub fn map(pairs: Vec<(Value, Value)>) -> Value {
    let pairs: Vec<Value> = pairs.into_iter().map(|(k, v)| json!([k, v])).collect();
    json!(["map", pairs])
}

/// A set of strings.
pub fn string_set<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Value {
    set(items.into_iter().map(|s| Value::String(s.into())).collect())
}

/// A string→string map (sorted by key, so the JSON is deterministic).
pub fn string_map(m: &BTreeMap<String, String>) -> Value {
    map(m.iter().map(|(k, v)| (Value::from(k.as_str()), Value::from(v.as_str()))).collect())
}

/// A set of uuids.
pub fn uuid_set<I: IntoIterator<Item = Uuid>>(items: I) -> Value {
    set(items.into_iter().map(uuid).collect())
}

/// The elements of a set column: `["set",[…]]` gives its items, any other
/// value is a bare atom, i.e. a one-element set (§5.1). `null` gives none.
pub fn set_items(v: &Value) -> Vec<&Value> {
    match v {
        Value::Null => Vec::new(),
        Value::Array(a) if a.len() == 2 && a[0] == "set" => match &a[1] {
            Value::Array(items) => items.iter().collect(),
            _ => Vec::new(),
        },
        other => vec![other],
    }
}

/// `["uuid","…"]` → `Uuid`; anything else (including malformed text) → None.
pub fn as_uuid(v: &Value) -> Option<Uuid> {
    match v.as_array()?.as_slice() {
        [tag, Value::String(s)] if tag == "uuid" => Uuid::parse_str(s).ok(),
        _ => None,
    }
}

/// All uuids of a uuid-set column (bare atom or `["set",…]`).
pub fn uuid_set_of(v: &Value) -> Vec<Uuid> {
    set_items(v).into_iter().filter_map(as_uuid).collect()
}

/// An optional (`min 0, max 1`) uuid column: a bare uuid or `["set",[]]`.
pub fn optional_uuid(v: &Value) -> Option<Uuid> {
    set_items(v).into_iter().find_map(as_uuid)
}

/// All strings of a string-set column.
pub fn string_set_of(v: &Value) -> Vec<String> {
    set_items(v).into_iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()
}

/// A map column as string→string. Integer, real and boolean atoms are
/// rendered as text; pairs with other values are skipped.
pub fn string_map_of(v: &Value) -> BTreeMap<String, String> {
    let pairs = match v.as_array().map(Vec::as_slice) {
        Some([tag, Value::Array(pairs)]) if tag == "map" => pairs,
        _ => return BTreeMap::new(),
    };
    pairs
        .iter()
        .filter_map(|p| match p.as_array()?.as_slice() {
            [k, v] => Some((atom_text(k)?, atom_text(v)?)),
            _ => None,
        })
        .collect()
}

fn atom_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// An optional string column: a bare string or `["set",[]]`.
pub fn optional_string(v: &Value) -> Option<String> {
    set_items(v).into_iter().find_map(|s| s.as_str().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "11111111-2222-3333-4444-555555555555";

    #[test]
    fn builders() {
        let u = Uuid::parse_str(U).unwrap();
        assert_eq!(uuid(u), json!(["uuid", U]));
        assert_eq!(named_uuid("p1"), json!(["named-uuid", "p1"]));
        assert_eq!(string_set(["a", "b"]), json!(["set", ["a", "b"]]));
        assert_eq!(string_set(Vec::<String>::new()), json!(["set", []]));
        assert_eq!(uuid_set([u]), json!(["set", [["uuid", U]]]));
        let m = BTreeMap::from([("z".to_string(), "1".to_string()), ("a".into(), "2".into())]);
        assert_eq!(string_map(&m), json!(["map", [["a", "2"], ["z", "1"]]]));
        assert_eq!(string_map(&BTreeMap::new()), json!(["map", []]));
        assert_eq!(map(vec![(json!(1), json!(true))]), json!(["map", [[1, true]]]));
    }

    #[test]
    fn decoders_accept_bare_atoms_and_empty_sets() {
        let u = Uuid::parse_str(U).unwrap();
        // §5.1: a one-element set may be a bare atom.
        assert_eq!(uuid_set_of(&json!(["uuid", U])), vec![u]);
        assert_eq!(uuid_set_of(&json!(["set", [["uuid", U], ["uuid", U]]])), vec![u, u]);
        assert!(uuid_set_of(&json!(["set", []])).is_empty());
        assert_eq!(optional_uuid(&json!(["uuid", U])), Some(u));
        assert_eq!(optional_uuid(&json!(["set", []])), None);
        assert_eq!(optional_uuid(&json!(["uuid", "not-a-uuid"])), None);
        assert_eq!(as_uuid(&json!("11111111-2222-3333-4444-555555555555")), None);
        assert_eq!(string_set_of(&json!("a")), vec!["a"]);
        assert_eq!(string_set_of(&json!(["set", ["a", "b"]])), vec!["a", "b"]);
        assert_eq!(optional_string(&json!(["set", []])), None);
        assert_eq!(optional_string(&json!("x")), Some("x".into()));
        assert_eq!(set_items(&Value::Null).len(), 0);
        let m = string_map_of(&json!(["map", [["k", "v"], ["n", 5], ["bad"]]]));
        assert_eq!(m.len(), 2);
        assert_eq!(m["k"], "v");
        assert_eq!(m["n"], "5");
        assert!(string_map_of(&json!(["map", []])).is_empty());
        assert!(string_map_of(&json!("garbage")).is_empty());
    }
}
