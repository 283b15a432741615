//! A public ("provider") network for a [`Chassis`](super::Chassis), and
//! small TCP test endpoints in namespaces.
//!
//! ```text
//!  VM netns ─veth─ br-int ══patch══ br-ex (netdev) ─┬ untagged: ex-<net> ─veth─ eth0 ┐
//!                  (OVN)   (ovn-controller makes     └ VLAN: ex-<net> ═trunk═ tr-<net> │ outside netns
//!                           it for the localnet           (br-up) ac-<net> tag=N ─ eth0 ┘ 203.0.113.1/24
//!                           port, network_name)                                           198.51.100.10,.20 on lo
//! ```
//!
//! The kernel of the lab machines has no 802.1Q, so in VLAN mode the
//! outside host cannot have an `eth0.N`: a second netdev bridge `br-up`
//! plays the upstream switch (trunk port toward br-ex, access port `tag=N`
//! toward the outside namespace).
//!
//! Pitfalls handled here (they all broke traffic in the lab):
//! * the outside `eth0` has a fixed MAC: OVN keeps the gateway's MAC in SB
//!   `MAC_Binding`, a new random MAC after a rebuild black-holes traffic;
//! * `arp_announce=2` in the outside netns: OVN only learns neighbours
//!   whose `arp.spa` is in the LRP subnet, and a client bound to
//!   198.51.100.10 would otherwise ARP "tell 198.51.100.10";
//! * IPv6 off on the bridge-port-only veths (their kernel ND/MLD frames
//!   would show up as untagged frames on the trunk), and in the outside
//!   namespace (stray RS/MLD frames in VLAN counts);
//! * checksum/segmentation offloads off on every veth (userspace datapath).
//!
//! The TCP endpoints (and the VLAN sniffer) are a small python3 helper
//! written into the chassis' temp dir: `serve` answers every connection
//! with one line `"<name> peer=<ip>:<port> local=<ip>:<port>\n"` and closes.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use super::daemon::{kill, mentions};
use super::util::{next_id, ovs_command, run, run_ok, tail, tool, try_run, wait_until, Netns, CMD_TIMEOUT};

/// The upstream router's address on the public subnet (outside `eth0`).
pub const OUTSIDE_GW: &str = "203.0.113.1";
/// `eth0` of the outside namespace, with its prefix.
pub const OUTSIDE_CIDR: &str = "203.0.113.1/24";
/// Fixed on purpose (stale SB MAC_Binding otherwise, see the module doc).
pub const OUTSIDE_MAC: &str = "02:00:cb:00:71:01";
/// "Internet" hosts on the outside `lo`: beyond the gateway, so OVN must
/// route to them via its default route.
pub const INTERNET_HOSTS: [&str; 2] = ["198.51.100.10", "198.51.100.20"];
/// The provider bridge every public network is mapped to.
pub const PUBLIC_BRIDGE: &str = "br-ex";
/// The emulated upstream switch in VLAN mode.
pub const UPSTREAM_BRIDGE: &str = "br-up";

/// How long a test server / sniffer may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Grace period between SIGTERM and SIGKILL for helper processes.
const STOP_GRACE: Duration = Duration::from_secs(2);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------
// the python helper

const HELPER: &str = r#"# csovn test helper (written by tests/common/public.rs); stdlib only.
import signal, socket, socketserver, struct, sys, time

