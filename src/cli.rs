//! argv → [`Invocation`], for both generations of CloudStack's calling
//! convention (`docs/cli.md`):
//!
//! * `cloudstack-ovn <command> <payload-file> [<timeout-seconds>]`
//! * `cloudstack-ovn <command> --network-id 42 … [--nic-uuid <uuid>] …`
//!
//! Unknown flags are kept (as fields) and reported to the log, never
//! rejected: CloudStack adds arguments in new releases.
//!
//! argv arrives as bytes ([`parse_os`]): an argument that is not UTF-8 is
//! an error only where we use it (the command, the timeout, a known flag's
//! value); the payload path is used as the bytes it is; unknown arguments
//! are ignored as ever. Files are read within the deadline and at most
//! [`files::MAX_PAYLOAD`] bytes ([`crate::files`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::files;
use crate::ovsdb::Deadline;
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
    /// `timeout` from when argv was parsed: bounds everything after it.
    pub deadline: Deadline,
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

/// `args[1]` for messages, whatever its bytes.
pub fn command_name(args: &[OsString]) -> String {
    args.get(1).map(|a| a.to_string_lossy().into_owned()).unwrap_or_default()
}

/// [`parse`] for argv as the OS gives it.
pub fn parse_os(args: &[OsString]) -> Result<Invocation> {
    let lossy: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let bad: Vec<bool> = args.iter().map(|a| a.to_str().is_none()).collect();
    parse_inner(&lossy, &bad, args)
}

pub fn parse(args: &[String]) -> Result<Invocation> {
    let raw: Vec<OsString> = args.iter().map(OsString::from).collect();
    parse_inner(args, &vec![false; args.len()], &raw)
}

/// `bad[i]`: `args[i]` was not UTF-8 (and is lossy here); `raw` is argv as given.
fn parse_inner(args: &[String], bad: &[bool], raw: &[OsString]) -> Result<Invocation> {
    let Some(first) = args.get(1) else {
        return Err(Error::Usage(
            "usage: cloudstack-ovn <command> <payload-file> [<timeout-seconds>] (see --help)".into(),
        ));
    };
    if bad[1] {
        return Err(Error::Usage(format!("the command name {first:?} is not valid UTF-8")));
    }
    let command = canonical_command(first).to_string();
    let rest = &args[2..];
    match rest.first() {
        Some(a) if !a.starts_with("--") => parse_payload_file(command, rest, &bad[2..], &raw[2..]),
        _ => parse_flags(command, rest, &bad[2..]),
    }
}

fn parse_timeout(raw: &str) -> Result<Duration> {
    crate::payload::types::decimal(raw.trim())
        .map(u64::from)
        .filter(|s| (1..=MAX_TIMEOUT_SECS).contains(s))
        .map(Duration::from_secs)
        .ok_or_else(|| {
            Error::Usage(format!("timeout must be a number of seconds between 1 and {MAX_TIMEOUT_SECS}, got {raw:?}"))
        })
}

fn parse_payload_file(command: String, rest: &[String], bad: &[bool], raw: &[OsString]) -> Result<Invocation> {
    // The path is used as given, UTF-8 or not.
    let path = Path::new(&raw[0]);
    let timeout = match rest.get(1) {
        Some(t) if bad[1] => return Err(Error::Usage(format!("the timeout {t:?} is not valid UTF-8"))),
        Some(t) => parse_timeout(t)?,
        None => DEFAULT_TIMEOUT,
    };
    let deadline = Deadline::after(timeout);
    let text = read_input(path, deadline).map_err(|e| Error::Payload(format!("payload file {e}")))?;
    let doc: Value = serde_json::from_slice(&text)
        .map_err(|e| Error::Payload(format!("payload file {} is not valid JSON: {e}", path.display())))?;
    let payload = Payload::from_envelope(doc)?;
    let unknown_flags = rest.iter().skip(2).map(|a| redact_arg(a)).collect();
    Ok(Invocation { command, style: Style::PayloadFile, timeout, deadline, payload, unknown_flags })
}

/// A payload or `--*-file` document: a regular file, within the deadline and
/// the size cap.
fn read_input(path: &Path, deadline: Deadline) -> Result<Vec<u8>, files::ReadError> {
    let budget = deadline.remaining().map_err(|_| files::ReadError::Deadline(path.to_path_buf()))?;
    files::read(path, files::MAX_PAYLOAD, budget)
}

/// An ignored argument as it may be logged: `--secret=value` loses its value.
fn redact_arg(arg: &str) -> String {
    match arg.strip_prefix("--").and_then(|f| f.split_once('=')) {
        Some((name, _)) if crate::redact::is_secret_key(name) => format!("--{name}=***"),
        _ => arg.to_string(),
    }
}

