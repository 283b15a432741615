//! The log file: one `key=value` line per event, appended with a single
//! `write(2)` on an `O_APPEND` descriptor so that concurrent invocations never
//! interleave inside a line, and logrotate can rotate by rename.
//!
//! Nothing here ever writes to stdout or stderr (CloudStack would store it):
//! if the file cannot be opened we carry on without a log. The path must
//! name a regular file (or nothing yet): `/dev/stdout`, `/dev/stderr`, a
//! terminal, a FIFO or any file that is our stdout/stderr is refused. A new
//! file is created 0640 (the log names networks, addresses and remotes).
//!
//! Every line passes through [`crate::redact`]: secret-keyed fields become
//! `***`, PEM blocks are removed and long values cut, at every level.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

pub const DEFAULT_LOG_FILE: &str = "/var/log/cloudstack-ovn/cloudstack-ovn.log";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s.to_ascii_lowercase().as_str() {
            "debug" | "trace" => Some(Level::Debug),
            "info" => Some(Level::Info),
            "warn" | "warning" => Some(Level::Warn),
            "error" => Some(Level::Error),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

struct Logger {
    file: Option<File>,
    level: Level,
    invocation: String,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Open the log file once per process. Later calls are ignored.
pub fn init(path: &Path, level: Level) {
    let file = open(path);
    let invocation = format!("{:08x}", std::process::id() ^ (now_nanos() as u32));
    let _ = LOGGER.set(Logger { file, level, invocation });
}

fn open(path: &Path) -> Option<File> {
    open_checked(path).ok()
}

/// Open (creating 0640) the log file `path`, or say why it is refused.
/// Also used by `doctor`.
pub fn open_checked(path: &Path) -> Result<File, String> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    const NOT_REGULAR: &str = "not a regular file (a log must never go to stdout, stderr, a terminal or a FIFO)";
    // Refuse before opening: opening a FIFO or a terminal has effects.
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err(NOT_REGULAR.into());
    }
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        // A FIFO swapped in after the check must not block the open.
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(NOT_REGULAR.into());
    }
    // A regular file that is our stdout or stderr (CloudStack may redirect
    // them to a file; /proc/self/fd/1) would put log lines into the output.
    let same = |fd: std::io::Result<std::os::fd::OwnedFd>| {
        fd.ok()
            .and_then(|fd| File::from(fd).metadata().ok())
            .is_some_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
    };
    use std::os::fd::AsFd;
    // Only compares the files (clippy.toml forbids writing to them here).
    #[allow(clippy::disallowed_methods)]
    let ours = [std::io::stdout().as_fd().try_clone_to_owned(), std::io::stderr().as_fd().try_clone_to_owned()];
    if ours.into_iter().any(same) {
        return Err("it is this process's stdout or stderr".into());
    }
    Ok(file)
}

/// Where the log goes: `$CLOUDSTACK_OVN_LOG`, else the config file's
/// `log.file`, else [`DEFAULT_LOG_FILE`].
pub fn resolve_path(env: Option<String>, configured: Option<&str>) -> PathBuf {
    env.filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| configured.map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_LOG_FILE))
}

pub fn enabled(level: Level) -> bool {
    LOGGER.get().is_some_and(|l| l.file.is_some() && level >= l.level)
}

/// Longest field value written whole (bytes).
const MAX_FIELD: usize = 512;

/// Append one event. `fields` values are quoted when they contain spaces,
/// quotes or `=`, so a line always splits back into its fields.
pub fn event(level: Level, msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    let Some(logger) = LOGGER.get() else { return };
    let Some(file) = logger.file.as_ref() else {
        return;
    };
    if level < logger.level {
        return;
    }
    let mut line = String::with_capacity(160);
    let _ =
        write!(line, "{} level={} pid={} inv={}", rfc3339_now(), level.as_str(), std::process::id(), logger.invocation);
    for (key, value) in fields {
        line.push(' ');
        line.push_str(key);
        line.push('=');
        if crate::redact::is_secret_key(key) {
            line.push_str("***");
        } else {
            push_value(&mut line, &crate::redact::scrub_capped(&value.to_string(), MAX_FIELD));
        }
    }
    line.push_str(" msg=");
    push_value(&mut line, &crate::redact::scrub_capped(msg, crate::redact::MAX_MESSAGE));
    line.push('\n');
    // One write(2) per line: O_APPEND makes it atomic with respect to other
    // writers of the same file for line-sized buffers.
    let mut f: &File = file;
    let _ = f.write_all(line.as_bytes());
}

pub fn debug(msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    event(Level::Debug, msg, fields);
}

pub fn info(msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    event(Level::Info, msg, fields);
}

pub fn warn(msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    event(Level::Warn, msg, fields);
}

fn push_value(line: &mut String, value: &str) {
    let plain =
        !value.is_empty() && value.chars().all(|c| !c.is_whitespace() && c != '"' && c != '=' && !c.is_control());
    if plain {
        line.push_str(value);
    } else {
        let _ = write!(line, "{value:?}");
    }
}

/// Keys whose values never reach the log (registration details carry the
/// reference implementation's SSH password and key; TLS keys; user data).
pub use crate::redact::is_secret_key;

/// `k=v,k=v` rendering of a details map with secrets replaced by `***`.
pub fn redacted<'a>(pairs: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    pairs
        .into_iter()
        .map(|(k, v)| if is_secret_key(k) { format!("{k}=***") } else { format!("{k}={v}") })
        .collect::<Vec<_>>()
        .join(",")
}

fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// UTC timestamp with milliseconds, without pulling in a date crate.
fn rfc3339_now() -> String {
    let nanos = now_nanos();
    let secs = (nanos / 1_000_000_000) as i64;
    let millis = ((nanos / 1_000_000) % 1000) as u32;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_414), (2025, 11, 22));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn values_are_quoted_when_needed() {
        let mut s = String::new();
        push_value(&mut s, "plain");
        s.push(' ');
        push_value(&mut s, "two words");
        s.push(' ');
        push_value(&mut s, "");
        assert_eq!(s, r#"plain "two words" """#);
    }

    #[test]
    fn secrets_are_redacted() {
        let m: std::collections::BTreeMap<String, String> = [
            ("password".to_string(), "hunter2".to_string()),
            ("sshkey".to_string(), "-----BEGIN".to_string()),
            ("ovn.nb.private_key".to_string(), "/etc/k.pem".to_string()),
            ("hosts".to_string(), "10.0.0.5".to_string()),
        ]
        .into();
        let r = redacted(&m);
        assert!(!r.contains("hunter2") && !r.contains("BEGIN") && !r.contains("k.pem"));
        assert!(r.contains("hosts=10.0.0.5"));
    }
}