def serve(ip, port, name):
    class H(socketserver.BaseRequestHandler):
        def handle(self):
            p = self.client_address; l = self.request.getsockname()
            self.request.sendall(f"{name} peer={p[0]}:{p[1]} local={l[0]}:{l[1]}\n".encode())
            print(f"accepted {p[0]}:{p[1]} -> {l[0]}:{l[1]}", flush=True)
    class S(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True
    with S((ip, int(port)), H) as s:
        print(f"listening {ip}:{port}", flush=True)
        s.serve_forever()

def connect(host, port, src, timeout):
    deadline = time.monotonic() + float(timeout)
    s = socket.socket(); s.settimeout(float(timeout))
    try:
        if src != "-": s.bind((src, 0))
        s.connect((host, int(port)))
        data = b""
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0: raise socket.timeout()
            s.settimeout(left)
            chunk = s.recv(512)
            if not chunk: break
            data += chunk
        line = data.decode(errors="replace").strip()
        if not line:
            print("EMPTY answer"); return 5
        print(line); return 0
    except socket.timeout:
        print("TIMEOUT"); return 2
    except (ConnectionRefusedError, ConnectionResetError) as e:
        print("REFUSED", e); return 3
    except OSError as e:
        print("ERROR", e); return 4

def sniff(ifc):
    SOL_PACKET, PACKET_AUXDATA, TP_STATUS_VLAN_VALID = 263, 8, 0x10
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1); s.bind((ifc, 0)); s.settimeout(0.05)
    print("listening", ifc, flush=True)
    cnt = {}
    while not stop:
        try:
            data, anc, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(32))
        except (socket.timeout, InterruptedError):
            continue
        vid = 0
        for lvl, typ, d in anc:
            if lvl == SOL_PACKET and typ == PACKET_AUXDATA and len(d) >= 20:
                st, _, _, _, _, tci, _ = struct.unpack("IIIHHHH", d[:20])
                if st & TP_STATUS_VLAN_VALID: vid = tci & 0xfff
        if len(data) >= 18 and data[12:14] == b"\x81\x00":
            vid = struct.unpack("!H", data[14:16])[0] & 0xfff
        cnt[vid] = cnt.get(vid, 0) + 1
    for k in sorted(cnt): print("vlan", k, cnt[k])
    print("done", flush=True)

def ra(ifc, prefix, plen, mac):
    # An upstream router's IPv6 router advertisement (RFC 4861 4.2), once a
    # second: prefix information with on-link and autonomous (SLAAC) flags,
    # and the source link-layer address. The kernel adds the checksum.
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    idx = socket.if_nametoindex(ifc)
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, idx)
    msg = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0)
    msg += struct.pack("!BBBBIII", 3, 4, int(plen), 0xC0, 86400, 14400, 0) + socket.inet_pton(socket.AF_INET6, prefix)
    msg += bytes([1, 1]) + bytes.fromhex(mac.replace(":", ""))
    print("listening", ifc, flush=True)
    sent = 0
    while not stop:
        try:
            s.sendto(msg, ("ff02::1", 0, 0, idx)); sent += 1
        except OSError as e:
            print("error", e, flush=True)
        for _ in range(10):
            if stop: break
            time.sleep(0.1)
    print("sent", sent)
    print("done", flush=True)

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    sys.exit({"serve": serve, "connect": connect, "sniff": sniff, "ra": ra}[cmd](*args) or 0)
"#;

/// The real python3 interpreter (not a pyenv/asdf shim: those add ~60 ms
/// per start and would sit between `ip netns exec` and python).
fn python() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let shim = tool("python3");
        let o = run(Command::new(&shim).args(["-c", "import sys; print(sys.executable)"]), CMD_TIMEOUT);
        let real = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        if o.status.success() && real.is_absolute() && real.is_file() {
            real
        } else {
            shim
        }
    })
}

/// `<dir>/csovn-helper.py`, written once per dir (atomically).
fn helper_script(dir: &Path) -> PathBuf {
    let path = dir.join("csovn-helper.py");
    if !path.is_file() {
        let tmp = dir.join(format!("csovn-helper.py.{}", next_id()));
        std::fs::write(&tmp, HELPER).expect("write python helper");
        std::fs::rename(&tmp, &path).expect("install python helper");
    }
    path
}

fn helper_command(dir: &Path, netns: &str, args: &[&str]) -> Command {
    let mut c = Command::new(tool("ip"));
    c.args(["netns", "exec", netns]).arg(python()).arg(helper_script(dir)).args(args).stdin(Stdio::null());
    c
}

