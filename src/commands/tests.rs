//! Commands without an NB: prepare from a payload, then plan against a
//! hand-built `Observed`. What reaches OVN is proven in `tests/`; these pin
//! that validation happens in `prepare` and what a plan contains.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::{registry, Context, Job};
use crate::cli::{Invocation, Style};
use crate::config::{Config, FileConfig, Settings};
use crate::error::{Error, ExitCode};
use crate::nb::ids::{RouterOf, RouterScope, Scope};
use crate::nb::rows::PortGroup;
use crate::nb::{key, Kind, Owner};
use crate::observe::{Observed, Read};
use crate::ovsdb::Deadline;
use crate::plan::Plan;

const NIC: &str = "3f0c0000-0000-4000-8000-000000000001";

fn context(command: &str, fields: Value, registration: &[(&str, &str)]) -> Context {
    let mut payload = crate::payload::Payload::from_envelope(json!({ "payload": fields })).unwrap();
    payload.physical_details = registration.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let settings = Settings::new(payload.physical_details.clone(), BTreeMap::new(), FileConfig::default());
    let config = Config::parse(&settings).unwrap();
    Context {
        inv: Invocation {
            command: command.into(),
            style: Style::PayloadFile,
            timeout: Duration::from_secs(5),
            deadline: Deadline::after(Duration::from_secs(5)),
            payload,
            unknown_flags: Vec::new(),
        },
        config,
        owner: Owner("cloudstack".into()),
        deadline: Deadline::after(Duration::from_secs(5)),
    }
}

fn prepare(command: &str, fields: Value, registration: &[(&str, &str)]) -> crate::error::Result<Job> {
    registry::prepare(&context(command, fields, registration))
}

fn ops(plan: &Plan) -> Vec<Value> {
    plan.ops.iter().map(|o| o.to_json()).collect()
}

