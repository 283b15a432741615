//! `cloudstack-ovn doctor`: checks an installation the way a command would
//! see it, and says how to fix each problem.
//!
//! Settings come from the environment and the config file (CloudStack's
//! registration details only reach real commands), overridable with
//! `--nb`, `--sb`, `--gateway-chassis`, `--log-file`. Every network call is
//! bounded: each remote gets its own deadline of `--timeout` seconds.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use super::args::DoctorArgs;
use crate::config::{self, Local, Settings, Source};
use crate::error::{chain_of, Error};
use crate::nb::{DB as NB_DB, SB_DB};
use crate::ovsdb::{self, Client, DatabaseStatus, Deadline, Operation, Remote, TlsFiles};
use crate::{log, output};

/// The schema cloudstack-ovn is written against (its minimum).
const PINNED_SCHEMA: &str = include_str!("../../schemas/ovn-nb.ovsschema");

/// Settings as a command would see them without registration details
/// (`overrides` take their place), and the config file's load error.
pub fn local_settings(overrides: BTreeMap<String, String>) -> (Settings, Option<Error>) {
    let mut local = Local::load();
    let err = local.file_error.take();
    (local.settings(overrides), err)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        }
    }
}

#[derive(Debug, Serialize)]
struct Check {
    check: String,
    status: Status,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

#[derive(Default)]
struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn add(&mut self, check: impl Into<String>, status: Status, detail: impl Into<String>, fix: Option<String>) {
        self.checks.push(Check { check: check.into(), status, detail: detail.into(), fix });
    }
    fn ok(&mut self, check: impl Into<String>, detail: impl Into<String>) {
        self.add(check, Status::Ok, detail, None);
    }
    fn fail(&mut self, check: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) {
        self.add(check, Status::Fail, detail, Some(fix.into()));
    }
    fn warn(&mut self, check: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) {
        self.add(check, Status::Warn, detail, Some(fix.into()));
    }
    fn skip(&mut self, check: impl Into<String>, detail: impl Into<String>) {
        self.add(check, Status::Skip, detail, None);
    }
    fn count(&self, s: Status) -> usize {
        self.checks.iter().filter(|c| c.status == s).count()
    }
}

pub fn run(a: &DoctorArgs) -> u8 {
    let mut overrides = BTreeMap::new();
    for (key, v) in
        [(config::NB_CONNECTION, &a.nb), (config::SB_CONNECTION, &a.sb), (config::GATEWAY_CHASSIS, &a.gateway_chassis)]
    {
        if let Some(v) = v {
            overrides.insert(key.to_string(), v.clone());
        }
    }
    let mut local = Local::load();
    let (cfg, file_error) = (local.path.clone(), local.file_error.take());
    let settings = local.settings(overrides);
    let timeout = Duration::from_secs(a.timeout);
    let mut r = Report::default();

    match file_error {
        None if cfg.exists() => r.ok("config file", cfg.display().to_string()),
        None => r.ok("config file", format!("{} not present (environment only)", cfg.display())),
        Some(e) => r.fail(
            "config file",
            e.chain(),
            format!("fix the TOML syntax of {} (see docs/configuration.md)", cfg.display()),
        ),
    }
    check_settings(&mut r, &settings);
    let nb = check_database(&mut r, &settings, Db::Nb, timeout);
    if let Some(version) = nb.schema_version {
        check_schema(&mut r, &version);
    }
    match settings.sb_connection() {
        Some(_) => {
            let sb = check_database(&mut r, &settings, Db::Sb, timeout);
            if let Some(mut client) = sb.client {
                check_chassis(&mut r, &settings, &mut client);
                check_metadata_agents(&mut r, &settings, &mut client);
            }
        }
        None => {
            r.skip(
                "sb",
                "ovn.sb.connection not set: chassis, bridge mappings and gateway chassis not checked \
                 (set OVN_SB_DB or pass --sb)",
            );
            // UserData commands read password acknowledgements from the SB:
            // without it an acknowledged (sealed) password is never dropped
            // from the NB.
            if settings.get(crate::metadata::PUBLIC_KEY_DETAIL).is_some() {
                r.warn(
                    "metadata acks",
                    "ovn.metadata.public_key is set but ovn.sb.connection is not: acknowledged \
                     passwords stay (sealed) in the NB",
                    "set ovn.sb.connection (OVN_SB_DB) on the management servers",
                );
            }
        }
    }
    let log_file = a.log_file.clone().unwrap_or_else(|| {
        log::resolve_path(local.env.get("CLOUDSTACK_OVN_LOG").cloned(), local.file.get(config::LOG_FILE))
    });
    check_log_file(&mut r, &log_file);
    check_metadata_key(&mut r, &settings);

    let failed = r.count(Status::Fail);
    if a.json {
        output::print_json(&json!({
            "ok": failed == 0,
            "failed": failed,
            "warnings": r.count(Status::Warn),
            "checks": r.checks,
        }));
    } else {
        output::print_text(&table(&r));
    }
    if failed == 0 {
        0
    } else {
        super::EXIT_PROBLEM
    }
}

