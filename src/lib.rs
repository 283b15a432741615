//! cloudstack-ovn: the OVN-native network backend for Apache CloudStack.
//!
//! # Layout
//!
//! Knowledge flows one way, from the wire up to the CloudStack front end:
//!
//! * [`ovsdb`] — a small RFC 7047 client (framing, values, operations,
//!   transport, TLS). Knows nothing about OVN or CloudStack.
//! * [`nb`] — the typed slice of the OVN Northbound schema we use, our naming
//!   and ownership model, deterministic row UUIDs.
//! * [`plan`] — pure planners: CloudStack intent + observed rows → OVSDB
//!   operations. No I/O, no clock, no environment.
//! * [`commands`] — one file per command family: observe, plan, apply.
//! * [`payload`], [`config`], [`cli`], [`output`], [`log`] — the protocol
//!   front end: argv, payload files, configuration, stdout and the log file.
//! * [`files`], [`redact`] — reading input files within a deadline and a
//!   size cap; keeping secrets and oversize values out of stdout and the log.
//! * [`capabilities`] — the services we advertise to CloudStack, derived
//!   from what `commands::COMMANDS` implements.
//! * [`operator`] — `--help`, `extension-details`, `doctor`, man page and
//!   completions (clap; never on the CloudStack hot path).

// A panic is exit 101 with a message on stderr, which CloudStack would store
// as the command's output: library code returns errors instead.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod agent;
pub mod capabilities;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod files;
pub mod log;
pub mod metadata;
pub mod nb;
pub mod observe;
pub mod operator;
pub mod output;
pub mod ovsdb;
pub mod payload;
pub mod plan;
pub mod redact;