/// A helper process we spawned (a server or a sniffer), stopped by pid.
pub(crate) struct Helper {
    child: Mutex<Option<Child>>,
    pid: u32,
    script: PathBuf,
    out: PathBuf,
    err: PathBuf,
    what: String,
}

impl Helper {
    /// Spawn the helper in `netns` and wait until its first output line
    /// starts with "listening". Panics (with its stderr) otherwise.
    fn start(dir: &Path, netns: &str, args: &[&str], what: String) -> Arc<Helper> {
        let k = next_id();
        let out = dir.join(format!("helper-{k}.out"));
        let err = dir.join(format!("helper-{k}.err"));
        let mut c = helper_command(dir, netns, args);
        let fo = File::create(&out).expect("create helper stdout file");
        let fe = File::create(&err).expect("create helper stderr file");
        c.stdout(Stdio::from(fo)).stderr(Stdio::from(fe));
        let desc = super::util::describe(&c);
        let child = c.spawn().unwrap_or_else(|e| panic!("cannot start `{desc}`: {e}"));
        let h = Arc::new(Helper {
            pid: child.id(),
            child: Mutex::new(Some(child)),
            script: helper_script(dir),
            out,
            err,
            what,
        });
        let mut exited = false;
        let ready = wait_until(START_TIMEOUT, || {
            if std::fs::read_to_string(&h.out).is_ok_and(|s| s.starts_with("listening")) {
                return true;
            }
            exited = lock(&h.child).as_mut().is_none_or(|c| !matches!(c.try_wait(), Ok(None)));
            exited
        });
        if !ready || exited {
            h.stop();
            panic!(
                "{} (`{desc}`) did not start{}\n--- stdout:\n{}\n--- stderr:\n{}",
                h.what,
                if exited { "" } else { " within 10 s" },
                tail(&h.out, 10),
                tail(&h.err, 20)
            );
        }
        h
    }

    /// SIGTERM (if `/proc/PID/cmdline` is ours), wait up to 2 s, then
    /// SIGKILL; reaps the child. Idempotent.
    fn stop(&self) {
        let Some(mut child) = lock(&self.child).take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            if mentions(self.pid, &self.script) {
                kill("TERM", self.pid);
            } else {
                // Not yet exec'd by `ip netns exec` (or exec failed): still
                // our own unreaped child, so the pid cannot be anyone else's.
                eprintln!("[harness] {} (pid {}) does not run the helper; killing our child", self.what, self.pid);
                let _ = child.kill();
            }
            let gone = wait_until(STOP_GRACE, || !matches!(child.try_wait(), Ok(None)));
            if !gone {
                eprintln!("[harness] {} (pid {}) ignored SIGTERM, sending SIGKILL", self.what, self.pid);
                let _ = child.kill();
                wait_until(Duration::from_secs(5), || !matches!(child.try_wait(), Ok(None)));
            }
        }
    }

    fn is_running(&self) -> bool {
        lock(&self.child).as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

// ---------------------------------------------------------------------------
// servers and clients

/// A TCP test server in some namespace; stopped (by pid) on drop.
pub struct Server {
    helper: Arc<Helper>,
    netns: String,
    addr: String,
}

impl Server {
    /// Start `serve` in `netns`; `registry` also keeps a handle so the owner
    /// of the namespace can stop it if the `Server` is leaked.
    pub(crate) fn start(
        dir: &Path,
        netns: &str,
        ip: &str,
        port: u16,
        name: &str,
        registry: &Mutex<Vec<Arc<Helper>>>,
    ) -> Server {
        assert!(!name.is_empty() && !name.contains(char::is_whitespace), "server name {name:?} must be one word");
        let port_s = port.to_string();
        let helper = Helper::start(
            dir,
            netns,
            &["serve", ip, &port_s, name],
            format!("TCP server {name} on {ip}:{port} in netns {netns}"),
        );
        let mut reg = lock(registry);
        reg.retain(|h| h.is_running());
        reg.push(helper.clone());
        Server { helper, netns: netns.to_string(), addr: format!("{ip}:{port}") }
    }

    pub fn pid(&self) -> u32 {
        self.helper.pid
    }

    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// "ip:port" it is bound to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn is_running(&self) -> bool {
        self.helper.is_running()
    }

    /// The connections it accepted so far: "peerip:port -> localip:port".
    pub fn accepted(&self) -> Vec<String> {
        std::fs::read_to_string(&self.helper.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("accepted "))
            .map(str::to_string)
            .collect()
    }

    /// Stop it now (same as dropping it).
    pub fn stop(self) {}
}

