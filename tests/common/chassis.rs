//! A hypervisor ("chassis"): ovsdb-server (conf.db) + ovs-vswitchd with the
//! userspace (netdev) datapath + ovn-controller, all in a network namespace;
//! and VMs (namespace + veth pair) plugged into its br-int like libvirt does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::central::Central;
use super::daemon::{stop_all, Daemon};
use super::public::{self, Helper, Outside, PublicNet, Server};
use super::util::{
    dump_logs, next_id, ovs_command, require, run, run_ok, tail, tool, try_run, wait_until, LabDir, Netns, CMD_TIMEOUT,
    OVS_SCHEMA,
};

/// How long `plug_vm` waits for the SB Port_Binding to come up.
const PLUG_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a chassis may take to register in SB.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(20);
/// Hard deadline for one udhcpc run (it gives up by itself after ~6 s).
const DHCP_TIMEOUT: Duration = Duration::from_secs(20);

const CHASSIS_TOOLS: &[&str] = &[
    "ovsdb-tool",
    "ovsdb-server",
    "ovs-vsctl",
    "ovs-vswitchd",
    "ovs-appctl",
    "ovs-ofctl",
    "ovn-controller",
    "ovn-sbctl",
    "ovn-nbctl",
    "ip",
    "ethtool",
    "busybox",
];

/// What the public network and the TCP test endpoints need on top.
const PUBLIC_TOOLS: &[&str] = &["python3"];

pub struct Chassis {
    // Stopped explicitly in Drop (controller first); then the netns and the
    // dir go, in this order.
    controller: Daemon,
    vswitchd: Daemon,
    ovsdb: Daemon,
    netns: Netns,
    name: String,
    sb_remote: String,
    db_remote: String,
    encap_ip: String,
    /// Public networks ([`Chassis::add_public`]); cleaned up here too, in
    /// case their [`Outside`] handle was leaked.
    publics: Mutex<Vec<Arc<PublicNet>>>,
    dir: Arc<LabDir>,
}

