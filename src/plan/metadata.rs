//! UserData rows (docs/metadata.md): a network's metadata localport, the
//! DHCP and DNS keys that point guests at it, and each NIC's vm-data row.
//!
//! Pure like every planner: secrets arrive already sealed (sealing draws
//! randomness), with the keyed digest that tells whether the stored value
//! is the one the command asks for.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde_json::{json, Map};

use super::{map_mutations, merge_ids, Parent, Plan};
use crate::error::Result;
use crate::metadata::{self, key, MD_ADDRESS};
use crate::nb::ids::Scope;
use crate::nb::rows::Dns;
use crate::nb::{table, Kind};
use crate::observe::Observed;
use crate::ovsdb::value::{string_map, string_set};
use crate::ovsdb::{Mutation, Mutator};

/// A secret ready to store: sealed value, keyed digest of the plaintext,
/// generation it was sealed for (passwords).
#[derive(Clone, Debug)]
pub struct Sealed {
    pub value: String,
    pub digest: String,
    pub gen: String,
}

/// A command's change to one NIC's VM data, secrets sealed.
#[derive(Clone, Debug, Default)]
pub struct VmDataChange {
    pub nic_uuid: String,
    /// `Some(None)`: remove; `Some(Some(_))`: set.
    pub userdata: Option<Option<Sealed>>,
    /// `Some(m)`: the metadata files are exactly `m`.
    pub metadata: Option<BTreeMap<String, String>>,
    /// Files to set (an empty value removes the file).
    pub files: BTreeMap<String, String>,
    pub password: Option<Sealed>,
}

/// The address guests use: CloudStack's in-subnet `extension_ip` when it
/// gave one that is not the gateway (nothing answers HTTP on an OVN router
/// address), else the link-local 169.254.169.254.
pub fn md_address(extension_ip: Option<Ipv4Addr>) -> Ipv4Addr {
    extension_ip.unwrap_or(MD_ADDRESS)
}

/// The metadata address recorded on an existing localport.
pub fn port_md_address(addresses: &[String]) -> Option<Ipv4Addr> {
    let ips: Vec<Ipv4Addr> = addresses.first()?.split_whitespace().skip(1).filter_map(|a| a.parse().ok()).collect();
    ips.iter().copied().find(|ip| *ip != MD_ADDRESS).or_else(|| ips.first().copied())
}

/// The network's `localport` `cs-md-<network_id>`: `MAC 169.254.169.254
/// [extension_ip]`, no port security. OVN answers ARP for it on every
/// chassis; the host agent's veth carries its `iface-id`.
pub fn ensure_md_port(plan: &mut Plan, scope: &Scope, extension_ip: Option<Ipv4Addr>, obs: &Observed) -> Result<()> {
    let name = metadata::port_name(&scope.owner, scope.network_id);
    let mut address = format!("{} {MD_ADDRESS}", metadata::port_mac(&scope.owner, scope.network_id));
    if let Some(ip) = extension_ip {
        address.push_str(&format!(" {ip}"));
    }
    let ids = scope.ids(Kind::MetadataPort);
    match obs.md_port() {
        None => {
            let mut row = Map::new();
            row.insert("name".into(), json!(name));
            row.insert("type".into(), json!("localport"));
            row.insert("addresses".into(), string_set([address.as_str()]));
            row.insert("external_ids".into(), string_map(&ids));
            plan.insert_child(
                table::LOGICAL_SWITCH_PORT,
                metadata::port_uuid(&scope.owner, scope.network_id),
                row,
                Parent::switch_ports(scope.switch_uuid()),
                super::network::switch_existing(scope, obs),
                format!("metadata localport {name}"),
            );
        }
        Some(p) => {
            scope.require_owned(format!("Logical_Switch_Port {}", p.name), &p.external_ids)?;
            if p.addresses != [address.clone()] {
                let mut row = Map::new();
                row.insert("addresses".into(), string_set([address.as_str()]));
                plan.update(table::LOGICAL_SWITCH_PORT, p.uuid, row, format!("update metadata localport {name}"));
            }
            let muts = merge_ids(&ids, &p.external_ids);
            plan.mutate(table::LOGICAL_SWITCH_PORT, p.uuid, muts, format!("update metadata localport {name} ids"));
        }
    }
    Ok(())
}

