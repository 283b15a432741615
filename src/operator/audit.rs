//! `cloudstack-ovn audit [--json] [--repair]`: read the tables rows of ours
//! live in (one table per read transaction), report what `plan::audit`
//! finds, and with `--repair` delete orphans and duplicates in transactions
//! of at most `--batch` rows. Rows without our owner tag are never touched.
//!
//! Cost: one pass over the rows of ours in each table (Logical_Switch_Port
//! included: about 20 MB of JSON at 100k ports), plus the names of every
//! switch and router to spot look-alikes; see docs/performance.md.

use std::collections::BTreeMap;
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
    (table::LOGICAL_SWITCH, &["_uuid", "name", "external_ids", "ports"], true),
    (table::LOGICAL_ROUTER, &["_uuid", "name", "external_ids"], false),
    (table::LOGICAL_SWITCH_PORT, &["_uuid", "name", "external_ids"], true),
    (table::DHCP_OPTIONS, &["_uuid", "external_ids"], false),
    (table::DNS, &["_uuid", "external_ids"], true),
    (table::PORT_GROUP, &["_uuid", "name", "external_ids"], true),
    (table::LOAD_BALANCER, &["_uuid", "name", "external_ids"], true),
];

fn read(client: &mut Client, owner: &Owner) -> Result<(Vec<Row>, BTreeMap<&'static str, usize>), crate::ovsdb::Error> {
    let mut rows: BTreeMap<uuid::Uuid, Row> = BTreeMap::new();
    let mut counts = BTreeMap::new();
    for (t, columns, ours_only) in TABLES {
        let op = if *ours_only {
            select_tagged(t, owner, key::OWNER, &owner.0, columns)
        } else {
            Operation::Select {
                table: t.to_string(),
                conditions: vec![],
                columns: Some(columns.iter().map(|c| c.to_string()).collect()),
            }
        };
        let result = client.transact(DB, &[op])?;
        let mut n = 0;
        for r in result.first().into_iter().flat_map(all_rows).filter_map(|r| audit::row_from(t, r)) {
            n += 1;
            // The richer read of a table (with `ports`) wins.
            if r.ports.is_empty() && rows.get(&r.uuid).is_some_and(|old| !old.ports.is_empty()) {
                continue;
            }
            rows.insert(r.uuid, r);
        }
        *counts.entry(*t).or_default() = n.max(*counts.get(t).unwrap_or(&0));
    }
    Ok((rows.into_values().collect(), counts))
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
    let mut repaired = 0;
    if a.repair {
        for ops in audit::repairs(&findings, a.batch as usize) {
            match client.transact(DB, &ops) {
                Ok(_) => repaired += ops.len() - 1,
                Err(e) => {
                    return fail(format!(
                        "repair stopped after {repaired} rows: {}",
                        crate::error::Error::from(e).chain()
                    ))
                }
            }
        }
    }
    let open: Vec<&Finding> =
        findings.iter().filter(|f| f.problem != Problem::Foreign && !(a.repair && f.problem.repairable())).collect();
    if a.json {
        let list: Vec<Value> = findings
            .iter()
            .map(|f| {
                json!({"problem": f.problem.as_str(), "table": f.table, "uuid": f.uuid.to_string(), "name": f.name,
                       "detail": f.detail, "repaired": a.repair && f.problem.repairable()})
            })
            .collect();
        output::print_json(
            &json!({"owner": owner.0, "scanned": counts, "findings": list, "repaired": repaired, "open": open.len()}),
        );
    } else {
        let scanned: Vec<String> = counts.iter().map(|(t, n)| format!("{t} {n}")).collect();
        output::print_text(&format!("scanned (rows of ours or look-alikes): {}", scanned.join(", ")));
        for f in &findings {
            let state = if a.repair && f.problem.repairable() { "repaired" } else { "" };
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
