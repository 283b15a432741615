//! UserData on OVN (docs/metadata.md): the save-* commands seal VM data
//! into the NB, and the host agent serves it to real VMs (namespaces on a
//! userspace-datapath chassis) over the metadata localport, in the virtual
//! router's layout and password protocol, to curl, wget and cloud-init's
//! own CloudStack datasource.

// The measured numbers go to the test output for docs/performance.md.
#![allow(clippy::print_stderr)]

mod common;

use std::time::Duration;

use common::scenario::*;
use common::userdata::*;
use common::*;
use serde_json::{json, Value};

#[test]
fn vm_gets_its_data_and_password_once_from_the_host_agent() {
    let central = Central::start();
    let hv = Chassis::start(&central, "hv1");
    let nb = central.nb();
    let key = ZoneKey::generate();
    ok(cs(nb, "implement-network", network(42)));
    run_all(nb, NIC_START, &vm1(42));
    let saved = ud(nb, "save-vm-data", save_vm_data(&vm1(42), Some(PASSWORD)), &key);
    ok(saved.output);
    let agent = Agent::start(&central, &hv, &key.file);
    let (vm, _lease) = boot_vm(&hv, "tap1", NIC1, MAC1);
    wait_served(&vm, &agent);

    let get = |path: &str| curl(&vm, &[&format!("http://{MD}{path}")]);
    assert_eq!(get("/latest/meta-data/instance-id"), (VM_UUID.to_string(), "200".into()));
    assert_eq!(get("/latest/user-data"), (USERDATA.to_string(), "200".into()));
    assert_eq!(get("/latest/public-keys"), (SSH_KEY.to_string(), "200".into()));
    assert_eq!(get("/latest/meta-data/local-hostname").0, "vm-1");
    let listing = get("/latest/meta-data/").0;
    for f in ["instance-id", "local-hostname", "public-keys", "service-offering", "availability-zone"] {
        assert!(listing.lines().any(|l| l == f), "{f} not listed:\n{listing}");
    }
    assert!(!listing.contains("password") && !listing.contains("public-ipv4"), "{listing}");
    assert_eq!(get("/latest/meta-data/nope").1, "404");

    // The password server, the VR's protocol.
    let pw = |h: &str| curl(&vm, &["-H", &format!("DomU_Request: {h}"), &format!("http://{MD}:8080/")]);
    assert_eq!(curl(&vm, &[&format!("http://{MD}:8080/")]), ("bad_request".to_string(), "400".into()));
    assert_eq!(pw("send_my_password").0, PASSWORD);
    assert_eq!(pw("send_my_password").0, PASSWORD, "served until acknowledged");
    assert_eq!(pw("saved_password").0, "saved_password");
    assert_eq!(pw("send_my_password").0, "saved_password", "once acknowledged, never again");
    let ack = central.sbctl(&["get", "Chassis_Private", "hv1", "external_ids"]);
    assert!(ack.contains(&format!("cloudstack-ovn:pw-ack:{NIC1}")), "{ack}");
    assert!(ack.contains("cloudstack-ovn:md-agent"), "liveness: {ack}");

    // A password reset is served once more.
    let reset = with(vm1(42), json!({"password": "N3w-pass"}));
    ok(ud(nb, "save-password", reset.clone(), &key).output);
    // Within 3 s: the NB monitor wakes the agent (its full re-read runs
    // only every 10 s).
    let served = wait_until(Duration::from_secs(3), || pw("send_my_password").0 == "N3w-pass");
    assert!(served, "the reset password was not served within 3 s\n{}", agent.log());
    assert_eq!(pw("saved_password").0, "saved_password");
    assert_eq!(pw("send_my_password").0, "saved_password");

    // The network's egress firewall (default deny, as CloudStack offers it)
    // does not cut VMs off their metadata: the VR answered it from itself.
    let fw = with(
        network(42),
        json!({"fw_rules": {"default_egress_allow": false, "cidr": "10.1.1.0/24", "rules": [
            {"id": 9, "type": "egress", "protocol": "tcp", "portStart": 80, "portEnd": 80,
             "sourceCidrs": ["10.1.1.0/24"], "destCidrs": ["192.0.2.0/24"]}]}}),
    );
    ok(cs(nb, "apply-fw-rules", fw));
    central.sync();
    let still = wait_until(Duration::from_secs(5), || get("/latest/meta-data/instance-id").1 == "200");
    assert!(still, "egress default deny blocks the metadata service");
    assert_eq!(pw("send_my_password").0, "saved_password", "and the password server");

    // The per-source rate limit (20/s, burst 40): a burst of 60 is cut.
    let o = vm.exec(&[
        "sh",
        "-c",
        &format!(
            "for i in $(seq 60); do curl -s -m 2 -o /dev/null -w '%{{http_code}}\\n' http://{MD}/latest/meta-data/vm-id; done"
        ),
    ]);
    let codes = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(codes.lines().any(|c| c == "200") && codes.lines().any(|c| c == "429"), "{codes}");
    std::thread::sleep(Duration::from_secs(3));

    // Not a timed test: the numbers go to docs/performance.md. Paced under
    // the rate limit.
    let before = agent.log().lines().count();
    let o = vm.exec(&[
        "sh",
        "-c",
        &format!(
            "timeout 50 sh -c 'for i in $(seq 100); do curl -s -m 2 -o /dev/null -w \"%{{http_code}}\\n\" http://{MD}/latest/meta-data/instance-id; sleep 0.05; done'"
        ),
    ]);
    // Bounded: once, under the whole suite's load on 2 cores, requests
    // timed out and the loop ran past the harness's 60 s (cause not
    // established; docs/metadata.md). Every answer must still be a 200
    // (paced under the rate limit) and most requests must be answered.
    let codes = String::from_utf8_lossy(&o.stdout).into_owned();
    let answered = codes.lines().filter(|c| *c == "200").count();
    assert!(codes.lines().all(|c| c == "200" || c == "000"), "{codes}");
    if answered < 50 {
        // Rare (docs/metadata.md, "Known limits"): say whether the agent saw
        // the requests at all, and what the data path held, so a recurrence
        // can be placed.
        let log = agent.log();
        let seen = log.lines().skip(before).filter(|l| l.contains("msg=request")).count();
        let tail: Vec<&str> = log.lines().skip(before).filter(|l| !l.contains("msg=request")).collect();
        panic!(
            "only {answered} of 100 paced requests answered ({seen} logged by the agent): {codes}\n\
             --- agent log since, requests left out:\n{}\n--- vswitchd conntrack:\n{}\n--- vswitchd log:\n{}",
            tail.join("\n"),
            hv.appctl_vswitchd(&["dpctl/dump-conntrack"]),
            std::fs::read_to_string(hv.vswitchd_log()).unwrap_or_default(),
        );
    }
    let mut lat: Vec<f64> = agent
        .log()
        .lines()
        .skip(before)
        .filter(|l| l.contains("msg=request"))
        .filter_map(|l| l.split("latency_ms=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert!(lat.len() >= answered, "{} requests logged, {answered} answered", lat.len());
    eprintln!(
        "[bench] 100 sequential requests: server p50 {:.3} ms, p99 {:.3} ms",
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100],
    );
    let rss = agent.rss_kb().expect("agent RSS");
    assert!(rss < 32 * 1024, "agent RSS {rss} KiB (target ≤ 32 MB)");
    eprintln!("[bench] agent RSS {rss} KiB");

    // Nothing secret in NB, SB (all of both, `ovsdb-client dump`) or the
    // logs; the dump does hold the sealed rows.
    let dump = central.dump_both();
    assert!(dump.contains("s1:") && dump.contains("pw-ack"), "the dump misses the sealed rows or the ack:\n{dump}");
    for secret in [PASSWORD, "N3w-pass", "hello", "runcmd"] {
        assert!(!dump.contains(secret), "NB or SB holds {secret}");
        assert!(!agent.log().contains(secret), "agent log holds {secret}");
        assert!(!saved.log.contains(secret), "command log holds {secret}");
    }
    assert!(!dump.contains("5f4dcc3b5aa765d61d8327deb882cf99"), "the MD5 is never stored");
}

#[test]
fn cloud_init_datasource_gets_user_data_instance_id_hostname_key_and_password() {
    let central = Central::start();
    let hv = Chassis::start(&central, "hv1");
    let nb = central.nb();
    let key = ZoneKey::generate();
    saved_vm1(nb, &key, &[]);
    let records = central.nbctl(&["--bare", "--columns=records", "list", "DNS"]);
    assert!(records.contains("data-server=") || records.contains("\"data-server\""), "{records}");
    assert!(records.contains("data-server.cs.example"), "{records}");
    let agent = Agent::start(&central, &hv, &key.file);
    let (vm, lease) = boot_vm(&hv, "tap1", NIC1, MAC1);
    wait_served(&vm, &agent);
    let r = cloud_init(&vm, &lease, &agent);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["data_server"], MD, "found through OVN's data-server record: {r}");
    assert_eq!(r["server"], MD, "{r}");
    assert_eq!(r["userdata"], USERDATA, "{r}");
    assert_eq!(r["instance_id"], VM_UUID, "{r}");
    assert_eq!(r["hostname"], "vm-1", "{r}");
    assert_eq!(r["keys"], json!([SSH_KEY]), "{r}");
    assert_eq!(r["password"], PASSWORD, "{r}");
    assert_eq!(r["second_password"], Value::Null, "acknowledged: not served again: {r}");
}

