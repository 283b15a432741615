//! What the agent knows: the ports bound to this chassis, their networks'
//! metadata localports and the NICs' vm-data rows, read with selects whose
//! conditions keep every reply O(local ports).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};

use serde_json::Value;
use uuid::Uuid;

use crate::metadata::{self, key};
use crate::nb::{Owner, DB as NB_DB, SB_DB};
use crate::ovsdb::value::{as_uuid, string_map_of, string_set_of};
use crate::ovsdb::{Client, Condition, Function, Operation};

/// A network with at least one VM bound here.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Net {
    /// The metadata localport's MAC and addresses (from its Port_Binding).
    pub md_mac: String,
    pub md_ips: Vec<Ipv4Addr>,
    /// Source address → NIC uuid, for ports bound to this chassis only.
    pub ips: HashMap<IpAddr, String>,
}

#[derive(Clone, Debug, Default)]
pub struct View {
    /// This chassis' SB `Chassis` row, once ovn-controller registered it.
    pub chassis: Option<Uuid>,
    pub nets: BTreeMap<u64, Net>,
    /// NIC uuid → its vm-data row's data keys (secrets still sealed).
    pub rows: HashMap<String, BTreeMap<String, String>>,
}

impl View {
    /// The NIC behind a request: the namespace names the network, the TCP
    /// peer address the port (port security on VM ports stops spoofing).
    pub fn nic(&self, network: u64, src: IpAddr) -> Option<&str> {
        self.nets.get(&network)?.ips.get(&src).map(String::as_str)
    }

    pub fn local_nics(&self) -> BTreeSet<String> {
        self.nets.values().flat_map(|n| n.ips.values().cloned()).collect()
    }
}

fn select(table: &str, conds: Vec<Condition>, cols: &[&str]) -> Operation {
    Operation::Select {
        table: table.into(),
        conditions: conds,
        columns: Some(cols.iter().map(|c| c.to_string()).collect()),
    }
}

fn uuid_value(u: Uuid) -> Value {
    crate::ovsdb::value::uuid(u)
}

