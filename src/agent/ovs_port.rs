//! The metadata veth's port on the integration bridge, written to the local
//! OVS `Open_vSwitch` database through our own OVSDB client (no
//! `ovs-vsctl`): one transaction to add the Port and its Interface, one to
//! remove them. The rows carry `cloudstack:owner` (and a kind) in
//! `external_ids`; the agent removes only rows so tagged, never a port an
//! operator or libvirt made under the same name.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::nb::{key, Owner};
use crate::ovsdb::value::{self, named_uuid};
use crate::ovsdb::{Condition, Function, Mutation, Mutator, Operation, WaitUntil};

const DB: &str = "Open_vSwitch";
/// `external_ids:cloudstack:kind` of the rows the agent creates.
pub const KIND: &str = "metadata-port";

fn tags(owner: &Owner) -> BTreeMap<String, String> {
    [(key::OWNER.to_string(), owner.0.clone()), (key::KIND.to_string(), KIND.to_string())].into()
}

fn ours(external_ids: &BTreeMap<String, String>, owner: &Owner) -> bool {
    tags(owner).iter().all(|(k, v)| external_ids.get(k) == Some(v))
}

fn client(ovs_db: &str) -> Result<crate::ovsdb::Client, String> {
    super::connect_ovs(ovs_db).map_err(|e| crate::error::Error::from(e).chain())
}

/// `ovs-vsctl add-port <bridge> <name> -- set Interface <name>
/// external_ids:iface-id=<iface_id> external_ids:attached-mac=<mac>`, in one
/// transaction that fails as a whole when the bridge is missing or a port
/// of that name exists.
pub fn add(ovs_db: &str, bridge: &str, name: &str, iface_id: &str, mac: &str, owner: &Owner) -> Result<(), String> {
    let ops = add_ops(bridge, name, iface_id, mac, owner);
    client(ovs_db)?.transact(DB, &ops).map_err(|e| format!("add port {name} to {bridge}: {e}"))?;
    Ok(())
}

/// Whether `bridge` runs on OVS's userspace datapath (`datapath_type`
/// `netdev`): only there must the veth's TX offloads go off. Unknown (no
/// answer, no bridge) counts as userspace: turning offloads off is harmless
/// on the kernel datapath, leaving them on breaks TCP on the userspace one.
pub fn userspace_datapath(ovs_db: &str, bridge: &str) -> bool {
    let ops = [Operation::Select {
        table: "Bridge".into(),
        conditions: vec![Condition::eq("name", bridge)],
        columns: Some(vec!["datapath_type".into()]),
    }];
    let kind = client(ovs_db)
        .ok()
        .and_then(|mut c| c.transact(DB, &ops).ok())
        .and_then(|r| r[0]["rows"].get(0).and_then(|row| row["datapath_type"].as_str().map(str::to_string)));
    is_userspace(kind.as_deref())
}

fn is_userspace(datapath_type: Option<&str>) -> bool {
    // "" is the kernel datapath ("system"), OVS's default.
    !matches!(datapath_type, Some("" | "system"))
}

fn add_ops(bridge: &str, name: &str, iface_id: &str, mac: &str, owner: &Owner) -> Vec<Operation> {
    let mut iface_ids = tags(owner);
    iface_ids.insert("iface-id".into(), iface_id.into());
    iface_ids.insert("attached-mac".into(), mac.into());
    let row = |pairs: Vec<(&str, Value)>| pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<_, _>>();
    let on_bridge = vec![Condition::eq("name", bridge)];
    vec![
        // No bridge: the transaction fails here, nothing is left behind.
        Operation::Wait {
            table: "Bridge".into(),
            conditions: on_bridge.clone(),
            columns: vec!["name".into()],
            until: WaitUntil::Equal,
            rows: vec![row(vec![("name", bridge.into())])],
            timeout_ms: Some(0),
        },
        Operation::Insert {
            table: "Interface".into(),
            row: row(vec![("name", name.into()), ("external_ids", value::string_map(&iface_ids))]),
            uuid_name: Some("iface".into()),
            uuid: None,
        },
        Operation::Insert {
            table: "Port".into(),
            row: row(vec![
                ("name", name.into()),
                ("interfaces", named_uuid("iface")),
                ("external_ids", value::string_map(&tags(owner))),
            ]),
            uuid_name: Some("port".into()),
            uuid: None,
        },
        Operation::Mutate {
            table: "Bridge".into(),
            conditions: on_bridge,
            mutations: vec![Mutation("ports".into(), Mutator::Insert, named_uuid("port"))],
        },
    ]
}

