//! The agent's links, addresses and routes without child processes:
//! rtnetlink messages built with `netlink-packet-route` and sent on a
//! blocking `netlink-sys` socket with a deadline on every call (the agent has
//! no async runtime, and rtnetlink's requests are answered at once), plus
//! named network namespaces made exactly as iproute2 makes them, so that
//! `ip netns exec <name>` keeps working for operators and tests.
//!
//! A netlink socket talks to the namespace it was created in: requests for
//! a namespace are sent from a thread that `setns(2)`s into it first
//! ([`in_netns`]), the way listeners are opened.
//!
//! The one child process left is `ethtool` for the veth's TX offloads
//! ([`offloads_off`]), on the userspace datapath only: the maintained
//! `ethtool` crate is async-only and cannot set features; it runs at
//! provisioning, never on the request path.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netlink_packet_core::{
    NetlinkBuffer, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::errno::Errno;
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};

/// Where iproute2 keeps named namespaces (`ip netns`).
pub const NETNS_DIR: &str = "/run/netns";

/// Deadline of one netlink request, and of the `ethtool` child.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A failed request: the kernel's refusal (errno) or anything else.
#[derive(Debug)]
enum Failure {
    Nack(Errno),
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Nack(e) => write!(f, "{e}"),
            Failure::Other(s) => f.write_str(s),
        }
    }
}

/// An rtnetlink socket in the namespace of the thread that opened it.
pub struct Netlink {
    sock: Socket,
    seq: u32,
}

impl Netlink {
    pub fn open() -> Result<Netlink, String> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| format!("netlink socket: {e}"))?;
        sock.bind_auto().map_err(|e| format!("netlink bind: {e}"))?;
        sock.connect(&SocketAddr::new(0, 0)).map_err(|e| format!("netlink connect: {e}"))?;
        Ok(Netlink { sock, seq: 0 })
    }

    /// Send one request with `NLM_F_ACK` and collect its replies until the
    /// kernel's ack (or error), within [`TIMEOUT`].
    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<Vec<RouteNetlinkMessage>, Failure> {
        let deadline = Instant::now() + TIMEOUT;
        let other = |what: &str, e: &dyn std::fmt::Display| Failure::Other(format!("netlink {what}: {e}"));
        self.seq = self.seq.wrapping_add(1);
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        req.header.sequence_number = self.seq;
        req.finalize();
        let mut out = vec![0u8; req.buffer_len()];
        req.serialize(&mut out);
        let timeval = |d: Duration| TimeVal::microseconds(d.as_micros().clamp(1, i64::MAX as u128) as i64);
        setsockopt(&self.sock, sockopt::SendTimeout, &timeval(TIMEOUT)).map_err(|e| other("send timeout", &e))?;
        self.sock.send(&out, 0).map_err(|e| other("send", &e))?;
        let mut replies = Vec::new();
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Failure::Other("netlink: no answer in time".into()));
            }
            setsockopt(&self.sock, sockopt::ReceiveTimeout, &timeval(left))
                .map_err(|e| other("receive timeout", &e))?;
            buf.clear();
            match self.sock.recv(&mut buf, 0) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Err(Failure::Other("netlink: no answer in time".into()))
                }
                Err(e) => return Err(other("receive", &e)),
            }
            let mut at = 0;
            while at < buf.len() {
                let (len, seq) = {
                    let b = NetlinkBuffer::new_checked(&buf[at..]).map_err(|e| other("reply", &e))?;
                    (b.length() as usize, b.sequence_number())
                };
                let this = &buf[at..at + len];
                at += len.max(1).next_multiple_of(4);
                // The late answer to an earlier request that timed out.
                if seq != self.seq {
                    continue;
                }
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(this).map_err(|e| other("reply", &e))?;
                match m.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(replies),
                            Some(c) => Err(Failure::Nack(Errno::from_raw(-c.get()))),
                        }
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(r) => replies.push(r),
                    _ => {}
                }
            }
        }
    }

    fn call(&mut self, what: &str, msg: RouteNetlinkMessage, flags: u16) -> Result<Vec<RouteNetlinkMessage>, String> {
        self.request(msg, flags).map_err(|e| format!("{what}: {e}"))
    }

    /// `ip link add <name> type veth peer name <peer> address <mac> netns <ns>`:
    /// the peer is born inside the namespace with its MAC.
    pub fn add_veth(&mut self, name: &str, peer: &str, peer_mac: [u8; 6], peer_netns: &File) -> Result<(), String> {
        let mut p = LinkMessage::default();
        p.attributes = vec![
            LinkAttribute::IfName(peer.to_string()),
            LinkAttribute::Address(peer_mac.to_vec()),
            LinkAttribute::NetNsFd(peer_netns.as_raw_fd()),
        ];
        let mut m = LinkMessage::default();
        m.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
            ]),
        ];
        self.call(&format!("add veth {name}"), RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)?;
        Ok(())
    }

    /// `ip link set <name> up`.
    pub fn set_up(&mut self, name: &str) -> Result<(), String> {
        let mut m = LinkMessage::default();
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        m.attributes = vec![LinkAttribute::IfName(name.to_string())];
        self.call(&format!("set {name} up"), RouteNetlinkMessage::SetLink(m), 0)?;
        Ok(())
    }

    /// The interface index of `name`, `None` when there is no such link.
    pub fn index(&mut self, name: &str) -> Result<Option<u32>, String> {
        let mut m = LinkMessage::default();
        m.attributes = vec![LinkAttribute::IfName(name.to_string())];
        match self.request(RouteNetlinkMessage::GetLink(m), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })),
            Err(Failure::Nack(Errno::ENODEV)) => Ok(None),
            Err(e) => Err(format!("get link {name}: {e}")),
        }
    }

    /// `ip link del <name>`; `false` when it was gone already.
    pub fn del_link(&mut self, name: &str) -> Result<bool, String> {
        let mut m = LinkMessage::default();
        m.attributes = vec![LinkAttribute::IfName(name.to_string())];
        match self.request(RouteNetlinkMessage::DelLink(m), 0) {
            Ok(_) => Ok(true),
            Err(Failure::Nack(Errno::ENODEV)) => Ok(false),
            Err(e) => Err(format!("delete link {name}: {e}")),
        }
    }

    /// `ip addr add <ip>/32 dev <index>`.
    pub fn add_host_address(&mut self, index: u32, ip: Ipv4Addr) -> Result<(), String> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = 32;
        m.header.index = index;
        m.attributes = vec![AddressAttribute::Local(ip.into()), AddressAttribute::Address(ip.into())];
        self.call(&format!("add address {ip}/32"), RouteNetlinkMessage::NewAddress(m), NLM_F_CREATE | NLM_F_EXCL)?;
        Ok(())
    }

    /// `ip route add default dev <index> src <src>`: on-link (scope link),
    /// no gateway.
    pub fn add_onlink_default(&mut self, index: u32, src: Ipv4Addr) -> Result<(), String> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.destination_prefix_length = 0;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        // What iproute2 sets for a route added by hand.
        m.header.protocol = RouteProtocol::Boot;
        m.header.scope = RouteScope::Link;
        m.header.kind = RouteType::Unicast;
        m.attributes = vec![RouteAttribute::Oif(index), RouteAttribute::PrefSource(RouteAddress::Inet(src))];
        self.call("add default route", RouteNetlinkMessage::NewRoute(m), NLM_F_CREATE | NLM_F_EXCL)?;
        Ok(())
    }
}

