//! Operator features against real OVN: `extension-details` advertises
//! exactly what the binary dispatches, `doctor` on a healthy and on broken
//! installations (stopped NB, silent NB, wrong CA, chassis without the
//! bridge mapping, unknown gateway chassis), `--help`, the man page and
//! completions. The Debian package is checked by `scripts/check-deb.sh`.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use cloudstack_ovn::capabilities::{self, SERVICES};
use cloudstack_ovn::commands::COMMANDS;
use common::*;
use serde_json::{json, Value};

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// The binary with a clean environment plus `env` (the harness' `run_bin`).
fn product(args: &[&str], env: &[(&str, &str)]) -> Run {
    let r = run_bin(args, env);
    Run { code: r.code(), stdout: r.stdout(), stderr: r.stderr(), took: r.took }
}

/// A payload file holding `{"payload":{}}`: every implemented command
/// rejects it (or, without NB, cannot connect), an unimplemented one
/// answers "not supported yet".
fn unsupported(command: &str, dir: &Path) -> bool {
    let payload = dir.join("empty.payload");
    std::fs::write(&payload, json!({"payload": {}}).to_string()).unwrap();
    let dead = format!("unix:{}", dir.join("no-nb.sock").display());
    let r = product(&[command, payload.to_str().unwrap(), "5"], &[("OVN_NB_DB", &dead)]);
    assert!(r.stderr.is_empty(), "{command}: stderr {}", r.stderr);
    let says = r.stdout.contains(&format!("not supported yet: {command}"));
    assert_eq!(says, r.code == Some(6), "{command}: exit {:?}, {}", r.code, r.stdout);
    says
}

#[test]
fn extension_details_advertise_exactly_what_is_dispatched() {
    let r = product(&["extension-details", "--json"], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stdout);
    assert!(r.stderr.is_empty());
    let v = r.json();
    let details = &v["details"];
    assert_eq!(details["network.isolation.method"], "NetworkExtension");
    // Shared networks need CloudStack's extension_ip: the DHCP server id
    // and metadata address on their subnet (docs/cloudstack-setup.md).
    assert_eq!(details["network.allocate.extension.ip"], "true");
    assert!(v["registration"].to_string().contains("ovn.shared.network_name"), "{}", v["registration"]);
    assert_eq!(details["vif.binding"], "lswitch");
    let caps: Value = serde_json::from_str(details["network.service.capabilities"].as_str().unwrap())
        .expect("network.service.capabilities is JSON");
    assert_eq!(caps, v["capabilities"]);
    for (service, c) in caps.as_object().unwrap() {
        assert!(c.as_object().unwrap().values().all(Value::is_string), "{service}: values are strings");
    }
    let listed: Vec<&str> = details["network.services"].as_str().unwrap().split(',').collect();
    let with_caps: BTreeSet<&str> = caps.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(listed.iter().copied().collect::<BTreeSet<_>>(), with_caps);

    // What the binary dispatches, command by command.
    let dir = tempfile::tempdir().unwrap();
    let not_supported: BTreeSet<&str> =
        COMMANDS.iter().map(|c| c.name).filter(|c| unsupported(c, dir.path())).collect();
    for c in COMMANDS {
        assert_eq!(!not_supported.contains(c.name), c.implemented(), "{}: COMMANDS and dispatch disagree", c.name);
    }
    for s in SERVICES {
        // A withheld service (capabilities::WITHHELD; none today) works
        // but is not advertised.
        let works = s.commands().iter().all(|c| !not_supported.contains(c))
            && !cloudstack_ovn::capabilities::WITHHELD.contains(&s.name);
        assert_eq!(
            listed.contains(&s.name),
            works,
            "{} advertised={} but its commands {:?} answer 'not supported yet': {:?}",
            s.name,
            listed.contains(&s.name),
            s.commands(),
            s.commands().iter().filter(|c| not_supported.contains(*c)).collect::<Vec<_>>()
        );
    }
    // Names CloudStack knows, nothing we do not route.
    for name in &listed {
        assert!(SERVICES.iter().any(|s| s.name == *name), "{name}");
    }
    assert!(listed.contains(&"Dhcp") && listed.contains(&"SourceNat"), "{listed:?}");

    // The cmk form carries the same values.
    let r = product(&["extension-details", "--name", "ovn2"], &[("OVN_NB_DB", "ssl:10.0.0.1:6641")]);
    assert_eq!(r.code, Some(0));
    let text = &r.stdout;
    assert!(text.contains("cmk createExtension name=ovn2 type=NetworkOrchestrator path=ovn2/ovn2.sh"), "{text}");
    assert!(text.contains(&format!("'details[0].value={}'", capabilities::services_csv())), "{text}");
    assert!(text.contains("'details[2].value=NetworkExtension'"), "{text}");
    assert!(text.contains("cmk registerExtension") && text.contains("resourcetype=PhysicalNetwork"), "{text}");
    assert!(text.contains("'details[0].value=ssl:10.0.0.1:6641'"), "local setting used: {text}");
    assert!(text.contains("ovn.nb.ca_cert") && text.contains("ovn.gateway.chassis"), "{text}");
}

