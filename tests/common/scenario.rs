//! CloudStack-side helpers shared by the integration tests: payloads as
//! CloudStack builds them, the ensure-before-every-command calling pattern,
//! and the stdout/exit-code assertions of the protocol.

use std::process::Output;

use serde_json::{json, Value};

use super::{envelope, run_cs, run_cs_logged, CsRun, Nb};

pub const NIC1: &str = "3f0c0000-0000-4000-8000-000000000001";
pub const NIC2: &str = "3f0c0000-0000-4000-8000-000000000002";

pub fn network(id: u32) -> Value {
    json!({"network_id": id.to_string(), "vlan": format!("cs-net-{id}"), "zone_id": "1", "guest_type": "isolated",
           "network_state": "implemented", "gateway": "10.1.1.1", "cidr": "10.1.1.0/24", "extension_ip": "10.1.1.1"})
}

pub fn nic(id: u32, uuid: &str, mac: &str, ip: &str, hostname: &str, default_nic: bool) -> Value {
    let mut p = network(id);
    let extra = json!({"nic_id": "77", "nic_uuid": uuid, "mac": mac, "ip": ip, "netmask": "255.255.255.0",
        "default_nic": default_nic.to_string(), "device_id": "0", "hostname": hostname,
        "dns": "10.1.1.53,8.8.8.8", "domain": "cs.example"});
    p.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    p
}

pub fn vm1(id: u32) -> Value {
    nic(id, NIC1, "02:00:4c:3e:00:05", "10.1.1.23", "vm-1", true)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Success means exit 0, nothing on stderr, and (unless the command has
/// output) nothing on stdout: CloudStack merges and parses both.
#[track_caller]
pub fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}, stdout {}, stderr {}",
        o.status.code(),
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.stderr.is_empty(), "stderr must stay empty: {}", String::from_utf8_lossy(&o.stderr));
    stdout(&o)
}

/// Failure: non-zero exit with exactly one line of JSON error on stdout.
#[track_caller]
pub fn fails(o: Output, code: i32) -> String {
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(code), "stdout {out}");
    assert!(o.stderr.is_empty(), "stderr must stay empty: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(out.lines().count(), 1, "one line: {out}");
    let v: Value = serde_json::from_str(&out).expect("error output is JSON");
    assert_eq!(v["status"], "error");
    v["message"].as_str().unwrap().to_string()
}

/// CloudStack spawns ensure-network-device before every command.
pub fn cs(nb: &Nb, command: &str, payload: Value) -> Output {
    cs_logged(nb, command, payload).output
}

/// [`cs`] that also returns the command's log.
pub fn cs_logged(nb: &Nb, command: &str, payload: Value) -> CsRun {
    let mut ensure = json!({"network_id": payload["network_id"], "vlan": "", "zone_id": "1", "current_details": "{}"});
    if payload.get("network_id").is_none() {
        ensure = json!({"vpc_id": payload["vpc_id"], "zone_id": "1", "current_details": "{}"});
    }
    let out = ok(run_cs(&nb.remote(), "ensure-network-device", &envelope(ensure)));
    let v: Value = serde_json::from_str(&out).expect("ensure-network-device prints JSON");
    assert!(v.is_object() && out.lines().count() == 1, "{out}");
    run_cs_logged(&nb.remote(), command, &registered(payload))
}

/// The gateway chassis the scenarios register (the data-plane chassis' name).
pub const GATEWAY_CHASSIS: &str = "hv1";

/// An envelope whose registration details name the gateway chassis, as an
/// operator registers the extension on the physical network.
pub fn registered(payload: Value) -> Value {
    let mut env = envelope(payload);
    env["physical-network-extension-details"]["ovn.gateway.chassis"] = json!(GATEWAY_CHASSIS);
    env
}

/// Public-IP fields of the payload (§4.4), on VLAN `vlan` of 203.0.113.0/24.
pub fn public(payload: Value, ip: &str, source_nat: bool, vlan: &str) -> Value {
    with(
        payload,
        json!({"public_ip": ip, "public_vlan": vlan, "public_gateway": "203.0.113.1",
               "public_cidr": "203.0.113.0/24", "source_nat": source_nat.to_string()}),
    )
}

