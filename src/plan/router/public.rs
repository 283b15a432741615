//! The public side of a router: its public IPs, the shared public switch
//! with its localnet port, the gateway port pinned by Gateway_Chassis, its
//! peer and the default route; taking them down again.

use super::*;

// ---------------------------------------------------------------- public side

/// Which address the gateway port carries: the source-NAT IP if there is
/// one, else the address it already has if still assigned, else the lowest.
fn primary_ip(ips: &BTreeMap<Ipv4Addr, String>, current: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
    ips.iter()
        .find(|(_, role)| role.as_str() == IP_SOURCE_NAT)
        .map(|(ip, _)| *ip)
        .or(current.filter(|c| ips.contains_key(c)))
        .or_else(|| ips.keys().next().copied())
}

fn current_primary(obs: &Observed) -> Option<Ipv4Addr> {
    obs.gateway_port()?.networks.first()?.split('/').next()?.parse().ok()
}

/// Record `ip` with `role` on the router and make sure the router has its
/// gateway: the public switch (+ localnet port) of the IP's VLAN, the
/// gateway port pinned to the gateway chassis, its peer, the default route.
pub fn ensure_public_ip(
    plan: &mut Plan,
    rs: &RouterScope,
    public: &PublicIp,
    role: &str,
    gw: &GatewaySpec,
    obs: &Observed,
) -> Result<()> {
    let mut ips = recorded_ips(obs);
    let switch_uuid = public.net.switch_uuid(&rs.owner);
    if let Some(r) = obs.router() {
        if let Some(other) = r.external_ids.get(key::PUBLIC_SWITCH).filter(|s| **s != switch_uuid.to_string()) {
            if !ips.is_empty() {
                return Err(Error::Unsupported(format!(
                    "public IP {} is on {}, but router {} already has its gateway on another public network ({other}); one public VLAN per router",
                    public.ip,
                    public.net.switch_name(&rs.owner),
                    rs.name()
                )));
            }
        }
    }
    // A source-NAT IP demotes any previous one (update-vpc-source-nat-ip).
    if role == IP_SOURCE_NAT {
        for v in ips.values_mut() {
            if v == IP_SOURCE_NAT {
                *v = IP_ASSIGNED.to_string();
            }
        }
    }
    // An IP keeps its source-NAT role when it is assigned again without it.
    let role = if ips.get(&public.ip).map(String::as_str) == Some(IP_SOURCE_NAT) && role == IP_ASSIGNED {
        IP_SOURCE_NAT
    } else {
        role
    };
    ips.insert(public.ip, role.to_string());
    let mut ids = BTreeMap::new();
    for (ip, r) in &ips {
        ids.insert(format!("{}{ip}", key::PUBLIC_IP_PREFIX), r.clone());
    }
    ids.insert(key::PUBLIC_SWITCH.to_string(), switch_uuid.to_string());
    let observed_ids = obs.router().map(|r| r.external_ids.clone()).unwrap_or_default();
    plan.mutate(
        table::LOGICAL_ROUTER,
        rs.uuid(),
        map_mutations("external_ids", &ids, &observed_ids, |k| {
            k.starts_with(key::PUBLIC_IP_PREFIX) || k == key::PUBLIC_SWITCH
        }),
        format!("record public IP {} on {}", public.ip, rs.name()),
    );
    let primary = primary_ip(&ips, current_primary(obs)).unwrap_or(public.ip);
    ensure_gateway(plan, rs, public, primary, gw, obs)
}

