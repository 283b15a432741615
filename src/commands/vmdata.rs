//! UserData's five commands (docs/metadata.md). Each converges, in one
//! transaction, the network's metadata localport, the DHCP keys pointing
//! at it and the NIC's vm-data row; secrets are sealed before connecting.

use std::net::Ipv4Addr;

use super::{input, Context, Job};
use crate::error::{Error, Result};
use crate::metadata::seal::{self, Secret};
use crate::metadata::{self, Update};
use crate::nb::ids::Scope;
use crate::observe::{Observed, Want};
use crate::plan::metadata::{
    converge_dhcp, dns_records, ensure_md_port, ensure_vm_data, md_address, remove_vm_data, Sealed, VmDataChange,
};
use crate::plan::network::{ensure_dns, ensure_switch, SwitchSpec};
use crate::plan::Plan;

/// The keys UserData commands need, from the registration details.
pub struct Keys {
    public: crypto_box::PublicKey,
    digest: [u8; 32],
}

pub fn keys(ctx: &Context) -> Result<Keys> {
    let get = |detail: &str, value: &Option<String>| {
        value.clone().ok_or_else(|| {
            Error::Config(format!(
                "UserData needs the registration detail {detail} (printed by `cloudstack-ovn metadata-keygen` on a KVM host)"
            ))
        })
    };
    let c = &ctx.config;
    let public = seal::parse_public_key(
        metadata::PUBLIC_KEY_DETAIL,
        &get(metadata::PUBLIC_KEY_DETAIL, &c.metadata_public_key)?,
    )?;
    let digest = seal::parse_digest_key(
        metadata::DIGEST_KEY_DETAIL,
        &get(metadata::DIGEST_KEY_DETAIL, &c.metadata_digest_key)?,
    )?;
    Ok(Keys { public, digest })
}

pub fn max_userdata(ctx: &Context) -> Result<usize> {
    Ok(ctx.config.metadata_userdata_max)
}

/// Seal an [`Update`]'s secrets for `nic` (randomized; done before
/// connecting, so planning stays pure).
pub fn seal_update(keys: &Keys, nic: &str, u: Update) -> Result<VmDataChange> {
    let userdata = match u.userdata {
        None => None,
        Some(None) => Some(None),
        Some(Some(bytes)) => Some(Some(Sealed {
            value: seal::seal(&keys.public, Secret::UserData, nic, "", &bytes)?,
            digest: seal::digest(&keys.digest, Secret::UserData, nic, &bytes)?,
            gen: String::new(),
        })),
    };
    let password = match u.password {
        None => None,
        Some(pw) => {
            let gen = seal::new_generation();
            Some(Sealed {
                value: seal::seal(&keys.public, Secret::Password, nic, &gen, pw.as_bytes())?,
                digest: seal::digest(&keys.digest, Secret::Password, nic, pw.as_bytes())?,
                gen,
            })
        }
    };
    Ok(VmDataChange { nic_uuid: nic.to_string(), userdata, metadata: u.metadata, files: u.files, password })
}

/// CloudStack's in-subnet `extension_ip`, when it is not the gateway: the
/// metadata localport then carries it too and it becomes the DHCP server
/// id (shared/L2 networks, Dhcp/Dns/UserData-only offerings).
fn extension_md_ip(ctx: &Context) -> Result<Option<Ipv4Addr>> {
    let p = ctx.payload();
    let Some(ext) = p.nonempty("extension_ip") else { return Ok(None) };
    let ext = crate::payload::types::ipv4("extension_ip", &ext)?;
    let gateway = p.nonempty("gateway").map(|g| crate::payload::types::ipv4("gateway", &g)).transpose()?;
    let cidr = input::dhcp_cidr(ctx)?;
    Ok((Some(ext) != gateway && cidr.is_some_and(|c| c.contains(ext))).then_some(ext))
}

pub fn save_vm_data(ctx: &Context) -> Result<Job> {
    let max = max_userdata(ctx)?;
    let doc = ctx.payload().nested("vm_data")?.ok_or_else(|| Error::Missing("vm_data".into()))?;
    job(ctx, metadata::parse_vm_data("vm_data", &doc, ctx.legacy(), max)?)
}

