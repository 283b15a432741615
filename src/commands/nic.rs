//! prepare-nic, release-nic: the NIC's Logical_Switch_Port, named exactly
//! by the NIC uuid that libvirt writes as the OVS `iface-id`.

use super::{input, Context, Job};
use crate::error::Result;
use crate::nb::ids::Scope;
use crate::observe::{Observed, Want};
use crate::payload::types::Ipv4Cidr;
use crate::plan::network::{ensure_port, ensure_switch, remove_port, DhcpLink, Hostname, NicSpec, SwitchSpec};

/// The DHCP row a NIC should use, if the subnet's rows exist: with a
/// default route for the default NIC, without for the others. A NIC that
/// `set-dhcp-options` gave its own row keeps it.
pub(super) fn dhcp_link_for(
    scope: &Scope,
    nic_uuid: &str,
    default_nic: bool,
    cidr: Option<Ipv4Cidr>,
    obs: &Observed,
) -> DhcpLink {
    let own = scope.dhcp_nic_uuid(nic_uuid);
    if obs.port().and_then(|p| p.dhcpv4_options) == Some(own) {
        return DhcpLink::Keep;
    }
    match cidr.map(|c| scope.dhcp_uuid(c, default_nic)) {
        Some(u) if obs.dhcp().iter().any(|d| d.uuid == u) => DhcpLink::Link(u),
        _ => DhcpLink::Keep,
    }
}

struct Prepare {
    scope: Scope,
    spec: SwitchSpec,
    nic: NicSpec,
    default_nic: bool,
    hostname: Hostname,
    cidr: Option<Ipv4Cidr>,
}

pub fn prepare(ctx: &Context) -> Result<Job> {
    let scope = input::scope(ctx)?;
    let spec = input::switch_spec(ctx)?;
    let nic = input::nic_spec(ctx)?;
    let default_nic = input::default_nic(ctx)?;
    let hostname = input::hostname(ctx)?.map(Hostname::Set).unwrap_or(Hostname::Keep);
    let cidr = input::dhcp_cidr(ctx)?;
    let dhcp = cidr.map(|c| vec![scope.dhcp_uuid(c, true), scope.dhcp_uuid(c, false)]).unwrap_or_default();
    let want = Want {
        light: true,
        switch: true,
        port: Some(nic.nic_uuid.clone()),
        port_group: true,
        localnet: spec.physical.is_some(),
        dhcp,
        scope: Some(scope.clone()),
        ..Want::default()
    };
    let intent = Prepare { scope, spec, nic, default_nic, hostname, cidr };
    Ok(Job::new(want, intent, |i, obs, plan| {
        // Shared networks may see prepare-nic before (or without) implement.
        ensure_switch(plan, &i.scope, &i.spec, obs)?;
        let link = dhcp_link_for(&i.scope, &i.nic.nic_uuid, i.default_nic, i.cidr, obs);
        ensure_port(plan, &i.scope, &i.nic, link, &i.hostname, obs)
    }))
}

pub fn release(ctx: &Context) -> Result<Job> {
    let scope = input::scope(ctx)?;
    let nic_uuid = input::nic_uuid_field(ctx)?;
    Ok(release_port(scope, nic_uuid))
}

/// Delete the port and its per-NIC DHCP row.
pub(super) fn release_port(scope: Scope, nic_uuid: String) -> Job {
    let own_dhcp = scope.dhcp_nic_uuid(&nic_uuid);
    let want = Want {
        light: true,
        switch: true,
        vm_data: vec![crate::metadata::row_uuid(&scope.owner, &nic_uuid)],
        port: Some(nic_uuid),
        dhcp: vec![own_dhcp],
        scope: Some(scope.clone()),
        ..Want::default()
    };
    Job::new(want, scope, |scope, obs, plan| {
        remove_port(plan, scope, obs)?;
        // The NIC's VM data (UserData) goes with its port.
        crate::plan::metadata::remove_vm_data(plan, scope, obs.vm_data());
        Ok(())
    })
}