/// Every other setting a command validates.
fn check_settings(r: &mut Report, s: &Settings) {
    let problems: Vec<String> = [
        s.owner().err(),
        s.mtu().err(),
        s.lease_time().err(),
        s.public_network_name().err(),
        // Only when set: the default is the public name, checked above.
        s.get(config::SHARED_NETWORK_NAME).and_then(|_| s.shared_network_name().err()),
        s.public_mtu().err(),
        s.gateway_chassis().err(),
    ]
    .into_iter()
    .flatten()
    .map(|e| e.chain())
    .collect();
    match problems.is_empty() {
        true => r.ok("settings", "valid"),
        false => r.fail("settings", problems.join("; "), "correct the values named (docs/configuration.md)"),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Db {
    Nb,
    Sb,
}

impl Db {
    fn label(self) -> &'static str {
        match self {
            Db::Nb => "nb",
            Db::Sb => "sb",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Db::Nb => NB_DB,
            Db::Sb => SB_DB,
        }
    }
    fn key(self) -> &'static str {
        match self {
            Db::Nb => config::NB_CONNECTION,
            Db::Sb => config::SB_CONNECTION,
        }
    }
    fn env(self) -> &'static str {
        match self {
            Db::Nb => "OVN_NB_DB",
            Db::Sb => "OVN_SB_DB",
        }
    }
    fn ctl(self) -> &'static str {
        match self {
            Db::Nb => "ovnnb_db.ctl",
            Db::Sb => "ovnsb_db.ctl",
        }
    }
}

/// What the remotes of one database told us.
#[derive(Default)]
struct Found {
    schema_version: Option<String>,
    /// A connection to the best remote (leader, else connected), kept for
    /// further reads.
    client: Option<Client>,
}

