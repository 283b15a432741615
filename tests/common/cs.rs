//! Running the product binary the way CloudStack does.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::util::{next_id, run, LabDir};

/// Deadline for one product run (it is told 60 s and must enforce that itself).
const CS_TIMEOUT: Duration = Duration::from_secs(120);

/// Path of the product binary built by cargo for these tests.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cloudstack-ovn")
}

/// `{"physical-network-extension-details":{"physicalnetworkname":"pn1"},
///   "network-extension-details":{},"payload":payload}`
pub fn envelope(payload: Value) -> Value {
    json!({
        "physical-network-extension-details": {"physicalnetworkname": "pn1"},
        "network-extension-details": {},
        "payload": payload,
    })
}

/// Output of one product run plus the content of its log file.
#[derive(Debug)]
pub struct CsRun {
    pub output: Output,
    /// `CLOUDSTACK_OVN_LOG` content ("" if the product wrote none).
    pub log: String,
    /// Wall-clock time of the run.
    pub took: Duration,
}

impl CsRun {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn success(&self) -> bool {
        self.output.status.success()
    }

    /// Exit code (`None` if killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }
}

/// Upstream (payload-file) style: writes `envelope` (compact JSON) to
/// `<tmp>/cs-extnet-<command>-<n>.payload` and runs
/// `<bin> <command> <payload-file> 60` with `OVN_NB_DB=<nb_remote>`,
/// `CLOUDSTACK_OVN_LOG=<tmp>/cloudstack-ovn.log`,
/// `CLOUDSTACK_OVN_CONFIG=/nonexistent`, cwd = `<tmp>`.
/// On a non-zero exit the product log is printed to the (captured) test
/// stderr.
pub fn run_cs(nb_remote: &str, command: &str, envelope: &Value) -> Output {
    run_cs_logged(nb_remote, command, envelope).output
}

/// [`run_cs`] that also returns the product's log file content.
pub fn run_cs_logged(nb_remote: &str, command: &str, envelope: &Value) -> CsRun {
    let dir = LabDir::new("cs");
    let payload = dir.file(&format!("cs-extnet-{command}-{}.payload", next_id()));
    std::fs::write(&payload, envelope.to_string()).expect("write payload file");
    let payload = payload.to_string_lossy().into_owned();
    run_in(&dir, &[command, &payload, "60"], &[("OVN_NB_DB", nb_remote)])
}

/// Legacy `--flag value` style: `<bin> <command> ARGS...`, same environment.
pub fn run_cs_flags(nb_remote: &str, command: &str, args: &[&str]) -> Output {
    run_cs_flags_logged(nb_remote, command, args).output
}

/// [`run_cs_flags`] that also returns the product's log file content.
pub fn run_cs_flags_logged(nb_remote: &str, command: &str, args: &[&str]) -> CsRun {
    let dir = LabDir::new("cs");
    let mut all = vec![command];
    all.extend_from_slice(args);
    run_in(&dir, &all, &[("OVN_NB_DB", nb_remote)])
}

/// Any invocation of the binary (operator subcommands, `--help`, ...):
/// `<bin> ARGS...` with cwd = a fresh temp dir, no config file, the log in
/// that dir, none of the caller's `OVN_*` / `CLOUDSTACK_OVN_*` variables,
/// then `env` on top.
pub fn run_bin(args: &[&str], env: &[(&str, &str)]) -> CsRun {
    run_in(&LabDir::new("cs"), args, env)
}

fn run_in(dir: &LabDir, args: &[&str], env: &[(&str, &str)]) -> CsRun {
    let log_file = dir.file("cloudstack-ovn.log");
    let mut c = Command::new(bin());
    c.args(args).current_dir(dir.path()).stdin(std::process::Stdio::null());
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("OVN_") || k.starts_with("CLOUDSTACK_OVN_") {
            c.env_remove(&*k);
        }
    }
    c.env("CLOUDSTACK_OVN_LOG", &log_file).env("CLOUDSTACK_OVN_CONFIG", "/nonexistent");
    for (k, v) in env {
        c.env(k, v);
    }
    let started = Instant::now();
    let output = run(&mut c, CS_TIMEOUT);
    let took = started.elapsed();
    let log = std::fs::read_to_string(&log_file).unwrap_or_default();
    if !output.status.success() {
        eprintln!(
            "[harness] cloudstack-ovn {} exited with {}\n--- stdout+stderr:\n{}{}\n--- log:\n{}",
            args.first().copied().unwrap_or_default(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            log
        );
    }
    CsRun { output, log, took }
}
