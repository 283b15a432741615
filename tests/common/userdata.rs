//! UserData test helpers shared by tests/userdata.rs and
//! tests/userdata_more.rs: CloudStack's vm_data, the keyed envelope, a VM
//! booted with its lease and the on-link metadata route, and curl from it.

use std::time::Duration;

use serde_json::{json, Value};

use super::scenario::*;
use super::{envelope, run_cs, run_cs_logged, wait_until, Agent, Central, Chassis, CsRun, Lease, Nb, Vm, ZoneKey};

pub const MAC1: &str = "02:00:4c:3e:00:05";
pub const VM_UUID: &str = "6f5d0c1e-0000-4000-8000-00000000a001";
pub const PASSWORD: &str = "Pa55-word-1";
pub const USERDATA: &str = "#cloud-config\nhostname: vm-1\nruncmd: [echo hello]\n";
pub const SSH_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE8x vm-1@test";

/// CloudStack's vm_data for a NIC, as NetworkModelImpl.generateVmData
/// builds it (Windows templates also get the MD5 of the password).
pub fn vm_data(password: Option<&str>) -> Value {
    let mut v = json!([
        {"dir": "userdata", "file": "user_data", "content": USERDATA},
        {"dir": "metadata", "file": "service-offering", "content": "Small Instance"},
        {"dir": "metadata", "file": "availability-zone", "content": "zone1"},
        {"dir": "metadata", "file": "local-hostname", "content": "vm-1"},
        {"dir": "metadata", "file": "local-ipv4", "content": "10.1.1.23"},
        {"dir": "metadata", "file": "public-hostname", "content": ""},
        {"dir": "metadata", "file": "public-ipv4", "content": ""},
        {"dir": "metadata", "file": "instance-id", "content": VM_UUID},
        {"dir": "metadata", "file": "vm-id", "content": VM_UUID},
        {"dir": "metadata", "file": "public-keys", "content": SSH_KEY},
        {"dir": "metadata", "file": "cloud-identifier", "content": "CloudStack-{8f2e}"},
        {"dir": "metadata", "file": "hypervisor-host-name", "content": "kvm-1"}
    ]);
    if let Some(pw) = password {
        let a = v.as_array_mut().unwrap();
        a.push(json!({"dir": "password", "file": "vm_password", "content": pw}));
        a.push(json!({"dir": "password", "file": "vm-password-md5checksum", "content": "5f4dcc3b5aa765d61d8327deb882cf99"}));
    }
    v
}

/// The envelope with the zone's metadata keys registered.
pub fn keyed(payload: Value, key: &ZoneKey) -> Value {
    let mut env = registered(payload);
    env["physical-network-extension-details"]["ovn.metadata.public_key"] = json!(key.public_key);
    env["physical-network-extension-details"]["ovn.metadata.digest_key"] = json!(key.digest_key);
    env
}

pub fn ud(nb: &Nb, command: &str, payload: Value, key: &ZoneKey) -> CsRun {
    ud_with(nb, command, payload, key, &[])
}

/// [`ud`] with more registration details (e.g. `ovn.sb.connection`).
pub fn ud_with(nb: &Nb, command: &str, payload: Value, key: &ZoneKey, details: &[(&str, &str)]) -> CsRun {
    let mut env = keyed(payload.clone(), key);
    for (k, v) in details {
        env["physical-network-extension-details"][*k] = json!(v);
    }
    ok(run_cs(
        &nb.remote(),
        "ensure-network-device",
        &envelope(json!({"network_id": payload["network_id"],
        "vlan": "", "zone_id": "1", "current_details": "{}"})),
    ));
    run_cs_logged(&nb.remote(), command, &env)
}

pub fn save_vm_data(nic_payload: &Value, password: Option<&str>) -> Value {
    with(nic_payload.clone(), json!({"vm_data": vm_data(password)}))
}

pub fn curl(vm: &Vm, args: &[&str]) -> (String, String) {
    let mut a = vec!["curl", "-s", "-m", "5", "-o", "-", "-w", "\n%{http_code}"];
    a.extend_from_slice(args);
    let o = vm.exec(&a);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    (body.to_string(), code.to_string())
}

pub const MD: &str = "169.254.169.254";

/// One VM with its lease and the on-link route option 121 gave it (busybox
/// udhcpc reports classless routes but the harness script applies only the
/// default route, as older clients do).
pub fn boot_vm(hv: &Chassis, tap: &str, nic: &str, mac: &str) -> (Vm, Lease) {
    boot_vm_via(hv, tap, nic, mac, "10.1.1.1")
}