/// Connection, each remote (reachable, TLS, database served, cluster role)
/// and the leader.
fn check_database(r: &mut Report, s: &Settings, db: Db, timeout: Duration) -> Found {
    let label = db.label();
    let (remotes, source) = match (db, s.nb_connection()) {
        (Db::Nb, Ok(c)) => c,
        (Db::Nb, Err(e)) => {
            r.fail(
                "nb connection",
                e.chain(),
                "set OVN_NB_DB or ovn.nb.connection in the config file (the registration detail \
                 ovn.nb.connection is not visible to doctor: pass it with --nb)",
            );
            return Found::default();
        }
        (Db::Sb, _) => s.sb_connection().unwrap_or((String::new(), Source::Default)),
    };
    let list = match Remote::parse_list(&remotes) {
        Ok(l) => l,
        Err(e) => {
            r.fail(
                format!("{label} connection"),
                e.to_string(),
                format!("use the ovsdb(7) form: ssl:HOST:PORT,ssl:HOST:PORT (key {}, {})", db.key(), db.env()),
            );
            return Found::default();
        }
    };
    // Doctor sees no registration details: that layer holds the --nb/--sb overrides.
    let from = match source {
        Source::Registration => format!("--{label}"),
        other => other.to_string(),
    };
    r.ok(format!("{label} connection"), format!("{remotes} (from {from})"));
    let tls = match db {
        Db::Nb => s.tls(),
        Db::Sb => s.sb_tls(),
    };
    let mut found = Found::default();
    let mut statuses = Vec::new();
    for remote in &list {
        let name = format!("{label} {remote}");
        match probe(&remote.to_string(), &tls, timeout, db) {
            Ok(p) => {
                let role = match &p.status {
                    None => "no _Server database (old ovsdb-server)".to_string(),
                    Some(st) if st.model == "standalone" => "standalone".to_string(),
                    Some(st) => format!(
                        "{} {}{}",
                        st.model,
                        if st.leader { "leader" } else { "follower" },
                        if st.connected { "" } else { ", NOT connected to its cluster" }
                    ),
                };
                let tls_note = if remote.is_ssl() { "TLS ok, " } else { "" };
                let reason = p.status.as_ref().and_then(|st| st.unusable_reason(false));
                match reason {
                    None => r.ok(&name, format!("reachable, {tls_note}{role}")),
                    Some(why) => r.fail(
                        &name,
                        format!("reachable, {tls_note}{role}: {why}"),
                        format!(
                            "this server lost its Raft cluster: check `ovs-appctl -t /var/run/ovn/{} \
                             cluster/status {}` on it",
                            db.ctl(),
                            db.name()
                        ),
                    ),
                }
                let usable = p.status.as_ref().is_none_or(|st| st.unusable_reason(false).is_none());
                let leader = p.status.as_ref().is_none_or(|st| st.model == "standalone" || st.leader);
                statuses.push((remote.to_string(), p.status.clone()));
                if found.schema_version.is_none() {
                    found.schema_version = p.schema_version.clone();
                }
                // Prefer the leader's connection for later reads.
                if usable && (found.client.is_none() || leader) {
                    found.client = Some(p.client);
                }
            }
            Err(ProbeError::NotServed) => r.fail(
                &name,
                format!("reachable, but it does not serve {}", db.name()),
                format!(
                    "point {} at the {} server (NB listens on 6641, SB on 6642 by convention)",
                    db.key(),
                    db.name()
                ),
            ),
            Err(ProbeError::Ovsdb(e)) => {
                let (detail, fix) = explain(&e, remote, db);
                r.fail(&name, detail, fix);
            }
        }
    }
    check_leader(r, db, &statuses, list.len());
    found
}

/// Whether the cluster has a leader we can see.
fn check_leader(r: &mut Report, db: Db, statuses: &[(String, Option<DatabaseStatus>)], total: usize) {
    let name = format!("{} leader", db.label());
    if statuses.is_empty() {
        r.fail(&name, format!("none of the {total} remote(s) answered"), "fix the remotes above");
        return;
    }
    if let Some((remote, st)) = statuses.iter().find(|(_, st)| st.as_ref().is_none_or(|s| s.model == "standalone")) {
        let what = if st.is_some() { "standalone server" } else { "server without _Server database" };
        r.ok(&name, format!("{what} {remote} (no cluster)"));
    } else if let Some((remote, _)) = statuses.iter().find(|(_, st)| st.as_ref().is_some_and(|s| s.leader)) {
        r.ok(&name, format!("{remote} is the cluster leader"));
    } else if total == 1 && statuses.iter().any(|(_, st)| st.as_ref().is_some_and(|s| s.connected)) {
        // One remote: commands use it whatever its role (it forwards writes).
        r.ok(&name, "the only remote is a follower connected to its cluster (it forwards writes to the leader)");
    } else if statuses.iter().any(|(_, st)| st.as_ref().is_some_and(|s| s.connected)) {
        r.fail(
            &name,
            format!("none of the {total} remotes is the cluster leader"),
            format!(
                "with several remotes cloudstack-ovn uses only the leader: list every cluster member in {}",
                db.key()
            ),
        );
    } else {
        r.fail(
            &name,
            "no remote is connected to a cluster with a leader",
            format!(
                "the Raft cluster has no quorum: check `ovs-appctl -t /var/run/ovn/{} cluster/status {}` on each member",
                db.ctl(),
                db.name()
            ),
        );
    }
}

struct Probe {
    client: Client,
    status: Option<DatabaseStatus>,
    schema_version: Option<String>,
}

enum ProbeError {
    NotServed,
    Ovsdb(ovsdb::Error),
}

