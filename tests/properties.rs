//! Property tests against a real NB, with a seeded generator (reproducible:
//! a failure prints its seed; `CSOVN_SEED=<n>` replays it):
//! 1. mutated CloudStack payloads never crash the program: every run exits
//!    with a documented code, prints nothing on stderr, and a failure prints
//!    exactly one JSON line;
//! 2. for random valid command sequences, running any command again plans
//!    nothing: no write is sent and the NB is identical after the second run;
//! 3. argv and environment bytes that are not UTF-8, and oversize payloads,
//!    keep the same contract as 1.

mod common;

use common::scenario::*;
use common::*;
use std::process::Output;

use serde_json::{json, Map, Value};

/// xorshift64*: small, deterministic, good enough to pick test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

fn seed() -> u64 {
    std::env::var("CSOVN_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_c10d_57ac_0001)
}

/// A value of a random JSON type, including hostile strings.
fn junk(rng: &mut Rng) -> Value {
    match rng.below(12) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(rng.next() as i64),
        3 => json!(-1),
        4 => json!(1.5e300),
        5 => json!(""),
        6 => json!("\"quoted\" \\ back; drop table"),
        7 => json!("x".repeat(rng.below(5000) as usize)),
        8 => json!(["a", 1, {"b": null}]),
        9 => json!({"nested": {"deep": [1, 2, 3]}}),
        10 => json!("ÿ\u{0}\u{1f}é中"),
        _ => json!("10.1.1.999/40"),
    }
}

fn valid_payloads() -> Vec<(&'static str, Value)> {
    let pf = with(
        public(network(9), "203.0.113.12", false, "vlan://101"),
        json!({"private_ip": "10.1.1.23", "public_port": "2222", "private_port": "22", "protocol": "tcp"}),
    );
    vec![
        ("implement-network", network(9)),
        ("prepare-nic", vm1(9)),
        ("add-dhcp-entry", vm1(9)),
        ("add-dns-entry", vm1(9)),
        ("assign-ip", public(network(9), "203.0.113.10", true, "vlan://101")),
        ("add-static-nat", with(public(network(9), "203.0.113.11", false, "101"), json!({"private_ip": "10.1.1.23"}))),
        ("add-port-forward", pf),
        (
            "apply-fw-rules",
            with(
                network(9),
                json!({"fw_rules": {"default_egress_allow": false, "cidr": "10.1.1.0/24", "rules": [
                {"id": 1, "type": "ingress", "protocol": "tcp", "portStart": 22, "portEnd": 22, "publicIp": "203.0.113.11", "sourceCidrs": ["0.0.0.0/0"]},
                {"id": 2, "type": "egress", "protocol": "udp", "portStart": 53, "portEnd": 53, "destCidrs": ["8.8.8.8/32"]}]}}),
            ),
        ),
        (
            "apply-lb-rules",
            with(
                network(9),
                json!({"lb_rules": [{"id": 4, "publicIp": "203.0.113.10", "publicPort": 80, "privatePort": 8080,
                "protocol": "tcp", "algorithm": "source", "revoke": false, "backends": [{"ip": "10.1.1.23", "port": 8080, "revoked": false}]}]}),
            ),
        ),
        (
            "apply-network-acl",
            with(
                network(9),
                json!({"acl_rules": [{"number": 1, "action": "allow", "trafficType": "egress", "protocol": "all", "sourceCidrs": []}]}),
            ),
        ),
        ("release-nic", vm1(9)),
        ("release-ip", public(network(9), "203.0.113.11", false, "101")),
        ("shutdown-network", network(9)),
        ("destroy-network", network(9)),
    ]
}

/// Replace, drop or add one field at the top level or one level down.
fn mutate(rng: &mut Rng, v: &Value) -> Value {
    let mut v = v.clone();
    let Some(obj) = v.as_object_mut() else { return v };
    let keys: Vec<String> = obj.keys().cloned().collect();
    match rng.below(4) {
        0 if !keys.is_empty() => {
            obj.remove(rng.pick(&keys));
        }
        1 if !keys.is_empty() => {
            let k = rng.pick(&keys).clone();
            obj.insert(k, junk(rng));
        }
        2 => {
            // Inside a nested document (fw_rules, lb_rules, ...), if any.
            for k in &keys {
                if let Some(inner) = obj.get_mut(k) {
                    if inner.is_object() || inner.is_array() {
                        *inner = mutate_deep(rng, inner);
                        break;
                    }
                }
            }
        }
        _ => {
            obj.insert(format!("unknown_{}", rng.below(100)), junk(rng));
        }
    }
    v
}

fn mutate_deep(rng: &mut Rng, v: &Value) -> Value {
    match v {
        Value::Array(items) if !items.is_empty() => {
            let mut items = items.clone();
            let i = rng.below(items.len() as u64) as usize;
            items[i] = if rng.below(2) == 0 { mutate(rng, &items[i]) } else { junk(rng) };
            Value::Array(items)
        }
        Value::Object(_) => mutate(rng, v),
        _ => junk(rng),
    }
}

