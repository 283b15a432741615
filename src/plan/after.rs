//! What the router forwards once a plan commits, derived from the observed
//! rows with the plan's own operations applied to them. The firewall is
//! refreshed from this, so a NAT, forwarding or load-balancer change is
//! described once (as operations), not a second time as a hand-written
//! delta of the forwarding table.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use uuid::Uuid;

use super::acl::Forwarding;
use super::Plan;
use crate::nb::ids::RouterScope;
use crate::nb::rows::{LoadBalancer, Nat};
use crate::nb::{key, table};
use crate::observe::Observed;
use crate::ovsdb::value::{as_uuid, string_map_of, string_set_of, uuid_set_of};
use crate::ovsdb::{Condition, Mutation, Mutator, Operation};

/// The row an update, mutate or delete addresses (we always address by `_uuid`).
fn target(conditions: &[Condition]) -> Option<Uuid> {
    conditions.iter().find(|c| c.0 == "_uuid").and_then(|c| as_uuid(&c.2))
}

/// A row as `from_row` reads it: the inserted columns plus `_uuid`.
fn with_uuid(row: &Map<String, Value>, uuid: Uuid) -> Map<String, Value> {
    let mut r = row.clone();
    r.insert("_uuid".into(), crate::ovsdb::value::uuid(uuid));
    r
}

/// Apply a map-column mutation: `insert` adds pairs whose key is absent
/// (OVSDB never replaces a key that way); `delete` takes a set of keys or a
/// map of exact pairs.
fn mutate_map(map: &mut BTreeMap<String, String>, m: &Mutation) {
    match m.1 {
        Mutator::Insert => {
            for (k, v) in string_map_of(&m.2) {
                map.entry(k).or_insert(v);
            }
        }
        Mutator::Delete => {
            let pairs = string_map_of(&m.2);
            if pairs.is_empty() {
                for k in string_set_of(&m.2) {
                    map.remove(&k);
                }
            } else {
                for (k, v) in pairs {
                    if map.get(&k) == Some(&v) {
                        map.remove(&k);
                    }
                }
            }
        }
        _ => {}
    }
}

/// The router's NAT and Load_Balancer rows and its `external_ids` after `plan`.
struct After {
    nats: BTreeMap<Uuid, Nat>,
    lbs: BTreeMap<Uuid, LoadBalancer>,
    router_ids: BTreeMap<String, String>,
    /// Whether the plan changed the router's public switch key: `Some(None)`
    /// when it removed it.
    public_switch: Option<Option<String>>,
}

fn project(plan: &Plan, rs: &RouterScope, obs: &Observed) -> After {
    let mut a = After {
        nats: obs.nats().iter().map(|n| (n.uuid, n.clone())).collect(),
        lbs: obs.lbs().iter().map(|l| (l.uuid, l.clone())).collect(),
        router_ids: obs.router().map(|r| r.external_ids.clone()).unwrap_or_default(),
        public_switch: None,
    };
    let router = rs.uuid();
    for op in &plan.ops {
        match op {
            Operation::Insert { table: t, row, uuid: Some(u), .. } if t == table::NAT => {
                if let Some(n) = Nat::from_row(&with_uuid(row, *u)) {
                    a.nats.insert(*u, n);
                }
            }
            Operation::Insert { table: t, row, uuid: Some(u), .. } if t == table::LOAD_BALANCER => {
                if let Some(l) = LoadBalancer::from_row(&with_uuid(row, *u)) {
                    a.lbs.insert(*u, l);
                }
            }
            Operation::Update { table: t, conditions, row } if t == table::NAT => {
                if let Some(n) = target(conditions).and_then(|u| a.nats.get_mut(&u)) {
                    if let Some(v) = row.get("external_ip").and_then(Value::as_str) {
                        n.external_ip = v.to_string();
                    }
                    if let Some(v) = row.get("logical_ip").and_then(Value::as_str) {
                        n.logical_ip = v.to_string();
                    }
                }
            }
            Operation::Update { table: t, conditions, row } if t == table::LOAD_BALANCER => {
                if let Some(l) = target(conditions).and_then(|u| a.lbs.get_mut(&u)) {
                    if let Some(v) = row.get("vips") {
                        l.vips = string_map_of(v);
                    }
                    if let Some(v) = row.get("protocol") {
                        l.protocol = crate::ovsdb::value::optional_string(v);
                    }
                }
            }
            Operation::Mutate { table: t, conditions, mutations } if t == table::LOAD_BALANCER => {
                if let Some(l) = target(conditions).and_then(|u| a.lbs.get_mut(&u)) {
                    for m in mutations.iter().filter(|m| m.0 == "vips") {
                        mutate_map(&mut l.vips, m);
                    }
                }
            }
            Operation::Mutate { table: t, conditions, mutations }
                if t == table::LOGICAL_ROUTER && target(conditions) == Some(router) =>
            {
                for m in mutations {
                    match m.0.as_str() {
                        // An unlinked NAT row is garbage-collected at commit.
                        "nat" if matches!(m.1, Mutator::Delete) => {
                            for u in uuid_set_of(&m.2) {
                                a.nats.remove(&u);
                            }
                        }
                        "external_ids" => {
                            let before = a.router_ids.get(key::PUBLIC_SWITCH).cloned();
                            mutate_map(&mut a.router_ids, m);
                            let now = a.router_ids.get(key::PUBLIC_SWITCH).cloned();
                            if now != before {
                                a.public_switch = Some(now);
                            }
                        }
                        _ => {}
                    }
                }
            }
            Operation::Delete { table: t, conditions } if t == table::LOAD_BALANCER => {
                if let Some(u) = target(conditions) {
                    a.lbs.remove(&u);
                }
            }
            Operation::Delete { table: t, conditions } if t == table::NAT => {
                if let Some(u) = target(conditions) {
                    a.nats.remove(&u);
                }
            }
            _ => {}
        }
    }
    a
}

