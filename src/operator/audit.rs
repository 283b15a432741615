//! `cloudstack-ovn audit [--json] [--repair]`: read every table rows of
//! ours live in, in ONE read-only transaction (a consistent snapshot: a
//! network created while the audit runs is either wholly in it or not at
//! all), report what `plan::audit` finds, and with `--repair` apply its
//! guarded repairs in transactions of at most `--batch` findings. A repair
//! whose guard fails (the NB changed since the read) is not applied: the
//! audit reads again and re-judges, a bounded number of times. Rows
//! without our owner tag are never touched.
//!
//! Cost: one pass over the rows of ours in each table (Logical_Switch_Port
//! included: about 20 MB of JSON at 100k ports), plus the names of every
//! switch, router and router port to spot look-alikes and dangling router
//! peers; see docs/performance.md.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{json, Value};

use super::args::AuditArgs;
use super::doctor::local_settings;
use super::{EXIT_PROBLEM, EXIT_USAGE};
use crate::config;
use crate::nb::rows::{all_rows, select_tagged};
use crate::nb::{key, table, Owner, DB};
use crate::output;
use crate::ovsdb::{Client, Deadline, LeaderCheck, Operation};
use crate::plan::audit::{self, Finding, Problem, Row};

/// (table, columns, only rows of ours?)
const TABLES: &[(&str, &[&str], bool)] = &[
    (table::LOGICAL_SWITCH, &["_uuid", "name", "external_ids"], false),
    (table::LOGICAL_SWITCH, &["_uuid", "name", "external_ids", "ports", "acls"], true),
    (table::LOGICAL_ROUTER, &["_uuid", "name", "external_ids"], false),
    (table::LOGICAL_ROUTER, &["_uuid", "name", "external_ids", "ports", "nat", "static_routes"], true),
    (table::LOGICAL_ROUTER_PORT, &["_uuid", "name", "external_ids"], false),
    (table::LOGICAL_SWITCH_PORT, &["_uuid", "name", "type", "options", "external_ids"], true),
    (table::DHCP_OPTIONS, &["_uuid", "external_ids"], false),
    (table::DNS, &["_uuid", "external_ids"], true),
    (table::PORT_GROUP, &["_uuid", "name", "acls", "external_ids"], true),
    (table::LOAD_BALANCER, &["_uuid", "name", "external_ids"], true),
    // Only to tell our children from an operator's (see plan::audit).
    (table::ACL, &["_uuid", "external_ids"], true),
    (table::NAT, &["_uuid", "external_ids"], true),
    (table::STATIC_ROUTE, &["_uuid", "external_ids"], true),
];

/// Rounds of read → judge → repair when guards keep failing because the NB
/// keeps changing: each round repairs what still holds.
const MAX_ROUNDS: usize = 5;