#[test]
fn mutated_payloads_never_crash() {
    let nb = Nb::start();
    let mut rng = Rng(seed());
    let valid = valid_payloads();
    let documented = [0, 2, 3, 4, 5, 6];
    for case in 0..250 {
        let (command, payload) = rng.pick(&valid).clone();
        let mut doc = registered(mutate(&mut rng, &payload));
        if rng.below(10) == 0 {
            // The envelope itself damaged.
            let keys: Vec<String> = doc.as_object().unwrap().keys().cloned().collect();
            let k = rng.pick(&keys).clone();
            doc[k] = junk(&mut rng);
        }
        let out = run_cs(&nb.remote(), command, &doc);
        let code = out.status.code();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let context = format!("seed {} case {case}: {command} {doc}", seed());
        assert!(code.is_some_and(|c| documented.contains(&c)), "exit {code:?} (crash?) for {context}\n{stdout}");
        assert!(out.stderr.is_empty(), "stderr for {context}: {}", String::from_utf8_lossy(&out.stderr));
        if code != Some(0) {
            assert_eq!(stdout.trim().lines().count(), 1, "{context}\n{stdout}");
            let v: Value =
                serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e} for {context}: {stdout}"));
            assert_eq!(v["status"], "error", "{context}");
        }
    }
}

#[test]
fn random_valid_sequences_are_idempotent() {
    let mut rng = Rng(seed() ^ 0xabcd);
    let valid = valid_payloads();
    for round in 0..6 {
        let nb = Nb::start();
        let mut seen: Map<String, Value> = Map::new();
        for step in 0..12 {
            let (command, payload) = rng.pick(&valid).clone();
            let out = run_cs(&nb.remote(), command, &registered(payload.clone()));
            // A command may legitimately refuse in the current state (e.g. an
            // LB rule before its IP was assigned); what it must never do is
            // change anything on a second run.
            if !out.status.success() {
                continue;
            }
            let first = nb.snapshot();
            let again = run_cs_logged(&nb.remote(), command, &registered(payload));
            assert!(
                again.output.status.success(),
                "seed {} round {round} step {step}: {command} failed the second time",
                seed()
            );
            assert!(
                again.log.contains(" rows_changed=0 "),
                "seed {} round {round} step {step}: {command} planned a write the second time:\n{}",
                seed(),
                again.log
            );
            let second = nb.snapshot();
            assert!(
                first == second,
                "seed {} round {round} step {step}: {command} is not idempotent:\n{}",
                seed(),
                snapshot_diff(&first, &second)
            );
            seen.insert(command.to_string(), Value::Bool(true));
        }
        assert!(seen.len() >= 3, "round {round} exercised too few commands: {seen:?}");
    }
}

/// Run the binary with raw argv and extra environment (each may hold bytes
/// that are not UTF-8).
fn run_raw(nb: &Nb, args: &[std::ffi::OsString], env: &[(std::ffi::OsString, std::ffi::OsString)]) -> RawRun {
    let dir = tempfile::Builder::new().prefix("csovn-prop-").tempdir_in("/tmp").unwrap();
    let mut c = std::process::Command::new(bin());
    c.args(args)
        .current_dir(dir.path())
        .env("OVN_NB_DB", nb.remote())
        .env("CLOUDSTACK_OVN_LOG", dir.path().join("cloudstack-ovn.log"))
        .env("CLOUDSTACK_OVN_CONFIG", "/nonexistent")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = try_run(&mut c, std::time::Duration::from_secs(120)).unwrap_or_else(|e| panic!("{e}"));
    let log = std::fs::read_to_string(dir.path().join("cloudstack-ovn.log")).unwrap_or_default();
    RawRun { out, log }
}

struct RawRun {
    out: Output,
    log: String,
}

impl std::ops::Deref for RawRun {
    type Target = Output;
    fn deref(&self) -> &Output {
        &self.out
    }
}

/// The contract for any input: a documented exit code, nothing on stderr,
/// and on failure exactly one short JSON error line.
fn assert_contract(out: &Output, context: &str) {
    let code = out.status.code();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(code.is_some_and(|c| [0, 2, 3, 4, 5, 6].contains(&c)), "exit {code:?} (crash?) for {context}\n{stdout}");
    assert!(out.stderr.is_empty(), "stderr for {context}: {}", String::from_utf8_lossy(&out.stderr));
    if code != Some(0) {
        assert_eq!(stdout.trim().lines().count(), 1, "{context}\n{stdout}");
        assert!(stdout.len() < 4096, "{context}: a {} byte error line", stdout.len());
        let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e} for {context}: {stdout}"));
        assert_eq!(v["status"], "error", "{context}");
    }
}

/// Bytes that are not UTF-8 (a Latin-1 `é`, a lone continuation byte, an
/// overlong NUL, a surrogate half).
fn not_utf8(rng: &mut Rng) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let bad: &[&[u8]] = &[b"caf\xe9", b"\xff", b"\x80abc", b"\xc0\x80", b"\xed\xa0\x80", b"--fw-rules\xfe"];
    std::ffi::OsString::from_vec(rng.pick(bad).to_vec())
}

