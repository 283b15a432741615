//! Unit tests of the transaction invariants `Plan` carries: a child linked
//! to a parent the command read comes with a `wait` guard on that parent
//! (once per parent), so a concurrent delete of the parent fails and
//! re-plans the transaction instead of committing an orphan that OVSDB
//! silently drops.

use std::collections::BTreeMap;

use serde_json::Value;
use uuid::Uuid;

use super::Plan;
use crate::nb::ids::{Protocol, PublicNet, RouterOf, RouterScope, Scope};
use crate::nb::rows::{PortGroup, Router, RouterPort, Switch};
use crate::nb::{Kind, Owner};
use crate::observe::{Observed, Read};
use crate::plan::{acl, router};

fn scope() -> Scope {
    Scope { owner: Owner("cloudstack".into()), network_id: 42, zone_id: None, vpc_id: None }
}

fn rs() -> RouterScope {
    RouterScope { owner: Owner("cloudstack".into()), of: RouterOf::Network(42), zone_id: None }
}

fn switch(s: &Scope) -> Switch {
    Switch {
        uuid: s.switch_uuid(),
        name: s.switch_name(),
        ports: vec![],
        dns_records: vec![],
        load_balancer: vec![],
        external_ids: s.ids(Kind::Network),
    }
}

fn router_row(rs: &RouterScope) -> Router {
    Router {
        uuid: rs.uuid(),
        name: rs.name(),
        ports: vec![rs.gateway_port_uuid()],
        nat: vec![],
        static_routes: vec![],
        load_balancer: vec![],
        policies: vec![],
        options: BTreeMap::new(),
        external_ids: rs.ids(Kind::Router),
    }
}

/// The `wait` operations of a plan: (table, uuid).
fn waits(plan: &Plan) -> Vec<(String, String)> {
    plan.ops
        .iter()
        .map(|o| o.to_json())
        .filter(|o| o["op"] == "wait")
        .map(|o| {
            let uuid = o["where"][0][2][1].as_str().unwrap_or_default().to_string();
            (o["table"].as_str().unwrap_or_default().to_string(), uuid)
        })
        .collect()
}

fn guarded(plan: &Plan, table: &str, uuid: Uuid) -> usize {
    waits(plan).iter().filter(|(t, u)| t == table && *u == uuid.to_string()).count()
}

#[test]
fn a_new_gateway_chassis_under_an_existing_gateway_port_guards_the_port() {
    let rs = rs();
    let net = PublicNet { network_name: "public".into(), vlan: Some(101) };
    let port = RouterPort {
        uuid: rs.gateway_port_uuid(),
        name: rs.gateway_port_name(),
        mac: rs.gateway_port_mac(),
        networks: vec!["203.0.113.10/24".into()],
        gateway_chassis: vec![],
        options: BTreeMap::new(),
        ipv6_ra_configs: BTreeMap::new(),
        external_ids: rs.ids(Kind::GatewayPort),
    };
    let obs = Observed {
        router: Read::found(router_row(&rs)),
        gateway_port: Read::found(port),
        ..Observed::nothing_exists()
    };
    let public = router::PublicIp {
        ip: "203.0.113.10".parse().unwrap(),
        prefix: 24,
        gateway: "203.0.113.1".parse().unwrap(),
        net,
    };
    let gw = router::GatewaySpec { chassis: vec!["hv1".into(), "hv2".into()], mtu: 1500 };
    let mut plan = Plan::default();
    router::ensure_public_ip(&mut plan, &rs, &public, crate::nb::IP_ASSIGNED, &gw, &obs).unwrap();
    assert_eq!(guarded(&plan, "Logical_Router_Port", rs.gateway_port_uuid()), 1, "{:#?}", waits(&plan));
    // Several children of the router (route, ...) share one guard.
    assert_eq!(guarded(&plan, "Logical_Router", rs.uuid()), 1, "{:#?}", waits(&plan));
}

#[test]
fn a_load_balancer_linked_to_the_existing_guest_switch_guards_the_switch() {
    let (s, rs) = (scope(), rs());
    let obs = Observed {
        switch: Read::found(switch(&s)),
        router: Read::found(router_row(&rs)),
        ..Observed::nothing_exists()
    };
    let lb = router::Balancer {
        id: 7,
        public: "203.0.113.10".parse().unwrap(),
        port: 80,
        protocol: Protocol::Tcp,
        source_affinity: false,
        backends: vec![("10.1.1.23".parse().unwrap(), 8080)],
    };
    let mut plan = Plan::default();
    router::ensure_balancer(&mut plan, &rs, &lb, &s, &obs).unwrap();
    assert_eq!(guarded(&plan, "Logical_Switch", s.switch_uuid()), 1, "{:#?}", waits(&plan));
    assert_eq!(guarded(&plan, "Logical_Router", rs.uuid()), 1);
    // Without the network's switch there is nothing to serve on.
    let mut plan = Plan::default();
    assert!(router::ensure_balancer(&mut plan, &rs, &lb, &s, &Observed::nothing_exists()).is_err());
}

#[test]
fn a_port_linked_into_an_existing_port_group_guards_the_group() {
    let s = scope();
    let pg = PortGroup {
        uuid: s.port_group_uuid(),
        name: s.port_group_name(),
        ports: vec![],
        acls: vec![],
        external_ids: s.ids(Kind::PortGroup),
    };
    let obs = Observed { port_group: Read::found(pg), ..Observed::nothing_exists() };
    let mut plan = Plan::default();
    acl::ensure_port_group(&mut plan, &s, &[Uuid::from_u128(7)], &obs).unwrap();
    assert_eq!(guarded(&plan, "Port_Group", s.port_group_uuid()), 1, "{:#?}", waits(&plan));
    let linked: Vec<Value> = plan.ops.iter().map(|o| o.to_json()).filter(|o| o["op"] == "mutate").collect();
    assert_eq!(linked.len(), 1);
}
