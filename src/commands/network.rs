//! ensure-network-device, implement-network, shutdown-network, destroy-network.

use serde_json::json;

use super::{input, Context, Outcome, Want};
use crate::error::{Error, Result};
use crate::nb::{broadcast_uri, switch_name};
use crate::plan::network::{destroy as plan_destroy, ensure_switch};
use crate::plan::Plan;

/// Runs before every command; CloudStack stores whatever we print as the
/// network's (or VPC's) details and parses it on every later call, so it
/// must be one JSON object. OVN has no device to choose, so this does no
/// I/O: it names the OVN object the network or VPC maps to.
pub fn ensure_network_device(ctx: &Context) -> Result<Outcome> {
    let p = ctx.payload();
    let output = if p.nonempty("network_id").is_some() {
        let scope = input::scope(ctx)?;
        json!({"provider": "ovn", "logical_switch": switch_name(scope.network_id)})
    } else if let Some(vpc) = input::vpc_id(ctx)? {
        json!({"provider": "ovn", "vpc_id": vpc.to_string()})
    } else {
        return Err(Error::Missing("network_id or vpc_id".into()));
    };
    Ok(Outcome {
        output: Some(output),
        ..Outcome::default()
    })
}

/// Create (or converge) `cs-net-<id>` and tell CloudStack to bind NICs to
/// it: broadcast type `Lswitch`, URI `ovn://cs-net-<id>`.
pub fn implement(ctx: &Context) -> Result<Outcome> {
    let scope = input::scope(ctx)?;
    let spec = input::switch_spec(ctx)?;
    let want = Want {
        switch: true,
        switch_by_name: true,
        scope: Some(scope.clone()),
        ..Want::default()
    };
    let mut outcome = ctx.converge(&want, |obs| {
        let mut plan = Plan::default();
        ensure_switch(&mut plan, &scope, &spec, obs)?;
        Ok(plan)
    })?;
    outcome.output = Some(json!({
        "network.broadcast_domain_type": "Lswitch",
        "network.broadcast_uri": broadcast_uri(scope.network_id),
    }));
    Ok(outcome)
}

/// CloudStack shuts a network down on garbage collection and on restart
/// with cleanup. Running VMs must keep working, so the switch, its ports,
/// DHCP and DNS stay; only what a network has *beyond* L2 goes, and in this
/// version we create nothing beyond L2 (routers and NAT come with the
/// routing release), so there is nothing to remove.
pub fn shutdown(ctx: &Context) -> Result<Outcome> {
    input::scope(ctx)?;
    Ok(Outcome::default())
}

/// Remove every row the network owns, including the weakly referenced
/// DHCP_Options and DNS rows OVN would keep forever.
pub fn destroy(ctx: &Context) -> Result<Outcome> {
    let scope = input::scope(ctx)?;
    let want = Want {
        switch: true,
        dns: true,
        all_dhcp: true,
        scope: Some(scope.clone()),
        ..Want::default()
    };
    ctx.converge(&want, |obs| {
        let mut plan = Plan::default();
        plan_destroy(&mut plan, &scope, obs)?;
        Ok(plan)
    })
}