impl Drop for Server {
    fn drop(&mut self) {
        self.helper.stop();
    }
}

/// Stop every helper in `registry` (namespace owners call this on drop).
pub(crate) fn stop_helpers(registry: &Mutex<Vec<Arc<Helper>>>) {
    let all: Vec<Arc<Helper>> = std::mem::take(&mut *lock(registry));
    for h in all {
        h.stop();
    }
}

/// One TCP connection from `netns` (source address `source` if given);
/// `Ok(the server's line)`, or `Err("TIMEOUT" | "REFUSED ..." | ...)`.
pub(crate) fn tcp_connect(
    dir: &Path,
    netns: &str,
    ip: &str,
    port: u16,
    source: Option<&str>,
    timeout: Duration,
) -> Result<String, String> {
    let secs = format!("{:.3}", timeout.as_secs_f64());
    let port_s = port.to_string();
    let mut c = helper_command(dir, netns, &["connect", ip, &port_s, source.unwrap_or("-"), &secs]);
    let o = try_run(&mut c, timeout * 2 + Duration::from_secs(10))?;
    let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
    if o.status.success() {
        Ok(out)
    } else {
        let err = String::from_utf8_lossy(&o.stderr);
        Err(format!("{out} {}", err.trim()).trim().to_string())
    }
}

/// [`tcp_connect`] as `Option`, logging why it failed (shown for failed tests).
pub(crate) fn tcp_connect_opt(
    dir: &Path,
    netns: &str,
    ip: &str,
    port: u16,
    source: Option<&str>,
    timeout: Duration,
) -> Option<String> {
    let t = Instant::now();
    match tcp_connect(dir, netns, ip, port, source, timeout) {
        Ok(line) => Some(line),
        Err(e) => {
            eprintln!(
                "[harness] connect {ip}:{port} from netns {netns}{}: {e} after {} ms",
                source.map(|s| format!(" (source {s})")).unwrap_or_default(),
                t.elapsed().as_millis()
            );
            None
        }
    }
}

fn exec_in(netns: &str, args: &[&str]) -> Output {
    assert!(!args.is_empty(), "exec needs a command");
    let mut c = Command::new(tool("ip"));
    c.args(["netns", "exec", netns]).args(args);
    c.stdin(Stdio::null());
    run(&mut c, Duration::from_secs(60))
}

/// One busybox ICMP echo from `netns`, retried for up to `timeout`.
pub(crate) fn ping_from(netns: &str, ip: &str, timeout: Duration) -> bool {
    let bb = tool("busybox");
    let bb = bb.to_string_lossy();
    wait_until(timeout, || exec_in(netns, &[&bb, "ping", "-c", "1", "-W", "1", ip]).status.success())
}

// ---------------------------------------------------------------------------
// the public network

/// Everything `Chassis::add_public` built; shared by the [`Outside`] handle
/// and the chassis (which cleans up if the handle is leaked).
pub(crate) struct PublicNet {
    physnet: String,
    vlan: Option<u16>,
    chassis_ns: String,
    db_remote: String,
    /// The chassis' temp dir (a path, not a share of it: a leaked
    /// `Outside` must not keep the dir from being removed).
    dir: PathBuf,
    /// br-ex port (chassis netns); the trunk in VLAN mode.
    uplink_if: String,
    /// VLAN mode: br-up's end of the trunk veth, and its access port.
    trunk_if: Option<String>,
    access_if: Option<String>,
    ns_name: String,
    netns: Mutex<Option<Netns>>,
    helpers: Mutex<Vec<Arc<Helper>>>,
    /// Set by the chassis' Drop: its OVS and netns are going away anyway.
    chassis_gone: AtomicBool,
}