/// DHCP options pointing at the metadata address: it becomes the server id
/// (cloud-init and the password scripts use the lease's server id), and
/// default NICs get the on-link /32 route to it plus the default route
/// (RFC 3442 clients ignore option 3 once option 121 is present).
pub fn add_dhcp_options(options: &mut BTreeMap<String, String>, md: Ipv4Addr, on_link: bool, with_router: bool) {
    options.insert("server_id".into(), md.to_string());
    if !with_router {
        return;
    }
    // 0.0.0.0 = on-link (isolated: nothing in the subnet carries the
    // address); else via the in-subnet metadata address.
    let via = if on_link { Ipv4Addr::UNSPECIFIED } else { md };
    let mut routes = format!("{MD_ADDRESS}/32,{via}");
    if let Some(r) = options.get("router") {
        routes.push_str(&format!(", 0.0.0.0/0,{r}"));
    }
    options.insert("classless_static_route".into(), format!("{{{routes}}}"));
}

/// The metadata options for the network's DHCP rows, if it has a
/// metadata localport (any command that writes DHCP rows reads it).
pub fn dhcp_metadata(obs: &Observed) -> Option<(Ipv4Addr, bool)> {
    let p = obs.md_port_if_read()?;
    let md = port_md_address(&p.addresses)?;
    Some((md, md == MD_ADDRESS))
}

/// Bring the subnet's existing DHCP rows (observed) to the metadata keys.
pub fn converge_dhcp(plan: &mut Plan, scope: &Scope, md: Ipv4Addr, obs: &Observed) -> Result<()> {
    for d in obs.dhcp() {
        let kind = d.external_ids.get(crate::nb::key::KIND).map(String::as_str);
        let with_router = match kind {
            Some(k) if k == Kind::Dhcp4.as_str() || k == Kind::Dhcp4Nic.as_str() => true,
            Some(k) if k == Kind::Dhcp4NoRouter.as_str() => false,
            _ => continue,
        };
        scope.require_owned(format!("DHCP_Options {}", d.uuid), &d.external_ids)?;
        let mut desired = d.options.clone();
        add_dhcp_options(&mut desired, md, md == MD_ADDRESS, with_router);
        let managed = |k: &str| k == "server_id" || k == "classless_static_route";
        let muts = map_mutations("options", &desired, &d.options, managed);
        plan.mutate(table::DHCP_OPTIONS, d.uuid, muts, format!("point DHCP options {} at metadata", d.cidr));
    }
    Ok(())
}

/// `data-server` and `data-server.<domain>`, lowercase: OVN lowercases
/// queries but not record keys, so a capital letter never matches.
pub fn dns_records(md: Ipv4Addr, domain: Option<&str>) -> BTreeMap<String, String> {
    let mut r = BTreeMap::new();
    r.insert("data-server".to_string(), md.to_string());
    if let Some(d) = domain {
        r.insert(format!("data-server.{}", d.to_ascii_lowercase()), md.to_string());
    }
    r
}