impl From<ovsdb::Error> for ProbeError {
    fn from(e: ovsdb::Error) -> Self {
        ProbeError::Ovsdb(e)
    }
}

/// Connect to one remote (TLS handshake included), read its `_Server` row
/// for the database and, for the NB, the schema version.
fn probe(remote: &str, tls: &TlsFiles, timeout: Duration, db: Db) -> Result<Probe, ProbeError> {
    let mut client = Client::connect(remote, tls, Deadline::after(timeout))?;
    let status = match client.database_status(db.name()) {
        Ok(Some(st)) => Some(st),
        Ok(None) => return Err(ProbeError::NotServed),
        // Servers older than OVS 2.9 have no _Server database.
        Err(ovsdb::Error::Rpc { error, .. }) if error == "unknown database" => None,
        Err(e) => return Err(e.into()),
    };
    let schema_version = match db {
        Db::Nb => match client.call("get_schema", json!([db.name()])) {
            Ok(schema) => schema.get("version").and_then(Value::as_str).map(str::to_string),
            Err(ovsdb::Error::Rpc { error, .. }) if error == "unknown database" => return Err(ProbeError::NotServed),
            Err(e) => return Err(e.into()),
        },
        Db::Sb => None,
    };
    Ok(Probe { client, status, schema_version })
}

/// A failure in words, and what to do about it.
fn explain(e: &ovsdb::Error, remote: &Remote, db: Db) -> (String, String) {
    let detail = chain_of(e);
    let key = db.key();
    let fix = match e {
        ovsdb::Error::Tls(m) if m.contains("certificate verify failed") => format!(
            "the server's certificate does not verify against the CA file: set {key}'s CA ({}) to the \
             CA that signed the server certificate (ovs-pki: switchca/cacert.pem, or the cacert.pem \
             the OVN servers use)",
            match db {
                Db::Nb => "ovn.nb.ca_cert / OVN_NB_CA_CERT",
                Db::Sb => "ovn.sb.ca_cert / OVN_SB_CA_CERT, else the NB one",
            }
        ),
        ovsdb::Error::Tls(m) if m.contains("ssl: remotes need") => {
            "ssl: remotes need the private key, certificate and CA files (ovn.nb.private_key, \
             ovn.nb.certificate, ovn.nb.ca_cert)"
                .to_string()
        }
        ovsdb::Error::Tls(m) if m.contains("holds PEM text") => {
            "put the PEM in a file readable by the user running cloudstack-ovn (cloud) and set the \
             setting to that file's path"
                .to_string()
        }
        ovsdb::Error::Tls(m) if m.contains(".pem") || m.contains('/') => {
            "a TLS file is missing or unreadable: check the path and that the user running \
             cloudstack-ovn (cloud) can read it"
                .to_string()
        }
        ovsdb::Error::Tls(_) => "the TLS handshake failed: the server may not trust our client certificate \
             (sign it with the CA the server uses: ovs-pki req+sign), or the remote is not ssl:"
            .to_string(),
        ovsdb::Error::DeadlineExceeded | ovsdb::Error::DeadlineAfter { .. } => format!(
            "no answer from {remote} in time: a firewall dropping packets, a wrong address, or an overloaded \
             server (raise --timeout to tell them apart)"
        ),
        ovsdb::Error::Connect { .. } | ovsdb::Error::Io(_) => match remote {
            Remote::Unix(p) => {
                format!("start the {} ovsdb-server or fix the socket path ({} does not accept)", db.name(), p.display())
            }
            _ => format!(
                "start the {} ovsdb-server, check it listens there (ovn-{}ctl get-connection) and that \
                 no firewall blocks the port",
                db.name(),
                db.label()
            ),
        },
        _ => format!("{remote} does not speak OVSDB as expected: check that it is an OVN {} server", db.name()),
    };
    (detail, fix)
}

/// `major.minor.patch` → numbers.
fn version(s: &str) -> Option<(u64, u64, u64)> {
    let mut it = s.trim().split('.').map(|p| p.parse::<u64>().ok());
    Some((it.next()??, it.next()??, it.next().flatten().unwrap_or(0)))
}