pub fn save_password(ctx: &Context) -> Result<Job> {
    let pw = required(ctx, "password")?;
    job(ctx, Update { password: Some(metadata::password_value("password", pw)?), ..Update::default() })
}

pub fn save_userdata(ctx: &Context) -> Result<Job> {
    let max = max_userdata(ctx)?;
    let raw = required(ctx, "userdata")?;
    // Legacy flag style: Base64, as CloudStack stores it.
    let bytes = if ctx.legacy() { metadata::base64_or_raw(&raw) } else { raw.into_bytes() };
    job(ctx, Update { userdata: Some(metadata::userdata_value("userdata", bytes, max)?), ..Update::default() })
}

pub fn save_sshkey(ctx: &Context) -> Result<Job> {
    let raw = required(ctx, "sshkey")?;
    let key = if ctx.legacy() { metadata::base64_text_or_raw(&raw) } else { raw };
    job(ctx, Update { files: [("public-keys".to_string(), key)].into(), ..Update::default() })
}

pub fn save_hypervisor_hostname(ctx: &Context) -> Result<Job> {
    let h = required(ctx, "hypervisor_hostname")?;
    if h.len() > 255 || h.contains(['\n', '\r', '\0']) {
        return Err(Error::field("hypervisor_hostname", "must be one line of at most 255 bytes"));
    }
    job(ctx, Update { files: [("hypervisor-host-name".to_string(), h)].into(), ..Update::default() })
}

fn required(ctx: &Context, field: &str) -> Result<String> {
    ctx.payload().nonempty(field).ok_or_else(|| Error::Missing(field.to_string()))
}

struct Save {
    scope: Scope,
    spec: SwitchSpec,
    ext: Option<Ipv4Addr>,
    change: VmDataChange,
    /// The payload names the subnet, so its DHCP rows were read.
    dhcp: bool,
}

/// Every UserData command: validate, seal, then converge the network's
/// metadata localport, its DHCP and DNS keys and the NIC's vm-data row.
fn job(ctx: &Context, update: Update) -> Result<Job> {
    let scope = input::scope(ctx)?;
    let spec = input::switch_spec(ctx)?;
    let nic = input::nic_uuid_field(ctx)?;
    let ext = extension_md_ip(ctx)?;
    let keys = keys(ctx)?;
    let change = seal_update(&keys, &nic, update)?;
    let cidr = input::dhcp_cidr(ctx)?;
    let dhcp = cidr.map(|c| vec![scope.dhcp_uuid(c, true), scope.dhcp_uuid(c, false)]).unwrap_or_default();
    let want = Want {
        switch: true,
        light: true,
        dns: true,
        localnet: spec.physical.is_some(),
        dhcp,
        vm_data: vec![metadata::row_uuid(&scope.owner, &nic)],
        // An acknowledged password leaves the NB with this write.
        pw_acks: vec![nic],
        scope: Some(scope.clone()),
        ..Want::default()
    };
    let has_dhcp = !want.dhcp.is_empty();
    Ok(Job::new(want, Save { scope, spec, ext, change, dhcp: has_dhcp }, plan_save))
}

fn plan_save(i: &Save, obs: &Observed, plan: &mut Plan) -> Result<()> {
    let md = md_address(i.ext);
    ensure_switch(plan, &i.scope, &i.spec, obs)?;
    ensure_md_port(plan, &i.scope, i.ext, obs)?;
    // Without the subnet (legacy flags give no cidr) the DHCP rows wait for
    // config-dhcp-subnet, which reads the localport.
    if i.dhcp {
        converge_dhcp(plan, &i.scope, md, obs)?;
    }
    // Only a network that has DNS records gets the names; the payload has
    // no domain, the subnet's DHCP options do.
    if obs.dns().is_some() {
        let dhcp = if i.dhcp { obs.dhcp() } else { &[] };
        let domain = dhcp.iter().find_map(|d| d.options.get("domain_name")).map(|v| v.trim_matches('"'));
        ensure_dns(plan, &i.scope, &dns_records(md, domain), obs)?;
    }
    ensure_vm_data(plan, &i.scope, &i.change, obs)
}