/// `/run/netns/<name>`.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

fn valid_netns_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.len() > 255 {
        return Err(format!("invalid namespace name {name:?}"));
    }
    Ok(())
}

/// Make `/run/netns` a shared mount, as `ip netns add` does: a namespace
/// bind-mounted there then shows in every mount namespace that shares it
/// (`ip netns exec` unshares the mount namespace).
fn share_netns_dir() -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    let mut bound = false;
    loop {
        match mount(None::<&str>, NETNS_DIR, Some("none"), MsFlags::MS_SHARED | MsFlags::MS_REC, None::<&str>) {
            Ok(()) => return Ok(()),
            // Not a mount point yet: bind it onto itself, then share it.
            Err(Errno::EINVAL) if !bound => {
                mount(Some(NETNS_DIR), NETNS_DIR, Some("none"), MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                    .map_err(|e| format!("bind mount {NETNS_DIR}: {e}"))?;
                bound = true;
            }
            Err(e) => return Err(format!("make {NETNS_DIR} shared: {e}")),
        }
    }
}

/// `ip netns add <name>`: a thread `unshare(2)`s a new network namespace
/// and bind-mounts it on `/run/netns/<name>`, which keeps it alive after the
/// thread ends.
pub fn add_netns(name: &str) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    valid_netns_name(name)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(NETNS_DIR)
        .map_err(|e| format!("{NETNS_DIR}: {e}"))?;
    share_netns_dir()?;
    let path = netns_path(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let target = path.clone();
    let made = std::thread::Builder::new()
        .name("netns-add".into())
        .spawn(move || -> Result<(), String> {
            use nix::mount::{mount, MsFlags};
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare: {e}"))?;
            mount(Some("/proc/thread-self/ns/net"), &target, Some("none"), MsFlags::MS_BIND, None::<&str>)
                .map_err(|e| format!("bind mount {}: {e}", target.display()))
        })
        .map_err(|e| format!("netns thread: {e}"))?
        .join()
        .map_err(|_| "netns thread panicked".to_string())
        .and_then(|r| r);
    if made.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    made
}