fn pinned_version() -> String {
    serde_json::from_str::<Value>(PINNED_SCHEMA)
        .ok()
        .and_then(|v| v.get("version").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default()
}

/// Same major version and at least the pinned one: newer minors only add
/// columns, and we select ours by name.
fn schema_compatible(server: &str, pinned: &str) -> Result<(), String> {
    let (Some(s), Some(p)) = (version(server), version(pinned)) else {
        return Err(format!("cannot compare schema versions {server:?} and {pinned:?}"));
    };
    if s < p {
        return Err(format!("NB schema {server} is older than {pinned}, the minimum cloudstack-ovn needs"));
    }
    if s.0 != p.0 {
        return Err(format!(
            "NB schema {server} has a newer major version than {pinned}, which cloudstack-ovn targets"
        ));
    }
    Ok(())
}

fn check_schema(r: &mut Report, server: &str) {
    let pinned = pinned_version();
    match schema_compatible(server, &pinned) {
        Ok(()) => {
            r.ok("nb schema", format!("{server} (cloudstack-ovn is built for {pinned}, same major or newer minor)"))
        }
        Err(why) => r.fail(
            "nb schema",
            why,
            format!(
                "run OVN central with NB schema {}.x, at least {pinned} (OVN 23.03 or a later release of that \
                 schema major), or a cloudstack-ovn release built for schema {server}",
                version(&pinned).map(|v| v.0).unwrap_or_default()
            ),
        ),
    }
}

/// UserData (docs/metadata.md): with the zone key configured, every
/// chassis that has VM ports bound must run a live metadata agent
/// (`cloudstack-ovn:md-agent` in its Chassis_Private). Reads the chassis
/// column of every Port_Binding: an operator check, not a hot path.
fn check_metadata_agents(r: &mut Report, s: &Settings, client: &mut Client) {
    // Without the zone key here, UserData is not in use (or not configured
    // on this machine): nothing to say.
    if s.get(crate::metadata::PUBLIC_KEY_DETAIL).is_none() {
        return;
    }
    let ops = [
        Operation::Select {
            table: "Port_Binding".into(),
            conditions: vec![ovsdb::Condition::eq("type", "")],
            columns: Some(vec!["chassis".into()]),
        },
        Operation::Select {
            table: "Chassis".into(),
            conditions: vec![],
            columns: Some(vec!["_uuid".into(), "name".into()]),
        },
        Operation::Select {
            table: "Chassis_Private".into(),
            conditions: vec![],
            columns: Some(vec!["name".into(), "external_ids".into()]),
        },
    ];
    let res = match client.transact(SB_DB, &ops) {
        Ok(r) => r,
        Err(e) => return r.fail("metadata agents", chain_of(&e), "check the SB log"),
    };
    let rows = |i: usize| res.get(i).and_then(|r| r.get("rows")).and_then(Value::as_array).cloned().unwrap_or_default();
    let busy: std::collections::BTreeSet<String> = rows(0)
        .iter()
        .filter_map(|row| ovsdb::value::optional_uuid(row.get("chassis")?))
        .map(|u| u.to_string())
        .collect();
    let names: BTreeMap<String, String> = rows(1)
        .iter()
        .filter_map(|row| {
            let u = ovsdb::value::as_uuid(row.get("_uuid")?)?.to_string();
            Some((u, row.get("name")?.as_str()?.to_string()))
        })
        .collect();
    let live: std::collections::BTreeSet<String> = rows(2)
        .iter()
        .filter(|row| map_get(row, "external_ids", crate::metadata::key::AGENT).is_some())
        .filter_map(|row| Some(row.get("name")?.as_str()?.to_string()))
        .collect();
    let missing: Vec<&String> = busy.iter().filter_map(|u| names.get(u)).filter(|n| !live.contains(*n)).collect();
    match missing.is_empty() {
        true => r.ok("metadata agents", format!("{} chassis with VMs, each with a metadata agent", busy.len())),
        false => r.fail(
            "metadata agents",
            format!(
                "chassis with VMs but no metadata agent: {}",
                missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ),
            "on each: install the zone key and `systemctl enable --now cloudstack-ovn-agent` (docs/cloudstack-setup.md)",
        ),
    }
}

/// On a KVM host with the private key: it must match the zone's public key.
fn check_metadata_key(r: &mut Report, s: &Settings) {
    let path = std::env::var(crate::agent::KEY_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| s.get(crate::agent::KEY_SETTING).map(|(v, _)| v))
        .unwrap_or_else(|| crate::agent::DEFAULT_KEY_FILE.to_string());
    let path = std::path::PathBuf::from(path);
    // Only KVM hosts have it.
    if !path.exists() {
        return;
    }
    let sk = match crate::metadata::seal::read_secret_key(&path) {
        Ok(k) => k,
        Err(e) => return r.fail("metadata key", e.chain(), "recreate it with cloudstack-ovn metadata-keygen"),
    };
    let public = crate::metadata::seal::public_key_b64(&sk);
    match s.get(crate::metadata::PUBLIC_KEY_DETAIL) {
        None => r.ok("metadata key", format!("{} readable (public key {public})", path.display())),
        Some((v, _)) if v == public => {
            r.ok("metadata key", format!("{} matches ovn.metadata.public_key", path.display()))
        }
        Some(_) => r.fail(
            "metadata key",
            format!("{} does not match ovn.metadata.public_key: sealed data cannot be opened here", path.display()),
            format!("copy the zone's key file to {}, or register ovn.metadata.public_key={public}", path.display()),
        ),
    }
}

/// A chassis as the SB lists it.
struct ChassisRow {
    name: String,
    hostname: String,
    /// `ovn-bridge-mappings` (other_config since OVN 20.x, external_ids before).
    mappings: Vec<(String, String)>,
}

fn map_get(row: &Value, column: &str, key: &str) -> Option<String> {
    let m = row.get(column)?;
    // ["map", [[k, v], ...]]
    let pairs = m.as_array().filter(|a| a.first().and_then(Value::as_str) == Some("map"))?.get(1)?.as_array()?;
    pairs.iter().find_map(|p| {
        let kv = p.as_array()?;
        (kv.first()?.as_str()? == key).then(|| kv.get(1)?.as_str().map(str::to_string))?
    })
}

fn parse_mappings(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|m| m.trim().split_once(':'))
        .map(|(net, br)| (net.trim().to_string(), br.trim().to_string()))
        .collect()
}

