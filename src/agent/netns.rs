//! One namespace per network with a local VM: a veth into the integration
//! bridge carrying the metadata localport's `iface-id`, the metadata
//! address(es), and listening sockets opened inside it.
//!
//! Set-up and teardown use netlink and iproute2-compatible named namespaces
//! (`link`) and the local OVS database (`ovs_port`); only the veth's
//! offloads on a userspace-datapath bridge still run `ethtool`, off the
//! request path. Sockets are opened by
//! a thread that `setns(2)`s into the namespace: a socket stays in the
//! namespace it was created in, whichever thread later uses it. `http`
//! serves them.

use std::net::{Ipv4Addr, TcpListener};
use std::time::Instant;

use super::{link, ovs_port};
use crate::log;

/// Where the agent runs its network plumbing.
#[derive(Clone, Debug)]
pub struct Plumbing {
    /// Namespace name prefix (`csmd-`): namespaces with it that the agent
    /// does not want are removed at start-up.
    pub prefix: String,
    /// The local OVS database (the metadata port goes on `bridge`).
    pub ovs_db: String,
    pub bridge: String,
    /// Names the localports (`cs-md-<network>` for the default owner).
    pub owner: crate::nb::Owner,
}

/// A provisioned network.
pub struct Provisioned {
    pub netns: String,
    pub veth: String,
    pub mac: String,
    pub ips: Vec<Ipv4Addr>,
    /// Dropped (teardown): accepting stops.
    listening: Vec<super::http::Listening>,
    /// When the last local VM left (teardown after the grace period).
    pub orphan_since: Option<Instant>,
}

/// The veth end in the host: `csm` + 12 hex digits of the network's
/// hash (interface names are at most 15 bytes).
pub fn veth_name(prefix: &str, network: u64) -> String {
    use blake2::{Blake2s256, Digest};
    let h = Blake2s256::digest(format!("{prefix}{network}").as_bytes());
    format!("csm{}", h.iter().take(6).map(|b| format!("{b:02x}")).collect::<String>())
}

impl Plumbing {
    pub fn netns_name(&self, network: u64) -> String {
        format!("{}{network}", self.prefix)
    }

    /// Existing namespaces of ours (by prefix).
    pub fn existing(&self) -> Vec<String> {
        link::list_netns(&self.prefix)
    }

    /// Remove a namespace of ours and its OVS port (idempotent).
    pub fn remove(&self, netns: &str) {
        if let Some(network) = netns.strip_prefix(&self.prefix).and_then(|n| n.parse::<u64>().ok()) {
            let veth = veth_name(&self.prefix, network);
            match ovs_port::remove(&self.ovs_db, &veth, &self.owner) {
                Ok(ovs_port::Removed::NotOurs) => {
                    log::warn("OVS port of the metadata name is not ours, left alone", &[("port", &veth)])
                }
                Ok(_) => {}
                Err(e) => log::warn("cannot remove metadata port", &[("port", &veth), ("error", &e)]),
            }
            // Deleting one end deletes the pair; gone already is fine.
            if let Err(e) = link::Netlink::open().and_then(|mut nl| nl.del_link(&veth)) {
                log::warn("cannot remove metadata veth", &[("veth", &veth), ("error", &e)]);
            }
        }
        if let Err(e) = link::del_netns(netns) {
            log::warn("cannot remove metadata namespace", &[("netns", &netns), ("error", &e)]);
        }
    }

    /// Create the namespace, veth, addresses and OVS port, then open the
    /// listeners, served by `server`.
    pub fn provision(
        &self,
        network: u64,
        mac: &str,
        ips: &[Ipv4Addr],
        server: &super::http::Server,
    ) -> Result<Provisioned, String> {
        let netns = self.netns_name(network);
        let veth = veth_name(&self.prefix, network);
        // A leftover of a crash (the namespace, or an OVS port of ours whose
        // namespace an operator deleted): start clean. Quiet when nothing is
        // there.
        self.remove(&netns);
        let inner = "md0";
        let mac_bytes = link::parse_mac(mac)?;
        link::add_netns(&netns)?;
        let setup = || -> Result<Vec<TcpListener>, String> {
            let offloads_off = ovs_port::userspace_datapath(&self.ovs_db, &self.bridge);
            link::veth_into_netns(&netns, &veth, inner, mac_bytes, ips, offloads_off)?;
            let iface_id = crate::metadata::port_name(&self.owner, network);
            ovs_port::add(&self.ovs_db, &self.bridge, &veth, &iface_id, mac, &self.owner)?;
            listen_in(&netns, &[80, 8080])
        };
        let serve = |listeners: Vec<TcpListener>| -> Result<Vec<super::http::Listening>, String> {
            listeners.into_iter().zip([80u16, 8080]).map(|(l, port)| server.serve(network, port, l)).collect()
        };
        match setup().and_then(serve) {
            Ok(listening) => {
                Ok(Provisioned { netns, veth, mac: mac.to_string(), ips: ips.to_vec(), listening, orphan_since: None })
            }
            Err(e) => {
                self.remove(&netns);
                Err(e)
            }
        }
    }

    pub fn teardown(&self, p: Provisioned) {
        // Aborts the accept tasks, closing the listening sockets.
        drop(p.listening);
        self.remove(&p.netns);
    }
}

/// Open listening sockets inside `netns` from a thread that enters it.
fn listen_in(netns: &str, ports: &[u16]) -> Result<Vec<TcpListener>, String> {
    let path = format!("/run/netns/{netns}");
    let ports = ports.to_vec();
    std::thread::spawn(move || -> Result<Vec<TcpListener>, String> {
        let f = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns {path}: {e}"))?;
        ports
            .iter()
            .map(|p| TcpListener::bind((Ipv4Addr::UNSPECIFIED, *p)).map_err(|e| format!("listen :{p} in {path}: {e}")))
            .collect()
    })
    .join()
    .map_err(|_| "listener thread panicked".to_string())?
}
