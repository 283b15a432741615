//! Load_Balancer rows of a router: port forwarding (one per public IP and
//! protocol) and load-balancing rules (one per CloudStack rule id), each on
//! the router and the guest switch.

use super::*;

// ---------------------------------------------------------------- port forwarding

/// A port range `a` or `a-b`, validated.
pub fn port_range(field: &str, raw: &str, max_len: u32) -> Result<(u16, u16)> {
    let bad = || Error::field(field, format!("expected a port or a range a-b within 1-65535, got {raw:?}"));
    let (a, b) = match raw.split_once(['-', ':']) {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (raw.trim(), raw.trim()),
    };
    let port = |s: &str| crate::payload::types::decimal(s).and_then(|p| u16::try_from(p).ok()).ok_or_else(bad);
    let (a, b) = (port(a)?, port(b)?);
    if a == 0 || b < a {
        return Err(bad());
    }
    if u32::from(b - a) + 1 > max_len {
        return Err(Error::field(
            field,
            format!("range {raw} has {} ports; at most {max_len} are forwarded per rule", u32::from(b - a) + 1),
        ));
    }
    Ok((a, b))
}

/// `public:port → private:port` pairs of a forwarding rule (port for port).
pub fn forward_vips(
    public: Ipv4Addr,
    public_ports: (u16, u16),
    private: Ipv4Addr,
    private_ports: (u16, u16),
) -> Result<BTreeMap<String, String>> {
    let len = public_ports.1 - public_ports.0;
    if private_ports.1 - private_ports.0 != len {
        return Err(Error::field(
            "private_port",
            format!(
                "range {}-{} does not match the public range {}-{}",
                private_ports.0, private_ports.1, public_ports.0, public_ports.1
            ),
        ));
    }
    Ok((0..=len)
        .map(|i| (format!("{public}:{}", public_ports.0 + i), format!("{private}:{}", private_ports.0 + i)))
        .collect())
}

pub struct Forward<'a> {
    pub public: Ipv4Addr,
    pub protocol: Protocol,
    pub vips: &'a BTreeMap<String, String>,
    /// The guest network behind the private address (its switch gets the
    /// Load_Balancer too, for hairpin).
    pub guest: &'a Scope,
}

fn lb_of(obs: &Observed, uuid: Uuid) -> Option<&LoadBalancer> {
    obs.lb(uuid)
}

/// Add the VIPs to the router's forwarding Load_Balancer for this public IP
/// and protocol, creating it (attached to the router and the guest switch)
/// if needed. A VIP already forwarding elsewhere is re-pointed.
pub fn add_port_forward(plan: &mut Plan, rs: &RouterScope, fwd: &Forward, obs: &Observed) -> Result<()> {
    let uuid = rs.port_forward_uuid(fwd.public, fwd.protocol);
    let name = rs.port_forward_name(fwd.public, fwd.protocol);
    let mut ids = rs.ids(Kind::PortForward);
    ids.insert(key::PUBLIC_IP.into(), fwd.public.to_string());
    ids.insert(key::PROTOCOL.into(), fwd.protocol.as_str().into());
    match lb_of(obs, uuid) {
        None => {
            let r = row(&[
                ("name", json!(name)),
                ("protocol", json!(fwd.protocol.as_str())),
                ("vips", string_map(fwd.vips)),
                ("external_ids", string_map(&ids)),
            ]);
            plan.insert(table::LOAD_BALANCER, Some(uuid), None, r, format!("insert port forwarding {name}"));
        }
        Some(lb) => {
            rs.require_owned(format!("Load_Balancer {}", lb.uuid), &lb.external_ids)?;
            let muts = map_mutations("vips", fwd.vips, &lb.vips, |k| fwd.vips.contains_key(k));
            plan.mutate(table::LOAD_BALANCER, lb.uuid, muts, format!("update port forwarding {name}"));
        }
    }
    attach_lb(plan, rs, fwd.guest, uuid, &name, obs)
}