/// What removing the port named `name` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Removed {
    Gone,
    Absent,
    /// A port of that name exists without our tags: left alone.
    NotOurs,
}

/// `ovs-vsctl --if-exists del-port <name>` for our port only: one select
/// (by the indexed `name`) and one transaction, guarded by a `wait` that the
/// row still carries our tags.
pub fn remove(ovs_db: &str, name: &str, owner: &Owner) -> Result<Removed, String> {
    let mut c = client(ovs_db)?;
    let err = |e: crate::ovsdb::Error| format!("remove port {name}: {e}");
    let r = c
        .transact(
            DB,
            &[Operation::Select {
                table: "Port".into(),
                conditions: vec![Condition::eq("name", name)],
                columns: Some(vec!["_uuid".into(), "interfaces".into(), "external_ids".into()]),
            }],
        )
        .map_err(err)?;
    let Some(port) = r[0]["rows"].get(0) else { return Ok(Removed::Absent) };
    let ids = value::string_map_of(&port["external_ids"]);
    if !ours(&ids, owner) {
        return Ok(Removed::NotOurs);
    }
    let uuid = value::as_uuid(&port["_uuid"]).ok_or_else(|| format!("remove port {name}: row without _uuid"))?;
    let interfaces = value::uuid_set_of(&port["interfaces"]);
    c.transact(DB, &remove_ops(uuid, &port["external_ids"], &interfaces)).map_err(err)?;
    Ok(Removed::Gone)
}

fn remove_ops(port: uuid::Uuid, external_ids: &Value, interfaces: &[uuid::Uuid]) -> Vec<Operation> {
    let mut ops = vec![
        Operation::Wait {
            table: "Port".into(),
            conditions: vec![Condition::uuid_is(port)],
            columns: vec!["external_ids".into()],
            until: WaitUntil::Equal,
            rows: vec![[("external_ids".to_string(), external_ids.clone())].into_iter().collect()],
            timeout_ms: Some(0),
        },
        // Whichever bridge holds it (the name is unique in the database).
        Operation::Mutate {
            table: "Bridge".into(),
            conditions: vec![Condition("ports".into(), Function::Includes, value::uuid(port))],
            mutations: vec![Mutation("ports".into(), Mutator::Delete, value::uuid(port))],
        },
        Operation::Delete { table: "Port".into(), conditions: vec![Condition::uuid_is(port)] },
    ];
    ops.extend(
        interfaces
            .iter()
            .map(|i| Operation::Delete { table: "Interface".into(), conditions: vec![Condition::uuid_is(*i)] }),
    );
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_known_kernel_datapath_keeps_offloads() {
        assert!(is_userspace(Some("netdev")));
        assert!(!is_userspace(Some("system")));
        assert!(!is_userspace(Some("")));
        assert!(is_userspace(None), "unknown: offloads off, the safe side");
    }

    fn owner() -> Owner {
        Owner("cloudstack".into())
    }

    #[test]
    fn a_port_is_ours_only_with_both_tags_of_our_owner() {
        let mut ids = tags(&owner());
        assert!(ours(&ids, &owner()));
        assert!(!ours(&ids, &Owner("other".into())));
        ids.remove(key::KIND);
        assert!(!ours(&ids, &owner()), "an operator's port with only our owner tag is not ours");
    }

    #[test]
    fn add_is_guarded_by_the_bridge_and_links_port_and_interface() {
        let ops = add_ops("br-int", "csm0123", "cs-md-42", "02:00:00:00:00:01", &owner());
        let json: Vec<Value> = ops.iter().map(Operation::to_json).collect();
        assert_eq!(json[0]["op"], "wait");
        assert_eq!(json[0]["where"], serde_json::json!([["name", "==", "br-int"]]));
        let ids = value::string_map_of(&json[1]["row"]["external_ids"]);
        assert_eq!(ids.get("iface-id").map(String::as_str), Some("cs-md-42"));
        assert_eq!(ids.get("attached-mac").map(String::as_str), Some("02:00:00:00:00:01"));
        assert!(ours(&ids, &owner()));
        assert_eq!(json[2]["row"]["interfaces"], named_uuid("iface"));
        assert_eq!(json[3]["mutations"], serde_json::json!([["ports", "insert", ["named-uuid", "port"]]]));
    }
}
