//! The engine: run a prepared [`Job`]: observe (one read-only
//! transaction), plan (pure), apply (one write transaction), retrying the
//! observe–plan–apply cycle when a concurrent writer got in between.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::{Invocation, Style};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::log;
use crate::nb::{table, Owner, DB};
use crate::observe::{self, Observed, Want};
use crate::ovsdb::{self, Client, Deadline, LeaderCheck};
use crate::plan::Plan;

/// Attempts of the observe–plan–apply cycle before giving up on a
/// contended row (each attempt re-reads, so this only matters under heavy
/// concurrent change of the same rows).
const MAX_ATTEMPTS: u32 = 8;

/// A plan function: the command's typed intent and the observed rows in,
/// operations out. A plain `fn` over an owned intent: it cannot reach the
/// payload, the settings or the connection, so everything it needs was
/// validated by `prepare` before the first connection.
pub type PlanFn<I> = fn(&I, &Observed, &mut Plan) -> Result<()>;

/// The output of a command that depends on what it found (the plan
/// function's sibling, over the same intent).
pub type ReportFn<I> = fn(&I, &Observed) -> Result<Value>;

/// A plan function with its intent bound ('static: it owns the intent).
type Planner = Box<dyn Fn(&Observed, &mut Plan) -> Result<()>>;
/// A report function with its intent bound.
type Reporter = Box<dyn Fn(&Observed) -> Result<Value>>;
/// A read-only diagnostic with its intent bound: it reads what it needs
/// itself (NB rows by tag, the SB, `ovn-trace`) and writes nothing.
type Diagnostic = Box<dyn Fn(&Context) -> Result<Value>>;

/// What `prepare` made of an invocation: what to read and how to plan,
/// or an answer needing no NB at all.
pub struct Job {
    /// `None`: nothing to read or write (the answer is `output`).
    want: Option<Want>,
    plan: Planner,
    /// Printed on success.
    output: Option<Value>,
    /// Printed on success, from the rows the successful attempt read.
    report: Option<Reporter>,
    /// Run instead of observe–plan–apply; its value is printed.
    diagnostic: Option<Diagnostic>,
}

impl Job {
    /// Read `want`, then plan with `plan` over `intent`.
    pub fn new<I: 'static>(want: Want, intent: I, plan: PlanFn<I>) -> Job {
        Job {
            want: Some(want),
            plan: Box::new(move |obs, p| plan(&intent, obs, p)),
            output: None,
            report: None,
            diagnostic: None,
        }
    }

    /// [`Job::new`] whose output is `report` over the intent and the rows
    /// the successful attempt read.
    pub fn reporting<I: 'static>(want: Want, intent: I, plan: PlanFn<I>, report: ReportFn<I>) -> Job {
        let intent = std::rc::Rc::new(intent);
        let for_report = std::rc::Rc::clone(&intent);
        Job {
            want: Some(want),
            plan: Box::new(move |obs, p| plan(&intent, obs, p)),
            output: None,
            report: Some(Box::new(move |obs| report(&for_report, obs))),
            diagnostic: None,
        }
    }

    /// A read-only diagnostic (custom actions `show`, `trace`, …) over its
    /// validated intent: no plan, nothing written, its value printed.
    pub fn diagnostic<I: 'static>(intent: I, run: fn(&I, &Context) -> Result<Value>) -> Job {
        Job {
            want: None,
            plan: Box::new(|_, _| Ok(())),
            output: None,
            report: None,
            diagnostic: Some(Box::new(move |ctx| run(&intent, ctx))),
        }
    }

    /// Done without touching the NB.
    pub fn nothing() -> Job {
        Job { want: None, plan: Box::new(|_, _| Ok(())), output: None, report: None, diagnostic: None }
    }

    /// Plan only on a network we may route: when the observed switch
    /// records a shared or L2 guest type, `command` fails before planning
    /// (no write). The switch joins the `Want` when it was not in it,
    /// without its port list.
    pub fn routed_only(mut self, command: &str) -> Job {
        let Some(want) = self.want.as_mut() else { return self };
        let Some(scope) = want.scope.clone() else { return self };
        if !want.switch {
            want.switch = true;
            // `light` also drops the port group's lists: only when none is read.
            want.light |= !want.port_group;
        }
        let command = command.to_string();
        let inner = self.plan;
        self.plan = Box::new(move |obs, p| {
            crate::plan::network::require_routed(&command, &scope, obs)?;
            inner(obs, p)
        });
        self
    }

    /// Print `output` on success.
    pub fn with_output(mut self, output: Value) -> Job {
        self.output = Some(output);
        self
    }

    pub fn want(&self) -> Option<&Want> {
        self.want.as_ref()
    }

    /// The job's plan against `obs` (what `converge` does on each attempt;
    /// unit tests call it with a hand-built `Observed`).
    pub fn plan(&self, obs: &Observed) -> Result<Plan> {
        let mut plan = Plan::default();
        (self.plan)(obs, &mut plan)?;
        Ok(plan)
    }
}