fn rows(v: &Value) -> &[Value] {
    v.get("rows").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// The `mac` column of a Port_Binding: `"MAC ip ip…"` entries.
fn addresses(row: &Value) -> (String, Vec<IpAddr>) {
    let mut mac = String::new();
    let mut ips = Vec::new();
    for entry in row.get("mac").map(string_set_of).unwrap_or_default() {
        let mut parts = entry.split_whitespace();
        if let Some(m) = parts.next() {
            if mac.is_empty() {
                mac = m.to_string();
            }
        }
        ips.extend(parts.filter_map(|a| a.split('/').next()?.parse::<IpAddr>().ok()));
    }
    (mac, ips)
}

/// Read the local view: SB (two round trips), then NB (one).
pub fn read(sb: &mut Client, nb: &mut Client, chassis: &str, owner: &Owner) -> Result<View, crate::ovsdb::Error> {
    let r = sb.transact(SB_DB, &[select("Chassis", vec![Condition::eq("name", chassis)], &["_uuid"])])?;
    let Some(me) = rows(&r[0]).first().and_then(|row| row.get("_uuid")).and_then(as_uuid) else {
        // ovn-controller has not registered the chassis yet.
        return Ok(View::default());
    };
    let mut view = View { chassis: Some(me), ..View::default() };
    let r = sb.transact(
        SB_DB,
        &[select(
            "Port_Binding",
            vec![Condition("chassis".into(), Function::Eq, uuid_value(me))],
            &["logical_port", "mac", "datapath", "type"],
        )],
    )?;
    // Datapath → (logical port, addresses) of VM ports bound here.
    let mut by_dp: BTreeMap<Uuid, Vec<(String, Vec<IpAddr>)>> = BTreeMap::new();
    for row in rows(&r[0]) {
        let ty = row.get("type").and_then(Value::as_str).unwrap_or_default();
        if !ty.is_empty() {
            continue;
        }
        let (Some(dp), Some(lp)) =
            (row.get("datapath").and_then(as_uuid), row.get("logical_port").and_then(Value::as_str))
        else {
            continue;
        };
        by_dp.entry(dp).or_default().push((lp.to_string(), addresses(row).1));
    }
    if by_dp.is_empty() {
        return Ok(view);
    }
    let mut ops = Vec::new();
    for dp in by_dp.keys() {
        ops.push(select("Datapath_Binding", vec![Condition::uuid_is(*dp)], &["external_ids"]));
        ops.push(select(
            "Port_Binding",
            vec![Condition("datapath".into(), Function::Eq, uuid_value(*dp)), Condition::eq("type", "localport")],
            &["logical_port", "mac"],
        ));
    }
    let r = sb.transact(SB_DB, &ops)?;
    for (i, (_, ports)) in by_dp.iter().enumerate() {
        let name = rows(&r[2 * i])
            .first()
            .and_then(|row| row.get("external_ids"))
            .map(string_map_of)
            .and_then(|ids| ids.get("name").cloned())
            .unwrap_or_default();
        let Some(net) = metadata::switch_network(owner, &name) else { continue };
        let Some(md) = rows(&r[2 * i + 1])
            .iter()
            .find(|row| row.get("logical_port").and_then(Value::as_str) == Some(&metadata::port_name(owner, net)))
        else {
            // No UserData on this network.
            continue;
        };
        let (md_mac, md_ips) = addresses(md);
        let md_ips = md_ips
            .into_iter()
            .filter_map(|ip| match ip {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            })
            .collect();
        let mut ips = HashMap::new();
        for (lp, addrs) in ports {
            for a in addrs {
                ips.insert(*a, lp.clone());
            }
        }
        view.nets.insert(net, Net { md_mac, md_ips, ips });
    }
    let nics: Vec<String> = view.local_nics().into_iter().collect();
    view.rows = read_rows(nb, owner, &nics)?;
    Ok(view)
}

/// The vm-data rows of `nics` (by `_uuid`, one NB round trip): NIC uuid →
/// the row's data keys. A NIC without a row of ours is absent.
pub fn read_rows(
    nb: &mut Client,
    owner: &Owner,
    nics: &[String],
) -> Result<HashMap<String, BTreeMap<String, String>>, crate::ovsdb::Error> {
    let mut out = HashMap::new();
    if nics.is_empty() {
        return Ok(out);
    }
    let ops: Vec<Operation> = nics
        .iter()
        .map(|n| select("DNS", vec![Condition::uuid_is(metadata::row_uuid(owner, n))], &["external_ids"]))
        .collect();
    let r = nb.transact(NB_DB, &ops)?;
    for (nic, res) in nics.iter().zip(r.iter()) {
        if let Some(ids) = rows(res).first().and_then(|row| row.get("external_ids")).map(string_map_of) {
            // Only rows of ours written for this very NIC.
            if owner.owns(&ids) && ids.get(key::NIC_UUID) == Some(nic) {
                out.insert(nic.clone(), ids.into_iter().filter(|(k, _)| key::is_data(k)).collect());
            }
        }
    }
    Ok(out)
}

/// The acknowledgements in `acks` (NIC → `pw-gen`) that no longer hold a
/// password: the NIC's row (in `rows`) is gone, or its password was
/// dropped (acknowledged, then removed by the management side) or replaced
/// by a new generation.
pub fn stale_acks(
    acks: &BTreeMap<String, String>,
    rows: &HashMap<String, BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    acks.iter()
        .filter(|(nic, gen)| {
            let row = rows.get(*nic);
            let stored = row.filter(|r| r.contains_key(key::PASSWORD)).and_then(|r| r.get(key::PASSWORD_GEN));
            stored != Some(*gen)
        })
        .map(|(n, g)| (n.clone(), g.clone()))
        .collect()
}

/// The SB monitor: this chassis' row (to learn when it registers) and the
/// port bindings on it. Any notification means "read the view again".
///
/// Every column a `where` clause names is also a monitored column. When a
/// condition names a column the monitor does not carry, ovsdb-server (3.1.0,
/// and as far as we read, later ones) adds it to the monitor it shares with
/// the other clients that monitor the same columns, but a pending change
/// set of that monitor keeps rows without it; evaluating our condition on
/// such a row reads past the row and ovsdb-server crashes (SIGSEGV). Two
/// agents starting at once did that (docs/metadata.md, "SB crash").
pub fn sb_monitor(chassis: &str, me: Option<Uuid>) -> Value {
    serde_json::json!({
        "Chassis": [{"columns": ["name"], "where": [["name", "==", chassis]]}],
        "Port_Binding": [{"columns": ["logical_port", "mac", "datapath", "chassis"], "where": sb_port_clauses(me)}],
    })
}

pub fn sb_port_clauses(me: Option<Uuid>) -> Value {
    match me {
        Some(u) => serde_json::json!([["chassis", "==", crate::ovsdb::value::uuid(u)]]),
        None => serde_json::json!([false]),
    }
}

/// The NB monitor: the vm-data rows of the local NICs, by `_uuid`.
pub fn nb_monitor(owner: &Owner, nics: &BTreeSet<String>) -> Value {
    // `_uuid` is monitored because the condition names it (see sb_monitor).
    serde_json::json!({"DNS": [{"columns": ["_uuid", "external_ids"], "where": nb_clauses(owner, nics)}]})
}

pub fn nb_clauses(owner: &Owner, nics: &BTreeSet<String>) -> Value {
    if nics.is_empty() {
        return serde_json::json!([false]);
    }
    Value::Array(
        nics.iter()
            .map(|n| serde_json::json!(["_uuid", "==", crate::ovsdb::value::uuid(metadata::row_uuid(owner, n))]))
            .collect(),
    )
}

/// Has any chassis acknowledged generation `gen` of `nic`'s password?
pub fn acked(sb: &mut Client, nic: &str, gen: &str) -> Result<bool, crate::ovsdb::Error> {
    let r = sb.transact(SB_DB, &[metadata::select_acks(nic, gen)])?;
    Ok(!rows(&r[0]).is_empty())
}

/// Our own `Chassis_Private.external_ids` (`None` until ovn-controller
/// created the row).
fn own_ids(sb: &mut Client, chassis: &str) -> Result<Option<BTreeMap<String, String>>, crate::ovsdb::Error> {
    let r =
        sb.transact(SB_DB, &[select(metadata::ACK_TABLE, vec![Condition::eq("name", chassis)], &["external_ids"])])?;
    Ok(rows(&r[0]).first().and_then(|row| row.get("external_ids")).map(string_map_of))
}

/// The acknowledgements recorded in our own `Chassis_Private`: NIC → `pw-gen`.
pub fn own_acks(sb: &mut Client, chassis: &str) -> Result<BTreeMap<String, String>, crate::ovsdb::Error> {
    Ok(own_ids(sb, chassis)?
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(key::ACK_PREFIX)?.to_string(), v)))
        .collect())
}

