//! The protocol front end's engine: parse, validate, then for each command
//! observe (one read-only transaction), plan (pure), apply (one write
//! transaction), retrying the observe–plan–apply cycle when a concurrent
//! writer got in between.

mod dhcp;
mod dns;
mod filter;
mod input;
mod ip;
mod lb;
mod network;
mod nic;
mod restore;
mod vpc;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::{self, Invocation, Style};
use crate::config::{self, FileConfig, Settings};
use crate::error::{Error, ExitCode, Result};
use crate::nb::{Owner, DB};
use crate::observe::{self, Observed};
pub use crate::observe::{PublicLookup, RouterWant, Want};
use crate::ovsdb::{self, Client, Deadline, LeaderCheck};
use crate::plan::Plan;
use crate::{log, output};

/// Every CloudStack command name we know, with whether this version
/// implements it. Used for dispatch, `--help` and the "not supported yet"
/// answer; kept in one place so they cannot drift apart.
pub const COMMANDS: &[(&str, bool)] = &[
    ("ensure-network-device", true),
    ("implement-network", true),
    ("shutdown-network", true),
    ("destroy-network", true),
    ("prepare-nic", true),
    ("release-nic", true),
    ("config-dhcp-subnet", true),
    ("remove-dhcp-subnet", true),
    ("add-dhcp-entry", true),
    ("remove-dhcp-entry", true),
    ("set-dhcp-options", true),
    ("config-dns-subnet", true),
    ("remove-dns-subnet", true),
    ("add-dns-entry", true),
    ("remove-dns-entry", true),
    ("implement-vpc", true),
    ("shutdown-vpc", true),
    ("destroy-vpc", true),
    ("update-vpc-source-nat-ip", true),
    ("assign-ip", true),
    ("release-ip", true),
    ("add-static-nat", true),
    ("delete-static-nat", true),
    ("add-port-forward", true),
    ("delete-port-forward", true),
    ("apply-fw-rules", true),
    ("apply-network-acl", true),
    ("apply-lb-rules", true),
    ("save-vm-data", false),
    ("save-password", false),
    ("save-userdata", false),
    ("save-sshkey", false),
    ("save-hypervisor-hostname", false),
    ("restore-network", true),
    ("custom-action", false),
];

/// Attempts of the observe–plan–apply cycle before giving up on a
/// contended row (each attempt re-reads, so this only matters under heavy
/// concurrent change of the same rows).
const MAX_ATTEMPTS: u32 = 8;

/// Everything a command handler needs.
pub struct Context {
    pub inv: Invocation,
    pub settings: Settings,
    pub owner: Owner,
    pub deadline: Deadline,
}

