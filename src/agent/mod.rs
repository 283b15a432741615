//! `cloudstack-ovn agent`: the metadata and password service on a KVM host
//! (docs/metadata.md). One long-running process per host:
//!
//! * finds its chassis name and the SB remote in the local OVS
//!   (`external_ids:system-id`, `ovn-remote`), as ovn-controller does;
//! * follows the ports bound to this chassis, their networks' metadata
//!   localports and the NICs' vm-data rows (`view`);
//! * keeps one namespace per network with a local VM, with sockets on :80
//!   and :8080 inside it (`netns`), all served by tokio and hyper on
//!   `--workers` event-loop threads (`http`), answered by pure functions (`serve`);
//! * records password acknowledgements in its own SB
//!   `Chassis_Private.external_ids`, honoured by every agent.
//!
//! The OVSDB side is blocking std I/O on the main thread, like the rest of
//! the program; only the HTTP front is async (slow clients must not hold
//! threads). The per-request work is a hash lookup and, for passwords, one
//! SB select (on tokio's blocking pool).

pub mod http;
pub mod link;
pub mod netns;
pub mod ovs_port;
pub mod serve;
pub mod view;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crypto_box::SecretKey;

use crate::config::{self, Settings};
use crate::error::{Error, Result};
use crate::log;
use crate::metadata::key;
use crate::metadata::seal::{self, Secret};
use crate::nb::{Owner, SB_DB};
use crate::ovsdb::{Client, Deadline, LeaderCheck, NoCheck, Operation, TlsFiles};
use netns::{Plumbing, Provisioned};
use serve::{PasswordAsk, Response};
use view::View;

pub const DEFAULT_OVS_DB: &str = "unix:/run/openvswitch/db.sock";
pub const DEFAULT_KEY_FILE: &str = "/etc/cloudstack-ovn/metadata.key";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cloudstack-ovn";
pub const KEY_SETTING: &str = "metadata.private_key";
pub const KEY_ENV: &str = "CLOUDSTACK_OVN_METADATA_KEY";

/// Options of `cloudstack-ovn agent` (operator/args.rs maps clap onto this).
#[derive(Clone, Debug)]
pub struct Options {
    pub ovs_db: String,
    pub nb: Option<String>,
    pub key: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub netns_prefix: String,
    pub poll: Duration,
    pub grace: Duration,
    /// Event-loop threads of the HTTP front (`http::Server`).
    pub workers: usize,
}

struct Shared {
    view: RwLock<View>,
    key: SecretKey,
    chassis: String,
    sb_remote: String,
    sb_tls: TlsFiles,
    sb: Mutex<Option<Client>>,
    acks: Mutex<BTreeMap<String, String>>,
    /// Acknowledgements recorded locally but not (yet) in the SB: written
    /// by the main loop once the SB answers again ("late acks").
    pending_acks: Mutex<BTreeMap<String, String>>,
    ack_file: PathBuf,
}