/// Delete acknowledgements (NIC → `pw-gen`) from our own
/// `Chassis_Private.external_ids`: one mutate removing exactly these
/// pairs, so an ack recorded meanwhile for a newer generation, and every
/// key that is not an ack of ours, stays.
pub fn drop_own_acks(
    sb: &mut Client,
    chassis: &str,
    acks: &BTreeMap<String, String>,
) -> Result<(), crate::ovsdb::Error> {
    use crate::ovsdb::{Mutation, Mutator};
    if acks.is_empty() {
        return Ok(());
    }
    let pairs: BTreeMap<String, String> = acks.iter().map(|(n, g)| (metadata::ack_key(n), g.clone())).collect();
    let op = Operation::Mutate {
        table: metadata::ACK_TABLE.into(),
        conditions: vec![Condition::eq("name", chassis)],
        mutations: vec![Mutation("external_ids".into(), Mutator::Delete, crate::ovsdb::value::string_map(&pairs))],
    };
    sb.transact(SB_DB, &[op]).map(|_| ())
}

/// Set our own `Chassis_Private.external_ids` keys (acks, liveness);
/// SB RBAC lets a chassis write exactly this row.
pub fn set_own_keys(
    sb: &mut Client,
    chassis: &str,
    keys: &BTreeMap<String, String>,
) -> Result<bool, crate::ovsdb::Error> {
    use crate::ovsdb::{Mutation, Mutator};
    let Some(current) = own_ids(sb, chassis)? else {
        // ovn-controller has not created our row yet.
        return Ok(false);
    };
    // Only pairs that differ are written; an old value goes as the exact
    // pair just read.
    let stale: BTreeMap<String, String> = current
        .iter()
        .filter(|(k, v)| keys.get(*k).is_some_and(|want| want != *v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let missing: BTreeMap<String, String> =
        keys.iter().filter(|(k, v)| current.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut mutations = Vec::new();
    if !stale.is_empty() {
        mutations.push(Mutation("external_ids".into(), Mutator::Delete, crate::ovsdb::value::string_map(&stale)));
    }
    if !missing.is_empty() {
        mutations.push(Mutation("external_ids".into(), Mutator::Insert, crate::ovsdb::value::string_map(&missing)));
    }
    if mutations.is_empty() {
        return Ok(true);
    }
    let op = Operation::Mutate {
        table: metadata::ACK_TABLE.into(),
        conditions: vec![Condition::eq("name", chassis)],
        mutations,
    };
    sb.transact(SB_DB, &[op]).map(|_| true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each (table, column named in a `where` clause, monitored columns).
    fn condition_columns(monitor: &Value) -> Vec<(String, String, Vec<String>)> {
        let mut out = Vec::new();
        for (table, reqs) in monitor.as_object().unwrap() {
            for req in reqs.as_array().unwrap() {
                let cols: Vec<String> =
                    req["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
                for clause in req["where"].as_array().unwrap() {
                    if let Some(col) = clause.get(0).and_then(Value::as_str) {
                        out.push((table.clone(), col.to_string(), cols.clone()));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn an_ack_is_stale_once_its_password_is_no_longer_stored() {
        let m = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let acks = m(&[("kept", "g1"), ("dropped", "g1"), ("replaced", "g1"), ("gone", "g1")]);
        let rows: HashMap<String, BTreeMap<String, String>> = [
            ("kept".to_string(), m(&[("pw", "s1:x"), ("pw-gen", "g1"), ("pw-d", "d")])),
            // The management side dropped it: only the digest is left.
            ("dropped".to_string(), m(&[("pw-d", "d"), ("md:instance-id", "i")])),
            ("replaced".to_string(), m(&[("pw", "s1:y"), ("pw-gen", "g2"), ("pw-d", "d2")])),
        ]
        .into();
        let stale = stale_acks(&acks, &rows);
        assert_eq!(stale, m(&[("dropped", "g1"), ("replaced", "g1"), ("gone", "g1")]));
    }

    #[test]
    fn every_condition_column_is_monitored() {
        let owner = Owner("cloudstack".into());
        let nics: BTreeSet<String> = ["3f0c0000-0000-4000-8000-000000000001".to_string()].into();
        let monitors = [
            sb_monitor("hv1", None),
            sb_monitor("hv1", Some(Uuid::from_u128(7))),
            nb_monitor(&owner, &Default::default()),
            nb_monitor(&owner, &nics),
        ];
        let clauses: Vec<_> = monitors.iter().flat_map(condition_columns).collect();
        assert!(clauses.iter().any(|(t, c, _)| t == "Port_Binding" && c == "chassis"), "{clauses:?}");
        assert!(clauses.iter().any(|(t, c, _)| t == "DNS" && c == "_uuid"), "{clauses:?}");
        for (table, col, cols) in clauses {
            assert!(cols.contains(&col), "{table}: condition on {col} which is not monitored ({cols:?})");
        }
    }
}
