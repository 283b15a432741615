//! restore-network: after a restart with cleanup CloudStack hands the whole
//! list of VM NICs of the network; converge their ports, DHCP and DNS.
//! On a network that is already right this plans nothing.

use std::collections::BTreeMap;

use super::{input, Context, Job};
use crate::error::{Error, Result};
use crate::nb::ids::Scope;
use crate::observe::{Observed, Read, Want};
use crate::payload::rules::{self, RestoreVm};
use crate::payload::types::GuestType;
use crate::plan::network::{
    ensure_dhcp, ensure_dns, ensure_port, ensure_switch, DhcpLink, DhcpSubnet, DnsEntry, Hostname, NicSpec, SwitchSpec,
};
use crate::plan::Plan;

struct Restore {
    scope: Scope,
    spec: SwitchSpec,
    subnet: Option<DhcpSubnet>,
    dns_enabled: bool,
    domain: Option<String>,
    vms: Vec<RestoreVm>,
    /// An L2 network: ports pin the MAC only.
    l2: bool,
    /// The NICs' VM data (UserData), sealed.
    userdata: Option<super::vmdata::Restore>,
}

pub fn restore(ctx: &Context) -> Result<Job> {
    let scope = input::scope(ctx)?;
    let spec = input::switch_spec(ctx)?;
    let doc = ctx.payload().nested("restore_data")?.ok_or_else(|| Error::Missing("restore_data".into()))?;
    let (dhcp_enabled, dns_enabled, vms) = rules::restore(&doc)?;
    let userdata = super::vmdata::restore_intent(ctx, &doc)?;
    let subnet = if dhcp_enabled { Some(input::dhcp_subnet(ctx)?) } else { None };
    let domain = input::domain(ctx)?;
    // A shared network may span several subnets (IP ranges): its NICs
    // outside `cidr` keep the DHCP link add-dhcp-entry gave them.
    let several_subnets = spec.physical.is_some();
    let l2 = matches!(input::guest_type(ctx)?, GuestType::L2 { .. });
    if let (Some(c), false) = (spec.cidr, several_subnets) {
        if let Some(vm) = vms.iter().find(|v| !c.contains(v.ip)) {
            return Err(Error::field(
                "restore_data",
                format!("{} of NIC {} is outside cidr {}", vm.ip, vm.nic_uuid, c.network()),
            ));
        }
    }
    let dhcp = subnet
        .as_ref()
        .map(|s| vec![scope.dhcp_uuid(s.cidr, true), scope.dhcp_uuid(s.cidr, false)])
        .unwrap_or_default();
    let want = Want {
        switch: true,
        dns: dns_enabled,
        port_group: true,
        localnet: spec.physical.is_some(),
        ports: vms.iter().map(|v| scope.port_uuid(&v.nic_uuid)).collect(),
        dhcp,
        vm_data: userdata
            .iter()
            .flat_map(|u| u.changes.iter().map(|c| crate::metadata::row_uuid(&scope.owner, &c.nic_uuid)))
            .collect(),
        pw_acks: userdata.iter().flat_map(|u| u.changes.iter().map(|c| c.nic_uuid.clone())).collect(),
        // The network's other vm-data rows: those of NICs restore no longer
        // lists are deleted (a scan of DNS by tag; docs/performance.md).
        all_vm_data: userdata.is_some(),
        scope: Some(scope.clone()),
        ..Want::default()
    };
    let intent = Restore { scope, spec, subnet, dns_enabled, domain, vms, l2, userdata };
    Ok(Job::new(want, intent, plan_restore))
}

fn plan_restore(i: &Restore, obs: &Observed, plan: &mut Plan) -> Result<()> {
    let Restore { scope, spec, subnet, dns_enabled, domain, vms, l2, userdata } = i;
    let dns_enabled = *dns_enabled;
    ensure_switch(plan, scope, spec, obs)?;
    if let Some(s) = &subnet {
        match userdata {
            // DHCP rows planned with the metadata localport the same plan adds.
            Some(u) => ensure_dhcp(plan, scope, s, &super::vmdata::with_md_port(scope, u, obs))?,
            None => ensure_dhcp(plan, scope, s, obs)?,
        }
    }
    if let Some(u) = userdata {
        let listed: Vec<&str> = vms.iter().map(|v| v.nic_uuid.as_str()).collect();
        super::vmdata::plan_restore(plan, scope, u, &listed, obs)?;
    }
    let mut records = BTreeMap::new();
    // Each NIC is planned against its own port; the port group, once one
    // NIC's plan inserts it, is joined (not inserted again) by the others.
    let mut view = obs.clone();
    for vm in vms {
        view.port = Read::answer(obs.ports().iter().find(|p| p.uuid == scope.port_uuid(&vm.nic_uuid)).cloned());
        // An L2 network's ports pin the MAC only (as prepare-nic does).
        let (ipv4, ipv6) = if *l2 { (None, None) } else { (Some(vm.ip), vm.ip6) };
        let nic = NicSpec { nic_uuid: vm.nic_uuid.clone(), nic_id: None, mac: vm.mac, ipv4, ipv6 };
        let link = match &subnet {
            Some(s) if s.cidr.contains(vm.ip) => DhcpLink::Link(scope.dhcp_uuid(s.cidr, vm.default_nic)),
            Some(_) | None => DhcpLink::Keep,
        };
        let hostname = vm.hostname.clone().map(Hostname::Set).unwrap_or(Hostname::Keep);
        ensure_port(plan, scope, &nic, link, &hostname, &view)?;
        if view.port_group().is_none() {
            view.port_group = Read::found(crate::nb::rows::PortGroup {
                uuid: scope.port_group_uuid(),
                name: scope.port_group_name(),
                ports: Vec::new(),
                acls: Vec::new(),
                external_ids: scope.ids(crate::nb::Kind::PortGroup),
            });
        }
        if let (true, Some(h)) = (dns_enabled, &vm.hostname) {
            let entry = DnsEntry { hostname: h.clone(), domain: domain.clone(), ipv4: Some(vm.ip), ipv6: vm.ip6 };
            records.extend(entry.records());
        }
    }
    if dns_enabled && !records.is_empty() {
        ensure_dns(plan, scope, &records, obs)?;
    }
    Ok(())
}
