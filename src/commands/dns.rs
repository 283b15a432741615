//! Native OVN DNS: config-dns-subnet, remove-dns-subnet, add-dns-entry,
//! remove-dns-entry. Once a switch has records, OVN answers UDP/53 queries
//! for them on the VM's own hypervisor and forwards the rest unchanged.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::{input, Context, Job};
use crate::error::Result;
use crate::nb::ids::Scope;
use crate::observe::Want;
use crate::plan::network::{ensure_dns, ensure_switch, remove_dns, remove_dns_records, SwitchSpec};

pub fn config_subnet(ctx: &Context) -> Result<Job> {
    ensure_records(ctx, BTreeMap::new())
}

pub fn add_entry(ctx: &Context) -> Result<Job> {
    ensure_records(ctx, input::dns_entry(ctx)?.records())
}

struct Records {
    scope: Scope,
    spec: SwitchSpec,
    records: BTreeMap<String, String>,
    domain: Option<String>,
}

/// The network's DNS row exists, is linked from the switch (created if
/// missing, as for a shared network whose implement we never saw), and
/// holds `records`.
fn ensure_records(ctx: &Context, records: BTreeMap<String, String>) -> Result<Job> {
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
    Ok(Job::new(want, Records { scope, spec, records, domain }, |i, obs, plan| {
        ensure_switch(plan, &i.scope, &i.spec, obs)?;
        // A network with a metadata localport (UserData) also resolves
        // `data-server` and `data-server.<domain>` to it.
        let mut records = i.records.clone();
        if let Some((md, _)) = crate::plan::metadata::dhcp_metadata(obs) {
            records.extend(crate::plan::metadata::dns_records(md, i.domain.as_deref()));
        }
        ensure_dns(plan, &i.scope, &records, obs)
    }))
}

pub fn remove_subnet(ctx: &Context) -> Result<Job> {
    let scope = input::scope(ctx)?;
    let want = Want { dns: true, scope: Some(scope.clone()), ..Want::default() };
    Ok(Job::new(want, scope, |scope, obs, plan| remove_dns(plan, scope, obs)))
}

/// CloudStack sends no host name here: records are removed by address.
pub fn remove_entry(ctx: &Context) -> Result<Job> {
    let scope = input::scope(ctx)?;
    let (ipv4, ipv6) = input::nic_addresses(ctx)?;
    let want = Want { dns: true, switch: true, light: true, scope: Some(scope.clone()), ..Want::default() };
    let intent: (Scope, Option<Ipv4Addr>, Option<Ipv6Addr>) = (scope, ipv4, ipv6);
    Ok(Job::new(want, intent, |(scope, ipv4, ipv6), obs, plan| remove_dns_records(plan, scope, *ipv4, *ipv6, obs)))
}
