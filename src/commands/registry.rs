//! The one table of CloudStack commands. A command's name is written here
//! and nowhere else in `src/`: dispatch, the "not supported yet" answer,
//! `--help`, the man page, the shell completions, the services we advertise
//! (`capabilities`) and `extension-details` all derive from [`COMMANDS`].
//!
//! Adding a command is one entry here plus its `prepare` function (payload
//! and configuration → typed intent → [`Job`]) and the plan function the
//! job carries.

use super::engine::{Context, Job};
use super::{custom, dhcp, dns, filter, ip, lb, network, nic, restore, vmdata, vpc};
use crate::capabilities::service::{
    CUSTOM_ACTION, DHCP, DNS, FIREWALL, GATEWAY, LB, NETWORK_ACL, PORT_FORWARDING, SOURCE_NAT, STATIC_NAT, USER_DATA,
};
use crate::error::{Error, Result};

/// Validate everything a command needs and say what to do (before any connection).
pub type Prepare = fn(&Context) -> Result<Job>;

/// One CloudStack command.
#[derive(Debug)]
pub struct Spec {
    /// CloudStack's name for it (the first argument).
    pub name: &'static str,
    /// The CloudStack services (`network.services` names) that send it;
    /// empty for network and NIC lifecycle commands every network gets.
    pub services: &'static [&'static str],
    /// What it is, in CloudStack's words (`--help`, the man page).
    pub about: &'static str,
    /// `None`: known but not supported yet (exit 6).
    pub prepare: Option<Prepare>,
}

impl Spec {
    pub fn implemented(&self) -> bool {
        self.prepare.is_some()
    }
}