fn vm_row(nb: &Nb, nic: &str) -> Option<std::collections::BTreeMap<String, String>> {
    let uuid = cloudstack_ovn::metadata::row_uuid(&cloudstack_ovn::nb::Owner("cloudstack".into()), nic).to_string();
    let rows = nb.transact(&[json!({"op": "select", "table": "DNS", "where": [["_uuid", "==", ["uuid", uuid]]]})]);
    let row = rows[0]["rows"].as_array()?.first()?.clone();
    Some(
        row["external_ids"][1]
            .as_array()?
            .iter()
            .map(|p| (p[0].as_str().unwrap().into(), p[1].as_str().unwrap().into()))
            .collect(),
    )
}

/// Run a UserData command twice: the second run must plan no write.
#[track_caller]
fn ud_twice(nb: &Nb, command: &str, payload: Value, key: &ZoneKey) {
    ok(ud(nb, command, payload.clone(), key).output);
    let snap = nb.snapshot();
    let second = ud(nb, command, payload, key);
    ok(second.output);
    assert_eq!(snap, nb.snapshot(), "{command}: second run changed the NB");
    assert!(
        second.log.lines().any(|l| l.contains(&format!("command={command} ")) && l.contains(" rows_changed=0 ")),
        "{command}: the second run planned a write:\n{}",
        second.log
    );
}

#[test]
fn every_userdata_command_twice_writes_nothing_and_stores_no_secret() {
    let nb = Nb::start();
    let key = ZoneKey::generate();
    ok(cs(&nb, "implement-network", network(42)));
    run_all(&nb, NIC_START, &vm1(42));
    ud_twice(&nb, "save-vm-data", save_vm_data(&vm1(42), Some(PASSWORD)), &key);
    let row = vm_row(&nb, NIC1).expect("vm-data row");
    assert_eq!(row["md:instance-id"], VM_UUID);
    assert_eq!(row["cloudstack:kind"], "vm-data");
    assert!(row["pw"].starts_with("s1:") && row["ud"].starts_with("s1:"), "{row:?}");
    assert!(!row.keys().any(|k| k.contains("md5")) && !row.contains_key("md:public-ipv4"), "{row:?}");
    let gen = row["pw-gen"].clone();
    ud_twice(&nb, "save-password", with(vm1(42), json!({"password": PASSWORD})), &key);
    assert_eq!(vm_row(&nb, NIC1).unwrap()["pw-gen"], gen, "the same password keeps its generation");
    ud_twice(&nb, "save-password", with(vm1(42), json!({"password": "0ther-Secret-9"})), &key);
    assert_ne!(vm_row(&nb, NIC1).unwrap()["pw-gen"], gen, "a new password gets a new generation");
    ud_twice(&nb, "save-userdata", with(vm1(42), json!({"userdata": "#!/bin/sh\necho new\n"})), &key);
    ud_twice(&nb, "save-sshkey", with(vm1(42), json!({"sshkey": "ssh-rsa AAAB new"})), &key);
    ud_twice(&nb, "save-hypervisor-hostname", with(vm1(42), json!({"hypervisor_hostname": "kvm-2"})), &key);
    let row = vm_row(&nb, NIC1).unwrap();
    assert_eq!(row["md:public-keys"], "ssh-rsa AAAB new");
    assert_eq!(row["md:hypervisor-host-name"], "kvm-2");
    // The network's side: localport, DHCP server id and option 121.
    assert_eq!(nb.nbctl(&["get", "Logical_Switch_Port", "cs-md-42", "type"]), "localport");
    let addrs = nb.nbctl(&["get", "Logical_Switch_Port", "cs-md-42", "addresses"]);
    assert!(addrs.contains("169.254.169.254") && !addrs.contains("10.1.1.1"), "{addrs}");
    let opts = nb.nbctl(&["--bare", "--columns=options", "list", "DHCP_Options"]);
    assert!(opts.contains("server_id=169.254.169.254"), "{opts}");
    assert!(opts.contains("classless_static_route={169.254.169.254/32,0.0.0.0, 0.0.0.0/0,10.1.1.1}"), "{opts}");
    // CloudStack's NIC sequence re-run for the next VM start keeps it all.
    for c in NIC_START {
        twice(&nb, c, vm1(42));
    }
    let dump = format!("{}", nb.snapshot());
    for secret in [PASSWORD, "0ther-Secret-9", "echo new", "hello"] {
        assert!(!dump.contains(secret), "NB holds {secret}");
    }
}

#[test]
fn legacy_flag_style_with_base64_vm_data_file() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let nb = Nb::start();
    let key = ZoneKey::generate();
    ok(cs(&nb, "implement-network", network(42)));
    run_all(&nb, NIC_START, &vm1(42));
    let data = json!([
        {"dir": "userdata", "file": "user_data", "content": b64(USERDATA)},
        {"dir": "metadata", "file": "instance-id", "content": b64(VM_UUID)},
        {"dir": "metadata", "file": "local-hostname", "content": "vm-1"},
        {"dir": "password", "file": "vm_password", "content": PASSWORD}
    ]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vm-data");
    std::fs::write(&file, b64(&data.to_string())).unwrap();
    let details =
        json!({"ovn.metadata.public_key": key.public_key, "ovn.metadata.digest_key": key.digest_key}).to_string();
    let args = [
        "--network-id",
        "42",
        "--ip",
        "10.1.1.23",
        "--gateway",
        "10.1.1.1",
        "--extension-ip",
        "10.1.1.1",
        "--vm-data-file",
        file.to_str().unwrap(),
        "--nic-uuid",
        NIC1,
        "--physical-network-extension-details",
        &details,
    ];
    ok(run_cs_flags(&nb.remote(), "save-vm-data", &args));
    let snap = nb.snapshot();
    ok(run_cs_flags(&nb.remote(), "save-vm-data", &args));
    assert_eq!(snap, nb.snapshot(), "second legacy run changed the NB");
    let row = vm_row(&nb, NIC1).unwrap();
    assert_eq!(row["md:instance-id"], VM_UUID);
    assert_eq!(row["md:local-hostname"], "vm-1");
    let pw = [
        "--network-id",
        "42",
        "--nic-uuid",
        NIC1,
        "--password",
        "Legacy-pw",
        "--physical-network-extension-details",
        &details,
    ];
    ok(run_cs_flags(&nb.remote(), "save-password", &pw));
    let ssh = b64("ssh-ed25519 AAAA legacy");
    let k =
        ["--network-id", "42", "--nic-uuid", NIC1, "--sshkey", &ssh, "--physical-network-extension-details", &details];
    ok(run_cs_flags(&nb.remote(), "save-sshkey", &k));
    assert_eq!(vm_row(&nb, NIC1).unwrap()["md:public-keys"], "ssh-ed25519 AAAA legacy");
    let h = [
        "--network-id",
        "42",
        "--nic-uuid",
        NIC1,
        "--hypervisor-hostname",
        "kvm-9",
        "--physical-network-extension-details",
        &details,
    ];
    ok(run_cs_flags(&nb.remote(), "save-hypervisor-hostname", &h));
    assert_eq!(vm_row(&nb, NIC1).unwrap()["md:hypervisor-host-name"], "kvm-9");
    assert!(!format!("{}", nb.snapshot()).contains("Legacy-pw"));
}