/// The NIC's vm-data row: a root `DNS` row no switch references, every
/// value in `external_ids`.
pub fn ensure_vm_data(plan: &mut Plan, scope: &Scope, change: &VmDataChange, obs: &Observed) -> Result<()> {
    let uuid = metadata::row_uuid(&scope.owner, &change.nic_uuid);
    let observed = obs.vm_data().iter().find(|d| d.uuid == uuid);
    let empty = BTreeMap::new();
    let current = observed.map(|d| &d.external_ids).unwrap_or(&empty);
    let mut data: BTreeMap<String, String> =
        current.iter().filter(|(k, _)| key::is_data(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    match &change.userdata {
        None => {}
        Some(None) => {
            data.remove(key::USERDATA);
            data.remove(key::USERDATA_DIGEST);
        }
        // The same user data again keeps the stored ciphertext.
        Some(Some(s)) if !(data.get(key::USERDATA_DIGEST) == Some(&s.digest) && data.contains_key(key::USERDATA)) => {
            data.insert(key::USERDATA.into(), s.value.clone());
            data.insert(key::USERDATA_DIGEST.into(), s.digest.clone());
        }
        Some(Some(_)) => {}
    }
    if let Some(m) = &change.metadata {
        data.retain(|k, _| !k.starts_with(key::MD_PREFIX));
        data.extend(m.iter().map(|(f, v)| (format!("{}{f}", key::MD_PREFIX), v.clone())));
    }
    for (f, v) in &change.files {
        let k = format!("{}{f}", key::MD_PREFIX);
        if v.is_empty() {
            data.remove(&k);
        } else {
            data.insert(k, v.clone());
        }
    }
    if let Some(s) = &change.password {
        // The same password again (a re-run) keeps its generation, so a
        // password the VM already acknowledged is not served again; nor is
        // one whose acknowledgement already took it out of the NB (only its
        // digest is left).
        if data.get(key::PASSWORD_DIGEST) != Some(&s.digest) {
            data.insert(key::PASSWORD.into(), s.value.clone());
            data.insert(key::PASSWORD_GEN.into(), s.gen.clone());
            data.insert(key::PASSWORD_DIGEST.into(), s.digest.clone());
        }
    }
    // A stored password some agent acknowledged has done its job: it
    // leaves the NB, its digest stays (the same password saved again then
    // writes nothing). Only the exact pairs read are deleted, so a new
    // password written concurrently survives.
    let acked = obs.pw_acks();
    let drop: BTreeMap<String, String> = match (current.get(key::PASSWORD), current.get(key::PASSWORD_GEN)) {
        (Some(pw), Some(gen))
            if data.get(key::PASSWORD_GEN) == Some(gen)
                && acked.iter().any(|(n, g)| *n == change.nic_uuid && g == gen) =>
        {
            [(key::PASSWORD.to_string(), pw.clone()), (key::PASSWORD_GEN.to_string(), gen.clone())].into()
        }
        _ => BTreeMap::new(),
    };
    let mut ids = scope.ids(Kind::VmData);
    ids.insert(key::NIC_UUID.into(), change.nic_uuid.clone());
    let what = format!("VM data of NIC {}", change.nic_uuid);
    match observed {
        None => {
            let mut all = ids;
            all.extend(data);
            let mut row = Map::new();
            row.insert("external_ids".into(), string_map(&all));
            plan.insert(table::DNS, Some(uuid), None, row, format!("insert {what}"));
        }
        Some(d) => {
            scope.require_owned(format!("DNS {}", d.uuid), &d.external_ids)?;
            // The acknowledged pairs are not managed here (a delete by key
            // would take a concurrent new password with them).
            let managed = |k: &str| key::is_data(k) && !drop.contains_key(k);
            let mut muts = map_mutations("external_ids", &data, &d.external_ids, managed);
            muts.extend(merge_ids(&ids, &d.external_ids));
            let mut what = format!("update {what}");
            if !drop.is_empty() {
                muts.push(Mutation("external_ids".into(), Mutator::Delete, string_map(&drop)));
                what.push_str(" (acknowledged password dropped)");
            }
            plan.mutate(table::DNS, d.uuid, muts, what);
        }
    }
    Ok(())
}

/// Delete the observed vm-data rows of ours (release-nic, destroy-network).
pub fn remove_vm_data(plan: &mut Plan, scope: &Scope, rows: &[Dns]) {
    for d in rows {
        let kind = d.external_ids.get(crate::nb::key::KIND).map(String::as_str);
        if scope.owner.owns(&d.external_ids) && kind == Some(Kind::VmData.as_str()) {
            let nic = d.external_ids.get(key::NIC_UUID).cloned().unwrap_or_default();
            plan.delete(table::DNS, d.uuid, format!("delete VM data of NIC {nic}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nb::Owner;

    fn scope() -> Scope {
        Scope { owner: Owner("cloudstack".into()), network_id: 42, zone_id: Some(1), vpc_id: None }
    }

    fn sealed(v: &str, d: &str, g: &str) -> Sealed {
        Sealed { value: v.into(), digest: d.into(), gen: g.into() }
    }

    #[test]
    fn same_intent_plans_nothing_even_though_sealing_differs() {
        let s = scope();
        let change = VmDataChange {
            nic_uuid: "n1".into(),
            userdata: Some(Some(sealed("s1:AAA", "d-ud", ""))),
            metadata: Some([("instance-id".to_string(), "i-1".to_string())].into()),
            password: Some(sealed("s1:PW1", "d-pw", "g1")),
            ..VmDataChange::default()
        };
        let mut plan = Plan::default();
        ensure_vm_data(&mut plan, &s, &change, &Observed::nothing_exists()).unwrap();
        assert_eq!(plan.changes.len(), 1);
        // Observe what was inserted; re-run with freshly sealed values.
        let super::super::Plan { ops, .. } = plan;
        let crate::ovsdb::Operation::Insert { row, .. } = &ops[0] else { panic!() };
        let ids = crate::ovsdb::value::string_map_of(&row["external_ids"]);
        assert_eq!(ids["md:instance-id"], "i-1");
        assert!(!ids.contains_key("md:vm-password-md5checksum"));
        let obs = Observed {
            vm_data: crate::observe::ReadAll::found(vec![Dns {
                uuid: metadata::row_uuid(&s.owner, "n1"),
                records: BTreeMap::new(),
                external_ids: ids,
            }]),
            ..Observed::nothing_exists()
        };
        let again = VmDataChange {
            userdata: Some(Some(sealed("s1:BBB", "d-ud", ""))),
            password: Some(sealed("s1:PW2", "d-pw", "g2")),
            ..change.clone()
        };
        let mut plan = Plan::default();
        ensure_vm_data(&mut plan, &s, &again, &obs).unwrap();
        assert!(plan.is_empty(), "{:?}", plan.changes);
        // A new password is written with its new generation.
        let reset = VmDataChange { password: Some(sealed("s1:PW3", "d-pw3", "g3")), ..again };
        let mut plan = Plan::default();
        ensure_vm_data(&mut plan, &s, &reset, &obs).unwrap();
        assert_eq!(plan.changes.len(), 1);
    }

    /// An observed vm-data row of NIC `n1` holding password generation `g1`.
    fn stored(s: &Scope, acks: Vec<(String, String)>) -> Observed {
        let mut ids = s.ids(Kind::VmData);
        for (k, v) in [("cloudstack:nic_uuid", "n1"), ("md:instance-id", "i-1"), ("pw", "s1:PW1"), ("pw-gen", "g1")] {
            ids.insert(k.into(), v.into());
        }
        ids.insert("pw-d".into(), "d-pw".into());
        Observed {
            vm_data: crate::observe::ReadAll::found(vec![Dns {
                uuid: metadata::row_uuid(&s.owner, "n1"),
                records: BTreeMap::new(),
                external_ids: ids,
            }]),
            pw_acks: crate::observe::ReadAll::found(acks),
            ..Observed::nothing_exists()
        }
    }

    fn mutations(plan: &Plan) -> Vec<Mutation> {
        plan.ops
            .iter()
            .flat_map(|op| match op {
                crate::ovsdb::Operation::Mutate { mutations, .. } => mutations.clone(),
                _ => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn an_acknowledged_password_leaves_the_nb_its_digest_stays() {
        let s = scope();
        let ack = |g: &str| vec![("n1".to_string(), g.to_string())];
        let sshkey = VmDataChange {
            nic_uuid: "n1".into(),
            files: [("public-keys".to_string(), "ssh-ed25519 A".to_string())].into(),
            ..VmDataChange::default()
        };
        // Acknowledged: any command on the NIC drops exactly the pairs read.
        let mut plan = Plan::default();
        ensure_vm_data(&mut plan, &s, &sshkey, &stored(&s, ack("g1"))).unwrap();
        let muts = mutations(&plan);
        let drop =
            Mutation("external_ids".into(), Mutator::Delete, json!(["map", [["pw", "s1:PW1"], ["pw-gen", "g1"]]]));
        assert!(muts.contains(&drop), "{muts:?}");
        let text = format!("{muts:?}");
        assert!(!text.contains("pw-d") && text.contains("md:public-keys"), "the digest stays: {text}");
        assert!(plan.changes[0].contains("acknowledged password dropped"), "{:?}", plan.changes);
        // Nothing else to do: the drop alone is a write.
        let same = VmDataChange { nic_uuid: "n1".into(), ..VmDataChange::default() };
        let mut plan = Plan::default();
        ensure_vm_data(&mut plan, &s, &same, &stored(&s, ack("g1"))).unwrap();
        assert_eq!(mutations(&plan), vec![drop.clone()]);
        // Not acknowledged, or an older generation acknowledged: it stays.
        for acks in [Vec::new(), ack("g0")] {
            let mut plan = Plan::default();
            ensure_vm_data(&mut plan, &s, &same, &stored(&s, acks)).unwrap();
            assert!(plan.is_empty(), "{:?}", plan.changes);
        }
        // A new password in the same command: written with its generation,
        // never dropped by the old generation's ack.
        let reset = VmDataChange { password: Some(sealed("s1:PW2", "d-pw2", "g2")), ..same.clone() };
        let mut plan = Plan::default();
        ensure_vm_data(&mut plan, &s, &reset, &stored(&s, ack("g1"))).unwrap();
        let text = format!("{:?}", mutations(&plan));
        assert!(text.contains("s1:PW2") && text.contains("g2") && !plan.changes[0].contains("dropped"), "{text}");
        // Once dropped (digest only), the same password writes nothing; a
        // new one gets a new generation.
        let mut dropped = stored(&s, ack("g1"));
        dropped.vm_data = crate::observe::ReadAll::found(
            dropped
                .vm_data()
                .iter()
                .cloned()
                .map(|mut d| {
                    d.external_ids.retain(|k, _| k != "pw" && k != "pw-gen");
                    d
                })
                .collect(),
        );
        let again = VmDataChange { password: Some(sealed("s1:PW1b", "d-pw", "g3")), ..same.clone() };
        let mut plan = Plan::default();
        ensure_vm_data(&mut plan, &s, &again, &dropped).unwrap();
        assert!(plan.is_empty(), "the acknowledged password saved again: {:?}", plan.changes);
        let mut plan = Plan::default();
        ensure_vm_data(&mut plan, &s, &reset, &dropped).unwrap();
        let text = format!("{:?}", mutations(&plan));
        assert!(text.contains("s1:PW2") && text.contains("g2") && text.contains("d-pw2"), "{text}");
    }

    #[test]
    fn planning_a_vm_data_row_needs_the_ack_slot() {
        let s = scope();
        let obs = Observed { pw_acks: crate::observe::ReadAll::default(), ..stored(&s, Vec::new()) };
        let change = VmDataChange { nic_uuid: "n1".into(), ..VmDataChange::default() };
        ensure_vm_data(&mut Plan::default(), &s, &change, &obs).unwrap();
        assert_eq!(obs.misread(), Some("pw_acks"));
    }

    #[test]
    fn dhcp_options_point_at_metadata() {
        let mut o: BTreeMap<String, String> = [("router".to_string(), "10.1.1.1".to_string())].into();
        add_dhcp_options(&mut o, MD_ADDRESS, true, true);
        assert_eq!(o["server_id"], "169.254.169.254");
        assert_eq!(o["classless_static_route"], "{169.254.169.254/32,0.0.0.0, 0.0.0.0/0,10.1.1.1}");
        let mut o = BTreeMap::new();
        add_dhcp_options(&mut o, "10.2.2.2".parse().unwrap(), false, false);
        assert_eq!(o["server_id"], "10.2.2.2");
        assert!(!o.contains_key("classless_static_route"));
        assert_eq!(
            port_md_address(&["0a:00:00:00:00:01 169.254.169.254 10.2.2.2".into()]),
            Some("10.2.2.2".parse().unwrap())
        );
        assert_eq!(port_md_address(&["0a:00:00:00:00:01 169.254.169.254".into()]), Some(MD_ADDRESS));
        assert_eq!(dns_records(MD_ADDRESS, Some("CS42.Internal"))["data-server.cs42.internal"], "169.254.169.254");
    }
}
