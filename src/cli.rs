//! argv → [`Invocation`], for both generations of CloudStack's calling
//! convention (`docs/cli.md`):
//!
//! * `cloudstack-ovn <command> <payload-file> [<timeout-seconds>]`
//! * `cloudstack-ovn <command> --network-id 42 … [--nic-uuid <uuid>] …`
//!
//! Unknown flags are kept (as fields) and reported to the log, never
//! rejected: CloudStack adds arguments in new releases.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::payload::{self, Payload};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// CloudStack passes 60; anything above an hour is a typo, not a deadline.
const MAX_TIMEOUT_SECS: u64 = 3600;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// `<command> <payload-file> <timeout>` (upstream, Gen B/C).
    PayloadFile,
    /// `<command> --flag value …` (Gen A, incl. the `vif.binding=lswitch` fork).
    Flags,
}

#[derive(Debug)]
pub struct Invocation {
    pub command: String,
    pub style: Style,
    pub timeout: Duration,
    pub payload: Payload,
    /// Flags we do not know (logged, otherwise ignored).
    pub unknown_flags: Vec<String>,
}

/// Old command names (Fork-weizhou) and their current spelling.
pub fn canonical_command(name: &str) -> &str {
    match name {
        "implement" => "implement-network",
        "shutdown" => "shutdown-network",
        "destroy" => "destroy-network",
        other => other,
    }
}

/// Flags CloudStack is known to send (`docs/cli.md`); anything else is logged as unknown.
const KNOWN_FLAGS: &[&str] = &[
    "network-id",
    "vlan",
    "zone-id",
    "vpc-id",
    "current-details",
    "gateway",
    "cidr",
    "extension-ip",
    "public-ip",
    "public-vlan",
    "public-gateway",
    "public-cidr",
    "source-nat",
    "private-ip",
    "public-port",
    "private-port",
    "protocol",
    "fw-rules",
    "acl-rules",
    "lb-rules",
    "vm-data",
    "restore-data",
    "mac",
    "ip",
    "hostname",
    "dns",
    "default-nic",
    "domain",
    "nic-uuid",
    "nic-id",
    "options",
    "password",
    "userdata",
    "sshkey",
    "hypervisor-hostname",
    "action",
    "action-params",
    "netmask",
    "ip6-address",
    "ip6-gateway",
    "ip6-cidr",
    "network-ip6-gateway",
    "network-ip6-cidr",
    "guest-type",
    "network-state",
    "vpc-cidr",
    "vpc-state",
    "device-id",
    "timeout",
    payload::PHYSICAL_DETAILS,
    payload::NETWORK_DETAILS,
];

/// Flags whose `-file` variant names a file holding Base64 of JSON.
const FILE_FLAGS: &[&str] = &["fw-rules", "acl-rules", "vm-data", "restore-data"];

/// A CloudStack invocation. Operator words (`--help`, `doctor`, …) never
/// get here: `operator::route` takes them first.
pub fn parse(args: &[String]) -> Result<Invocation> {
    let Some(first) = args.get(1) else {
        return Err(Error::Usage(
            "usage: cloudstack-ovn <command> <payload-file> [<timeout-seconds>] (see --help)".into(),
        ));
    };
    let command = canonical_command(first).to_string();
    let rest = &args[2..];
    match rest.first() {
        Some(a) if !a.starts_with("--") => parse_payload_file(command, rest),
        _ => parse_flags(command, rest),
    }
}

fn parse_timeout(raw: &str) -> Result<Duration> {
    raw.trim().parse::<u64>().ok().filter(|s| (1..=MAX_TIMEOUT_SECS).contains(s)).map(Duration::from_secs).ok_or_else(
        || Error::Usage(format!("timeout must be a number of seconds between 1 and {MAX_TIMEOUT_SECS}, got {raw:?}")),
    )
}

fn parse_payload_file(command: String, rest: &[String]) -> Result<Invocation> {
    let path = Path::new(&rest[0]);
    let timeout = match rest.get(1) {
        Some(t) => parse_timeout(t)?,
        None => DEFAULT_TIMEOUT,
    };
    let text = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::Payload(format!("payload file {} does not exist", path.display())),
        _ => Error::Payload(format!("cannot read payload file {}: {e}", path.display())),
    })?;
    let doc: Value = serde_json::from_slice(&text)
        .map_err(|e| Error::Payload(format!("payload file {} is not valid JSON: {e}", path.display())))?;
    let payload = Payload::from_envelope(doc)?;
    let unknown_flags = rest.iter().skip(2).cloned().collect();
    Ok(Invocation { command, style: Style::PayloadFile, timeout, payload, unknown_flags })
}