#[test]
fn bad_input_and_missing_key_fail_cleanly_and_change_nothing() {
    let nb = Nb::start();
    let key = ZoneKey::generate();
    ok(cs(&nb, "implement-network", network(42)));
    run_all(&nb, NIC_START, &vm1(42));
    let before = nb.snapshot();
    let bad = with(vm1(42), json!({"vm_data": [{"dir": "metadata", "file": "../etc", "content": "x"}]}));
    let msg = fails(ud(&nb, "save-vm-data", bad, &key).output, 2);
    assert!(msg.contains("metadata file"), "{msg}");
    let bad = with(vm1(42), json!({"vm_data": "%%% not json"}));
    fails(ud(&nb, "save-vm-data", bad, &key).output, 2);
    let big = "x".repeat(64 * 1024 + 1);
    let msg = fails(ud(&nb, "save-userdata", with(vm1(42), json!({"userdata": big})), &key).output, 2);
    assert!(msg.contains("ovn.metadata.userdata_max_bytes"), "{msg}");
    // Without the key, a clear configuration error naming the detail.
    let msg = fails(cs(&nb, "save-vm-data", save_vm_data(&vm1(42), Some(PASSWORD))), 3);
    assert!(msg.contains("ovn.metadata.public_key"), "{msg}");
    let msg = fails(cs(&nb, "save-password", with(vm1(42), json!({"password": "x"}))), 3);
    assert!(msg.contains("ovn.metadata.public_key"), "{msg}");
    assert_eq!(before, nb.snapshot(), "failed commands changed the NB");
}

#[test]
fn release_destroy_and_restore() {
    let nb = Nb::start();
    let key = ZoneKey::generate();
    let vm2 = nic(42, NIC2, "02:00:4c:3e:00:06", "10.1.1.24", "vm-2", true);
    ok(cs(&nb, "implement-network", network(42)));
    for p in [&vm1(42), &vm2] {
        run_all(&nb, NIC_START, p);
        ok(ud(&nb, "save-vm-data", save_vm_data(p, Some(PASSWORD)), &key).output);
    }
    let gen = vm_row(&nb, NIC1).unwrap()["pw-gen"].clone();
    // restore-network: vm_data never has the password; the stored one stays.
    let mut data = vm_data(None);
    data[2]["content"] = json!("zone2");
    let restore = with(
        network(42),
        json!({"dns": "10.1.1.53", "domain": "cs.example", "restore_data": {"dhcp_enabled": true, "dns_enabled": true,
            "userdata_enabled": true, "vms": [{"nic_uuid": NIC1, "mac": MAC1, "ip": "10.1.1.23", "hostname": "vm-1",
            "default_nic": true, "dns": "10.1.1.53", "domain": "cs.example", "vm_data": data}]}}),
    );
    ud_twice(&nb, "restore-network", restore, &key);
    let row = vm_row(&nb, NIC1).unwrap();
    assert_eq!(row["md:availability-zone"], "zone2");
    assert_eq!(row["pw-gen"], gen, "restore keeps the password");
    assert!(row.contains_key("pw"));
    // NIC2 is no longer listed: restore deletes its row (the second run of
    // ud_twice wrote nothing, so the deletion is idempotent too).
    assert!(vm_row(&nb, NIC2).is_none(), "restore-network deletes the rows of NICs it no longer lists");
    ok(ud(&nb, "save-vm-data", save_vm_data(&vm2, Some(PASSWORD)), &key).output);
    // release-nic removes the NIC's row; destroy-network everything else.
    twice(&nb, "release-nic", vm1(42));
    assert!(vm_row(&nb, NIC1).is_none());
    assert!(vm_row(&nb, NIC2).is_some());
    twice(&nb, "destroy-network", network(42));
    assert!(vm_row(&nb, NIC2).is_none(), "destroy-network leaves no vm-data row");
    assert_eq!(owned_rows(&nb), 0, "destroy-network leaves no row of ours");
    assert!(!nb.nbctl_result(&["get", "Logical_Switch_Port", "cs-md-42", "type"]).status.success());
}

#[test]
fn two_networks_isolated_spoofing_gets_nothing_restart_keeps_acks_release_tears_down() {
    const OTHER: &str = "6f5d0c1e-0000-4000-8000-00000000b002";
    let central = Central::start();
    let hv = Chassis::start(&central, "hv1");
    let nb = central.nb();
    let key = ZoneKey::generate();
    let vm_b = nic(43, NIC2, "02:00:4c:3e:00:07", "10.1.1.33", "vm-b", true);
    for (net, p) in [(42, vm1(42)), (43, vm_b.clone())] {
        ok(cs(nb, "implement-network", network(net)));
        run_all(nb, NIC_START, &p);
    }
    ok(ud(nb, "save-vm-data", save_vm_data(&vm1(42), Some(PASSWORD)), &key).output);
    let mut data = vm_data(None);
    data[7]["content"] = json!(OTHER);
    ok(ud(nb, "save-vm-data", with(vm_b.clone(), json!({"vm_data": data})), &key).output);
    let mut agent = Agent::start(&central, &hv, &key.file);
    let (a, _) = boot_vm(&hv, "tap1", NIC1, MAC1);
    let (b, _) = boot_vm(&hv, "tap2", NIC2, "02:00:4c:3e:00:07");
    wait_served(&a, &agent);
    wait_served(&b, &agent);
    let id = |vm: &Vm| curl(vm, &[&format!("http://{MD}/latest/meta-data/instance-id")]).0;
    assert_eq!(id(&a), VM_UUID);
    assert_eq!(id(&b), OTHER, "each network's namespace answers for its own VMs");
    let pw = |vm: &Vm, h: &str| curl(vm, &["-H", &format!("DomU_Request: {h}"), &format!("http://{MD}:8080/")]).0;
    assert_eq!(pw(&b, "send_my_password"), "saved_password", "no password for vm-b");
    assert_eq!(pw(&a, "send_my_password"), PASSWORD);
    assert_eq!(pw(&a, "saved_password"), "saved_password");
    assert_eq!(agent.namespaces().len(), 2, "{:?}", agent.namespaces());

    // The agent restarts: stale namespaces go, new ones come, the ack holds.
    agent.restart();
    let back = wait_until(Duration::from_secs(30), || {
        curl(&a, &[&format!("http://{MD}/latest/meta-data/instance-id")]).0 == VM_UUID
    });
    assert!(back, "not served after restart:\n{}", agent.log());
    assert!(agent.log().contains("removing stale metadata namespace"), "{}", agent.log());
    assert_eq!(pw(&a, "send_my_password"), "saved_password", "the acknowledgement survives a restart");

    // vm-a pretends to be another address: port security drops it.
    for cmd in [
        &["ip", "addr", "flush", "dev", "eth0"][..],
        &["ip", "addr", "add", "10.1.1.24/24", "dev", "eth0"],
        &["ip", "route", "replace", "169.254.169.254/32", "dev", "eth0"],
    ] {
        assert!(a.exec(cmd).status.success());
    }
    let (body, code) = curl(&a, &["-m", "3", &format!("http://{MD}/latest/meta-data/instance-id")]);
    assert_ne!(code, "200", "spoofed source got an answer: {body}");
    assert!(!agent.log().contains("src=10.1.1.24"), "a spoofed request reached the agent");

    // The network's last VM goes: after the grace period its namespace too.
    for c in NIC_STOP {
        ok(cs(nb, c, vm1(42)));
    }
    a.unplug();
    let gone = wait_until(Duration::from_secs(20), || !agent.namespaces().contains(&agent.netns(42)));
    assert!(gone, "namespace of network 42 left behind: {:?}\n{}", agent.namespaces(), agent.log());
    assert!(agent.namespaces().contains(&agent.netns(43)));
    let ports = hv.vsctl(&["list-ports", "br-int"]);
    assert_eq!(ports.lines().filter(|p| p.starts_with("csm")).count(), 1, "one metadata port left: {ports}");
    assert_eq!(id(&b), OTHER);
}