/// Everything a command's `prepare` may look at.
pub struct Context {
    pub inv: Invocation,
    /// Every setting, parsed and validated before the command is prepared.
    pub config: Config,
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
    pub(crate) fn connect(&self) -> Result<Client> {
        let (remotes, source) = self.config.nb_connection()?;
        let leader_only = remotes.contains(',');
        let check = LeaderCheck { database: DB.to_string(), leader_only };
        let tls = self.config.tls.clone();
        let started = Instant::now();
        let mut attempt = 0u32;
        let mut last = None;
        loop {
            attempt += 1;
            log::debug("connecting", &[("remotes", &remotes), ("source", &source), ("attempt", &attempt)]);
            match Client::connect_with(&remotes, &tls, self.deadline, &check) {
                Ok(client) => return Ok(client),
                Err(e) if retry_connect(&e) && !self.deadline.expired() && started.elapsed() < CONNECT_RETRY_WINDOW => {
                    log::info("no usable NB server yet, retrying", &[("attempt", &attempt), ("error", &e)]);
                    let pause = Duration::from_millis(u64::from(attempt.min(10)) * 50);
                    std::thread::sleep(pause.min(self.deadline.remaining().unwrap_or_default()));
                    last = Some(e);
                }
                Err(e) => return Err(ovsdb::Error::after_retries(e, last).into()),
            }
        }
    }

    /// Connect to the SB (`ovn.sb.connection`, its TLS files), for at most
    /// `limit` of the command's remaining time. Any member of a cluster
    /// will do: only reads go there.
    pub(crate) fn connect_sb(&self, limit: Duration) -> Result<Client> {
        let remote = self
            .config
            .sb
            .clone()
            .ok_or_else(|| Error::Config(format!("{} is not configured", crate::config::SB_CONNECTION)))?;
        let deadline = Deadline::after(self.deadline.remaining()?.min(limit));
        log::debug("connecting to the SB", &[("remotes", &remote)]);
        Ok(Client::connect(&remote, &self.config.sb_tls, deadline)?)
    }

    /// Run a prepared job.
    pub fn run(&self, job: Job) -> Result<Outcome> {
        if let Some(diagnose) = &job.diagnostic {
            return Ok(Outcome { output: Some(diagnose(self)?), ..Outcome::default() });
        }
        let (mut outcome, observed) = match &job.want {
            None => (Outcome::default(), None),
            Some(want) => {
                let (outcome, observed) = self.converge(want, |obs| job.plan(obs))?;
                (outcome, Some(observed))
            }
        };
        outcome.output = match (&job.report, &observed) {
            (Some(report), Some(obs)) => Some(report(obs)?),
            _ => job.output,
        };
        Ok(outcome)
    }