type Snapshot = (Vec<Row>, BTreeMap<&'static str, usize>);

/// Every table in one read-only transaction.
fn read(client: &mut Client, owner: &Owner) -> Result<Snapshot, crate::ovsdb::Error> {
    let ops: Vec<Operation> = TABLES
        .iter()
        .map(|(t, columns, ours_only)| {
            if *ours_only {
                select_tagged(t, owner, key::OWNER, &owner.0, columns)
            } else {
                Operation::Select {
                    table: t.to_string(),
                    conditions: vec![],
                    columns: Some(columns.iter().map(|c| c.to_string()).collect()),
                }
            }
        })
        .collect();
    let results = client.transact(DB, &ops)?;
    let mut rows: BTreeMap<uuid::Uuid, Row> = BTreeMap::new();
    let mut counts = BTreeMap::new();
    for ((t, _, _), result) in TABLES.iter().zip(results.iter()) {
        let mut n = 0;
        for r in all_rows(result).filter_map(|r| audit::row_from(t, r)) {
            n += 1;
            // The richer read of a table (with `ports`, `nat`, …) wins.
            if rows.get(&r.uuid).is_some_and(|old| old.children.len() > r.children.len()) {
                continue;
            }
            rows.insert(r.uuid, r);
        }
        *counts.entry(*t).or_default() = n.max(*counts.get(t).unwrap_or(&0));
    }
    Ok((rows.into_values().collect(), counts))
}

/// What `--repair` did: the findings it repaired (by table and uuid), and
/// the last snapshot's findings.
fn repair(
    client: &mut Client,
    owner: &Owner,
    mut findings: Vec<Finding>,
    batch: usize,
) -> Result<(Vec<Finding>, Vec<Finding>), String> {
    let mut repaired: Vec<Finding> = Vec::new();
    for round in 1..=MAX_ROUNDS {
        let mut stale = false;
        for (fixes, ops) in audit::repairs(&findings, batch) {
            match client.transact(DB, &ops) {
                Ok(_) => repaired.extend(fixes.into_iter().cloned()),
                // A guard failed: what made a row an orphan no longer holds
                // (or the row changed). Judge again from a fresh snapshot.
                Err(e) if e.is_conflict() => {
                    crate::log::info("audit: the NB changed under a repair, reading again", &[("round", &round)]);
                    stale = true;
                    break;
                }
                Err(e) => {
                    let e = crate::error::Error::from(e).chain();
                    return Err(format!("repair stopped after {} rows: {e}", repaired.len()));
                }
            }
        }
        let snapshot = read(client, owner).map_err(|e| crate::error::Error::from(e).chain())?;
        findings = audit::audit(owner, &snapshot.0);
        if !stale {
            break;
        }
    }
    Ok((repaired, findings))
}

pub fn run(a: &AuditArgs) -> u8 {
    let mut overrides = BTreeMap::new();
    if let Some(nb) = &a.nb {
        overrides.insert(config::NB_CONNECTION.to_string(), nb.clone());
    }
    let (settings, file_error) = local_settings(overrides);
    let fail = |msg: String| {
        if a.json {
            output::print_json(&json!({"status": "error", "message": msg}));
        } else {
            output::print_text(&format!("audit: {msg}"));
        }
        EXIT_USAGE
    };
    if let Some(e) = file_error {
        return fail(e.chain());
    }
    let (owner, remotes) = match (settings.owner(), settings.nb_connection()) {
        (Ok(o), Ok((r, _))) => (Owner(o), r),
        (Err(e), _) | (_, Err(e)) => return fail(e.chain()),
    };
    let deadline = Deadline::after(Duration::from_secs(a.timeout));
    let check = LeaderCheck { database: DB.to_string(), leader_only: remotes.contains(',') };
    let mut client = match Client::connect_with(&remotes, &settings.tls(), deadline, &check) {
        Ok(c) => c,
        Err(e) => return fail(crate::error::Error::from(e).chain()),
    };
    let (rows, counts) = match read(&mut client, &owner) {
        Ok(x) => x,
        Err(e) => return fail(crate::error::Error::from(e).chain()),
    };
    let findings = audit::audit(&owner, &rows);
    // With --repair: the repaired findings, then what the last snapshot
    // still shows (a row that turned out live is no longer a finding).
    let (findings, repaired) = if a.repair {
        match repair(&mut client, &owner, findings, a.batch as usize) {
            Ok((done, left)) => {
                let n = done.len();
                let keys: BTreeSet<(&str, uuid::Uuid)> = done.iter().map(|f| (f.table, f.uuid)).collect();
                let mut all: Vec<(Finding, bool)> = done.into_iter().map(|f| (f, true)).collect();
                all.extend(left.into_iter().filter(|f| !keys.contains(&(f.table, f.uuid))).map(|f| (f, false)));
                (all, n)
            }
            Err(e) => return fail(e),
        }
    } else {
        (findings.into_iter().map(|f| (f, false)).collect(), 0)
    };
    let open: Vec<&Finding> =
        findings.iter().filter(|(f, done)| f.problem != Problem::Foreign && !done).map(|(f, _)| f).collect();
    if a.json {
        let list: Vec<Value> = findings
            .iter()
            .map(|(f, done)| {
                json!({"problem": f.problem.as_str(), "table": f.table, "uuid": f.uuid.to_string(), "name": f.name,
                       "detail": f.detail, "repaired": done})
            })
            .collect();
        output::print_json(
            &json!({"owner": owner.0, "scanned": counts, "findings": list, "repaired": repaired, "open": open.len()}),
        );
    } else {
        let scanned: Vec<String> = counts.iter().map(|(t, n)| format!("{t} {n}")).collect();
        output::print_text(&format!("scanned (rows of ours or look-alikes): {}", scanned.join(", ")));
        for (f, done) in &findings {
            let state = if *done { "repaired" } else { "" };
            output::print_text(&format!(
                "{:<9} {:<20} {} {:<24} {} {state}",
                f.problem.as_str(),
                f.table,
                f.uuid,
                f.name,
                f.detail
            ));
        }
        output::print_text(&format!("{} findings, {} repaired, {} open", findings.len(), repaired, open.len()));
    }
    if open.is_empty() {
        0
    } else {
        EXIT_PROBLEM
    }
}