fn ensure_gateway(
    plan: &mut Plan,
    rs: &RouterScope,
    public: &PublicIp,
    primary: Ipv4Addr,
    gw: &GatewaySpec,
    obs: &Observed,
) -> Result<()> {
    let owner = &rs.owner;
    let sw_uuid = public.net.switch_uuid(owner);
    let sw_name = public.net.switch_name(owner);
    let mut sw_ids = BTreeMap::new();
    sw_ids.insert(key::OWNER.to_string(), owner.0.clone());
    sw_ids.insert(key::KIND.to_string(), Kind::PublicSwitch.as_str().to_string());
    sw_ids.insert(key::PUBLIC_VLAN.to_string(), public.net.vlan_key());
    sw_ids.insert(key::NETWORK_NAME.to_string(), public.net.network_name.clone());
    match obs.public_switch() {
        None => {
            let r = row(&[("name", json!(sw_name)), ("external_ids", string_map(&sw_ids))]);
            plan.insert(table::LOGICAL_SWITCH, Some(sw_uuid), None, r, format!("insert public switch {sw_name}"));
        }
        Some(sw) => {
            rs.require_owned(format!("Logical_Switch {sw_name}"), &sw.external_ids)?;
            plan.require_row(table::LOGICAL_SWITCH, sw_uuid, &sw_name);
        }
    }
    // The localnet port: the switch's way onto the physical network.
    let mut ln_ids = sw_ids.clone();
    ln_ids.insert(key::KIND.to_string(), Kind::Localnet.as_str().to_string());
    let ln = Localnet {
        uuid: public.net.localnet_uuid(owner),
        name: public.net.localnet_name(owner),
        switch: sw_uuid,
        switch_existing: Existing::of(obs.public_switch(), sw_name.clone()),
        network_name: public.net.network_name.clone(),
        tag: public.net.vlan,
        ids: ln_ids,
    };
    ensure_localnet(plan, owner, &ln, obs.localnet())?;

    // The gateway port and its placement.
    let port_name = rs.gateway_port_name();
    let port_uuid = rs.gateway_port_uuid();
    let mac = rs.gateway_port_mac();
    let networks = vec![format!("{primary}/{}", public.prefix)];
    let options: BTreeMap<String, String> = [("gateway_mtu".to_string(), gw.mtu.to_string())].into();
    let ids = rs.ids(Kind::GatewayPort);
    match obs.gateway_port() {
        None => {
            let r = row(&[
                ("name", json!(port_name)),
                ("mac", json!(mac)),
                ("networks", string_set(networks.iter().map(String::as_str))),
                ("options", string_map(&options)),
                ("external_ids", string_map(&ids)),
            ]);
            insert_router_child(
                plan,
                rs,
                obs,
                table::LOGICAL_ROUTER_PORT,
                "ports",
                port_uuid,
                r,
                format!("gateway port {port_name}"),
            );
        }
        Some(p) => {
            rs.require_owned(format!("Logical_Router_Port {port_name}"), &p.external_ids)?;
            update_router_port(plan, p, &mac, &networks, &options, &ids);
        }
    }
    ensure_gateway_chassis(plan, rs, gw, obs);

    // The gateway port's peer on the public switch. `nat-addresses=router`
    // makes the active gateway chassis announce the NAT addresses (GARP)
    // when it takes over.
    let peer = RouterPeer {
        name: rs.gateway_peer_name(),
        uuid: rs.gateway_peer_uuid(),
        switch: sw_uuid,
        switch_existing: Existing::of(obs.public_switch(), sw_name.clone()),
        options: [("router-port".to_string(), port_name.clone()), ("nat-addresses".to_string(), "router".to_string())]
            .into(),
        ids: rs.ids(Kind::GatewayPeer),
    };
    ensure_router_peer(plan, owner, &peer, obs.gateway_peer())?;

    // Default route to the public gateway.
    const DEFAULT_ROUTE: &str = "0.0.0.0/0";
    let route_uuid = rs.route_uuid();
    let nexthop = public.gateway.to_string();
    match obs.route() {
        None => {
            let r = row(&[
                ("ip_prefix", json!(DEFAULT_ROUTE)),
                ("nexthop", json!(nexthop)),
                ("output_port", json!(port_name)),
                ("external_ids", string_map(&rs.ids(Kind::DefaultRoute))),
            ]);
            insert_router_child(
                plan,
                rs,
                obs,
                table::STATIC_ROUTE,
                "static_routes",
                route_uuid,
                r,
                format!("default route via {nexthop}"),
            );
        }
        Some(r) => {
            let mut u = Map::new();
            if r.ip_prefix != DEFAULT_ROUTE {
                u.insert("ip_prefix".into(), json!(DEFAULT_ROUTE));
            }
            if r.nexthop != nexthop {
                u.insert("nexthop".into(), json!(nexthop));
            }
            if r.output_port.as_deref() != Some(port_name.as_str()) {
                u.insert("output_port".into(), json!(port_name));
            }
            plan.update(table::STATIC_ROUTE, r.uuid, u, format!("update default route via {nexthop}"));
        }
    }
    Ok(())
}