impl PublicNet {
    /// Build the public network of a chassis (see `Chassis::add_public`).
    pub(crate) fn create(chassis_ns: &str, db_remote: &str, dir: &Path, physnet: &str, vlan: Option<u16>) -> PublicNet {
        assert!(
            !physnet.is_empty() && !physnet.contains([',', ':', ' ', '"', '/']),
            "bad physical network name {physnet:?}"
        );
        if let Some(v) = vlan {
            assert!((1..=4094).contains(&v), "VLAN id {v} out of 1..4094");
        }
        let short: String = physnet.chars().take(10).collect();
        let netns = Netns::create('o');
        let net = PublicNet {
            physnet: physnet.to_string(),
            vlan,
            chassis_ns: chassis_ns.to_string(),
            db_remote: db_remote.to_string(),
            dir: dir.to_path_buf(),
            uplink_if: format!("ex-{short}"),
            trunk_if: vlan.map(|_| format!("tr-{short}")),
            access_if: vlan.map(|_| format!("ac-{short}")),
            ns_name: netns.name().to_string(),
            netns: Mutex::new(Some(netns)),
            helpers: Mutex::new(Vec::new()),
            chassis_gone: AtomicBool::new(false),
        };
        // From here on a panic drops `net`, which removes what was built.
        net.build();
        net
    }

    fn vsctl(&self, args: &[&str]) -> String {
        let mut c = ovs_command(&self.dir, "ovs-vsctl");
        c.arg(format!("--db={}", self.db_remote)).arg("--timeout=10").args(args);
        run_ok(&mut c)
    }