#[test]
fn help_man_page_and_completions_come_from_clap() {
    for args in [&["--help"][..], &["-h"], &["help"], &["help", "doctor"], &["doctor", "--help"]] {
        let r = product(args, &[]);
        assert_eq!(r.code, Some(0), "{args:?}: {}", r.stdout);
        assert!(r.stderr.is_empty());
    }
    let help = product(&["--help"], &[]).stdout;
    for c in COMMANDS.iter().map(|c| c.name) {
        assert!(help.contains(c), "--help lacks {c}");
    }
    assert!(help.contains("CloudStack implements a guest network (network implement/restart)"), "{help}");
    let v = product(&["--version"], &[]);
    assert_eq!(v.stdout.trim(), format!("cloudstack-ovn {}", env!("CARGO_PKG_VERSION")));

    let man = product(&["generate", "man"], &[]);
    assert_eq!(man.code, Some(0));
    assert!(man.stdout.starts_with(".ie") && man.stdout.contains(".TH cloudstack-ovn 1"), "{}", man.stdout);
    let text = man.stdout.replace("\\-", "-");
    for c in COMMANDS.iter().filter(|c| c.implemented()).map(|c| c.name) {
        assert!(text.contains(&format!("\\fB{c}\\fR")), "man page lacks {c}");
    }
    for word in ["extension-details", "doctor", "--timeout", "--json", "payload-file"] {
        assert!(text.contains(word), "man page lacks {word}");
    }
    for shell in ["bash", "zsh", "fish"] {
        let r = product(&["generate", "completions", shell], &[]);
        assert_eq!(r.code, Some(0), "{shell}");
        assert!(r.stdout.contains("extension-details") && r.stdout.contains("implement-network"), "{shell}");
    }

    // Operator usage errors: exit 2, nothing on stderr.
    let r = product(&["doctor", "--no-such-flag"], &[]);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.is_empty() && r.stdout.contains("--no-such-flag"), "{}", r.stdout);
    // The CloudStack path is untouched: unknown commands and unknown flags.
    let r = product(&["no-such-command", "--network-id", "1"], &[]);
    assert_eq!(r.code, Some(2));
    assert_eq!(r.json(), json!({"status": "error", "message": "unknown command: no-such-command"}));
}

fn checks(v: &Value) -> Vec<(String, String, String)> {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
                format!("{} / fix: {}", c["detail"].as_str().unwrap(), c["fix"].as_str().unwrap_or("")),
            )
        })
        .collect()
}

#[track_caller]
fn status_of(v: &Value, check: &str) -> (String, String) {
    let all = checks(v);
    let (_, s, d) = all.iter().find(|(c, _, _)| c == check).unwrap_or_else(|| panic!("no check {check}: {all:?}"));
    (s.clone(), d.clone())
}

