//! Errors of the OVSDB client.
//!
//! Messages are short and never repeat their `#[source]`; callers print the
//! chain. Transaction failures keep the RFC 7047 §4.1.3 error string and the
//! failing operation's index (or "commit") so callers can decide to retry.

use std::io;

/// Error strings (RFC 7047 §4.1.3 / `ovsdb-server(7)`) that mean "someone
/// else changed the data": re-reading and re-planning can succeed.
const CONFLICTS: [&str; 3] = ["duplicate uuid", "constraint violation", "referential integrity violation"];

/// Everything the OVSDB client can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A remote string that is not `unix:PATH`, `tcp:HOST[:PORT]` or
    /// `ssl:HOST[:PORT]`.
    #[error("invalid OVSDB remote {0:?} (expected unix:PATH, tcp:HOST:PORT or ssl:HOST:PORT)")]
    InvalidRemote(String),

    /// Opening the socket to one remote failed.
    #[error("cannot connect to {remote}")]
    Connect {
        remote: String,
        #[source]
        source: io::Error,
    },

    /// Every remote of a list of two or more failed; `last` is the failure
    /// of the last one tried.
    #[error("all {} OVSDB remotes failed ({})", tried.len(), tried.join(", "))]
    AllRemotesFailed {
        tried: Vec<String>,
        #[source]
        last: Box<Error>,
    },

    /// A connected server failed the [`ServerCheck`](super::ServerCheck)
    /// (e.g. a Raft follower when leader-only is wanted).
    #[error("{remote} is not usable: {reason}")]
    ServerRejected { remote: String, reason: String },

    /// TLS setup or handshake failure; names the file or the TLS error.
    #[error("TLS: {0}")]
    Tls(String),

    /// The command's deadline passed while connecting, writing or waiting.
    #[error("deadline exceeded")]
    DeadlineExceeded,

    /// The deadline passed while retrying after `last` (e.g. a refused
    /// connect, retried in case the server was restarting): says why.
    #[error("deadline exceeded")]
    DeadlineAfter {
        #[source]
        last: Box<Error>,
    },

    /// The remote being tried when the deadline passed (connect, TLS
    /// handshake or server check), as the cause of [`Error::DeadlineAfter`].
    #[error("{remote} did not answer")]
    Silent { remote: String },

    /// Any other socket error.
    #[error("I/O error on the OVSDB connection")]
    Io(#[from] io::Error),

    /// Malformed reply, or the connection closed mid-reply.
    #[error("OVSDB protocol error: {0}")]
    Protocol(String),

    /// JSON-RPC level error (RFC 7047 §4.1: non-null `error`, e.g.
    /// "unknown database").
    #[error("OVSDB request failed: {error}{}", suffix(details))]
    Rpc { error: String, details: Option<String> },

    /// Operation `index` of a transaction failed (RFC 7047 §4.1.3); nothing
    /// was committed.
    #[error("OVSDB operation {index} ({op}{}) failed: {error}{}",
        table.as_deref().map(|t| format!(" on {t}")).unwrap_or_default(), suffix(details))]
    Operation { index: usize, op: String, table: Option<String>, error: String, details: Option<String> },

    /// All operations succeeded but the commit failed (RFC 7047 §4.1.3: the
    /// extra result after the last operation), e.g. an index "constraint
    /// violation".
    #[error("OVSDB transaction commit failed: {error}{}", suffix(details))]
    Commit { error: String, details: Option<String> },
}

fn suffix(details: &Option<String>) -> String {
    details.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
}

impl Error {
    /// True for failures that a re-read-and-retry can fix: a `wait` that
    /// "timed out" (RFC 7047 §5.2.6), "duplicate uuid", "constraint
    /// violation" and "referential integrity violation".
    pub fn is_conflict(&self) -> bool {
        match self {
            Error::Operation { op, error, .. } => {
                (op == "wait" && error == "timed out") || CONFLICTS.contains(&error.as_str())
            }
            Error::Commit { error, .. } => CONFLICTS.contains(&error.as_str()),
            _ => false,
        }
    }

    /// The error to report after retrying: a bare deadline says nothing, so
    /// it carries the failure that made us retry (a refused connect names
    /// its remote).
    pub fn after_retries(e: Error, last: Option<Error>) -> Error {
        match (e, last) {
            (Error::DeadlineExceeded | Error::DeadlineAfter { .. }, Some(last)) => {
                Error::DeadlineAfter { last: Box::new(last) }
            }
            (e, _) => e,
        }
    }

    /// True when the connection failed, broke or timed out. After a
    /// transaction was sent, its outcome is then unknown (it may or may not
    /// have committed); `Connect`/`AllRemotesFailed` mean nothing was sent.
    pub fn is_connection(&self) -> bool {
        match self {
            Error::Connect { .. }
            | Error::Io(_)
            | Error::DeadlineExceeded
            | Error::DeadlineAfter { .. }
            | Error::Silent { .. }
            | Error::Protocol(_) => true,
            Error::AllRemotesFailed { last, .. } => last.is_connection(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op_err(op: &str, error: &str) -> Error {
        Error::Operation {
            index: 0,
            op: op.into(),
            table: Some("Logical_Switch".into()),
            error: error.into(),
            details: Some("d".into()),
        }
    }

    #[test]
    fn classification_and_messages() {
        assert!(op_err("wait", "timed out").is_conflict());
        assert!(op_err("insert", "duplicate uuid").is_conflict());
        assert!(!op_err("insert", "syntax error").is_conflict());
        let commit = Error::Commit { error: "constraint violation".into(), details: None };
        assert!(commit.is_conflict() && !commit.is_connection());
        assert_eq!(commit.to_string(), "OVSDB transaction commit failed: constraint violation");
        assert_eq!(
            op_err("wait", "timed out").to_string(),
            "OVSDB operation 0 (wait on Logical_Switch) failed: timed out: d"
        );
        assert!(Error::DeadlineExceeded.is_connection());
        let all = Error::AllRemotesFailed {
            tried: vec!["unix:/a".into(), "unix:/b".into()],
            last: Box::new(Error::DeadlineExceeded),
        };
        assert!(all.is_connection());
        assert_eq!(all.to_string(), "all 2 OVSDB remotes failed (unix:/a, unix:/b)");
    }
}