fn read_chassis(client: &mut Client) -> Result<Vec<ChassisRow>, ovsdb::Error> {
    // All columns: which of external_ids / other_config holds the mappings
    // depends on the OVN version, and selecting a missing column fails.
    let select = Operation::Select { table: "Chassis".into(), conditions: vec![], columns: None };
    let result = client.transact(SB_DB, &[select])?;
    let rows = result.first().and_then(|r| r.get("rows")).and_then(Value::as_array).cloned().unwrap_or_default();
    Ok(rows
        .iter()
        .map(|row| {
            let mappings = map_get(row, "other_config", "ovn-bridge-mappings")
                .or_else(|| map_get(row, "external_ids", "ovn-bridge-mappings"))
                .map(|m| parse_mappings(&m))
                .unwrap_or_default();
            ChassisRow {
                name: row.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
                hostname: row.get("hostname").and_then(Value::as_str).unwrap_or_default().to_string(),
                mappings,
            }
        })
        .collect())
}

fn mapping_fix(physnet: &str, chassis: &str) -> String {
    format!(
        "on {chassis}: ovs-vsctl set Open_vSwitch . external-ids:ovn-bridge-mappings={physnet}:br-ex \
         (br-ex being the OVS bridge with the public network's NIC; keep other mappings, comma-separated)"
    )
}