const fn cmd(name: &'static str, services: &'static [&'static str], about: &'static str, prepare: Prepare) -> Spec {
    Spec { name, services, about, prepare: Some(prepare) }
}

// For commands known but not implemented yet (none at the moment).
#[allow(dead_code)]
const fn todo(name: &'static str, services: &'static [&'static str], about: &'static str) -> Spec {
    Spec { name, services, about, prepare: None }
}

/// Every CloudStack command we know.
pub const COMMANDS: &[Spec] = &[
    cmd(
        "ensure-network-device",
        &[],
        "CloudStack asks which device serves a network or VPC (before every network command); \
         prints the details CloudStack stores",
        network::ensure_network_device,
    ),
    cmd(
        "implement-network",
        &[],
        "CloudStack implements a guest network (network implement/restart); prints the Lswitch URI",
        network::implement,
    ),
    cmd(
        "shutdown-network",
        &[],
        "CloudStack shuts a guest network down (network GC, restart with cleanup, delete)",
        network::shutdown,
    ),
    cmd("destroy-network", &[], "CloudStack destroys a guest network (network delete)", network::destroy),
    cmd("prepare-nic", &[], "CloudStack prepares a VM NIC (VM start or deploy, NIC add)", nic::prepare),
    cmd("release-nic", &[], "CloudStack releases a VM NIC (VM stop or expunge, NIC removal)", nic::release),
    cmd(
        "config-dhcp-subnet",
        &[DHCP],
        "CloudStack configures DHCP for a NIC's subnet (Dhcp service, before add-dhcp-entry)",
        dhcp::config_subnet,
    ),
    cmd(
        "remove-dhcp-subnet",
        &[DHCP],
        "CloudStack removes DHCP support for a subnet (Dhcp service)",
        dhcp::remove_subnet,
    ),
    cmd("add-dhcp-entry", &[DHCP], "CloudStack adds a VM's DHCP entry (Dhcp service, NIC prepare)", dhcp::add_entry),
    cmd("remove-dhcp-entry", &[DHCP], "CloudStack removes a VM's DHCP entry (Dhcp service)", dhcp::remove_entry),
    cmd(
        "set-dhcp-options",
        &[DHCP],
        "CloudStack sets a NIC's extra DHCP options (Dhcp service, legacy flag style only)",
        dhcp::set_options,
    ),
    cmd("config-dns-subnet", &[DNS], "CloudStack configures DNS for a NIC's subnet (Dns service)", dns::config_subnet),
    cmd("remove-dns-subnet", &[DNS], "CloudStack removes DNS support for a subnet (Dns service)", dns::remove_subnet),
    cmd("add-dns-entry", &[DNS], "CloudStack adds a VM's DNS entry (Dns service)", dns::add_entry),
    cmd("remove-dns-entry", &[DNS], "CloudStack removes a VM's DNS entry (Dns service)", dns::remove_entry),
    cmd("implement-vpc", &[GATEWAY], "CloudStack implements a VPC (VPC create or restart)", vpc::implement),
    cmd("shutdown-vpc", &[GATEWAY], "CloudStack shuts a VPC down (VPC delete, restart with cleanup)", vpc::shutdown),
    // Never sent by CloudStack; the reference wrapper accepts it.
    cmd("destroy-vpc", &[], "Destroys a VPC like shutdown-vpc (never sent by CloudStack)", vpc::shutdown),
    cmd(
        "update-vpc-source-nat-ip",
        &[GATEWAY],
        "CloudStack moves a VPC's source NAT IP (updateVPC sourcenatipaddress)",
        vpc::update_source_nat,
    ),
    cmd(
        "assign-ip",
        &[SOURCE_NAT, GATEWAY],
        "CloudStack applies a public IP to a network (IP associate, network implement; SourceNat, Gateway)",
        ip::assign,
    ),
    cmd(
        "release-ip",
        &[SOURCE_NAT, GATEWAY],
        "CloudStack releases a public IP (IP disassociate; SourceNat, Gateway)",
        ip::release,
    ),
    cmd(
        "add-static-nat",
        &[STATIC_NAT],
        "CloudStack enables static NAT from a public IP to a VM (StaticNat service)",
        ip::add_static_nat,
    ),
    cmd(
        "delete-static-nat",
        &[STATIC_NAT],
        "CloudStack disables static NAT of a public IP (StaticNat service)",
        ip::delete_static_nat,
    ),
    cmd(
        "add-port-forward",
        &[PORT_FORWARDING],
        "CloudStack creates a port forwarding rule (PortForwarding service)",
        ip::add_port_forward,
    ),
    cmd(
        "delete-port-forward",
        &[PORT_FORWARDING],
        "CloudStack deletes a port forwarding rule (PortForwarding service)",
        ip::delete_port_forward,
    ),
    cmd(
        "apply-fw-rules",
        &[FIREWALL],
        "CloudStack applies a network's ingress and egress firewall rules (Firewall service)",
        filter::apply_firewall,
    ),
    cmd(
        "apply-network-acl",
        &[NETWORK_ACL],
        "CloudStack applies a VPC tier's network ACL (NetworkACL service)",
        filter::apply_network_acl,
    ),
    cmd("apply-lb-rules", &[LB], "CloudStack applies load balancing rules (Lb service)", lb::apply),
    cmd(
        "save-vm-data",
        &[USER_DATA],
        "CloudStack saves a VM's user data, metadata and password (UserData service, NIC prepare)",
        vmdata::save_vm_data,
    ),
    cmd(
        "save-password",
        &[USER_DATA],
        "CloudStack saves a VM's reset password (UserData service)",
        vmdata::save_password,
    ),
    cmd(
        "save-userdata",
        &[USER_DATA],
        "CloudStack saves a VM's updated user data (UserData service)",
        vmdata::save_userdata,
    ),
    cmd("save-sshkey", &[USER_DATA], "CloudStack saves a VM's reset SSH key (UserData service)", vmdata::save_sshkey),
    cmd(
        "save-hypervisor-hostname",
        &[USER_DATA],
        "CloudStack saves the name of a VM's hypervisor host (UserData service)",
        vmdata::save_hypervisor_hostname,
    ),
    cmd(
        "restore-network",
        &[],
        "CloudStack restores DHCP, DNS and user data after a network restart",
        restore::restore,
    ),
    cmd(
        "custom-action",
        &[CUSTOM_ACTION],
        "CloudStack runs a custom action on a network or VPC (CustomAction service)",
        custom::prepare,
    ),
];

/// The command's entry, if we know it.
pub fn find(name: &str) -> Option<&'static Spec> {
    COMMANDS.iter().find(|s| s.name == name)
}

/// Whether this version implements `name`.
pub fn implemented(name: &str) -> bool {
    find(name).is_some_and(Spec::implemented)
}

/// The job for the invocation in `ctx`: unknown (exit 2), not supported yet
/// (exit 6), or what the command's `prepare` makes of the payload.
pub fn prepare(ctx: &Context) -> Result<Job> {
    let name = ctx.inv.command.as_str();
    match find(name) {
        None => Err(Error::UnknownCommand(name.to_string())),
        Some(Spec { prepare: None, .. }) => Err(Error::Unsupported(name.to_string())),
        Some(Spec { prepare: Some(prepare), .. }) => prepare(ctx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        for (i, s) in COMMANDS.iter().enumerate() {
            assert!(COMMANDS[i + 1..].iter().all(|o| o.name != s.name), "{} twice", s.name);
        }
    }
}