impl Chassis {
    /// Start a netdev-datapath chassis registered in `central`'s SB as
    /// `name` (external_ids:system-id). Returns once the SB Chassis row
    /// exists. Each chassis gets its own ovn-encap-ip `127.x.y.z` so several
    /// can register in one SB (they cannot tunnel to each other).
    pub fn start(central: &Central, name: &str) -> Chassis {
        require(CHASSIS_TOOLS, &[OVS_SCHEMA]);
        let dir = Arc::new(LabDir::new("hv"));
        let netns = Netns::create('c');
        let db = dir.file("conf.db");
        let sock = dir.file("db.sock");
        let db_remote = format!("unix:{}", sock.display());
        let sb_remote = central.sb_remote();
        let n = next_id();
        // unique for the first 16 million chassis of this process
        let encap_ip = format!("127.{}.{}.{}", 1 + n / 64_000 % 250, n / 250 % 256, 2 + n % 250);

        run_ok(ovs_command(dir.path(), "ovsdb-tool").arg("create").arg(&db).arg(OVS_SCHEMA));
        let ovsdb = Daemon::launch(
            dir.path(),
            Some(netns.name()),
            "ovsdb-server",
            "ovsdb",
            true,
            &[&format!("--remote=punix:{}", sock.display()), &db.to_string_lossy()],
        );
        // Pre-create br-int (netdev): otherwise ovn-controller creates it and
        // its first OpenFlow connect fails and retries ~1 s later.
        let mut c = ovs_command(dir.path(), "ovs-vsctl");
        c.arg(format!("--db={db_remote}"))
            .args(["--no-wait", "--timeout=10", "--", "init"])
            .args(["--", "add-br", "br-int"])
            .args(["--", "set", "Bridge", "br-int", "datapath_type=netdev", "fail_mode=secure"])
            .arg("other_config:disable-in-band=true")
            .args(["--", "set", "Open_vSwitch", "."])
            .arg(format!("external_ids:system-id={name}"))
            .arg(format!("external_ids:hostname={name}"))
            .arg(format!("external_ids:ovn-remote={sb_remote}"))
            .arg("external_ids:ovn-encap-type=geneve")
            .arg(format!("external_ids:ovn-encap-ip={encap_ip}"))
            .arg("external_ids:ovn-bridge-datapath-type=netdev");
        run_ok(&mut c);
        // --monitor: OVS 3.1.0's userspace conntrack aborts now and then
        // (`conn_update_state` assertion, ovnlab north-south.md; fixed
        // upstream when un-NAT connections were removed, v3.2). Restarted as
        // systemd restarts it in production; Drop reports every crash.
        let vswitchd = Daemon::launch(
            dir.path(),
            Some(netns.name()),
            "ovs-vswitchd",
            "vswitchd",
            true,
            &["--monitor", &db_remote],
        );
        // ovn-controller 23.03 has no --unixctl: its socket is
        // $OVN_RUNDIR/ovn-controller.<pid>.ctl (OVN_RUNDIR = dir).
        let controller =
            Daemon::launch(dir.path(), Some(netns.name()), "ovn-controller", "controller", false, &[&db_remote]);
        let chassis = Chassis {
            controller,
            vswitchd,
            ovsdb,
            netns,
            name: name.to_string(),
            sb_remote,
            db_remote,
            encap_ip,
            publics: Mutex::new(Vec::new()),
            dir,
        };
        let mut c = ovs_command(chassis.dir(), "ovn-sbctl");
        c.arg(format!("--db={}", chassis.sb_remote)).arg(format!("--timeout={}", REGISTER_TIMEOUT.as_secs())).args([
            "wait-until",
            "Chassis",
            name,
        ]);
        let o = run(&mut c, REGISTER_TIMEOUT + Duration::from_secs(5));
        if !o.status.success() {
            panic!(
                "chassis {name} did not register in SB within {REGISTER_TIMEOUT:?}: {}\n--- controller.log:\n{}",
                String::from_utf8_lossy(&o.stderr).trim(),
                tail(chassis.controller.log(), 30)
            );
        }
        chassis
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace ovs-vswitchd / ovn-controller run in (veth host ends live here).
    pub fn netns(&self) -> &str {
        self.netns.name()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn encap_ip(&self) -> &str {
        &self.encap_ip
    }

    /// `unix:<dir>/db.sock` (the chassis' Open_vSwitch DB).
    pub fn db_remote(&self) -> String {
        self.db_remote.clone()
    }

    /// `ovs-vsctl --db=<conf.db> --timeout=10 ARGS`; panics on failure.
    pub fn vsctl(&self, args: &[&str]) -> String {
        let mut c = ovs_command(self.dir(), "ovs-vsctl");
        c.arg(format!("--db={}", self.db_remote)).arg("--timeout=10").args(args);
        run_ok(&mut c)
    }

    /// `ovs-appctl -t <ovn-controller ctl> ARGS`; panics on failure.
    pub fn appctl_controller(&self, args: &[&str]) -> String {
        let mut c = ovs_command(self.dir(), "ovs-appctl");
        c.arg("--timeout=10").arg("-t").arg(self.controller_ctl()).args(args);
        run_ok(&mut c)
    }

    /// `ovs-appctl -t <vswitchd ctl> ARGS`; panics on failure.
    pub fn appctl_vswitchd(&self, args: &[&str]) -> String {
        let mut c = ovs_command(self.dir(), "ovs-appctl");
        c.arg("--timeout=10").arg("-t").arg(self.vswitchd.ctl().expect("vswitchd has --unixctl")).args(args);
        run_ok(&mut c)
    }

    /// OpenFlow flows on br-int (`ovs-ofctl dump-flows`).
    pub fn dump_flows(&self) -> String {
        let mut c = ovs_command(self.dir(), "ovs-ofctl");
        c.arg("dump-flows").arg(format!("unix:{}", self.dir.file("br-int.mgmt").display()));
        run_ok(&mut c)
    }

    pub fn controller_log(&self) -> &Path {
        self.controller.log()
    }

    /// SIGKILL ovn-controller (it cannot remove its SB rows, as a crash):
    /// the chassis stops reporting `nb_cfg`.
    pub fn kill_controller(&self) {
        self.controller.kill();
    }

    pub fn vswitchd_log(&self) -> &Path {
        self.vswitchd.log()
    }

    /// The running ovs-vswitchd's pid (a new one after a crash: --monitor).
    pub fn vswitchd_pid(&self) -> Option<u32> {
        self.vswitchd.pid().filter(|_| self.vswitchd.is_running())
    }

    /// Stop the chassis' ovsdb-server (conf.db) for `down`, then start it
    /// again on the same database and socket: vswitchd, ovn-controller and
    /// the metadata agent lose their local OVS connection meanwhile.
    pub fn restart_ovsdb(&mut self, down: Duration) {
        self.ovsdb.stop();
        std::thread::sleep(down);
        let (db, sock) = (self.dir.file("conf.db"), self.dir.file("db.sock"));
        self.ovsdb = Daemon::launch(
            self.dir.path(),
            Some(self.netns.name()),
            "ovsdb-server",
            "ovsdb",
            true,
            &[&format!("--remote=punix:{}", sock.display()), &db.to_string_lossy()],
        );
    }

    /// Crash ovs-vswitchd the way a failed assertion does (SIGABRT).
    pub fn abort_vswitchd(&self) {
        let pid = self.vswitchd_pid().expect("vswitchd running");
        super::daemon::kill("ABRT", pid);
    }

    /// Is ovs-vswitchd still running? (OVS 3.1's userspace conntrack
    /// crashed once in the lab with an assertion in `conn_update_state`.)
    pub fn vswitchd_alive(&self) -> bool {
        self.vswitchd.is_running()
    }

    /// The EMER lines of vswitchd.log (what it logs when an assertion
    /// fails), or "(no EMER line)".
    pub fn vswitchd_emer(&self) -> String {
        let emer: Vec<String> = std::fs::read_to_string(self.vswitchd.log())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("|EMER|"))
            .map(str::to_string)
            .collect();
        if emer.is_empty() {
            "(no EMER line)".to_string()
        } else {
            emer.join("\n")
        }
    }

    /// Panics (with the EMER lines and the log tail) if ovs-vswitchd died.
    #[track_caller]
    pub fn assert_vswitchd_alive(&self) {
        if !self.vswitchd_alive() {
            panic!(
                "ovs-vswitchd of chassis {} is not running any more\n--- EMER lines:\n{}\n--- vswitchd.log:\n{}",
                self.name,
                self.vswitchd_emer(),
                tail(self.vswitchd.log(), 15)
            );
        }
    }

    /// A public (provider) network: the netdev bridge `br-ex`,
    /// `ovn-bridge-mappings=<physnet>:br-ex` (merged with the mappings
    /// already set), and an outside namespace acting as the upstream router
    /// (eth0 = 203.0.113.1/24, MAC 02:00:cb:00:71:01; 198.51.100.10/32 and
    /// .20/32 on lo; arp_announce=2; offloads off). `vlan = None`: an
    /// untagged veth from br-ex to the outside eth0. `vlan = Some(n)`: a
    /// trunk veth from br-ex into an emulated upstream switch `br-up`,
    /// whose access port (tag=n) leads to the outside eth0; the NB
    /// localnet port then needs `tag_request=n`.
    ///
    /// One live public network per chassis (drop the `Outside` to rebuild,
    /// e.g. in the other mode). Dropping the `Outside` stops its servers
    /// and removes the namespace and the ports; the chassis' Drop does the
    /// same if the handle was leaked.
    pub fn add_public(&self, physnet: &str, vlan: Option<u16>) -> Outside {
        require(PUBLIC_TOOLS, &[]);
        let mut publics = self.publics.lock().unwrap_or_else(PoisonError::into_inner);
        publics.retain(|p| p.is_live());
        if let Some(p) = publics.first() {
            panic!("chassis {} already has a public network ({}); drop its Outside first", self.name, p.physnet());
        }
        let net = Arc::new(PublicNet::create(self.netns(), &self.db_remote, self.dir(), physnet, vlan));
        publics.push(net.clone());
        Outside::new(net)
    }

    fn controller_ctl(&self) -> PathBuf {
        self.dir.file(&format!("ovn-controller.{}.ctl", self.controller.pid().unwrap_or(0)))
    }

    /// Plug a VM NIC: a new namespace with `eth0` (MAC `mac`, offloads off),
    /// the veth peer `ifname` (<= 15 chars) added to br-int with the libvirt
    /// external-ids (`iface-id=<iface_id>`, attached-mac, vm-id,
    /// iface-status=active). Waits (max 10 s) until the SB Port_Binding of
    /// `iface_id` is up, so the LSP must exist in NB.
    pub fn plug_vm(&self, ifname: &str, iface_id: &str, mac: &str) -> Vm {
        let vm = self.plug_vm_nowait(ifname, iface_id, mac);
        let mut c = ovs_command(self.dir(), "ovn-sbctl");
        c.arg(format!("--db={}", self.sb_remote)).arg(format!("--timeout={}", PLUG_TIMEOUT.as_secs())).args([
            "wait-until",
            "Port_Binding",
            iface_id,
            "up=true",
        ]);
        let o = run(&mut c, PLUG_TIMEOUT + Duration::from_secs(5));
        if !o.status.success() {
            panic!(
                "Port_Binding {iface_id} did not come up within {PLUG_TIMEOUT:?} (does the LSP exist in NB?): {}\n\
                 --- controller.log:\n{}",
                String::from_utf8_lossy(&o.stderr).trim(),
                tail(self.controller.log(), 30)
            );
        }
        vm
    }

    /// [`Chassis::plug_vm`] without waiting for the binding.
    pub fn plug_vm_nowait(&self, ifname: &str, iface_id: &str, mac: &str) -> Vm {
        assert!(
            !ifname.is_empty() && ifname.len() <= 15 && !ifname.contains(['/', ' ']),
            "bad interface name {ifname:?} (1..15 chars, no '/' or space)"
        );
        let netns = Netns::create('v');
        let vmns = netns.name().to_string();
        let chns = self.netns();
        let ip = |args: &[&str]| run_ok(Command::new(tool("ip")).args(args));
        ip(&["-n", chns, "link", "add", ifname, "type", "veth", "peer", "name", "eth0", "netns", &vmns]);
        ip(&["-n", &vmns, "link", "set", "eth0", "address", mac]);
        ip(&["-n", &vmns, "link", "set", "eth0", "up"]);
        ip(&["-n", chns, "link", "set", ifname, "up"]);
        // Without this the userspace datapath sees "partial" checksums and
        // GSO super-frames (README §8.2): TCP/UDP would break.
        for (ns, dev) in [(vmns.as_str(), "eth0"), (chns, ifname)] {
            let mut c = Command::new(tool("ip"));
            c.args(["netns", "exec", ns])
                .arg(tool("ethtool"))
                .args(["-K", dev, "tx", "off", "tso", "off", "gso", "off", "gro", "off"]);
            let o = run(&mut c, CMD_TIMEOUT);
            if !o.status.success() {
                eprintln!("[harness] ethtool -K {dev} in {ns}: {}", String::from_utf8_lossy(&o.stderr).trim());
            }
        }
        // The transaction libvirt runs for <virtualport type='openvswitch'>.
        self.vsctl(&[
            "--",
            "--if-exists",
            "del-port",
            ifname,
            "--",
            "add-port",
            "br-int",
            ifname,
            "--",
            "set",
            "Interface",
            ifname,
            &format!("external-ids:attached-mac=\"{mac}\""),
            "--",
            "set",
            "Interface",
            ifname,
            &format!("external-ids:iface-id=\"{iface_id}\""),
            "--",
            "set",
            "Interface",
            ifname,
            &format!("external-ids:vm-id=\"csovn-{vmns}\""),
            "--",
            "set",
            "Interface",
            ifname,
            "external-ids:iface-status=active",
        ]);
        Vm {
            servers: Mutex::new(Vec::new()),
            netns,
            ifname: ifname.to_string(),
            iface_id: iface_id.to_string(),
            mac: mac.to_string(),
            db_remote: self.db_remote.clone(),
            dir: self.dir.clone(),
        }
    }
}

impl Drop for Chassis {
    fn drop(&mut self) {
        if std::thread::panicking() {
            dump_logs(
                &format!("chassis {}", self.name),
                &[self.controller.log().to_path_buf(), self.vswitchd.log().to_path_buf()],
            );
        }
        let emer = self.vswitchd_emer();
        if self.vswitchd.is_running() && emer != "(no EMER line)" {
            eprintln!(
                "[harness] chassis {}: ovs-vswitchd crashed during the test and was restarted by its \
                 --monitor. EMER lines of {}:\n{emer}",
                self.name,
                self.vswitchd.log().display(),
            );
        }
        if !self.vswitchd.is_running() {
            // Reported even when the test passed (libtest shows it with
            // --nocapture only): a dead vswitchd explains every timeout.
            eprintln!(
                "[harness] chassis {}: ovs-vswitchd DIED during the test (userspace conntrack \
                 crash?). EMER lines of {}:\n{}",
                self.name,
                self.vswitchd.log().display(),
                self.vswitchd_emer()
            );
        }
        // Outside namespaces (and the servers in them) go first: a process
        // left in a deleted namespace would keep it alive.
        let publics = std::mem::take(&mut *self.publics.lock().unwrap_or_else(PoisonError::into_inner));
        for p in publics {
            p.chassis_dropped();
        }
        // Graceful ovn-controller exit removes its Chassis row and releases
        // the port bindings; only worth it while the SB is still there.
        let sb_alive = self.sb_remote.strip_prefix("unix:").is_some_and(|p| Path::new(p).exists());
        if sb_alive && self.controller.is_running() {
            let mut c = ovs_command(self.dir(), "ovs-appctl");
            c.arg("--timeout=3").arg("-t").arg(self.controller_ctl()).arg("exit");
            let _ = try_run(&mut c, Duration::from_secs(5));
            let pid = self.controller.pid();
            wait_until(Duration::from_secs(2), || !pid.is_some_and(super::daemon::running));
        }
        let Chassis { controller, vswitchd, ovsdb, .. } = self;
        stop_all(&mut [controller, vswitchd, ovsdb]);
        // then `netns` (and every veth end inside it) and `dir` are dropped.
    }
}

/// A "VM": a network namespace holding `eth0`, the peer of an OVS port.
pub struct Vm {
    /// Test servers started in the namespace (stopped before it goes).
    servers: Mutex<Vec<Arc<Helper>>>,
    netns: Netns,
    ifname: String,
    iface_id: String,
    mac: String,
    db_remote: String,
    dir: Arc<LabDir>,
}

/// What busybox udhcpc reported for a lease (its script variables).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lease {
    pub ip: String,
    /// Prefix length, e.g. "24" (udhcpc `$mask`).
    pub mask: String,
    /// Router option (space-separated if several).
    pub router: Option<String>,
    pub dns: Vec<String>,
    pub mtu: Option<u32>,
    pub lease: Option<u64>,
    pub server_id: Option<String>,
    pub domain: Option<String>,
    pub hostname: Option<String>,
    /// Dotted netmask, e.g. "255.255.255.0" (udhcpc `$subnet`).
    pub subnet: Option<String>,
    pub broadcast: Option<String>,
    /// Option 121 as udhcpc prints it: "dest/len gw dest/len gw ...".
    pub staticroutes: Option<String>,
    /// Option 119 (domain search list).
    pub search: Option<String>,
    /// Every udhcpc variable that was set, by name.
    pub raw: BTreeMap<String, String>,
}