/// Chassis registered, gateway chassis present, bridge mappings for the
/// public network.
fn check_chassis(r: &mut Report, s: &Settings, client: &mut Client) {
    let chassis = match read_chassis(client) {
        Ok(c) => c,
        Err(e) => {
            r.fail("sb chassis", chain_of(&e), "the SB answered the leader check but not a read: check its log");
            return;
        }
    };
    let physnet = s.public_network_name().unwrap_or_else(|_| "public".into());
    let mapped = |c: &ChassisRow| c.mappings.iter().find(|(n, _)| *n == physnet).map(|(n, b)| format!("{n}:{b}"));
    if chassis.is_empty() {
        r.fail(
            "sb chassis",
            "no chassis registered",
            "start ovn-controller on the KVM hosts with external_ids:ovn-remote pointing at the SB, \
             ovn-encap-type=geneve and ovn-encap-ip set (docs/cloudstack-setup.md)",
        );
    } else {
        let names: Vec<String> = chassis
            .iter()
            .map(|c| {
                if c.hostname.is_empty() || c.hostname == c.name {
                    c.name.clone()
                } else {
                    format!("{} ({})", c.name, c.hostname)
                }
            })
            .collect();
        r.ok("sb chassis", format!("{} registered: {}", chassis.len(), names.join(", ")));
    }
    check_shared_mapping(r, s, &chassis);
    let gateways = s.gateway_chassis().unwrap_or_default();
    if gateways.is_empty() {
        r.warn(
            "gateway chassis",
            "ovn.gateway.chassis not set: assign-ip, static NAT and port forwarding fail (exit 3) until it is",
            "set ovn.gateway.chassis (registration detail, CLOUDSTACK_OVN_GATEWAY_CHASSIS or the config file) \
             to the system-ids of the chassis connected to the public network",
        );
        let with: Vec<String> = chassis.iter().filter_map(|c| mapped(c).map(|m| format!("{} ({m})", c.name))).collect();
        match with.is_empty() {
            false => r.ok("bridge mapping", format!("{physnet} mapped on {}", with.join(", "))),
            true if chassis.is_empty() => r.skip("bridge mapping", "no chassis"),
            true => r.fail(
                "bridge mapping",
                format!("no chassis has an ovn-bridge-mappings entry for {physnet} (ovn.public.network_name)"),
                mapping_fix(&physnet, "each gateway chassis"),
            ),
        }
        return;
    }
    let known: Vec<&str> = chassis.iter().map(|c| c.name.as_str()).collect();
    for g in &gateways {
        let name = format!("gateway chassis {g}");
        match chassis.iter().find(|c| c.name == *g || c.hostname == *g) {
            None => r.fail(
                &name,
                format!(
                    "not registered in the SB (registered: {})",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ),
                "use the chassis' system-id (on that host: ovs-vsctl get Open_vSwitch . external_ids:system-id) \
                 in ovn.gateway.chassis, and make sure ovn-controller runs there",
            ),
            Some(c) if c.name != *g => r.fail(
                &name,
                format!("{g} is the host name of chassis {}, not its name", c.name),
                format!("use the system-id {} in ovn.gateway.chassis", c.name),
            ),
            Some(c) => match mapped(c) {
                Some(m) => r.ok(&name, format!("registered, bridge mapping {m}")),
                None => r.fail(
                    &name,
                    format!(
                        "registered, but has no ovn-bridge-mappings entry for {physnet} (has: {})",
                        if c.mappings.is_empty() {
                            "none".to_string()
                        } else {
                            c.mappings.iter().map(|(n, b)| format!("{n}:{b}")).collect::<Vec<_>>().join(",")
                        }
                    ),
                    mapping_fix(&physnet, g),
                ),
            },
        }
    }
}

/// Shared and L2 networks bridge VMs onto the physical VLAN through a
/// localnet port on whichever chassis runs the VM: every chassis needs the
/// bridge mapping. A missing one is a failure when the operator named the
/// network (`ovn.shared.network_name`), a warning when it defaults to the
/// public one (deployments without shared networks need it nowhere but on
/// the gateways).
fn check_shared_mapping(r: &mut Report, s: &Settings, chassis: &[ChassisRow]) {
    const CHECK: &str = "shared bridge mapping";
    if chassis.is_empty() {
        return r.skip(CHECK, "no chassis");
    }
    let explicit = s.get(config::SHARED_NETWORK_NAME).is_some();
    let physnet = match s.shared_network_name() {
        Ok(n) => n,
        Err(e) => return r.fail(CHECK, e.to_string(), "fix ovn.shared.network_name"),
    };
    let missing: Vec<&str> =
        chassis.iter().filter(|c| !c.mappings.iter().any(|(n, _)| *n == physnet)).map(|c| c.name.as_str()).collect();
    let key = if explicit {
        config::SHARED_NETWORK_NAME
    } else {
        "ovn.shared.network_name, defaulting to ovn.public.network_name"
    };
    if missing.is_empty() {
        r.ok(CHECK, format!("{physnet} ({key}) mapped on all {} chassis", chassis.len()));
        return;
    }
    let detail = format!(
        "{} of {} chassis have no ovn-bridge-mappings entry for {physnet} ({key}): {}; VMs of shared and L2 networks \
         there cannot reach their VLAN",
        missing.len(),
        chassis.len(),
        missing.join(", ")
    );
    let fix = mapping_fix(&physnet, "every KVM host running VMs of shared or L2 networks");
    if explicit {
        r.fail(CHECK, detail, fix);
    } else {
        r.warn(CHECK, detail, fix);
    }
}