#[test]
fn doctor_on_a_sandbox_then_with_broken_chassis_settings() {
    let central = Central::start();
    let hv = Chassis::start(&central, "hv1");
    let nb = central.nb_remote();
    let sb = central.sb_remote();
    let env = |gw: &str| {
        vec![("OVN_NB_DB", nb.clone()), ("OVN_SB_DB", sb.clone()), ("CLOUDSTACK_OVN_GATEWAY_CHASSIS", gw.to_string())]
    };
    let doctor = |gw: &str, json: bool| {
        let e = env(gw);
        let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let args: &[&str] = if json { &["doctor", "--json"] } else { &["doctor"] };
        let r = product(args, &e);
        assert!(r.stderr.is_empty(), "{}", r.stderr);
        r
    };

    // No bridge mapping yet; one gateway chassis does not exist.
    let r = doctor("hv1,hv-nowhere", true);
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    let v = r.json();
    assert_eq!(v["ok"], false);
    assert_eq!(status_of(&v, "nb leader").0, "ok");
    let (s, d) = status_of(&v, "nb schema");
    assert_eq!(s, "ok", "{d}");
    assert_eq!(status_of(&v, "sb chassis").0, "ok");
    let (s, d) = status_of(&v, "gateway chassis hv-nowhere");
    assert!(s == "fail" && d.contains("not registered") && d.contains("hv1") && d.contains("system-id"), "{d}");
    let (s, d) = status_of(&v, "gateway chassis hv1");
    assert!(s == "fail" && d.contains("ovn-bridge-mappings") && d.contains("public:br-ex"), "{d}");
    // Human table: the same problems, each with its fix.
    let r = doctor("hv1,hv-nowhere", false);
    assert_eq!(r.code, Some(1));
    assert!(r.stdout.contains("gateway chassis hv-nowhere") && r.stdout.contains("To fix:"), "{}", r.stdout);
    assert!(r.stdout.trim_end().ends_with("2 failed"), "{}", r.stdout);
    // Without gateway chassis: a warning, and no chassis maps the public network.
    let v = doctor("", true).json();
    assert_eq!(status_of(&v, "gateway chassis").0, "warn");
    let (s, d) = status_of(&v, "bridge mapping");
    assert!(s == "fail" && d.contains("no chassis"), "{d}");

    // The gateway gets its public bridge: healthy.
    let _outside = hv.add_public("public", None);
    assert!(
        wait_until(Duration::from_secs(20), || central.sbctl(&["list", "Chassis"]).contains("public:br-ex")),
        "ovn-controller did not publish the bridge mapping"
    );
    let r = doctor("hv1", false);
    assert_eq!(r.code, Some(0), "{}", r.stdout);
    assert!(r.stdout.contains("registered, bridge mapping public:br-ex"), "{}", r.stdout);
    assert!(r.stdout.trim_end().ends_with("0 failed"), "{}", r.stdout);
    let v = doctor("hv1", true).json();
    assert_eq!(v["ok"], true);
    assert!(checks(&v).iter().all(|(_, s, _)| s == "ok"), "{v}");

    // Shared networks: a physical network named on purpose must be mapped
    // on every chassis (VMs run anywhere), the default one is the public.
    let shared = |name: &str| {
        let mut e = env("hv1");
        e.push(("CLOUDSTACK_OVN_SHARED_NETWORK_NAME", name.to_string()));
        let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
        product(&["doctor", "--json"], &e)
    };
    let r = shared("guestphys");
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    let (s, d) = status_of(&r.json(), "shared bridge mapping");
    assert!(s == "fail" && d.contains("guestphys") && d.contains("hv1"), "{d}");
    let r = shared("public");
    assert_eq!(r.code, Some(0), "{}", r.stdout);
    assert_eq!(status_of(&r.json(), "shared bridge mapping").0, "ok");
}