/// [`boot_vm`] on a network whose gateway is `gateway`.
pub fn boot_vm_via(hv: &Chassis, tap: &str, nic: &str, mac: &str, gateway: &str) -> (Vm, Lease) {
    let vm = hv.plug_vm(tap, nic, mac);
    let lease = vm.dhcp();
    assert_eq!(lease.server_id.as_deref(), Some(MD), "DHCP server id is the metadata address: {lease:?}");
    let routes = lease.staticroutes.clone().unwrap_or_default();
    assert!(routes.contains("169.254.169.254/32 0.0.0.0"), "option 121 has the on-link route: {routes}");
    assert!(routes.contains(&format!("0.0.0.0/0 {gateway}")), "option 121 repeats the default route: {routes}");
    let o = vm.exec(&["ip", "route", "replace", "169.254.169.254/32", "dev", "eth0"]);
    assert!(o.status.success());
    (vm, lease)
}

pub fn wait_served(vm: &Vm, agent: &Agent) {
    let up = wait_until(Duration::from_secs(30), || {
        curl(vm, &[&format!("http://{MD}/latest/meta-data/instance-id")]).1 == "200"
    });
    assert!(up, "metadata never served\n--- agent log:\n{}\n{}", agent.log(), agent.out());
}

/// Network 42 with vm-1's NIC started the CloudStack way and its
/// `vm_data` (with [`PASSWORD`]) saved with these registration details;
/// the agent on `hv`; the VM booted there and served.
pub fn served_vm(central: &Central, hv: &Chassis, key: &ZoneKey, details: &[(&str, &str)]) -> (Agent, Vm) {
    saved_vm1(central.nb(), key, details);
    let agent = Agent::start(central, hv, &key.file);
    let (vm, _) = boot_vm(hv, "tap1", NIC1, MAC1);
    wait_served(&vm, &agent);
    (agent, vm)
}

/// Network 42 implemented, `vm1`'s NIC through CloudStack's start
/// sequence and its `vm_data` (with [`PASSWORD`]) saved.
pub fn saved_vm1(nb: &Nb, key: &ZoneKey, details: &[(&str, &str)]) {
    ok(cs(nb, "implement-network", network(42)));
    run_all(nb, NIC_START, &vm1(42));
    ok(ud_with(nb, "save-vm-data", save_vm_data(&vm1(42), Some(PASSWORD)), key, details).output);
}

/// One password-server request from `vm` (`DomU_Request: <ask>`): the body.
pub fn pw(vm: &Vm, ask: &str) -> String {
    curl(vm, &["-H", &format!("DomU_Request: {ask}"), &format!("http://{MD}:8080/")]).0
}

/// cloud-init's own CloudStack datasource (the Debian package), run in the
/// VM: it finds the server through OVN's `data-server` record, crawls the
/// metadata and fetches (and acknowledges) the password.
pub const CLOUD_INIT: &str = r#"
import json, sys, tempfile
sys.path.insert(0, "/usr/lib/python3/dist-packages")
from cloudinit import helpers
from cloudinit.sources import DataSourceCloudStack as cs
tmp = tempfile.mkdtemp()
paths = helpers.Paths({"cloud_dir": tmp, "run_dir": tmp})
cfg = {"datasource": {"CloudStack": {"max_wait": 30, "timeout": 5}}}
ds = cs.DataSourceCloudStack(cfg, None, paths)
ok = ds._get_data()
ud = ds.userdata_raw
if isinstance(ud, bytes):
    ud = ud.decode()
print(json.dumps({"ok": ok, "server": ds.vr_addr, "data_server": cs.get_data_server(),
    "userdata": ud, "instance_id": ds.get_instance_id(), "hostname": ds.metadata.get("local-hostname"),
    "keys": ds.get_public_ssh_keys(), "password": ds.get_config_obj().get("password"),
    "second_password": cs.CloudStackPasswordServerClient(ds.vr_addr).get_password()}))
"#;

/// Run cloud-init's CloudStack datasource ([`CLOUD_INIT`]) in `vm` with
/// the resolver its lease names; returns the script's JSON report.
pub fn cloud_init(vm: &Vm, lease: &Lease, agent: &Agent) -> Value {
    // The guest resolver as a DHCP client would set it up from the lease.
    let dir = std::path::PathBuf::from("/etc/netns").join(vm.netns());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("resolv.conf"),
        format!(
            "nameserver {}\nsearch {}\noptions timeout:1 attempts:1\n",
            lease.dns[0],
            lease.domain.as_deref().unwrap_or("cs.example")
        ),
    )
    .unwrap();
    let script = std::env::temp_dir().join(format!("csovn-cloudinit-{}.py", vm.netns()));
    std::fs::write(&script, CLOUD_INIT).unwrap();
    // The lease's resolver (e.g. 10.1.1.53) is held by nothing: give it a
    // neighbour entry so the query leaves the VM. OVN answers UDP/53 for
    // its records before the L2 lookup.
    let neigh = vm.exec(&["ip", "neigh", "replace", &lease.dns[0], "lladdr", "02:00:00:00:00:53", "dev", "eth0"]);
    assert!(neigh.status.success());
    let o = vm.exec(&["/usr/bin/python3", script.to_str().unwrap()]);
    let _ = std::fs::remove_file(&script);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = out.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|_| {
        panic!("cloud-init failed:\n{out}\n{}\n--- agent:\n{}", String::from_utf8_lossy(&o.stderr), agent.log())
    })
}