    /// Observe, plan, apply; repeat while a concurrent writer invalidates
    /// what we read (a failed `wait` guard, a `duplicate uuid` from a
    /// racing insert of the same deterministic row, an index collision).
    /// An ambiguous connection failure is retried the same way: the
    /// re-read shows whether the first attempt committed.
    fn converge(&self, want: &Want, planner: impl Fn(&Observed) -> Result<Plan>) -> Result<(Outcome, Observed)> {
        let mut want = want.clone();
        let mut client = self.connect()?;
        let mut acks = Acks::default();
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
            let mut observed = match observe::observe(&mut client, &want) {
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
            if !want.pw_acks.is_empty() {
                acks.observe(self, &want, &mut observed);
            }
            if let Some(h) = observed.holder.as_ref().filter(|h| !self.owner.owns(&h.external_ids)) {
                return Err(Error::NotOwned {
                    what: format!(
                        "the name {}: {} {} ({}) already uses it",
                        h.name,
                        h.table,
                        h.uuid,
                        crate::plan::network::held_by(&h.external_ids)
                    ),
                });
            }
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
                return Ok((done(&client, 0, attempt, read, written), observed));
            }
            let changes = plan.changes.len();
            for c in &plan.changes {
                log::debug(c, &[("attempt", &attempt)]);
            }
            let ops = plan.into_ops(self.comment());
            match client.transact(DB, &ops) {
                Ok(_) => return Ok((done(&client, changes, attempt, read, written), observed)),
                Err(e) if attempt < MAX_ATTEMPTS && !self.deadline.expired() && e.is_conflict() => {
                    log::info("concurrent change, re-planning", &[("attempt", &attempt), ("error", &e)]);
                    // A port name taken by a row we did not find by uuid:
                    // look it up by name (a scan, only now) to say whose it is.
                    if want.port.is_some() && e.to_string().contains("Logical_Switch_Port") {
                        want.port_by_name = true;
                    }
                    // A unique name held by another row: read that row
                    // (by uuid) to say whose it is, or retry if it is ours.
                    want.holder = collision(&e);
                    // Our switch's name guard failed: look the name up.
                    if want.scope.is_some() && e.to_string().contains("(wait on Logical_Switch)") {
                        want.switch_by_name = true;
                    }
                    if let (Some(rw), true) = (&want.router, e.to_string().contains("(wait on Logical_Router)")) {
                        want.name_holder = Some((table::LOGICAL_ROUTER.into(), rw.rs.name(), rw.rs.uuid()));
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

/// The SB side of [`Want::pw_acks`]: whether the passwords the NB read
/// found were acknowledged. Connected on first need; what it answered is
/// kept across attempts (a re-plan only asks about generations it has not
/// seen). An SB that is not configured or does not answer costs one
/// warning and keeps the passwords: they leave with a later command.
#[derive(Default)]
struct Acks {
    client: Option<Client>,
    failed: bool,
    known: std::collections::BTreeMap<(String, String), bool>,
}

/// The most of the command's remaining time the optional SB read may take
/// (at most half of it: the NB write must still fit).
const SB_ACK_TIMEOUT: Duration = Duration::from_secs(5);

impl Acks {
    fn observe(&mut self, ctx: &Context, want: &Want, obs: &mut Observed) {
        let unknown: Vec<(String, String)> =
            observe::pending_acks(want, obs).into_iter().filter(|p| !self.known.contains_key(p)).collect();
        if !unknown.is_empty() && !self.failed {
            match self.ask(ctx, &unknown) {
                Ok(found) => {
                    for p in unknown {
                        let acked = found.contains(&p);
                        self.known.insert(p, acked);
                    }
                }
                Err(e) => {
                    self.failed = true;
                    self.client = None;
                    log::warn(
                        "cannot tell whether passwords were acknowledged (SB); they stay in the NB",
                        &[("error", &e.chain())],
                    );
                }
            }
        }
        let acked = self.known.iter().filter(|(_, a)| **a).map(|(p, _)| p.clone()).collect();
        obs.pw_acks = observe::ReadAll::found(acked);
    }

    fn ask(&mut self, ctx: &Context, pending: &[(String, String)]) -> Result<Vec<(String, String)>> {
        let limit = (ctx.deadline.remaining()? / 2).min(SB_ACK_TIMEOUT);
        let c = match &mut self.client {
            Some(c) => c,
            None => self.client.insert(ctx.connect_sb(limit)?),
        };
        c.set_deadline(Deadline::after(limit));
        let found = observe::read_acks(c, pending)?;
        log::debug("password acknowledgements read", &[("asked", &pending.len()), ("acknowledged", &found.len())]);
        Ok(found)
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
        other => {
            other.is_connection()
                && !matches!(other, ovsdb::Error::DeadlineExceeded | ovsdb::Error::DeadlineAfter { .. })
        }
    }
}

/// From a commit's "constraint violation" details (ovsdb-server's
/// `Transaction causes multiple rows in "T" table to have identical values
/// (V) for index on ...  First row, with UUID U, ...  Second row, with
/// UUID U2, ...`): the table, the row that existed before this
/// transaction, and the value.
fn collision(e: &ovsdb::Error) -> Option<(String, uuid::Uuid, String)> {
    let ovsdb::Error::Commit { error, details: Some(d) } = e else { return None };
    if error != "constraint violation" {
        return None;
    }
    let table = d.split("rows in \"").nth(1)?.split('"').next()?.to_string();
    let value = d.split("identical values (").nth(1)?.split(") for index").next()?.trim_matches('"').to_string();
    d.split("row, with UUID ")
        .skip(1)
        .find_map(|part| {
            let (uuid, rest) = part.split_once(", ")?;
            (!rest.starts_with("was inserted by this transaction")).then(|| uuid.parse().ok()).flatten()
        })
        .map(|u| (table, u, value))
}

/// A little jitter keeps two racing management servers from colliding again.
fn backoff(attempt: u32) {
    let jitter = (std::process::id() as u64 * 7919 + attempt as u64 * 104_729) % 5;
    std::thread::sleep(Duration::from_millis((attempt as u64 * 2 + jitter).min(50)));
}