    fn build(&self) {
        let ip = |args: &[&str]| run_ok(Command::new(tool("ip")).args(args));
        let chns = self.chassis_ns.as_str();
        let out = self.ns_name.as_str();
        let up = self.uplink_if.as_str();

        // 1. the provider bridge and the merged bridge mapping
        self.vsctl(&[
            "--may-exist",
            "add-br",
            PUBLIC_BRIDGE,
            "--",
            "set",
            "Bridge",
            PUBLIC_BRIDGE,
            "datapath_type=netdev",
            "fail_mode=standalone",
            "other_config:disable-in-band=true",
        ]);
        let old = self.vsctl(&["--if-exists", "get", "Open_vSwitch", ".", "external_ids:ovn-bridge-mappings"]);
        let mut maps: Vec<String> = old
            .trim_matches('"')
            .split(',')
            .filter(|m| !m.is_empty() && !m.starts_with(&format!("{}:", self.physnet)))
            .map(str::to_string)
            .collect();
        maps.push(format!("{}:{PUBLIC_BRIDGE}", self.physnet));
        self.vsctl(&["set", "Open_vSwitch", ".", &format!("external_ids:ovn-bridge-mappings=\"{}\"", maps.join(","))]);

        // 2. the outside namespace: ARPs from its eth0 address only; no
        // IPv6 (its RS/ND/MLD frames would only be noise in VLAN counts)
        sysctl(
            out,
            &[
                "net.ipv4.conf.all.arp_announce=2",
                "net.ipv4.conf.default.arp_announce=2",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
        );
        match (&self.trunk_if, &self.access_if, self.vlan) {
            (Some(tr), Some(ac), Some(vlan)) => {
                ip(&["-n", chns, "link", "add", up, "type", "veth", "peer", "name", tr]);
                ip(&["-n", chns, "link", "add", ac, "type", "veth", "peer", "name", "eth0", "netns", out]);
                for dev in [up, tr.as_str(), ac.as_str()] {
                    bridge_port_only(chns, dev);
                    ip(&["-n", chns, "link", "set", dev, "up"]);
                }
                self.vsctl(&[
                    "add-port",
                    PUBLIC_BRIDGE,
                    up,
                    "--",
                    "--may-exist",
                    "add-br",
                    UPSTREAM_BRIDGE,
                    "--",
                    "set",
                    "Bridge",
                    UPSTREAM_BRIDGE,
                    "datapath_type=netdev",
                    "fail_mode=standalone",
                    "other_config:disable-in-band=true",
                    "--",
                    "add-port",
                    UPSTREAM_BRIDGE,
                    tr,
                    "--",
                    "add-port",
                    UPSTREAM_BRIDGE,
                    ac,
                    &format!("tag={vlan}"),
                ]);
            }
            _ => {
                ip(&["-n", chns, "link", "add", up, "type", "veth", "peer", "name", "eth0", "netns", out]);
                bridge_port_only(chns, up);
                ip(&["-n", chns, "link", "set", up, "up"]);
                self.vsctl(&["add-port", PUBLIC_BRIDGE, up]);
            }
        }
        offloads_off(out, "eth0");
        ip(&["-n", out, "link", "set", "eth0", "address", OUTSIDE_MAC]);
        ip(&["-n", out, "link", "set", "eth0", "up"]);
        ip(&["-n", out, "addr", "add", OUTSIDE_CIDR, "dev", "eth0"]);
        for h in INTERNET_HOSTS {
            ip(&["-n", out, "addr", "add", &format!("{h}/32"), "dev", "lo"]);
        }
    }

    /// Stop the helpers, delete the outside namespace and (while the
    /// chassis lives) its OVS ports and veths. Idempotent.
    pub(crate) fn cleanup(&self) {
        stop_helpers(&self.helpers);
        let ns = lock(&self.netns).take();
        if ns.is_none() {
            return;
        }
        drop(ns); // `ip netns del`, taking eth0 (and its veth peer) along
        if self.chassis_gone.load(Ordering::SeqCst) {
            return;
        }
        let mut c = ovs_command(&self.dir, "ovs-vsctl");
        c.arg(format!("--db={}", self.db_remote))
            .args(["--timeout=5", "--", "--if-exists", "del-port"])
            .arg(&self.uplink_if);
        if self.vlan.is_some() {
            c.args(["--", "--if-exists", "del-br", UPSTREAM_BRIDGE]);
        }
        if let Err(e) = try_run(&mut c, Duration::from_secs(10)) {
            eprintln!("[harness] removing public ports: {e}");
        }
        for dev in [Some(&self.uplink_if), self.trunk_if.as_ref()].into_iter().flatten() {
            // deleting one end of a veth deletes its peer; errors are fine
            let _ = try_run(
                Command::new(tool("ip")).args(["-n", &self.chassis_ns, "link", "del", dev]),
                Duration::from_secs(10),
            );
        }
    }

    /// The chassis is shutting down: clean up without touching its OVS.
    pub(crate) fn chassis_dropped(&self) {
        self.chassis_gone.store(true, Ordering::SeqCst);
        self.cleanup();
    }

    pub(crate) fn is_live(&self) -> bool {
        lock(&self.netns).is_some()
    }

    pub(crate) fn physnet(&self) -> &str {
        &self.physnet
    }
}

impl Drop for PublicNet {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// `sysctl -qw KEY=VALUE...` inside `netns` (busybox); panics on failure.
fn sysctl(netns: &str, settings: &[&str]) {
    let mut c = Command::new(tool("ip"));
    c.args(["netns", "exec", netns]).arg(tool("busybox")).args(["sysctl", "-q", "-w"]).args(settings);
    run_ok(&mut c);
}

/// Offloads off: the userspace datapath cannot handle partial checksums
/// or GSO super-frames. A failure is only logged (as in `plug_vm`).
fn offloads_off(netns: &str, dev: &str) {
    let mut c = Command::new(tool("ip"));
    c.args(["netns", "exec", netns])
        .arg(tool("ethtool"))
        .args(["-K", dev, "tx", "off", "tso", "off", "gso", "off", "gro", "off"]);
    let o = run(&mut c, CMD_TIMEOUT);
    if !o.status.success() {
        eprintln!("[harness] ethtool -K {dev} in {netns}: {}", String::from_utf8_lossy(&o.stderr).trim());
    }
}

/// A veth that is only an OVS bridge port: offloads off, and no IPv6 (its
/// kernel ND/MLD frames would otherwise appear as untagged frames).
fn bridge_port_only(netns: &str, dev: &str) {
    offloads_off(netns, dev);
    sysctl(netns, &[&format!("net.ipv6.conf.{dev}.disable_ipv6=1")]);
}

/// The outside world of a chassis' public network: an "upstream router"
/// namespace with `eth0` = 203.0.113.1/24 (MAC 02:00:cb:00:71:01) and the
/// "internet" hosts 198.51.100.10/32, .20/32 on `lo`. Dropping it stops
/// its servers and deletes the namespace (and the chassis-side ports).
pub struct Outside {
    net: Arc<PublicNet>,
}

impl Outside {
    pub(crate) fn new(net: Arc<PublicNet>) -> Outside {
        Outside { net }
    }

