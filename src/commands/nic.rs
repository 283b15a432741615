//! prepare-nic, release-nic: the NIC's Logical_Switch_Port, named exactly
//! by the NIC uuid that libvirt writes as the OVS `iface-id`.

use super::{input, Context, Outcome, Want};
use crate::error::Result;
use crate::nb::ids::Scope;
use crate::observe::Observed;
use crate::plan::network::{ensure_port, ensure_switch, remove_port, DhcpLink, Hostname};
use crate::plan::Plan;

/// The DHCP row a NIC should use, if the subnet's rows exist: with a
/// default route for the default NIC, without for the others. A NIC that
/// `set-dhcp-options` gave its own row keeps it.
pub(super) fn dhcp_link_for(
    scope: &Scope,
    nic_uuid: &str,
    default_nic: bool,
    cidr: Option<crate::payload::types::Ipv4Cidr>,
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

pub fn prepare(ctx: &Context) -> Result<Outcome> {
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
        dhcp,
        scope: Some(scope.clone()),
        ..Want::default()
    };
    ctx.converge(&want, |obs| {
        let mut plan = Plan::default();
        // Shared networks may see prepare-nic before (or without) implement.
        ensure_switch(&mut plan, &scope, &spec, obs)?;
        let link = dhcp_link_for(&scope, &nic.nic_uuid, default_nic, cidr, obs);
        ensure_port(&mut plan, &scope, &nic, link, &hostname, obs)?;
        Ok(plan)
    })
}

pub fn release(ctx: &Context) -> Result<Outcome> {
    let scope = input::scope(ctx)?;
    let nic_uuid = input::nic_uuid_field(ctx)?;
    release_port(ctx, &scope, nic_uuid)
}

/// Delete the port and its per-NIC DHCP row.
pub(super) fn release_port(ctx: &Context, scope: &Scope, nic_uuid: String) -> Result<Outcome> {
    let own_dhcp = scope.dhcp_nic_uuid(&nic_uuid);
    let want = Want {
        light: true,
        switch: true,
        port: Some(nic_uuid),
        dhcp: vec![own_dhcp],
        scope: Some(scope.clone()),
        ..Want::default()
    };
    ctx.converge(&want, |obs| {
        let mut plan = Plan::default();
        remove_port(&mut plan, scope, obs)?;
        Ok(plan)
    })
}