const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Connect to a server of `db` that is connected to its cluster (any
/// member: the agent only reads and writes its own row, which followers
/// forward): a member cut off from its cluster would serve a stale view
/// and take acknowledgements it cannot commit. As ovn-controller does.
fn connect(remote: &str, tls: &TlsFiles, db: &str) -> std::result::Result<Client, crate::ovsdb::Error> {
    let check = LeaderCheck { database: db.to_string(), leader_only: false };
    Client::connect_with(remote, tls, Deadline::after(CALL_TIMEOUT), &check)
}

/// Fail when the server we follow has lost its cluster since we connected
/// (ovsdb-server keeps its clients then): reconnecting finds a member that
/// has not.
fn still_in_cluster(c: &mut Client, db: &str) -> Result<()> {
    if let Some(reason) = c.database_status(db)?.and_then(|s| s.unusable_reason(false)) {
        return Err(Error::Ovsdb(crate::ovsdb::Error::ServerRejected { remote: c.remote().to_string(), reason }));
    }
    Ok(())
}

/// The local OVS (`--ovs-db`): standalone, no cluster to check.
fn connect_ovs(ovs_db: &str) -> std::result::Result<Client, crate::ovsdb::Error> {
    Client::connect_with(ovs_db, &TlsFiles::default(), Deadline::after(CALL_TIMEOUT), &NoCheck)
}

/// `system-id`, `ovn-remote` and `ovn-bridge` of the local OVS.
fn local_ovs(ovs_db: &str) -> Result<(String, String, String)> {
    let mut c = connect_ovs(ovs_db)?;
    let r = c.transact(
        "Open_vSwitch",
        &[Operation::Select {
            table: "Open_vSwitch".into(),
            conditions: vec![],
            columns: Some(vec!["external_ids".into()]),
        }],
    )?;
    let ids = r[0]["rows"]
        .get(0)
        .and_then(|row| row.get("external_ids"))
        .map(crate::ovsdb::value::string_map_of)
        .unwrap_or_default();
    let get = |k: &str| ids.get(k).cloned().filter(|v| !v.is_empty());
    let chassis = get("system-id")
        .ok_or_else(|| Error::Config(format!("{ovs_db}: Open_vSwitch external_ids:system-id is not set")))?;
    let sb = get("ovn-remote")
        .ok_or_else(|| Error::Config(format!("{ovs_db}: Open_vSwitch external_ids:ovn-remote is not set")))?;
    Ok((chassis, sb, get("ovn-bridge").unwrap_or_else(|| "br-int".into())))
}

/// Run the agent until killed. Returns an exit code on start-up failure.
pub fn run(opts: Options) -> u8 {
    // The shared loader: environment read as bytes (an unrelated non-UTF-8
    // variable must not crash a daemon), the config file within its limits.
    let mut local = config::Local::load();
    if let Some(e) = local.env_error.take().or(local.file_error.take()) {
        crate::output::print_error(&e.chain());
        return 3;
    }
    local.init_log();
    let (env, file) = (local.env, local.file);
    let key_path = opts
        .key
        .clone()
        .or_else(|| env.get(KEY_ENV).filter(|v| !v.is_empty()).map(PathBuf::from))
        .or_else(|| file.get(KEY_SETTING).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_KEY_FILE));
    let settings = Settings::new(BTreeMap::new(), env, file);
    match start(&opts, &settings, &key_path) {
        Ok(()) => 0,
        Err(e) => {
            let msg = e.chain_unlabelled();
            log::event(log::Level::Error, &msg, &[("component", &"agent")]);
            crate::output::print_error(&msg);
            e.exit_code() as u8
        }
    }
}

