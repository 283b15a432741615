//! A 3-member Raft OVN_Northbound cluster on loopback (`ovsdb-tool
//! create-cluster` / `join-cluster`), for leader-failover tests.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use super::daemon::Daemon;
use super::util::{ovs_command, require, run, run_ok, wait_until, LabDir, CMD_TIMEOUT, OVN_NB_SCHEMA};

pub struct Cluster {
    members: Vec<Daemon>,
    client_ports: Vec<u16>,
    dir: Arc<LabDir>,
}

/// Free loopback ports (bound once to port 0, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind port 0")).collect();
    listeners.iter().map(|l| l.local_addr().expect("local addr").port()).collect()
}

impl Cluster {
    pub fn start() -> Cluster {
        require(&["ovsdb-tool", "ovsdb-server", "ovsdb-client", "ovn-nbctl", "ovs-appctl"], &[OVN_NB_SCHEMA]);
        let dir = Arc::new(LabDir::new("cluster"));
        let ports = free_ports(6);
        let (client_ports, raft_ports) = (ports[..3].to_vec(), ports[3..].to_vec());
        let raft = |i: usize| format!("tcp:127.0.0.1:{}", raft_ports[i]);
        let db = |i: usize| dir.file(&format!("nb{}.db", i + 1));
        run_ok(ovs_command(dir.path(), "ovsdb-tool").arg("create-cluster").arg(db(0)).arg(OVN_NB_SCHEMA).arg(raft(0)));
        for i in 1..3 {
            run_ok(
                ovs_command(dir.path(), "ovsdb-tool")
                    .arg("join-cluster")
                    .arg(db(i))
                    .arg("OVN_Northbound")
                    .arg(raft(i))
                    .arg(raft(0)),
            );
        }
        let members = (0..3)
            .map(|i| {
                let sock = dir.file(&format!("nb{}.sock", i + 1));
                Daemon::launch(
                    dir.path(),
                    None,
                    "ovsdb-server",
                    &format!("nb{}", i + 1),
                    true,
                    &[
                        &format!("--remote=punix:{}", sock.display()),
                        &format!("--remote=ptcp:{}:127.0.0.1", client_ports[i]),
                        &db(i).to_string_lossy(),
                    ],
                )
            })
            .collect();
        let cluster = Cluster { members, client_ports, dir };
        for i in 0..3 {
            let sock = cluster.dir.file(&format!("nb{}.sock", i + 1));
            let mut c = ovs_command(cluster.dir.path(), "ovsdb-client");
            c.args(["--timeout=20", "wait"])
                .arg(format!("unix:{}", sock.display()))
                .args(["OVN_Northbound", "connected"]);
            let out = run(&mut c, CMD_TIMEOUT);
            assert!(out.status.success(), "member {} never joined: {}", i + 1, String::from_utf8_lossy(&out.stderr));
        }
        cluster.nbctl(&["init"]);
        cluster
    }

    /// `tcp:127.0.0.1:a,tcp:127.0.0.1:b,tcp:127.0.0.1:c`
    pub fn remote(&self) -> String {
        self.remotes().join(",")
    }

    /// Each member's `tcp:127.0.0.1:<port>`, in member order.
    pub fn remotes(&self) -> Vec<String> {
        self.client_ports.iter().map(|p| format!("tcp:127.0.0.1:{p}")).collect()
    }

    /// Index of the member that says `Role: leader`, if one does now.
    pub fn leader(&self) -> Option<usize> {
        (0..3).find(|i| {
            let Some(ctl) = self.members[*i].ctl() else { return false };
            if !self.members[*i].is_running() {
                return false;
            }
            let mut c = ovs_command(self.dir.path(), "ovs-appctl");
            c.arg("-t").arg(ctl).args(["cluster/status", "OVN_Northbound"]);
            String::from_utf8_lossy(&run(&mut c, CMD_TIMEOUT).stdout).lines().any(|l| l.trim() == "Role: leader")
        })
    }

    /// SIGKILL the current leader (waits for one first); returns its index.
    pub fn kill_leader(&self) -> usize {
        let mut found = None;
        assert!(wait_until(Duration::from_secs(10), || {
            found = self.leader();
            found.is_some()
        }));
        let i = found.expect("leader");
        self.members[i].kill();
        i
    }

    pub fn nbctl(&self, args: &[&str]) -> String {
        let mut c = ovs_command(self.dir.path(), "ovn-nbctl");
        c.arg(format!("--db={}", self.remote())).arg("--timeout=20").args(args);
        run_ok(&mut c)
    }

    pub fn count_rows(&self, table: &str) -> usize {
        self.nbctl(&["--bare", "--columns=_uuid", "list", table]).lines().filter(|l| !l.trim().is_empty()).count()
    }
}
