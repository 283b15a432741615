//! Native OVN DNS: config-dns-subnet, remove-dns-subnet, add-dns-entry,
//! remove-dns-entry. Once a switch has records, OVN answers UDP/53 queries
//! for them on the VM's own hypervisor and forwards the rest unchanged.

use std::collections::BTreeMap;

use super::{input, Context, Outcome, Want};
use crate::error::Result;
use crate::plan::network::{ensure_dns, ensure_switch, remove_dns, remove_dns_records};
use crate::plan::Plan;

pub fn config_subnet(ctx: &Context) -> Result<Outcome> {
    ensure_records(ctx, BTreeMap::new())
}

pub fn add_entry(ctx: &Context) -> Result<Outcome> {
    ensure_records(ctx, input::dns_entry(ctx)?.records())
}

/// The network's DNS row exists, is linked from the switch (created if
/// missing, as for a shared network whose implement we never saw), and
/// holds `records`.
fn ensure_records(ctx: &Context, records: BTreeMap<String, String>) -> Result<Outcome> {
    let scope = input::scope(ctx)?;
    let spec = input::switch_spec(ctx)?;
    let domain = input::domain(ctx)?;
    let want = Want {
        switch: true,
        dns: true,
        light: true,
        localnet: spec.physical.is_some(),
        scope: Some(scope.clone()),
        ..Want::default()
    };
    ctx.converge(&want, |obs| {
        let mut plan = Plan::default();
        ensure_switch(&mut plan, &scope, &spec, obs)?;
        // A network with a metadata localport (UserData) also resolves
        // `data-server` and `data-server.<domain>` to it.
        let mut records = records.clone();
        if let Some((md, _)) = crate::plan::metadata::dhcp_metadata(obs) {
            records.extend(crate::plan::metadata::dns_records(md, domain.as_deref()));
        }
        ensure_dns(&mut plan, &scope, &records, obs)?;
        Ok(plan)
    })
}

pub fn remove_subnet(ctx: &Context) -> Result<Outcome> {
    let scope = input::scope(ctx)?;
    let want = Want { dns: true, scope: Some(scope.clone()), ..Want::default() };
    ctx.converge(&want, |obs| {
        let mut plan = Plan::default();
        remove_dns(&mut plan, &scope, obs)?;
        Ok(plan)
    })
}

/// CloudStack sends no host name here: records are removed by address.
pub fn remove_entry(ctx: &Context) -> Result<Outcome> {
    let scope = input::scope(ctx)?;
    let (ipv4, ipv6) = input::nic_addresses(ctx)?;
    let want = Want { dns: true, switch: true, light: true, scope: Some(scope.clone()), ..Want::default() };
    ctx.converge(&want, |obs| {
        let mut plan = Plan::default();
        remove_dns_records(&mut plan, &scope, ipv4, ipv6, obs)?;
        Ok(plan)
    })
}
