//! The CloudStack protocol front end. A command is data: one [`Spec`] in
//! [`registry::COMMANDS`] names it, says which CloudStack services send it,
//! describes it, and points at its `prepare` function, which validates the
//! whole payload and configuration into a typed intent and returns a
//! [`Job`] (what to read + a plan function over that intent alone). The
//! engine runs the job; `run` is the process around it.
//!
//! - `registry.rs` — the command table and dispatch;
//! - `engine.rs` — `Context`, `Job`, connect, observe–plan–apply;
//! - `run.rs` — process start-up, stdout and the exit code;
//! - `input.rs` — payload fields → validated planner inputs;
//! - one file per command family with its prepare and plan functions.

mod custom;
mod dhcp;
mod dns;
mod engine;
mod filter;
mod input;
mod ip;
mod lb;
mod network;
mod nic;
pub mod registry;
mod restore;
mod run;
mod vmdata;
mod vpc;

pub use custom::{Action as CustomAction, ACTIONS as CUSTOM_ACTIONS};
pub use engine::{Context, Job, Outcome};
pub use registry::{Spec, COMMANDS};
pub use run::main;

#[cfg(test)]
mod tests;