/// Issue 9 #4: argv or environment bytes that are not UTF-8 never crash the
/// process; where they sit in a field we use, the answer is a clear error,
/// elsewhere they are ignored.
#[test]
fn non_utf8_argv_and_environment_never_crash() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let nb = Nb::start();
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("p.payload");
    std::fs::write(&payload, registered(network(9)).to_string()).unwrap();
    let ok: Vec<OsString> = vec!["implement-network".into(), payload.clone().into(), "60".into()];

    // Unrelated environment: ignored.
    let env = [(OsString::from("LC_FOO"), OsString::from_vec(b"caf\xe9".to_vec()))];
    let out = run_raw(&nb, &ok, &env);
    assert_contract(&out, "LC_FOO=caf\\xe9");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let env = [(OsString::from_vec(b"X\xff".to_vec()), OsString::from("1"))];
    assert_eq!(run_raw(&nb, &ok, &env).status.code(), Some(0), "a non-UTF-8 variable name");
    // A variable we read: a configuration error.
    let env = [(OsString::from("OVN_NB_DB"), OsString::from_vec(b"unix:/\xff".to_vec()))];
    let out = run_raw(&nb, &ok, &env);
    assert_contract(&out, "OVN_NB_DB=unix:/\\xff");
    assert_eq!(out.status.code(), Some(3));
    // ... while the other variables (the log path) still apply.
    assert!(out.log.contains("OVN_NB_DB is not valid UTF-8"), "{}", out.log);

    // A payload file whose name is not UTF-8 is still a file.
    let odd = dir.path().join(OsString::from_vec(b"p-\xe9.payload".to_vec()));
    std::fs::copy(&payload, &odd).unwrap();
    let out = run_raw(&nb, &["implement-network".into(), odd.into(), "60".into()], &[]);
    assert_contract(&out, "payload path not UTF-8");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    // A field we use: exit 2.
    for args in [
        vec![not_utf8(&mut Rng(1)), payload.clone().into()],
        vec!["implement-network".into(), payload.clone().into(), OsString::from_vec(b"6\xff".to_vec())],
        vec!["implement-network".into(), "--network-id".into(), OsString::from_vec(b"9\xff".to_vec())],
        vec!["implement-network".into(), OsString::from_vec(b"--network-id=9\xff".to_vec())],
    ] {
        let out = run_raw(&nb, &args, &[]);
        assert_contract(&out, &format!("{args:?}"));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stdout));
    }
    // Unknown trailing arguments and flags: ignored.
    let mut args = ok.clone();
    args.push(OsString::from_vec(b"--brand-new\xff".to_vec()));
    args.push(OsString::from_vec(b"v\xff".to_vec()));
    assert_eq!(run_raw(&nb, &args, &[]).status.code(), Some(0));

    // Operator requests (human text, not JSON): a usage error, no crash.
    for word in ["doctor", "extension-details", "audit", "--help"] {
        let out = run_raw(&nb, &[word.into(), not_utf8(&mut Rng(7))], &[]);
        assert_eq!(out.status.code(), Some(2), "{word}: {}", String::from_utf8_lossy(&out.stdout));
        assert!(out.stderr.is_empty(), "{word}: {}", String::from_utf8_lossy(&out.stderr));
    }

    // Random positions.
    let mut rng = Rng(seed() ^ 0x0f8);
    let words = ["implement-network", "prepare-nic", "add-dhcp-entry", "no-such-command", "save-password"];
    for case in 0..40 {
        let mut args: Vec<OsString> = vec![(*rng.pick(&words)).into(), payload.clone().into(), "60".into()];
        let at = rng.below(args.len() as u64 + 1) as usize;
        args.insert(at.min(args.len()), not_utf8(&mut rng));
        let env = [(OsString::from(format!("LC_{case}")), not_utf8(&mut rng))];
        assert_contract(&run_raw(&nb, &args, &env), &format!("seed {} case {case}: {args:?}", seed()));
    }
}

/// Issue 9 #11: oversize input is refused or quoted in part, never echoed
/// whole, and never exhausts memory.
#[test]
fn oversize_inputs_are_bounded() {
    let nb = Nb::start();
    let mut rng = Rng(seed() ^ 0x512e);
    let valid = valid_payloads();
    let dir = tempfile::tempdir().unwrap();
    for case in 0..12 {
        let (command, payload) = rng.pick(&valid).clone();
        let mut doc = registered(payload);
        let size = [1 << 20, 3 << 20, 9 << 20, 40 << 20][rng.below(4) as usize];
        let keys: Vec<String> = doc["payload"].as_object().unwrap().keys().cloned().collect();
        let key = rng.pick(&keys).clone();
        doc["payload"][&key] = json!("9".repeat(size));
        let file = dir.path().join(format!("big-{case}.payload"));
        std::fs::write(&file, doc.to_string()).unwrap();
        let out = run_raw(&nb, &[command.into(), file.into(), "60".into()], &[]);
        let context = format!("seed {} case {case}: {command} {key} of {size} bytes", seed());
        assert_contract(&out, &context);
        if size > 8 << 20 {
            assert_eq!(out.status.code(), Some(2), "{context}");
        }
    }
}