/// `payload` with `extra`'s fields added or replaced.
pub fn with(mut payload: Value, extra: Value) -> Value {
    payload.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    payload
}

/// A VPC tier's network payload.
pub fn tier(vpc: u32, id: u32, octet: u8) -> Value {
    json!({"network_id": id.to_string(), "vpc_id": vpc.to_string(), "vlan": format!("cs-net-{id}"), "zone_id": "1",
           "guest_type": "isolated", "gateway": format!("10.7.{octet}.1"), "cidr": format!("10.7.{octet}.0/24")})
}

/// VPC-level payload (implement-vpc, update-vpc-source-nat-ip, shutdown-vpc).
pub fn vpc(id: u32) -> Value {
    json!({"vpc_id": id.to_string(), "zone_id": "1", "vpc_state": "enabled", "vpc_cidr": "10.7.0.0/16"})
}

/// Run a command twice; the second run must change nothing.
#[track_caller]
pub fn twice(nb: &Nb, command: &str, payload: Value) -> String {
    let out = ok(cs(nb, command, payload.clone()));
    let after_first = nb.snapshot();
    let second = cs_logged(nb, command, payload);
    let out2 = ok(second.output);
    assert_eq!(out, out2, "{command}: same output both times");
    assert_eq!(after_first, nb.snapshot(), "{command}: second run changed the NB");
    // Converged means no write transaction at all, not one that rewrites
    // the same values.
    assert!(
        second.log.lines().any(|l| l.contains(&format!("command={command} ")) && l.contains(" rows_changed=0 ")),
        "{command}: the second run planned a write:\n{}",
        second.log
    );
    out
}

/// The per-NIC commands CloudStack sends when a VM starts (with
/// `DhcpAccrossMultipleSubnets=true`), each preceded by ensure-network-device.
pub const NIC_START: &[&str] =
    &["prepare-nic", "config-dhcp-subnet", "add-dhcp-entry", "config-dns-subnet", "add-dns-entry"];

/// What CloudStack sends when a VM's NIC goes away.
pub const NIC_STOP: &[&str] = &["release-nic", "remove-dhcp-entry", "remove-dns-entry"];

pub fn run_all(nb: &Nb, commands: &[&str], payload: &Value) {
    for c in commands {
        ok(cs(nb, c, payload.clone()));
    }
}

/// The product binary with a private log file, no config file, and the NB
/// at `nb_remote`; tests add or override environment and arguments.
pub fn product(nb_remote: &str, log: &std::path::Path) -> std::process::Command {
    let mut c = std::process::Command::new(super::bin());
    c.env("OVN_NB_DB", nb_remote).env("CLOUDSTACK_OVN_LOG", log).env("CLOUDSTACK_OVN_CONFIG", "/nonexistent");
    c
}

/// The rows that differ between two NB snapshots, one per line.
pub fn snapshot_diff(a: &Value, b: &Value) -> String {
    let mut out = String::new();
    let empty = serde_json::Map::new();
    for (table, rows_a) in a.as_object().unwrap() {
        let rows_a = rows_a.as_object().unwrap_or(&empty);
        let rows_b = b[table].as_object().unwrap_or(&empty);
        for (uuid, row) in rows_a {
            match rows_b.get(uuid) {
                None => out.push_str(&format!("- {table} {uuid} {row}\n")),
                Some(r) if r != row => out.push_str(&format!("~ {table} {uuid}\n    {row}\n -> {r}\n")),
                _ => {}
            }
        }
        for (uuid, row) in rows_b {
            if !rows_a.contains_key(uuid) {
                out.push_str(&format!("+ {table} {uuid} {row}\n"));
            }
        }
    }
    out
}

/// How many rows of any table carry our ownership tag.
pub fn owned_rows(nb: &Nb) -> usize {
    let snap = nb.snapshot();
    let ours = json!(["cloudstack:owner", "cloudstack"]);
    snap.as_object()
        .unwrap()
        .values()
        .flat_map(|rows| rows.as_object().unwrap().values())
        .filter(|row| row["external_ids"][1].as_array().is_some_and(|pairs| pairs.contains(&ours)))
        .count()
}