fn parse_flags(command: String, rest: &[String]) -> Result<Invocation> {
    let mut payload = Payload::default();
    let mut unknown = Vec::new();
    let mut physical = None;
    let mut network = None;
    let mut timeout = DEFAULT_TIMEOUT;
    let mut i = 0;
    while i < rest.len() {
        let arg = &rest[i];
        let Some(flag) = arg.strip_prefix("--") else {
            unknown.push(arg.clone());
            i += 1;
            continue;
        };
        // `--flag=value` or `--flag value`; a flag directly followed by
        // another flag (or nothing) has an empty value.
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => match rest.get(i + 1) {
                Some(v) if !v.starts_with("--") => {
                    i += 1;
                    (flag.to_string(), v.clone())
                }
                _ => (flag.to_string(), String::new()),
            },
        };
        i += 1;
        match name.as_str() {
            payload::PHYSICAL_DETAILS => physical = Some(payload::details_from_flag(&name, &value)?),
            payload::NETWORK_DETAILS => network = Some(payload::details_from_flag(&name, &value)?),
            "timeout" => timeout = parse_timeout(&value)?,
            _ => {
                if let Some(base) = name.strip_suffix("-file").filter(|b| FILE_FLAGS.contains(b)) {
                    let doc = read_base64_json_file(&name, Path::new(&value))?;
                    payload.fields.insert(base.replace('-', "_"), doc);
                    continue;
                }
                if !KNOWN_FLAGS.contains(&name.as_str()) {
                    unknown.push(format!("--{name}"));
                }
                payload.fields.insert(name.replace('-', "_"), Value::String(value));
            }
        }
    }
    payload::set_details(&mut payload, physical.as_ref(), network.as_ref())?;
    Ok(Invocation { command, style: Style::Flags, timeout, payload, unknown_flags: unknown })
}

fn read_base64_json_file(flag: &str, path: &Path) -> Result<Value> {
    let raw = std::fs::read_to_string(path)
        .map_err(|e| Error::Payload(format!("--{flag} {}: {e}", PathBuf::from(path).display())))?;
    let trimmed: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(trimmed.as_bytes())
        .map_err(|_| Error::Payload(format!("--{flag} {}: not Base64", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Payload(format!("--{flag} {}: not JSON: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        std::iter::once("cloudstack-ovn").chain(v.iter().copied()).map(String::from).collect()
    }

    fn run(v: &[&str]) -> Invocation {
        parse(&args(v)).unwrap()
    }

    #[test]
    fn flag_style_with_aliases_unknown_flags_and_details() {
        let i = run(&[
            "implement",
            "--network-id",
            "42",
            "--vlan",
            "100",
            "--brand-new",
            "x",
            "--source-nat",
            "--nic-uuid",
            "3f0c0000-0000-4000-8000-000000000001",
            "--physical-network-extension-details",
            r#"{"ovn.nb.connection":"unix:/s"}"#,
            "--network-extension-details",
            "{}",
        ]);
        assert_eq!(i.command, "implement-network");
        assert_eq!(i.style, Style::Flags);
        assert_eq!(i.payload.str("network_id").as_deref(), Some("42"));
        assert_eq!(i.payload.str("source_nat").as_deref(), Some(""));
        assert_eq!(i.payload.str("nic_uuid").as_deref(), Some("3f0c0000-0000-4000-8000-000000000001"));
        assert_eq!(i.payload.physical_details["ovn.nb.connection"], "unix:/s");
        assert_eq!(i.unknown_flags, vec!["--brand-new".to_string()]);
    }

    #[test]
    fn file_flags_hold_base64_json() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("fw");
        std::fs::write(&f, base64::engine::general_purpose::STANDARD.encode(r#"{"rules":[]}"#)).unwrap();
        let i = run(&["apply-fw-rules", "--network-id", "1", "--fw-rules-file", f.to_str().unwrap()]);
        assert_eq!(i.payload.fields["fw_rules"], serde_json::json!({"rules": []}));
    }

    #[test]
    fn payload_file_style() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.payload");
        std::fs::write(&f, r#"{"payload":{"network_id":"9"}}"#).unwrap();
        let i = run(&["destroy-network", f.to_str().unwrap(), "30"]);
        assert_eq!(i.style, Style::PayloadFile);
        assert_eq!(i.timeout, Duration::from_secs(30));
        assert_eq!(i.payload.str("network_id").as_deref(), Some("9"));
    }

    #[test]
    fn usage_errors() {
        assert!(parse(&args(&[])).is_err());
        assert!(matches!(parse(&args(&["prepare-nic", "/nonexistent/p.json", "60"])), Err(Error::Payload(_))));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p");
        std::fs::write(&f, "{not json").unwrap();
        assert!(matches!(parse(&args(&["prepare-nic", f.to_str().unwrap()])), Err(Error::Payload(_))));
        std::fs::write(&f, "{}").unwrap();
        assert!(matches!(parse(&args(&["prepare-nic", f.to_str().unwrap(), "soon"])), Err(Error::Usage(_))));
    }
}
