//! One error type for the whole program, and the exit code each class maps to.
//!
//! CloudStack treats any non-zero exit as failure and logs our stdout; the
//! codes below are for operators reading logs and for tests (see
//! `docs/cli.md`, "Exit codes").

use crate::ovsdb;

/// Documented process exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    Success = 0,
    /// A bug or an unexpected state of ours.
    Internal = 1,
    /// Bad argv, unreadable or malformed payload, invalid field value.
    BadInput = 2,
    /// Configuration missing or invalid (no NB connection, unreadable TLS file).
    Config = 3,
    /// The NB could not be reached, or the command's deadline passed.
    Unavailable = 4,
    /// The NB refused the change (conflict that retries could not resolve,
    /// a row with our name that is not ours, schema mismatch).
    Rejected = 5,
    /// A CloudStack command this version does not implement.
    Unsupported = 6,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("invalid payload: {0}")]
    Payload(String),
    /// The reason of a secret-looking field is not shown: it may quote
    /// the value ([`crate::redact::is_secret_key`]).
    #[error("invalid {field}: {}", if crate::redact::is_secret_key(field) { "(reason withheld: the value is secret)" } else { reason })]
    Field { field: String, reason: String },
    #[error("missing required field {0}")]
    Missing(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("unknown command: {0}")]
    UnknownCommand(String),
    #[error("not supported yet: {0}")]
    Unsupported(String),
    #[error("refusing to modify {what}: it exists but is not owned by cloudstack-ovn")]
    NotOwned { what: String },
    #[error("{what}: gave up after {attempts} attempts, the NB kept changing underneath")]
    Contention { what: String, attempts: u32 },
    #[error("OVN Northbound")]
    Ovsdb(#[from] ovsdb::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

/// An error and every cause ("a: b: c"), skipping a cause whose text the
/// message already ends with.
pub fn chain_of(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !msg.ends_with(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cur = c.source();
    }
    msg
}

impl Error {
    pub fn field(field: &str, reason: impl Into<String>) -> Error {
        Error::Field { field: field.to_string(), reason: reason.into() }
    }

    /// The message with every cause appended ("a: b: c"), for stdout and
    /// the log. Display stays short, per the cause-chain convention.
    pub fn chain(&self) -> String {
        chain_of(self)
    }

    /// [`Error::chain`] without the "OVN Northbound" label of an OVSDB
    /// error, for callers that talk to other databases too (the agent: SB,
    /// NB and the local OVS); the OVSDB error names its remote.
    pub fn chain_unlabelled(&self) -> String {
        match self {
            Error::Ovsdb(e) => chain_of(e),
            e => e.chain(),
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_)
            | Error::Payload(_)
            | Error::Field { .. }
            | Error::Missing(_)
            | Error::UnknownCommand(_) => ExitCode::BadInput,
            Error::Config(_) => ExitCode::Config,
            Error::Unsupported(_) => ExitCode::Unsupported,
            Error::NotOwned { .. } | Error::Contention { .. } => ExitCode::Rejected,
            Error::Ovsdb(e) => match e {
                ovsdb::Error::InvalidRemote(_) | ovsdb::Error::Tls(_) => ExitCode::Config,
                ovsdb::Error::AllRemotesFailed { last, .. } if matches!(**last, ovsdb::Error::Tls(_)) => {
                    ExitCode::Config
                }
                ovsdb::Error::Operation { .. } | ovsdb::Error::Commit { .. } | ovsdb::Error::Rpc { .. } => {
                    ExitCode::Rejected
                }
                _ => ExitCode::Unavailable,
            },
            Error::Internal(_) => ExitCode::Internal,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_fields_do_not_show_their_reason() {
        let e = Error::field("ssh.password", "expected ASCII, got \"hunter2\"");
        assert_eq!(e.to_string(), "invalid ssh.password: (reason withheld: the value is secret)");
        assert_eq!(Error::field("vlan", "got \"x\"").to_string(), "invalid vlan: got \"x\"");
    }
}