/// Gateway_Chassis rows `<port>_<chassis>`, highest priority first, as
/// configured; rows for chassis no longer configured are unlinked.
fn ensure_gateway_chassis(plan: &mut Plan, rs: &RouterScope, gw: &GatewaySpec, obs: &Observed) {
    let port_uuid = rs.gateway_port_uuid();
    let mut keep = Vec::new();
    for (i, chassis) in gw.chassis.iter().enumerate() {
        let name = rs.gateway_chassis_name(chassis);
        let priority = 32767 - i as i64;
        match obs.gateway_chassis().iter().find(|g| g.name == name) {
            Some(g) => {
                keep.push(g.uuid);
                if g.priority != priority || g.chassis_name != *chassis {
                    plan.update(
                        table::GATEWAY_CHASSIS,
                        g.uuid,
                        row(&[("priority", json!(priority)), ("chassis_name", json!(chassis))]),
                        format!("reprioritise {name}"),
                    );
                }
            }
            None => {
                let uuid = rs.gateway_chassis_uuid(chassis);
                let r = row(&[
                    ("name", json!(name)),
                    ("chassis_name", json!(chassis)),
                    ("priority", json!(priority)),
                    ("external_ids", string_map(&rs.ids(Kind::GatewayPort))),
                ]);
                plan.insert_child(
                    table::GATEWAY_CHASSIS,
                    uuid,
                    r,
                    Parent::router_port(port_uuid, "gateway_chassis"),
                    Existing::of(obs.gateway_port(), rs.gateway_port_name()),
                    format!("gateway chassis {name}"),
                );
            }
        }
    }
    if let Some(p) = obs.gateway_port() {
        // Only pins of ours: an operator's own Gateway_Chassis row on the
        // port is not ours to drop (OVSDB would delete it with the link).
        let ours = |u: &Uuid| obs.gateway_chassis().iter().any(|g| g.uuid == *u && rs.owner.owns(&g.external_ids));
        let stale: Vec<Uuid> = p.gateway_chassis.iter().filter(|u| !keep.contains(u) && ours(u)).copied().collect();
        if !stale.is_empty() {
            plan.unlink(Parent::router_port(p.uuid, "gateway_chassis"), &stale, "unpin stale gateway chassis".into());
        }
    }
}

/// Forget `ip`; when it was the router's last public IP, take the gateway
/// down (port, peer, route, and the public switch if no router is left on it).
pub fn release_public_ip(
    plan: &mut Plan,
    rs: &RouterScope,
    ip: Ipv4Addr,
    prefix: Option<u8>,
    obs: &Observed,
) -> Result<()> {
    let Some(r) = obs.router() else { return Ok(()) };
    rs.require_owned(format!("Logical_Router {}", r.uuid), &r.external_ids)?;
    let mut ips = recorded_ips(obs);
    let keyname = format!("{}{ip}", key::PUBLIC_IP_PREFIX);
    if ips.remove(&ip).is_some() {
        plan.mutate(
            table::LOGICAL_ROUTER,
            r.uuid,
            vec![Mutation("external_ids".into(), Mutator::Delete, string_set([keyname.as_str()]))],
            format!("forget public IP {ip}"),
        );
    }
    if ips.is_empty() {
        return remove_gateway(plan, rs, obs);
    }
    // The gateway port carried this address: move it to another one.
    if current_primary(obs) == Some(ip) {
        if let (Some(p), Some(next), Some(prefix)) = (obs.gateway_port(), primary_ip(&ips, None), prefix) {
            let networks = [format!("{next}/{prefix}")];
            plan.update(
                table::LOGICAL_ROUTER_PORT,
                p.uuid,
                row(&[("networks", string_set(networks.iter().map(String::as_str)))]),
                format!("move {} to {next}", p.name),
            );
        }
    }
    Ok(())
}