#[test]
fn nb_and_sb_restart_under_the_agent_lose_nothing() {
    let mut central = Central::start();
    let hv = Chassis::start(&central, "hv1");
    let key = ZoneKey::generate();
    let (agent, vm) = served_vm(&central, &hv, &key, &[]);
    let pw = |h: &str| pw(&vm, h);
    assert_eq!(pw("send_my_password"), PASSWORD);
    assert_eq!(pw("saved_password"), "saved_password");

    central.restart_databases(Duration::from_secs(2));
    // While the agent reconnects it keeps serving what it knows.
    assert_eq!(curl(&vm, &[&format!("http://{MD}/latest/meta-data/instance-id")]).0, VM_UUID);
    assert_eq!(pw("send_my_password"), "saved_password", "the acknowledgement survives the restart");
    // A change made after the restart reaches the VM: the agent resynced.
    ok(ud(central.nb(), "save-password", with(vm1(42), json!({"password": "After-restart-1"})), &key).output);
    let served = wait_until(Duration::from_secs(30), || pw("send_my_password") == "After-restart-1");
    assert!(served, "agent did not resync after the restart:\n{}", agent.log());
    assert!(agent.log().contains("OVN databases reachable again"), "{}", agent.log());
}

#[test]
fn migration_to_another_chassis_keeps_the_password_acknowledged() {
    let central = Central::start();
    let hv1 = Chassis::start(&central, "hv1");
    let hv2 = Chassis::start(&central, "hv2");
    let nb = central.nb();
    let key = ZoneKey::generate();
    saved_vm1(nb, &key, &[]);
    let agent1 = Agent::start(&central, &hv1, &key.file);
    let agent2 = Agent::start(&central, &hv2, &key.file);
    let (vm, _) = boot_vm(&hv1, "tap1", NIC1, MAC1);
    wait_served(&vm, &agent1);
    let pw = |vm: &Vm, h: &str| curl(vm, &["-H", &format!("DomU_Request: {h}"), &format!("http://{MD}:8080/")]).0;
    assert_eq!(pw(&vm, "send_my_password"), PASSWORD);
    assert_eq!(pw(&vm, "saved_password"), "saved_password");
    assert!(agent2.namespaces().is_empty(), "hv2 has no VM of network 42 yet");

    // Live migration: the port moves to hv2 (re-plugged there).
    vm.unplug();
    let (vm, _) = boot_vm(&hv2, "tap1", NIC1, MAC1);
    wait_served(&vm, &agent2);
    assert_eq!(curl(&vm, &[&format!("http://{MD}/latest/meta-data/instance-id")]).0, VM_UUID);
    assert_eq!(pw(&vm, "send_my_password"), "saved_password", "hv1's acknowledgement is honoured on hv2");
    let gone = wait_until(Duration::from_secs(20), || agent1.namespaces().is_empty());
    assert!(gone, "hv1 kept its namespace: {:?}\n{}", agent1.namespaces(), agent1.log());
}

const DROP_WARNING: &str = "cannot tell whether passwords were acknowledged";

/// The agent's ack of `nic` in SB (`Chassis_Private` of `chassis`), if any.
fn sb_ack(central: &Central, chassis: &str, nic: &str) -> Option<String> {
    let ids = central.sbctl(&["get", "Chassis_Private", chassis, "external_ids"]);
    sb_ids(&ids).remove(&format!("cloudstack-ovn:pw-ack:{nic}"))
}

/// `ovn-sbctl get ... external_ids` output (`{k=v, "k:x"="v"}`) as a map.
fn sb_ids(text: &str) -> std::collections::BTreeMap<String, String> {
    let inner = text.trim().trim_start_matches('{').trim_end_matches('}');
    inner
        .split(", ")
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.trim_matches('"').to_string(), v.trim_matches('"').to_string()))
        })
        .collect()
}

/// The agent's state file, as NIC → acknowledged generation.
fn file_acks(agent: &Agent) -> std::collections::BTreeMap<String, String> {
    std::fs::read(agent.ack_file()).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

#[test]
fn acknowledged_password_is_dropped_from_nb_by_the_next_command() {
    let central = Central::start();
    let hv = Chassis::start(&central, "hv1");
    let nb = central.nb();
    let key = ZoneKey::generate();
    let sb = central.sb_remote();
    let with_sb = [("ovn.sb.connection", sb.as_str())];
    let sshkey = |k: &str| with(vm1(42), json!({"sshkey": format!("ssh-ed25519 AAAA {k}")}));
    let (agent, vm) = served_vm(&central, &hv, &key, &with_sb);
    let pw = |h: &str| pw(&vm, h);

    // Not acknowledged yet: a command with the SB keeps the password.
    let r = ud_with(nb, "save-sshkey", sshkey("k1"), &key, &with_sb);
    ok(r.output);
    assert!(vm_row(nb, NIC1).unwrap().contains_key("pw"), "dropped before any ack");
    assert!(!r.log.contains(DROP_WARNING), "{}", r.log);
    assert_eq!(pw("send_my_password"), PASSWORD);
    assert_eq!(pw("saved_password"), "saved_password");
    let gen = vm_row(nb, NIC1).unwrap()["pw-gen"].clone();
    assert_eq!(sb_ack(&central, "hv1", NIC1).as_deref(), Some(gen.as_str()));

    // Acknowledged, but the SB is not configured, then unreachable: the
    // password stays, the command succeeds, one warning.
    // An SB that accepts and never answers costs at most 5 s of the
    // command's deadline (60 s here), and the write still happens.
    let silent = SilentPeer::start();
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[], "no SB configured"),
        (&[("ovn.sb.connection", "unix:/nonexistent/sb.sock")], "SB unreachable"),
        (&[("ovn.sb.connection", silent.remote())], "SB silent"),
    ];
    for (i, (details, what)) in cases.into_iter().enumerate() {
        let r = ud_with(nb, "save-sshkey", sshkey(&format!("k2-{i}")), &key, details);
        ok(r.output);
        let row = vm_row(nb, NIC1).unwrap();
        assert!(row.contains_key("pw"), "{what}: the password must stay");
        assert_eq!(row["md:public-keys"], format!("ssh-ed25519 AAAA k2-{i}"), "{what}: the command's own change");
        let warnings = r.log.lines().filter(|l| l.contains(DROP_WARNING)).count();
        assert_eq!(warnings, 1, "{what}: one warning:\n{}", r.log);
        assert!(r.took < Duration::from_secs(10), "{what}: took {:?}", r.took);
    }

    // With the SB: the next command (any, here save-sshkey) drops `pw` and
    // `pw-gen`, keeps the digest; run again, it writes nothing.
    let r = ud_with(nb, "save-sshkey", sshkey("k3"), &key, &with_sb);
    ok(r.output);
    let row = vm_row(nb, NIC1).unwrap();
    assert!(!row.contains_key("pw") && !row.contains_key("pw-gen"), "{row:?}");
    assert!(row.contains_key("pw-d"), "the digest stays: {row:?}");
    assert_eq!(row["md:public-keys"], "ssh-ed25519 AAAA k3");
    let snap = nb.snapshot();
    let r = ud_with(nb, "save-sshkey", sshkey("k3"), &key, &with_sb);
    ok(r.output);
    assert_eq!(snap, nb.snapshot(), "second run after the drop changed the NB");

    // The same password saved again writes nothing and is not served.
    let r = ud_with(nb, "save-password", with(vm1(42), json!({"password": PASSWORD})), &key, &with_sb);
    ok(r.output);
    assert_eq!(snap, nb.snapshot(), "the acknowledged password saved again changed the NB:\n{}", r.log);
    ok(ud_with(nb, "save-vm-data", save_vm_data(&vm1(42), Some(PASSWORD)), &key, &with_sb).output);
    let row = vm_row(nb, NIC1).unwrap();
    assert!(!row.contains_key("pw") && row["md:public-keys"] == SSH_KEY, "{row:?}");
    // Once the agent has that row (the key is back), it has no password.
    let seen =
        wait_until(Duration::from_secs(15), || curl(&vm, &[&format!("http://{MD}/latest/public-keys")]).0 == SSH_KEY);
    assert!(seen, "agent never saw the new row\n{}", agent.log());
    assert_eq!(pw("send_my_password"), "saved_password", "digest only: no password");

    // A new password: a new generation, served once, then dropped by the
    // next command.
    ok(ud_with(nb, "save-password", with(vm1(42), json!({"password": "N3w-pass"})), &key, &with_sb).output);
    let row = vm_row(nb, NIC1).unwrap();
    assert!(row.contains_key("pw") && row["pw-gen"] != gen, "{row:?}");
    let served = wait_until(Duration::from_secs(15), || pw("send_my_password") == "N3w-pass");
    assert!(served, "the new password was not served\n{}", agent.log());
    assert_eq!(pw("saved_password"), "saved_password");
    assert_eq!(pw("send_my_password"), "saved_password");
    let h = with(vm1(42), json!({"hypervisor_hostname": "kvm-2"}));
    ok(ud_with(nb, "save-hypervisor-hostname", h, &key, &with_sb).output);
    let row = vm_row(nb, NIC1).unwrap();
    assert!(!row.contains_key("pw") && !row.contains_key("pw-gen") && row.contains_key("pw-d"), "{row:?}");
    assert!(!format!("{}", nb.snapshot()).contains("N3w-pass"));
}

