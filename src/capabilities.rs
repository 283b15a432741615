//! What cloudstack-ovn tells CloudStack it can do: the one table from
//! CloudStack service (names as in `network.services`) to the commands the
//! service needs and the capabilities we advertise for it.
//!
//! Which commands a service needs is not written here: each command's
//! entry in [`COMMANDS`] names its services. A service is advertised iff
//! every one of its commands is implemented, so giving a command its
//! `prepare` function is the only change needed for `extension-details`,
//! `--help` and the man page to follow. Capability values are strings (CloudStack parses them), and name
//! only what we really do: a missing capability means "no constraint" to
//! CloudStack, so restricting ones are given explicitly (`"false"`).

use serde_json::{Map, Value};

use crate::commands::registry::{self, COMMANDS};

/// CloudStack's service names (`Network.Service`), as commands and
/// `network.services` spell them.
pub mod service {
    pub const DHCP: &str = "Dhcp";
    pub const DNS: &str = "Dns";
    pub const USER_DATA: &str = "UserData";
    pub const SOURCE_NAT: &str = "SourceNat";
    pub const STATIC_NAT: &str = "StaticNat";
    pub const PORT_FORWARDING: &str = "PortForwarding";
    pub const FIREWALL: &str = "Firewall";
    pub const LB: &str = "Lb";
    pub const NETWORK_ACL: &str = "NetworkACL";
    pub const GATEWAY: &str = "Gateway";
    pub const CUSTOM_ACTION: &str = "CustomAction";
}

/// One CloudStack network service.
#[derive(Debug)]
pub struct Service {
    /// CloudStack's name (`Network.Service`), as in `network.services`.
    pub name: &'static str,
    /// `network.service.capabilities` entries for this service.
    pub capabilities: &'static [(&'static str, &'static str)],
}

/// Every service we may provide, in the order `network.services` lists them.
pub const SERVICES: &[Service] = &[
    Service {
        name: service::DHCP,
        // CloudStack then sends config-dhcp-subnet before each add-dhcp-entry.
        capabilities: &[("DhcpAccrossMultipleSubnets", "true")],
    },
    Service { name: service::DNS, capabilities: &[("AllowDnsSuffixModification", "true")] },
    Service { name: service::USER_DATA, capabilities: &[("Supported", "true")] },
    Service {
        name: service::SOURCE_NAT,
        capabilities: &[("SupportedSourceNatTypes", "peraccount"), ("RedundantRouter", "false")],
    },
    Service { name: service::STATIC_NAT, capabilities: &[("Supported", "true")] },
    Service { name: service::PORT_FORWARDING, capabilities: &[("SupportedProtocols", "tcp,udp")] },
    Service {
        name: service::FIREWALL,
        capabilities: &[
            ("SupportedProtocols", "tcp,udp,icmp"),
            ("SupportedEgressProtocols", "tcp,udp,icmp,all"),
            ("SupportedTrafficDirection", "ingress,egress"),
            ("MultipleIps", "true"),
        ],
    },
    Service {
        name: service::LB,
        // No stickiness methods: CloudStack then refuses stickiness policies.
        capabilities: &[
            ("SupportedLBAlgorithms", "roundrobin,source"),
            ("SupportedProtocols", "tcp,udp"),
            ("SupportedLBIsolation", "dedicated"),
            ("LbSchemes", "Public"),
            ("SslTermination", "false"),
            ("VmAutoScaling", "false"),
        ],
    },
    Service { name: service::NETWORK_ACL, capabilities: &[("SupportedProtocols", "tcp,udp,icmp")] },
    Service {
        // The router: an isolated network's (public IPs and its default
        // route) and a VPC's (created, re-addressed and removed with the VPC).
        name: service::GATEWAY,
        capabilities: &[("RedundantRouter", "false")],
    },
    Service { name: service::CUSTOM_ACTION, capabilities: &[("Supported", "true")] },
];

/// Services whose commands work but which are not advertised yet because
/// part of the service lives elsewhere and is not complete (UserData was,
/// until its host agent was). Empty: everything implemented is advertised.
pub const WITHHELD: &[&str] = &[];

impl Service {
    /// Every command CloudStack sends for this service (from [`COMMANDS`]).
    pub fn commands(&self) -> Vec<&'static str> {
        COMMANDS.iter().filter(|c| c.services.contains(&self.name)).map(|c| c.name).collect()
    }

    /// True iff every command of the service is implemented and the
    /// service is not withheld.
    pub fn supported(&self) -> bool {
        !WITHHELD.contains(&self.name) && self.commands().iter().all(|c| implemented(c))
    }
}

