//! The clap definition of the operator command line, plus one described
//! subcommand per entry of `commands::COMMANDS`, so that `--help`, the man
//! page and the shell completions come from one place.
//!
//! clap never parses a CloudStack invocation: those go through
//! [`crate::cli::parse`] (fast, and tolerant of flags CloudStack adds in new
//! releases). The CloudStack commands appear here only to be described.

use std::path::PathBuf;

use clap::{Arg, Args, Command, CommandFactory, Parser, Subcommand};

use crate::commands::COMMANDS;

/// How CloudStack calls us, configuration and exit codes (end of `--help`,
/// EXTRA section of the man page).
const AFTER_HELP: &str = "\
CloudStack runs the commands above (CloudStack's names) through the extension's entry point:
  cloudstack-ovn <command> <payload-file> [<timeout-seconds>]
  cloudstack-ovn <command> --network-id <id> [--flag value]...   (legacy flag style)
Each prints at most one line of JSON; failures print {\"status\":\"error\",\"message\":\"...\"}.

Configuration: registration detail ovn.nb.connection, else OVN_NB_DB, else
/etc/cloudstack-ovn/config.toml (or $CLOUDSTACK_OVN_CONFIG). Log file:
$CLOUDSTACK_OVN_LOG, else log.file, else /var/log/cloudstack-ovn/cloudstack-ovn.log.

Exit codes: 0 ok, 1 internal error (doctor: a check failed), 2 bad input or unknown
command, 3 configuration, 4 NB unreachable or deadline passed, 5 NB refused the
change, 6 not supported yet.

Operator guide: /usr/share/doc/cloudstack-ovn/cloudstack-setup.md";

#[derive(Debug, Parser)]
#[command(
    name = "cloudstack-ovn",
    version,
    about = "OVN network backend for Apache CloudStack (NetworkOrchestrator extension)",
    long_about = "OVN network backend for Apache CloudStack. CloudStack runs cloudstack-ovn as a \
NetworkOrchestrator extension, once per network event; each command becomes one atomic \
transaction on the OVN Northbound database. The operator subcommands (extension-details, doctor) \
help register the extension and check an installation.",
    after_help = AFTER_HELP,
    disable_help_subcommand = false
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Operator>,
}

/// Operator subcommands (never sent by CloudStack).
#[derive(Debug, Subcommand)]
pub enum Operator {
    /// Print the extension details and the cmk commands that register cloudstack-ovn with CloudStack
    #[command(long_about = "Print what `cmk createExtension` needs (network.services, \
network.service.capabilities, network.isolation.method, network.allocate.extension.ip, vif.binding) \
and the `cmk registerExtension` details (ovn.* keys) as ready-to-paste command lines, or as JSON. \
Only the services whose commands this version implements are listed.")]
    ExtensionDetails(DetailsArgs),
    /// Check the OVN connection, TLS, cluster leader, NB schema, chassis, bridge mappings and log file
    #[command(long_about = "Check the configured OVN Northbound (and, with ovn.sb.connection / \
OVN_SB_DB, Southbound) databases: every remote reachable, TLS accepted, a cluster leader, NB schema \
compatible with the one cloudstack-ovn is built for, chassis registered with ovn-bridge-mappings for \
ovn.public.network_name, every ovn.gateway.chassis registered, the log file writable. Settings come \
from the environment and the config file (CloudStack's registration details are not visible here: \
pass them with --nb/--sb or the environment). Exits 1 when a check failed, with the fix for each \
problem.")]
    Doctor(DoctorArgs),
    /// Find rows of ours that are orphaned, duplicated or misplaced; --repair removes them
    #[command(long_about = "Audit the OVN Northbound for drift: rows of ours (cloudstack:owner) whose \
network or router is gone (DHCP_Options, DNS, Port_Group, Load_Balancer, routers, unused public switches), \
duplicates of rows our naming model places elsewhere, rows not at their deterministic UUID, and rows that \
look like CloudStack's but are not ours (reported, never touched). --repair deletes orphans and \
duplicates in bounded transactions. Exits 1 while problems other than foreign rows remain.")]
    Audit(AuditArgs),
    /// Create the zone's metadata key pair: private key FILE (0600) for the KVM hosts, public detail printed
    #[command(long_about = "Write a new X25519 private key to FILE (mode 0600; an existing file is never \
overwritten) and print the two registration details the management side needs: ovn.metadata.public_key \
(seals passwords and user data) and ovn.metadata.digest_key (lets a repeated command recognise an \
unchanged secret without reading it). Copy FILE to /etc/cloudstack-ovn/metadata.key on every KVM host \
of the zone.")]
    MetadataKeygen {
        /// Where to write the private key
        file: PathBuf,
    },
    /// Run the host metadata and password service (one per KVM host; systemd unit cloudstack-ovn-agent)
    #[command(long_about = "Serve VM metadata (:80) and the CloudStack password server (:8080) for the VMs \