#[test]
fn agent_prunes_its_ack_once_the_password_is_dropped_or_replaced() {
    let central = Central::start();
    let hv = Chassis::start(&central, "hv1");
    let nb = central.nb();
    let key = ZoneKey::generate();
    let sb = central.sb_remote();
    let with_sb = [("ovn.sb.connection", sb.as_str())];
    let (mut agent, vm) = served_vm(&central, &hv, &key, &[]);
    let pw = |h: &str| pw(&vm, h);
    // Served and acknowledged: the ack is in SB and in the state file.
    let serve_and_ack = |agent: &Agent, password: &str| {
        let served = wait_until(Duration::from_secs(30), || pw("send_my_password") == password);
        assert!(served, "{password} not served\n{}", agent.log());
        assert_eq!(pw("saved_password"), "saved_password");
        let gen = vm_row(nb, NIC1).unwrap()["pw-gen"].clone();
        assert_eq!(sb_ack(&central, "hv1", NIC1), Some(gen.clone()), "ack in SB");
        assert_eq!(file_acks(agent).get(NIC1), Some(&gen), "ack in the state file");
        gen
    };
    let pruned = |agent: &Agent, nic: &str| {
        wait_until(Duration::from_secs(15), || {
            sb_ack(&central, "hv1", nic).is_none() && !file_acks(agent).contains_key(nic)
        })
    };
    // Keys the agent does not own stay, whatever it prunes.
    central.sbctl(&["set", "Chassis_Private", "hv1", "external_ids:other-tool=keep"]);
    let foreign_kept = || {
        let ids = sb_ids(&central.sbctl(&["get", "Chassis_Private", "hv1", "external_ids"]));
        ids.get("other-tool").map(String::as_str) == Some("keep") && ids.contains_key("cloudstack-ovn:md-agent")
    };
    let g1 = serve_and_ack(&agent, PASSWORD);

    // Replaced (a new password, saved without the SB: nothing dropped):
    // the ack of the old generation goes.
    ok(ud(nb, "save-password", with(vm1(42), json!({"password": "N3w-pass"})), &key).output);
    assert!(pruned(&agent, NIC1), "ack of replaced generation {g1} kept\n{}", agent.log());
    assert!(foreign_kept(), "a key the agent does not own was touched");
    assert!(agent.log().contains("password acknowledgement pruned"), "{}", agent.log());

    // Dropped: the new one is acknowledged, the next command (with the
    // SB) takes it out of the NB, the agent forgets its ack.
    serve_and_ack(&agent, "N3w-pass");
    let h = with(vm1(42), json!({"hypervisor_hostname": "kvm-2"}));
    ok(ud_with(nb, "save-hypervisor-hostname", h, &key, &with_sb).output);
    assert!(!vm_row(nb, NIC1).unwrap().contains_key("pw"));
    assert!(pruned(&agent, NIC1), "ack of a dropped password kept\n{}", agent.log());
    assert!(foreign_kept(), "a key the agent does not own was touched");

    // At start-up too: acks of a NIC that is gone (here: never existed),
    // left in SB and in the state file by an earlier run, go.
    agent.kill();
    std::fs::write(agent.ack_file(), json!({NIC2: "0123456789abcdef"}).to_string()).unwrap();
    central.sbctl(&[
        "set",
        "Chassis_Private",
        "hv1",
        &format!("external_ids:\"cloudstack-ovn:pw-ack:{NIC2}\"=fedcba9876543210"),
    ]);
    agent.restart();
    assert!(pruned(&agent, NIC2), "stale acks kept after a restart\n{}", agent.log());
    assert!(foreign_kept(), "a key the agent does not own was touched");

    // The NIC gone (release-nic deletes its row): its ack goes.
    ok(ud(nb, "save-password", with(vm1(42), json!({"password": "Th1rd-pass"})), &key).output);
    serve_and_ack(&agent, "Th1rd-pass");
    ok(cs(nb, "release-nic", vm1(42)));
    assert!(vm_row(nb, NIC1).is_none());
    assert!(pruned(&agent, NIC1), "ack of a released NIC kept\n{}", agent.log());
    assert!(foreign_kept(), "a key the agent does not own was touched");
}

/// The password server fails closed: when the SB cannot tell whether
/// another chassis acknowledged a password, it is not served (503, no
/// password in the body); a locally recorded ack still answers.
#[test]
fn password_server_fails_closed_while_the_sb_is_down() {
    let mut central = Central::start();
    let hv = Chassis::start(&central, "hv1");
    let key = ZoneKey::generate();
    let (agent, vm) = served_vm(&central, &hv, &key, &[]);
    let pw = |h: &str| curl(&vm, &["-H", &format!("DomU_Request: {h}"), &format!("http://{MD}:8080/")]);
    assert_eq!(pw("send_my_password").0, PASSWORD, "served while the SB is up");

    central.stop_sb();
    let (body, code) = pw("send_my_password");
    assert_eq!(code, "503", "not acknowledged here and the SB is down: {body}");
    assert!(body != PASSWORD && body != "saved_password", "{body}");
    assert!(agent.log().contains("not serving it"), "{}", agent.log());
    // The metadata service itself goes on from the last view.
    assert_eq!(curl(&vm, &[&format!("http://{MD}/latest/meta-data/instance-id")]).0, VM_UUID);

    // Once the SB is back, a retry gets the password.
    central.start_sb();
    let back = wait_until(Duration::from_secs(20), || pw("send_my_password").0 == PASSWORD);
    assert!(back, "password not served once the SB is back\n{}", agent.log());
    assert_eq!(pw("saved_password").0, "saved_password");

    // Acknowledged here: the SB is not needed to say so.
    central.stop_sb();
    assert_eq!(pw("send_my_password"), ("saved_password".to_string(), "200".to_string()));
    central.start_sb();
}