/// Is `arg` one of the flags we know (`--name` or `--name=value`)?
fn is_known_flag(arg: &str) -> bool {
    arg.strip_prefix("--").map(|f| f.split('=').next().unwrap_or(f)).is_some_and(|name| {
        KNOWN_FLAGS.contains(&name) || name.strip_suffix("-file").is_some_and(|b| FILE_FLAGS.contains(&b))
    })
}

fn parse_flags(command: String, rest: &[String], bad: &[bool]) -> Result<Invocation> {
    let mut payload = Payload::default();
    let mut unknown = Vec::new();
    let mut physical = None;
    let mut network = None;
    let mut timeout = DEFAULT_TIMEOUT;
    let mut file_flags = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        let arg = &rest[i];
        let Some(flag) = arg.strip_prefix("--") else {
            unknown.push(arg.clone());
            i += 1;
            continue;
        };
        // `--flag=value` or `--flag value`; a flag directly followed by
        // another flag (or nothing) has an empty value. A secret's value is
        // taken whatever it looks like (a password may start with `--`),
        // unless it is one of our flags.
        let mut value_at = i;
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => match rest.get(i + 1) {
                Some(v) if !v.starts_with("--") || (crate::redact::is_secret_key(flag) && !is_known_flag(v)) => {
                    i += 1;
                    value_at = i;
                    (flag.to_string(), v.clone())
                }
                _ => (flag.to_string(), String::new()),
            },
        };
        i += 1;
        let known =
            KNOWN_FLAGS.contains(&name.as_str()) || name.strip_suffix("-file").is_some_and(|b| FILE_FLAGS.contains(&b));
        if bad[value_at] && known {
            return Err(Error::Usage(format!("the value of --{name} is not valid UTF-8")));
        }
        match name.as_str() {
            payload::PHYSICAL_DETAILS => physical = Some(payload::details_from_flag(&name, &value)?),
            payload::NETWORK_DETAILS => network = Some(payload::details_from_flag(&name, &value)?),
            "timeout" => timeout = parse_timeout(&value)?,
            _ => {
                if let Some(base) = name.strip_suffix("-file").filter(|b| FILE_FLAGS.contains(b)) {
                    // Read once the --timeout (which may come later) is known.
                    file_flags.push((name.clone(), base.replace('-', "_"), PathBuf::from(value)));
                    continue;
                }
                if !KNOWN_FLAGS.contains(&name.as_str()) {
                    unknown.push(format!("--{name}"));
                }
                payload.fields.insert(name.replace('-', "_"), Value::String(value));
            }
        }
    }
    let deadline = Deadline::after(timeout);
    for (flag, key, path) in file_flags {
        let doc = read_base64_json_file(&flag, &path, deadline)?;
        payload.fields.insert(key, doc);
    }
    payload::set_details(&mut payload, physical.as_ref(), network.as_ref())?;
    Ok(Invocation { command, style: Style::Flags, timeout, deadline, payload, unknown_flags: unknown })
}

fn read_base64_json_file(flag: &str, path: &Path, deadline: Deadline) -> Result<Value> {
    let raw = read_input(path, deadline).map_err(|e| Error::Payload(format!("--{flag} {e}")))?;
    let trimmed: String = String::from_utf8_lossy(&raw).chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(trimmed.as_bytes())
        .map_err(|_| Error::Payload(format!("--{flag} {}: not Base64", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Payload(format!("--{flag} {}: not JSON: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_plain_decimal_seconds() {
        assert_eq!(parse_timeout("60").unwrap(), Duration::from_secs(60));
        for bad in ["+60", "-1", "0", "3601", "6e1", ""] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }

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
    fn secret_flags_keep_their_values_and_ignored_ones_are_redacted() {
        let i = run(&["save-password", "--network-id", "9", "--password", "--looks-like-a-flag", "--nic-id", "3"]);
        assert_eq!(i.payload.str("password").as_deref(), Some("--looks-like-a-flag"));
        assert_eq!(i.payload.str("nic_id").as_deref(), Some("3"));
        assert!(i.unknown_flags.is_empty(), "{:?}", i.unknown_flags);
        // A secret flag directly followed by one of ours is empty.
        let i = run(&["save-password", "--password", "--network-id", "9"]);
        assert_eq!(i.payload.str("password").as_deref(), Some(""));
        assert_eq!(i.payload.str("network_id").as_deref(), Some("9"));

        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.payload");
        std::fs::write(&f, r#"{"payload":{}}"#).unwrap();
        let i = run(&["destroy-network", f.to_str().unwrap(), "30", "--api-token=abc", "--x=1"]);
        assert_eq!(i.unknown_flags, vec!["--api-token=***".to_string(), "--x=1".to_string()]);
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