/// The public IPs recorded in a router's `external_ids`.
fn public_ips(ids: &BTreeMap<String, String>) -> BTreeSet<std::net::Ipv4Addr> {
    ids.keys().filter_map(|k| k.strip_prefix(key::PUBLIC_IP_PREFIX)?.parse().ok()).collect()
}

/// What the router forwards to VMs and the public IPs it holds once `plan`
/// commits (with an empty plan: as observed).
pub fn forwarding(plan: &Plan, rs: &RouterScope, obs: &Observed) -> Forwarding {
    let a = project(plan, rs, obs);
    let nats: Vec<Nat> = a.nats.into_values().collect();
    let lbs: Vec<LoadBalancer> = a.lbs.into_values().collect();
    let mut f = Forwarding::from_rows(&nats, &lbs);
    let observed_ips = obs.router().map(|r| public_ips(&r.external_ids)).unwrap_or_default();
    f.router_ips = public_ips(&a.router_ids);
    // The gateway's public switch: as observed, unless the plan moved or
    // removed it; the last public IP takes the gateway with it.
    let observed_gateway = obs.gateway_peer().and(obs.public_switch()).map(|s| s.uuid);
    f.gateway = match a.public_switch {
        Some(now) => now.and_then(|s| s.parse().ok()),
        None => observed_gateway,
    };
    if f.router_ips.is_empty() && !observed_ips.is_empty() {
        f.gateway = None;
    }
    f
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::nb::ids::{Protocol, RouterOf};
    use crate::nb::rows::Router;
    use crate::nb::{Kind, Owner};
    use crate::observe::{Read, ReadAll};
    use crate::plan::router;

    fn rs() -> RouterScope {
        RouterScope { owner: Owner("cloudstack".into()), of: RouterOf::Network(42), zone_id: None }
    }

    fn router_row(rs: &RouterScope, nat: Vec<Uuid>, ips: &[&str]) -> Router {
        let mut ids = rs.ids(Kind::Router);
        for ip in ips {
            ids.insert(format!("{}{ip}", key::PUBLIC_IP_PREFIX), "assigned".into());
        }
        Router {
            uuid: rs.uuid(),
            name: rs.name(),
            ports: vec![],
            nat,
            static_routes: vec![],
            load_balancer: vec![],
            policies: vec![],
            options: BTreeMap::new(),
            external_ids: ids,
        }
    }

    #[test]
    fn planned_nat_and_forwarding_rows_are_what_the_firewall_sees() {
        let rs = rs();
        let (public, private): (Ipv4Addr, Ipv4Addr) = ("203.0.113.10".parse().unwrap(), "10.1.1.23".parse().unwrap());
        let guest = crate::nb::ids::Scope { owner: rs.owner.clone(), network_id: 42, zone_id: None, vpc_id: None };
        let switch = crate::nb::rows::Switch {
            uuid: guest.switch_uuid(),
            name: guest.switch_name(),
            ports: vec![],
            dns_records: vec![],
            load_balancer: vec![],
            external_ids: guest.ids(Kind::Network),
        };
        let obs = Observed {
            router: Read::found(router_row(&rs, vec![], &["203.0.113.10"])),
            switch: Read::found(switch),
            ..Observed::nothing_exists()
        };
        assert!(forwarding(&Plan::default(), &rs, &obs).static_nat.is_empty());
        let mut plan = Plan::default();
        router::ensure_static_nat(&mut plan, &rs, public, private, &obs).unwrap();
        let vips: BTreeMap<String, String> = [("203.0.113.10:2222".to_string(), "10.1.1.23:22".to_string())].into();
        let fwd = router::Forward { public, protocol: Protocol::Tcp, vips: &vips, guest: &guest };
        router::add_port_forward(&mut plan, &rs, &fwd, &obs).unwrap();
        let f = forwarding(&plan, &rs, &obs);
        assert_eq!(f.static_nat.get(&public), Some(&private));
        assert_eq!(f.vips.get(&(public, Protocol::Tcp, 2222)).map(|b| b.len()), Some(1));
        assert!(f.router_ips.contains(&public));

        // Once committed, removing the static NAT unlinks the row: gone for the firewall.
        let nat = Nat {
            uuid: rs.static_nat_uuid(public),
            kind: "dnat_and_snat".into(),
            external_ip: public.to_string(),
            logical_ip: private.to_string(),
            external_ids: rs.ids(Kind::StaticNat),
        };
        let obs = Observed {
            router: Read::found(router_row(&rs, vec![nat.uuid], &["203.0.113.10"])),
            nats: ReadAll::found(vec![nat]),
            ..Observed::nothing_exists()
        };
        assert_eq!(forwarding(&Plan::default(), &rs, &obs).static_nat.len(), 1);
        let mut plan = Plan::default();
        router::remove_static_nat(&mut plan, &rs, public, &obs).unwrap();
        assert!(forwarding(&plan, &rs, &obs).static_nat.is_empty());
    }
}