/// Commands CloudStack sends whatever the services (network and NIC
/// lifecycle, `restore-network` after a restart, `destroy-vpc` which only
/// the reference wrapper knows).
pub fn lifecycle() -> impl Iterator<Item = &'static str> {
    COMMANDS.iter().filter(|c| c.services.is_empty()).map(|c| c.name)
}

/// Whether this version implements `command`.
pub fn implemented(command: &str) -> bool {
    registry::implemented(command)
}

/// The services this version provides.
pub fn advertised() -> impl Iterator<Item = &'static Service> {
    SERVICES.iter().filter(|s| s.supported())
}

/// The `network.services` value: `Dhcp,Dns,…`.
pub fn services_csv() -> String {
    advertised().map(|s| s.name).collect::<Vec<_>>().join(",")
}

/// The `network.service.capabilities` value as a JSON object
/// `{Service: {Capability: "value"}}` (advertised services only).
pub fn capabilities_json() -> Value {
    let mut all = Map::new();
    for s in advertised() {
        let caps: Map<String, Value> =
            s.capabilities.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect();
        all.insert(s.name.to_string(), Value::Object(caps));
    }
    Value::Object(all)
}

/// The extension details `cmk createExtension` needs, in order, as
/// CloudStack stores them (all values strings).
pub fn extension_details() -> Vec<(&'static str, String)> {
    vec![
        ("network.services", services_csv()),
        ("network.service.capabilities", capabilities_json().to_string()),
        // NetworkExtensionGuestNetworkGuru designs our networks and applies
        // implement-network's Lswitch output.
        ("network.isolation.method", "NetworkExtension".to_string()),
        // Allocate: CloudStack then gives shared (and L2) networks an
        // `extension_ip` from their own range, the on-link address the DHCP
        // server id and the metadata service use there (guests without
        // option 121 cannot reach 169.254.169.254 on a network whose gateway
        // is not ours). Isolated networks and VPC tiers we route get
        // `extension_ip` = gateway either way; only isolated offerings that
        // give us Dhcp/Dns/UserData without SourceNat/Gateway spend one guest
        // IP on it. The detail is per extension, not per network type.
        ("network.allocate.extension.ip", "true".to_string()),
        // Fork-lswitch: NICs bound by iface-id = NIC uuid (ignored upstream).
        ("vif.binding", "lswitch".to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Service names exactly as CloudStack spells them (`Network.Service`).
    const CLOUDSTACK_SERVICES: &[&str] = &[
        "Vpn",
        "Dhcp",
        "Dns",
        "Gateway",
        "Firewall",
        "Lb",
        "UserData",
        "SourceNat",
        "StaticNat",
        "PortForwarding",
        "SecurityGroup",
        "NetworkACL",
        "Connectivity",
        "CustomAction",
    ];

    #[test]
    fn every_command_is_known_and_covered() {
        for s in SERVICES {
            assert!(CLOUDSTACK_SERVICES.contains(&s.name), "{} is not a CloudStack service", s.name);
            assert!(!s.commands().is_empty(), "{}: no command sends it", s.name);
        }
        for c in COMMANDS {
            for s in c.services {
                assert!(SERVICES.iter().any(|x| x.name == *s), "{}: unknown service {s}", c.name);
            }
        }
        let lifecycle: Vec<&str> = lifecycle().collect();
        for c in ["ensure-network-device", "implement-network", "prepare-nic", "restore-network", "destroy-vpc"] {
            assert!(lifecycle.contains(&c), "{c}");
        }
    }

    #[test]
    fn advertised_iff_all_commands_implemented() {
        let names: Vec<&str> = advertised().map(|s| s.name).collect();
        for s in SERVICES {
            let all = s.commands().iter().all(|c| COMMANDS.iter().any(|k| k.name == *c && k.implemented()))
                && !WITHHELD.contains(&s.name);
            assert_eq!(names.contains(&s.name), all, "{}", s.name);
        }
        let caps = capabilities_json();
        assert_eq!(caps.as_object().unwrap().keys().count(), names.len());
        for n in &names {
            assert!(caps[n].as_object().unwrap().values().all(Value::is_string), "{n}");
        }
        assert_eq!(services_csv(), names.join(","));
    }

    #[test]
    fn details_are_strings_and_capabilities_parse() {
        let d = extension_details();
        let caps = &d.iter().find(|(k, _)| *k == "network.service.capabilities").unwrap().1;
        assert_eq!(serde_json::from_str::<Value>(caps).unwrap(), capabilities_json());
        assert!(d.iter().any(|(k, v)| *k == "network.isolation.method" && v == "NetworkExtension"));
    }
}
