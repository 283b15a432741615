//! A 3-member Raft cluster of one OVN database on loopback (`ovsdb-tool
//! create-cluster` / `join-cluster`), for leader-failover tests: NB by
//! default ([`Cluster::start`]), SB with [`Cluster::start_sb`]. Members
//! talk Raft over TCP on 127.0.0.1 and serve clients on TCP and on a unix
//! socket each (the unix list reaches them from a chassis' namespace).

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use super::daemon::Daemon;
use super::util::{ovs_command, require, run, run_ok, wait_until, LabDir, CMD_TIMEOUT, OVN_NB_SCHEMA, OVN_SB_SCHEMA};

pub struct Cluster {
    members: Vec<Daemon>,
    /// SIGSTOPped members ([`Cluster::pause`]): their unixctl hangs too.
    paused: Vec<bool>,
    client_ports: Vec<u16>,
    /// Database name (`OVN_Northbound`, `OVN_Southbound`).
    db: String,
    /// Member file prefix (`nb`, `sb`): `<prefix><i>.{db,sock,pid,log,ctl}`.
    prefix: String,
    dir: Arc<LabDir>,
}

/// Free loopback ports (bound once to port 0, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind port 0")).collect();
    listeners.iter().map(|l| l.local_addr().expect("local addr").port()).collect()
}

impl Cluster {
    /// An OVN_Northbound cluster, `ovn-nbctl init` done.
    pub fn start() -> Cluster {
        let c = Cluster::start_db(OVN_NB_SCHEMA, "OVN_Northbound", "nb");
        c.nbctl(&["init"]);
        c
    }

    /// An OVN_Southbound cluster, `ovn-sbctl init` done.
    pub fn start_sb() -> Cluster {
        let c = Cluster::start_db(OVN_SB_SCHEMA, "OVN_Southbound", "sb");
        let mut cmd = ovs_command(c.dir.path(), "ovn-sbctl");
        cmd.arg(format!("--db={}", c.remote())).arg("--timeout=20").arg("init");
        run_ok(&mut cmd);
        c
    }

    fn start_db(schema: &str, db: &str, prefix: &str) -> Cluster {
        require(&["ovsdb-tool", "ovsdb-server", "ovsdb-client", "ovn-nbctl", "ovn-sbctl", "ovs-appctl"], &[schema]);
        let dir = Arc::new(LabDir::new("cluster"));
        let ports = free_ports(6);
        let (client_ports, raft_ports) = (ports[..3].to_vec(), ports[3..].to_vec());
        let raft = |i: usize| format!("tcp:127.0.0.1:{}", raft_ports[i]);
        let file = |i: usize| dir.file(&format!("{prefix}{}.db", i + 1));
        run_ok(ovs_command(dir.path(), "ovsdb-tool").arg("create-cluster").arg(file(0)).arg(schema).arg(raft(0)));
        for i in 1..3 {
            run_ok(
                ovs_command(dir.path(), "ovsdb-tool")
                    .arg("join-cluster")
                    .arg(file(i))
                    .arg(db)
                    .arg(raft(i))
                    .arg(raft(0)),
            );
        }
        let mut cluster = Cluster {
            members: Vec::new(),
            paused: vec![false; 3],
            client_ports,
            db: db.to_string(),
            prefix: prefix.to_string(),
            dir,
        };
        cluster.members = (0..3).map(|i| cluster.launch(i)).collect();
        for i in 0..3 {
            cluster.wait_connected(i);
        }
        cluster
    }

    /// Start member `i` from its database file.
    fn launch(&self, i: usize) -> Daemon {
        let sock = self.sock(i);
        let file = self.dir.file(&format!("{}{}.db", self.prefix, i + 1));
        Daemon::launch(
            self.dir.path(),
            None,
            "ovsdb-server",
            &format!("{}{}", self.prefix, i + 1),
            true,
            &[
                &format!("--remote=punix:{}", sock.display()),
                &format!("--remote=ptcp:{}:127.0.0.1", self.client_ports[i]),
                &file.to_string_lossy(),
            ],
        )
    }

    fn sock(&self, i: usize) -> std::path::PathBuf {
        self.dir.file(&format!("{}{}.sock", self.prefix, i + 1))
    }

