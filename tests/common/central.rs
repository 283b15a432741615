//! OVN "central": NB + SB ovsdb-server and ovn-northd.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use super::cluster::Cluster;
use super::daemon::{relaunch_ovsdb, standalone_ovsdb, stop_all, Daemon};
use super::nb::Nb;
use super::util::{dump_logs, ovs_command, require, run, run_ok, LabDir, CMD_TIMEOUT, OVN_NB_SCHEMA, OVN_SB_SCHEMA};

/// How long a probe that must find the path blocked waits for an answer
/// after the [`Central::sync_hv`] barrier: long enough for one SYN (or
/// echo) retransmission after a lost first packet (1 s RTO), which an
/// open path would answer.
pub const BLOCKED: Duration = Duration::from_secs(2);

pub struct Central {
    northd: Daemon,
    nb: Nb,
    /// None when NB and SB are Raft clusters (`clusters`).
    sb: Option<Daemon>,
    sb_remote: String,
    clusters: Option<(Cluster, Cluster)>,
    dir: Arc<LabDir>,
}

impl Central {
    /// NB + SB + northd; returns once `ovn-nbctl --wait=sb sync` returned.
    pub fn start() -> Central {
        require(
            &["ovsdb-tool", "ovsdb-server", "ovsdb-client", "ovn-nbctl", "ovn-sbctl", "ovn-northd", "ovn-trace"],
            &[OVN_NB_SCHEMA, OVN_SB_SCHEMA],
        );
        let dir = Arc::new(LabDir::new("central"));
        let nb = Nb::start_in(dir.clone());
        let (sb, sb_remote) = standalone_ovsdb(dir.path(), "sb", OVN_SB_SCHEMA, &[]);
        let mut c = ovs_command(dir.path(), "ovn-sbctl");
        c.arg(format!("--db={sb_remote}")).arg("--timeout=10").arg("init");
        run_ok(&mut c);
        Central::with_northd(nb, Some(sb), sb_remote, None, dir)
    }

    /// [`Central::start`] with NB and SB each a 3-member Raft cluster;
    /// every client (northd, ovn-controller, the agent, the commands) gets
    /// the members' unix sockets as a remote list.
    pub fn start_clustered() -> Central {
        require(&["ovn-northd", "ovn-trace"], &[]);
        let dir = Arc::new(LabDir::new("central"));
        let (nb_cluster, sb_cluster) = (Cluster::start(), Cluster::start_sb());
        let nb = Nb::attach(nb_cluster.unix_remotes().join(","), dir.clone());
        let sb_remote = sb_cluster.unix_remotes().join(",");
        Central::with_northd(nb, None, sb_remote, Some((nb_cluster, sb_cluster)), dir)
    }

    fn with_northd(
        nb: Nb,
        sb: Option<Daemon>,
        sb_remote: String,
        clusters: Option<(Cluster, Cluster)>,
        dir: Arc<LabDir>,
    ) -> Central {
        let northd = Daemon::launch(
            dir.path(),
            None,
            "ovn-northd",
            "northd",
            true,
            &[&format!("--ovnnb-db={}", nb.remote()), &format!("--ovnsb-db={sb_remote}")],
        );
        let central = Central { northd, nb, sb, sb_remote, clusters, dir };
        let o = central.nb.nbctl_result(&["--timeout=20", "--wait=sb", "sync"]);
        if !o.status.success() {
            panic!(
                "ovn-northd did not sync: {}\n--- northd.log:\n{}",
                String::from_utf8_lossy(&o.stderr).trim(),
                super::util::tail(central.northd.log(), 20)
            );
        }
        central
    }

    /// Stop the NB and SB servers for `down`, then start them again on
    /// the same files (a maintenance restart); clients must reconnect.
    pub fn restart_databases(&mut self, down: Duration) {
        let standalone = "restart_databases needs standalone servers";
        self.nb.server_mut().expect(standalone).stop();
        self.sb.as_mut().expect(standalone).stop();
        std::thread::sleep(down);
        *self.nb.server_mut().expect(standalone) = relaunch_ovsdb(self.dir.path(), "nb");
        self.sb = Some(relaunch_ovsdb(self.dir.path(), "sb"));
    }

    /// The NB and SB Raft clusters of [`Central::start_clustered`].
    pub fn clusters(&mut self) -> &mut (Cluster, Cluster) {
        self.clusters.as_mut().expect("a Central::start_clustered()")
    }

    /// Stop the SB server only (until [`Central::start_sb`]): NB and
    /// northd stay; SB clients (ovn-controller, agents) lose it.
    pub fn stop_sb(&mut self) {
        self.sb.as_mut().expect("stop_sb needs a standalone SB").stop();
    }

    /// Start the SB server stopped by [`Central::stop_sb`] on its files.
    pub fn start_sb(&mut self) {
        self.sb = Some(relaunch_ovsdb(self.dir.path(), "sb"));
    }

    /// The NB server (nbctl, snapshot, count_rows, ...).
    pub fn nb(&self) -> &Nb {
        &self.nb
    }

    pub fn nb_remote(&self) -> String {
        self.nb.remote()
    }

