//! Integration-test harness: real OVN / OVS processes, no mocks.
//!
//! Tiers, cheapest first:
//!
//! * [`Nb`]: a standalone OVN_Northbound `ovsdb-server` (no northd), ~20 ms;
//! * [`Central`]: NB + SB `ovsdb-server` + `ovn-northd`, ready once
//!   `ovn-nbctl --wait=sb sync` returned; logical flows and `ovn-trace`;
//!   [`Central::blocked_probe`] puts a negative data-plane probe behind
//!   the `ovn-nbctl --wait=hv sync` barrier;
//! * [`Chassis`]: `ovsdb-server` (conf.db) + `ovs-vswitchd` (userspace
//!   `netdev` datapath) + `ovn-controller`, all inside a network namespace;
//!   [`Chassis::plug_vm`] plugs a "VM" (its own namespace + veth pair) the way
//!   libvirt does (`external-ids:iface-id=<LSP name>`), and [`Vm::dhcp`] asks
//!   OVN's native DHCP for a lease with busybox `udhcpc`.
//!
//! Rules every component follows:
//!
//! * each component owns a temp dir `/tmp/csovn-<kind>-<pid>-<n>-XXXXXX`;
//!   every daemon gets `--pidfile`, `--log-file` (and `--unixctl` where the
//!   daemon supports it) inside it, and every spawned OVS/OVN process gets
//!   `OVS_*DIR` / `OVN_*DIR` pointing there (via `Command::env`);
//! * daemons are stopped on `Drop` by the pid in their pidfile, and only if
//!   `/proc/PID/cmdline` mentions that pidfile; never by name;
//! * network namespaces are named `cso<pid><c|v><n>` and deleted on `Drop`;
//! * a missing binary is a panic ("OVN is not installed: ..."), never a skip;
//! * all waits are bounded polls, all commands run with a deadline.
//!
//! When a test panics, dropping a [`Central`] / [`Chassis`] prints the tail
//! of its daemon logs (captured by libtest, shown for the failed test).
//! Set `CSOVN_KEEP_TMP=1` to keep the temp dirs for a post-mortem.

#![allow(dead_code)]
#![allow(unused_imports)]
#![allow(clippy::print_stderr)]

mod agent;
mod central;
mod chassis;
mod cluster;
mod cs;
mod daemon;
mod nb;
mod public;
pub mod scenario;
mod tls;
pub mod userdata;
mod util;

pub use agent::{Agent, ZoneKey};
pub use central::{Central, BLOCKED};
pub use chassis::{Chassis, Lease, Vm};
pub use cluster::Cluster;
pub use cs::{bin, envelope, run_bin, run_cs, run_cs_flags, run_cs_flags_logged, run_cs_logged, CsRun};
pub use daemon::{monitor_of, running as pid_running};
pub use nb::{canonicalize, Nb};
pub use public::{
    Outside, Server, VlanCapture, INTERNET_HOSTS, OUTSIDE_CIDR, OUTSIDE_GW, OUTSIDE_MAC, PUBLIC_BRIDGE, UPSTREAM_BRIDGE,
};
pub use tls::TlsNb;
#[allow(unused_imports)]
pub(crate) use util::Netns;
pub use util::{try_run, wait_until, SilentPeer, INSTALL_HINT};