    pub fn netns(&self) -> &str {
        &self.net.ns_name
    }

    /// The upstream router address, "203.0.113.1".
    pub fn gateway(&self) -> &'static str {
        OUTSIDE_GW
    }

    pub fn mac(&self) -> &'static str {
        OUTSIDE_MAC
    }

    pub fn physnet(&self) -> &str {
        &self.net.physnet
    }

    /// `None` = untagged; `Some(n)` = behind an access port of VLAN n.
    pub fn vlan(&self) -> Option<u16> {
        self.net.vlan
    }

    /// The chassis' namespace, where the bridge-port veths live.
    pub fn chassis_netns(&self) -> &str {
        &self.net.chassis_ns
    }

    /// br-ex's port toward the outside (`ex-<physnet>`, chassis netns);
    /// in VLAN mode the 802.1Q trunk.
    pub fn uplink_if(&self) -> &str {
        &self.net.uplink_if
    }

    /// VLAN mode: br-up's end of the trunk (`tr-<physnet>`, chassis netns).
    pub fn trunk_if(&self) -> Option<&str> {
        self.net.trunk_if.as_deref()
    }

    /// `ip netns exec <outside> ARGS...` (60 s deadline).
    pub fn exec(&self, args: &[&str]) -> Output {
        exec_in(self.netns(), args)
    }

    /// One ICMP echo from the outside, retried for up to `timeout`.
    pub fn ping(&self, ip: &str, timeout: Duration) -> bool {
        ping_from(self.netns(), ip, timeout)
    }

    /// TCP server in the outside netns on `ip:port`: answers every
    /// connection with `"<name> peer=<ip>:<port> local=<ip>:<port>\n"` and
    /// closes. Returns once it listens. Stopped on drop (of the `Server`
    /// or of this `Outside`). Bind a UDP-style service to the address it
    /// serves; `0.0.0.0` works for TCP.
    pub fn serve_tcp(&self, ip: &str, port: u16, name: &str) -> Server {
        Server::start(&self.net.dir, self.netns(), ip, port, name, &self.net.helpers)
    }

    /// One TCP connection from the outside (bound to `source` if given):
    /// the server's line, or `None` on timeout / refusal (logged).
    /// Use >= 3 s for the first connection through a new router (it may
    /// lose the first SYN while it resolves its next hop).
    pub fn connect_tcp(&self, ip: &str, port: u16, source: Option<&str>, timeout: Duration) -> Option<String> {
        tcp_connect_opt(&self.net.dir, self.netns(), ip, port, source, timeout)
    }

    /// [`Outside::connect_tcp`] with the failure reason
    /// (`"TIMEOUT"`, `"REFUSED ..."`, `"ERROR ..."`).
    pub fn try_connect_tcp(
        &self,
        ip: &str,
        port: u16,
        source: Option<&str>,
        timeout: Duration,
    ) -> Result<String, String> {
        tcp_connect(&self.net.dir, self.netns(), ip, port, source, timeout)
    }