/// Variables the udhcpc script records.
const DHCP_VARS: &[&str] = &[
    "interface",
    "ip",
    "mask",
    "subnet",
    "broadcast",
    "router",
    "dns",
    "domain",
    "hostname",
    "lease",
    "serverid",
    "mtu",
    "staticroutes",
    "msstaticroutes",
    "search",
    "ntpsrv",
    "tftp",
    "bootfile",
    "siaddr",
    "sname",
    "boot_file",
    "wpad",
    "timezone",
];

impl Lease {
    fn parse(text: &str) -> Lease {
        let raw: BTreeMap<String, String> =
            text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let get = |k: &str| raw.get(k).cloned();
        Lease {
            ip: get("ip").unwrap_or_default(),
            mask: get("mask").unwrap_or_default(),
            router: get("router"),
            dns: get("dns").map(|d| d.split_whitespace().map(str::to_string).collect()).unwrap_or_default(),
            mtu: get("mtu").and_then(|v| v.trim().parse().ok()),
            lease: get("lease").and_then(|v| v.trim().parse().ok()),
            server_id: get("serverid"),
            domain: get("domain"),
            hostname: get("hostname"),
            subnet: get("subnet"),
            broadcast: get("broadcast"),
            staticroutes: get("staticroutes"),
            search: get("search"),
            raw,
        }
    }
}