fn doctor(central: &Central, env: &[(&str, &str)]) -> (i32, Value) {
    doctor_sb(central, Some(&central.sb_remote()), env)
}

fn doctor_sb(central: &Central, sb: Option<&str>, env: &[(&str, &str)]) -> (i32, Value) {
    let mut c = std::process::Command::new(bin());
    c.args(["doctor", "--json", "--nb", &central.nb_remote()]);
    if let Some(sb) = sb {
        c.args(["--sb", sb]);
    }
    c.env("CLOUDSTACK_OVN_CONFIG", "/nonexistent")
        .env_remove("OVN_SB_DB")
        .env("CLOUDSTACK_OVN_LOG", "/dev/null")
        .env_remove("CLOUDSTACK_OVN_METADATA_KEY");
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    let v: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&o.stdout)));
    (o.status.code().unwrap_or(-1), v)
}

fn check<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["checks"].as_array().unwrap().iter().find(|c| c["check"] == name).unwrap_or_else(|| panic!("no {name}: {v}"))
}

#[test]
fn doctor_reports_hosts_without_agent_and_a_mismatched_key() {
    let central = Central::start();
    let hv = Chassis::start(&central, "hv1");
    let nb = central.nb();
    let key = ZoneKey::generate();
    let other = ZoneKey::generate();
    ok(cs(nb, "implement-network", network(42)));
    run_all(nb, NIC_START, &vm1(42));
    ok(ud(nb, "save-vm-data", save_vm_data(&vm1(42), None), &key).output);
    let _vm = hv.plug_vm("tap1", NIC1, MAC1);
    let public = ("CLOUDSTACK_OVN_METADATA_PUBLIC_KEY", key.public_key.as_str());
    let (code, v) = doctor(&central, &[public]);
    assert_eq!(code, 1, "{v}");
    let c = check(&v, "metadata agents");
    assert_eq!(c["status"], "fail", "{c}");
    assert!(c["detail"].as_str().unwrap().contains("hv1"), "{c}");
    let agent = Agent::start(&central, &hv, &key.file);
    let live = wait_until(Duration::from_secs(20), || {
        check(&doctor(&central, &[public]).1, "metadata agents")["status"] == "ok"
    });
    assert!(live, "agent never seen live:\n{}", agent.log());
    let mine = ("CLOUDSTACK_OVN_METADATA_KEY", key.file.to_str().unwrap());
    assert_eq!(check(&doctor(&central, &[public, mine]).1, "metadata key")["status"], "ok");
    let wrong = ("CLOUDSTACK_OVN_METADATA_KEY", other.file.to_str().unwrap());
    let (_, v) = doctor(&central, &[public, wrong]);
    assert_eq!(check(&v, "metadata key")["status"], "fail", "{v}");
    // Without the SB, acknowledged passwords can never leave the NB.
    assert!(v["checks"].as_array().unwrap().iter().all(|c| c["check"] != "metadata acks"), "{v}");
    let (_, v) = doctor_sb(&central, None, &[public]);
    assert_eq!(check(&v, "metadata acks")["status"], "warn", "{v}");
}

/// Two agents' SB monitors on one server, then a port binding that moves
/// (docs/metadata.md, "SB crash"). ovsdb-server shares one monitor among
/// clients monitoring the same columns; a condition on a column the monitor
/// does not carry made ovsdb-server 3.1.0 die with SIGSEGV at the next
/// Port_Binding change (or read garbage). The agent monitors its condition
/// columns. Each round is a fresh pair of agents: one more chance to hit.
#[test]
fn two_agents_monitors_survive_port_binding_changes() {
    use cloudstack_ovn::agent::view;
    use cloudstack_ovn::ovsdb::{Client, Deadline, TlsFiles};
    let central = Central::start();
    central.sbctl(&["chassis-add", "hv-b", "geneve", "127.0.0.2"]);
    let id = central.sbctl(&["--bare", "--columns=_uuid", "find", "Chassis", "name=hv-b"]);
    let me: uuid::Uuid = id.trim().parse().expect("chassis uuid");
    ok(cs(central.nb(), "implement-network", network(42)));
    run_all(central.nb(), NIC_START, &vm1(42));
    central.sync();
    let connect = || {
        Client::connect(&central.sb_remote(), &TlsFiles::default(), Deadline::after(Duration::from_secs(10)))
            .expect("connect to SB")
    };
    let sbctl_ok = |args: &[&str], step: &str| {
        let o = central.sbctl_result(args);
        let alive = central.sbctl_result(&["--bare", "--columns=name", "list", "Chassis"]);
        assert!(
            alive.status.success(),
            "SB ovsdb-server died after {step}: {}",
            String::from_utf8_lossy(&alive.stderr)
        );
        assert!(o.status.success(), "{step}: {}", String::from_utf8_lossy(&o.stderr));
    };
    for round in 0..5 {
        // Agent A (its chassis not registered yet) starts first, then B.
        let mut a = connect();
        a.monitor_cond(cloudstack_ovn::nb::SB_DB, "local", view::sb_monitor("hv-a", None)).expect("monitor A");
        let mut b = connect();
        b.monitor_cond(cloudstack_ovn::nb::SB_DB, "local", view::sb_monitor("hv-b", Some(me))).expect("monitor B");
        sbctl_ok(&["lsp-bind", NIC1, "hv-b"], &format!("bind, round {round}"));
        b.set_deadline(Deadline::after(Duration::from_secs(10)));
        let mut got = Vec::new();
        let seen = wait_until(Duration::from_secs(10), || {
            got.extend(b.wait_updates(Duration::from_millis(200)).unwrap_or_default());
            got.iter().any(|u| u.to_string().contains(&format!("\"logical_port\":\"{NIC1}\"")))
        });
        assert!(seen, "round {round}: agent B's monitor missed the port bound to it: {got:?}");
        sbctl_ok(&["lsp-unbind", NIC1], &format!("unbind, round {round}"));
    }
}

