//! The semantics and the data plane: after the CloudStack call sequence,
//! ovn-northd's logical flows answer DHCP the way we configured it
//! (`ovn-trace`), and real VMs (network namespaces plugged the way libvirt
//! plugs them, `iface-id` = NIC uuid) on a userspace-datapath chassis get
//! their leases, resolve each other through OVN's DNS and talk over L2.

mod common;

use std::time::Duration;

use common::scenario::*;
use common::*;
use serde_json::json;

const MAC1: &str = "02:00:4c:3e:00:05";
const MAC2: &str = "02:00:4c:3e:00:06";

fn dhcp_discover(port: &str, mac: &str) -> String {
    format!(
        r#"inport == "{port}" && eth.src == {mac} && eth.dst == ff:ff:ff:ff:ff:ff && ip4.src == 0.0.0.0 && ip4.dst == 255.255.255.255 && udp.src == 68 && udp.dst == 67"#
    )
}

fn put_dhcp_opts(trace: &str) -> String {
    trace
        .lines()
        .find(|l| l.contains("put_dhcp_opts("))
        .unwrap_or_else(|| panic!("OVN does not answer DHCP for this port:\n{trace}"))
        .to_string()
}

/// The answer part of busybox nslookup's output (after the "Server:" and
/// "Address: <server>#53" header lines, which name the server, not the answer).
fn answer(nslookup: &str) -> String {
    nslookup.split("\n\n").skip(1).collect::<Vec<_>>().join("\n")
}

#[test]
fn ovn_trace_shows_dhcp_answers_as_configured() {
    let central = Central::start();
    let nb = central.nb();
    ok(cs(nb, "implement-network", network(42)));
    run_all(nb, NIC_START, &vm1(42));
    let vm2 = nic(42, NIC2, MAC2, "10.1.1.24", "vm-2", false);
    run_all(nb, NIC_START, &vm2);
    central.sync();

    let trace = central.trace("cs-net-42", &dhcp_discover(NIC1, MAC1));
    let put = put_dhcp_opts(&trace);
    for want in [
        "offerip = 10.1.1.23",
        "router = 10.1.1.1",
        "mtu = 1442",
        "dns_server = {10.1.1.53, 8.8.8.8}",
        "domain_name = \"cs.example\"",
        "hostname = \"vm-1\"",
        "lease_time = 86400",
        "server_id = 10.1.1.1",
        "netmask = 255.255.255.0",
    ] {
        assert!(put.contains(want), "missing `{want}` in {put}");
    }
    assert!(trace.contains(&format!("output to \"{NIC1}\"")), "the offer must go back to the VM:\n{trace}");

    // The non-default NIC is offered no default route.
    let put = put_dhcp_opts(&central.trace("cs-net-42", &dhcp_discover(NIC2, MAC2)));
    assert!(put.contains("offerip = 10.1.1.24") && !put.contains("router ="), "{put}");

    // A MAC that is not the port's is dropped by port security: no answer.
    let spoofed = central.trace("cs-net-42", &dhcp_discover(NIC1, "02:00:4c:3e:00:99"));
    assert!(!spoofed.contains("put_dhcp_opts("), "spoofed MAC got a DHCP answer:\n{spoofed}");
}