fn start(opts: &Options, settings: &Settings, key_path: &Path) -> Result<()> {
    let key = seal::read_secret_key(key_path)?;
    let owner = Owner(settings.owner()?);
    let nb_remote = match &opts.nb {
        Some(r) => r.clone(),
        None => settings.nb_connection()?.0,
    };
    let nb_tls = settings.tls();
    let (chassis, sb_remote, bridge) = local_ovs(&opts.ovs_db)?;
    let sb_tls = settings.sb_tls();
    std::fs::create_dir_all(&opts.state_dir)
        .map_err(|e| Error::Config(format!("state directory {}: {e}", opts.state_dir.display())))?;
    let ack_file = opts.state_dir.join("password-acks.json");
    let acks: BTreeMap<String, String> =
        std::fs::read(&ack_file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    // A previous run may have stopped before the SB took some of them;
    // writing one already there is a no-op (`set_own_keys`).
    let pending_acks = acks.clone();
    let plumbing =
        Plumbing { prefix: opts.netns_prefix.clone(), ovs_db: opts.ovs_db.clone(), bridge, owner: owner.clone() };
    log::info(
        "agent starting",
        &[
            ("chassis", &chassis),
            ("sb", &sb_remote),
            ("nb", &nb_remote),
            ("public_key", &seal::public_key_b64(&key)),
            ("version", &env!("CARGO_PKG_VERSION")),
        ],
    );
    // Neutron's stale-namespace failures: whatever a previous run left is
    // removed before anything is served.
    for ns in plumbing.existing() {
        log::info("removing stale metadata namespace", &[("netns", &ns)]);
        plumbing.remove(&ns);
    }
    let shared = Arc::new(Shared {
        view: RwLock::new(View::default()),
        key,
        chassis: chassis.clone(),
        sb_remote: sb_remote.clone(),
        sb_tls: sb_tls.clone(),
        sb: Mutex::new(None),
        acks: Mutex::new(acks),
        pending_acks: Mutex::new(pending_acks),
        ack_file,
    });
    let handler = shared.clone();
    let server = http::Server::new(
        opts.workers,
        http::Limits::default(),
        Arc::new(move |m: &http::Meta, r: &serve::Request| handle(&handler, m, r)),
    )
    .map_err(|e| Error::Internal(format!("cannot start the HTTP runtime: {e}")))?;

    // Conditional monitors (O(local ports)) say *when* to read the view
    // again; the view itself is read with the same conditions as selects.
    // A full read also runs every RESYNC, for what no monitor covers (the
    // localports' addresses, other chassis' acks).
    let mut provisioned: BTreeMap<u64, Provisioned> = BTreeMap::new();
    let mut links: Option<(Client, Client)> = None;
    let mut watched: (Option<uuid::Uuid>, std::collections::BTreeSet<String>) = (None, Default::default());
    let mut current = View::default();
    let mut dirty = true;
    let mut last_read = Instant::now();
    let mut failures = 0u32;
    let mut live = false;
    loop {
        let round = (|| -> Result<Option<View>> {
            if links.is_none() {
                let mut s = connect(&sb_remote, &sb_tls, SB_DB)?;
                let mut n = connect(&nb_remote, &nb_tls, crate::nb::DB)?;
                log::info("connected to OVN databases", &[("sb", &s.remote()), ("nb", &n.remote())]);
                s.monitor_cond(SB_DB, "local", view::sb_monitor(&chassis, None))?;
                n.monitor_cond(crate::nb::DB, "vm-data", view::nb_monitor(&owner, &Default::default()))?;
                watched = (None, Default::default());
                links = Some((s, n));
                live = false;
                dirty = true;
            }
            let Some((s, n)) = links.as_mut() else {
                return Err(Error::Internal("agent links missing after connect".into()));
            };
            s.set_deadline(Deadline::after(CALL_TIMEOUT));
            n.set_deadline(Deadline::after(CALL_TIMEOUT));
            let mut fresh = None;
            if dirty || last_read.elapsed() >= RESYNC {
                if !dirty {
                    still_in_cluster(s, SB_DB)?;
                    still_in_cluster(n, crate::nb::DB)?;
                }
                dirty = false;
                last_read = Instant::now();
                let v = view::read(s, n, &chassis, &owner)?;
                // Not fatal: a refused or failed prune is tried again at the
                // next read; a lost connection shows in the peek below.
                if let Err(e) = prune_acks(&shared, s, n, &owner, &v) {
                    log::warn("cannot prune password acknowledgements", &[("error", &e.chain_unlabelled())]);
                }
                if !live {
                    // Liveness for doctor, once our Chassis_Private exists.
                    let k: BTreeMap<String, String> =
                        [(key::AGENT.to_string(), env!("CARGO_PKG_VERSION").to_string())].into();
                    live = view::set_own_keys(s, &chassis, &k)?;
                }
                log::debug(
                    "view read",
                    &[
                        ("networks", &v.nets.len()),
                        ("nics", &v.rows.len()),
                        ("sb_bytes_read_total", &s.bytes_read()),
                        ("nb_bytes_read_total", &n.bytes_read()),
                    ],
                );
                // New conditions: a new monitor replaces the old one.
                // (monitor_cond_change would do, but ovsdb-server 3.1
                // was seen to die under it with several agents at once.)
                if v.chassis != watched.0 {
                    s.monitor_cancel("local")?;
                    s.monitor_cond(SB_DB, "local", view::sb_monitor(&chassis, v.chassis))?;
                    watched.0 = v.chassis;
                }
                let nics = v.local_nics();
                if nics != watched.1 {
                    n.monitor_cancel("vm-data")?;
                    n.monitor_cond(crate::nb::DB, "vm-data", view::nb_monitor(&owner, &nics))?;
                    watched.1 = nics;
                }
                fresh = Some(v);
            }
            // Acks the request path could not write (a no-op when none).
            write_pending_acks(&shared, s);
            // Idle: peek both connections, nothing is read from the DBs.
            let half = opts.poll / 2;
            let changed = !s.wait_updates(half)?.is_empty() | !n.wait_updates(half)?.is_empty();
            dirty |= changed;
            Ok(fresh)
        })();
        match round {
            Ok(fresh) => {
                if failures > 0 {
                    log::info("OVN databases reachable again", &[("after_failures", &failures)]);
                }
                failures = 0;
                if let Some(v) = fresh {
                    if let Ok(mut w) = shared.view.write() {
                        *w = v.clone();
                    }
                    current = v;
                }
            }
            Err(e) => {
                // Keep serving what we know; reconnect and resync.
                failures += 1;
                if failures == 1 || failures % 50 == 0 {
                    log::warn(
                        "cannot read OVN databases, keeping the last view",
                        &[("error", &e.chain_unlabelled()), ("sb", &sb_remote), ("nb", &nb_remote)],
                    );
                }
                links = None;
                std::thread::sleep(opts.poll);
            }
        }
        reconcile(&plumbing, &mut provisioned, &current, &server, opts.grace);
    }
}

/// How often the whole view is read even without notifications.
const RESYNC: Duration = Duration::from_secs(10);

fn reconcile(
    plumbing: &Plumbing,
    provisioned: &mut BTreeMap<u64, Provisioned>,
    v: &View,
    server: &http::Server,
    grace: Duration,
) {
    for (net, n) in &v.nets {
        if n.md_ips.is_empty() || n.ips.is_empty() {
            continue;
        }
        if let Some(p) = provisioned.get_mut(net) {
            if p.mac == n.md_mac && p.ips == n.md_ips {
                p.orphan_since = None;
                continue;
            }
            if let Some(p) = provisioned.remove(net) {
                plumbing.teardown(p);
            }
        }
        match plumbing.provision(*net, &n.md_mac, &n.md_ips, server) {
            Ok(p) => {
                log::info("metadata namespace ready", &[("network", net), ("netns", &p.netns), ("veth", &p.veth)]);
                provisioned.insert(*net, p);
            }
            Err(e) => log::warn("cannot provision metadata namespace", &[("network", net), ("error", &e)]),
        }
    }
    let gone: Vec<u64> = provisioned.keys().copied().filter(|n| !v.nets.contains_key(n)).collect();
    for net in gone {
        let Some(p) = provisioned.get_mut(&net) else { continue };
        // The grace period absorbs a migration's unbind/rebind.
        let since = *p.orphan_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= grace {
            if let Some(p) = provisioned.remove(&net) {
                log::info("no local VM left, removing metadata namespace", &[("network", &net), ("netns", &p.netns)]);
                plumbing.teardown(p);
            }
        }
    }
}

/// One request, answered from the view (runs on an HTTP event-loop thread,
/// or on its blocking pool for :8080).
fn handle(sh: &Shared, m: &http::Meta, req: &serve::Request) -> Response {
    let (nic, row) = {
        let Ok(v) = sh.view.read() else {
            return Response { status: 500, body: b"Internal Server Error\n".to_vec() };
        };
        let nic = v.nic(m.network, m.src).map(str::to_string);
        let row = nic.as_ref().and_then(|n| v.rows.get(n).cloned());
        (nic, row)
    };
    let open_userdata = |n: &str, sealed: &str| {
        let open = seal::open(&sh.key, Secret::UserData, n, "", sealed);
        if open.is_none() {
            log::warn("cannot open sealed user data (wrong key, or copied from another NIC)", &[("nic", &n)]);
        }
        open
    };
    let (resp, what) = serve::answer(m.port, req, nic.as_deref(), row.as_ref(), open_userdata, |n, row, ask| {
        password(sh, n, row, ask)
    });
    // Never the body: it may be a password or user data.
    log::info(
        "request",
        &[
            ("service", &what),
            ("network", &m.network),
            ("src", &m.src),
            ("nic", &nic.as_deref().unwrap_or("-")),
            ("path", &req.path),
            ("status", &resp.status),
            ("latency_ms", &format!("{:.3}", m.accepted.elapsed().as_secs_f64() * 1000.0)),
        ],
    );
    resp
}

fn password(sh: &Shared, nic: &str, row: Option<&BTreeMap<String, String>>, ask: PasswordAsk) -> Response {
    let saved = || Response::ok("saved_password");
    let pw = row.and_then(|r| Some((r.get(key::PASSWORD)?, r.get(key::PASSWORD_GEN)?)));
    match ask {
        PasswordAsk::Bad => Response { status: 400, body: b"bad_request".to_vec() },
        PasswordAsk::Send => {
            // A row with only the digest left (`pw-d`: acknowledged, then
            // dropped by the management side) holds no password either.
            let Some((sealed, gen)) = pw else { return saved() };
            match is_acked(sh, nic, gen) {
                Some(true) => return saved(),
                Some(false) => {}
                // Fail closed: another chassis may have served it (a
                // migration); serving it again would hand out a password the
                // guest already replaced. The guest sees a failed fetch and
                // asks again at its next boot. The body is a protocol token,
                // never a string a careless script could take for a password.
                None => {
                    log::warn(
                        "cannot tell whether the password was acknowledged (SB unreachable): not serving it",
                        &[("nic", &nic)],
                    );
                    return Response { status: 503, body: b"bad_request".to_vec() };
                }
            }
            match seal::open(&sh.key, Secret::Password, nic, gen, sealed) {
                Some(p) => Response::ok(p),
                None => {
                    log::warn("cannot open sealed password (wrong key, or copied from another NIC)", &[("nic", &nic)]);
                    saved()
                }
            }
        }
        PasswordAsk::Saved => {
            if let Some((_, gen)) = pw {
                record_ack(sh, nic, gen);
            }
            saved()
        }
    }
}

/// One SB request on the request path's own connection. A failure on a
/// connection made earlier (its server may have died or lost the
/// leadership since) is retried once on a fresh one.
fn with_sb<T>(sh: &Shared, f: impl Fn(&mut Client) -> std::result::Result<T, crate::ovsdb::Error>) -> Option<T> {
    let mut guard = sh.sb.lock().ok()?;
    for attempt in 1..=2 {
        let reused = guard.is_some();
        if guard.is_none() {
            match connect(&sh.sb_remote, &sh.sb_tls, SB_DB) {
                Ok(c) => *guard = Some(c),
                Err(e) => {
                    log::warn("cannot connect to the SB", &[("error", &e)]);
                    return None;
                }
            }
        }
        let c = guard.as_mut()?;
        c.set_deadline(Deadline::after(Duration::from_secs(2)));
        match f(c) {
            Ok(v) => return Some(v),
            Err(e) => {
                log::warn("SB request failed", &[("error", &e), ("attempt", &attempt)]);
                *guard = None;
                if !reused {
                    return None;
                }
            }
        }
    }
    None
}

/// Was generation `gen` of `nic`'s password acknowledged, here (the state
/// file) or by any chassis (SB)? `None`: the SB cannot tell.
fn is_acked(sh: &Shared, nic: &str, gen: &str) -> Option<bool> {
    if sh.acks.lock().map(|a| a.get(nic).map(String::as_str) == Some(gen)).unwrap_or(false) {
        return Some(true);
    }
    // Another host's agent may have served it before a migration.
    with_sb(sh, |c| view::acked(c, nic, gen))
}

/// Write the state file (`password-acks.json`) atomically.
fn save_acks(sh: &Shared, acks: &BTreeMap<String, String>) {
    let tmp = sh.ack_file.with_extension("tmp");
    let body = serde_json::to_vec(acks).unwrap_or_default();
    if std::fs::write(&tmp, body).and_then(|_| std::fs::rename(&tmp, &sh.ack_file)).is_err() {
        log::warn("cannot write password acknowledgements", &[("file", &sh.ack_file.display())]);
    }
}

fn record_ack(sh: &Shared, nic: &str, gen: &str) {
    if let Ok(mut a) = sh.acks.lock() {
        a.insert(nic.to_string(), gen.to_string());
        save_acks(sh, &a);
    }
    let k: BTreeMap<String, String> = [(crate::metadata::ack_key(nic), gen.to_string())].into();
    if with_sb(sh, |c| view::set_own_keys(c, &sh.chassis, &k)) == Some(true) {
        log::info("password acknowledged", &[("nic", &nic)]);
        if let Ok(mut p) = sh.pending_acks.lock() {
            p.remove(nic);
        }
    } else {
        // Served from the state file meanwhile; the main loop writes it
        // to the SB once the SB answers again.
        log::warn("password acknowledged locally, SB write pending", &[("nic", &nic)]);
        if let Ok(mut p) = sh.pending_acks.lock() {
            p.insert(nic.to_string(), gen.to_string());
        }
    }
}

/// Write the acknowledgements the SB did not take when they came (SB down,
/// election) through the main loop's working connection.
fn write_pending_acks(sh: &Shared, sb: &mut Client) {
    let pending = match (sh.pending_acks.lock(), sh.acks.lock()) {
        (Ok(mut p), Ok(acks)) if !p.is_empty() => {
            // An ack pruned meanwhile (its password dropped or replaced)
            // must not come back.
            p.retain(|nic, gen| acks.get(nic) == Some(gen));
            p.clone()
        }
        _ => return,
    };
    if pending.is_empty() {
        return;
    }
    let k: BTreeMap<String, String> =
        pending.iter().map(|(nic, gen)| (crate::metadata::ack_key(nic), gen.clone())).collect();
    match view::set_own_keys(sb, &sh.chassis, &k) {
        Ok(true) => {
            if let Ok(mut p) = sh.pending_acks.lock() {
                // Only what was written: a newer generation may have come.
                p.retain(|nic, gen| pending.get(nic) != Some(gen));
            }
            log::info("late password acknowledgements written", &[("count", &pending.len())]);
        }
        // No Chassis_Private row yet, or the SB failed: next round.
        Ok(false) => {}
        Err(e) => log::warn("cannot write late password acknowledgements", &[("error", &e)]),
    }
}

/// Forget our acknowledgements whose password is no longer stored: the
/// NIC's row is gone, or its password was dropped (the management side
/// removes an acknowledged one) or replaced by a new generation. Both
/// places: our own `Chassis_Private.external_ids` (one mutate, only the
/// stale pairs) and the state file. Local NICs' rows come from the view
/// just read; the others' (a VM that migrated away: its ack here is what
/// the new host honours until the password leaves the NB) are read by
/// `_uuid`.
fn prune_acks(sh: &Shared, sb: &mut Client, nb: &mut Client, owner: &Owner, v: &View) -> Result<()> {
    let file = sh.acks.lock().map(|a| a.clone()).unwrap_or_default();
    let in_sb = view::own_acks(sb, &sh.chassis)?;
    if file.is_empty() && in_sb.is_empty() {
        return Ok(());
    }
    let local = v.local_nics();
    let remote: Vec<String> = file
        .keys()
        .chain(in_sb.keys())
        .filter(|n| !local.contains(*n))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut rows = view::read_rows(nb, owner, &remote)?;
    rows.extend(
        v.rows
            .iter()
            .filter(|(n, _)| file.contains_key(*n) || in_sb.contains_key(*n))
            .map(|(n, r)| (n.clone(), r.clone())),
    );
    let stale_sb = view::stale_acks(&in_sb, &rows);
    if !stale_sb.is_empty() {
        view::drop_own_acks(sb, &sh.chassis, &stale_sb)?;
        for nic in stale_sb.keys() {
            log::info("password acknowledgement pruned (password no longer stored)", &[("nic", nic)]);
        }
    }
    let stale_file = view::stale_acks(&file, &rows);
    if !stale_file.is_empty() {
        if let Ok(mut a) = sh.acks.lock() {
            // Only the pairs judged: an ack recorded meanwhile stays.
            a.retain(|n, g| stale_file.get(n) != Some(g));
            save_acks(sh, &a);
        }
    }
    Ok(())
}