bound to this host's OVN chassis, from a namespace per network plugged into br-int as the localport \
cs-md-<network>. Chassis name and SB remote come from the local OVS (external_ids:system-id, \
ovn-remote); NB from ovn.nb.connection / OVN_NB_DB; private key from metadata.private_key / \
CLOUDSTACK_OVN_METADATA_KEY (default /etc/cloudstack-ovn/metadata.key). Runs until killed.")]
    Agent(AgentArgs),
    /// Generate the man page or shell completions
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: Generate,
    },
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The local Open vSwitch database
    #[arg(long, value_name = "REMOTE", default_value = crate::agent::DEFAULT_OVS_DB)]
    pub ovs_db: String,
    /// NB remote(s) instead of ovn.nb.connection / OVN_NB_DB
    #[arg(long, value_name = "REMOTES")]
    pub nb: Option<String>,
    /// Private key file instead of metadata.private_key / CLOUDSTACK_OVN_METADATA_KEY
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// State directory (password acknowledgements)
    #[arg(long, value_name = "DIR", default_value = crate::agent::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Seconds a network's namespace outlives its last local VM (migrations)
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub grace: u64,
    /// Prefix of the namespaces the agent owns (stale ones are removed at start-up)
    #[arg(long, value_name = "PREFIX", default_value = "csmd-", hide = true)]
    pub netns_prefix: String,
    /// Milliseconds between reads of the local view
    #[arg(long, value_name = "MS", default_value_t = 500, hide = true)]
    pub poll_ms: u64,
    /// Event-loop threads serving :80 and :8080 (connections are async; limits are per source)
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub workers: usize,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Print one JSON document instead of a table
    #[arg(long)]
    pub json: bool,
    /// Delete orphaned and duplicated rows of ours
    #[arg(long)]
    pub repair: bool,
    /// NB remote(s) instead of ovn.nb.connection / OVN_NB_DB
    #[arg(long, value_name = "REMOTES")]
    pub nb: Option<String>,
    /// Seconds the whole audit may take
    #[arg(long, value_name = "SECONDS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    /// Rows deleted per repair transaction
    #[arg(long, value_name = "ROWS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10000))]
    pub batch: u64,
}

#[derive(Debug, Args)]
pub struct DetailsArgs {
    /// Print one JSON document instead of cmk command lines
    #[arg(long)]
    pub json: bool,
    /// The extension's name in CloudStack (also the network service provider's name)
    #[arg(long, value_name = "NAME", default_value = "ovn", value_parser = extension_name)]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print one JSON document instead of a table
    #[arg(long)]
    pub json: bool,
    /// Seconds each remote may take (connect, TLS, every request)
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub timeout: u64,
    /// NB remote(s) to check instead of ovn.nb.connection / OVN_NB_DB
    #[arg(long, value_name = "REMOTES")]
    pub nb: Option<String>,
    /// SB remote(s) to check instead of ovn.sb.connection / OVN_SB_DB
    #[arg(long, value_name = "REMOTES")]
    pub sb: Option<String>,
    /// Gateway chassis to check instead of ovn.gateway.chassis
    #[arg(long, value_name = "CHASSIS,...")]
    pub gateway_chassis: Option<String>,
    /// Log file to check instead of CLOUDSTACK_OVN_LOG / log.file
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Generate {
    /// The man page (roff) on stdout
    Man,
    /// Shell completions on stdout
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn extension_name(s: &str) -> Result<String, String> {
    if !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        Ok(s.to_string())
    } else {
        Err("use letters, digits, '-', '_' or '.' (at most 64)".into())
    }
}

/// The description of a CloudStack command.
pub fn describe(command: &str) -> Option<&'static str> {
    crate::commands::registry::find(command).map(|s| s.about)
}

/// The whole command line: the operator subcommands from [`Cli`], then
/// one (described, never parsed) subcommand per CloudStack command.
pub fn command() -> Command {
    let mut cmd = Cli::command();
    for spec in COMMANDS {
        let about = match spec.implemented() {
            true => spec.about.to_string(),
            false => format!("{} [not supported yet: exits 6]", spec.about),
        };
        cmd = cmd.subcommand(
            Command::new(spec.name)
                .about(about)
                .arg(Arg::new("payload-file").value_name("PAYLOAD_FILE").value_hint(clap::ValueHint::FilePath).help(
                    "CloudStack's payload file: {\"physical-network-extension-details\":{...},\
                     \"network-extension-details\":{...},\"payload\":{...}}",
                ))
                .arg(
                    Arg::new("timeout-seconds")
                        .value_name("TIMEOUT_SECONDS")
                        .help("Deadline of the whole run, 1-3600 (default 60)"),
                )
                .after_help(
                    "Legacy form: cloudstack-ovn <command> --network-id <id> [--flag value]... \
                     (unknown flags are logged and ignored)",
                ),
        );
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_valid() {
        command().debug_assert();
    }
}