impl Vm {
    pub fn netns(&self) -> &str {
        self.netns.name()
    }

    /// The OVS port / host-side veth name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn iface_id(&self) -> &str {
        &self.iface_id
    }

    pub fn mac(&self) -> &str {
        &self.mac
    }

    /// `ip netns exec <ns> ARGS...` (60 s deadline; panics only if it cannot run).
    pub fn exec(&self, args: &[&str]) -> Output {
        assert!(!args.is_empty(), "Vm::exec needs a command");
        let mut c = Command::new(tool("ip"));
        c.args(["netns", "exec", self.netns()]).args(args);
        c.stdin(std::process::Stdio::null());
        run(&mut c, Duration::from_secs(60))
    }

    /// DHCP with busybox udhcpc (`-i eth0 -f -q -n -t 5 -T 1`); the script
    /// records the lease and applies address, MTU and default route like a
    /// real client. Panics (with udhcpc's output) if there is no lease.
    pub fn dhcp(&self) -> Lease {
        self.dhcp_result().unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Vm::dhcp`] returning `None` instead of panicking (takes ~6 s when
    /// no server answers).
    pub fn try_dhcp(&self) -> Option<Lease> {
        self.dhcp_result().ok()
    }

    fn dhcp_result(&self) -> Result<Lease, String> {
        let k = next_id();
        let script = self.dir.file(&format!("udhcpc-{}-{k}.sh", self.netns()));
        let out = self.dir.file(&format!("udhcpc-{}-{k}.lease", self.netns()));
        let vars = DHCP_VARS.join(" ");
        std::fs::write(
            &script,
            format!(
                r#"#!/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
echo "$1" >> "$CSOVN_DHCP_OUT.events"
case "$1" in
bound|renew)
    for v in {vars}; do
        eval "val=\${{$v-}}"
        [ -n "$val" ] && printf '%s=%s\n' "$v" "$val"
    done > "$CSOVN_DHCP_OUT.tmp"
    mv "$CSOVN_DHCP_OUT.tmp" "$CSOVN_DHCP_OUT"
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface" || exit 1
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    [ -n "$router" ] && ip route replace default via "${{router%% *}}" dev "$interface"
    ;;
esac
exit 0
"#
            ),
        )
        .expect("write udhcpc script");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod script");
        }
        let mut c = Command::new(tool("ip"));
        // A clean environment: udhcpc only sets variables for options it
        // received, so inherited ones (e.g. `domain`) must not leak in.
        c.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CSOVN_DHCP_OUT", &out)
            .args(["netns", "exec", self.netns()])
            .arg(tool("busybox"))
            .args(["udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "5", "-T", "1", "-s"])
            .arg(&script)
            .stdin(std::process::Stdio::null());
        let o = try_run(&mut c, DHCP_TIMEOUT)?;
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if o.status.success() && !text.is_empty() {
            let lease = Lease::parse(&text);
            if !lease.ip.is_empty() {
                return Ok(lease);
            }
        }
        Err(format!(
            "no DHCP lease for {} (iface-id {}, mac {}) in netns {}: udhcpc {}\n--- output:\n{}{}\n--- events: {}",
            self.ifname,
            self.iface_id,
            self.mac,
            self.netns(),
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            std::fs::read_to_string(format!("{}.events", out.display()))
                .unwrap_or_default()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(",")
        ))
    }

    /// Static address (e.g. "10.1.1.5/24") and optional default gateway.
    pub fn configure(&self, cidr: &str, gateway: Option<&str>) {
        let ns = self.netns();
        run_ok(Command::new(tool("ip")).args(["-n", ns, "addr", "add", cidr, "dev", "eth0"]));
        if let Some(gw) = gateway {
            run_ok(Command::new(tool("ip")).args(["-n", ns, "route", "replace", "default", "via", gw]));
        }
    }

    /// One ICMP echo (busybox ping), retried for up to `timeout`.
    pub fn ping(&self, ip: &str, timeout: Duration) -> bool {
        let bb = tool("busybox");
        let bb = bb.to_string_lossy();
        wait_until(timeout, || self.exec(&[&bb, "ping", "-c", "1", "-W", "1", ip]).status.success())
    }

    /// TCP server in the VM on `ip:port` (e.g. "0.0.0.0", 22): answers
    /// every connection with `"<name> peer=<ip>:<port> local=<ip>:<port>\n"`
    /// and closes. Returns once it listens; stopped on drop (of the
    /// `Server` or of this `Vm`).
    pub fn serve_tcp(&self, ip: &str, port: u16, name: &str) -> Server {
        require(PUBLIC_TOOLS, &[]);
        Server::start(self.dir.path(), self.netns(), ip, port, name, &self.servers)
    }

    /// One TCP connection from the VM: the server's line, or `None` on
    /// timeout / refusal (the reason is logged). Use >= 3 s for the first
    /// connection through a new router.
    pub fn connect_tcp(&self, ip: &str, port: u16, timeout: Duration) -> Option<String> {
        require(PUBLIC_TOOLS, &[]);
        public::tcp_connect_opt(self.dir.path(), self.netns(), ip, port, None, timeout)
    }

    /// [`Vm::connect_tcp`] with the failure reason.
    pub fn try_connect_tcp(&self, ip: &str, port: u16, timeout: Duration) -> Result<String, String> {
        require(PUBLIC_TOOLS, &[]);
        public::tcp_connect(self.dir.path(), self.netns(), ip, port, None, timeout)
    }

    /// `n` TCP connections from the VM to `ip:port`, held by the caller.
    /// Opened by a thread that `setns(2)`s into the VM's namespace (a
    /// socket stays in the namespace it was created in), so the test can
    /// play a misbehaving client byte by byte.
    pub fn tcp_streams(&self, ip: &str, port: u16, n: usize, timeout: Duration) -> Vec<std::net::TcpStream> {
        let path = format!("/run/netns/{}", self.netns());
        let addr: std::net::SocketAddr = format!("{ip}:{port}").parse().expect("socket address");
        std::thread::spawn(move || {
            let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {path}: {e}"));
            (0..n)
                .map(|i| {
                    std::net::TcpStream::connect_timeout(&addr, timeout)
                        .unwrap_or_else(|e| panic!("connection {i} to {addr}: {e}"))
                })
                .collect()
        })
        .join()
        .expect("connecting thread")
    }

    /// Unplug like libvirt on VM shutdown (`ovs-vsctl del-port`), then drop
    /// the namespace.
    pub fn unplug(self) {
        let mut c = ovs_command(self.dir.path(), "ovs-vsctl");
        c.arg(format!("--db={}", self.db_remote)).args(["--timeout=10", "--if-exists", "del-port", &self.ifname]);
        run_ok(&mut c);
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        // before `netns` is deleted: a server would keep it alive
        public::stop_helpers(&self.servers);
    }
}
