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

/// What a child process printed, captured (never inherited: anything it
/// wrote to our stdout or stderr would reach CloudStack), and whether it
/// exited within `limit`. The one child we run is `ovn-trace` (custom
/// action `trace`); it is killed when `limit` passes. Lives here because
/// this module is the one that handles the standard streams.
pub struct Captured {
    /// `None`: killed at the limit.
    pub status: Option<std::process::ExitStatus>,
    pub out: String,
    pub err: String,
}

pub fn run_captured(mut command: std::process::Command, limit: std::time::Duration) -> std::io::Result<Captured> {
    use std::io::Read;
    use std::process::Stdio;
    let started = std::time::Instant::now();
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut s);
            }
            s
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let status = loop {
        match child.try_wait()? {
            Some(s) => break Some(s),
            None if started.elapsed() < limit => std::thread::sleep(std::time::Duration::from_millis(20)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                // A grandchild may still hold the pipes: the readers are
                // left behind rather than waited for.
                return Ok(Captured { status: None, out: String::new(), err: String::new() });
            }
        }
    };
    Ok(Captured { status, out: out.join().unwrap_or_default(), err: err.join().unwrap_or_default() })
}

#[cfg(test)]
mod child_tests {
    use super::*;

    #[test]
    fn a_child_is_captured_and_killed_at_the_limit() {
        let mut c = std::process::Command::new("/bin/sh");
        c.args(["-c", "echo out; echo err >&2"]);
        let r = run_captured(c, std::time::Duration::from_secs(10)).unwrap();
        assert_eq!((r.out.as_str(), r.err.as_str()), ("out\n", "err\n"));
        assert!(r.status.is_some_and(|s| s.success()));
        let started = std::time::Instant::now();
        let mut c = std::process::Command::new("/bin/sh");
        c.args(["-c", "sleep 30"]);
        let r = run_captured(c, std::time::Duration::from_millis(200)).unwrap();
        assert!(r.status.is_none());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