/// Remove the VIPs (exact pairs); delete the Load_Balancer when none is left
/// (its weak references from router and switch disappear with it).
pub fn remove_port_forward(
    plan: &mut Plan,
    rs: &RouterScope,
    public: Ipv4Addr,
    protocol: Protocol,
    vips: &BTreeMap<String, String>,
    obs: &Observed,
) -> Result<()> {
    let uuid = rs.port_forward_uuid(public, protocol);
    let Some(lb) = lb_of(obs, uuid) else {
        return Ok(());
    };
    rs.require_owned(format!("Load_Balancer {}", lb.uuid), &lb.external_ids)?;
    let gone: BTreeMap<String, String> =
        vips.iter().filter(|(k, v)| lb.vips.get(*k) == Some(v)).map(|(k, v)| (k.clone(), v.clone())).collect();
    if gone.len() == lb.vips.len() {
        plan.delete(table::LOAD_BALANCER, lb.uuid, format!("delete port forwarding {}", lb.name));
    } else if !gone.is_empty() {
        plan.mutate(
            table::LOAD_BALANCER,
            lb.uuid,
            vec![Mutation("vips".into(), Mutator::Delete, string_map(&gone))],
            format!("remove {} forwarded ports from {}", gone.len(), lb.name),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- load balancing

/// A load-balancing rule as the router serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Balancer {
    pub id: u64,
    pub public: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
    /// Hash on the client address (CloudStack's `source` algorithm); else
    /// OVN's default spread over the backends (`roundrobin`).
    pub source_affinity: bool,
    pub backends: Vec<(Ipv4Addr, u16)>,
}

/// Create or update the rule's Load_Balancer (one per CloudStack rule id),
/// attached to the router and to the guest switch (so VMs reach it too).
pub fn ensure_balancer(plan: &mut Plan, rs: &RouterScope, lb: &Balancer, guest: &Scope, obs: &Observed) -> Result<()> {
    let uuid = rs.balancer_uuid(lb.id);
    let name = rs.balancer_name(lb.id);
    let backends: Vec<String> = lb.backends.iter().map(|(ip, p)| format!("{ip}:{p}")).collect();
    let vips: BTreeMap<String, String> = [(format!("{}:{}", lb.public, lb.port), backends.join(","))].into();
    let selection: Vec<&str> = if lb.source_affinity { vec!["ip_src"] } else { vec![] };
    let mut ids = rs.ids(Kind::LoadBalancer);
    ids.insert(key::RULE_ID.into(), lb.id.to_string());
    ids.insert(key::PUBLIC_IP.into(), lb.public.to_string());
    let row_now = row(&[
        ("name", json!(name)),
        ("protocol", json!(lb.protocol.as_str())),
        ("vips", string_map(&vips)),
        ("selection_fields", string_set(selection.iter().copied())),
        ("external_ids", string_map(&ids)),
    ]);
    match lb_of(obs, uuid) {
        None => plan.insert(table::LOAD_BALANCER, Some(uuid), None, row_now, format!("insert load balancer {name}")),
        Some(existing) => {
            rs.require_owned(format!("Load_Balancer {}", existing.uuid), &existing.external_ids)?;
            // The row is ours entirely: write it whole when anything differs.
            let same = existing.vips == vips
                && existing.protocol.as_deref() == Some(lb.protocol.as_str())
                && existing.selection_fields == selection.iter().map(|s| s.to_string()).collect::<Vec<_>>()
                && existing.name == name;
            if !same {
                let mut r = row_now.clone();
                r.remove("external_ids");
                plan.update(table::LOAD_BALANCER, uuid, r, format!("update load balancer {name}"));
            }
            plan.mutate(
                table::LOAD_BALANCER,
                uuid,
                merge_ids(&ids, &existing.external_ids),
                format!("update {name} ids"),
            );
        }
    }
    attach_lb(plan, rs, guest, uuid, &name, obs)
}

/// A Load_Balancer serves on the router (traffic from outside) and on the
/// guest switch (VMs reaching the public address of their own network).
/// Both must still exist when it commits: a Load_Balancer is a root row, and
/// one linked to a router or switch deleted meanwhile would be left behind,
/// so both are guarded even when the links are already there.
fn attach_lb(plan: &mut Plan, rs: &RouterScope, guest: &Scope, uuid: Uuid, name: &str, obs: &Observed) -> Result<()> {
    let guest_switch = guest.switch_uuid();
    let Some(sw) = obs.switch().filter(|sw| sw.uuid == guest_switch) else {
        return Err(Error::field("network_id", format!("{name}: the network has no switch (implement-network first)")));
    };
    if obs.router().is_some() {
        plan.require_row(table::LOGICAL_ROUTER, rs.uuid(), &rs.name());
    }
    plan.require_row(table::LOGICAL_SWITCH, sw.uuid, &guest.switch_name());
    if !obs.router().is_some_and(|r| r.load_balancer.contains(&uuid)) {
        let what = format!("attach {name} to {}", rs.name());
        plan.link(Parent::router(rs.uuid(), "load_balancer"), router_existing(rs, obs), &[uuid], what);
    }
    if !sw.load_balancer.contains(&uuid) {
        plan.link(
            Parent::switch(guest_switch, "load_balancer"),
            Existing::Read(guest.switch_name()),
            &[uuid],
            format!("attach {name} to the guest switch"),
        );
    }
    Ok(())
}

/// Delete the rule's Load_Balancer (its weak references go with it).
pub fn remove_balancer(plan: &mut Plan, rs: &RouterScope, id: u64, obs: &Observed) -> Result<()> {
    if let Some(lb) = lb_of(obs, rs.balancer_uuid(id)) {
        rs.require_owned(format!("Load_Balancer {}", lb.uuid), &lb.external_ids)?;
        plan.delete(table::LOAD_BALANCER, lb.uuid, format!("delete load balancer {}", lb.name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges() {
        assert_eq!(port_range("p", "22", 256).unwrap(), (22, 22));
        assert_eq!(port_range("p", "2000-2010", 256).unwrap(), (2000, 2010));
        assert_eq!(port_range("p", "2000:2001", 256).unwrap(), (2000, 2001));
        for bad in ["0", "65536", "10-5", "x", "1-", "", "+22", "20-+30"] {
            assert!(port_range("p", bad, 256).is_err(), "{bad}");
        }
        assert!(port_range("p", "1-65535", 256).unwrap_err().to_string().contains("at most 256"));
        let v =
            forward_vips("203.0.113.12".parse().unwrap(), (2222, 2223), "10.1.1.5".parse().unwrap(), (22, 23)).unwrap();
        assert_eq!(v["203.0.113.12:2223"], "10.1.1.5:23");
        assert!(forward_vips("203.0.113.12".parse().unwrap(), (1, 2), "10.1.1.5".parse().unwrap(), (1, 1)).is_err());
    }
}