/// What a successful command did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The command's stdout document, if it has one.
    pub output: Option<Value>,
    pub changes: usize,
    pub attempts: u32,
    /// Bytes received from / sent to the NB (all connections of the command).
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl Context {
    pub fn payload(&self) -> &crate::payload::Payload {
        &self.inv.payload
    }

    pub fn legacy(&self) -> bool {
        self.inv.style == Style::Flags
    }

    /// Connect to the NB. With several remotes (a Raft cluster) only the
    /// leader is used: followers would forward our writes and may serve
    /// stale reads. During an election no member is usable for a moment
    /// (about twice the election timer), so the search is repeated until
    /// the command's deadline.
    fn connect(&self) -> Result<Client> {
        let (remotes, source) = self.settings.nb_connection()?;
        let leader_only = remotes.contains(',');
        let check = LeaderCheck { database: DB.to_string(), leader_only };
        let tls = self.settings.tls();
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            log::debug("connecting", &[("remotes", &remotes), ("source", &source), ("attempt", &attempt)]);
            match Client::connect_with(&remotes, &tls, self.deadline, &check) {
                Ok(client) => return Ok(client),
                Err(e) if retry_connect(&e) && !self.deadline.expired() && started.elapsed() < CONNECT_RETRY_WINDOW => {
                    log::info("no usable NB server yet, retrying", &[("attempt", &attempt), ("error", &e)]);
                    std::thread::sleep(Duration::from_millis(u64::from(attempt.min(10)) * 50));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Observe, plan, apply; repeat while a concurrent writer invalidates
    /// what we read (a failed `wait` guard, a `duplicate uuid` from a
    /// racing insert of the same deterministic row, an index collision).
    /// An ambiguous connection failure is retried the same way: the
    /// re-read shows whether the first attempt committed.
    pub fn converge(&self, want: &Want, planner: impl Fn(&Observed) -> Result<Plan>) -> Result<Outcome> {
        let mut want = want.clone();
        let mut client = self.connect()?;
        let mut attempt = 0;
        // Bytes of connections given up on (reconnects).
        let (mut read, mut written) = (0u64, 0u64);
        let done = |client: &Client, changes: usize, attempts: u32, read: u64, written: u64| Outcome {
            output: None,
            changes,
            attempts,
            bytes_read: read + client.bytes_read(),
            bytes_written: written + client.bytes_written(),
        };
        loop {
            attempt += 1;
            let observed = match observe::observe(&mut client, &want) {
                Ok(o) => o,
                // The server went away (leader killed, restart): nothing was
                // written yet; find the (new) leader and read again.
                Err(Error::Ovsdb(e)) if attempt < MAX_ATTEMPTS && !self.deadline.expired() && e.is_connection() => {
                    log::warn("connection lost while reading, reconnecting", &[("attempt", &attempt), ("error", &e)]);
                    backoff(attempt);
                    (read, written) = (read + client.bytes_read(), written + client.bytes_written());
                    client = self.connect()?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let plan = planner(&observed);
            if let Some(slot) = observed.misread() {
                return Err(Error::Internal(format!(
                    "{}: planning used `{slot}`, which the command did not read (its Want lacks it)",
                    self.inv.command
                )));
            }
            let plan = plan?;
            if plan.is_empty() {
                log::debug("already converged", &[("attempt", &attempt)]);
                return Ok(done(&client, 0, attempt, read, written));
            }
            let changes = plan.changes.len();
            for c in &plan.changes {
                log::debug(c, &[("attempt", &attempt)]);
            }
            let ops = plan.into_ops(self.comment());
            match client.transact(DB, &ops) {
                Ok(_) => return Ok(done(&client, changes, attempt, read, written)),
                Err(e) if attempt < MAX_ATTEMPTS && !self.deadline.expired() && e.is_conflict() => {
                    log::info("concurrent change, re-planning", &[("attempt", &attempt), ("error", &e)]);
                    // A port name taken by a row we did not find by uuid:
                    // look it up by name (a scan, only now) to say whose it is.
                    if want.port.is_some() && e.to_string().contains("Logical_Switch_Port") {
                        want.port_by_name = true;
                    }
                    backoff(attempt);
                }
                Err(e) if attempt < MAX_ATTEMPTS && !self.deadline.expired() && e.is_connection() => {
                    log::warn("connection lost, reconnecting", &[("attempt", &attempt), ("error", &e)]);
                    backoff(attempt);
                    (read, written) = (read + client.bytes_read(), written + client.bytes_written());
                    client = self.connect()?;
                }
                Err(e) if e.is_conflict() => {
                    return Err(Error::Contention { what: self.inv.command.clone(), attempts: attempt });
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Recorded with the transaction (`ovsdb-tool show-log`).
    fn comment(&self) -> String {
        let p = self.payload();
        let mut s = format!("cloudstack-ovn {}", self.inv.command);
        for k in ["network_id", "vpc_id", "nic_uuid"] {
            if let Some(v) = p.nonempty(k) {
                s.push_str(&format!(" {k}={v}"));
            }
        }
        s
    }
}

/// How long to keep looking for a usable NB server: an election takes about
/// twice the election timer (1 s by default), a restart a few seconds; a
/// server down for longer is reported rather than waited for.
const CONNECT_RETRY_WINDOW: Duration = Duration::from_secs(15);

/// Failures another try can fix: a server not (yet) usable (election, not
/// the leader, not connected to its cluster) or not reachable right now.
/// Configuration and TLS problems are final.
fn retry_connect(e: &ovsdb::Error) -> bool {
    match e {
        ovsdb::Error::ServerRejected { .. } => true,
        ovsdb::Error::AllRemotesFailed { last, .. } => retry_connect(last),
        other => other.is_connection() && !matches!(other, ovsdb::Error::DeadlineExceeded),
    }
}

/// A little jitter keeps two racing management servers from colliding again.
fn backoff(attempt: u32) {
    let jitter = (std::process::id() as u64 * 7919 + attempt as u64 * 104_729) % 5;
    std::thread::sleep(Duration::from_millis((attempt as u64 * 2 + jitter).min(50)));
}

fn dispatch(ctx: &Context) -> Result<Outcome> {
    let command = ctx.inv.command.as_str();
    match command {
        "ensure-network-device" => network::ensure_network_device(ctx),
        "implement-network" => network::implement(ctx),
        "shutdown-network" => network::shutdown(ctx),
        "destroy-network" => network::destroy(ctx),
        "prepare-nic" => nic::prepare(ctx),
        "release-nic" => nic::release(ctx),
        "config-dhcp-subnet" => dhcp::config_subnet(ctx),
        "remove-dhcp-subnet" => dhcp::remove_subnet(ctx),
        "add-dhcp-entry" => dhcp::add_entry(ctx),
        "remove-dhcp-entry" => dhcp::remove_entry(ctx),
        "set-dhcp-options" => dhcp::set_options(ctx),
        "config-dns-subnet" => dns::config_subnet(ctx),
        "remove-dns-subnet" => dns::remove_subnet(ctx),
        "add-dns-entry" => dns::add_entry(ctx),
        "remove-dns-entry" => dns::remove_entry(ctx),
        "implement-vpc" => vpc::implement(ctx),
        // destroy-vpc is never sent by CloudStack; the reference accepts it.
        "shutdown-vpc" | "destroy-vpc" => vpc::shutdown(ctx),
        "update-vpc-source-nat-ip" => vpc::update_source_nat(ctx),
        "assign-ip" => ip::assign(ctx),
        "apply-fw-rules" => filter::apply_firewall(ctx),
        "apply-network-acl" => filter::apply_network_acl(ctx),
        "apply-lb-rules" => lb::apply(ctx),
        "restore-network" => restore::restore(ctx),
        "release-ip" => ip::release(ctx),
        "add-static-nat" => ip::add_static_nat(ctx),
        "delete-static-nat" => ip::delete_static_nat(ctx),
        "add-port-forward" => ip::add_port_forward(ctx),
        "delete-port-forward" => ip::delete_port_forward(ctx),
        other if COMMANDS.iter().any(|(c, _)| *c == other) => Err(Error::Unsupported(other.to_string())),
        other => Err(Error::UnknownCommand(other.to_string())),
    }
}

fn env_settings() -> BTreeMap<String, String> {
    std::env::vars().filter(|(k, _)| k.starts_with("OVN_NB_") || k.starts_with("CLOUDSTACK_OVN_")).collect()
}

/// The whole program: argv in, exit code out; stdout only through `output`.
pub fn main(args: &[String]) -> ExitCode {
    let started = Instant::now();
    let env = env_settings();
    let config_path = env
        .get("CLOUDSTACK_OVN_CONFIG")
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| config::DEFAULT_CONFIG_FILE.to_string());
    let file = FileConfig::load(std::path::Path::new(&config_path));
    let (file, file_error) = match file {
        Ok(f) => (f, None),
        Err(e) => (FileConfig::default(), Some(e)),
    };
    let level = env
        .get(&config::env_name(config::LOG_LEVEL))
        .map(String::as_str)
        .or_else(|| file.get(config::LOG_LEVEL))
        .and_then(log::Level::parse)
        .unwrap_or(log::Level::Info);
    log::init(&log::resolve_path(env.get("CLOUDSTACK_OVN_LOG").cloned(), file.get(config::LOG_FILE)), level);

    let result = match file_error {
        Some(e) => Err(e),
        None => cli::parse(args),
    };
    let inv = match result {
        Ok(inv) => inv,
        Err(e) => return fail(args.get(1).map(String::as_str).unwrap_or(""), &e, started, None),
    };
    if !inv.unknown_flags.is_empty() {
        log::info("ignoring unknown arguments", &[("command", &inv.command), ("args", &inv.unknown_flags.join(" "))]);
    }
    if log::enabled(log::Level::Debug) {
        log::debug(
            "invocation",
            &[
                ("command", &inv.command),
                ("style", &format!("{:?}", inv.style)),
                ("timeout_s", &inv.timeout.as_secs()),
                ("registration", &log::redacted(&inv.payload.physical_details)),
            ],
        );
    }
    let settings = Settings::new(inv.payload.physical_details.clone(), env, file);
    let owner = match settings.owner() {
        Ok(o) => Owner(o),
        Err(e) => return fail(&inv.command, &e, started, Some(&inv)),
    };
    let ctx = Context { deadline: Deadline::after(inv.timeout), inv, settings, owner };
    match dispatch(&ctx) {
        Ok(outcome) => {
            if let Some(out) = &outcome.output {
                output::print_json(out);
            }
            log::info(
                "ok",
                &[
                    ("command", &ctx.inv.command),
                    ("network_id", &ctx.payload().str("network_id").unwrap_or_default()),
                    ("vpc_id", &ctx.payload().str("vpc_id").unwrap_or_default()),
                    ("nic_uuid", &ctx.payload().str("nic_uuid").unwrap_or_default()),
                    ("outcome", &"ok"),
                    ("rows_changed", &outcome.changes),
                    ("attempts", &outcome.attempts),
                    ("bytes_read", &outcome.bytes_read),
                    ("bytes_written", &outcome.bytes_written),
                    ("latency_ms", &format!("{:.3}", started.elapsed().as_secs_f64() * 1000.0)),
                ],
            );
            ExitCode::Success
        }
        Err(e) => fail(&ctx.inv.command.clone(), &e, started, Some(&ctx.inv)),
    }
}

fn fail(command: &str, e: &Error, started: Instant, inv: Option<&Invocation>) -> ExitCode {
    let code = e.exit_code();
    let field = |k: &str| inv.and_then(|i| i.payload.str(k)).unwrap_or_default();
    log::event(
        log::Level::Error,
        &e.chain(),
        &[
            ("command", &command),
            ("network_id", &field("network_id")),
            ("vpc_id", &field("vpc_id")),
            ("nic_uuid", &field("nic_uuid")),
            ("outcome", &"error"),
            ("exit_code", &(code as i32)),
            ("latency_ms", &format!("{:.3}", started.elapsed().as_secs_f64() * 1000.0)),
        ],
    );
    output::print_error(&e.chain());
    code
}