/// restore-network's VM data: every listed NIC's `vm_data` (never with a
/// password: the stored one stays), sealed before connecting. `None` when
/// the network's UserData is not ours.
pub struct Restore {
    pub changes: Vec<VmDataChange>,
    pub extension_ip: Option<Ipv4Addr>,
}

pub fn restore_intent(ctx: &Context, doc: &serde_json::Value) -> Result<Option<Restore>> {
    let enabled = doc.get("userdata_enabled").map(|v| v == true || v == "true").unwrap_or(false);
    if !enabled {
        return Ok(None);
    }
    let max = max_userdata(ctx)?;
    let mut updates = Vec::new();
    for (i, vm) in doc.get("vms").and_then(serde_json::Value::as_array).into_iter().flatten().enumerate() {
        let Some(data) = vm.get("vm_data").filter(|v| !v.is_null()) else { continue };
        let field = format!("restore_data.vms[{i}].vm_data");
        let data = crate::payload::decode_nested(&field, data)?;
        let mut u = metadata::parse_vm_data(&field, &data, ctx.legacy(), max)?;
        // restore_data never carries the password; whatever it says, the
        // stored one is kept.
        u.password = None;
        let nic = vm.get("nic_uuid").and_then(serde_json::Value::as_str).unwrap_or_default();
        updates.push((crate::payload::types::nic_uuid(&field, nic)?, u));
    }
    if updates.is_empty() {
        return Ok(None);
    }
    let keys = keys(ctx)?;
    let changes = updates.into_iter().map(|(nic, u)| seal_update(&keys, &nic, u)).collect::<Result<Vec<_>>>()?;
    Ok(Some(Restore { changes, extension_ip: extension_md_ip(ctx)? }))
}

/// Plan restore-network's UserData part (after its ports and DHCP rows).
/// Rows of NICs of the network that restore no longer lists are deleted;
/// listed NICs keep their rows and passwords.
pub fn plan_restore(plan: &mut Plan, scope: &Scope, r: &Restore, listed: &[&str], obs: &Observed) -> Result<()> {
    // The DHCP rows (when restore writes them) were planned against
    // [`with_md_port`]; the localport itself and the NICs' rows are here.
    ensure_md_port(plan, scope, r.extension_ip, obs)?;
    for c in &r.changes {
        ensure_vm_data(plan, scope, c, obs)?;
    }
    let gone: Vec<_> = obs
        .vm_data()
        .iter()
        .filter(|d| d.external_ids.get(crate::nb::key::NETWORK_ID) == Some(&scope.network_id.to_string()))
        .filter(|d| d.external_ids.get(crate::nb::key::NIC_UUID).is_some_and(|n| !listed.contains(&n.as_str())))
        .cloned()
        .collect();
    remove_vm_data(plan, scope, &gone);
    Ok(())
}

/// The observed rows as they will be once the metadata localport exists, so
/// DHCP rows planned in the same transaction already point at it.
pub fn with_md_port(scope: &Scope, r: &Restore, obs: &Observed) -> Observed {
    let mut view = obs.clone();
    if view.md_port_if_read().is_none() {
        let mut address = format!("{} {}", metadata::port_mac(&scope.owner, scope.network_id), metadata::MD_ADDRESS);
        if let Some(ip) = r.extension_ip {
            address.push_str(&format!(" {ip}"));
        }
        view.md_port = crate::observe::Read::found(crate::nb::rows::Port {
            uuid: metadata::port_uuid(&scope.owner, scope.network_id),
            name: metadata::port_name(&scope.owner, scope.network_id),
            tag_request: None,
            addresses: vec![address],
            port_security: Vec::new(),
            dhcpv4_options: None,
            options: Default::default(),
            external_ids: Default::default(),
        });
    }
    view
}
