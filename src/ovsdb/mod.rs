//! A small, blocking RFC 7047 (OVSDB JSON-RPC) client.
//!
//! Architecture invariant: this module knows nothing about OVN or
//! CloudStack; it speaks the wire protocol only. It never writes to stdout or
//! stderr (stdout is CloudStack's protocol channel).
//!
//! * [`value`] — §5.1 notation (atoms, sets, maps, uuids) builders/decoders.
//! * [`ops`] — §5.2 operations, serialised to the exact wire JSON.
//! * [`remote`] — `ovsdb(7)` remote syntax (`unix:`, `tcp:`, `ssl:`).
//! * [`tls`] — rustls configuration with the OVS stream-ssl trust model.
//! * `jsonrpc` — §4 framing of concatenated JSON messages, echo replies.
//! * `transport` — sockets with per-call deadlines and byte counters.
//! * [`client`] — connect (remote lists, server check seam) and `transact`.

pub mod client;
pub mod deadline;
pub mod error;
mod jsonrpc;
pub mod ops;
pub mod remote;
pub mod tls;
mod transport;
pub mod value;

pub use client::{Client, DatabaseStatus, LeaderCheck, NoCheck, ServerCheck};
pub use deadline::Deadline;
pub use error::Error;
pub use ops::{Condition, Function, Mutation, Mutator, Operation, WaitUntil};
pub use remote::Remote;
pub use tls::TlsFiles;
