//! The UserData agent's resilience claims (docs/metadata.md) on real OVN:
//! Raft leader changes of NB and SB under a serving agent, a VPC tier whose
//! network ACL denies everything, and start-up in an odd environment.
//! The shared helpers are in tests/common/userdata.rs.

mod common;

use std::time::Duration;

use common::scenario::*;
use common::userdata::*;
use common::*;
use serde_json::json;

/// `remotes` as a list that starts at member `first`.
fn starting_at(remotes: &[String], first: usize) -> String {
    (0..remotes.len()).map(|k| remotes[(first + k) % remotes.len()].clone()).collect::<Vec<_>>().join(",")
}

/// The members the agent last connected to: (sb, nb) remotes from its
/// "connected to OVN databases" log line.
fn agent_members(agent: &Agent) -> Option<(String, String)> {
    let log = agent.log();
    let line = log.lines().rev().find(|l| l.contains("connected to OVN databases"))?;
    let field =
        |k: &str| line.split_whitespace().find_map(|w| w.strip_prefix(k)).map(|v| v.trim_matches('"').to_string());
    Some((field("sb=")?, field("nb=")?))
}

fn sb_acks(central: &Central) -> String {
    let o = central.sbctl_result(&["get", "Chassis_Private", "hv1", "external_ids"]);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// [`sb_acks`] through one member: while another member hangs, ovn-sbctl
/// given the whole list may sit on the hung one past its own timeout (its
/// socket still accepts), which is the harness failing, not the agent.
fn sb_acks_at(central: &Central, member: &str) -> String {
    let db = format!("--db={member}");
    let o = central.sbctl_result(&[&db, "get", "Chassis_Private", "hv1", "external_ids"]);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A password request that may wait on an SB failover (the request path
/// retries once on a fresh connection): a generous client timeout, as
/// cloud-init's password client has (wget --timeout 20).
fn pw_slow(vm: &Vm, ask: &str) -> String {
    curl(vm, &["-m", "20", "-H", &format!("DomU_Request: {ask}"), &format!("http://{MD}:8080/")]).0
}

/// NB and SB are 3-member Raft clusters; northd, ovn-controller and the
/// agent get every member. The agent starts on each cluster's leader
/// (listed first), then: the SB leader hangs (SIGSTOP: it still accepts
/// connections), the NB leader dies (SIGKILL), the SB loses its quorum. The
/// agent keeps serving throughout, an acknowledgement made during each SB
/// change lands in the SB (through another member, or late once the SB is
/// back), and a password saved after the NB change is served.
#[test]
fn raft_leader_changes_under_the_agent_lose_nothing() {
    let mut central = Central::start_clustered();
    let hv = Chassis::start(&central, "hv1");
    let key = ZoneKey::generate();
    ok(cs(central.nb(), "implement-network", network(42)));
    run_all(central.nb(), NIC_START, &vm1(42));
    ok(ud(central.nb(), "save-vm-data", save_vm_data(&vm1(42), Some(PASSWORD)), &key).output);
    let (nb_remotes, sb_remotes) = {
        let (nb, sb) = central.clusters();
        (nb.unix_remotes(), sb.unix_remotes())
    };
    let (nb_leader, sb_leader) = {
        let (nb, sb) = central.clusters();
        (nb.wait_leader(), sb.wait_leader())
    };
    // The agent (and ovn-controller) list each leader first.
    hv.vsctl(&[
        "set",
        "Open_vSwitch",
        ".",
        &format!("external_ids:ovn-remote=\"{}\"", starting_at(&sb_remotes, sb_leader)),
    ]);
    let agent = Agent::start_with(starting_at(&nb_remotes, nb_leader), &hv, &key.file, Vec::new());
    let (vm, _) = boot_vm(&hv, "tap1", NIC1, MAC1);
    wait_served(&vm, &agent);
    assert_eq!(
        agent_members(&agent),
        Some((sb_remotes[sb_leader].clone(), nb_remotes[nb_leader].clone())),
        "the agent starts on both leaders\n{}",
        agent.log()
    );
    let instance_id = || curl(&vm, &[&format!("http://{MD}/latest/meta-data/instance-id")]);

    // 1. The SB leader hangs. Its socket still accepts: connecting to it
    // "works" and then nothing answers. The others elect a new leader.
    central.clusters().1.pause(sb_leader);
    assert_eq!(instance_id(), (VM_UUID.to_string(), "200".into()), "served from the last view");
    assert_eq!(pw_slow(&vm, "send_my_password"), PASSWORD);
    assert_eq!(pw_slow(&vm, "saved_password"), "saved_password");
    assert_eq!(pw(&vm, "send_my_password"), "saved_password", "acknowledged, whatever the SB does");
    let new_sb = central.clusters().1.wait_new_leader(sb_leader);
    // While the old leader still hangs: the ack went through another member.
    let ack = format!("cloudstack-ovn:pw-ack:{NIC1}");
    let landed = wait_until(Duration::from_secs(20), || sb_acks_at(&central, &sb_remotes[new_sb]).contains(&ack));
    assert!(
        landed,
        "ack not in the SB (new leader member {}: {:?}):\n{}",
        new_sb + 1,
        sb_acks_at(&central, &sb_remotes[new_sb]),
        agent.log()
    );
    // The main loop left the hung member too: an idle connection does not
    // show a hang, the periodic resync (10 s) does, after its 5 s deadline.
    let moved = wait_until(Duration::from_secs(30), || {
        agent_members(&agent).is_some_and(|(sb, _)| sb != sb_remotes[sb_leader])
    });
    assert!(moved, "the agent still follows the hung SB member:\n{}", agent.log());
    central.clusters().1.resume(sb_leader);

    // 2. The NB leader dies. A password saved afterwards (the commands find
    // the new leader) reaches the VM: the agent resynced from another member.
    let killed = central.clusters().0.kill_leader();
    assert_eq!(killed, nb_leader, "the agent's NB member was the leader");
    assert_eq!(instance_id().0, VM_UUID, "served while NB elects");
    ok(ud(central.nb(), "save-password", with(vm1(42), json!({"password": "After-failover-1"})), &key).output);
    let served = wait_until(Duration::from_secs(30), || pw(&vm, "send_my_password") == "After-failover-1");
    assert!(served, "the password saved after the NB failover was not served:\n{}", agent.log());
    central.clusters().0.restart(killed);

    // 3. The SB loses its quorum (two of three members hang): the ack can
    // only be kept locally; it reaches the SB once the SB is back.
    let sb_now = central.clusters().1.wait_leader();
    let other = (sb_now + 1) % 3;
    central.clusters().1.pause(sb_now);
    central.clusters().1.pause(other);
    assert_eq!(pw_slow(&vm, "saved_password"), "saved_password");
    assert_eq!(pw(&vm, "send_my_password"), "saved_password", "the local acknowledgement holds");
    assert_eq!(instance_id().0, VM_UUID, "served without an SB");
    central.clusters().1.resume(sb_now);
    central.clusters().1.resume(other);
    let row = cloudstack_ovn::metadata::row_uuid(&cloudstack_ovn::nb::Owner("cloudstack".into()), NIC1);
    let gen = central.nbctl(&["get", "DNS", &row.to_string(), "external_ids:pw-gen"]);
    let want = format!("\"{ack}\"={}", gen.trim());
    let late = wait_until(Duration::from_secs(30), || sb_acks(&central).contains(&want));
    assert!(late, "the new generation's ack never reached the SB ({want}):\n{}\n{}", sb_acks(&central), agent.log());
    assert!(agent.log().contains("late password acknowledgements written"), "{}", agent.log());
    assert_eq!(pw(&vm, "send_my_password"), "saved_password");
    assert_eq!(instance_id().0, VM_UUID);
}

/// A VPC tier whose network ACL denies everything, both ways: the VM still
/// gets its metadata and password from the agent (the virtual router
/// answered these from itself, outside the ACL), and the ACL still drops
/// everything else, shown with real packets that passed before it.
#[test]
fn vpc_network_acl_deny_all_keeps_metadata_and_still_denies() {
    const INTERNET: &str = "198.51.100.10";
    const MAC: &str = "02:00:0a:07:01:0a";
    let central = Central::start();
    let hv = Chassis::start(&central, GATEWAY_CHASSIS);
    let outside = hv.add_public("public", None);
    let _web = outside.serve_tcp(INTERNET, 8080, "outside");
    let nb = central.nb();
    let key = ZoneKey::generate();
    ok(cs(nb, "implement-vpc", public(vpc(5), "203.0.113.20", true, "untagged")));
    let nic = with(
        tier(5, 71, 1),
        json!({"nic_id": "1", "nic_uuid": NIC1, "mac": MAC, "ip": "10.7.1.10", "netmask": "255.255.255.0",
               "default_nic": "true", "hostname": "vm-1", "dns": "10.7.1.53", "domain": "cs.example"}),
    );
    ok(cs(nb, "implement-network", tier(5, 71, 1)));
    run_all(nb, NIC_START, &nic);
    ok(ud(nb, "save-vm-data", save_vm_data(&nic, Some(PASSWORD)), &key).output);
    let rule = |number: u32, action: &str, traffic: &str| json!({"number": number, "action": action, "trafficType": traffic, "protocol": "all", "sourceCidrs": ["0.0.0.0/0"]});
    let acl = |rules: Vec<serde_json::Value>| with(tier(5, 71, 1), json!({"acl_rules": rules}));
    ok(cs(nb, "apply-network-acl", acl(vec![rule(10, "allow", "egress")])));
    let agent = Agent::start(&central, &hv, &key.file);
    let (vm, _) = boot_vm_via(&hv, "tap1", NIC1, MAC, "10.7.1.1");
    wait_served(&vm, &agent);
    // Controls, under an allow-all egress ACL: the outside answers, and the
    // metadata namespace resets a port it does not serve.
    assert!(vm.connect_tcp(INTERNET, 8080, Duration::from_secs(5)).is_some(), "egress allowed: outside reachable");
    let closed = vm.try_connect_tcp(MD, 22, Duration::from_secs(3));
    assert!(matches!(&closed, Err(e) if e.contains("REFUSED")), "{MD}:22 answered with a reset: {closed:?}");

    ok(cs(nb, "apply-network-acl", acl(vec![rule(10, "deny", "ingress"), rule(20, "deny", "egress")])));
    central.sync_hv();
    assert_eq!(curl(&vm, &[&format!("http://{MD}/latest/meta-data/instance-id")]), (VM_UUID.to_string(), "200".into()));
    assert_eq!(curl(&vm, &[&format!("http://{MD}/latest/user-data")]), (USERDATA.to_string(), "200".into()));
    assert_eq!(pw(&vm, "send_my_password"), PASSWORD);
    assert_eq!(pw(&vm, "saved_password"), "saved_password");
    assert_eq!(pw(&vm, "send_my_password"), "saved_password");
    // The same two packets are dropped now.
    assert_eq!(central.blocked_probe(|t| vm.connect_tcp(INTERNET, 8080, t)), None, "deny-all egress reached outside");
    let dropped = vm.try_connect_tcp(MD, 22, BLOCKED);
    assert!(matches!(&dropped, Err(e) if e.contains("TIMEOUT")), "{MD}:22 is not exempt: {dropped:?}");
    hv.assert_vswitchd_alive();
}

/// systemd passes the host's environment through; a variable that is not
/// UTF-8 (a Latin-1 locale value) must not stop the agent. It used to die
/// at start-up, before serving anything (internal error, exit 1).
#[test]
fn agent_with_a_non_utf8_environment_variable_starts_and_serves() {
    use std::os::unix::ffi::OsStringExt;
    let central = Central::start();
    let hv = Chassis::start(&central, "hv1");
    let nb = central.nb();
    let key = ZoneKey::generate();
    saved_vm1(nb, &key, &[]);
    let latin1 = vec![("LC_FOO".into(), std::ffi::OsString::from_vec(b"caf\xe9".to_vec()))];
    let mut agent = Agent::start_with(central.nb_remote(), &hv, &key.file, latin1);
    let (vm, _) = boot_vm(&hv, "tap1", NIC1, MAC1);
    assert!(agent.is_running(), "the agent died: {}", agent.out());
    wait_served(&vm, &agent);
    assert_eq!(pw(&vm, "send_my_password"), PASSWORD);
    assert_eq!(pw(&vm, "saved_password"), "saved_password");
    assert!(agent.out().is_empty(), "nothing on stdout/stderr: {}", agent.out());
}

/// The host's own OVS under the agent: ovs-vswitchd crashes and is
/// restarted (its ports come back from conf.db, ovn-controller reinstalls
/// the flows), then the local ovsdb-server restarts. The VM is served again
/// each time, its acknowledgement holds, and a network whose first VM
/// arrives after the restarts gets its namespace and OVS port (the agent
/// reaches the restarted OVS database).
#[test]
fn ovs_restarts_under_the_agent_lose_nothing() {
    let central = Central::start();
    let mut hv = Chassis::start(&central, "hv1");
    let nb = central.nb();
    let key = ZoneKey::generate();
    let (agent, vm) = served_vm(&central, &hv, &key, &[]);
    assert_eq!(pw(&vm, "send_my_password"), PASSWORD);
    assert_eq!(pw(&vm, "saved_password"), "saved_password");
    let instance_id = |vm: &Vm| curl(vm, &[&format!("http://{MD}/latest/meta-data/instance-id")]);
    let served_again = |vm: &Vm| wait_until(Duration::from_secs(30), || instance_id(vm).1 == "200");

    let first = hv.vswitchd_pid().unwrap();
    hv.abort_vswitchd();
    assert!(wait_until(Duration::from_secs(30), || hv.vswitchd_pid().is_some_and(|p| p != first)));
    assert!(served_again(&vm), "not served after the vswitchd restart:\n{}", agent.log());
    assert_eq!(instance_id(&vm).0, VM_UUID);
    assert_eq!(pw(&vm, "send_my_password"), "saved_password", "the acknowledgement holds");

    hv.restart_ovsdb(Duration::from_secs(1));
    assert!(served_again(&vm), "not served after the ovsdb-server restart:\n{}", agent.log());
    assert_eq!(pw(&vm, "send_my_password"), "saved_password");

    // A new network's first VM, after both restarts.
    const OTHER: &str = "6f5d0c1e-0000-4000-8000-00000000b003";
    let vm_b = nic(43, NIC2, "02:00:4c:3e:00:08", "10.1.1.34", "vm-b", true);
    ok(cs(nb, "implement-network", network(43)));
    run_all(nb, NIC_START, &vm_b);
    let mut data = vm_data(None);
    data[7]["content"] = json!(OTHER);
    ok(ud(nb, "save-vm-data", with(vm_b, json!({"vm_data": data})), &key).output);
    let (b, _) = boot_vm(&hv, "tap2", NIC2, "02:00:4c:3e:00:08");
    wait_served(&b, &agent);
    assert_eq!(instance_id(&b).0, OTHER);
    assert_eq!(agent.namespaces().len(), 2, "{:?}", agent.namespaces());
    hv.assert_vswitchd_alive();
}
