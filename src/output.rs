//! The stdout contract. CloudStack merges stderr into stdout, trims it and
//! parses or stores it (`ensure-network-device` output becomes the network's
//! stored details), so this module is the only place that writes to either.

// The one module allowed to (clippy.toml: disallowed-methods).
#![allow(clippy::disallowed_methods)]

use std::io::Write;

use serde_json::{json, Value};

/// Print one compact JSON document on one line.
pub fn print_json(value: &Value) {
    let mut out = std::io::stdout().lock();
    // A closed stdout cannot be reported anywhere useful; the exit code still is.
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// The one-line failure document. CloudStack already fails on the non-zero
/// exit; the `status` key also fails it should a wrapper ever exit 0.
/// CloudStack stores this text: PEM blocks are removed and long quoted
/// input cut ([`crate::redact`]), whatever the error echoes.
pub fn print_error(message: &str) {
    let message = crate::redact::scrub_capped(message, crate::redact::MAX_MESSAGE);
    print_json(&json!({"status": "error", "message": message}));
}

/// Operator-facing plain text (help, `doctor`, `audit`). PEM blocks are
/// removed here too: a doctor detail may quote a setting.
pub fn print_text(text: &str) {
    let text = crate::redact::strip_pem(text);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}