/// Remove the router's gateway: port (its Gateway_Chassis rows go with it),
/// peer, default route; then the public switch if only its localnet port
/// would be left. A guard on the switch's `ports` makes us re-plan if another
/// router joins it meanwhile.
pub fn remove_gateway(plan: &mut Plan, rs: &RouterScope, obs: &Observed) -> Result<()> {
    if let (Some(p), Some(r)) = (obs.gateway_port(), obs.router()) {
        rs.require_owned(format!("Logical_Router_Port {}", p.name), &p.external_ids)?;
        if r.ports.contains(&p.uuid) {
            plan.unlink(Parent::router(r.uuid, "ports"), &[p.uuid], format!("remove gateway port {}", p.name));
        }
    }
    if let (Some(route), Some(r)) = (obs.route(), obs.router()) {
        if r.static_routes.contains(&route.uuid) {
            plan.unlink(Parent::router(r.uuid, "static_routes"), &[route.uuid], "remove default route".into());
        }
    }
    if let Some(r) = obs.router() {
        if r.external_ids.contains_key(key::PUBLIC_SWITCH) {
            plan.mutate(
                table::LOGICAL_ROUTER,
                r.uuid,
                vec![Mutation("external_ids".into(), Mutator::Delete, string_set([key::PUBLIC_SWITCH]))],
                "forget public switch".into(),
            );
        }
    }
    let Some(sw) = obs.public_switch() else {
        return Ok(());
    };
    let peer = obs.gateway_peer().filter(|p| sw.ports.contains(&p.uuid));
    if let Some(p) = peer {
        rs.require_owned(format!("Logical_Switch_Port {}", p.name), &p.external_ids)?;
    }
    // Found by the switch when the command names no public network (teardown).
    let ln = obs
        .localnet_if_read()
        .map(|p| p.uuid)
        .or_else(|| PublicNet::from_switch_ids(&sw.external_ids).map(|n| n.localnet_uuid(&rs.owner)));
    let others = sw.ports.iter().filter(|u| Some(**u) != ln && Some(**u) != peer.map(|p| p.uuid)).count();
    if others == 0 && rs.owner.owns(&sw.external_ids) {
        guard_ports(plan, sw.uuid, &sw.ports);
        plan.delete(table::LOGICAL_SWITCH, sw.uuid, format!("delete public switch {} (no router left)", sw.name));
    } else if let Some(p) = peer {
        plan.unlink(Parent::switch_ports(sw.uuid), &[p.uuid], format!("remove gateway peer {}", p.name));
    }
    Ok(())
}

/// Fail unless the switch's `ports` are still exactly `ports`.
fn guard_ports(plan: &mut Plan, switch: Uuid, ports: &[Uuid]) {
    let mut r = Map::new();
    r.insert("ports".into(), uuid_set(ports.iter().copied()));
    plan.guard(Operation::Wait {
        table: table::LOGICAL_SWITCH.into(),
        conditions: vec![Condition::uuid_is(switch)],
        columns: vec!["ports".into()],
        until: WaitUntil::Equal,
        rows: vec![r],
        timeout_ms: Some(0),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_prefers_source_nat_then_current() {
        let a: Ipv4Addr = "203.0.113.10".parse().unwrap();
        let b: Ipv4Addr = "203.0.113.11".parse().unwrap();
        let mut ips = BTreeMap::new();
        ips.insert(a, IP_ASSIGNED.to_string());
        ips.insert(b, IP_ASSIGNED.to_string());
        assert_eq!(primary_ip(&ips, Some(b)), Some(b));
        assert_eq!(primary_ip(&ips, None), Some(a));
        ips.insert(b, IP_SOURCE_NAT.to_string());
        assert_eq!(primary_ip(&ips, Some(a)), Some(b));
    }
}