#[test]
fn doctor_names_a_stopped_and_a_silent_nb() {
    let nb = Nb::start();
    let dead = format!("unix:{}", nb.dir().join("stopped-nb.sock").display());
    let r = product(&["doctor"], &[("OVN_NB_DB", &dead)]);
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert!(r.stderr.is_empty());
    assert!(r.stdout.contains(&format!("nb {dead}")) && r.stdout.contains("cannot connect"), "{}", r.stdout);
    assert!(r.stdout.contains("start the OVN_Northbound ovsdb-server"), "{}", r.stdout);

    // A live NB next to the dead one: the dead remote still fails.
    let both = format!("{dead},{}", nb.remote());
    let v = product(&["doctor", "--json"], &[("OVN_NB_DB", &both)]).json();
    assert_eq!(status_of(&v, &format!("nb {}", nb.remote())).0, "ok");
    assert_eq!(status_of(&v, &format!("nb {dead}")).0, "fail");
    assert_eq!(status_of(&v, "nb leader").0, "ok");
    // The NB alone is healthy (SB not configured: skipped).
    let r = product(&["doctor", "--json", "--nb", &nb.remote()], &[("OVN_NB_DB", &dead)]);
    assert_eq!(r.code, Some(0), "{}", r.stdout);
    assert_eq!(status_of(&r.json(), "sb").0, "skip");
    // The SB socket given as NB: does not serve OVN_Northbound.
    let central = Central::start();
    let r = product(&["doctor", "--nb", &central.sb_remote()], &[]);
    assert_eq!(r.code, Some(1));
    assert!(r.stdout.contains("does not serve OVN_Northbound"), "{}", r.stdout);

    // A server that accepts and never answers: bounded by --timeout.
    let silent = SilentPeer::start();
    let r = product(&["doctor", "--timeout", "1", "--nb", silent.remote()], &[]);
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert!(r.stdout.contains("deadline exceeded"), "{}", r.stdout);
    assert!(r.took < Duration::from_secs(5), "took {:?}", r.took);
}

#[test]
fn doctor_names_a_wrong_ca() {
    let nb = TlsNb::start();
    let remote = nb.remote();
    let (key, cert, ca) = (nb.client_key(), nb.client_cert(), nb.ca());
    let with_ca = |ca: &Path| {
        product(
            &["doctor", "--json"],
            &[
                ("OVN_NB_DB", &remote),
                ("OVN_NB_PRIVATE_KEY", key.to_str().unwrap()),
                ("OVN_NB_CERTIFICATE", cert.to_str().unwrap()),
                ("OVN_NB_CA_CERT", ca.to_str().unwrap()),
            ],
        )
    };
    let good = with_ca(&ca);
    assert_eq!(good.code, Some(0), "{}", good.stdout);
    let (s, d_ok) = status_of(&good.json(), &format!("nb {remote}"));
    assert!(s == "ok" && d_ok.contains("TLS ok"), "{d_ok}");

    let bad = with_ca(&nb.other_ca());
    assert_eq!(bad.code, Some(1), "{}", bad.stdout);
    let (s, detail) = status_of(&bad.json(), &format!("nb {remote}"));
    assert!(
        s == "fail" && detail.contains("certificate verify failed") && detail.contains("ovn.nb.ca_cert"),
        "{detail}"
    );
    assert_eq!(status_of(&bad.json(), "nb leader").0, "fail");
}

#[test]
fn doctor_finds_the_raft_leader() {
    let cluster = Cluster::start();
    let members = cluster.remotes();
    let all = members.join(",");
    let doctor = |nb: &str| product(&["doctor", "--json", "--nb", nb], &[]).json();
    // Every member joined and one was elected.
    let mut v = doctor(&all);
    assert!(
        wait_until(Duration::from_secs(20), || {
            v = doctor(&all);
            v["ok"] == true
        }),
        "{v}"
    );
    let roles: Vec<String> = members.iter().map(|c| status_of(&v, &format!("nb {c}")).1).collect();
    assert_eq!(roles.iter().filter(|r| r.contains("clustered leader")).count(), 1, "{roles:?}");
    assert_eq!(roles.iter().filter(|r| r.contains("clustered follower")).count(), 2, "{roles:?}");
    let (s, d) = status_of(&v, "nb leader");
    assert!(s == "ok" && d.contains("is the cluster leader"), "{d}");
    assert_eq!(status_of(&v, "nb schema").0, "ok");

    // Only the followers listed: commands would find no leader among them.
    let leader = roles.iter().position(|r| r.contains("clustered leader")).unwrap();
    let followers: Vec<&str> =
        members.iter().enumerate().filter(|(i, _)| *i != leader).map(|(_, c)| c.as_str()).collect();
    let v = doctor(&followers.join(","));
    assert_eq!(v["ok"], false);
    let (s, d) = status_of(&v, "nb leader");
    assert!(s == "fail" && d.contains("none of the 2 remotes is the cluster leader"), "{d}");
    // One follower alone is usable (it forwards writes).
    let v = doctor(followers[0]);
    assert_eq!(v["ok"], true, "{v}");
}