    /// Start counting the frames on the link toward the outside per VLAN
    /// id (0 = untagged): the trunk `tr-<physnet>` in VLAN mode, the
    /// uplink `ex-<physnet>` otherwise. Both directions are counted.
    /// Returns once the AF_PACKET socket is bound.
    pub fn capture_vlans(&self) -> VlanCapture {
        let dev = self.net.trunk_if.as_deref().unwrap_or(&self.net.uplink_if);
        let helper = Helper::start(
            &self.net.dir,
            &self.net.chassis_ns,
            &["sniff", dev],
            format!("VLAN sniffer on {dev} in netns {}", self.net.chassis_ns),
        );
        lock(&self.net.helpers).push(helper.clone());
        VlanCapture { helper }
    }

    /// Make the upstream router an IPv6 router on `gateway` (e.g.
    /// "fd00:3000::1/64"): IPv6 on (it is off in the outside namespace),
    /// the address on `eth0`, and router advertisements of its /64 (SLAAC)
    /// once a second until the network is dropped.
    pub fn advertise_ipv6(&self, gateway: &str) {
        let (addr, plen) = gateway.split_once('/').expect("gateway as address/prefix");
        let ip: std::net::Ipv6Addr = addr.parse().expect("IPv6 gateway");
        let plen: u32 = plen.parse().expect("prefix length");
        let prefix = std::net::Ipv6Addr::from(u128::from(ip) & (u128::MAX << (128 - plen)));
        let out = self.netns();
        sysctl(
            out,
            &[
                "net.ipv6.conf.all.disable_ipv6=0",
                "net.ipv6.conf.eth0.accept_dad=0",
                "net.ipv6.conf.eth0.forwarding=1",
                "net.ipv6.conf.eth0.disable_ipv6=0",
            ],
        );
        run_ok(Command::new(tool("ip")).args(["-n", out, "addr", "add", gateway, "dev", "eth0", "nodad"]));
        let link_local = || {
            let o = run(
                Command::new(tool("ip")).args(["-n", out, "-6", "addr", "show", "dev", "eth0", "scope", "link"]),
                CMD_TIMEOUT,
            );
            String::from_utf8_lossy(&o.stdout).contains("fe80::")
        };
        assert!(wait_until(Duration::from_secs(10), link_local), "no IPv6 link-local address on the outside eth0");
        let helper = Helper::start(
            &self.net.dir,
            out,
            &["ra", "eth0", &prefix.to_string(), &plen.to_string(), OUTSIDE_MAC],
            format!("router advertisements of {prefix}/{plen} in netns {out}"),
        );
        lock(&self.net.helpers).push(helper);
    }

    /// Count the frames per VLAN id (0 = untagged) for `secs` seconds; see
    /// [`Outside::capture_vlans`] to count around some traffic instead.
    pub fn frames_per_vlan(&self, secs: f64) -> BTreeMap<u16, u64> {
        let cap = self.capture_vlans();
        std::thread::sleep(Duration::from_secs_f64(secs.max(0.0)));
        cap.finish()
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        self.net.cleanup();
    }
}

/// A running VLAN frame counter (see [`Outside::capture_vlans`]).
pub struct VlanCapture {
    helper: Arc<Helper>,
}

impl VlanCapture {
    /// Stop counting; frames per VLAN id (0 = untagged; a priority-tagged
    /// frame with VID 0 also counts as 0).
    pub fn finish(self) -> BTreeMap<u16, u64> {
        self.helper.stop();
        let text = std::fs::read_to_string(&self.helper.out).unwrap_or_default();
        assert!(
            text.lines().any(|l| l == "done"),
            "{} did not report its counts\n--- stdout:\n{text}\n--- stderr:\n{}",
            self.helper.what,
            tail(&self.helper.err, 20)
        );
        text.lines()
            .filter_map(|l| {
                let mut w = l.strip_prefix("vlan ")?.split_whitespace();
                Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
            })
            .collect()
    }
}

impl Drop for VlanCapture {
    fn drop(&mut self) {
        self.helper.stop();
    }
}