/// `ip netns del <name>` (idempotent): detach the bind mount, remove the
/// file; the namespace goes once nothing else holds it.
pub fn del_netns(name: &str) -> Result<(), String> {
    valid_netns_name(name)?;
    let path = netns_path(name);
    match nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH) {
        // Not mounted (a half-made namespace) or not there at all.
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(format!("umount {}: {e}", path.display())),
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Names in `/run/netns` starting with `prefix`.
pub fn list_netns(prefix: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(NETNS_DIR) else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.starts_with(prefix)).collect()
}

/// Run `f` on a thread that entered the named namespace (the calling
/// thread stays where it is).
pub fn in_netns<T, F>(name: &str, f: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, String> + Send + 'static,
{
    let path = netns_path(name);
    std::thread::Builder::new()
        .name("netns-setup".into())
        .spawn(move || -> Result<T, String> {
            let ns = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("setns {}: {e}", path.display()))?;
            f()
        })
        .map_err(|e| format!("netns thread: {e}"))?
        .join()
        .map_err(|_| "netns thread panicked".to_string())?
}

/// `02:00:..` → bytes.
pub fn parse_mac(mac: &str) -> Result<[u8; 6], String> {
    let bad = || format!("invalid MAC address {mac:?}");
    let mut out = [0u8; 6];
    let mut parts = mac.split(':');
    for b in &mut out {
        let p = parts.next().filter(|p| p.len() == 2).ok_or_else(bad)?;
        *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(out)
}

/// TX checksum (and segmentation/receive offloads) off on `dev` in the
/// calling thread's namespace: with OVS's userspace datapath the packets
/// otherwise leave with partial checksums (the lab's and Neutron's netdev
/// fix; harmless on the kernel datapath). A bounded `ethtool` child, its
/// output discarded (stdout is CloudStack's protocol elsewhere in this
/// binary); the child inherits the calling thread's network namespace.
pub fn offloads_off(dev: &str) -> Result<(), String> {
    let args = ["-K", dev, "tx", "off", "tso", "off", "gso", "off", "gro", "off"];
    let mut child = Command::new("ethtool")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("ethtool: {e}"))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("ethtool {}: {status}", args.join(" "))),
            Ok(None) if started.elapsed() > TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("ethtool {}: timed out", args.join(" ")));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("ethtool: {e}")),
        }
    }
}

/// A veth pair from the calling thread's namespace into `netns`: `host`
/// stays here, up; `inner` gets `mac`, the `/32` addresses and an on-link
/// default route from the first of them (everything is on-link: the
/// localport only ever talks to VMs of its switch on this chassis, whatever
/// their subnet), with `lo` up beside it.
/// `offloads`: turn TX offloads off on both ends ([`offloads_off`]; only
/// the userspace datapath needs it, and it is the one child process).
pub fn veth_into_netns(
    netns: &str,
    host: &str,
    inner: &str,
    mac: [u8; 6],
    ips: &[Ipv4Addr],
    offloads: bool,
) -> Result<(), String> {
    let ns = File::open(netns_path(netns)).map_err(|e| format!("{}: {e}", netns_path(netns).display()))?;
    let mut nl = Netlink::open()?;
    nl.add_veth(host, inner, mac, &ns)?;
    nl.set_up(host)?;
    // Best effort, as before: a missing ethtool only matters to the
    // userspace datapath.
    if offloads {
        let _ = offloads_off(host);
    }
    let (inner, ips) = (inner.to_string(), ips.to_vec());
    in_netns(netns, move || {
        let mut nl = Netlink::open()?;
        nl.set_up("lo")?;
        nl.set_up(&inner)?;
        if offloads {
            let _ = offloads_off(&inner);
        }
        let index = nl.index(&inner)?.ok_or_else(|| format!("{inner} missing in its namespace"))?;
        for ip in &ips {
            nl.add_host_address(index, *ip)?;
        }
        let src = ips.first().copied().unwrap_or(crate::metadata::MD_ADDRESS);
        nl.add_onlink_default(index, src)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_strictly() {
        assert_eq!(parse_mac("02:00:4c:3e:00:0a"), Ok([2, 0, 0x4c, 0x3e, 0, 0x0a]));
        for bad in ["", "02:00:4c:3e:00", "02:00:4c:3e:00:0a:01", "2:00:4c:3e:00:0a", "02:00:4c:3e:00:zz"] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn namespace_names_cannot_leave_the_directory() {
        for bad in ["", ".", "..", "a/b", "../x"] {
            assert!(valid_netns_name(bad).is_err(), "{bad}");
        }
        assert!(valid_netns_name("csmd-42").is_ok());
    }
}