    /// Wait until member `i` has joined and knows a leader.
    fn wait_connected(&self, i: usize) {
        let mut c = ovs_command(self.dir.path(), "ovsdb-client");
        c.args(["--timeout=20", "wait"]).arg(format!("unix:{}", self.sock(i).display())).args([&self.db, "connected"]);
        let out = run(&mut c, CMD_TIMEOUT);
        assert!(out.status.success(), "member {} never joined: {}", i + 1, String::from_utf8_lossy(&out.stderr));
    }

    /// `tcp:127.0.0.1:a,tcp:127.0.0.1:b,tcp:127.0.0.1:c`
    pub fn remote(&self) -> String {
        self.remotes().join(",")
    }

    /// Each member's `tcp:127.0.0.1:<port>`, in member order.
    pub fn remotes(&self) -> Vec<String> {
        self.client_ports.iter().map(|p| format!("tcp:127.0.0.1:{p}")).collect()
    }

    /// Each member's `unix:<dir>/<prefix><i>.sock`, in member order.
    pub fn unix_remotes(&self) -> Vec<String> {
        (0..3).map(|i| format!("unix:{}", self.sock(i).display())).collect()
    }

    /// Index of the member that says `Role: leader`, if one does now.
    pub fn leader(&self) -> Option<usize> {
        (0..3).find(|i| {
            let Some(ctl) = self.members[*i].ctl() else { return false };
            if self.paused[*i] || !self.members[*i].is_running() {
                return false;
            }
            let mut c = ovs_command(self.dir.path(), "ovs-appctl");
            c.arg("-t").arg(ctl).args(["cluster/status", &self.db]);
            String::from_utf8_lossy(&run(&mut c, CMD_TIMEOUT).stdout).lines().any(|l| l.trim() == "Role: leader")
        })
    }

    /// The current leader, waiting up to 10 s for an election to end.
    pub fn wait_leader(&self) -> usize {
        let mut found = None;
        assert!(
            wait_until(Duration::from_secs(10), || {
                found = self.leader();
                found.is_some()
            }),
            "{}: no leader within 10 s",
            self.db
        );
        found.expect("leader")
    }

    /// A leader other than `old`, waiting up to 10 s for the election.
    pub fn wait_new_leader(&self, old: usize) -> usize {
        let mut found = None;
        assert!(
            wait_until(Duration::from_secs(10), || {
                found = self.leader().filter(|l| *l != old);
                found.is_some()
            }),
            "{}: member {} is still the leader (or none is) after 10 s",
            self.db,
            old + 1
        );
        found.expect("leader")
    }

    /// SIGKILL the current leader (waits for one first); returns its index.
    pub fn kill_leader(&self) -> usize {
        let i = self.wait_leader();
        self.members[i].kill();
        i
    }

    /// SIGSTOP member `i`: it keeps accepting connections and answers
    /// nothing, and the others elect a new leader without it.
    pub fn pause(&mut self, i: usize) {
        self.members[i].pause().expect("member running");
        self.paused[i] = true;
    }

    pub fn resume(&mut self, i: usize) {
        self.members[i].resume();
        self.paused[i] = false;
    }

    /// Start a killed member `i` again from its file; waits until it rejoined.
    pub fn restart(&mut self, i: usize) {
        // stop() forgets the dead pid and its pidfile before the new
        // server writes the same pidfile.
        self.members[i].stop();
        self.members[i] = self.launch(i);
        self.wait_connected(i);
    }

    pub fn nbctl(&self, args: &[&str]) -> String {
        let mut c = ovs_command(self.dir.path(), "ovn-nbctl");
        c.arg(format!("--db={}", self.remote())).arg("--timeout=20").args(args);
        run_ok(&mut c)
    }

    pub fn count_rows(&self, table: &str) -> usize {
        self.nbctl(&["--bare", "--columns=_uuid", "list", table]).lines().filter(|l| !l.trim().is_empty()).count()
    }

    /// Member log files, for a failed test's dump.
    pub fn logs(&self) -> Vec<std::path::PathBuf> {
        self.members.iter().map(|m| m.log().to_path_buf()).collect()
    }
}