fn inserted(plan: &Plan, table: &str) -> Vec<String> {
    ops(plan)
        .into_iter()
        .filter(|o| o["op"] == "insert" && o["table"] == table)
        .map(|o| o["uuid"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn scope() -> Scope {
    Scope { owner: Owner("cloudstack".into()), network_id: 42, zone_id: Some(1), vpc_id: None }
}

fn nic_payload() -> Value {
    json!({"network_id": 42, "zone_id": 1, "cidr": "10.1.1.0/24", "gateway": "10.1.1.1",
           "nic_uuid": NIC, "mac": "02:00:4c:3e:00:05", "ip": "10.1.1.23", "hostname": "vm-1"})
}

#[test]
fn unknown_and_unsupported_commands_are_answered_before_anything_else() {
    let e = prepare("no-such-command", json!({}), &[]).err().unwrap();
    assert!(matches!(e, Error::UnknownCommand(_)));
    // Every known command is implemented now: a UserData command without
    // its NIC is refused while preparing, before any connection.
    let e = prepare("save-password", json!({}), &[]).err().unwrap();
    assert_eq!(e.exit_code(), ExitCode::BadInput);
}

#[test]
fn prepare_nic_on_an_empty_nb_plans_switch_port_and_port_group() {
    let job = prepare("prepare-nic", nic_payload(), &[]).unwrap();
    let plan = job.plan(&Observed::nothing_exists()).unwrap();
    let s = scope();
    assert_eq!(inserted(&plan, "Logical_Switch"), [s.switch_uuid().to_string()]);
    assert_eq!(inserted(&plan, "Logical_Switch_Port"), [s.port_uuid(NIC).to_string()]);
    assert_eq!(inserted(&plan, "Port_Group"), [s.port_group_uuid().to_string()]);
    // Invalid input never gets as far as a job.
    let mut bad = nic_payload();
    bad["ip"] = json!("10.9.9.9");
    assert!(matches!(prepare("prepare-nic", bad, &[]), Err(Error::Field { .. })));
}

#[test]
fn public_commands_need_a_gateway_chassis_before_connecting() {
    let p = json!({"network_id": 42, "cidr": "10.1.1.0/24", "gateway": "10.1.1.1",
                   "public_ip": "203.0.113.10", "public_cidr": "203.0.113.0/24", "public_gateway": "203.0.113.1",
                   "public_vlan": "vlan://101", "private_ip": "10.1.1.23"});
    for command in ["assign-ip", "add-static-nat"] {
        let e = prepare(command, p.clone(), &[]).err().unwrap();
        assert_eq!(e.exit_code(), ExitCode::Config, "{command}: {e}");
        assert!(e.to_string().contains("ovn.gateway.chassis"), "{e}");
    }
    // A VPC tier's source-NAT assign-ip is the VPC's business: nothing to do, no config needed.
    let mut tier = p.clone();
    tier["vpc_id"] = json!(5);
    tier["source_nat"] = json!(true);
    let job = prepare("assign-ip", tier, &[]).unwrap();
    assert!(job.want().is_none());
}

#[test]
fn add_static_nat_on_an_empty_nb_plans_the_whole_router() {
    let p = json!({"network_id": 42, "cidr": "10.1.1.0/24", "gateway": "10.1.1.1",
                   "public_ip": "203.0.113.10", "public_cidr": "203.0.113.0/24", "public_gateway": "203.0.113.1",
                   "public_vlan": "101", "private_ip": "10.1.1.23"});
    let job = prepare("add-static-nat", p, &[("ovn.gateway.chassis", "hv1,hv2")]).unwrap();
    let plan = job.plan(&Observed::nothing_exists()).unwrap();
    let rs = RouterScope { owner: Owner("cloudstack".into()), of: RouterOf::Network(42), zone_id: None };
    assert_eq!(inserted(&plan, "Logical_Router"), [rs.uuid().to_string()]);
    assert_eq!(inserted(&plan, "NAT"), [rs.static_nat_uuid("203.0.113.10".parse().unwrap()).to_string()]);
    assert_eq!(inserted(&plan, "Gateway_Chassis").len(), 2);
    assert_eq!(inserted(&plan, "Logical_Router_Port").len(), 2, "guest port and gateway port");
}

#[test]
fn planning_with_a_slot_the_command_did_not_read_is_reported() {
    let job = prepare("config-dns-subnet", json!({"network_id": 42}), &[]).unwrap();
    // What config-dns-subnet reads: the switch and the DNS row, nothing else.
    let obs = Observed { switch: Read::absent(), dns: Read::absent(), ..Observed::default() };
    job.plan(&obs).unwrap();
    assert_eq!(obs.misread(), None);
    // A hypothetical planner reaching for the router would be caught.
    let _ = obs.router();
    assert_eq!(obs.misread(), Some("router"));
}

/// The firewall payload of network 42.
fn fw_payload(rules: Value) -> Value {
    json!({"network_id": 42, "cidr": "10.1.1.0/24", "fw_rules": {"default_egress_allow": true, "rules": rules}})
}

/// `obs` after `plan` for the port group: the ACLs it links and unlinks,
/// the `external_ids` keys it records.
fn apply_to_port_group(obs: &Observed, plan: &Plan) -> Observed {
    let s = scope();
    let mut pg = obs.port_group().cloned().unwrap_or(PortGroup {
        uuid: s.port_group_uuid(),
        name: s.port_group_name(),
        ports: vec![],
        acls: vec![],
        external_ids: s.ids(Kind::PortGroup),
    });
    let uuids = |v: &Value| -> Vec<uuid::Uuid> { crate::ovsdb::value::uuid_set_of(v) };
    for o in ops(plan) {
        if o["table"] != "Port_Group" || o["op"] != "mutate" {
            continue;
        }
        for m in o["mutations"].as_array().unwrap() {
            let (col, op, val) = (m[0].as_str().unwrap(), m[1].as_str().unwrap(), &m[2]);
            match (col, op) {
                ("acls", "insert") => pg.acls.extend(uuids(val)),
                ("acls", "delete") => pg.acls.retain(|u| !uuids(val).contains(u)),
                ("external_ids", "delete") => {
                    for k in crate::ovsdb::value::string_set_of(val) {
                        pg.external_ids.remove(&k);
                    }
                }
                ("external_ids", "insert") => pg.external_ids.extend(crate::ovsdb::value::string_map_of(val)),
                _ => {}
            }
        }
    }
    Observed { port_group: Read::found(pg), ..obs.clone() }
}

/// A network whose port group holds ACL rows this version does not derive
/// (keyed differently, or rules since replaced) converges in one plan that
/// links the new rows and unlinks the old ones: the transaction commits
/// both, so no committed state lacks the rules. Planning again on the result
/// changes nothing.
#[test]
fn a_firewall_with_differently_keyed_acls_converges_in_one_transaction() {
    let rules = json!([{"id": 7, "type": "egress", "protocol": "tcp", "portStart": 80, "portEnd": 80}]);
    let job = prepare("apply-fw-rules", fw_payload(rules), &[]).unwrap();
    let s = scope();
    let old = [uuid::Uuid::from_u128(0xac1), uuid::Uuid::from_u128(0xac2)];
    let pg = PortGroup {
        uuid: s.port_group_uuid(),
        name: s.port_group_name(),
        ports: vec![],
        acls: old.to_vec(),
        external_ids: s.ids(Kind::PortGroup),
    };
    // Both old rows carry our tag (an operator's own ACL would stay).
    let obs = Observed {
        port_group: Read::found(pg),
        our_acls: Some(old.into_iter().collect()),
        ..Observed::nothing_exists()
    };
    let plan = job.plan(&obs).unwrap();
    let new = inserted(&plan, "ACL");
    assert!(!new.is_empty());
    let json = ops(&plan);
    let unlink = json
        .iter()
        .find(|o| o["table"] == "Port_Group" && o["mutations"][0][0] == "acls" && o["mutations"][0][1] == "delete")
        .expect("old ACLs unlinked in the same plan");
    let gone = crate::ovsdb::value::uuid_set_of(&unlink["mutations"][0][2]);
    assert_eq!(gone.len(), 2);
    assert!(gone.iter().all(|u| old.contains(u)));
    assert!(json.iter().all(|o| o["op"] != "delete"), "nothing deleted outright: unreferenced ACLs go at commit");
    let after = apply_to_port_group(&obs, &plan);
    assert!(after.port_group().unwrap().external_ids.contains_key(key::FIREWALL));
    let again = job.plan(&after).unwrap();
    assert!(again.is_empty(), "{:?}", again.changes);
}