#[test]
fn vms_get_leases_resolve_names_and_talk_through_ovn() {
    let central = Central::start();
    let hv = Chassis::start(&central, "hv1");
    let nb = central.nb();

    // First VM in an isolated network, as CloudStack sends it.
    ok(cs(nb, "implement-network", network(42)));
    run_all(nb, NIC_START, &vm1(42));
    let vm2_payload = nic(42, NIC2, MAC2, "10.1.1.24", "vm-2", false);
    run_all(nb, NIC_START, &vm2_payload);

    // libvirt plugs the taps with iface-id = NIC uuid; ovn-controller binds them.
    let guest1 = hv.plug_vm("tap1", NIC1, MAC1);
    let guest2 = hv.plug_vm("tap2", NIC2, MAC2);
    assert!(central.wait_lsp_up(NIC1, Duration::from_secs(10)), "NB Logical_Switch_Port.up never became true");
    assert_eq!(central.nbctl(&["get", "Logical_Switch_Port", NIC1, "up"]), "true");

    let lease = guest1.dhcp();
    assert_eq!(lease.ip, "10.1.1.23");
    assert_eq!(lease.mask, "24");
    assert_eq!(lease.router.as_deref(), Some("10.1.1.1"));
    assert_eq!(lease.mtu, Some(1442));
    assert_eq!(lease.dns, vec!["10.1.1.53".to_string(), "8.8.8.8".to_string()]);
    assert_eq!(lease.domain.as_deref(), Some("cs.example"));
    assert_eq!(lease.hostname.as_deref(), Some("vm-1"));
    assert_eq!(lease.lease, Some(86400));
    assert_eq!(lease.server_id.as_deref(), Some("10.1.1.1"));

    let lease2 = guest2.dhcp();
    assert_eq!(lease2.ip, "10.1.1.24");
    assert_eq!(lease2.router, None, "a non-default NIC gets no default route");
    assert_eq!(lease2.hostname.as_deref(), Some("vm-2"));

    // L2 between the VMs through OVN.
    assert!(guest2.ping("10.1.1.23", Duration::from_secs(10)), "vm-2 cannot reach vm-1");

    // OVN answers DNS for the names we recorded, itself, on the VM's own
    // hypervisor: the query is addressed to the other VM (on-link, so its MAC
    // resolves; no DNS server listens there) and ovn-controller answers it.
    // In production the resolver is off-link and the query goes to the
    // gateway's MAC, where OVN intercepts it the same way.
    let out = guest1.exec(&["busybox", "nslookup", "vm-2.cs.example", "10.1.1.24"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        answer(&text).contains("vm-2.cs.example") && answer(&text).contains("10.1.1.24"),
        "OVN did not answer the A query:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = guest2.exec(&["busybox", "nslookup", "vm-1", "10.1.1.23"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(answer(&text).contains("10.1.1.23"), "{text}");
    let out = guest2.exec(&["busybox", "nslookup", "10.1.1.23", "10.1.1.23"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(answer(&text).contains("vm-1.cs.example"), "OVN did not answer the PTR query:\n{text}");

    // Port security: vm-2 taking another address is cut off.
    guest2.exec(&["ip", "addr", "flush", "dev", "eth0"]);
    guest2.exec(&["ip", "addr", "add", "10.1.1.99/24", "dev", "eth0"]);
    assert!(
        !central.blocked_probe(|t| guest2.ping("10.1.1.23", t)),
        "port security must drop a spoofed source address"
    );

    // VM stop (NIC released, tap removed) and start again: same lease.
    run_all(nb, NIC_STOP, &vm1(42));
    guest1.unplug();
    assert!(!central.nbctl(&["lsp-list", "cs-net-42"]).contains(NIC1));
    run_all(nb, NIC_START, &vm1(42));
    let guest1 = hv.plug_vm("tap1", NIC1, MAC1);
    assert_eq!(guest1.dhcp().ip, "10.1.1.23");

    // Delete the network: nothing of ours stays in the NB.
    run_all(nb, NIC_STOP, &vm1(42));
    run_all(nb, NIC_STOP, &vm2_payload);
    ok(cs(nb, "shutdown-network", network(42)));
    ok(cs(nb, "destroy-network", network(42)));
    for table in ["Logical_Switch", "Logical_Switch_Port", "DHCP_Options", "DNS", "Port_Group"] {
        assert_eq!(nb.count_rows(table), 0, "{table} still has rows");
    }
}

/// Dual-stack: CloudStack allocates the NIC's IPv6 address as EUI-64 of its
/// MAC in the network's /64 and expects the VM to configure it by SLAAC.
/// The router port carries the IPv6 gateway and OVN advertises the prefix;
/// the VM's kernel derives exactly the address CloudStack recorded, which
/// port security lets through, and the gateway answers ping over IPv6.
#[test]
fn vms_configure_their_ipv6_address_from_router_advertisements() {
    let central = Central::start();
    let hv = Chassis::start(&central, "hv1");
    let nb = central.nb();
    let v6 = json!({"network_ip6_gateway": "fd00:42::1", "network_ip6_cidr": "fd00:42::/64"});
    twice(nb, "implement-network", with(network(43), v6.clone()));
    // 02:00:4c:3e:00:05 → interface id 0000:4cff:fe3e:0005 (U/L bit flipped).
    let expected = "fd00:42::4cff:fe3e:5";
    let nic = with(with(vm1(43), v6), json!({"ip6_address": expected}));
    run_all(nb, NIC_START, &nic);
    assert_eq!(
        central.nbctl(&["get", "Logical_Router_Port", "lrp-cs-net-43", "ipv6_ra_configs:address_mode"]),
        "slaac"
    );

    let guest = hv.plug_vm("tap1", NIC1, MAC1);
    let global = || {
        let out = guest.exec(&["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        wait_until(Duration::from_secs(30), || global().contains(&format!("{expected}/64"))),
        "no SLAAC address {expected}/64 on the VM: {}\n{}",
        global(),
        central.nbctl(&["list", "Logical_Router_Port", "lrp-cs-net-43"])
    );
    assert!(guest.ping("fd00:42::1", Duration::from_secs(15)), "the IPv6 gateway does not answer");

    // A later command without IPv6 fields (assign-ip carries none) keeps them.
    twice(nb, "implement-network", network(43));
    assert!(central.nbctl(&["get", "Logical_Router_Port", "lrp-cs-net-43", "networks"]).contains("fd00:42::1/64"));
}