/// A shared network with an in-subnet `extension_ip` (metadata-design.md
/// §6.1–6.2: MDIP = extension_ip): the lease's server id is that IP, which
/// the agent answers on-link (ARP from the localport, whose MAC must be the
/// DHCP `server_mac`), and 169.254.169.254 answers as well; cloud-init's
/// datasource finds extension_ip through the `data-server` record.
#[test]
fn shared_network_serves_metadata_on_its_extension_ip() {
    const EXT_IP: &str = "172.31.0.2";
    const GW: &str = "172.31.0.1";
    let central = Central::start();
    let hv = Chassis::start(&central, GATEWAY_CHASSIS);
    let _outside = hv.add_public("public", Some(3000));
    let nb = central.nb();
    let key = ZoneKey::generate();
    let net = json!({"network_id": "60", "vlan": "3000", "zone_id": "1", "guest_type": "shared",
        "network_state": "implementing", "gateway": GW, "cidr": "172.31.0.0/24", "extension_ip": EXT_IP});
    let nic = with(
        net.clone(),
        json!({"nic_id": "77", "nic_uuid": NIC1, "mac": MAC1, "ip": "172.31.0.23", "netmask": "255.255.255.0",
               "default_nic": "true", "device_id": "0", "hostname": "vm-1",
               "dns": "172.31.0.53", "domain": "shared.example"}),
    );
    ok(cs(nb, "implement-network", net));
    run_all(nb, NIC_START, &nic);
    ok(ud(nb, "save-vm-data", save_vm_data(&nic, Some(PASSWORD)), &key).output);

    // The localport answers ARP for extension_ip with its own MAC; DHCP
    // names that MAC as server_mac. They must be one MAC.
    let lp = central.nbctl(&["--bare", "--columns=name,addresses", "find", "Logical_Switch_Port", "type=localport"]);
    let lp_mac = lp.split_whitespace().find(|w| w.matches(':').count() == 5).unwrap_or_default().to_string();
    assert!(lp.contains(EXT_IP) && lp.contains(MD), "localport addresses: {lp}");
    let dhcp = central.nbctl(&["--bare", "--columns=options", "find", "DHCP_Options", "cidr=\"172.31.0.0/24\""]);
    assert!(dhcp.contains(&format!("server_mac={lp_mac}")), "DHCP {dhcp} vs localport {lp}");
    assert!(dhcp.contains(&format!("server_id={EXT_IP}")), "{dhcp}");

    let agent = Agent::start(&central, &hv, &key.file);
    let vm = hv.plug_vm("tap1", NIC1, MAC1);
    let lease = vm.dhcp();
    assert_eq!(lease.server_id.as_deref(), Some(EXT_IP), "{lease:?}");
    assert_eq!(lease.router.as_deref(), Some(GW), "{lease:?}");
    let routes = lease.staticroutes.clone().unwrap_or_default();
    assert!(routes.contains(&format!("169.254.169.254/32 {EXT_IP}")), "option 121 via extension_ip: {routes}");
    // As a classless-route client would (the harness applies only the
    // default route).
    let o = vm.exec(&["ip", "route", "replace", "169.254.169.254/32", "via", EXT_IP, "dev", "eth0"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let ext = format!("http://{EXT_IP}/latest/meta-data/instance-id");
    let up = wait_until(Duration::from_secs(30), || curl(&vm, &[&ext]).1 == "200");
    assert!(up, "metadata never served on {EXT_IP}\n--- agent log:\n{}\n{}", agent.log(), agent.out());
    assert_eq!(curl(&vm, &[&ext]), (VM_UUID.to_string(), "200".into()));
    assert_eq!(curl(&vm, &[&format!("http://{MD}/latest/meta-data/instance-id")]), (VM_UUID.to_string(), "200".into()));
    assert_eq!(curl(&vm, &[&format!("http://{EXT_IP}/latest/user-data")]), (USERDATA.to_string(), "200".into()));
    let o = vm.exec(&["wget", "-q", "-T", "5", "-O", "-", &ext]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), VM_UUID, "wget: {}", String::from_utf8_lossy(&o.stderr));
    // The VM reached extension_ip on-link: its neighbour entry is the localport's MAC.
    let neigh = String::from_utf8_lossy(&vm.exec(&["ip", "neigh", "show", EXT_IP]).stdout).into_owned();
    assert!(neigh.contains(&lp_mac), "ARP for {EXT_IP}: {neigh} (localport MAC {lp_mac})");

    // cloud-init's datasource finds extension_ip through OVN's data-server
    // record and takes everything from there, the password once.
    let r = cloud_init(&vm, &lease, &agent);
    assert_eq!(
        (r["ok"].clone(), r["data_server"].clone(), r["server"].clone()),
        (json!(true), json!(EXT_IP), json!(EXT_IP)),
        "{r}"
    );
    assert_eq!((r["userdata"].clone(), r["instance_id"].clone()), (json!(USERDATA), json!(VM_UUID)), "{r}");
    assert_eq!((r["password"].clone(), r["second_password"].clone()), (json!(PASSWORD), Value::Null), "{r}");

    // A reset, asked on both addresses before the acknowledgement.
    ok(ud(nb, "save-password", with(nic.clone(), json!({"password": "Shared-2"})), &key).output);
    let pw = |h: &str| curl(&vm, &["-H", &format!("DomU_Request: {h}"), &format!("http://{EXT_IP}:8080/")]);
    let served = wait_until(Duration::from_secs(3), || pw("send_my_password").0 == "Shared-2");
    assert!(served, "the reset password was not served on {EXT_IP}:8080\n{}", agent.log());
    assert_eq!(
        curl(&vm, &["-H", "DomU_Request: send_my_password", &format!("http://{MD}:8080/")]).0,
        "Shared-2",
        "169.254.169.254:8080 too"
    );
    assert_eq!(pw("saved_password").0, "saved_password");
    assert_eq!(pw("send_my_password").0, "saved_password");
    hv.assert_vswitchd_alive();
}

/// `ip ARGS` (iproute2 reads what the agent made through netlink).
fn ip(args: &[&str]) -> std::process::Output {
    try_run(std::process::Command::new("ip").args(args), Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"))
}

fn ip_ok(args: &[&str]) -> String {
    let o = ip(args);
    assert!(o.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The agent's plumbing (src/agent/link.rs, ovs_port.rs) driven directly,
/// from a thread in the chassis' namespace as the agent runs there:
/// iproute2 (`ip netns exec` included) sees what netlink made, the OVS port
/// carries the localport's iface-id; teardown and stale removal leave no
/// namespace, link or OVS port; a port of the metadata name that is not
/// ours is never touched, and provisioning over it fails cleanly.
#[test]
fn agent_plumbing_is_iproute2_compatible_and_leaves_nothing_behind() {
    use cloudstack_ovn::agent::netns::{veth_name, Plumbing};
    use cloudstack_ovn::agent::{http, link};
    use cloudstack_ovn::nb::Owner;
    let central = Central::start();
    let hv = Chassis::start(&central, "hv1");
    let prefix = format!("csopl{}-", std::process::id());
    let owner = Owner(cloudstack_ovn::config::DEFAULT_OWNER.into());
    let plumbing =
        Plumbing { prefix: prefix.clone(), ovs_db: hv.db_remote(), bridge: "br-int".into(), owner: owner.clone() };
    let (ns, veth) = (plumbing.netns_name(7), veth_name(&prefix, 7));
    let ips: Vec<std::net::Ipv4Addr> = vec!["169.254.169.254".parse().unwrap(), "10.9.0.2".parse().unwrap()];
    // The agent's HTTP front, answering 404 to everything.
    let handler: http::Handler = std::sync::Arc::new(|_, _| cloudstack_ovn::agent::serve::Response::not_found());
    let server = std::sync::Arc::new(http::Server::new(1, http::Limits::default(), handler).unwrap());
    let srv = server.clone();
    let provisioned = on_chassis(&hv, &plumbing, move |p| p.provision(7, "02:00:00:aa:00:07", &ips, &srv)).unwrap();

    let addrs = ip_ok(&["netns", "exec", &ns, "ip", "-o", "addr", "show", "dev", "md0"]);
    assert!(addrs.contains("169.254.169.254/32") && addrs.contains("10.9.0.2/32"), "{addrs}");
    let routes = ip_ok(&["-n", &ns, "route", "show"]);
    assert!(routes.contains("default dev md0 scope link src 169.254.169.254"), "{routes}");
    let md0 = ip_ok(&["-n", &ns, "link", "show", "md0"]);
    assert!(md0.contains("link/ether 02:00:00:aa:00:07") && md0.contains(",UP"), "{md0}");
    assert!(ip_ok(&["-n", &ns, "link", "show", "lo"]).contains(",UP"));
    assert!(ip_ok(&["-n", hv.netns(), "link", "show", &veth]).contains(",UP"));
    // The test chassis runs the userspace datapath: offloads must go off.
    assert!(cloudstack_ovn::agent::ovs_port::userspace_datapath(&hv.db_remote(), "br-int"));
    let features = ip_ok(&["netns", "exec", &ns, "ethtool", "-k", "md0"]);
    assert!(features.contains("tx-checksumming: off"), "{features}");
    assert_eq!(hv.vsctl(&["port-to-br", &veth]), "br-int");
    let ids = hv.vsctl(&["get", "Interface", &veth, "external_ids"]);
    let iface_id = cloudstack_ovn::metadata::port_name(&owner, 7);
    for want in [format!("iface-id={iface_id}"), "attached-mac=\"02:00:00:aa:00:07\"".into(), "cloudstack:owner".into()]
    {
        assert!(ids.contains(&want), "{want} missing: {ids}");
    }

    on_chassis(&hv, &plumbing, move |p| {
        p.teardown(provisioned);
        Ok(())
    })
    .unwrap();
    assert!(!link::netns_path(&ns).exists(), "namespace left behind");
    assert!(!ip(&["-n", hv.netns(), "link", "show", &veth]).status.success(), "veth left behind");
    assert!(!hv.vsctl(&["list-ports", "br-int"]).contains(&veth), "OVS port left behind");
    assert_eq!(hv.vsctl(&["--columns=name", "find", "Interface", &format!("name={veth}")]), "");
    // Gone already is not an error (teardown after a crash, a second remove).
    assert_eq!(link::del_netns(&ns), Ok(()));
    let v = veth.clone();
    let again = link::in_netns(hv.netns(), move || {
        let mut nl = link::Netlink::open()?;
        Ok((nl.del_link(&v)?, nl.index(&v)?, nl.index("lo")?))
    });
    assert_eq!(again, Ok((false, None, Some(1))));

    // A stale namespace of ours (a crashed agent's) beside an OVS port of
    // the same veth name that someone else made.
    let (stale, foreign) = (plumbing.netns_name(9), veth_name(&prefix, 9));
    link::add_netns(&stale).unwrap();
    assert!(ip_ok(&["netns", "list"]).contains(&stale), "ip netns sees our namespace");
    hv.vsctl(&["add-port", "br-int", &foreign]);
    assert_eq!(plumbing.existing(), vec![stale.clone()]);
    let s = stale.clone();
    on_chassis(&hv, &plumbing, move |p| {
        p.remove(&s);
        Ok(())
    })
    .unwrap();
    assert!(plumbing.existing().is_empty(), "stale namespace left: {:?}", plumbing.existing());
    assert_eq!(hv.vsctl(&["port-to-br", &foreign]), "br-int", "a port that is not ours was removed");
    let md = cloudstack_ovn::metadata::MD_ADDRESS;
    let refused = on_chassis(&hv, &plumbing, move |p| p.provision(9, "02:00:00:aa:00:09", &[md], &server).map(|_| ()));
    assert!(refused.is_err(), "provisioned over a port that is not ours");
    assert!(plumbing.existing().is_empty(), "a failed provisioning left its namespace: {:?}", plumbing.existing());
    assert!(!ip(&["-n", hv.netns(), "link", "show", &foreign]).status.success(), "a failed provisioning left its veth");
    assert_eq!(hv.vsctl(&["port-to-br", &foreign]), "br-int");
}

/// Run `f` with the plumbing on a thread in the chassis' namespace, where
/// the agent runs.
fn on_chassis<T: Send + 'static>(
    hv: &Chassis,
    plumbing: &cloudstack_ovn::agent::netns::Plumbing,
    f: impl FnOnce(&cloudstack_ovn::agent::netns::Plumbing) -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let p = plumbing.clone();
    cloudstack_ovn::agent::link::in_netns(hv.netns(), move || f(&p))
}

/// One VM hangs many connections half-way through their request head (more
/// than any fixed pool of workers): other VMs, and the same VM's own
/// well-formed requests, are still answered at once; the hung connections
/// are closed by the header timeout. Also HEAD, POST and an oversize head.
#[test]
fn slow_clients_cannot_starve_other_vms() {
    use std::io::{Read, Write};
    use std::time::Instant;
    const OTHER: &str = "6f5d0c1e-0000-4000-8000-00000000b002";
    /// Well above the network round trip and `ip netns exec` + curl on a
    /// loaded 2-core machine, well below the 5 s header timeout a hung
    /// connection holds a server's slot for.
    const BOUND: Duration = Duration::from_secs(2);
    let central = Central::start();
    let hv = Chassis::start(&central, "hv1");
    let nb = central.nb();
    let key = ZoneKey::generate();
    let vm_b = nic(43, NIC2, "02:00:4c:3e:00:07", "10.1.1.33", "vm-b", true);
    for (net, p) in [(42, vm1(42)), (43, vm_b.clone())] {
        ok(cs(nb, "implement-network", network(net)));
        run_all(nb, NIC_START, &p);
    }
    ok(ud(nb, "save-vm-data", save_vm_data(&vm1(42), None), &key).output);
    let mut data = vm_data(None);
    data[7]["content"] = json!(OTHER);
    ok(ud(nb, "save-vm-data", with(vm_b.clone(), json!({"vm_data": data})), &key).output);
    let agent = Agent::start(&central, &hv, &key.file);
    let (a, _) = boot_vm(&hv, "tap1", NIC1, MAC1);
    let (b, _) = boot_vm(&hv, "tap2", NIC2, "02:00:4c:3e:00:07");
    wait_served(&a, &agent);
    wait_served(&b, &agent);

    let timed = |vm: &Vm, args: &[&str]| {
        let t = Instant::now();
        let mut a = vec!["-m", "4"];
        a.extend_from_slice(args);
        let r = curl(vm, &a);
        (r, t.elapsed())
    };
    let id_url = format!("http://{MD}/latest/meta-data/instance-id");
    // 12 connections to :80 and 4 to :8080, each stopping inside its head.
    let mut slow = a.tcp_streams(MD, 80, 12, Duration::from_secs(3));
    slow.extend(a.tcp_streams(MD, 8080, 4, Duration::from_secs(3)));
    let hung_at = Instant::now();
    for s in &mut slow {
        s.write_all(format!("GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: {MD}\r\nX-Slow: 1").as_bytes())
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    for (vm, want, who) in [(&b, OTHER, "another VM"), (&a, VM_UUID, "the slow VM itself")] {
        let ((body, code), took) = timed(vm, &[&id_url]);
        assert_eq!((body.as_str(), code.as_str()), (want, "200"), "{who} while 16 connections hang ({took:?})");
        assert!(took < BOUND, "{who} answered only after {took:?} while 16 connections hang\n{}", agent.log());
    }
    let ((body, code), took) = timed(&b, &["-H", "DomU_Request: send_my_password", &format!("http://{MD}:8080/")]);
    assert_eq!((body.as_str(), code.as_str()), ("saved_password", "200"));
    assert!(took < BOUND, "password server answered only after {took:?} while 16 connections hang");

    // The hung connections are closed (header timeout, 5 s), not kept.
    for (i, s) in slow.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        let r = s.read_to_end(&mut buf);
        assert!(
            !matches!(&r, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
            "hung connection {i} still open after {:?}: {r:?}",
            hung_at.elapsed()
        );
    }
    assert!(hung_at.elapsed() < Duration::from_secs(9), "hung connections lasted {:?}", hung_at.elapsed());

    // HEAD: the GET's status and length, no body.
    let (head, code) = curl(&a, &["-I", &id_url]);
    assert_eq!(code, "200", "{head}");
    assert!(
        head.to_ascii_lowercase().contains(&format!("content-length: {}", VM_UUID.len())) && !head.contains(VM_UUID),
        "{head}"
    );
    // Other methods are not served on :80.
    let (body, code) = curl(&a, &["-X", "POST", "-d", "x=1", &id_url]);
    assert_ne!(code, "200", "POST answered: {body}");
    assert!(!body.contains(VM_UUID), "{body}");
    // A request head above 8 KiB: 431, nothing served.
    let big = format!("X-Big: {}", "a".repeat(9 * 1024));
    let (body, code) = curl(&a, &["-H", &big, &id_url]);
    assert_eq!(code, "431", "{body}");
    // And the service is still there for everyone.
    assert_eq!(curl(&b, &[&id_url]), (OTHER.to_string(), "200".into()));
}

/// UserData is advertised (it was withheld until the host agent was
/// complete): CloudStack only sends the save-* commands to a provider that
/// lists the service with `Supported`.
#[test]
fn extension_details_advertise_user_data() {
    let o = std::process::Command::new(bin())
        .args(["extension-details", "--json"])
        .env("CLOUDSTACK_OVN_CONFIG", "/nonexistent")
        .env("CLOUDSTACK_OVN_LOG", "/dev/null")
        .output()
        .unwrap();
    assert!(o.status.success() && o.stderr.is_empty());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["services"].as_array().unwrap().contains(&json!("UserData")), "{v}");
    assert_eq!(v["capabilities"]["UserData"]["Supported"], "true", "{v}");
}