fn check_log_file(r: &mut Report, path: &Path) {
    // The same rules as the commands' log (regular file, created 0640).
    match log::open_checked(path) {
        Ok(_) => r.ok("log file", format!("{} writable", path.display())),
        Err(e) => r.fail(
            "log file",
            format!("cannot append to {}: {e}", path.display()),
            format!(
                "create it writable by the management server's user: install -d -o cloud -g cloud {} \
                 (or set CLOUDSTACK_OVN_LOG / log.file); commands still run without a log",
                path.parent().unwrap_or(Path::new("/")).display()
            ),
        ),
    }
}

/// The human table: one line per check, then the fixes.
fn table(r: &Report) -> String {
    let width = r.checks.iter().map(|c| c.check.len()).max().unwrap_or(5).max(5);
    let mut out = format!("{:<width$}  {:<6}  DETAIL\n", "CHECK", "STATUS");
    for c in &r.checks {
        out.push_str(&format!("{:<width$}  {:<6}  {}\n", c.check, c.status.as_str(), c.detail));
    }
    let problems: Vec<&Check> = r.checks.iter().filter(|c| c.fix.is_some()).collect();
    if !problems.is_empty() {
        out.push_str("\nTo fix:\n");
        for c in problems {
            out.push_str(&format!("  {} [{}]: {}\n", c.check, c.status.as_str(), c.fix.as_deref().unwrap_or("")));
        }
    }
    out.push_str(&format!(
        "\ndoctor: {} ok, {} warnings, {} failed",
        r.count(Status::Ok),
        r.count(Status::Warn),
        r.count(Status::Fail)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_versions() {
        assert_eq!(pinned_version(), "7.0.0");
        assert!(schema_compatible("7.0.0", "7.0.0").is_ok());
        assert!(schema_compatible("7.3.1", "7.0.0").is_ok());
        assert!(schema_compatible("6.3.0", "7.0.0").unwrap_err().contains("older"));
        assert!(schema_compatible("8.0.0", "7.0.0").unwrap_err().contains("major"));
        assert!(schema_compatible("x", "7.0.0").is_err());
    }

    #[test]
    fn bridge_mappings_from_either_column() {
        let row = json!({"name": "hv1", "hostname": "h1",
            "other_config": ["map", [["ovn-bridge-mappings", "physnet1:br-a, public:br-ex"]]],
            "external_ids": ["map", []]});
        let m = map_get(&row, "other_config", "ovn-bridge-mappings").unwrap();
        assert_eq!(parse_mappings(&m), vec![("physnet1".into(), "br-a".into()), ("public".into(), "br-ex".into())]);
        let old = json!({"external_ids": ["map", [["ovn-bridge-mappings", "public:br0"]]]});
        assert_eq!(map_get(&old, "other_config", "ovn-bridge-mappings"), None);
        assert_eq!(map_get(&old, "external_ids", "ovn-bridge-mappings").as_deref(), Some("public:br0"));
    }

    #[test]
    fn table_lists_fixes() {
        let mut r = Report::default();
        r.ok("nb connection", "unix:/x (from environment)");
        r.fail("nb unix:/x", "cannot connect", "start it");
        let t = table(&r);
        assert!(t.contains("FAIL") && t.contains("To fix:") && t.ends_with("1 ok, 0 warnings, 1 failed"), "{t}");
    }
}
