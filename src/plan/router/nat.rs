//! NAT rows of a router: source NAT of the guest (or VPC) CIDR, static NAT
//! of a public IP.

use super::*;

// ---------------------------------------------------------------- NAT

/// One NAT row as we want it.
struct NatRow {
    uuid: Uuid,
    kind: &'static str,
    external: Ipv4Addr,
    logical: String,
    ids: BTreeMap<String, String>,
}

fn ensure_nat(plan: &mut Plan, rs: &RouterScope, nat: NatRow, obs: &Observed) -> Result<()> {
    let NatRow { uuid, kind, external, logical, ids } = nat;
    let logical = logical.as_str();
    match obs.nat(uuid) {
        None => {
            let r = row(&[
                ("type", json!(kind)),
                ("external_ip", json!(external.to_string())),
                ("logical_ip", json!(logical)),
                ("external_ids", string_map(&ids)),
            ]);
            insert_router_child(plan, rs, obs, table::NAT, "nat", uuid, r, format!("{kind} {external} ↔ {logical}"));
        }
        Some(n) => {
            rs.require_owned(format!("NAT {}", n.uuid), &n.external_ids)?;
            let mut u = Map::new();
            if n.external_ip != external.to_string() {
                u.insert("external_ip".into(), json!(external.to_string()));
            }
            if n.logical_ip != logical {
                u.insert("logical_ip".into(), json!(logical));
            }
            plan.update(table::NAT, n.uuid, u, format!("update {kind} {external} ↔ {logical}"));
            plan.mutate(table::NAT, n.uuid, merge_ids(&ids, &n.external_ids), format!("update {kind} ids"));
        }
    }
    Ok(())
}

/// Source NAT of `logical` (guest or VPC CIDR) to `ip`: one row per router,
/// moved in place (update) when the source-NAT IP changes.
pub fn ensure_snat(plan: &mut Plan, rs: &RouterScope, logical: Ipv4Cidr, ip: Ipv4Addr, obs: &Observed) -> Result<()> {
    let mut ids = rs.ids(Kind::Snat);
    ids.insert(key::PUBLIC_IP.into(), ip.to_string());
    let nat = NatRow { uuid: rs.snat_uuid(), kind: "snat", external: ip, logical: logical.network().to_string(), ids };
    ensure_nat(plan, rs, nat, obs)
}

pub fn ensure_static_nat(
    plan: &mut Plan,
    rs: &RouterScope,
    public: Ipv4Addr,
    private: Ipv4Addr,
    obs: &Observed,
) -> Result<()> {
    let mut ids = rs.ids(Kind::StaticNat);
    ids.insert(key::PUBLIC_IP.into(), public.to_string());
    ids.insert(key::PRIVATE_IP.into(), private.to_string());
    let nat = NatRow {
        uuid: rs.static_nat_uuid(public),
        kind: "dnat_and_snat",
        external: public,
        logical: private.to_string(),
        ids,
    };
    ensure_nat(plan, rs, nat, obs)
}

fn remove_nat(plan: &mut Plan, rs: &RouterScope, uuid: Uuid, obs: &Observed) -> Result<()> {
    if let (Some(n), Some(r)) = (obs.nat(uuid), obs.router()) {
        rs.require_owned(format!("NAT {}", n.uuid), &n.external_ids)?;
        if r.nat.contains(&n.uuid) {
            plan.unlink(Parent::router(r.uuid, "nat"), &[n.uuid], format!("remove {} {}", n.kind, n.external_ip));
        }
    }
    Ok(())
}

pub fn remove_static_nat(plan: &mut Plan, rs: &RouterScope, public: Ipv4Addr, obs: &Observed) -> Result<()> {
    remove_nat(plan, rs, rs.static_nat_uuid(public), obs)
}

/// Remove the source NAT if it translates to `ip` (or any IP when `None`).
pub fn remove_snat(plan: &mut Plan, rs: &RouterScope, ip: Option<Ipv4Addr>, obs: &Observed) -> Result<()> {
    let uuid = rs.snat_uuid();
    let matches = obs.nats().iter().any(|n| n.uuid == uuid && ip.is_none_or(|ip| n.external_ip == ip.to_string()));
    if matches {
        remove_nat(plan, rs, uuid, obs)?;
    }
    Ok(())
}