    pub fn sb_remote(&self) -> String {
        self.sb_remote.clone()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn northd_log(&self) -> &Path {
        self.northd.log()
    }

    pub fn nbctl(&self, args: &[&str]) -> String {
        self.nb.nbctl(args)
    }

    pub fn nbctl_result(&self, args: &[&str]) -> Output {
        self.nb.nbctl_result(args)
    }

    /// `ovn-sbctl --db=<sb> --timeout=10 ARGS`; panics on failure.
    pub fn sbctl(&self, args: &[&str]) -> String {
        run_ok(&mut self.sbctl_command(args))
    }

    pub fn sbctl_result(&self, args: &[&str]) -> Output {
        run(&mut self.sbctl_command(args), CMD_TIMEOUT)
    }

    /// `ovsdb-client dump` of the whole NB and SB, as an operator would
    /// read them (the secrecy checks of UserData).
    pub fn dump_both(&self) -> String {
        let dump = |remote: String, db: &str| {
            let mut c = ovs_command(self.dir(), "ovsdb-client");
            c.args(["--timeout=10", "dump", &remote, db]);
            run_ok(&mut c)
        };
        dump(self.nb_remote(), "OVN_Northbound") + &dump(self.sb_remote(), "OVN_Southbound")
    }

    fn sbctl_command(&self, args: &[&str]) -> Command {
        let mut c = ovs_command(self.dir(), "ovn-sbctl");
        c.arg(format!("--db={}", self.sb_remote)).arg("--timeout=10").args(args);
        c
    }

    /// `ovn-nbctl --wait=sb sync`: northd has caught up with NB.
    pub fn sync(&self) {
        self.nb.nbctl(&["--wait=sb", "sync"]);
    }

    /// `ovn-nbctl --wait=hv sync`: every chassis' ovn-controller has
    /// installed the OpenFlow flows for the NB as of now (northd copies
    /// `nb_cfg` to SB, each ovn-controller reports it in `Chassis_Private`
    /// once its flows are in ovs-vswitchd, northd sets `NB_Global.hv_cfg`).
    pub fn sync_hv(&self) {
        let o = self.nb.nbctl_result(&["--timeout=25", "--wait=hv", "sync"]);
        if !o.status.success() {
            panic!(
                "ovn-nbctl --wait=hv sync failed (is every chassis' ovn-controller running?): {}\n--- northd.log:\n{}",
                String::from_utf8_lossy(&o.stderr).trim(),
                super::util::tail(self.northd.log(), 20)
            );
        }
    }

    /// A data-plane probe that must find the path *blocked*: first the
    /// [`Central::sync_hv`] barrier (so "blocked" cannot pass merely
    /// because the flows of the last command are not installed yet), then
    /// `probe` with the short [`BLOCKED`] timeout it is given. Probes that
    /// expect an answer keep their own, longer timeouts and retries.
    pub fn blocked_probe<T>(&self, probe: impl FnOnce(Duration) -> T) -> T {
        self.sync_hv();
        probe(BLOCKED)
    }

    /// `ovn-trace --db=<sb> --no-friendly-names DATAPATH MICROFLOW`
    /// (default, detailed output). `--no-friendly-names` keeps UUID-like port
    /// names whole (by default ovn-trace prints `"3f0c00"` for
    /// `"3f0c0000-0000-..."`). Panics if it fails or reports a flow syntax
    /// error (which exits 0); returns stdout. `parsing actions failed`
    /// warnings are not fatal: use [`Central::trace_output`] to see stderr.
    pub fn trace(&self, datapath: &str, microflow: &str) -> String {
        self.trace_opts(&[], datapath, microflow)
    }

    /// [`Central::trace`] with extra ovn-trace options, e.g. `["--minimal"]`,
    /// `["--summary"]`, `["--ct=new"]`.
    pub fn trace_opts(&self, opts: &[&str], datapath: &str, microflow: &str) -> String {
        let o = self.trace_output_opts(opts, datapath, microflow);
        let stderr = String::from_utf8_lossy(&o.stderr);
        if !o.status.success() || stderr.contains("error parsing flow") {
            panic!(
                "ovn-trace {opts:?} {datapath} '{microflow}' failed ({})\n--- stdout:\n{}\n--- stderr:\n{}",
                o.status,
                String::from_utf8_lossy(&o.stdout).trim_end(),
                stderr.trim_end()
            );
        }
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Raw `ovn-trace` output (exit code is not reliable, see README §6).
    pub fn trace_output(&self, datapath: &str, microflow: &str) -> Output {
        self.trace_output_opts(&[], datapath, microflow)
    }

    pub fn trace_output_opts(&self, opts: &[&str], datapath: &str, microflow: &str) -> Output {
        let mut c = ovs_command(self.dir(), "ovn-trace");
        c.arg(format!("--db={}", self.sb_remote)).arg("--no-friendly-names").args(opts).arg(datapath).arg(microflow);
        run(&mut c, CMD_TIMEOUT)
    }

    /// Wait until NB `Logical_Switch_Port <lsp>` has `up=true`.
    pub fn wait_lsp_up(&self, lsp: &str, timeout: Duration) -> bool {
        let mut c = ovs_command(self.dir(), "ovn-nbctl");
        c.arg(format!("--db={}", self.nb.remote())).arg(format!("--timeout={}", timeout.as_secs().max(1))).args([
            "wait-until",
            "Logical_Switch_Port",
            lsp,
            "up=true",
        ]);
        run(&mut c, timeout + Duration::from_secs(5)).status.success()
    }
}

impl Drop for Central {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut logs = vec![self.northd.log().to_path_buf()];
            match &self.clusters {
                Some((nb, sb)) => logs.extend(nb.logs().into_iter().chain(sb.logs())),
                None => logs.extend(self.sb.iter().map(|d| d.log().to_path_buf()).chain([self.nb.log_file().into()])),
            }
            dump_logs("central", &logs);
        }
        let Central { northd, nb, sb, .. } = self;
        let mut all: Vec<&mut Daemon> = vec![northd];
        all.extend(nb.server_mut());
        all.extend(sb.as_mut());
        stop_all(&mut all);
    }
}
